//! Replicas found through DNS, as on Kubernetes with a headless Service: dnsmasq answers
//! `greeter.test` with every replica's address (tests/common/dns.rs), each replica listens on
//! its own loopback address and the same port, as pods do, and clients dial
//! `dns://127.0.0.1:DNS_PORT/greeter.test:PORT` with round_robin.
//!
//! What decides whether a new replica gets traffic: a channel resolves the name again only
//! when one of its connections closes (neither C-core nor grpc-go re-resolves on a timer), at
//! most once per `min_resolution_interval` (30 s by default; 1 s here). The server's
//! `--max-connection-age` closes every connection after a while with a GOAWAY that lets its
//! calls finish; that is the trigger. Without it, a replica added under steady load gets
//! nothing (`without_max_connection_age_a_new_replica_gets_no_call`).
//!
//! The evidence of where each call went is each replica's log: one "Received greeting
//! request" line per SayHello.

mod common;

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use common::dns::Dns;
use common::examples::ServerProcess;
use common::lb::round_robin_service_config;
use common::lb::{without_retries, PeerClient, GREETING, WARM_UP};
use common::load::{self, Load};
use common::process::DEADLINE;
use greeter::{blocking, Greeter, LoadBalancing};

/// Connections closed after ~3 s (±10 %), their calls given 2 s more: SayHello takes
/// milliseconds, and a health-checking client cancels its Watch on the GOAWAY.
const AGE: &[&str] = &["--max-connection-age", "3s", "--max-connection-age-grace", "2s"];

/// How often a client may resolve the name again (C-core's and grpc-go's default is 30 s).
const RESOLUTION_INTERVAL: Duration = Duration::from_secs(1);

