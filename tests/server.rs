//! The server around the handlers: unknown methods, limits, health, graceful shutdown, and
//! what a client sees when there is no server.

mod common;

use std::time::Duration;

use common::{status_code, RefusedPort, TestServer};
use futures::executor::block_on;
use futures::TryStreamExt as _;
use greeter::blocking::Greeter;
use greeter::proto::health::{
    health_check_response::ServingStatus, HealthCheckRequest, HealthClient, HealthListRequest,
};
use greeter::proto::{HelloReply, HelloRequest};
use greeter::ClientError;
use grpcio::{CallOption, Marshaller, Method, MethodType, RpcStatusCode};

fn unary_method(name: &'static str) -> Method<HelloRequest, HelloReply> {
    Method {
        ty: MethodType::Unary,
        name,
        req_mar: Marshaller { ser: grpcio::pb_ser, de: grpcio::pb_de },
        resp_mar: Marshaller { ser: grpcio::pb_ser, de: grpcio::pb_de },
    }
}

#[test]
fn unknown_methods_and_services_are_unimplemented() {
    let server = TestServer::with_interval(Duration::ZERO);
    let channel = grpcio::Client::new(server.channel());
    for name in ["/greeter.Greeter/SayGoodbye", "/greeter.Nobody/SayHello"] {
        let err = channel.unary_call(&unary_method(name), &HelloRequest::default(), CallOption::default()).unwrap_err();
        assert_eq!(status_code(&err), RpcStatusCode::UNIMPLEMENTED, "{name}");
    }
    // The same channel still works for a real method.
    let ok =
        channel.unary_call(&unary_method("/greeter.Greeter/SayHello"), &HelloRequest::default(), CallOption::default());
    assert_eq!(ok.unwrap().message, "Hello ");
}

#[test]
fn a_message_over_the_receive_limit_is_resource_exhausted() {
    let server = TestServer::start(common::local()); // the 4 MiB default
    let client = server.client();
    let err = client.say_hello(&"x".repeat(5 << 20)).unwrap_err();
    assert_eq!(err.code(), Some(RpcStatusCode::RESOURCE_EXHAUSTED), "{err}");
    // Everyone else is still served, on the same connection too.
    assert_eq!(client.say_hello("after").unwrap(), "Hello after");
}

#[test]
fn the_receive_limit_is_configurable() {
    let mut config = common::local();
    config.transport.max_receive_message_len = 1024;
    let server = TestServer::start(config);
    let client = server.client();
    assert_eq!(client.say_hello(&"x".repeat(2048)).unwrap_err().code(), Some(RpcStatusCode::RESOURCE_EXHAUSTED));
    assert!(client.say_hello(&"x".repeat(512)).is_ok());
}

fn health_check(client: &HealthClient, service: &str) -> Result<ServingStatus, grpcio::Error> {
    let req = HealthCheckRequest { service: service.into(), ..Default::default() };
    Ok(client.check(&req)?.status.enum_value_or_default())
}

#[test]
fn health_is_serving_once_started_and_not_serving_when_shutdown_begins() {
    let mut config = common::local();
    // Far longer than the test: the shutdown may only end early because the watchers' streams end.
    config.shutdown.grace = Duration::from_secs(60);
    let server = TestServer::start(config);
    let health = HealthClient::new(server.channel());
    assert_eq!(health_check(&health, "").unwrap(), ServingStatus::SERVING);
    assert_eq!(health_check(&health, "greeter.Greeter").unwrap(), ServingStatus::SERVING);
    assert_eq!(status_code(&health_check(&health, "no.Such").unwrap_err()), RpcStatusCode::NOT_FOUND);

    // List names every service the server reports on, and only those.
    let listed = health.list(&HealthListRequest::default()).unwrap();
    let mut statuses: Vec<(&str, ServingStatus)> =
        listed.statuses.iter().map(|(name, r)| (name.as_str(), r.status.enum_value_or_default())).collect();
    statuses.sort_by_key(|&(name, _)| name);
    assert_eq!(statuses, [("", ServingStatus::SERVING), ("greeter.Greeter", ServingStatus::SERVING)]);

    // Watchers, of the server and of Greeter, held open across the whole shutdown.
    let mut watches: Vec<_> = ["", "greeter.Greeter"]
        .into_iter()
        .map(|service| {
            let req = HealthCheckRequest { service: service.into(), ..Default::default() };
            let mut watch = health.watch_opt(&req, common::deadline()).unwrap();
            let first = block_on(watch.try_next()).unwrap().unwrap();
            assert_eq!(first.status.enum_value_or_default(), ServingStatus::SERVING, "{service:?}");
            (service, watch)
        })
        .collect();

    let stopping = std::thread::spawn(move || server.shutdown());
    for (service, watch) in &mut watches {
        // Each hears the change the moment shutdown begins…
        let next = block_on(watch.try_next()).unwrap().unwrap();
        assert_eq!(next.status.enum_value_or_default(), ServingStatus::NOT_SERVING, "{service:?}");
        // …and then the server ends the stream with OK (`Ok(None)`; an error status would be
        // `Err`), though the client never cancels it.
        let end = block_on(watch.try_next());
        assert!(matches!(end, Ok(None)), "{service:?}: the watch ends OK after NOT_SERVING, got {end:?}");
    }
    // So the watches, still held here, do not keep the shutdown waiting: the server drained
    // before the grace period ran out (had it run out, `cancelled_calls` would say so).
    let outcome = stopping.join().unwrap();
    assert!(!outcome.cancelled_calls, "{outcome:?}");
    drop(watches);
}

