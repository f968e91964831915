//! What the replica tests share: the Go and Python load-balancing clients, the service config
//! without retries, and the marks in a replica's log that say where each call went.

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

use super::process::{KillOnDrop, DEADLINE};
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

/// A Go or Python lb-client running, its stdin, stdout and stderr piped; killed if dropped.
pub struct PeerClient {
    lang: String,
    child: KillOnDrop,
}

impl PeerClient {
    pub fn start(lang: &str, target: &str, service_config: &str, args: &[&str]) -> Self {
        let mut cmd = peer_client(lang, target, service_config, args);
        let child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        PeerClient { lang: lang.to_owned(), child: KillOnDrop(child) }
    }

    /// Ends `--warmup`: the counted calls follow.
    pub fn go(&mut self) {
        self.child.0.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    }

    /// Closes its stdin (`--until-eof` workers stop) and waits for it to exit.
    pub fn finish(mut self) -> Output {
        drop(self.child.0.stdin.take());
        self.child.wait_with_output(&format!("the {} client", self.lang), DEADLINE)
    }

    /// [`finish`](Self::finish), which must report no failed call.
    pub fn finish_without_failures(self) {
        let lang = self.lang.clone();
        let out = self.finish();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("failed=0"),
            "{lang}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The service config `LoadBalancing::RoundRobin` puts on our client's channel (written out
/// here, as docs/operations.md gives it, for the Go and Python clients): round_robin, health
/// checks of greeter.Greeter, and SayHello retried on UNAVAILABLE.
pub fn round_robin_service_config() -> String {
    serde_json::json!({
        "loadBalancingConfig": [{"round_robin": {}}],
        "healthCheckConfig": {"serviceName": "greeter.Greeter"},
        "methodConfig": [{
            "name": [{"service": "greeter.Greeter", "method": "SayHello"}],
            "retryPolicy": {
                "maxAttempts": 5,
                "initialBackoff": "0.05s",
                "maxBackoff": "1s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"]
            }
        }]
    })
    .to_string()
}

/// The same service config without its retry policy: health checks only.
pub fn without_retries() -> String {
    let mut config: serde_json::Value = serde_json::from_str(&round_robin_service_config()).unwrap();
    config.as_object_mut().unwrap().remove("methodConfig");
    config.to_string()
}
