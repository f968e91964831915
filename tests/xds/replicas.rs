//! Replicas for the xDS tests: our server, in this process, each on a free loopback port with
//! its access log in a file of its own; what each served is read back from that log.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use greeter::{AccessLog, GracefulShutdown, GreeterServer, ServerConfig};

pub const SAY_HELLO: &str = "/greeter.Greeter/SayHello";
/// The warm-up calls of the xDS clients (`--warmup`).
pub const HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";

/// One call, as a replica's access log tells it.
pub struct Served {
    pub method: String,
    pub started: SystemTime,
}

pub struct Replica {
    _server: GreeterServer,
    log: PathBuf,
    pub addr: String,
}

impl Replica {
    /// A replica logging to `dir/name.log`; its ticks 1 ms apart, so a soak's subscriptions
    /// are short.
    pub fn start(dir: &Path, name: &str) -> Self {
        let log = dir.join(format!("{name}.log"));
        let mut config = ServerConfig {
            addr: "127.0.0.1:0".into(),
            access_log: Some(AccessLog::File(log.clone())),
            // Dropped at the test's end: nothing to drain.
            shutdown: GracefulShutdown { grace: Duration::ZERO, drain: Duration::ZERO },
            ..Default::default()
        };
        config.greeter.stock_interval = Duration::from_millis(1);
        let server = config.start().expect("a replica starts");
        let addr = format!("127.0.0.1:{}", server.port());
        Replica { _server: server, log, addr }
    }

    /// Every call logged so far.
    pub fn served(&self) -> Vec<Served> {
        let text = match std::fs::read_to_string(&self.log) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => panic!("cannot read {}: {e}", self.log.display()),
        };
        // A line being written may be cut short: only whole lines count.
        let whole = text.rfind('\n').map_or("", |end| &text[..end]);
        whole
            .lines()
            .map(|line| {
                let entry: serde_json::Value =
                    serde_json::from_str(line).unwrap_or_else(|e| panic!("access log line {line:?}: {e}"));
                let started = entry["time"].as_str().expect("time");
                Served {
                    method: entry["method"].as_str().expect("method").to_owned(),
                    started: humantime::parse_rfc3339_weak(started).unwrap_or_else(|e| panic!("{started}: {e}")),
                }
            })
            .collect()
    }

    /// Calls of `method` logged so far.
    pub fn count(&self, method: &str) -> usize {
        self.served().iter().filter(|s| s.method == method).count()
    }

    /// When the first call that started at or after `since` started.
    pub fn first_call_since(&self, since: SystemTime) -> Option<SystemTime> {
        self.served().into_iter().map(|s| s.started).filter(|&t| t >= since).min()
    }

    /// When the last call logged so far started.
    pub fn last_call(&self) -> Option<SystemTime> {
        self.served().into_iter().map(|s| s.started).max()
    }
}

/// `n` replicas, logging into `dir`.
pub fn start(dir: &Path, n: usize) -> Vec<Replica> {
    (0..n).map(|i| Replica::start(dir, &format!("replica-{i}"))).collect()
}

/// SayHello calls each replica has logged.
pub fn say_hellos(replicas: &[&Replica]) -> Vec<usize> {
    replicas.iter().map(|r| r.count(SAY_HELLO)).collect()
}

/// Calls of any method each replica has logged.
pub fn calls(replicas: &[&Replica]) -> Vec<usize> {
    replicas.iter().map(|r| r.served().len()).collect()
}

/// Waits (up to 30 s) until `condition` holds for the SayHello calls each of `replicas` has
/// logged; returns them.
pub fn wait_say_hellos(replicas: &[&Replica], what: &str, condition: impl Fn(&[usize]) -> bool) -> Vec<usize> {
    wait_counts(replicas, say_hellos, what, condition)
}

/// Waits (up to 30 s) until `condition` holds for the calls of any method each of `replicas`
/// has logged: a client that makes several kinds of calls in turn may send all of one kind
/// to one replica (round robin over two replicas, four calls a round).
pub fn wait_calls(replicas: &[&Replica], what: &str, condition: impl Fn(&[usize]) -> bool) -> Vec<usize> {
    wait_counts(replicas, calls, what, condition)
}

fn wait_counts(
    replicas: &[&Replica],
    count: fn(&[&Replica]) -> Vec<usize>,
    what: &str,
    condition: impl Fn(&[usize]) -> bool,
) -> Vec<usize> {
    let start = Instant::now();
    loop {
        let counts = count(replicas);
        if condition(&counts) {
            return counts;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "timed out waiting until {what}; calls {counts:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits (up to 30 s) until each of `replicas` has answered a warm-up health check.
pub fn wait_warm(replicas: &[&Replica]) {
    let start = Instant::now();
    while !replicas.iter().all(|r| r.count(HEALTH_CHECK) > 0) {
        let checks: Vec<usize> = replicas.iter().map(|r| r.count(HEALTH_CHECK)).collect();
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the client did not reach every replica: health checks {checks:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
