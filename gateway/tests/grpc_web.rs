//! gRPC-Web through the gateway without a browser: tonic-web's client (binary) and requests
//! shaped by hand (text mode, malformed bodies), against our server and gRPC's interop
//! TestService.

mod common;

use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use common::*;
use greeter::proto::testing::{EchoStatus, Payload, ResponseParameters, SimpleRequest, SimpleResponse};
use greeter::proto::testing::{StreamingOutputCallRequest, StreamingOutputCallResponse};

use greeter::proto::{HelloReply, HelloRequest, StockReply, StockRequest};
use http::{Request, StatusCode};
use http_body_util::Full;
use protobuf::Message as _;
use tonic::{Code, Status};

const SAY_HELLO: &str = "/greeter.Greeter/SayHello";
const GET_STOCK_PRICE: &str = "/greeter.Greeter/GetStockPrice";
const UNARY_CALL: &str = "/grpc.testing.TestService/UnaryCall";
const FULL_DUPLEX_CALL: &str = "/grpc.testing.TestService/FullDuplexCall";
const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn hello(name: &str) -> HelloRequest {
    HelloRequest { name: name.into(), ..Default::default() }
}

fn tsmc() -> StockRequest {
    StockRequest { symbol: "TSMC".into(), ..Default::default() }
}

fn echo_status(code: Code, message: &str) -> EchoStatus {
    EchoStatus { code: code as i32, message: message.into(), ..Default::default() }
}

#[tokio::test(flavor = "multi_thread")]
async fn say_hello_and_five_ticks_in_binary_mode() {
    let server = greeter_server(Duration::from_millis(50));
    let gateway = gateway(server.port(), |_| {}).await;
    let mut client = web_client(&gateway);

    let reply: tonic::Response<HelloReply> =
        unary(&mut client, SAY_HELLO, tonic::Request::new(hello("Ferris"))).await.unwrap();
    assert_eq!(reply.get_ref().message, "Hello Ferris");
    assert_eq!(reply.metadata().get("content-type").unwrap(), "application/grpc-web+proto");

    let (ticks, status): (Vec<StockReply>, _) =
        server_stream(&mut client, GET_STOCK_PRICE, tonic::Request::new(tsmc())).await;
    assert_eq!(status.code(), Code::Ok, "{status:?}");
    assert_eq!(ticks.len(), 5);
    assert!(ticks.iter().all(|t| t.symbol == "TSMC" && (500.0..600.0).contains(&t.price)), "{ticks:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_status_code_comes_through_with_its_message_in_headers_and_in_the_body() {
    let server = interop_server();
    let gateway = gateway(server.port(), |_| {}).await;
    let mut client = web_client(&gateway);
    for number in 1..=16 {
        let code = Code::from_i32(number);
        let message = format!("status {number}: ünïcode & 100% sure");
        // Unary, no reply message: C-core sends trailers only (the status in the headers).
        let request = SimpleRequest { response_status: Some(echo_status(code, &message)).into(), ..Default::default() };
        let err = unary::<_, SimpleResponse>(&mut client, UNARY_CALL, tonic::Request::new(request)).await.unwrap_err();
        assert_eq!((err.code(), err.message()), (code, message.as_str()), "unary, code {number}");

        // A message first, then the status: the status is a trailers frame at the end of the
        // body. (FullDuplexCall, with both requests in one body: gRPC-Web carries that,
        // though no browser sends it.)
        let first = StreamingOutputCallRequest {
            response_parameters: vec![ResponseParameters { size: 3, ..Default::default() }],
            ..Default::default()
        };
        let then = StreamingOutputCallRequest {
            response_status: Some(echo_status(code, &message)).into(),
            ..Default::default()
        };
        let body = [frame(&first), frame(&then)].concat();
        let raw_reply = raw(post(&gateway, FULL_DUPLEX_CALL, "application/grpc-web+proto", body)).await;
        assert_eq!(raw_reply.status, StatusCode::OK);
        assert_eq!(raw_reply.header("grpc-status"), None, "code {number}: not trailers-only");
        let (messages, trailers) = frames(&raw_reply.body);
        assert_eq!(messages.len(), 1, "code {number}");
        let reply = StreamingOutputCallResponse::parse_from_bytes(&messages[0]).unwrap();
        assert_eq!(reply.payload.body, [0; 3]);
        assert_eq!(trailer(&trailers, "grpc-status"), Some(number.to_string().as_str()), "{trailers:?}");
        assert_eq!(trailer(&trailers, "grpc-message").map(percent_decoded), Some(message.clone()), "{trailers:?}");
    }
    let metrics = scrape(&gateway).await;
    for number in 1..=16 {
        let name = greeter_gateway_code_name(number);
        let series = format!(
            "greeter_gateway_calls_handled_total{{format=\"binary\",grpc_code=\"{name}\",grpc_method=\"UnaryCall\",grpc_service=\"grpc.testing.TestService\"}}"
        );
        // UNIMPLEMENTED is counted under unknown/unknown: the caller chooses those paths.
        let want = if number == 12 { 0.0 } else { 1.0 };
        assert_eq!(sample(&metrics, &series), want, "{series} in\n{metrics}");
    }
}

/// grpc-message's percent-encoding undone.
fn percent_decoded(text: &str) -> String {
    let (mut out, mut bytes) = (Vec::new(), text.bytes());
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex: String = bytes.by_ref().take(2).map(char::from).collect();
            out.push(u8::from_str_radix(&hex, 16).unwrap());
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).unwrap()
}

