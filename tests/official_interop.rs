//! gRPC's official interop cases (`grpc.testing.TestService`), each its own test in every
//! direction: grpc-go v1.85.0's interop client against our server, our client against
//! grpc-go's interop server, and our client against our server; plaintext, and the same over
//! TLS with the grpc-go module's test certificates.
//!
//! `tests/interop/setup.sh` installs grpc-go's `client` and `server` (as
//! `target/interop/bin/grpc-go-interop-{client,server}`) and copies its `testdata/`
//! certificates to `target/interop/grpc-go-testdata/`.
//!
//! `custom_metadata` meets two engine limits of grpcio 0.13 (no custom trailers from the
//! server, no trailers of streaming calls in the client): its tests assert the exact failure,
//! so they turn red the day the limit is gone.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::examples::example;
use common::process::{output_within, KillOnDrop, DEADLINE};
use common::tools::{tools, PeerServer};
use greeter::interop::{
    Case, InteropClient, InteropError, InteropServer, InteropServerConfig, SoakConfig, STREAM_TRAILERS_LIMIT,
};
use greeter::ClientTls;

/// The name grpc's test server certificate (server1.pem) is issued for.
const TLS_SERVER_NAME: &str = "foo.test.google.fr";

/// What grpc-go's client prints when our server's reply lacks the echoed trailer.
const GO_CLIENT_NO_TRAILER: &str = "FATAL: [interop] Expected exactly one trailer from server. Received 0";

/// What our client reports when our server's reply lacks the echoed trailer.
const OUR_CLIENT_NO_TRAILER: &str =
    "custom_metadata: UnaryCall trailing metadata x-grpc-test-echo-trailing-bin: got [], want [[ab, ab, ab]]";

/// Soak limits for a loaded test machine: 10 iterations, each within 5 s, all within 60 s.
const SOAK_MAX_LATENCY_MS: u64 = 5_000;
const SOAK_OVERALL_S: u64 = 60;

#[derive(Clone, Copy)]
enum Security {
    Plaintext,
    #[cfg_attr(not(tls), allow(dead_code))]
    Tls,
}

fn testdata(file: &str) -> PathBuf {
    tools().out.join("grpc-go-testdata").join(file)
}

/// grpc-go's interop server, on a port it picks (`--port 0`) and reports in its log, which
/// it writes at INFO level only when asked: `interop server listening on [::]:PORT`.
struct GoServer {
    _child: KillOnDrop,
    port: u16,
}

impl GoServer {
    fn start(security: Security) -> Self {
        let mut cmd = tools().go_bin("grpc-go-interop-server");
        cmd.arg("--port=0").env("GRPC_GO_LOG_SEVERITY_LEVEL", "info").stdout(Stdio::null()).stderr(Stdio::piped());
        if let Security::Tls = security {
            cmd.arg("--use_tls=true")
                .arg(format!("--tls_cert_file={}", testdata("server1.pem").display()))
                .arg(format!("--tls_key_file={}", testdata("server1.key").display()));
        }
        let mut child = KillOnDrop(cmd.spawn().expect("grpc-go's interop server starts"));
        let stderr = BufReader::new(child.0.stderr.take().unwrap());
        let (port_tx, port_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut log = Vec::new();
            let mut port_tx = Some(port_tx);
            // Keep reading to the end, so the server never blocks on a full pipe.
            for line in stderr.lines().map_while(Result::ok) {
                if let Some(port) = line.split("interop server listening on ").nth(1) {
                    let port = port.rsplit(':').next().and_then(|p| p.trim().parse::<u16>().ok());
                    if let (Some(tx), Some(port)) = (port_tx.take(), port) {
                        let _ = tx.send(Ok(port));
                    }
                }
                log.push(line);
            }
            if let Some(tx) = port_tx {
                let _ = tx.send(Err(log.join("\n")));
            }
        });
        match port_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(port)) => GoServer { _child: child, port },
            Ok(Err(log)) => panic!("grpc-go's interop server exited without serving:\n{log}"),
            Err(_) => panic!("grpc-go's interop server did not report its port within 60 s"),
        }
    }
}

