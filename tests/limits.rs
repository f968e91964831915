//! Each limit, when hit, answers with the documented status and a message naming it, and the
//! server goes on serving everyone else.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::tools::hostile_case;
use common::{status_code, wait_until, TestServer};
use futures::executor::block_on;
use futures::{SinkExt as _, TryStreamExt as _};
use greeter::proto::{ChatMessage, GreeterClient, HelloRequest};
use grpcio::{ChannelBuilder, EnvBuilder, RpcStatusCode, WriteFlags};

#[test]
fn a_chat_message_over_the_cap_is_invalid_argument_naming_the_limit() {
    let mut config = common::local();
    config.greeter.max_chat_message_len = 16;
    let server = TestServer::start(config);

    // Lock-step, because a grpcio client drops replies still unread when a status arrives.
    let client = server.raw_client(); // kept: it owns the completion queue the call runs on
    let (mut sink, mut replies) = client.chat_opt(common::deadline()).unwrap();
    let message = |text: String| {
        (ChatMessage { user: "Rust".into(), message: text, ..Default::default() }, WriteFlags::default())
    };
    block_on(async {
        sink.send(message("short".into())).await.unwrap();
        let reply = replies.try_next().await.unwrap().unwrap();
        assert_eq!(reply.message, "Server received: short");
        // The status may arrive before this send completes: it is the status we check.
        let _ = sink.send(message("x".repeat(17))).await;
        let err = replies.try_next().await.unwrap_err();
        assert_eq!(status_code(&err), RpcStatusCode::INVALID_ARGUMENT);
        let text = format!("{err:?}");
        assert!(text.contains("chat message #1 is 17 bytes; the limit (max_chat_message_len) is 16"), "{text}");
    });

    let exactly = ["y".repeat(16)];
    assert_eq!(server.client().chat("Rust", &exactly, |_| {}).unwrap().len(), 1, "the cap itself is allowed");
}

#[test]
fn one_subscription_over_the_cap_is_resource_exhausted() {
    let mut config = common::with_metrics(common::local(), Duration::from_secs(60));
    config.greeter.max_subscriptions = 2;
    let server = TestServer::start(config);
    let client = server.raw_client();
    let req = common::tsmc();

    let mut open: Vec<_> = (0..2).map(|_| client.get_stock_price_opt(&req, common::deadline()).unwrap()).collect();
    for stream in &mut open {
        block_on(stream.try_next()).unwrap().unwrap();
    }
    let mut third = client.get_stock_price_opt(&req, common::deadline()).unwrap();
    let err = block_on(third.try_next()).unwrap_err();
    assert_eq!(status_code(&err), RpcStatusCode::RESOURCE_EXHAUSTED);
    assert!(format!("{err:?}").contains("the limit (max_subscriptions) is 2"), "{err:?}");

    // Cancelling one frees its place.
    drop(open.pop());
    wait_until("a place is free", || server.scrape().subscriptions_active() == 1.0);
    let mut again = client.get_stock_price_opt(&req, common::deadline()).unwrap();
    assert!(block_on(again.try_next()).unwrap().is_some());
}