#[test]
fn graceful_shutdown_lets_an_in_flight_stream_finish() {
    let mut config = common::local();
    config.greeter.stock_interval = Duration::from_millis(100);
    config.shutdown.grace = Duration::from_secs(20);
    let server = TestServer::start(config);
    let addr = server.addr.clone();

    let client = server.raw_client();
    let req = common::tsmc();
    let mut stream = client.get_stock_price_opt(&req, common::deadline()).unwrap();
    let mut ticks = vec![block_on(stream.try_next()).unwrap().unwrap()];

    let stopping = std::thread::spawn(move || server.shutdown());
    while let Some(tick) = block_on(stream.try_next()).unwrap() {
        ticks.push(tick);
    }
    assert_eq!(ticks.len(), 5, "every tick arrives and the stream ends OK");
    let outcome = stopping.join().unwrap();
    assert!(!outcome.cancelled_calls, "{outcome:?}");

    // The server is gone: a new call cannot get through.
    let err = Greeter::new(&addr, Duration::from_secs(2)).say_hello("late").unwrap_err();
    assert_eq!(err.code(), Some(RpcStatusCode::UNAVAILABLE), "{err}");
}

#[test]
fn shutdown_cancels_calls_still_running_after_the_grace_period() {
    let mut config = common::local();
    config.greeter.stock_ticks = 1000;
    config.greeter.stock_interval = Duration::from_millis(200);
    config.shutdown.grace = Duration::from_millis(300);
    let server = TestServer::start(config);

    let client = server.raw_client();
    let req = common::tsmc();
    let mut stream = client.get_stock_price_opt(&req, common::deadline()).unwrap();
    block_on(stream.try_next()).unwrap().unwrap();

    let outcome = server.shutdown();
    assert!(outcome.cancelled_calls, "{outcome:?}");
    assert!(outcome.elapsed >= Duration::from_millis(300), "{outcome:?}");
    // The client sees a clean error status rather than hanging.
    let end = loop {
        match block_on(stream.try_next()) {
            Ok(Some(_)) => continue,
            other => break other,
        }
    };
    let err = end.expect_err("a cancelled stream does not end OK");
    let code = status_code(&err);
    assert!(matches!(code, RpcStatusCode::CANCELLED | RpcStatusCode::UNAVAILABLE), "{code:?}");
}

#[test]
fn a_client_with_no_server_says_it_cannot_reach_it() {
    // Bound but not listening, and held to the end: connecting is refused, and no other
    // process can start listening on the port in between.
    let refused = RefusedPort::hold();
    let addr = refused.addr.clone();
    let err = Greeter::new(&addr, Duration::from_secs(5)).say_hello("anyone").unwrap_err();
    assert!(matches!(err, ClientError::Unreachable { .. }), "{err:?}");
    assert_eq!(err.to_string(), format!("cannot reach {addr}: connection refused — is the server running?"));
    drop(refused); // only now may the port go
}

#[test]
fn two_servers_run_side_by_side_on_their_own_ports() {
    let a = TestServer::with_interval(Duration::ZERO);
    let b = TestServer::with_interval(Duration::ZERO);
    assert_ne!(a.addr, b.addr);
    assert_eq!(a.client().say_hello("a").unwrap(), "Hello a");
    assert_eq!(b.client().say_hello("b").unwrap(), "Hello b");
}

/// Established TCP connections this process has open to `port` (the client ends).
fn connections_to(port: u16) -> usize {
    let tables = ["/proc/self/net/tcp", "/proc/self/net/tcp6"].map(|t| std::fs::read_to_string(t).unwrap());
    let rows = tables.iter().flat_map(|t| t.lines().skip(1));
    rows.filter(|row| {
        let cols: Vec<&str> = row.split_whitespace().collect();
        let remote_port = u16::from_str_radix(cols[2].rsplit(':').next().unwrap(), 16).unwrap();
        remote_port == port && cols[3] == "01"
    })
    .count()
}

/// C-core shares one TCP connection among all channels with the same target and settings
/// unless told otherwise; a `Greeter` is meant to be a connection of its own (a soak with 8
/// clients was 8 calls multiplexed on one socket before this).
#[test]
fn every_client_has_a_connection_of_its_own_and_clones_share_it() {
    let server = TestServer::with_interval(Duration::ZERO);
    let port = server.server().port();
    let (a, b) = (server.client(), server.client());
    let a_clone = Greeter::from(a.as_async().clone());
    for client in [&a, &b, &a_clone] {
        assert_eq!(client.say_hello("conn").unwrap(), "Hello conn");
    }
    assert_eq!(connections_to(port), 2, "two clients (and a clone of one) should hold exactly two connections");
}