fn our_server(security: Security) -> InteropServer {
    let tls = match security {
        Security::Plaintext => None,
        Security::Tls => {
            Some(greeter::ServerTls::from_files(&testdata("server1.pem"), &testdata("server1.key"), None).unwrap())
        }
    };
    InteropServerConfig { addr: "127.0.0.1:0".to_owned(), tls }.start().expect("our interop server starts")
}

fn soak() -> SoakConfig {
    SoakConfig {
        max_latency: Duration::from_millis(SOAK_MAX_LATENCY_MS),
        overall_timeout: Duration::from_secs(SOAK_OVERALL_S),
        ..SoakConfig::default()
    }
}

/// Our client, in this process, runs `case` against `port`.
fn our_client(port: u16, case: Case, security: Security) -> Result<(), InteropError> {
    let tls = match security {
        Security::Plaintext => None,
        Security::Tls => Some(ClientTls {
            server_ca: Some(std::fs::read(testdata("ca.pem")).unwrap()),
            identity: None,
            server_name: Some(TLS_SERVER_NAME.to_owned()),
        }),
    };
    let client = InteropClient::connect("127.0.0.1", port, tls, soak()).unwrap();
    futures::executor::block_on(client.run(case))
}

/// grpc-go's interop client runs `case` against `port`, as its documentation runs it, but
/// dialling 127.0.0.1: for a name, grpc-go's DNS resolver also asks the nameserver for the
/// name's service config (a TXT lookup of `_grpc_config.localhost`) on every new channel,
/// and a query the nameserver drops costs the resolver's 5 s timeout, which fails a soak
/// iteration (`localhost` itself comes from /etc/hosts).
fn go_client(port: u16, case: Case, security: Security) -> Output {
    let mut cmd = tools().go_bin("grpc-go-interop-client");
    cmd.args(["--server_host=127.0.0.1", &format!("--server_port={port}"), &format!("--test_case={case}")]);
    cmd.arg(format!("--soak_per_iteration_max_acceptable_latency_ms={SOAK_MAX_LATENCY_MS}"));
    cmd.arg(format!("--soak_overall_timeout_seconds={SOAK_OVERALL_S}"));
    if let Security::Tls = security {
        cmd.args(["--use_tls=true", "--use_test_ca=true", &format!("--server_host_override={TLS_SERVER_NAME}")]);
        cmd.arg(format!("--ca_file={}", testdata("ca.pem").display()));
    }
    output_within(cmd, &format!("grpc-go's interop client, {case}"), DEADLINE)
}

fn go_client_vs_our_server(case: Case, security: Security) {
    let server = our_server(security);
    let out = go_client(server.port(), case, security);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if case == Case::CustomMetadata {
        // Engine limit: our server cannot send the echoed trailer. The initial metadata,
        // checked first, passed.
        assert!(!out.status.success(), "custom_metadata passed: the trailer limit is gone, update the tests");
        assert!(stderr.contains(GO_CLIENT_NO_TRAILER), "custom_metadata failed otherwise:\n{stderr}");
    } else {
        assert!(out.status.success(), "grpc-go's client failed {case} against our server:\n{stderr}");
    }
    server.shutdown();
}

fn our_client_vs_go_server(case: Case, security: Security) {
    let server = GoServer::start(security);
    let outcome = our_client(server.port, case, security);
    if case == Case::CustomMetadata {
        // Engine limit: our client cannot read a streaming call's trailers. The unary half
        // (initial and trailing metadata) and the streaming half's initial metadata passed.
        let err = outcome.expect_err("custom_metadata passed: the client trailer limit is gone, update the tests");
        assert_eq!(err.to_string(), format!("custom_metadata: engine limit: {STREAM_TRAILERS_LIMIT}"));
    } else {
        outcome.unwrap_or_else(|e| panic!("our client failed against grpc-go's server: {e}"));
    }
}

fn our_client_vs_our_server(case: Case, security: Security) {
    let server = our_server(security);
    let outcome = our_client(server.port(), case, security);
    if case == Case::CustomMetadata {
        // Engine limit: our server cannot send the echoed trailer (the unary half stops there).
        let err = outcome.expect_err("custom_metadata passed: the trailer limit is gone, update the tests");
        assert_eq!(err.to_string(), OUR_CLIENT_NO_TRAILER);
    } else {
        outcome.unwrap_or_else(|e| panic!("our client failed against our server: {e}"));
    }
    server.shutdown();
}

