//! Each limit, when hit, answers with the documented status and a message naming it, and the
//! server goes on serving everyone else.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{status_code, wait_until, TestServer};
use futures::executor::block_on;
use futures::{SinkExt as _, TryStreamExt as _};
use greeter::proto::{ChatMessage, GreeterClient};
use greeter::ServerConfig;
use grpcio::{ChannelBuilder, EnvBuilder, RpcStatusCode, WriteFlags};

#[test]
fn a_chat_message_over_the_cap_is_invalid_argument_naming_the_limit() {
    let mut config = ServerConfig::local();
    config.limits.max_chat_message_len = 16;
    let server = TestServer::start(config);

    // Lock-step, because a grpcio client drops replies still unread when a status arrives.
    let client = server.raw_client(); // kept: it owns the completion queue the call runs on
    let (mut sink, mut replies) = client.chat().unwrap();
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
    let mut config = ServerConfig::local();
    config.limits.max_subscriptions = 2;
    config.ticker.interval = Duration::from_secs(60);
    let server = TestServer::start(config);
    let stats = server.server().ticker_stats();
    let client = server.raw_client();
    let req = common::tsmc();

    let mut open: Vec<_> = (0..2).map(|_| client.get_stock_price(&req).unwrap()).collect();
    for stream in &mut open {
        block_on(stream.try_next()).unwrap().unwrap();
    }
    let mut third = client.get_stock_price(&req).unwrap();
    let err = block_on(third.try_next()).unwrap_err();
    assert_eq!(status_code(&err), RpcStatusCode::RESOURCE_EXHAUSTED);
    assert!(format!("{err:?}").contains("the limit (max_subscriptions) is 2"), "{err:?}");

    // Cancelling one frees its place.
    drop(open.pop());
    wait_until("a place is free", || stats.active() == 1);
    let mut again = client.get_stock_price(&req).unwrap();
    assert!(block_on(again.try_next()).unwrap().is_some());
}

#[test]
fn calls_beyond_max_concurrent_streams_wait_for_a_free_stream() {
    let mut config = ServerConfig::local();
    config.limits.max_concurrent_streams = 2;
    config.ticker.ticks = 3;
    config.ticker.interval = Duration::from_millis(300);
    let server = TestServer::start(config);
    let stats = server.server().ticker_stats();
    let client = server.raw_client(); // one connection for all three calls
    let req = common::tsmc();

    let streams: Vec<_> = (0..3).map(|_| client.get_stock_price(&req).unwrap()).collect();
    wait_until("two subscriptions run", || stats.active() == 2);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(stats.active(), 2, "the third call waits for a stream");
    for mut stream in streams {
        let ticks: Vec<_> = block_on((&mut stream).try_collect::<Vec<_>>()).unwrap();
        assert_eq!(ticks.len(), 3, "every call completes in the end");
    }
    wait_until("all three tickers are done", || stats.completed() == 3);
}

#[test]
fn a_client_pinging_too_often_is_sent_away() {
    let mut config = ServerConfig::local();
    config.limits.min_client_ping_interval = Duration::from_secs(60);
    config.limits.max_ping_strikes = 1;
    config.ticker.interval = Duration::from_secs(60);
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
    let mut stream = client.get_stock_price(&req).unwrap();
    block_on(stream.try_next()).unwrap().unwrap();
    let err = block_on(stream.try_next()).unwrap_err();
    assert_eq!(status_code(&err), RpcStatusCode::UNAVAILABLE, "{err:?}");

    // A well-behaved client is still served.
    assert_eq!(server.client().say_hello("calm").unwrap(), "Hello calm");
}