#[test]
fn calls_beyond_max_concurrent_streams_wait_for_a_free_stream() {
    let mut config = common::with_metrics(common::local(), Duration::from_millis(300));
    config.transport.max_concurrent_streams = 2;
    config.greeter.stock_ticks = 3;
    let server = TestServer::start(config);
    let client = server.raw_client(); // one connection for all three calls
    let req = common::tsmc();

    let streams: Vec<_> = (0..3).map(|_| client.get_stock_price_opt(&req, common::deadline()).unwrap()).collect();
    let reader = std::thread::spawn(move || {
        let tick_counts = streams.into_iter().map(|stream| block_on(stream.try_collect::<Vec<_>>()).map(|t| t.len()));
        tick_counts.collect::<Result<Vec<_>, _>>()
    });

    // Over the whole run, not at one moment: every ticker lives ~600 ms (3 ticks 300 ms
    // apart), so a third call that did not wait would show as 3 active for that long.
    let start = Instant::now();
    let mut most_active = 0.0f64;
    loop {
        let metrics = server.scrape();
        let completed = metrics.subscriptions_ended("OK");
        if completed == 3.0 {
            break;
        }
        most_active = most_active.max(metrics.subscriptions_active());
        assert!(most_active <= 2.0, "a third call ran beside the two streams the server allows");
        assert!(start.elapsed() < Duration::from_secs(30), "the three calls did not complete; {completed} did");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(most_active, 2.0, "the two allowed calls ran side by side");
    assert_eq!(reader.join().unwrap().unwrap(), [3, 3, 3], "every call completes in the end");
}

#[test]
fn a_client_pinging_too_often_is_sent_away() {
    let mut config = common::local();
    config.transport.min_client_ping_interval = Duration::from_secs(60);
    config.transport.max_ping_strikes = 1;
    config.greeter.stock_interval = Duration::from_secs(60);
    let server = TestServer::start(config);

    // A client that pings every 50 ms on an idle stream: far more often than allowed.
    let env = Arc::new(EnvBuilder::new().cq_count(1).build());
    let channel = ChannelBuilder::new(env)
        .keepalive_time(Duration::from_millis(50))
        .keepalive_timeout(Duration::from_secs(5))
        .keepalive_permit_without_calls(true)
        .http2_min_sent_ping_interval_without_data(Duration::from_millis(50))
        .http2_max_pings_without_data(0)
        .connect(&server.addr);
    let client = GreeterClient::new(channel);
    let req = common::tsmc();
    let mut stream = client.get_stock_price_opt(&req, common::deadline()).unwrap();
    block_on(stream.try_next()).unwrap().unwrap();
    let err = block_on(stream.try_next()).unwrap_err();
    assert_eq!(status_code(&err), RpcStatusCode::UNAVAILABLE, "{err:?}");

    // What the server sends, over raw HTTP/2: a Chat stream open and PINGs back to back.
    // Each ping within min_client_ping_interval of the previous one is a strike; the
    // (max_ping_strikes + 1)th strike is answered with GOAWAY ENHANCE_YOUR_CALM
    // "too_many_pings", the open call ends UNAVAILABLE and the connection is closed.
    // C-core forgives all strikes whenever it writes HEADERS, DATA or WINDOW_UPDATE (it does
    // when the call starts), so hostile.py counts the pings since its last such write.
    let r = hostile_case(&server.addr, "too_many_pings", &[]);
    const ENHANCE_YOUR_CALM: i64 = 11;
    const UNAVAILABLE: i64 = 14;
    assert_eq!(r["goaway"].as_i64(), Some(ENHANCE_YOUR_CALM), "{r}");
    assert_eq!(r["goaway_debug"].as_str(), Some("too_many_pings"), "{r}");
    assert_eq!(r["pings_since_server_write"].as_i64(), Some(1 + 2), "one free ping, then max_ping_strikes + 1: {r}");
    assert_eq!(r["grpc_status"].as_i64(), Some(UNAVAILABLE), "the open call: {r}");
    assert_eq!(r["grpc_message"].as_str(), Some("Too many pings"), "{r}");
    assert_eq!(r["connection_closed"].as_bool(), Some(true), "{r}");

    // A well-behaved client is still served.
    assert_eq!(server.client().say_hello("calm").unwrap(), "Hello calm");
}

#[test]
fn a_reply_over_max_send_message_len_is_resource_exhausted() {
    let mut config = common::local();
    config.transport.max_send_message_len = 100;
    let server = TestServer::start(config);
    let client = server.raw_client();
    // HelloReply { message: "Hello " + name } is 1 tag byte + 1 length byte + 6 + name bytes
    // on the wire (under 128 bytes of message): a 92-byte name makes it 100 bytes.
    let hello = |len: usize| client.say_hello(&HelloRequest { name: "n".repeat(len), ..Default::default() });

    let err = hello(93).unwrap_err();
    assert_eq!(status_code(&err), RpcStatusCode::RESOURCE_EXHAUSTED, "{err:?}");
    let grpcio::Error::RpcFailure(status) = &err else { unreachable!() };
    assert_eq!(status.message(), "Sent message larger than max (101 vs. 100)");

    // The limit itself is allowed, and the server goes on serving.
    assert_eq!(hello(92).unwrap().message, format!("Hello {}", "n".repeat(92)));
    assert_eq!(server.client().say_hello("small").unwrap(), "Hello small");
}

/// The default limit is a tested one: 10,000 subscriptions at once are served (held open by
/// the harness's Go load driver, 100 streams a connection, as the server allows), and the
/// 10,001st is refused with RESOURCE_EXHAUSTED and the limit's name.
#[test]
fn ten_thousand_subscriptions_are_served_and_one_more_is_refused() {
    use std::io::{BufRead as _, BufReader};
    use std::process::Stdio;

    let mut config = common::with_metrics(common::local(), Duration::from_secs(3600));
    config.greeter.stock_ticks = 2;
    assert_eq!(config.greeter.max_subscriptions, 10_000, "the default limit");
    let server = TestServer::start(config);
    let mut driver = common::tools::tools().go_bin("scale-driver");
    driver.args(["-addr", &server.addr, "-mode", "subs", "-streams", "10000", "-conns", "101"]);
    let child = driver.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("scale-driver starts");
    let mut driver = common::process::KillOnDrop(child);
    let (line, lines) = std::sync::mpsc::channel();
    let stdout = BufReader::new(driver.0.stdout.take().unwrap());
    std::thread::spawn(move || stdout.lines().map_while(Result::ok).try_for_each(|l| line.send(l)));
    let opened = lines.recv_timeout(Duration::from_secs(120)).expect("the driver opens 10,000 subscriptions in 2 min");
    let opened: serde_json::Value = serde_json::from_str(&opened).unwrap();
    assert_eq!((opened["open"].as_u64(), opened["failed"].as_u64()), (Some(10_000), Some(0)), "{opened}");
    assert_eq!(server.scrape().subscriptions_active(), 10_000.0);

    let err = server.client().stock_prices("TSMC", |_| {}).unwrap_err();
    assert_eq!(err.code(), Some(RpcStatusCode::RESOURCE_EXHAUSTED), "{err}");
    assert!(err.to_string().contains("the limit (max_subscriptions) is 10000"), "{err}");

    drop(driver.0.stdin.take()); // the driver cancels its streams and exits
    let status = driver.wait("scale-driver", Duration::from_secs(60));
    assert!(status.success(), "{status}");
    common::wait_until("every subscription has ended", || server.scrape().subscriptions_active() == 0.0);
}