macro_rules! direction {
    ($module:ident, $run:ident, $security:expr) => {
        mod $module {
            use super::*;
            direction!(@cases $run, $security,
                empty_unary: EmptyUnary,
                large_unary: LargeUnary,
                client_streaming: ClientStreaming,
                server_streaming: ServerStreaming,
                ping_pong: PingPong,
                empty_stream: EmptyStream,
                timeout_on_sleeping_server: TimeoutOnSleepingServer,
                cancel_after_begin: CancelAfterBegin,
                cancel_after_first_response: CancelAfterFirstResponse,
                status_code_and_message: StatusCodeAndMessage,
                special_status_message: SpecialStatusMessage,
                custom_metadata: CustomMetadata,
                unimplemented_method: UnimplementedMethod,
                unimplemented_service: UnimplementedService,
                rpc_soak: RpcSoak,
                channel_soak: ChannelSoak
            );
        }
    };
    (@cases $run:ident, $security:expr, $($name:ident: $case:ident),*) => {
        $(
            #[test]
            fn $name() {
                $run(Case::$case, $security);
            }
        )*
    };
}

direction!(go_client_vs_our_server, go_client_vs_our_server, Security::Plaintext);
direction!(our_client_vs_go_server, our_client_vs_go_server, Security::Plaintext);
direction!(our_client_vs_our_server, our_client_vs_our_server, Security::Plaintext);

#[cfg(tls)]
mod tls {
    use super::*;
    direction!(go_client_vs_our_server, go_client_vs_our_server, Security::Tls);
    direction!(our_client_vs_go_server, our_client_vs_go_server, Security::Tls);
    direction!(our_client_vs_our_server, our_client_vs_our_server, Security::Tls);
}

/// The case names are upstream's (`doc/interop-test-descriptions.md`, copied here as the
/// oracle), the fourteen core cases in its order, then the four of compression and the two
/// soaks; each parses back.
#[test]
fn case_names_are_upstreams() {
    const UPSTREAM_CORE: [&str; 14] = [
        "empty_unary",
        "large_unary",
        "client_streaming",
        "server_streaming",
        "ping_pong",
        "empty_stream",
        "timeout_on_sleeping_server",
        "cancel_after_begin",
        "cancel_after_first_response",
        "status_code_and_message",
        "special_status_message",
        "custom_metadata",
        "unimplemented_method",
        "unimplemented_service",
    ];
    let core: Vec<&str> = Case::CORE.iter().map(|c| c.name()).collect();
    assert_eq!(core, UPSTREAM_CORE);
    let all: Vec<&str> = Case::ALL.iter().map(|c| c.name()).collect();
    assert_eq!(
        all[14..],
        [
            "client_compressed_unary",
            "client_compressed_streaming",
            "server_compressed_unary",
            "server_compressed_streaming",
            "rpc_soak",
            "channel_soak"
        ]
    );
    for name in all {
        assert_eq!(name.parse::<Case>().unwrap().name(), name);
    }
    let err = "no_such_case".parse::<Case>().unwrap_err().to_string();
    assert!(err.starts_with("unknown test case \"no_such_case\"; the cases are empty_unary, "), "{err}");
}

