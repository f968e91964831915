//! Traces with real components: a Jaeger (v1.76.0, built by `tests/interop/setup.sh`) on
//! loopback receives OTLP/gRPC and answers its HTTP query API; grpc-go's otelgrpc client and
//! server (`tests/interop/go/cmd/otel-{client,server}`) call ours and are called; what Jaeger
//! holds is read back and checked span by span. And the access log, line by line.

mod common;

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::process::output_within;
use common::scrape::{get, try_get};
use common::tools::{jaeger, tools, PeerServer};
use common::{wait_until, RefusedPort, TestServer};
use futures::executor::block_on;
use futures::TryStreamExt as _;
use greeter::{AccessLog, ClientTracing, Greeter, TraceExport};
use grpcio::RpcStatusCode;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState};
use serde_json::Value;

/// A Jaeger of the test's own: OTLP/gRPC in, the query API out, spans in memory; stopped
/// (with its process group) when dropped.
struct Jaeger {
    child: Child,
    otlp: String,
    query: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

impl Jaeger {
    /// Jaeger on free loopback ports, ready: its query API answers as Jaeger's does, and its
    /// OTLP receiver takes an (empty) export. Jaeger cannot report the ports it chose, so the
    /// test picks them; one taken by another program in between makes Jaeger exit, and the
    /// next try takes others.
    fn start() -> Self {
        let mut failures = Vec::new();
        for _ in 0..3 {
            match Self::try_start() {
                Ok(jaeger) => return jaeger,
                Err(why) => failures.push(why),
            }
        }
        panic!("jaeger did not start in 3 tries: {failures:#?}");
    }

    fn try_start() -> Result<Self, String> {
        let binary = jaeger();
        let dir = tempfile::tempdir().unwrap();
        let [otlp, query, grpc] = common::free_ports();
        let config = dir.path().join("jaeger.yaml");
        std::fs::write(
            &config,
            format!(
                "service:\n  extensions: [jaeger_storage, jaeger_query]\n  pipelines:\n    traces:\n      \
                 receivers: [otlp]\n      processors: [batch]\n      exporters: [jaeger_storage_exporter]\n  \
                 telemetry:\n    metrics:\n      level: none\n    logs:\n      level: warn\n\
                 extensions:\n  jaeger_query:\n    storage:\n      traces: memstore\n    http:\n      endpoint: \
                 127.0.0.1:{query}\n    grpc:\n      endpoint: 127.0.0.1:{grpc}\n  jaeger_storage:\n    backends:\n      \
                 memstore:\n        memory:\n          max_traces: 10000\n\
                 receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:{otlp}\n\
                 processors:\n  batch:\n    timeout: 100ms\n\
                 exporters:\n  jaeger_storage_exporter:\n    trace_storage: memstore\n",
            ),
        )
        .unwrap();
        let child = Command::new(binary)
            .arg(format!("--config={}", config.display()))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("jaeger.log")).unwrap())
            .spawn()
            .expect("jaeger starts");
        let query = std::net::SocketAddr::from(([127, 0, 0, 1], query));
        let mut jaeger = Jaeger { child, otlp: format!("127.0.0.1:{otlp}"), query, _dir: dir };
        let env = std::sync::Arc::new(grpcio::EnvBuilder::new().cq_count(1).build());
        let collector = grpcio::ChannelBuilder::new(env).connect(&jaeger.otlp);
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = jaeger.child.try_wait() {
                return Err(format!("jaeger exited ({status}): {}", jaeger.log()));
            }
            // Jaeger's listener may accept, then reset, a connection while it is starting.
            let query_ready = matches!(try_get(jaeger.query, "/api/services"),
                Ok((status, body)) if status.contains("200") && body.contains("\"data\""));
            let export = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
            if query_ready && common::raw::unary(&collector, export, Vec::new(), Duration::from_secs(1)).is_ok() {
                return Ok(jaeger);
            }
            if start.elapsed() > Duration::from_secs(60) {
                return Err(format!("jaeger was not ready within 60 s: {}", jaeger.log()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("jaeger.log")).unwrap_or_default()
    }

    fn export(&self, service: &str) -> TraceExport {
        TraceExport::to(&self.otlp, service)
    }

    /// `GET path` on the query API, as JSON.
    fn api(&self, path: &str) -> Value {
        let (status, body) = get(self.query, path);
        assert!(status.contains("200"), "{path}: {status}\n{body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body}"))
    }

