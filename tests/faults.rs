//! When the network misbehaves: latency, a slow link, resets, black holes, tiny segments and
//! cut connections, put between our client and our in-process server by Toxiproxy
//! (`common::toxiproxy`), and a hung replica behind nginx. For each fault: what the client
//! sees, after how long, what the server frees (its gauges and call counts, read from
//! `/metrics`), and that the same client's next call succeeds once the fault is gone.
//!
//! The bounds with every setting at its default (a dead server noticed by the client, a dead
//! client's subscription freed by the server, a quiet Chat left alone by both sides' ping
//! rules) are minutes long; one test runs them side by side on threads of its own, so the
//! quiet Chat's ten minutes set the file's length while the other tests run beside it. Every
//! figure is printed (`--nocapture`); docs/operations.md, "When the network fails", states
//! them.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::examples::{example, ServerProcess};
use common::nginx::Nginx;
use common::process::KillOnDrop;
use common::scrape::Metrics;
use common::toxiproxy::{Direction, Toxic, Toxiproxy};
use common::TestServer;
use futures::executor::block_on;
use futures::{Stream, StreamExt as _, TryStreamExt as _};
use futures_timer::Delay;
use greeter::patterns::chat::answer;
use greeter::patterns::stock_price::PRICE_RANGE;
use greeter::proto::ChatMessage;
use greeter::{blocking, ClientError, Greeter, GreeterConfig, Keepalive, ServerConfig, TransportLimits};
use grpcio::RpcStatusCode;

/// A call to make, and the method it calls.
type NamedCall<'a> = (&'static str, Box<dyn Fn() -> Result<(), ClientError> + 'a>);

/// The four methods as the metrics label them.
const METHODS: [(&str, &str); 4] = [
    ("unary", "SayHello"),
    ("server_stream", "GetStockPrice"),
    ("client_stream", "RecordMetrics"),
    ("bidi_stream", "Chat"),
];

/// Our server with `/metrics`: `ticks` stock ticks `interval` apart, `transport` as given.
fn server(ticks: u32, interval: Duration, transport: TransportLimits) -> TestServer {
    TestServer::start(ServerConfig {
        addr: "127.0.0.1:0".into(),
        greeter: GreeterConfig { stock_ticks: ticks, stock_interval: interval, ..GreeterConfig::default() },
        transport,
        metrics_addr: Some("127.0.0.1:0".into()),
        ..ServerConfig::default()
    })
}

/// Our client to `addr`, every call with `deadline`, keepalive as given.
fn client(addr: &str, deadline: Duration, keepalive: Keepalive) -> Greeter {
    Greeter::builder(addr, deadline).keepalive(keepalive).build().unwrap()
}

/// Calls started and not yet ended, all four methods.
fn in_flight(m: &Metrics) -> f64 {
    METHODS.iter().map(|(kind, method)| m.started(kind, method) - m.handled_all(kind, method)).sum()
}

/// What the server holds for calls: open subscriptions, open chats, calls in flight.
fn held(m: &Metrics) -> [f64; 3] {
    [m.subscriptions_active(), m.value("greeter_chats_open"), in_flight(m)]
}