/// The example binaries, as the by-hand run uses them: `interop_server --port 0` prints the
/// port it took; `interop_client --test_case=all` passes every case but custom_metadata and
/// the two client_compressed ones (engine limits), for each of which it prints one line
/// naming the check, and exits non-zero.
#[test]
fn the_examples_run_all_cases() {
    let mut server = example("interop_server");
    server.arg("--port=0").env("RUST_LOG", "warn");
    let server = PeerServer::start(server, "examples/interop_server");
    let mut client = example("interop_client");
    client.args(["--server_host=127.0.0.1", &format!("--server_port={}", server.port), "--test_case=all"]);
    client.arg(format!("--soak_per_iteration_max_acceptable_latency_ms={SOAK_MAX_LATENCY_MS}"));
    client.arg(format!("--soak_overall_timeout_seconds={SOAK_OVERALL_S}"));
    let out = output_within(client, "examples/interop_client", DEADLINE);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let passed: Vec<&str> = stdout.lines().filter_map(|l| l.strip_prefix("PASS ")).collect();
    let limited = [Case::CustomMetadata, Case::ClientCompressedUnary, Case::ClientCompressedStreaming];
    let want: Vec<&str> = Case::ALL.iter().filter(|c| !limited.contains(c)).map(|c| c.name()).collect();
    assert_eq!(passed, want);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(
        errors,
        [
            format!("error: {OUR_CLIENT_NO_TRAILER}"),
            compression::our_server_refuses(Case::ClientCompressedUnary),
            compression::our_server_refuses(Case::ClientCompressedStreaming),
        ]
    );
    assert_eq!(out.status.code(), Some(1));

    // grpc-go's client against the example server, as its documentation runs it.
    let out = go_client(server.port, Case::LargeUnary, Security::Plaintext);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Bad flags and bad requests get clear errors, not hangs or panics.
#[test]
fn bad_flags_are_reported_once() {
    let mut client = example("interop_client");
    client.arg("--test_case=nope");
    let out = output_within(client, "interop_client --test_case=nope", DEADLINE);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.lines().any(|l| l.starts_with("error: unknown test case \"nope\"")), "{stderr}");

    let mut server = example("interop_server");
    server.args(["--port=0", "--use_tls"]);
    let out = output_within(server, "interop_server --use_tls", DEADLINE);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("error: --use_tls needs --tls_cert_file and --tls_key_file"), "{stderr}");

    let mut client = example("interop_client");
    client.args(["--use_tls", "--use_test_ca"]);
    let out = output_within(client, "interop_client --use_test_ca", DEADLINE);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("error: --use_test_ca needs --ca_file"), "{stderr}");
}

/// Requests the spec does not cover get INVALID_ARGUMENT (or RESOURCE_EXHAUSTED) naming the
/// field, from our server.
#[test]
fn bad_requests_get_clear_statuses() {
    use greeter::proto::testing::{
        EchoStatus, ResponseParameters, SimpleRequest, StreamingOutputCallRequest, TestServiceClient,
    };
    use grpcio::RpcStatusCode;

    let server = our_server(Security::Plaintext);
    let env = std::sync::Arc::new(grpcio::EnvBuilder::new().cq_count(1).build());
    let channel = grpcio::ChannelBuilder::new(env).connect(&format!("127.0.0.1:{}", server.port()));
    let client = TestServiceClient::new(channel);
    let status = |req: &SimpleRequest| match client.unary_call(req) {
        Err(grpcio::Error::RpcFailure(s)) => (s.code(), s.message().to_owned()),
        other => panic!("expected a failure, got {other:?}"),
    };

    let (code, msg) = status(&SimpleRequest { response_size: -1, ..Default::default() });
    assert_eq!((code, msg.as_str()), (RpcStatusCode::INVALID_ARGUMENT, "response_size is -1; it cannot be negative"));
    let (code, msg) = status(&SimpleRequest { response_size: i32::MAX, ..Default::default() });
    assert_eq!(code, RpcStatusCode::RESOURCE_EXHAUSTED, "{msg}");
    let bad_code = EchoStatus { code: 99, message: "x".into(), ..Default::default() };
    let (code, msg) = status(&SimpleRequest { response_status: Some(bad_code).into(), ..Default::default() });
    assert_eq!(
        (code, msg.as_str()),
        (RpcStatusCode::INVALID_ARGUMENT, "response_status.code 99 is not a gRPC status code (0..=16)")
    );
    let mut unknown_type = SimpleRequest::new();
    unknown_type.response_type = protobuf::EnumOrUnknown::from_i32(7);
    let (code, msg) = status(&unknown_type);
    assert_eq!(
        (code, msg.as_str()),
        (RpcStatusCode::INVALID_ARGUMENT, "response_type 7 is not a PayloadType this server knows")
    );

    let negative = ResponseParameters { size: 1, interval_us: -5, ..Default::default() };
    let req = StreamingOutputCallRequest { response_parameters: vec![negative], ..Default::default() };
    let mut stream = client.streaming_output_call(&req).unwrap();
    let outcome = futures::executor::block_on(futures::TryStreamExt::try_next(&mut stream));
    match outcome {
        Err(grpcio::Error::RpcFailure(s)) => assert_eq!(
            (s.code(), s.message()),
            (RpcStatusCode::INVALID_ARGUMENT, "response_parameters[0].interval_us is -5; it cannot be negative")
        ),
        other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
    }
    server.shutdown();
}

