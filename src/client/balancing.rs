//! Spreading calls over replicas with C-core's own machinery: a target that names several
//! addresses, a load-balancing policy, health-checked subchannels and retries, all from one
//! service config on the channel.
//!
//! With `round_robin`, every address gets its own connection (a subchannel), and C-core
//! watches each one's `grpc.health.v1.Health/Watch` for `greeter.Greeter`: a replica that
//! reports NOT_SERVING (as ours does as soon as a graceful shutdown begins) stops getting
//! calls before it stops accepting them. SayHello, which has no side effects, is retried on
//! UNAVAILABLE (a replica that crashed under the call); streams are not retried once a
//! message went out, because C-core cannot replay what the application already consumed.

use std::ffi::CString;
use std::str::FromStr;
use std::time::Duration;

use grpcio::ChannelBuilder;

use crate::proto::GREETER_SERVICE;

/// How a channel picks a replica for each call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LoadBalancing {
    /// gRPC's default: one connection, to the first address that answers; the next one
    /// only when it fails. No health checking (C-core's pick_first does not do it).
    #[default]
    PickFirst,
    /// A connection to every address, calls in turn over the ready and SERVING ones.
    RoundRobin,
}

impl FromStr for LoadBalancing {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "pick_first" => Ok(LoadBalancing::PickFirst),
            "round_robin" => Ok(LoadBalancing::RoundRobin),
            other => Err(format!("unknown load-balancing policy {other:?}: use round_robin or pick_first")),
        }
    }
}

/// SayHello's retry policy under round_robin: up to this many attempts in all…
pub(crate) const RETRY_MAX_ATTEMPTS: u32 = 5;
/// …the first retry after a random delay of up to this…
pub(crate) const RETRY_INITIAL_BACKOFF: Duration = Duration::from_millis(50);
/// …each later one up to this many times longer…
pub(crate) const RETRY_BACKOFF_MULTIPLIER: u32 = 2;
/// …and never more than this.
pub(crate) const RETRY_MAX_BACKOFF: Duration = Duration::from_secs(1);

/// The service config a `round_robin` channel carries (gRPC's service_config.md): the
/// policy, health checking for `greeter.Greeter`, and, with `retry`, SayHello's retry policy.
/// The Go and Python clients take the same JSON (`WithDefaultServiceConfig`,
/// `grpc.service_config`).
pub(crate) fn round_robin_service_config(retry: bool) -> String {
    let health = format!(
        r#""loadBalancingConfig": [{{"round_robin": {{}}}}], "healthCheckConfig": {{"serviceName": "{GREETER_SERVICE}"}}"#
    );
    if !retry {
        return format!("{{{health}}}");
    }
    format!(
        r#"{{{health}, "methodConfig": [{{"name": [{{"service": "{GREETER_SERVICE}", "method": "SayHello"}}], "retryPolicy": {{"maxAttempts": {RETRY_MAX_ATTEMPTS}, "initialBackoff": "{initial}s", "maxBackoff": "{max}s", "backoffMultiplier": {RETRY_BACKOFF_MULTIPLIER}, "retryableStatusCodes": ["UNAVAILABLE"]}}}}]}}"#,
        initial = RETRY_INITIAL_BACKOFF.as_secs_f64(),
        max = RETRY_MAX_BACKOFF.as_secs_f64(),
    )
}

/// Puts `lb`'s service config on a channel, SayHello retried on UNAVAILABLE when `retry`.
/// `PickFirst` leaves the channel as gRPC makes it by default (no service config), which is
/// what a single server wants.
pub(crate) fn apply(builder: ChannelBuilder, lb: LoadBalancing, retry: bool) -> ChannelBuilder {
    match lb {
        LoadBalancing::PickFirst => builder,
        LoadBalancing::RoundRobin => {
            // grpcio has no typed setter for the service config; this is C-core's own
            // channel argument (GRPC_ARG_SERVICE_CONFIG).
            let config = CString::new(round_robin_service_config(retry)).expect("no NUL in the service config");
            builder.raw_cfg_string(CString::new("grpc.service_config").unwrap(), config)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_service_config_is_the_documented_json() {
        let config: serde_json::Value = serde_json::from_str(&round_robin_service_config(true)).unwrap();
        assert_eq!(config["loadBalancingConfig"][0], serde_json::json!({"round_robin": {}}));
        assert_eq!(config["healthCheckConfig"]["serviceName"], "greeter.Greeter");
        let method = &config["methodConfig"][0];
        assert_eq!(method["name"][0], serde_json::json!({"service": "greeter.Greeter", "method": "SayHello"}));
        let retry = &method["retryPolicy"];
        assert_eq!(retry["maxAttempts"], 5);
        assert_eq!(retry["initialBackoff"], "0.05s");
        assert_eq!(retry["maxBackoff"], "1s");
        assert_eq!(retry["retryableStatusCodes"], serde_json::json!(["UNAVAILABLE"]));
        let without: serde_json::Value = serde_json::from_str(&round_robin_service_config(false)).unwrap();
        assert_eq!(without["healthCheckConfig"], config["healthCheckConfig"]);
        assert!(without.get("methodConfig").is_none(), "{without}");
    }

    #[test]
    fn policies_parse_from_their_grpc_names() {
        assert_eq!("round_robin".parse(), Ok(LoadBalancing::RoundRobin));
        assert_eq!("pick_first".parse(), Ok(LoadBalancing::PickFirst));
        assert!("random".parse::<LoadBalancing>().unwrap_err().contains("round_robin or pick_first"));
    }
}
