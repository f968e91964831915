//! What the replica tests share: the Go and Python load-balancing clients, the service config
//! without retries, and the marks in a replica's log that say where each call went.

use std::process::Command;

use greeter::round_robin_service_config;

use super::tools::tools;

/// The line a replica logs (at `greeter=debug`) for every SayHello it serves.
pub const GREETING: &str = "Received greeting request";

/// The marker of warm-up calls in the replicas' logs: a name of a length no counted call has.
pub const WARM_UP: &str = "(777 bytes of name)";

/// The Go or Python lb-client (tests/interop/), given a round_robin service config the way its
/// library's docs say (`WithDefaultServiceConfig`, the `grpc.service_config` option).
pub fn peer_client(lang: &str, target: &str, service_config: &str, args: &[&str]) -> Command {
    let mut cmd = match lang {
        "go" => tools().go_bin("lb-client"),
        "python" => tools().python("tests/interop/python/lb_client.py"),
        other => unreachable!("{other}"),
    };
    // C-core's c-ares resolver, the default, is the one that takes a DNS server from the target.
    cmd.env_remove("GRPC_DNS_RESOLVER");
    cmd.args(["--addr", target, "--service-config", service_config]).args(args);
    cmd
}

/// Our round_robin service config without its retry policy: health checks only.
pub fn without_retries() -> String {
    let mut config: serde_json::Value = serde_json::from_str(&round_robin_service_config()).unwrap();
    config.as_object_mut().unwrap().remove("methodConfig");
    config.to_string()
}