/// `interval_us` is honoured: each of four responses comes after its own 20 ms pause, not
/// all four after one. (Arrival gaps are held to half the interval: the scheduler may delay
/// one response and not the next.)
#[test]
fn interval_us_spaces_the_responses() {
    use greeter::proto::testing::{ResponseParameters, StreamingOutputCallRequest, TestServiceClient};

    let server = our_server(Security::Plaintext);
    let env = std::sync::Arc::new(grpcio::EnvBuilder::new().cq_count(1).build());
    let channel = grpcio::ChannelBuilder::new(env).connect(&format!("127.0.0.1:{}", server.port()));
    let client = TestServiceClient::new(channel);
    let params = (0..4).map(|_| ResponseParameters { size: 3, interval_us: 20_000, ..Default::default() }).collect();
    let req = StreamingOutputCallRequest { response_parameters: params, ..Default::default() };
    let started = std::time::Instant::now();
    let mut stream = client.streaming_output_call(&req).unwrap();
    let mut arrivals = Vec::new();
    while let Some(_response) = futures::executor::block_on(futures::TryStreamExt::try_next(&mut stream)).unwrap() {
        arrivals.push(started.elapsed());
    }
    assert_eq!(arrivals.len(), 4);
    assert!(arrivals[0] >= Duration::from_millis(20), "the first came after {:?}", arrivals[0]);
    for pair in arrivals.windows(2) {
        assert!(pair[1] - pair[0] >= Duration::from_millis(10), "responses came at {arrivals:?}");
    }
    assert!(started.elapsed() >= Duration::from_millis(80), "took {:?}", started.elapsed());
    server.shutdown();
}

/// The four compression cases. grpc-go v1.85.0's interop client and server implement none of
/// them (and register no gzip codec), so grpc-go's side is `compress-check`
/// (tests/interop/go/cmd/compress-check): the cases as upstream describes them, on grpc-go
/// with its gzip codec, reading each message's compressed flag through grpc-go's stats
/// handler. Our server compresses as asked (per call, and per message in a stream); it cannot
/// tell whether a request arrived compressed (`COMPRESSION_LIMIT`), so it fails the
/// client_compressed cases at their compressed request, and our client cannot see a
/// response's flag (`RESPONSE_COMPRESSION_LIMIT`): tests/compression.rs reads it on the wire.
mod compression {
    use super::*;
    use greeter::interop::COMPRESSION_LIMIT;

    /// What our client reports when our server meets `expect_compressed` on the compressed
    /// request, the check after the probe.
    pub fn our_server_refuses(case: Case) -> String {
        let call = if case == Case::ClientCompressedUnary { "UnaryCall" } else { "StreamingInputCall" };
        let code = grpcio::RpcStatusCode::INVALID_ARGUMENT;
        format!("error: {case}: {call} failed: {code:?}: {COMPRESSION_LIMIT}")
    }

    fn go_checker(port: u16, case: Case) -> Output {
        let mut cmd = tools().go_bin("compress-check");
        cmd.args(["client", "-addr", &format!("127.0.0.1:{port}"), "-case", case.name()]);
        output_within(cmd, &format!("compress-check client {case}"), DEADLINE)
    }

    fn go_server() -> PeerServer {
        let mut cmd = tools().go_bin("compress-check");
        cmd.args(["server", "-port", "0"]);
        PeerServer::start(cmd, "compress-check server")
    }

