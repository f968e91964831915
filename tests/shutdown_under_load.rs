//! Graceful shutdown with 100 calls of all four kinds in flight: nothing hangs, nothing in
//! flight is lost, newcomers are refused, and the server is gone within its grace period.
//!
//! "In flight" is proven, not assumed: each call has reached its handler, by the server's
//! own count, before the shutdown begins. Greeter's SayHello is answered at once, so the unary
//! calls in flight are `grpc.testing.TestService/UnaryCall` held in their handler until the
//! shutdown has begun (`common::HeldUnary`, served beside Greeter).

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{status_code, TestServer};
use futures::executor::block_on;
use futures::future::join_all;
use futures::{SinkExt as _, TryStreamExt as _};
use greeter::blocking::Greeter;
use greeter::proto::testing::{SimpleRequest, TestServiceClient};
use greeter::proto::{ChatMessage, GreeterClient, Metric};
use grpcio::{RpcStatusCode, WriteFlags};

const EACH: usize = 25; // of each of the four kinds: 100 calls

const UNARY_CALL: [(&str, &str); 3] =
    [("grpc_type", "unary"), ("grpc_service", "grpc.testing.TestService"), ("grpc_method", "UnaryCall")];

fn metric(value: f64) -> (Metric, WriteFlags) {
    (Metric { value, ..Default::default() }, WriteFlags::default())
}

fn chat(text: &str) -> (ChatMessage, WriteFlags) {
    (ChatMessage { user: "load".into(), message: text.into(), ..Default::default() }, WriteFlags::default())
}

fn server(grace: Duration, ticks: u32, services: Vec<greeter::Service>) -> TestServer {
    let mut config = common::local();
    config.services = services;
    config.metrics_addr = Some("127.0.0.1:0".to_owned());
    config.shutdown.grace = grace;
    config.greeter.stock_ticks = ticks;
    config.greeter.stock_interval = Duration::from_millis(100);
    TestServer::start(config)
}

