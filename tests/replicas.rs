//! Replicas behind C-core's own client-side load balancing: three `server` example processes
//! on loopback, and clients whose channel names all three (`ipv4:a,b,c`) with `round_robin`,
//! health-checked subchannels, SayHello retried on UNAVAILABLE only where a test says so: a
//! claim that no call is lost is made without a retry policy.
//!
//! The evidence of where each call went is each replica's own log: at debug level it writes
//! one "Received greeting request" line per SayHello it served.

mod common;

use std::time::{Duration, Instant};

use common::examples::ServerProcess;
use common::lb::round_robin_service_config;
use common::lb::{without_retries, PeerClient, GREETING, WARM_UP};
use common::load::Load;
use greeter::{blocking, ClientError, Greeter, LoadBalancing};
use grpcio::RpcStatusCode;

const SUBSCRIPTION: &str = "Received subscription";

/// A `server` example on `127.0.0.1:port` (0: any free port) that logs every SayHello.
fn replica(port: u16, extra: &[&str]) -> ServerProcess {
    let addr = format!("127.0.0.1:{port}");
    let mut args = vec!["--addr", addr.as_str(), "--grace", "5s"];
    args.extend_from_slice(extra);
    ServerProcess::start(&args, "info,greeter=debug")
}

struct Replicas {
    servers: Vec<ServerProcess>,
    extra: Vec<String>,
}