    /// grpc-go (compress-check) calls our server: it reads each reply's flag, so the
    /// server_compressed cases prove our server compresses exactly the messages asked for.
    fn go_client_vs_our_server(case: Case) {
        let server = our_server(Security::Plaintext);
        let out = go_checker(server.port(), case);
        let stdout = String::from_utf8_lossy(&out.stdout);
        match case {
            Case::ServerCompressedUnary | Case::ServerCompressedStreaming => {
                assert!(
                    out.status.success(),
                    "{case} against our server:\n{stdout}{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                assert!(stdout.lines().any(|l| l == format!("PASS {case}")), "{stdout}");
            }
            _ => {
                // The probe passes (our server refuses every expect_compressed), the compressed
                // request then fails the same way.
                assert!(!out.status.success(), "{case} passed: COMPRESSION_LIMIT is gone, update the tests");
                let fail = stdout.lines().find(|l| l.starts_with("FAIL ")).unwrap_or_default();
                assert!(fail.contains(COMPRESSION_LIMIT), "{case} failed otherwise:\n{stdout}");
            }
        }
        server.shutdown();
    }

    /// Our client against grpc-go's server (compress-check), which checks each request's flag:
    /// the client_compressed cases prove our client compresses exactly the messages it should.
    fn our_client_vs_go_server(case: Case) {
        let server = go_server();
        our_client(server.port, case, Security::Plaintext)
            .unwrap_or_else(|e| panic!("our client failed {case} against grpc-go's server: {e}"));
    }

    fn our_client_vs_our_server(case: Case) {
        let server = our_server(Security::Plaintext);
        let outcome = our_client(server.port(), case, Security::Plaintext);
        match case {
            Case::ServerCompressedUnary | Case::ServerCompressedStreaming => {
                outcome.unwrap_or_else(|e| panic!("our client failed {case} against our server: {e}"))
            }
            _ => {
                let err = outcome.expect_err("client_compressed passed: COMPRESSION_LIMIT is gone, update the tests");
                assert_eq!(format!("error: {err}"), our_server_refuses(case));
            }
        }
        server.shutdown();
    }

    macro_rules! cases {
        ($($name:ident: $run:ident $case:ident),* $(,)?) => {
            $(
                #[test]
                fn $name() {
                    $run(Case::$case);
                }
            )*
        };
    }

    cases!(
        go_client_vs_our_server_client_compressed_unary: go_client_vs_our_server ClientCompressedUnary,
        go_client_vs_our_server_client_compressed_streaming: go_client_vs_our_server ClientCompressedStreaming,
        go_client_vs_our_server_server_compressed_unary: go_client_vs_our_server ServerCompressedUnary,
        go_client_vs_our_server_server_compressed_streaming: go_client_vs_our_server ServerCompressedStreaming,
        our_client_vs_go_server_client_compressed_unary: our_client_vs_go_server ClientCompressedUnary,
        our_client_vs_go_server_client_compressed_streaming: our_client_vs_go_server ClientCompressedStreaming,
        our_client_vs_go_server_server_compressed_unary: our_client_vs_go_server ServerCompressedUnary,
        our_client_vs_go_server_server_compressed_streaming: our_client_vs_go_server ServerCompressedStreaming,
        our_client_vs_our_server_client_compressed_unary: our_client_vs_our_server ClientCompressedUnary,
        our_client_vs_our_server_client_compressed_streaming: our_client_vs_our_server ClientCompressedStreaming,
        our_client_vs_our_server_server_compressed_unary: our_client_vs_our_server ServerCompressedUnary,
        our_client_vs_our_server_server_compressed_streaming: our_client_vs_our_server ServerCompressedStreaming,
    );
}

/// CompressedRequest (not a core case) meets an engine limit: our server cannot tell a
/// compressed request from a plain one, so `expect_compressed` gets INVALID_ARGUMENT naming
/// the limit either way (right for the uncompressed probe, wrong for the compressed request).
#[test]
fn expect_compressed_is_an_engine_limit() {
    use greeter::interop::COMPRESSION_LIMIT;
    use greeter::proto::testing::{BoolValue, SimpleRequest, TestServiceClient};
    use grpcio::{CompressionAlgorithms, RpcStatusCode};

    let server = our_server(Security::Plaintext);
    let addr = format!("127.0.0.1:{}", server.port());
    let env = std::sync::Arc::new(grpcio::EnvBuilder::new().cq_count(1).build());
    let req = SimpleRequest {
        response_size: 10,
        expect_compressed: Some(BoolValue { value: true, ..Default::default() }).into(),
        ..Default::default()
    };
    let gzip = grpcio::ChannelBuilder::new(env.clone())
        .default_compression_algorithm(CompressionAlgorithms::GRPC_COMPRESS_GZIP)
        .connect(&addr);
    let plain = grpcio::ChannelBuilder::new(env).connect(&addr);
    for channel in [gzip, plain] {
        match TestServiceClient::new(channel).unary_call(&req) {
            Err(grpcio::Error::RpcFailure(s)) => {
                assert_eq!((s.code(), s.message()), (RpcStatusCode::INVALID_ARGUMENT, COMPRESSION_LIMIT))
            }
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }
    server.shutdown();
}