/// Waits (up to `limit`) until the server holds nothing for any call; how long that took.
fn wait_until_freed(server: &TestServer, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let now = held(&server.scrape());
        if now == [0.0; 3] {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "after {limit:?} the server still holds [subscriptions, chats, calls] {now:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `greeter`'s channel knows its connection is gone, so that the next call makes
/// a new one. C-core fails the calls on a closed connection a moment (up to a few ms) before
/// the channel's state leaves READY; a call made in between meets the closed connection and
/// fails UNAVAILABLE too.
fn wait_until_disconnected(greeter: &Greeter) {
    wait_for("the channel sees its connection closed", Duration::from_secs(10), || {
        greeter.channel().check_connectivity_state(false) != grpcio::ConnectivityState::GRPC_CHANNEL_READY
    });
}

/// Polls `condition` every 10 ms until it holds; panics with `what` after `limit`.
fn wait_for(what: &str, limit: Duration, condition: impl Fn() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `n` chat messages, "m0", "m1", …
fn messages(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("m{i}")).collect()
}

/// How many ticks a subscription of the server under test sends.
#[derive(Clone, Copy)]
enum Ticks {
    /// Five, after which the call ends OK.
    Five,
    /// More than five (for ever, in some tests): the client takes five and cancels.
    More,
}

/// The four patterns through `greeter`, every result checked: a greeting for a name of
/// `name_len` bytes, five ticks, `values` metrics summed exactly, `chat` messages answered in
/// order. How long the four took.
fn four_patterns(greeter: &Greeter, ticks: Ticks, name_len: usize, values: usize, chat: usize) -> Duration {
    let start = Instant::now();
    let g = blocking::Greeter::from(greeter.clone());
    let name = "n".repeat(name_len);
    assert_eq!(g.say_hello(&name).map_err(|e| e.to_string()), Ok(format!("Hello {name}")));
    let ticks = match ticks {
        Ticks::Five => g.stock_prices("TSMC", |_| {}).unwrap(),
        Ticks::More => block_on(greeter.stock_prices("TSMC").unwrap().take(5).try_collect::<Vec<_>>()).unwrap(),
    };
    assert_eq!(ticks.len(), 5, "{ticks:?}");
    assert!(ticks.iter().all(|t| t.symbol == "TSMC" && PRICE_RANGE.contains(&t.price)), "{ticks:?}");
    let metrics: Vec<f64> = (0..values).map(|i| i as f64).collect();
    let summary = g.record_metrics(&metrics).unwrap();
    assert_eq!(summary.count as usize, values);
    assert_eq!(summary.average, if values == 0 { 0.0 } else { (values - 1) as f64 / 2.0 });
    let sent = messages(chat);
    let replies = g.chat("faults", &sent, |_| {}).unwrap();
    let want: Vec<ChatMessage> = sent
        .iter()
        .map(|m| answer(&ChatMessage { user: "faults".into(), message: m.clone(), ..Default::default() }))
        .collect();
    assert_eq!(replies, want);
    start.elapsed()
}

/// The server's exact counts, once every call has ended there (a client may hold its last
/// reply a moment before the server has counted the call): `calls` started and ended OK for
/// each of `METHODS`, `values` metrics and `chat` chat messages received, `ticks` sent.
fn assert_counted(server: &TestServer, calls: [f64; 4], values: f64, chat: f64, ticks: f64) {
    wait_until_freed(server, Duration::from_secs(10));
    let m = server.scrape();
    for ((kind, method), calls) in METHODS.into_iter().zip(calls) {
        assert_eq!(m.started(kind, method), calls, "{method} started");
        assert_eq!(m.handled(kind, method, "OK"), calls, "{method} OK");
    }
    let received = |kind, method| m.greeter("grpc_server_msg_received_total", kind, method, None);
    assert_eq!(received("client_stream", "RecordMetrics"), values, "metrics received");
    assert_eq!(received("bidi_stream", "Chat"), chat, "chat messages received");
    assert_eq!(m.ticks_sent(), ticks, "ticks sent");
}

/// How a call of a long-running set ended, and when.
#[derive(Debug)]
struct Ended {
    method: &'static str,
    code: Option<RpcStatusCode>,
    message: String,
    at: Instant,
    /// Ticks or chat replies received, all checked whole, before it ended.
    received: usize,
}

/// Calls of the four patterns that run until the connection fails, each on a thread of its
/// own: a SayHello (when asked), a subscription, RecordMetrics fed a value every `every`, a
/// Chat sending a message every `every`. Every message received is checked.
struct Running {
    start: Instant,
    ticks: Arc<AtomicUsize>,
    replies: Arc<AtomicUsize>,
    calls: Vec<JoinHandle<Ended>>,
}

impl Running {
    fn start(greeter: &Greeter, every: Duration) -> Self {
        let start = Instant::now();
        let (ticks, replies) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let mut calls = Vec::new();

        let (g, seen) = (greeter.clone(), ticks.clone());
        calls.push(std::thread::spawn(move || {
            let stream = g.stock_prices("TSMC").unwrap();
            ended("GetStockPrice", &seen, stream, |t| t.symbol == "TSMC" && PRICE_RANGE.contains(&t.price))
        }));

        let g = greeter.clone();
        calls.push(std::thread::spawn(move || {
            let values = futures::stream::unfold(0u64, move |i| async move {
                Delay::new(every).await;
                Some((i as f64, i + 1))
            });
            let result = block_on(g.record_metrics(values));
            let result = result.map(|s| panic!("RecordMetrics of endless values ended with a summary: {s:?}"));
            Ended::of("RecordMetrics", 0, result)
        }));

        let (g, seen) = (greeter.clone(), replies.clone());
        calls.push(std::thread::spawn(move || {
            let sent = futures::stream::unfold(0u64, move |i| async move {
                Delay::new(every).await;
                Some((format!("m{i}"), i + 1))
            });
            let stream = g.chat("faults", sent).unwrap();
            let index = AtomicUsize::new(0);
            ended("Chat", &seen, stream, move |r: &ChatMessage| {
                let i = index.fetch_add(1, SeqCst);
                r.user == "Server" && r.message == format!("Server received: m{i}")
            })
        }));
        Running { start, ticks, replies, calls }
    }

    /// A SayHello too, started now.
    fn with_say_hello(mut self, greeter: &Greeter) -> Self {
        let g = greeter.clone();
        self.calls.push(std::thread::spawn(move || {
            let result = block_on(g.say_hello("into the hole"));
            let result = result.map(|r| panic!("SayHello answered {r:?}"));
            Ended::of("SayHello", 0, result)
        }));
        self
    }

    /// Waits until the subscription has `ticks` ticks and the Chat `replies` replies.
    fn wait_for(&self, ticks: usize, replies: usize) {
        wait_for("the streams flow", Duration::from_secs(30), || {
            self.ticks.load(SeqCst) >= ticks && self.replies.load(SeqCst) >= replies
        });
    }

    /// How each call ended, from `self.start`.
    fn ended(self, limit: Duration) -> Vec<Ended> {
        let deadline = self.start + limit;
        self.calls
            .into_iter()
            .map(|call| {
                while !call.is_finished() {
                    assert!(Instant::now() < deadline, "a call still runs {limit:?} after the streams started");
                    std::thread::sleep(Duration::from_millis(10));
                }
                call.join().unwrap()
            })
            .collect()
    }
}

impl Ended {
    fn of(method: &'static str, received: usize, result: Result<(), ClientError>) -> Self {
        let at = Instant::now();
        let (code, message) = match &result {
            Ok(()) => (Some(RpcStatusCode::OK), String::new()),
            Err(e) => (e.code(), e.to_string()),
        };
        Ended { method, code, message, at, received }
    }
}

/// Drains `stream`, counting in `seen` each message that passes `whole`; how it ended.
fn ended<T: std::fmt::Debug>(
    method: &'static str,
    seen: &AtomicUsize,
    stream: impl Stream<Item = Result<T, ClientError>>,
    whole: impl Fn(&T) -> bool,
) -> Ended {
    let result = block_on(std::pin::pin!(stream).try_for_each(|message| {
        assert!(whole(&message), "{method}: not the message it should be: {message:?}");
        seen.fetch_add(1, SeqCst);
        futures::future::ready(Ok(()))
    }));
    Ended::of(method, seen.load(SeqCst), result)
}

/// Latency of 200 ms ± 50 each way: every pattern completes, exactly, taking at least a round
/// trip (300 ms); with a deadline shorter than a round trip, every pattern ends
/// DEADLINE_EXCEEDED at its deadline. The server's counts are exact, and once the latency is
/// gone the same clients answer at loopback speed.
#[test]
fn latency_slows_every_pattern_and_a_deadline_ends_it_on_time() {
    // The hasty calls have a server of their own: how a call that reached its server ends
    // there depends on which comes first, the handler's reply or the client's cancel (or
    // the server's own deadline), a race a loaded machine decides either way; the patient
    // client's server counts exactly.
    let hasty_server = server(5, Duration::from_millis(10), TransportLimits::default());
    let server = server(5, Duration::from_millis(10), TransportLimits::default());
    let toxiproxy = Toxiproxy::start();
    let proxy = toxiproxy.proxy("latency", &server.addr);
    let hasty_proxy = toxiproxy.proxy("hasty-latency", &hasty_server.addr);
    proxy.add_both_ways("latency", Toxic::latency(200, 50));
    hasty_proxy.add_both_ways("latency", Toxic::latency(200, 50));

    let patient = client(&proxy.addr, Duration::from_secs(30), Keepalive::default());
    let took = four_patterns(&patient, Ticks::Five, 16, 100, 10);
    eprintln!("four patterns with 200 ± 50 ms each way: {took:?}");
    // Each call waits at least one round trip (2 × 150 ms); RecordMetrics and Chat more.
    assert!(took >= Duration::from_millis(4 * 300), "{took:?}");

    let deadline = Duration::from_millis(250);
    let hasty = client(&hasty_proxy.addr, deadline, Keepalive::default());
    assert!(block_on(hasty.channel().wait_for_connected(Duration::from_secs(10))), "connects through the latency");
    let g = blocking::Greeter::from(hasty.clone());
    let calls: [NamedCall; 4] = [
        ("SayHello", Box::new(|| g.say_hello("hasty").map(drop))),
        ("GetStockPrice", Box::new(|| g.stock_prices("TSMC", |_| {}).map(drop))),
        ("RecordMetrics", Box::new(|| g.record_metrics(&[1.0, 2.0]).map(drop))),
        ("Chat", Box::new(|| g.chat("hasty", &messages(2), |_| {}).map(drop))),
    ];
    for (method, call) in calls {
        let start = Instant::now();
        let err = call().expect_err("a deadline shorter than a round trip");
        let after = start.elapsed();
        eprintln!("{method} with a {deadline:?} deadline through 200 ± 50 ms: {:?} after {after:?}", err.code());
        assert_eq!(err.code(), Some(RpcStatusCode::DEADLINE_EXCEEDED), "{method}: {err}");
        assert!(after >= deadline && after < deadline + Duration::from_millis(250), "{method}: ended after {after:?}");
    }
    // Each hasty call reached its server (the headers arrive before the client's cancel
    // does), and ended there: served, cancelled or out of time.
    wait_until_freed(&hasty_server, Duration::from_secs(10));
    let m = hasty_server.scrape();
    let ended = ["OK", "Canceled", "DeadlineExceeded"];
    for (kind, method) in METHODS {
        assert_eq!(m.started(kind, method), 1.0, "{method} started on the hasty server");
        let codes = scrape_codes(&m, kind, method);
        assert!(codes.len() == 1 && ended.contains(&codes[0].0), "{method} ended {codes:?}");
    }

    proxy.remove_both_ways("latency");
    hasty_proxy.remove_both_ways("latency");
    let fast = four_patterns(&patient, Ticks::Five, 16, 100, 10);
    assert!(fast < Duration::from_millis(300), "the same client, latency gone: {fast:?}");
    assert_eq!(g.say_hello("after").map_err(|e| e.to_string()), Ok("Hello after".to_owned()));
    wait_until_freed(&hasty_server, Duration::from_secs(10));
    assert_eq!(hasty_server.scrape().handled("unary", "SayHello", "OK") - m.handled("unary", "SayHello", "OK"), 1.0);
    // Two rounds of the four patterns on the patient client's server.
    assert_counted(&server, [2.0; 4], 2.0 * 100.0, 2.0 * 10.0, 2.0 * 5.0);
}

/// A link of 32 KB/s each way: every pattern completes exactly, no sooner than its bytes allow
/// (a 16 KiB greeting and its reply, 2000 metrics); a call whose bytes need longer than its
/// deadline ends DEADLINE_EXCEEDED at the deadline; and the same client is fast again once
/// the link is.
#[test]
fn a_slow_link_carries_every_pattern_whole_and_a_deadline_ends_it_on_time() {
    let server = server(5, Duration::from_millis(10), TransportLimits::default());
    let toxiproxy = Toxiproxy::start();
    let proxy = toxiproxy.proxy("slow", &server.addr);
    let patient = client(&proxy.addr, Duration::from_secs(60), Keepalive::default());
    assert!(block_on(patient.channel().wait_for_connected(Duration::from_secs(10))));
    proxy.add_both_ways("slow", Toxic::bandwidth(32));

    let took = four_patterns(&patient, Ticks::Five, 16 * 1024, 2000, 10);
    // The greeting's name goes up, then comes back in the reply; a metric is 14 bytes framed.
    let least = Duration::from_secs_f64((2.0 * 16.0 * 1024.0 + 2000.0 * 14.0) / 32_000.0);
    eprintln!("four patterns over 32 KB/s, a 16 KiB name and 2000 metrics: {took:?} (the bytes alone: {least:?})");
    assert!(took >= least, "{took:?}, sooner than the link allows ({least:?})");
    assert_counted(&server, [1.0; 4], 2000.0, 10.0, 5.0);

    let deadline = Duration::from_secs(1);
    let hasty = blocking::Greeter::from(client(&proxy.addr, deadline, Keepalive::default()));
    let big = "n".repeat(64 * 1024);
    let metrics = vec![1.5; 5000];
    let chat = vec!["c".repeat(8 * 1024); 8];
    let calls: [NamedCall; 3] = [
        ("SayHello", Box::new(|| hasty.say_hello(&big).map(drop))),
        ("RecordMetrics", Box::new(|| hasty.record_metrics(&metrics).map(drop))),
        ("Chat", Box::new(|| hasty.chat("hasty", &chat, |_| {}).map(drop))),
    ];
    for (method, call) in calls {
        let start = Instant::now();
        let err = call().expect_err("64 KB at 32 KB/s takes two seconds");
        let after = start.elapsed();
        eprintln!("{method} of 64 KB with a {deadline:?} deadline over 32 KB/s: {:?} after {after:?}", err.code());
        assert_eq!(err.code(), Some(RpcStatusCode::DEADLINE_EXCEEDED), "{method}: {err}");
        assert!(after >= deadline && after < deadline + Duration::from_millis(250), "{method}: ended after {after:?}");
    }
    // What the server made of the hasty calls depends on how much of each arrived before the
    // client's cancel did; either way it holds nothing for them.
    wait_until_freed(&server, Duration::from_secs(30));

    proxy.remove_both_ways("slow");
    let fast = four_patterns(&patient, Ticks::Five, 16 * 1024, 2000, 10);
    assert!(fast < Duration::from_secs(1), "the same client, the link fast again: {fast:?}");
}

/// `reset_peer` mid-stream: a subscription, RecordMetrics and a Chat running on one
/// connection when it is reset (RST both ways) all end UNAVAILABLE at once; the server frees
/// the subscription, the chat and the three calls; the same client's next calls reconnect and
/// succeed. A SayHello whose connection closes as its request goes out ends UNAVAILABLE too,
/// and the server never sees it.
#[test]
fn a_reset_mid_stream_ends_every_call_unavailable_at_once_and_the_server_frees_them() {
    let server = server(u32::MAX, Duration::from_millis(10), TransportLimits::default());
    let toxiproxy = Toxiproxy::start();
    let proxy = toxiproxy.proxy("reset", &server.addr);
    // In place, disarmed, before the client connects: its connection is set to be reset.
    proxy.add_disarmed("reset", Direction::Downstream, Toxic::reset_peer(0));
    let greeter = client(&proxy.addr, Duration::from_secs(60), Keepalive::default());
    let running = Running::start(&greeter, Duration::from_millis(10));
    running.wait_for(5, 5);
    assert_eq!(held(&server.scrape()), [1.0, 1.0, 3.0], "[subscriptions, chats, calls] mid-stream");

    // Armed: the next tick or reply resets the connection.
    proxy.arm("reset");
    let reset = Instant::now();
    let ended = running.ended(Duration::from_secs(20));
    let first = ended.iter().map(|e| e.at).min().unwrap();
    let last = ended.iter().map(|e| e.at).max().unwrap();
    for e in &ended {
        eprintln!(
            "reset: {} ended {:?} after {:?}, {} messages in: {}",
            e.method,
            e.code,
            e.at - reset,
            e.received,
            e.message
        );
        assert_eq!(e.code, Some(RpcStatusCode::UNAVAILABLE), "{e:?}");
    }
    assert!(ended.iter().all(|e| e.method == "RecordMetrics" || e.received >= 5), "{ended:?}");
    assert!(last - reset < Duration::from_millis(500), "the reset was noticed {:?} late", last - reset);
    assert!(last - first < Duration::from_millis(100), "one reset, calls ended {:?} apart", last - first);
    wait_until_freed(&server, Duration::from_secs(10));
    eprintln!("reset: the server freed everything {:?} after the reset", reset.elapsed());

    let m = server.scrape();
    for (kind, method) in &METHODS[1..] {
        assert_eq!((m.started(kind, method), m.handled(kind, method, "Canceled")), (1.0, 1.0), "{method}");
    }
    wait_until_disconnected(&greeter);
    proxy.remove("reset");
    four_patterns(&greeter, Ticks::More, 16, 100, 10);

    // A connection that closes as a request goes out (reset_peer on a connection already
    // open: it closes it, FIN, on the next bytes from the client, and drops them).
    proxy.add("close", Direction::Upstream, Toxic::reset_peer(0));
    let start = Instant::now();
    let err = block_on(greeter.say_hello("cut")).expect_err("its connection closes");
    eprintln!("SayHello on a connection closed as it goes out: {:?} after {:?}: {err}", err.code(), start.elapsed());
    assert_eq!(err.code(), Some(RpcStatusCode::UNAVAILABLE), "{err}");
    assert!(start.elapsed() < Duration::from_secs(1), "{:?}", start.elapsed());
    wait_until_disconnected(&greeter);
    proxy.remove("close");
    assert_eq!(block_on(greeter.say_hello("again")).map_err(|e| e.to_string()), Ok("Hello again".to_owned()));
    assert_eq!(server.scrape().started("unary", "SayHello"), 2.0, "four_patterns' and the last; never the cut one");
}

/// A black hole (Toxiproxy's `timeout`: nothing passes, nothing is closed) under four calls
/// on one connection, found by the client's keepalive (1 s + 1 s here): every call, the
/// SayHello whose request fell into the hole included, ends UNAVAILABLE between 1 and 2 s
/// after the last byte came through. The client then closes the connection, which Toxiproxy
/// passes on, so the server frees everything right after (across a real black hole it waits
/// for its own keepalive: the next test). The same client's next calls succeed.
#[test]
fn a_black_hole_is_found_by_the_clients_keepalive() {
    let transport =
        TransportLimits { min_client_ping_interval: Duration::from_millis(500), ..TransportLimits::default() };
    let server = server(u32::MAX, Duration::from_millis(10), transport);
    let toxiproxy = Toxiproxy::start();
    let proxy = toxiproxy.proxy("hole", &server.addr);
    let keepalive = Keepalive { time: Duration::from_secs(1), timeout: Duration::from_secs(1), ..Keepalive::default() };
    let greeter = client(&proxy.addr, Duration::from_secs(60), keepalive);
    let running = Running::start(&greeter, Duration::from_millis(10));
    running.wait_for(5, 5);

    proxy.add_both_ways("hole", Toxic::black_hole());
    let hole = Instant::now();
    let ended = running.with_say_hello(&greeter).ended(Duration::from_secs(30));
    for e in &ended {
        eprintln!(
            "black hole, client keepalive 1 s + 1 s: {} ended {:?} after {:?}: {}",
            e.method,
            e.code,
            e.at - hole,
            e.message
        );
        assert_eq!(e.code, Some(RpcStatusCode::UNAVAILABLE), "{e:?}");
        let after = e.at - hole;
        assert!(
            after >= keepalive.timeout && after < keepalive.time + keepalive.timeout + Duration::from_millis(500),
            "{e:?}: {after:?}"
        );
    }
    wait_until_freed(&server, Duration::from_secs(10));
    eprintln!("black hole, client keepalive: the server freed everything {:?} after the hole", hole.elapsed());
    let m = server.scrape();
    assert_eq!(m.started("unary", "SayHello"), 0.0, "its request fell into the hole");

    wait_until_disconnected(&greeter);
    proxy.remove_both_ways("hole");
    four_patterns(&greeter, Ticks::More, 16, 100, 10);
}

/// The same black hole, found by the server's keepalive (1 s + 1 s here) with the client's
/// off: the server frees the subscription, the chat and the calls between 1 and 2 s after
/// the last byte it read. It then closes the connection, which Toxiproxy passes on, so the
/// client's calls end UNAVAILABLE right after (across a real black hole, a client without
/// keepalive would wait for each call's deadline).
#[test]
fn a_black_hole_is_found_by_the_servers_keepalive() {
    let transport = TransportLimits {
        keepalive_time: Duration::from_secs(1),
        keepalive_timeout: Duration::from_secs(1),
        ..TransportLimits::default()
    };
    let server = server(u32::MAX, Duration::from_millis(10), transport.clone());
    let toxiproxy = Toxiproxy::start();
    let proxy = toxiproxy.proxy("hole", &server.addr);
    let greeter = client(&proxy.addr, Duration::from_secs(60), Keepalive::disabled());
    let running = Running::start(&greeter, Duration::from_millis(10));
    running.wait_for(5, 5);

    proxy.add_both_ways("hole", Toxic::black_hole());
    let hole = Instant::now();
    let running = running.with_say_hello(&greeter);
    let freed = wait_until_freed(&server, Duration::from_secs(10));
    eprintln!("black hole, server keepalive 1 s + 1 s: the server freed everything {freed:?} after the hole");
    assert!(freed >= transport.keepalive_timeout, "{freed:?}");
    assert!(freed < transport.keepalive_time + transport.keepalive_timeout + Duration::from_millis(500), "{freed:?}");
    for e in running.ended(Duration::from_secs(30)) {
        eprintln!(
            "black hole, server keepalive: {} ended {:?} after {:?}: {}",
            e.method,
            e.code,
            e.at - hole,
            e.message
        );
        assert_eq!(e.code, Some(RpcStatusCode::UNAVAILABLE), "{e:?}");
    }
    let m = server.scrape();
    for (kind, method) in &METHODS[1..] {
        assert_eq!((m.started(kind, method), m.handled(kind, method, "Canceled")), (1.0, 1.0), "{method}");
    }
    assert_eq!(m.started("unary", "SayHello"), 0.0, "its request fell into the hole");

    wait_until_disconnected(&greeter);
    proxy.remove_both_ways("hole");
    four_patterns(&greeter, Ticks::More, 16, 100, 10);
}

/// Every byte in its own tiny TCP segment (4 to 12 bytes, both ways): all four patterns
/// complete exactly, every message whole: a 4 KiB greeting, 1000 metrics summed exactly,
/// 50 chat replies in order; the server counts exactly what was sent.
#[test]
fn tiny_segments_carry_every_message_whole() {
    let server = server(5, Duration::from_millis(10), TransportLimits::default());
    let toxiproxy = Toxiproxy::start();
    let proxy = toxiproxy.proxy("slicer", &server.addr);
    proxy.add_both_ways("slicer", Toxic::slicer(8, 4, 0));
    let greeter = client(&proxy.addr, Duration::from_secs(60), Keepalive::default());
    let took = four_patterns(&greeter, Ticks::Five, 4096, 1000, 50);
    eprintln!("four patterns in 4-12 byte segments: {took:?}");
    assert_counted(&server, [1.0; 4], 1000.0, 50.0, 5.0);
    proxy.remove_both_ways("slicer");
    four_patterns(&greeter, Ticks::Five, 4096, 1000, 50);
    assert_counted(&server, [2.0; 4], 2000.0, 100.0, 10.0);
}

/// One call of `pattern` on a fresh connection through `proxy`: what the client got, each
/// message checked whole. `Ok(n)`: the call completed exactly, `n` messages in.
fn one_call(addr: &str, pattern: &str) -> (Result<usize, ClientError>, usize) {
    let g = blocking::Greeter::from(client(addr, Duration::from_secs(10), Keepalive::default()));
    let mut seen = 0;
    let result = match pattern {
        "SayHello" => {
            let name = "n".repeat(1024);
            g.say_hello(&name).map(|r| assert_eq!(r, format!("Hello {name}"))).map(|()| 1)
        }
        "GetStockPrice" => g
            .stock_prices("TSMC", |t| {
                assert!(t.symbol == "TSMC" && PRICE_RANGE.contains(&t.price), "a tick not whole: {t:?}");
                seen += 1;
            })
            .map(|ticks| ticks.len()),
        "RecordMetrics" => g.record_metrics(&vec![2.5; CUT_METRICS]).map(|s| {
            assert_eq!((s.count as usize, s.average), (CUT_METRICS, 2.5), "a summary of part of the stream");
            1
        }),
        "Chat" => {
            let sent = messages(CUT_CHAT);
            g.chat("cut", &sent, |r| {
                assert_eq!(r.message, format!("Server received: m{seen}"), "a reply not whole, or out of order");
                seen += 1;
            })
            .map(|replies| replies.len())
        }
        other => unreachable!("{other}"),
    };
    (result, seen)
}

const CUT_METRICS: usize = 500;
const CUT_CHAT: usize = 50;
const CUT_TICKS: u32 = 20;

/// The connection cut after N bytes (`limit_data`), N from 200 bytes to more than any call
/// needs, each direction, each pattern on a fresh connection: every message that arrives is
/// whole (each tick, reply and summary checked), a call completes exactly or ends
/// UNAVAILABLE, and nothing is half-applied: the server summarises RecordMetrics only when it
/// received every value, and a summary counts exactly the values the server received. Once
/// the cut is gone, the last client's next calls succeed.
#[test]
fn a_connection_cut_after_n_bytes_delivers_whole_messages_or_fails_cleanly() {
    let server = server(CUT_TICKS, Duration::from_millis(1), TransportLimits::default());
    let toxiproxy = Toxiproxy::start();
    let proxy = toxiproxy.proxy("cut", &server.addr);
    let mut outcomes = std::collections::BTreeMap::<String, Vec<String>>::new();
    for direction in [Direction::Upstream, Direction::Downstream] {
        for limit in [200, 600, 2_000, 6_000, 20_000, 1_000_000] {
            proxy.add("cut", direction, Toxic::limit_data(limit));
            for (kind, method) in METHODS {
                let before = server.scrape();
                let (result, seen) = one_call(&proxy.addr, method);
                wait_until_freed(&server, Duration::from_secs(10));
                let after = server.scrape();
                let delta =
                    |name: &str| after.greeter(name, kind, method, None) - before.greeter(name, kind, method, None);
                let ok_at_server = after.handled(kind, method, "OK") - before.handled(kind, method, "OK");
                let outcome = match &result {
                    Ok(n) => format!("OK({n})"),
                    Err(e) => format!("{:?}({seen})", e.code()),
                };
                outcomes.entry(format!("{direction:?} {method}")).or_default().push(format!("{limit}: {outcome}"));
                match result {
                    Ok(_) => assert_eq!(ok_at_server, 1.0, "{method} OK at the client, not at the server"),
                    Err(e) => assert_eq!(e.code(), Some(RpcStatusCode::UNAVAILABLE), "{method} cut at {limit}: {e}"),
                }
                if method == "RecordMetrics" && ok_at_server == 1.0 {
                    assert_eq!(
                        delta("grpc_server_msg_received_total"),
                        CUT_METRICS as f64,
                        "summarised part of a stream"
                    );
                }
            }
            proxy.remove("cut");
        }
    }
    for (what, outcomes) in &outcomes {
        eprintln!("limit_data {what}: {}", outcomes.join(", "));
    }
    // The largest limit cuts nothing; the smallest lets no call through.
    assert!(outcomes.values().all(|o| o.last().unwrap().contains("OK(")), "{outcomes:#?}");
    assert!(outcomes.values().all(|o| !o[0].contains("OK(")), "{outcomes:#?}");

    // One client's connection cut, then the cut gone: the same client's next call succeeds.
    let greeter = client(&proxy.addr, Duration::from_secs(10), Keepalive::default());
    assert_eq!(block_on(greeter.say_hello("before")).map_err(|e| e.to_string()), Ok("Hello before".to_owned()));
    proxy.add("cut", Direction::Upstream, Toxic::limit_data(100));
    let err = block_on(greeter.say_hello(&"n".repeat(1024))).expect_err("cut after 100 bytes");
    assert_eq!(err.code(), Some(RpcStatusCode::UNAVAILABLE), "{err}");
    wait_until_disconnected(&greeter);
    proxy.remove("cut");
    four_patterns(&greeter, Ticks::More, 16, 100, 10);
}

/// Behind nginx (deploy/nginx/greeter.conf), one of three replicas takes connections and
/// requests but never answers (a black hole between nginx and it: a hung process whose kernel
/// still accepts, so nginx's connect timeout never applies). Each SayHello that picks it
/// costs 2 s (the file's grpc_read_timeout for unary calls) and ends UNAVAILABLE "no replica
/// answered (nginx: 504)", instead of waiting for its deadline: nginx cannot pass on a call
/// whose request it has sent, so the client retries it, and the retry reaches another
/// replica. Exactly the calls nginx logged at the hung replica are the ones that failed. A
/// stream that picks it waits for its deadline (nginx cannot tell a hung replica from a quiet
/// stream). No replica leaves the rotation, and once the hang ends the same client reaches
/// all three again.
#[test]
fn a_hung_replica_behind_nginx_costs_each_greeting_that_picks_it_2_s() {
    let replicas: Vec<ServerProcess> =
        (0..3).map(|_| ServerProcess::start(&["--addr", "127.0.0.1:0", "--stock-interval", "10ms"], "info")).collect();
    let toxiproxy = Toxiproxy::start();
    let proxy = toxiproxy.proxy("hung", &replicas[1].addr());
    let nginx = Nginx::start(0, &[replicas[0].addr(), proxy.addr.clone(), replicas[2].addr()]);
    let greeter = blocking::Greeter::from(client(&nginx.addr(), Duration::from_secs(10), Keepalive::default()));
    let upstreams_of = |method: &str| -> Vec<String> {
        let lines = nginx.access_log();
        let calls = lines.iter().filter(|l| l.contains(&format!("POST /greeter.Greeter/{method} ")));
        calls.map(|l| l.split(" upstream=").nth(1).unwrap().split(" grpc-status=").next().unwrap().to_owned()).collect()
    };
    for i in 0..6 {
        assert_eq!(greeter.say_hello(&format!("warm {i}")).map_err(|e| e.to_string()), Ok(format!("Hello warm {i}")));
    }
    wait_for("nginx logged the warm-up", Duration::from_secs(10), || upstreams_of("SayHello").len() == 6);
    assert!(upstreams_of("SayHello").contains(&proxy.addr), "every replica gets calls: {:?}", upstreams_of("SayHello"));

    proxy.add_both_ways("hung", Toxic::black_hole());
    let (mut failed, mut calls) = (0, 0);
    for i in 0..12 {
        let name = format!("hung {i}");
        loop {
            let start = Instant::now();
            let result = greeter.say_hello(&name);
            let took = start.elapsed();
            calls += 1;
            match result {
                Ok(reply) => {
                    assert_eq!(reply, format!("Hello {name}"));
                    assert!(took < Duration::from_secs(1), "a replica that answers: {took:?}");
                    break;
                }
                Err(e) => {
                    eprintln!(
                        "hung replica behind nginx: a SayHello that picked it: {:?} after {took:?}: {e}",
                        e.code()
                    );
                    assert_eq!(e.code(), Some(RpcStatusCode::UNAVAILABLE), "{e}");
                    assert!(e.to_string().contains("no replica answered (nginx: 504)"), "{e}");
                    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(3), "{took:?}");
                    failed += 1;
                }
            }
        }
    }
    wait_for("nginx logged every call", Duration::from_secs(10), || upstreams_of("SayHello").len() == 6 + calls);
    let upstreams = upstreams_of("SayHello")[6..].to_vec();
    let at_the_hung_one = upstreams.iter().filter(|u| **u == proxy.addr).count();
    assert_eq!(
        at_the_hung_one, failed,
        "the calls nginx sent to the hung replica are the ones that failed: {upstreams:?}"
    );
    // Round robin over three, and a retry is a call like any other: every third call.
    assert_eq!(failed, 6, "{upstreams:?}");

    let hasty = blocking::Greeter::from(client(&nginx.addr(), Duration::from_secs(3), Keepalive::default()));
    let mut waited = 0;
    for _ in 0..6 {
        let start = Instant::now();
        match hasty.stock_prices("TSMC", |_| {}) {
            Ok(ticks) => assert_eq!(ticks.len(), 5),
            Err(e) => {
                let after = start.elapsed();
                eprintln!("hung replica behind nginx: a subscription that picked it: {:?} after {after:?}", e.code());
                assert_eq!(e.code(), Some(RpcStatusCode::DEADLINE_EXCEEDED), "{e}");
                assert!(after >= Duration::from_secs(3) && after < Duration::from_millis(3250), "{after:?}");
                waited += 1;
            }
        }
    }
    assert_eq!(waited, 2, "two of six subscriptions picked the hung replica");
    let log = nginx.error_log();
    assert!(
        !log.contains("temporarily disabled") && !log.contains("no live upstreams"),
        "a replica left the rotation:\n{log}"
    );

    proxy.remove_both_ways("hung");
    for i in 0..6 {
        let start = Instant::now();
        assert_eq!(greeter.say_hello(&format!("after {i}")).map_err(|e| e.to_string()), Ok(format!("Hello after {i}")));
        assert!(start.elapsed() < Duration::from_secs(1), "{:?}", start.elapsed());
    }
    wait_for("nginx logged the 6 calls", Duration::from_secs(10), || upstreams_of("SayHello").len() == 6 + calls + 6);
    assert!(
        upstreams_of("SayHello")[6 + calls..].contains(&proxy.addr),
        "the replica is back: {:?}",
        upstreams_of("SayHello")
    );
}

/// The minutes-long bounds, with every setting at its default on both sides, side by side
/// (each on a thread of its own; the quiet Chat's ten minutes set the length):
/// - a client subscribed to a server that stops answering (a black hole) reports UNAVAILABLE
///   within 2 minutes (its keepalive: 60 s + 20 s after the last byte);
/// - the server frees the subscription of a client that stops answering (a SIGSTOPped
///   process: its kernel still acknowledges) within 5 minutes (its keepalive: 2 min + 20 s);
/// - a Chat with no message for 10 minutes is cut by neither side's ping rules;
/// - and the control: the same quiet Chat against a server with gRFC A8's enforcement (5
///   minutes, what grpc-go and C-core servers default to) is sent away `too_many_pings`.
#[test]
fn with_every_setting_at_its_default_dead_peers_are_found_and_a_quiet_chat_lasts() {
    let dead_server = std::thread::spawn(the_client_notices_a_server_that_stops_answering);
    let dead_client = std::thread::spawn(the_server_frees_the_subscription_of_a_client_that_stops_answering);
    let a8 = TransportLimits { min_client_ping_interval: Duration::from_secs(5 * 60), ..TransportLimits::default() };
    let control = std::thread::spawn(move || quiet_chat(a8, Duration::from_secs(6 * 60)));
    let quiet = std::thread::spawn(|| quiet_chat(TransportLimits::default(), Duration::from_secs(10 * 60)));

    let noticed = join(dead_server);
    let freed = join(dead_client);
    let (control, cut_after, _) = join(control);
    let control = control.expect_err("A8's enforcement sends the quiet Chat away");
    eprintln!(
        "defaults: a quiet Chat against A8's 5 min enforcement ended {:?} after {cut_after:?}: {control}",
        control.code()
    );
    assert_eq!(control.code(), Some(RpcStatusCode::UNAVAILABLE), "{control}");
    // Pings 60 s apart: the first after the server's last write is free, the next two are
    // strikes, the one after is a strike too many (C-core writes a WINDOW_UPDATE with its
    // first PING ACK, which makes the second ping free too: the fifth ping is the last).
    assert!(cut_after >= Duration::from_secs(4 * 60) && cut_after < Duration::from_secs(6 * 60), "{cut_after:?}");

    let (replies, lasted, m) = join(quiet);
    let replies = replies.unwrap_or_else(|e| panic!("the quiet Chat was cut after {lasted:?}: {e}"));
    eprintln!("defaults: a Chat quiet for 10 min, then a message: answered, {lasted:?} in all");
    assert_eq!(
        replies,
        [answer(&ChatMessage { user: "quiet".into(), message: "after the quiet".into(), ..Default::default() })]
    );
    assert_eq!((m.started("bidi_stream", "Chat"), m.handled("bidi_stream", "Chat", "OK")), (1.0, 1.0));
    eprintln!("defaults: the client noticed a dead server after {noticed:?}; the server freed a dead client's subscription after {freed:?}");
}

/// Our client, every setting at its default (but a deadline longer than the test), subscribed
/// through a proxy to a server whose ticks are an hour apart; after the first tick, a black
/// hole. How long until the subscription ends UNAVAILABLE.
fn the_client_notices_a_server_that_stops_answering() -> Duration {
    let server = server(u32::MAX, Duration::from_secs(60 * 60), TransportLimits::default());
    let toxiproxy = Toxiproxy::start();
    let proxy = toxiproxy.proxy("dead-server", &server.addr);
    let greeter = Greeter::new(&proxy.addr, Duration::from_secs(60 * 60));
    let mut ticks = greeter.stock_prices("TSMC").unwrap();
    assert!(matches!(block_on(ticks.next()), Some(Ok(_))), "the first tick");
    proxy.add_both_ways("hole", Toxic::black_hole());
    let hole = Instant::now();
    let end = block_on(ticks.next());
    let noticed = hole.elapsed();
    let err = match end {
        Some(Err(e)) => e,
        other => panic!("the subscription should end in an error, not {other:?}"),
    };
    eprintln!("defaults: a black hole under a quiet subscription: {:?} after {noticed:?}: {err}", err.code());
    assert_eq!(err.code(), Some(RpcStatusCode::UNAVAILABLE), "{err}");
    let keepalive = Keepalive::default();
    assert!(noticed >= keepalive.timeout, "{noticed:?}: sooner than an unanswered ping can tell");
    assert!(noticed <= keepalive.time + keepalive.timeout + Duration::from_secs(5), "{noticed:?}");
    assert!(noticed <= Duration::from_secs(2 * 60), "{noticed:?}");
    proxy.remove_both_ways("hole");
    assert_eq!(block_on(greeter.say_hello("back")).map_err(|e| e.to_string()), Ok("Hello back".to_owned()));
    noticed
}

/// The `stock_price` example, every setting at its default (but a deadline longer than the
/// test), subscribed to a server ticking every second; once it has a tick, SIGSTOP. How long
/// until the server's gauges show the subscription freed.
fn the_server_frees_the_subscription_of_a_client_that_stops_answering() -> Duration {
    use std::io::BufRead as _;
    let server = server(u32::MAX, Duration::from_secs(1), TransportLimits::default());
    let mut cmd = example("stock_price");
    cmd.args(["--addr", &server.addr, "--deadline", "1h"]).stdout(std::process::Stdio::piped());
    let mut child = KillOnDrop(cmd.spawn().unwrap());
    let stdout = std::io::BufReader::new(child.0.stdout.take().unwrap());
    let (first_tick, ticked) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = stdout.lines();
        let _ = first_tick.send(lines.next());
        lines.for_each(drop);
    });
    let line = ticked.recv_timeout(Duration::from_secs(30)).expect("the client prints its first tick");
    assert!(line.is_some_and(|l| l.is_ok_and(|l| l.starts_with("Stock: TSMC, Price: "))));
    assert_eq!(held(&server.scrape()), [1.0, 0.0, 1.0]);
    let stopped = std::process::Command::new("kill").args(["-STOP", &child.0.id().to_string()]).status().unwrap();
    assert!(stopped.success());
    let freed = wait_until_freed(&server, Duration::from_secs(6 * 60));
    let m = server.scrape();
    eprintln!(
        "defaults: a subscriber SIGSTOPped: freed after {freed:?}, {} ticks sent, ended {:?}",
        m.ticks_sent(),
        scrape_codes(&m, "server_stream", "GetStockPrice")
    );
    assert!(
        freed >= TransportLimits::default().keepalive_timeout,
        "{freed:?}: sooner than an unanswered ping can tell"
    );
    assert!(freed <= Duration::from_secs(5 * 60), "{freed:?}");
    freed
}