    /// Waits (up to 30 s) until the traces of `service` hold `spans` spans each, `traces` of
    /// them; returns them.
    fn traces_of(&self, service: &str, traces: usize, spans: usize) -> Vec<Trace> {
        let start = Instant::now();
        loop {
            let found: Vec<Trace> = self.api(&format!("/api/traces?service={service}&lookback=1h&limit=100"))["data"]
                .as_array()
                .unwrap_or(&Vec::new())
                .iter()
                .map(Trace::new)
                .collect();
            if found.len() >= traces && found.iter().all(|t| t.spans.len() >= spans) {
                assert_eq!(found.len(), traces, "traces of {service}: {found:#?}");
                return found;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "Jaeger has for {service}: {found:#?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits (up to 30 s) until trace `id` holds `spans` spans; returns it.
    fn trace(&self, id: TraceId, spans: usize) -> Trace {
        let start = Instant::now();
        loop {
            let (status, body) = get(self.query, &format!("/api/traces/{id}"));
            if status.contains("200") {
                let trace = Trace::new(&serde_json::from_str::<Value>(&body).unwrap()["data"][0]);
                if trace.spans.len() >= spans {
                    return trace;
                }
            }
            assert!(start.elapsed() < Duration::from_secs(30), "trace {id} in Jaeger: {status} {body}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Jaeger {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).stderr(Stdio::null()).status();
        let _ = self.child.wait();
    }
}

/// One trace as Jaeger's API returns it, its spans read for what the tests check.
#[derive(Debug)]
struct Trace {
    spans: Vec<Span>,
}

#[derive(Debug)]
struct Span {
    span_id: String,
    parent: Option<String>,
    operation: String,
    service: String,
    tags: BTreeMap<String, Value>,
}

impl Trace {
    fn new(trace: &Value) -> Self {
        let processes = &trace["processes"];
        let spans = trace["spans"]
            .as_array()
            .map(|spans| {
                spans
                    .iter()
                    .map(|s| Span {
                        span_id: s["spanID"].as_str().unwrap().to_owned(),
                        parent: s["references"]
                            .as_array()
                            .and_then(|r| r.iter().find(|r| r["refType"] == "CHILD_OF"))
                            .map(|r| r["spanID"].as_str().unwrap().to_owned()),
                        operation: s["operationName"].as_str().unwrap().to_owned(),
                        service: processes[s["processID"].as_str().unwrap()]["serviceName"]
                            .as_str()
                            .unwrap()
                            .to_owned(),
                        tags: s["tags"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|t| (t["key"].as_str().unwrap().to_owned(), t["value"].clone()))
                            .collect(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Trace { spans }
    }

    /// The one span of `service` named `operation`.
    fn span(&self, service: &str, operation: &str) -> &Span {
        let mut found = self.spans.iter().filter(|s| s.service == service && s.operation == operation);
        let span = found.next().unwrap_or_else(|| panic!("no {operation} span of {service} in {self:#?}"));
        assert!(found.next().is_none(), "two {operation} spans of {service} in {self:#?}");
        span
    }
}

impl Span {
    fn tag(&self, key: &str) -> &Value {
        self.tags.get(key).unwrap_or_else(|| panic!("no tag {key} on {self:#?}"))
    }

    /// A SERVER span of `greeter.Greeter/method`, as OpenTelemetry's RPC conventions name and
    /// describe it, ended with `code`.
    fn is_our_server_span(&self, method: &str, code: i64) {
        assert_eq!(self.operation, format!("greeter.Greeter/{method}"), "{self:#?}");
        assert_eq!(self.tag("span.kind"), "server", "{self:#?}");
        assert_eq!(self.tag("rpc.system"), "grpc", "{self:#?}");
        assert_eq!(self.tag("rpc.service"), "greeter.Greeter", "{self:#?}");
        assert_eq!(self.tag("rpc.method"), method, "{self:#?}");
        assert_eq!(self.tag("rpc.grpc.status_code"), code, "{self:#?}");
        assert_eq!(self.tag("server.address"), "127.0.0.1", "{self:#?}");
        assert!(self.tag("server.port").as_i64().is_some_and(|p| p > 0), "{self:#?}");
        assert_eq!(self.tag("network.peer.address"), "127.0.0.1", "{self:#?}");
        assert!(self.tag("network.peer.port").as_i64().is_some_and(|p| p > 0), "{self:#?}");
    }

    fn is_child_of(&self, parent: &Span) {
        assert_eq!(self.parent.as_deref(), Some(parent.span_id.as_str()), "{self:#?} is not a child of {parent:#?}");
    }
}

fn traced_server(jaeger: &Jaeger, service: &str) -> TestServer {
    let mut config = common::local();
    config.greeter.stock_interval = Duration::from_millis(10);
    config.traces = Some(jaeger.export(service));
    TestServer::start(config)
}

/// A remote parent the test makes current, so it knows the trace its calls join.
fn under_a_known_parent<T>(body: impl FnOnce() -> T) -> (TraceId, T) {
    let trace_id = TraceId::from_bytes(rand::random());
    let parent_span = SpanId::from_bytes(rand::random());
    let parent = SpanContext::new(trace_id, parent_span, TraceFlags::SAMPLED, true, TraceState::default());
    let _current = opentelemetry::Context::current().with_remote_span_context(parent).attach();
    (trace_id, body())
}

/// (a) grpc-go's client, instrumented with otelgrpc, calls our server: for SayHello and for
/// GetStockPrice, Jaeger holds one trace each, the Go CLIENT span and ours, a SERVER span, its
/// child.
#[test]
fn a_grpc_go_client_span_is_the_parent_of_our_server_span() {
    let jaeger = Jaeger::start();
    let server = traced_server(&jaeger, "greeter-a");
    let mut client = tools().go_bin("otel-client");
    client.args(["--addr", &server.addr, "--otlp", &jaeger.otlp, "--service-name", "go-client-a"]);
    let out = output_within(client, "otel-client", Duration::from_secs(60));
    assert!(out.status.success(), "otel-client: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ticks 5\nOK\n");

    let traces = jaeger.traces_of("go-client-a", 2, 2);
    for (method, received, sent) in [("SayHello", 1, 1), ("GetStockPrice", 1, 5)] {
        let trace = traces
            .iter()
            .find(|t| t.spans.iter().any(|s| s.operation.ends_with(method)))
            .unwrap_or_else(|| panic!("no {method} trace: {traces:#?}"));
        assert_eq!(trace.spans.len(), 2, "{trace:#?}");
        let go = trace.span("go-client-a", &format!("greeter.Greeter/{method}"));
        assert_eq!(go.tag("span.kind"), "client", "{go:#?}");
        assert_eq!(go.parent, None, "the Go client's span is the root: {go:#?}");
        let ours = trace.span("greeter-a", &format!("greeter.Greeter/{method}"));
        ours.is_our_server_span(method, 0);
        ours.is_child_of(go);
        assert_eq!(ours.tag("greeter.messages_received"), received, "{ours:#?}");
        assert_eq!(ours.tag("greeter.messages_sent"), sent, "{ours:#?}");
    }
}

/// (b) Our client calls our server: one trace of two spans, our CLIENT span the parent of our
/// SERVER span, the status code on both, an error status on the client's for a failed call.
#[test]
fn our_client_and_our_server_make_one_trace_with_the_status_on_both_spans() {
    let jaeger = Jaeger::start();
    let server = traced_server(&jaeger, "greeter-b");
    let tracing = ClientTracing::start(&jaeger.export("greeter-client-b")).unwrap();
    let client = Greeter::builder(&server.addr, Duration::from_secs(10)).tracer(tracing.tracer()).build().unwrap();

    let (ok, _) = under_a_known_parent(|| block_on(client.say_hello("traced")).unwrap());
    let (failed, err) =
        under_a_known_parent(|| block_on(client.record_metrics(futures::stream::iter([1.0, f64::NAN]))).unwrap_err());
    assert_eq!(err.code(), Some(RpcStatusCode::INVALID_ARGUMENT));
    tracing.flush();

    let trace = jaeger.trace(ok, 2);
    assert_eq!(trace.spans.len(), 2, "{trace:#?}");
    let client_span = trace.span("greeter-client-b", "greeter.Greeter/SayHello");
    assert_eq!(client_span.tag("span.kind"), "client");
    assert_eq!(client_span.tag("rpc.grpc.status_code"), 0);
    let server_span = trace.span("greeter-b", "greeter.Greeter/SayHello");
    server_span.is_our_server_span("SayHello", 0);
    server_span.is_child_of(client_span);

    let trace = jaeger.trace(failed, 2);
    assert_eq!(trace.spans.len(), 2, "{trace:#?}");
    let client_span = trace.span("greeter-client-b", "greeter.Greeter/RecordMetrics");
    assert_eq!(client_span.tag("rpc.grpc.status_code"), 3);
    assert_eq!(client_span.tag("otel.status_code"), "ERROR", "a failed call is an error for the client");
    let server_span = trace.span("greeter-b", "greeter.Greeter/RecordMetrics");
    server_span.is_our_server_span("RecordMetrics", 3);
    assert!(
        !server_span.tags.contains_key("otel.status_code"),
        "INVALID_ARGUMENT is the caller's error: {server_span:#?}"
    );
    server_span.is_child_of(client_span);
    assert_eq!(tracing.spans_dropped(), 0);
}

/// (c) Our client calls grpc-go's server, instrumented with otelgrpc: our CLIENT span is the
/// parent of the Go SERVER span, for a unary call and for a stream.
#[test]
fn our_client_span_is_the_parent_of_a_grpc_go_server_span() {
    let jaeger = Jaeger::start();
    let mut cmd = tools().go_bin("otel-server");
    cmd.args(["--port", "0", "--otlp", &jaeger.otlp, "--service-name", "go-server-c"]);
    let server = PeerServer::start(cmd, "otel-server");
    let tracing = ClientTracing::start(&jaeger.export("greeter-client-c")).unwrap();
    let client = Greeter::builder(&server.addr(), Duration::from_secs(10)).tracer(tracing.tracer()).build().unwrap();

    let (unary, reply) = under_a_known_parent(|| block_on(client.say_hello("go")).unwrap());
    assert_eq!(reply, "Hello go");
    let (stream, ticks) = under_a_known_parent(|| {
        let ticks = client.stock_prices("TSMC").unwrap();
        block_on(ticks.try_collect::<Vec<_>>()).unwrap()
    });
    assert_eq!(ticks.len(), 5);
    tracing.flush();

    for (id, method) in [(unary, "SayHello"), (stream, "GetStockPrice")] {
        let trace = jaeger.trace(id, 2);
        assert_eq!(trace.spans.len(), 2, "{trace:#?}");
        let ours = trace.span("greeter-client-c", &format!("greeter.Greeter/{method}"));
        assert_eq!(ours.tag("span.kind"), "client", "{ours:#?}");
        assert_eq!(ours.tag("rpc.grpc.status_code"), 0, "{ours:#?}");
        let go = trace.span("go-server-c", &format!("greeter.Greeter/{method}"));
        assert_eq!(go.tag("span.kind"), "server", "{go:#?}");
        go.is_child_of(ours);
    }
}

/// (d) The collector is down: every call is served as ever, and every span is dropped and
/// counted, on the server (`/metrics`) and in the client.
#[test]
fn with_the_collector_down_calls_go_on_and_dropped_spans_are_counted() {
    let refused = RefusedPort::hold();
    let mut config = common::local();
    config.metrics_addr = Some("127.0.0.1:0".to_owned());
    config.traces = Some(TraceExport::to(&refused.addr, "greeter-d"));
    let server = TestServer::start(config);
    let tracing = ClientTracing::start(&TraceExport::to(&refused.addr, "greeter-client-d")).unwrap();
    let client = Greeter::builder(&server.addr, Duration::from_secs(10)).tracer(tracing.tracer()).build().unwrap();
    for i in 0..20 {
        assert_eq!(block_on(client.say_hello(&i.to_string())).unwrap(), format!("Hello {i}"));
    }
    tracing.flush();
    assert_eq!((tracing.spans_exported(), tracing.spans_dropped()), (0, 20), "the client's 20 spans");
    wait_until("the server's 20 spans are dropped", || {
        server.scrape().value("greeter_trace_spans_dropped_total") == 20.0
    });
    assert_eq!(server.scrape().value("greeter_trace_spans_exported_total"), 0.0);
}

/// (e) The access log: one JSON line per finished call, for every call of a known sequence,
/// exactly, with its method, code, messages and peer; the trace id of a call that came with
/// W3C trace context.
#[test]
fn the_access_log_has_one_json_line_per_call() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let mut config = common::local();
    config.greeter.stock_interval = Duration::from_millis(10);
    config.access_log = Some(AccessLog::File(path.clone()));
    let server = TestServer::start(config);
    let server_port = server.server().port();
    let client = server.client();
    let started = Instant::now();

    client.say_hello("logged").unwrap();
    assert_eq!(client.stock_prices("TSMC", |_| {}).unwrap().len(), 5);
    assert_eq!(client.record_metrics(&[1.0, f64::NAN]).unwrap_err().code(), Some(RpcStatusCode::INVALID_ARGUMENT));
    assert_eq!(client.chat("log", &["a".to_owned(), "b".to_owned()], |_| {}).unwrap().len(), 2);
    // A call with the caller's trace context, sent by hand.
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let mut headers = grpcio::MetadataBuilder::new();
    headers.add_str("traceparent", traceparent).unwrap();
    let options = grpcio::CallOption::default().headers(headers.build()).timeout(Duration::from_secs(10));
    let request = greeter::proto::HelloRequest { name: "traced".into(), ..Default::default() };
    let raw = server.raw_client(); // kept: its connection must still be up when the peers are read
    raw.say_hello_opt(&request, options).unwrap();

    let elapsed = started.elapsed();
    // The client's connection, as the kernel has it, before it goes: its local address is the
    // peer the log must name.
    let peers = established_peers(server_port);
    // The shutdown writes every queued line: the file is then whole, no line still to come.
    server.shutdown();
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<Value> =
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}"))).collect();
    let mut summary: Vec<(String, String, u64, u64, Option<String>)> = lines
        .iter()
        .map(|l| {
            (
                l["method"].as_str().unwrap().to_owned(),
                l["code_name"].as_str().unwrap().to_owned(),
                l["messages_in"].as_u64().unwrap(),
                l["messages_out"].as_u64().unwrap(),
                l["trace_id"].as_str().map(str::to_owned),
            )
        })
        .collect();
    let line = |method: &str, code: &str, i, o, trace: Option<&str>| {
        (format!("/greeter.Greeter/{method}"), code.to_owned(), i, o, trace.map(str::to_owned))
    };
    let mut expected = [
        line("SayHello", "OK", 1, 1, None),
        line("GetStockPrice", "OK", 1, 5, None),
        line("RecordMetrics", "INVALID_ARGUMENT", 2, 0, None),
        line("Chat", "OK", 2, 2, None),
        line("SayHello", "OK", 1, 1, Some("0af7651916cd43dd8448eb211c80319c")),
    ];
    // Each line is written when its call's status has been sent; compared as a set of lines.
    summary.sort();
    expected.sort();
    assert_eq!(summary, expected);
    for l in &lines {
        let peer = l["peer"].as_str().unwrap();
        assert!(peers.iter().any(|p| p == peer), "the peer {peer} is not a connection to the server: {peers:?}: {l}");
        let duration = l["duration_ms"].as_f64().unwrap();
        assert!(
            duration > 0.0 && duration <= elapsed.as_secs_f64() * 1e3,
            "{duration} ms outside (0, {elapsed:?}]: {l}"
        );
        let code = (l["code"].as_i64().unwrap(), l["code_name"].as_str().unwrap());
        assert!([(0, "OK"), (3, "INVALID_ARGUMENT")].contains(&code), "{l}");
        assert!(l["time"].as_str().unwrap().ends_with('Z'), "{l}");
    }
}

/// The local addresses (`127.0.0.1:PORT`) of the established IPv4 loopback connections to
/// `port`, as the kernel lists them (/proc/net/tcp and, for C-core's dual-stack sockets,
/// /proc/net/tcp6 with IPv4-mapped addresses; hex, state 01 = ESTABLISHED).
fn established_peers(port: u16) -> Vec<String> {
    let table = ["/proc/net/tcp", "/proc/net/tcp6"].map(|f| std::fs::read_to_string(f).unwrap()).join("\n");
    let hex = |field: &str| -> (String, u16) {
        let (ip, port) = field.split_once(':').unwrap();
        // An IPv4-mapped IPv6 address ends with the IPv4 address's word.
        let ip = u32::from_str_radix(&ip[ip.len() - 8..], 16).unwrap().to_le_bytes();
        (format!("{}.{}.{}.{}", ip[0], ip[1], ip[2], ip[3]), u16::from_str_radix(port, 16).unwrap())
    };
    table
        .lines()
        .filter(|line| !line.trim().is_empty() && !line.trim_start().starts_with("sl"))
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, remote, state) = (hex(fields[1]), hex(fields[2]), fields[3]);
            (state == "01" && remote.1 == port).then(|| format!("{}:{}", local.0, local.1))
        })
        .collect()
}