fn greeter_gateway_code_name(number: i32) -> &'static str {
    [
        "OK",
        "Canceled",
        "Unknown",
        "InvalidArgument",
        "DeadlineExceeded",
        "NotFound",
        "AlreadyExists",
        "PermissionDenied",
        "ResourceExhausted",
        "FailedPrecondition",
        "Aborted",
        "OutOfRange",
        "Unimplemented",
        "Internal",
        "Unavailable",
        "DataLoss",
        "Unauthenticated",
    ][number as usize]
}

#[tokio::test(flavor = "multi_thread")]
async fn metadata_goes_both_ways() {
    let server = interop_server();
    let gateway = gateway(server.port(), |_| {}).await;
    let mut client = web_client(&gateway);
    let mut request = tonic::Request::new(SimpleRequest::default());
    request.metadata_mut().insert("x-grpc-test-echo-initial", "from the browser side".parse().unwrap());
    let reply: tonic::Response<SimpleResponse> = unary(&mut client, UNARY_CALL, request).await.unwrap();
    assert_eq!(reply.metadata().get("x-grpc-test-echo-initial").unwrap(), "from the browser side");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_message_each_way() {
    let server = interop_server();
    let gateway = gateway(server.port(), |_| {}).await;
    let mut client = web_client(&gateway);
    let size = 3 << 20;
    let request = SimpleRequest {
        response_size: size,
        payload: Some(Payload { body: vec![7; size as usize], ..Default::default() }).into(),
        ..Default::default()
    };
    let reply: tonic::Response<SimpleResponse> =
        unary(&mut client, UNARY_CALL, tonic::Request::new(request)).await.unwrap();
    assert_eq!(reply.get_ref().payload.body.len(), size as usize);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deadline_reaches_the_server() {
    let server = greeter_server(Duration::from_millis(500));
    let gateway = gateway(server.port(), |_| {}).await;
    let mut client = web_client(&gateway);
    let mut request = tonic::Request::new(tsmc());
    request.set_timeout(Duration::from_millis(750)); // the grpc-timeout header
    let start = Instant::now();
    let (ticks, status): (Vec<StockReply>, _) = server_stream(&mut client, GET_STOCK_PRICE, request).await;
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    // Ticks at 0 and 500 ms, the deadline at 750 ms.
    assert_eq!(ticks.len(), 2, "{ticks:?}");
    assert!(start.elapsed() < Duration::from_secs(2), "{:?}", start.elapsed());
    let metrics = scrape(&gateway).await;
    let series = "greeter_gateway_calls_handled_total{format=\"binary\",grpc_code=\"DeadlineExceeded\",grpc_method=\"GetStockPrice\",grpc_service=\"greeter.Greeter\"}";
    assert_eq!(sample(&metrics, series), 1.0, "{metrics}");
}

#[tokio::test(flavor = "multi_thread")]
async fn text_mode_unary_and_stream() {
    let server = greeter_server(Duration::from_millis(50));
    let gateway = gateway(server.port(), |_| {}).await;

    let body = BASE64.encode(frame(&hello("text")));
    let mut request = post(&gateway, SAY_HELLO, "application/grpc-web-text", body);
    request.headers_mut().insert("accept", "application/grpc-web-text".parse().unwrap());
    let reply = raw(request).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("content-type"), Some("application/grpc-web-text+proto"));
    let (messages, trailers) = frames(&decode_text(&reply.body));
    assert_eq!(HelloReply::parse_from_bytes(&messages[0]).unwrap().message, "Hello text");
    assert_eq!(messages.len(), 1);
    assert_eq!(trailer(&trailers, "grpc-status"), Some("0"));

    let mut request = post(&gateway, GET_STOCK_PRICE, "application/grpc-web-text", BASE64.encode(frame(&tsmc())));
    request.headers_mut().insert("accept", "application/grpc-web-text".parse().unwrap());
    let reply = raw(request).await;
    let (messages, trailers) = frames(&decode_text(&reply.body));
    assert_eq!(messages.len(), 5, "{:?}", String::from_utf8_lossy(&reply.body));
    for m in &messages {
        assert_eq!(StockReply::parse_from_bytes(m).unwrap().symbol, "TSMC");
    }
    assert_eq!(trailer(&trailers, "grpc-status"), Some("0"));
    let metrics = scrape(&gateway).await;
    assert_eq!(sample(&metrics, "greeter_gateway_calls_started_total{format=\"text\"}"), 2.0, "{metrics}");
}

/// A text-mode body: base64 chunks, each padded on its own, one after the other.
fn decode_text(body: &[u8]) -> Vec<u8> {
    let text = std::str::from_utf8(body).unwrap();
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        // A chunk ends at its padding, or at the end.
        let end = rest.find('=').map(|i| i + rest[i..].chars().take_while(|&c| c == '=').count()).unwrap_or(rest.len());
        out.extend(BASE64.decode(&rest[..end]).unwrap_or_else(|e| panic!("{e}: {text:?}")));
        rest = &rest[end..];
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_requests_get_an_error_and_the_gateway_goes_on() {
    let server = greeter_server(Duration::from_millis(50));
    let gateway = gateway(server.port(), |_| {}).await;
    let grpc_web = "application/grpc-web+proto";

    // A frame header that promises 100 bytes, and 3 of them.
    let reply = raw(post(&gateway, SAY_HELLO, grpc_web, vec![0, 0, 0, 0, 100, 1, 2, 3])).await;
    assert_grpc_error(&reply, "a truncated frame");
    // A message that is not a HelloRequest.
    let reply = raw(post(&gateway, SAY_HELLO, grpc_web, vec![0, 0, 0, 0, 3, 0xff, 0xff, 0xff])).await;
    assert_grpc_error(&reply, "garbage protobuf");
    // A frame header that promises 4 GiB.
    let reply = raw(post(&gateway, SAY_HELLO, grpc_web, vec![0, 0xff, 0xff, 0xff, 0xff, 1])).await;
    assert_grpc_error(&reply, "a 4 GiB frame");
    // Text mode that is not base64.
    let reply = raw(post(&gateway, SAY_HELLO, "application/grpc-web-text", "!!!! not base64 ****")).await;
    assert!(
        reply.status != StatusCode::OK || grpc_code(&reply).is_some_and(|c| c != 0),
        "not base64: HTTP {} {:?}",
        reply.status,
        reply.body
    );
    // A gRPC-Web content type on a GET.
    let get = Request::get(format!("{}{SAY_HELLO}", gateway.url()))
        .header("content-type", grpc_web)
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(raw(get).await.status, StatusCode::METHOD_NOT_ALLOWED);
    // Not gRPC-Web at all.
    let reply = raw(post(&gateway, SAY_HELLO, "application/json", "{}")).await;
    assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(String::from_utf8_lossy(&reply.body).contains("gRPC-Web"));
    // An unknown method: the server's UNIMPLEMENTED.
    let reply = raw(post(&gateway, "/greeter.Greeter/Nope", grpc_web, frame(&hello("x")))).await;
    assert_eq!(grpc_code(&reply), Some(Code::Unimplemented as i32));

    // Still serving.
    let mut client = web_client(&gateway);
    let reply: tonic::Response<HelloReply> =
        unary(&mut client, SAY_HELLO, tonic::Request::new(hello("after"))).await.unwrap();
    assert_eq!(reply.get_ref().message, "Hello after");
}

/// The gRPC status of a reply: in its headers (trailers-only) or its trailers frame.
fn grpc_code(reply: &RawReply) -> Option<i32> {
    if let Some(code) = reply.header("grpc-status") {
        return code.parse().ok();
    }
    let (_, trailers) = frames(&reply.body);
    trailer(&trailers, "grpc-status").and_then(|c| c.parse().ok())
}

fn assert_grpc_error(reply: &RawReply, what: &str) {
    assert_eq!(reply.status, StatusCode::OK, "{what}");
    let code = grpc_code(reply).unwrap_or_else(|| panic!("{what}: no grpc-status in {reply:?}", reply = reply.body));
    assert_ne!(code, 0, "{what}: OK");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_over_the_size_limit_is_refused_declared_or_chunked() {
    let server = greeter_server(Duration::from_millis(50));
    let gateway = gateway(server.port(), |c| c.max_request_bytes = 1000).await;
    let mut client = web_client(&gateway);

    let big = hello(&"x".repeat(2000));
    let reply = raw(post(&gateway, SAY_HELLO, "application/grpc-web+proto", frame(&big))).await;
    assert_eq!(reply.header("grpc-status"), Some("8"));
    assert_eq!(
        reply.header("grpc-message").map(percent_decoded).as_deref(),
        Some("the request body is 2008 bytes, over the gateway's limit (max_request_bytes) of 1000 bytes")
    );

    // tonic-web's client streams its body (no content-length): cut off as it arrives.
    let err = unary::<_, HelloReply>(&mut client, SAY_HELLO, tonic::Request::new(big)).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("over the gateway's limit (max_request_bytes) of 1000 bytes"), "{err:?}");

    let ok: tonic::Response<HelloReply> =
        unary(&mut client, SAY_HELLO, tonic::Request::new(hello("small"))).await.unwrap();
    assert_eq!(ok.get_ref().message, "Hello small");
    let metrics = scrape(&gateway).await;
    assert_eq!(sample(&metrics, "greeter_gateway_rejected_total{reason=\"too_large\"}"), 1.0, "{metrics}");
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_past_the_concurrency_limit_are_refused_until_one_ends() {
    let server = greeter_server(Duration::from_millis(300));
    let gateway = gateway(server.port(), |c| c.max_concurrent_calls = 1).await;
    let mut subscriber = web_client(&gateway);
    let subscription = tokio::spawn(async move {
        server_stream::<_, StockReply>(&mut subscriber, GET_STOCK_PRICE, tonic::Request::new(tsmc())).await
    });
    let mut client = web_client(&gateway);
    let in_flight = "greeter_gateway_calls_in_flight 1";
    let start = Instant::now();
    while !scrape(&gateway).await.lines().any(|l| l == in_flight) {
        assert!(start.elapsed() < Duration::from_secs(10), "the subscription never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let err = unary::<_, HelloReply>(&mut client, SAY_HELLO, tonic::Request::new(hello("second"))).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert_eq!(err.message(), "the gateway is at its limit of 1 calls in flight (max_concurrent_calls); retry later");

    let (ticks, status) = subscription.await.unwrap();
    assert_eq!((ticks.len(), status.code()), (5, Code::Ok));
    let reply: tonic::Response<HelloReply> =
        unary(&mut client, SAY_HELLO, tonic::Request::new(hello("third"))).await.unwrap();
    assert_eq!(reply.get_ref().message, "Hello third");
    let metrics = scrape(&gateway).await;
    assert_eq!(sample(&metrics, "greeter_gateway_rejected_total{reason=\"too_many_calls\"}"), 1.0, "{metrics}");
    assert!(metrics.lines().any(|l| l == "greeter_gateway_calls_in_flight 0"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_is_down_is_unavailable_in_words() {
    // A port bound but not listening: connecting to it is refused.
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    drop(socket);
    let gateway = gateway(port, |_| {}).await;
    let mut client = web_client(&gateway);
    let err = unary::<_, HelloReply>(&mut client, SAY_HELLO, tonic::Request::new(hello("x"))).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert!(
        err.message().starts_with(&format!("the gateway cannot reach the gRPC server at 127.0.0.1:{port}: ")),
        "{err:?}"
    );
    assert!(err.message().to_lowercase().contains("connection refused"), "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_stopping_mid_stream_ends_the_reply_with_a_status() {
    let server = greeter_server(Duration::from_millis(200));
    let gateway = gateway(server.port(), |_| {}).await;
    let mut client = web_client(&gateway);
    let subscription = tokio::spawn(async move {
        server_stream::<_, StockReply>(&mut client, GET_STOCK_PRICE, tonic::Request::new(tsmc())).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(server); // at once, no grace: the stream is cut
    let (ticks, status): (Vec<StockReply>, Status) = subscription.await.unwrap();
    assert!((1..5).contains(&ticks.len()), "{} ticks", ticks.len());
    assert!(matches!(status.code(), Code::Unavailable | Code::Cancelled), "{status:?}");
    assert!(!status.message().is_empty(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_allows_the_configured_origins_only() {
    let server = greeter_server(Duration::from_millis(50));
    let allowed = "http://page.example:8000";
    let open = gateway(server.port(), |c| c.allowed_origins = vec![allowed.into()]).await;
    let closed = gateway(server.port(), |_| {}).await;

    let preflight = |gateway: &greeter_gateway::Gateway, origin: &str| {
        Request::options(format!("{}{SAY_HELLO}", gateway.url()))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type,x-grpc-web,x-user-agent,grpc-timeout")
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let ok = raw(preflight(&open, allowed)).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.header("access-control-allow-origin"), Some(allowed));
    assert_eq!(ok.header("access-control-allow-methods"), Some("POST"));
    assert_eq!(ok.header("access-control-allow-headers"), Some("content-type,x-grpc-web,x-user-agent,grpc-timeout"));
    for (gateway, origin) in [(&open, "http://other.example:8000"), (&closed, allowed)] {
        let refused = raw(preflight(gateway, origin)).await;
        assert_eq!(refused.header("access-control-allow-origin"), None, "{origin}");
    }

    let mut call = post(&open, SAY_HELLO, "application/grpc-web+proto", frame(&hello("cors")));
    call.headers_mut().insert("origin", allowed.parse().unwrap());
    let reply = raw(call).await;
    assert_eq!(reply.header("access-control-allow-origin"), Some(allowed));
    assert_eq!(reply.header("access-control-expose-headers"), Some("grpc-status,grpc-message,grpc-status-details-bin"));
    let (messages, _) = frames(&reply.body);
    assert_eq!(HelloReply::parse_from_bytes(&messages[0]).unwrap().message, "Hello cors");
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_are_the_gateways_own() {
    let server = greeter_server(Duration::from_millis(20));
    let gateway = gateway(server.port(), |_| {}).await;
    let mut client = web_client(&gateway);
    for i in 0..3 {
        let _: tonic::Response<HelloReply> =
            unary(&mut client, SAY_HELLO, tonic::Request::new(hello(&i.to_string()))).await.unwrap();
    }
    let metrics = scrape(&gateway).await;
    let series = "greeter_gateway_calls_handled_total{format=\"binary\",grpc_code=\"OK\",grpc_method=\"SayHello\",grpc_service=\"greeter.Greeter\"}";
    assert_eq!(sample(&metrics, series), 3.0, "{metrics}");
    assert_eq!(sample(&metrics, "greeter_gateway_calls_started_total{format=\"binary\"}"), 3.0);
    assert_eq!(
        sample(
            &metrics,
            "greeter_gateway_call_seconds_count{grpc_method=\"SayHello\",grpc_service=\"greeter.Greeter\"}"
        ),
        3.0
    );
    assert!(sample(&metrics, "greeter_gateway_process_resident_memory_bytes") > 0.0, "{metrics}");
    // Nothing that one Prometheus scraping the server too would mix up.
    for line in metrics.lines().filter(|l| !l.starts_with('#')) {
        assert!(line.starts_with("greeter_gateway_"), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn graceful_shutdown_lets_a_subscription_finish_and_takes_no_new_connection() {
    let server = greeter_server(Duration::from_millis(200));
    let gateway = gateway(server.port(), |c| c.grace = Duration::from_secs(20)).await;
    let addr = gateway.local_addr();
    let mut client = web_client(&gateway);
    let subscription = tokio::spawn(async move {
        server_stream::<_, StockReply>(&mut client, GET_STOCK_PRICE, tonic::Request::new(tsmc())).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let shutdown = tokio::spawn(gateway.shutdown());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "a new connection after the shutdown began");
    let (ticks, status) = subscription.await.unwrap();
    assert_eq!((ticks.len(), status.code()), (5, Code::Ok), "{status:?}");
    assert!(shutdown.await.unwrap(), "every call finished within the grace");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_files_and_nothing_else() {
    let server = greeter_server(Duration::from_millis(50));
    let dir = tempfile_dir();
    std::fs::write(dir.join("index.html"), "<h1>greeter</h1>").unwrap();
    let with_page = gateway(server.port(), |c| c.static_dir = Some(dir.clone())).await;
    let get = |url: String| Request::get(url).body(Full::new(Bytes::new())).unwrap();
    let page = raw(get(format!("{}/", with_page.url()))).await;
    assert_eq!((page.status, page.body.as_ref()), (StatusCode::OK, b"<h1>greeter</h1>".as_ref()));
    assert_eq!(page.header("content-type"), Some("text/html"));
    assert_eq!(raw(get(format!("{}/nope.js", with_page.url()))).await.status, StatusCode::NOT_FOUND);
    let metrics = scrape(&with_page).await;
    assert_eq!(sample(&metrics, "greeter_gateway_file_requests_total{code=\"200\"}"), 1.0, "{metrics}");
    assert_eq!(sample(&metrics, "greeter_gateway_file_requests_total{code=\"404\"}"), 1.0, "{metrics}");

    let without = gateway(server.port(), |_| {}).await;
    let reply = raw(get(format!("{}/", without.url()))).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert!(String::from_utf8_lossy(&reply.body).contains("--static-dir"));
    std::fs::remove_dir_all(dir).unwrap();
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("greeter-gateway-test-{}-{:?}", std::process::id(), Instant::now()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn a_caller_that_goes_away_cancels_the_call_upstream() {
    let server = greeter_server(Duration::from_millis(200));
    let gateway = gateway(server.port(), |_| {}).await;
    let mut client = web_client(&gateway);
    let subscription = tokio::spawn(async move {
        server_stream::<_, StockReply>(&mut client, GET_STOCK_PRICE, tonic::Request::new(tsmc())).await
    });
    let in_flight = |n: u32| format!("greeter_gateway_calls_in_flight {n}");
    wait_for_line(&gateway, &in_flight(1)).await;
    subscription.abort(); // the connection closes with the call half done
    wait_for_line(&gateway, &in_flight(0)).await;
    let metrics = scrape(&gateway).await;
    let canceled = "greeter_gateway_calls_handled_total{format=\"binary\",grpc_code=\"Canceled\",grpc_method=\"GetStockPrice\",grpc_service=\"greeter.Greeter\"}";
    assert_eq!(sample(&metrics, canceled), 1.0, "{metrics}");
    // The server saw the call end early: its ticker is free for the next one at once.
    let mut client = web_client(&gateway);
    let reply: tonic::Response<HelloReply> =
        unary(&mut client, SAY_HELLO, tonic::Request::new(hello("next"))).await.unwrap();
    assert_eq!(reply.get_ref().message, "Hello next");
}

/// Waits (10 s at most) until the gateway's `/metrics` has the line `line`.
async fn wait_for_line(gateway: &greeter_gateway::Gateway, line: &str) {
    let start = Instant::now();
    while !scrape(gateway).await.lines().any(|l| l == line) {
        assert!(start.elapsed() < Duration::from_secs(10), "no {line:?} in /metrics within 10 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