/// What `thread` returned, or its panic, raised again here.
fn join<T>(thread: JoinHandle<T>) -> T {
    thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// The codes `method`'s calls ended with, those with a count.
fn scrape_codes(m: &Metrics, kind: &str, method: &str) -> Vec<(&'static str, f64)> {
    common::scrape::CODE_NAMES.iter().map(|c| (*c, m.handled(kind, method, c))).filter(|(_, n)| *n > 0.0).collect()
}

/// A Chat through our client (every setting at its default, but a deadline longer than the
/// test) to a server with `transport`: no message for `quiet`, then one. Its replies, how long
/// it lasted, the server's metrics at its end.
fn quiet_chat(
    transport: TransportLimits,
    quiet: Duration,
) -> (Result<Vec<ChatMessage>, ClientError>, Duration, Metrics) {
    let server = server(5, Duration::from_millis(10), transport);
    let greeter = Greeter::new(&server.addr, Duration::from_secs(60 * 60));
    let message = futures::stream::once(async move {
        Delay::new(quiet).await;
        "after the quiet".to_owned()
    });
    let start = Instant::now();
    let replies = block_on(greeter.chat("quiet", message).unwrap().try_collect());
    let lasted = start.elapsed();
    wait_until_freed(&server, Duration::from_secs(10));
    (replies, lasted, server.scrape())
}