#[test]
fn calls_in_flight_finish_ok_newcomers_are_refused_and_the_server_stops_in_time() {
    let grace = Duration::from_secs(20);
    let mut held = common::HeldUnary::new();
    let server = server(grace, 15, vec![held.service.clone()]); // streams run ~1.5 s, well inside the grace
    let addr = server.addr.clone();
    let client = server.raw_client();
    let tests = TestServiceClient::new(server.channel());
    let symbol = common::tsmc();

    // Everything is open and has exchanged a message before shutdown begins.
    let mut stocks: Vec<_> =
        (0..EACH).map(|_| client.get_stock_price_opt(&symbol, common::deadline()).unwrap()).collect();
    for s in &mut stocks {
        block_on(s.try_next()).unwrap().expect("first tick");
    }
    let mut uploads: Vec<_> = (0..EACH).map(|_| client.record_metrics_opt(common::deadline()).unwrap()).collect();
    for (sink, _) in &mut uploads {
        block_on(sink.send(metric(1.0))).unwrap();
    }
    let mut chats: Vec<_> = (0..EACH).map(|_| client.chat_opt(common::deadline()).unwrap()).collect();
    for (sink, replies) in &mut chats {
        block_on(sink.send(chat("before"))).unwrap();
        assert_eq!(block_on(replies.try_next()).unwrap().unwrap().message, "Server received: before");
    }
    let unary: Vec<_> = (0..EACH)
        .map(|i| tests.unary_call_async(&SimpleRequest { response_size: i as i32, ..Default::default() }).unwrap())
        .collect();
    let metrics = common::scrape::Scraper(server.server().metrics_local_addr().unwrap());
    common::wait_until("every unary call is in its handler", || {
        metrics.scrape().get("grpc_server_started_total", &UNARY_CALL) == Some(EACH as f64)
    });
    let in_flight = metrics.scrape();
    for (kind, method) in
        [("server_stream", "GetStockPrice"), ("client_stream", "RecordMetrics"), ("bidi_stream", "Chat")]
    {
        assert_eq!(in_flight.started(kind, method), EACH as f64, "{method} calls in flight");
        assert_eq!(in_flight.handled_all(kind, method), 0.0, "{method} calls in flight");
    }

    let started = Instant::now();
    let stopping = std::thread::spawn(move || server.shutdown());
    // Shutdown has begun once the listening socket is closed: a bare TCP connect is refused.
    common::wait_until("the server stops listening", || TcpStream::connect(&addr).is_err());

    // A newcomer is refused while the old calls carry on.
    let refused = Greeter::new(&addr, Duration::from_secs(5)).say_hello("late").unwrap_err();
    assert_eq!(refused.code(), Some(RpcStatusCode::UNAVAILABLE), "{refused}");
    held.release();

    block_on(async {
        // Streams keep working after shutdown began, and end OK.
        for (sink, _) in &mut uploads {
            sink.send(metric(3.0)).await.unwrap();
            let _ = sink.close().await;
        }
        for (_, summary) in uploads {
            let summary = summary.await.unwrap();
            assert_eq!((summary.count, summary.average), (2, 2.0));
        }
        for (sink, replies) in &mut chats {
            sink.send(chat("after")).await.unwrap();
            assert_eq!(replies.try_next().await.unwrap().unwrap().message, "Server received: after");
            let _ = sink.close().await;
            assert!(replies.try_next().await.unwrap().is_none(), "chat ends OK");
        }
        for stream in &mut stocks {
            let rest: Vec<_> = stream.try_collect().await.unwrap();
            assert_eq!(rest.len(), 14, "every tick arrives, then OK");
        }
    });
    let calls_done = started.elapsed();

    // The unary calls held in their handler across the shutdown's start are all answered.
    for (i, reply) in block_on(join_all(unary)).into_iter().enumerate() {
        assert_eq!(reply.expect("a unary call in flight is answered").username, format!("held {i}"));
    }

    let outcome = stopping.join().unwrap();
    // The server stops as soon as the calls are done (then a 250 ms linger).
    assert!(!outcome.cancelled_calls, "{outcome:?}");
    let margin = Duration::from_secs(3); // the linger, and a busy machine's scheduling
    assert!(outcome.elapsed < calls_done + margin, "stopped {outcome:?}, the calls were done after {calls_done:?}");
}

#[test]
fn streams_outliving_the_grace_period_end_with_a_clean_status() {
    let grace = Duration::from_millis(500);
    let server = server(grace, 1000, Vec::new()); // streams that would run 100 s
    let client: GreeterClient = server.raw_client();
    let symbol = common::tsmc();
    let mut stocks: Vec<_> =
        (0..EACH).map(|_| client.get_stock_price_opt(&symbol, common::deadline()).unwrap()).collect();
    for s in &mut stocks {
        block_on(s.try_next()).unwrap().expect("first tick");
    }
    let mut chats: Vec<_> = (0..EACH).map(|_| client.chat_opt(common::deadline()).unwrap()).collect();
    for (sink, _) in &mut chats {
        block_on(sink.send(chat("hello"))).unwrap();
    }

    let outcome = server.shutdown();
    assert!(outcome.cancelled_calls, "{outcome:?}");
    assert!(outcome.elapsed >= grace && outcome.elapsed < grace * 10, "{outcome:?}");

    block_on(async {
        for stream in &mut stocks {
            let end = loop {
                match stream.try_next().await {
                    Ok(Some(_)) => continue,
                    other => break other,
                }
            };
            let code = status_code(&end.expect_err("a cut stream does not end OK"));
            assert!(matches!(code, RpcStatusCode::CANCELLED | RpcStatusCode::UNAVAILABLE), "{code:?}");
        }
        for (_, replies) in &mut chats {
            let end = loop {
                match replies.try_next().await {
                    Ok(Some(_)) => continue,
                    other => break other,
                }
            };
            let code = status_code(&end.expect_err("a cut chat does not end OK"));
            assert!(matches!(code, RpcStatusCode::CANCELLED | RpcStatusCode::UNAVAILABLE), "{code:?}");
        }
    });
}
