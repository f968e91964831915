//! Server reflection from the outside: grpcurl and Python's reflection client explore and
//! call the server with no copy of the protos; the Rust client checks the stream semantics.

mod common;

use common::tools::{run_ok, tools};
use common::TestServer;
use futures::executor::block_on;
use futures::{SinkExt as _, TryStreamExt as _};
use greeter::proto::health::health_check_response::ServingStatus;
use greeter::proto::reflection::{v1, v1alpha};
use grpcio::WriteFlags;
use protobuf::Message as _;
use v1::server_reflection_request::Message_request as Question;
use v1::server_reflection_response::Message_response as Answer;

/// `grpcurl -plaintext <flags> <addr> <args>`; its stdout.
fn grpcurl(server: &TestServer, flags: &[&str], args: &[&str]) -> String {
    let mut cmd = tools().go_bin("grpcurl");
    cmd.arg("-plaintext").args(flags).arg(&server.addr).args(args);
    String::from_utf8(run_ok(cmd, &format!("grpcurl {flags:?} {args:?}")).stdout).unwrap()
}

#[test]
fn grpcurl_lists_every_service() {
    let server = TestServer::start(common::local());
    let listed = grpcurl(&server, &[], &["list"]);
    assert_eq!(
        listed.lines().collect::<Vec<_>>(),
        [
            "greeter.Greeter",
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection"
        ]
    );
}

#[test]
fn grpcurl_describes_the_service_and_its_messages() {
    let server = TestServer::start(common::local());
    let service = grpcurl(&server, &[], &["describe", "greeter.Greeter"]);
    for line in [
        "greeter.Greeter is a service:",
        "rpc SayHello ( .greeter.HelloRequest ) returns ( .greeter.HelloReply );",
        "rpc GetStockPrice ( .greeter.StockRequest ) returns ( stream .greeter.StockReply );",
        "rpc RecordMetrics ( stream .greeter.Metric ) returns ( .greeter.MetricSummary );",
        "rpc Chat ( stream .greeter.ChatMessage ) returns ( stream .greeter.ChatMessage );",
    ] {
        assert!(service.contains(line), "missing {line:?} in:\n{service}");
    }
    let message = grpcurl(&server, &[], &["describe", "greeter.HelloRequest"]);
    assert!(message.contains("greeter.HelloRequest is a message:"), "{message}");
    assert!(message.contains("string name = 1;"), "{message}");
    let health = grpcurl(&server, &[], &["describe", "grpc.health.v1.HealthCheckResponse.ServingStatus"]);
    assert!(health.contains("SERVING = 1;"), "{health}");
}

#[test]
fn grpcurl_calls_unary_and_server_streaming_methods_without_the_proto() {
    let mut config = common::local();
    config.greeter.stock_interval = std::time::Duration::from_millis(5);
    let server = TestServer::start(config);
    let hello = grpcurl(&server, &["-d", r#"{"name":"grpcurl"}"#], &["greeter.Greeter/SayHello"]);
    assert!(hello.contains(r#""message": "Hello grpcurl""#), "{hello}");
    let ticks = grpcurl(&server, &["-d", r#"{"symbol":"TSMC"}"#], &["greeter.Greeter/GetStockPrice"]);
    assert_eq!(ticks.matches(r#""symbol": "TSMC""#).count(), 5, "{ticks}");
    assert_eq!(ticks.matches(r#""price": 5"#).count(), 5, "prices in [500, 600): {ticks}");
}

#[test]
fn grpcurl_checks_health_without_the_proto() {
    let server = TestServer::start(common::local());
    let check = || grpcurl(&server, &["-d", r#"{"service":"greeter.Greeter"}"#], &["grpc.health.v1.Health/Check"]);
    assert_eq!(check(), "{\n  \"status\": \"SERVING\"\n}\n");
    // The answer is the server's current status, not a constant.
    server.server().set_serving_status("greeter.Greeter", ServingStatus::NOT_SERVING);
    assert_eq!(check(), "{\n  \"status\": \"NOT_SERVING\"\n}\n");
}

#[test]
fn python_reflection_client_builds_the_messages_and_calls_say_hello() {
    let server = TestServer::start(common::local());
    let mut cmd = tools().python("tests/interop/python/reflection_client.py");
    cmd.args(["--addr", &server.addr]);
    let out = String::from_utf8(run_ok(cmd, "reflection_client.py").stdout).unwrap();
    assert!(out.contains("Response: Hello Python reflection"), "{out}");
}

fn request(question: Question) -> v1::ServerReflectionRequest {
    v1::ServerReflectionRequest { message_request: Some(question), ..Default::default() }
}

#[test]
fn one_v1_stream_answers_in_order_and_stays_open_after_not_found() {
    let server = TestServer::start(common::local());
    let client = v1::ServerReflectionClient::new(server.channel());
    let (mut sink, mut answers) = client.server_reflection_info_opt(common::deadline()).unwrap();
    block_on(async {
        let questions = [
            Question::ListServices(String::new()),
            Question::FileContainingSymbol("greeter.Nope".into()),
            Question::FileContainingSymbol("greeter.Greeter.SayHello".into()),
        ];
        for question in questions {
            sink.send((request(question), WriteFlags::default())).await.unwrap();
        }
        // The half-close may race the server's OK status; the status is what we check.
        let _ = sink.close().await;
        let answers: Vec<Answer> = (&mut answers).map_ok(|r| r.message_response.unwrap()).try_collect().await.unwrap();
        assert!(matches!(&answers[0], Answer::ListServicesResponse(l) if l.service.len() == 4), "{answers:?}");
        assert!(matches!(&answers[1], Answer::ErrorResponse(e) if e.error_code == 5), "{answers:?}");
        let Answer::FileDescriptorResponse(files) = &answers[2] else { panic!("{answers:?}") };
        let file =
            protobuf::descriptor::FileDescriptorProto::parse_from_bytes(&files.file_descriptor_proto[0]).unwrap();
        assert_eq!(file.name(), "greeter.proto");
    });
}

#[test]
fn v1alpha_answers_like_v1() {
    let server = TestServer::start(common::local());
    let client = v1alpha::ServerReflectionClient::new(server.channel());
    let (mut sink, mut answers) = client.server_reflection_info_opt(common::deadline()).unwrap();
    block_on(async {
        let question = v1alpha::ServerReflectionRequest {
            message_request: Some(v1alpha::server_reflection_request::Message_request::FileByFilename(
                "greeter.proto".into(),
            )),
            ..Default::default()
        };
        sink.send((question.clone(), WriteFlags::default())).await.unwrap();
        let answer = answers.try_next().await.unwrap().unwrap();
        assert_eq!(*answer.original_request, question);
        use v1alpha::server_reflection_response::Message_response;
        assert!(matches!(answer.message_response, Some(Message_response::FileDescriptorResponse(_))), "{answer:?}");
        let _ = sink.close().await; // may race the server's OK status, checked next
        assert!(answers.try_next().await.unwrap().is_none(), "the stream ends OK after half-close");
    });
}

#[test]
fn reflection_can_be_turned_off() {
    let mut config = common::local();
    config.reflection = false;
    let server = TestServer::start(config);
    let client = v1::ServerReflectionClient::new(server.channel());
    let (mut sink, mut answers) = client.server_reflection_info_opt(common::deadline()).unwrap();
    let err = block_on(async {
        let _ = sink.send((request(Question::ListServices(String::new())), WriteFlags::default())).await;
        answers.try_next().await.unwrap_err()
    });
    assert_eq!(common::status_code(&err), grpcio::RpcStatusCode::UNIMPLEMENTED);
}