/// A /24 of loopback addresses of its own for each test: the tests of this file run at once,
/// and their replicas all listen on one port number each.
fn subnet() -> u8 {
    static NEXT: AtomicU8 = AtomicU8::new(40);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Replicas ("pods") on 127.0.K.2, .3, …, all on one port, published through dnsmasq.
struct Pods {
    subnet: u8,
    port: u16,
    servers: Vec<ServerProcess>,
    extra: Vec<String>,
    dns: Dns,
}

impl Pods {
    fn start(n: usize, extra: &[&str]) -> Pods {
        let subnet = subnet();
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        // The first replica picks the port (port 0); the others take the same one.
        let first = pod(&ip(subnet, 0), 0, &extra);
        let port = first.port;
        let mut servers = vec![first];
        servers.extend((1..n).map(|i| pod(&ip(subnet, i), port, &extra)));
        let addresses: Vec<String> = (0..n).map(|i| ip(subnet, i)).collect();
        let dns = Dns::start(&addresses.iter().map(String::as_str).collect::<Vec<_>>());
        Pods { subnet, port, servers, extra, dns }
    }

    fn target(&self) -> String {
        self.dns.target(self.port)
    }

    /// One more replica, on the next address (not yet in DNS).
    fn add(&mut self) -> usize {
        let i = self.servers.len();
        self.servers.push(pod(&ip(self.subnet, i), self.port, &self.extra));
        i
    }

    /// Publishes exactly the replicas `live` in DNS.
    fn publish(&mut self, live: &[usize]) {
        let addresses: Vec<String> = live.iter().map(|&i| ip(self.subnet, i)).collect();
        self.dns.set(&addresses.iter().map(String::as_str).collect::<Vec<_>>());
    }

    fn served(&self) -> Vec<usize> {
        self.servers.iter().map(|s| s.count(GREETING)).collect()
    }

    fn counted(&self) -> Vec<usize> {
        self.servers.iter().map(|s| s.count(GREETING) - s.count(WARM_UP)).collect()
    }

    /// Whether replica `i` has served a call of every client thread of [`our_load`] (each
    /// names its calls with a length of its own): then every channel has re-resolved the
    /// name and connected to it.
    fn reached_by_every_client(&self, i: usize) -> bool {
        (0..LOAD_CLIENTS).all(|t| self.servers[i].count(&format!("({} bytes of name)", load::name_len(t))) > 0)
    }

    /// Waits (up to `limit`) until `condition` holds for the per-replica counts; returns them.
    fn wait_served(&self, what: &str, limit: Duration, condition: impl Fn(&[usize]) -> bool) -> Vec<usize> {
        let start = Instant::now();
        loop {
            let served = self.served();
            if condition(&served) {
                return served;
            }
            assert!(start.elapsed() < limit, "timed out ({limit:?}) waiting until {what}; served {served:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn ip(subnet: u8, i: usize) -> String {
    format!("127.0.{subnet}.{}", i + 2)
}

fn pod(host: &str, port: u16, extra: &[String]) -> ServerProcess {
    let addr = format!("{host}:{port}");
    let mut args = vec!["--addr", addr.as_str()];
    args.extend(extra.iter().map(String::as_str));
    ServerProcess::start(&args, "info,greeter=debug")
}

/// Our client as a user sets it up for DNS discovery: round_robin, and re-resolution allowed
/// every second; no retry policy, so a call lost to a closing connection shows as a failure.
fn our_client(target: &str) -> Greeter {
    Greeter::builder(target, Duration::from_secs(10))
        .load_balancing(LoadBalancing::RoundRobin)
        .retry_unavailable(false)
        .min_resolution_interval(RESOLUTION_INTERVAL)
        .build()
        .unwrap()
}

/// Client threads of [`our_load`], each on its own channel, like separate client processes.
const LOAD_CLIENTS: usize = 4;

fn our_load(target: &str) -> Load {
    Load::say_hello((0..LOAD_CLIENTS).map(|_| our_client(target).into()).collect())
}

/// The Go or Python lb-client's flag for the resolution interval.
fn peer_interval() -> String {
    format!("{}s", RESOLUTION_INTERVAL.as_secs())
}

// --- spread ----------------------------------------------------------------------------

/// Once its connections to the three addresses the name resolves to are up, round_robin
/// takes them in turn: 300 calls land exactly 100 on each.
#[test]
fn our_client_spreads_300_calls_over_the_replicas_the_name_resolves_to() {
    let pods = Pods::start(3, &[]);
    let greeter = our_client(&pods.target());
    let start = Instant::now();
    while !pods.servers.iter().all(|s| s.count(WARM_UP) > 0) {
        assert!(start.elapsed() < Duration::from_secs(30), "the client did not reach all three replicas in 30 s");
        futures::executor::block_on(greeter.say_hello(&"w".repeat(777))).unwrap();
    }
    let client = blocking::Greeter::from(greeter);
    for i in 0..300 {
        assert_eq!(client.say_hello(&format!("dns {i}")).unwrap(), format!("Hello dns {i}"));
    }
    pods.wait_served("the logs show all 300 calls", DEADLINE, |_| pods.counted().iter().sum::<usize>() == 300);
    assert_eq!(pods.counted(), [100, 100, 100], "SayHello calls served per replica");
    assert!(pods.dns.queries() >= 1, "the client asked dnsmasq: {:#?}", pods.dns.log());
}

fn peer_spreads_300_calls(lang: &str) {
    let pods = Pods::start(3, &[]);
    let mut client =
        PeerClient::start(lang, &pods.target(), &round_robin_service_config(), &["--warmup", "--calls", "300"]);
    pods.wait_served("the client reaches all three replicas", DEADLINE, |_| {
        pods.servers.iter().all(|s| s.count(WARM_UP) > 0)
    });
    client.go();
    let out = client.finish();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "CALLS ok=300 failed=0",
        "{lang}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    pods.wait_served("the logs show all 300 calls", DEADLINE, |_| pods.counted().iter().sum::<usize>() == 300);
    assert_eq!(pods.counted(), [100, 100, 100], "{lang}: SayHello calls served per replica");
}

#[test]
fn go_client_spreads_300_calls_over_the_replicas_the_name_resolves_to() {
    peer_spreads_300_calls("go");
}

#[test]
fn python_client_spreads_300_calls_over_the_replicas_the_name_resolves_to() {
    peer_spreads_300_calls("python");
}

// --- scale up --------------------------------------------------------------------------

/// Within how long a replica added to DNS must have its first 20 calls, with a 3 s age: the
/// first GOAWAY on any of a channel's connections comes within 3.3 s, the re-resolution within
/// 1 s of it, then a connection and a health check; ~5 s in all, the rest is room for a
/// loaded machine. Without the age it never happens (the control below).
const SCALE_UP_WITHIN: Duration = Duration::from_secs(20);

/// Scale-up under load: a fourth replica started and published; with `--max-connection-age`
/// every client's channel reconnects, re-resolves and spreads onto it, and no call fails.
#[test]
fn with_max_connection_age_a_new_replica_gets_traffic_and_no_call_fails() {
    let mut pods = Pods::start(3, AGE);
    let load = our_load(&pods.target());
    pods.wait_served("every replica gets traffic", DEADLINE, |s| s.iter().all(|&n| n >= 20));
    let new = pods.add();
    pods.publish(&[0, 1, 2, new]);
    let published = Instant::now();
    pods.wait_served("the new replica serves 20 calls", SCALE_UP_WITHIN, |s| s[new] >= 20);
    eprintln!("the new replica had 20 calls {:?} after it was published", published.elapsed());
    // Every client's channel re-resolved and connected to it (its log shows each one's calls).
    pods.wait_served("every client reaches the new replica", SCALE_UP_WITHIN, |_| pods.reached_by_every_client(new));
    eprintln!("every client reached the new replica {:?} after it was published", published.elapsed());
    // Its share over the next 2,000 calls: round_robin over four ready replicas gives each a
    // quarter. A connection closed by its age is away for a reconnection now and then, which
    // the tolerance allows for.
    let before = pods.served();
    pods.wait_served("2,000 more calls", DEADLINE, |s| s.iter().sum::<usize>() >= before.iter().sum::<usize>() + 2_000);
    let after = pods.served();
    let share = (after[new] - before[new]) as f64 / (after.iter().sum::<usize>() - before.iter().sum::<usize>()) as f64;
    let ok = load.stop_without_failures();
    eprintln!("served {after:?}; the new replica's share of the last calls {share:.3}; {ok} calls OK");
    assert!((0.2..=0.3).contains(&share), "the new replica's share is a quarter, got {share:.3}: {after:?}");
}

/// The control: the same scale-up without `--max-connection-age`. Under steady load no
/// connection closes, so no channel re-resolves (dnsmasq sees no query) and the new replica
/// gets no call, though it is up and published: a new client reaches it at once.
#[test]
fn without_max_connection_age_a_new_replica_gets_no_call() {
    let mut pods = Pods::start(3, &[]);
    let load = our_load(&pods.target());
    pods.wait_served("every replica gets traffic", DEADLINE, |s| s.iter().all(|&n| n >= 20));
    let new = pods.add();
    pods.publish(&[0, 1, 2, new]);
    let (queries, published) = (pods.dns.queries(), Instant::now());
    // An absence needs a window: 2,000 calls, and at least 10 s, twice what the age test's new
    // replica needs for its first 20 calls.
    let before = pods.served();
    pods.wait_served("2,000 more calls", DEADLINE, |s| s.iter().sum::<usize>() >= before.iter().sum::<usize>() + 2_000);
    std::thread::sleep(Duration::from_secs(10).saturating_sub(published.elapsed()));
    let served = pods.served();
    assert_eq!(served[new], 0, "no channel re-resolved, so the new replica got no call: {served:?}");
    assert_eq!(pods.dns.queries(), queries, "no channel asked dnsmasq again");
    load.stop_without_failures();

    let fresh = our_client(&pods.target());
    let start = Instant::now();
    while pods.servers[new].count(WARM_UP) == 0 {
        assert!(start.elapsed() < Duration::from_secs(30), "a new client did not reach the new replica in 30 s");
        futures::executor::block_on(fresh.say_hello(&"w".repeat(777))).unwrap();
    }
}

/// The Go or Python lb-client, health checks and no retry policy (a call lost to a closing
/// connection would show as a failure), under a 3 s age: it spreads onto a new replica too.
fn peer_scales_up(lang: &str) {
    let mut pods = Pods::start(3, AGE);
    let interval = peer_interval();
    let args = ["--until-eof", "--workers", "4", "--min-resolution-interval", interval.as_str()];
    let client = PeerClient::start(lang, &pods.target(), &without_retries(), &args);
    pods.wait_served("every replica gets traffic", DEADLINE, |s| s.iter().all(|&n| n >= 20));
    let new = pods.add();
    pods.publish(&[0, 1, 2, new]);
    let published = Instant::now();
    pods.wait_served("the new replica serves 20 calls", SCALE_UP_WITHIN, |s| s[new] >= 20);
    eprintln!("{lang}: the new replica had 20 calls {:?} after it was published", published.elapsed());
    client.finish_without_failures();
}

#[test]
fn go_client_with_max_connection_age_spreads_onto_a_new_replica() {
    peer_scales_up("go");
}

#[test]
fn python_client_with_max_connection_age_spreads_onto_a_new_replica() {
    peer_scales_up("python");
}

// --- rollout ---------------------------------------------------------------------------

/// A rollout step under load, without any age setting: a replacement replica published in
/// place of an old one, and the old one drained (SIGTERM: NOT_SERVING, `--drain`, GOAWAY).
/// The drain's GOAWAY is itself the trigger: every channel re-resolves, finds the new
/// address, and no unary call fails.
#[test]
fn a_drained_replica_replaced_in_dns_hands_its_traffic_to_the_new_one() {
    let mut pods = Pods::start(3, &[]);
    let load = our_load(&pods.target());
    pods.wait_served("every replica gets traffic", DEADLINE, |s| s.iter().all(|&n| n >= 20));
    let new = pods.add();
    pods.publish(&[1, 2, new]);
    pods.servers[0].signal("TERM");
    let status = pods.servers[0].wait_exit();
    assert!(status.success(), "the drained replica exits 0 after SIGTERM, got {status}");
    let at_exit = pods.served();
    pods.wait_served("the new replica serves 20 calls", SCALE_UP_WITHIN, |s| s[new] >= 20);
    let later = pods.wait_served("the others serve on", DEADLINE, |s| s[1] > at_exit[1] + 50 && s[2] > at_exit[2] + 50);
    let ok = load.stop_without_failures();
    eprintln!("served at the old replica's exit {at_exit:?}, later {later:?}; {ok} calls OK");
}