impl Replicas {
    fn start(n: usize, extra: &[&str]) -> Self {
        Replicas {
            servers: (0..n).map(|_| replica(0, extra)).collect(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// The gRPC target that names every replica.
    fn target(&self) -> String {
        let addrs: Vec<String> = self.servers.iter().map(ServerProcess::addr).collect();
        format!("ipv4:{}", addrs.join(","))
    }

    /// SayHello calls each replica has served so far.
    fn served(&self) -> Vec<usize> {
        self.servers.iter().map(|s| s.count(GREETING)).collect()
    }

    /// Waits (up to 30 s) until `condition` holds for the per-replica counts; returns them.
    fn wait_served(&self, what: &str, condition: impl Fn(&[usize]) -> bool) -> Vec<usize> {
        let start = Instant::now();
        loop {
            let served = self.served();
            if condition(&served) {
                return served;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "timed out waiting until {what}; served {served:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts replica `i` again, on the port it had.
    fn restart(&mut self, i: usize) {
        let port = self.servers[i].port;
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        self.servers[i] = replica(port, &extra);
    }
}

/// Four client threads, each on its own round_robin channel; SayHello retried on UNAVAILABLE
/// as `retry` says.
fn load(target: &str, retry: bool) -> Load {
    Load::say_hello((0..4).map(|_| round_robin(target, Duration::from_secs(10), retry).into()).collect())
}

/// Our client with round_robin: health-checked, and SayHello retried on UNAVAILABLE when
/// `retry` (C-core's transparent retry of a call no server saw happens either way).
fn round_robin(target: &str, deadline: Duration, retry: bool) -> Greeter {
    Greeter::builder(target, deadline)
        .load_balancing(LoadBalancing::RoundRobin)
        .retry_unavailable(retry)
        .build()
        .unwrap()
}

impl Replicas {
    /// SayHello calls each replica has served so far, warm-up calls left out.
    fn counted(&self) -> Vec<usize> {
        self.servers.iter().map(|s| s.count(GREETING) - s.count(WARM_UP)).collect()
    }

    /// Calls `greeter` with warm-up names until every replica has served one: round_robin
    /// spreads calls over the connections that are up, and they come up one by one.
    fn warm_up(&self, greeter: &Greeter) {
        let start = Instant::now();
        while !self.servers.iter().all(|s| s.count(WARM_UP) > 0) {
            assert!(start.elapsed() < Duration::from_secs(30), "the client did not reach all three replicas in 30 s");
            futures::executor::block_on(greeter.say_hello(&"w".repeat(777))).unwrap();
        }
    }
}

/// Once its connections to all three replicas are up, round_robin takes them in turn: 300
/// calls from one client land exactly 100 on each.
#[test]
fn round_robin_spreads_300_calls_over_three_replicas() {
    let replicas = Replicas::start(3, &[]);
    let greeter = round_robin(&replicas.target(), Duration::from_secs(10), false);
    replicas.warm_up(&greeter);
    let client = blocking::Greeter::from(greeter);
    for i in 0..300 {
        assert_eq!(client.say_hello(&format!("rr {i}")).unwrap(), format!("Hello rr {i}"));
    }
    replicas.wait_served("the logs show all 300 calls", |_| replicas.counted().iter().sum::<usize>() == 300);
    assert_eq!(replicas.counted(), [100, 100, 100], "SayHello calls served per replica");
}

/// SIGTERM on a replica under load: its health turns NOT_SERVING, the clients' round_robin
/// stops picking it while it still serves (the drain), and then it stops. No call fails, with
/// no retry policy: a call lost would be a failure.
#[test]
fn a_replica_draining_on_sigterm_loses_no_call() {
    let mut replicas = Replicas::start(3, &[]);
    let load = load(&replicas.target(), false);
    replicas.wait_served("every replica gets traffic", |s| s.iter().all(|&n| n >= 20));

    replicas.servers[0].signal("TERM");
    let status = replicas.servers[0].wait_exit();
    assert!(status.success(), "the replica exits 0 after SIGTERM, got {status}");
    let at_exit = replicas.served();
    let moved = replicas.wait_served("the others serve on", |s| s[1] > at_exit[1] + 50 && s[2] > at_exit[2] + 50);
    let ok = load.stop_without_failures();
    eprintln!("served at replica 0's exit {at_exit:?}, later {moved:?}; {ok} calls OK");
}

/// What the drain is for, apart from any retry: after health turned NOT_SERVING (a watcher
/// heard it), a call that arrives on a new connection is served while `--drain` lasts, and
/// refused once the server has stopped accepting; with `--drain 0s` it is refused at once.
fn a_call_after_not_serving(drain: &str) -> Result<String, ClientError> {
    use greeter::proto::health::health_check_response::ServingStatus;
    use greeter::proto::health::{HealthCheckRequest, HealthClient};
    let replica = replica(0, &["--drain", drain]);
    let watcher = Greeter::new(&replica.addr(), Duration::from_secs(30));
    let mut watch = HealthClient::new(watcher.channel().clone())
        .watch_opt(&HealthCheckRequest::default(), common::deadline())
        .unwrap();
    let status = |w: &mut grpcio::ClientSStreamReceiver<greeter::proto::health::HealthCheckResponse>| {
        futures::executor::block_on(futures::TryStreamExt::try_next(w)).unwrap().unwrap().status.enum_value_or_default()
    };
    assert_eq!(status(&mut watch), ServingStatus::SERVING);
    replica.signal("TERM");
    assert_eq!(status(&mut watch), ServingStatus::NOT_SERVING, "the watcher hears it first");
    // A client of its own (no health checks, no retries): one attempt, on a new connection.
    let late = Greeter::new(&replica.addr(), Duration::from_secs(10));
    futures::executor::block_on(late.say_hello("after NOT_SERVING"))
}

#[test]
fn during_the_drain_a_call_after_not_serving_is_served() {
    assert_eq!(a_call_after_not_serving("5s").map_err(|e| e.to_string()), Ok("Hello after NOT_SERVING".to_owned()));
}

#[test]
fn without_a_drain_a_call_after_not_serving_is_refused() {
    let err = a_call_after_not_serving("0s").expect_err("no drain: the server already refuses calls");
    assert_eq!(err.code(), Some(RpcStatusCode::UNAVAILABLE), "{err}");
}

/// SIGKILL on a replica under load: unary calls on it are retried elsewhere (none fails: the
/// retry policy is what a crash needs, since the calls it was serving are lost), subscriptions
/// on it end UNAVAILABLE and the others finish; restarted on its port, it gets calls again.
#[test]
fn a_crashed_replica_costs_no_unary_call_and_gets_traffic_again_after_restart() {
    // Subscriptions of 100 ticks 50 ms apart: still running when the replica dies.
    let mut replicas = Replicas::start(3, &["--stock-ticks", "100", "--stock-interval", "50ms"]);
    let load = load(&replicas.target(), true);
    replicas.wait_served("every replica gets traffic", |s| s.iter().all(|&n| n >= 20));

    // The deadline is for a hung stream, not a slow one: a subscription runs 5 s at least, and
    // with this file's other tests beside it (some 20 processes on 2 cores) a replica's two
    // streams once took over 10 s.
    let greeter = round_robin(&replicas.target(), Duration::from_secs(60), true);
    // This client's own connections (a Greeter does not share C-core's subchannels) must be up
    // to all three before the subscriptions, or round_robin spreads them over the ready ones
    // only.
    replicas.warm_up(&greeter);
    let subscriptions: Vec<_> = (0..6)
        .map(|_| {
            let ticks = greeter.stock_prices("TSMC").unwrap();
            std::thread::spawn(move || futures::executor::block_on(futures::TryStreamExt::try_collect::<Vec<_>>(ticks)))
        })
        .collect();
    let start = Instant::now();
    while replicas.servers.iter().map(|s| s.count(SUBSCRIPTION)).sum::<usize>() < 6 {
        assert!(start.elapsed() < Duration::from_secs(30), "the 6 subscriptions did not all arrive");
        std::thread::sleep(Duration::from_millis(10));
    }
    let on_victim = replicas.servers[1].count(SUBSCRIPTION);

    replicas.servers[1].signal("KILL");
    replicas.servers[1].wait_exit();
    replicas.restart(1); // at once, on the port it had
    let results: Vec<Result<Vec<_>, ClientError>> = subscriptions.into_iter().map(|s| s.join().unwrap()).collect();
    let unavailable =
        results.iter().filter(|r| matches!(r, Err(e) if e.code() == Some(RpcStatusCode::UNAVAILABLE))).count();
    let complete = results.iter().filter(|r| matches!(r, Ok(ticks) if ticks.len() == 100)).count();
    replicas.wait_served("the restarted replica gets calls again", |s| s[1] >= 20);
    let (ok, failures) = load.stop();

    eprintln!("subscriptions: {on_victim} on the killed replica, {unavailable} ended UNAVAILABLE, {complete} complete; {ok} unary calls OK");
    assert!(failures.is_empty(), "{} unary calls failed: {:?}", failures.len(), &failures[..failures.len().min(5)]);
    assert!(on_victim >= 1, "round_robin put no subscription on replica 1");
    assert_eq!(unavailable, on_victim, "the killed replica's streams end UNAVAILABLE: {results:?}");
    assert_eq!(complete, 6 - on_victim, "the other streams finish: {results:?}");
}

/// Warm-up calls until every replica has one (the test watches the logs, then says so on the
/// client's stdin), then exactly 300 calls: exactly 100 on each replica.
fn peer_spreads_300_calls(lang: &str) {
    let replicas = Replicas::start(3, &[]);
    let mut client =
        PeerClient::start(lang, &replicas.target(), &round_robin_service_config(), &["--warmup", "--calls", "300"]);
    replicas.wait_served("the client reaches all three replicas", |_| {
        replicas.servers.iter().all(|s| s.count(WARM_UP) > 0)
    });
    client.go();
    let out = client.finish();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "CALLS ok=300 failed=0", "{lang}");
    replicas.wait_served("the logs show all 300 calls", |_| replicas.counted().iter().sum::<usize>() == 300);
    assert_eq!(replicas.counted(), [100, 100, 100], "{lang}: SayHello calls served per replica");
}

/// Four workers call until the test closes their stdin: a replica is stopped (SIGTERM) under
/// their load, and, with health checks but no retry policy, no call fails: the drain served
/// every call they had routed to it before they heard NOT_SERVING.
fn peer_loses_no_call_to_a_draining_replica(lang: &str) {
    let mut replicas = Replicas::start(3, &[]);
    let client = PeerClient::start(lang, &replicas.target(), &without_retries(), &["--until-eof", "--workers", "4"]);
    replicas.wait_served("every replica gets traffic", |s| s.iter().all(|&n| n >= 20));

    replicas.servers[0].signal("TERM");
    let status = replicas.servers[0].wait_exit();
    assert!(status.success(), "the replica exits 0 after SIGTERM, got {status}");
    let at_exit = replicas.served();
    replicas.wait_served("the others serve on", |s| s[1] > at_exit[1] + 50 && s[2] > at_exit[2] + 50);
    client.finish_without_failures();
}

#[test]
fn go_client_round_robin_spreads_300_calls() {
    peer_spreads_300_calls("go");
}

#[test]
fn python_client_round_robin_spreads_300_calls() {
    peer_spreads_300_calls("python");
}

#[test]
fn go_client_loses_no_call_to_a_draining_replica() {
    peer_loses_no_call_to_a_draining_replica("go");
}

#[test]
fn python_client_loses_no_call_to_a_draining_replica() {
    peer_loses_no_call_to_a_draining_replica("python");
}
