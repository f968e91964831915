//! What the server tells its operators: Prometheus metrics in go-grpc-prometheus's names (so
//! dashboards and alerts written for Go services work unchanged), the numbers the services
//! keep about themselves, malloc's and the process's, and the `/metrics` endpoint that serves
//! them; the server's spans and its access log (`spans_and_log.rs`), exported over OTLP
//! (`otlp.rs`) and written as JSON lines (`access_log.rs`); our clients' spans
//! (`client_spans.rs`).
//!
//! grpcio has no interceptors, so calls are observed through the call layer: [`Prometheus`]
//! and [`SpansAndAccessLog`] are [`call::Observer`](crate::call::Observer)s, and every method
//! registered through the [`Registrar`](crate::call::Registrar) is observed by them. Calls
//! grpcio refuses before any handler runs (an unknown method; a unary request over the size
//! limit) are not counted.

mod access_log;
mod client_spans;
mod code_names;
mod endpoint;
mod finished_call;
mod handoff;
mod heap;
mod otlp;
mod otlp_wire;
mod protowire;
mod server_spans;
mod spans_and_log;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use grpcio::{MethodType, RpcContext, RpcStatusCode};
use prometheus::{
    Encoder as _, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use crate::call::{CallObserver, Caller, MethodName, MethodObserver, Observer, Refusal};

pub use access_log::AccessLog;
pub(crate) use access_log::AccessLogWriter;
pub use client_spans::ClientTracing;
pub(crate) use endpoint::MetricsEndpoint;
pub use otlp::TraceExport;
pub(crate) use spans_and_log::SpansAndAccessLog;

const LABELS: [&str; 3] = ["grpc_type", "grpc_service", "grpc_method"];

/// A number read when `/metrics` is scraped.
type Read = Box<dyn Fn() -> u64 + Send + Sync>;

#[derive(Default)]
struct ReadAtRender {
    gauges: Vec<(IntGauge, Read)>,
    /// Each reads a count that only grows.
    counters: Vec<(IntCounter, Read)>,
}

/// The server's Prometheus registry: one per server; [`Prometheus::render`] is what `/metrics`
/// serves.
pub(crate) struct Prometheus {
    registry: Registry,
    started: IntCounterVec,
    handled: IntCounterVec,
    received: IntCounterVec,
    sent: IntCounterVec,
    handling: HistogramVec,
    /// Calls the gate refused, by method and reason.
    refused: IntCounterVec,
    /// Gauges and counters whose value is kept elsewhere (by a service, by the span
    /// exporter), read at each render.
    read_at_render: Mutex<ReadAtRender>,
    /// malloc's in-use and free bytes (glibc only): see [`heap`].
    heap: Option<(IntGauge, IntGauge)>,
}

impl Prometheus {
    pub(crate) fn new() -> Arc<Self> {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric definition")
        };
        let mut handled_labels = LABELS.to_vec();
        handled_labels.push("grpc_code");
        let metrics = Prometheus {
            registry: Registry::new(),
            started: counter("grpc_server_started_total", "Total number of RPCs started on the server.", &LABELS),
            handled: counter(
                "grpc_server_handled_total",
                "Total number of RPCs completed on the server, regardless of success or failure.",
                &handled_labels,
            ),
            received: counter(
                "grpc_server_msg_received_total",
                "Total number of RPC stream messages received on the server.",
                &LABELS,
            ),
            sent: counter("grpc_server_msg_sent_total", "Total number of gRPC stream messages sent by the server.", &LABELS),
            handling: HistogramVec::new(
                HistogramOpts::new(
                    "grpc_server_handling_seconds",
                    "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
                ),
                &LABELS,
            )
            .expect("a valid metric definition"),
            refused: counter(
                "greeter_authz_refused_total",
                "Calls refused before their handler: no valid credential (reason: missing, expired, …) or denied by a policy (reason: policy).",
                &["grpc_service", "grpc_method", "reason"],
            ),
            read_at_render: Mutex::default(),
            heap: heap::AVAILABLE.then(|| {
                (
                    gauge("greeter_malloc_in_use_bytes", "Bytes malloc has handed out and not had back (glibc)."),
                    gauge("greeter_malloc_free_bytes", "Bytes freed but kept in malloc's arenas, part of RSS (glibc)."),
                )
            }),
        };
        let r = &metrics.registry;
        let collectors: [Box<dyn prometheus::core::Collector>; 6] = [
            Box::new(metrics.refused.clone()),
            Box::new(metrics.started.clone()),
            Box::new(metrics.handled.clone()),
            Box::new(metrics.received.clone()),
            Box::new(metrics.sent.clone()),
            Box::new(metrics.handling.clone()),
        ];
        for collector in collectors {
            r.register(collector).expect("metric names are unique");
        }
        if let Some((in_use, free)) = &metrics.heap {
            r.register(Box::new(in_use.clone())).expect("metric names are unique");
            r.register(Box::new(free.clone())).expect("metric names are unique");
        }
        #[cfg(target_os = "linux")]
        r.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))
            .expect("process metrics register once");
        Arc::new(metrics)
    }

    /// A gauge `name` whose value `read` gives when `/metrics` is scraped: what a service
    /// keeps about itself (subscriptions running, chats open).
    pub(crate) fn gauge(&self, name: &str, help: &str, read: impl Fn() -> u64 + Send + Sync + 'static) {
        let gauge = gauge(name, help);
        self.registry.register(Box::new(gauge.clone())).expect("metric names are unique");
        self.read_at_render.lock().unwrap().gauges.push((gauge, Box::new(read)));
    }

    /// A counter `name` (`…_total`) whose count, which only grows, `read` gives when
    /// `/metrics` is scraped: spans exported or dropped, log lines dropped.
    pub(crate) fn counter(&self, name: &str, help: &str, read: impl Fn() -> u64 + Send + Sync + 'static) {
        let counter = IntCounter::new(name, help).expect("a valid metric definition");
        self.registry.register(Box::new(counter.clone())).expect("metric names are unique");
        self.read_at_render.lock().unwrap().counters.push((counter, Box::new(read)));
    }

    /// Everything, in the Prometheus text format (version 0.0.4).
    pub(crate) fn render(&self) -> Vec<u8> {
        // Held to the end, so two scrapes at once see one another's readings whole.
        let read = self.read_at_render.lock().unwrap();
        for (gauge, value) in &read.gauges {
            gauge.set(value() as i64);
        }
        for (counter, value) in &read.counters {
            counter.inc_by(value().saturating_sub(counter.get()));
        }
        if let (Some((in_use, free)), Some(usage)) = (&self.heap, heap::usage()) {
            in_use.set(usage.in_use as i64);
            free.set(usage.free as i64);
        }
        let mut text = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut text).expect("text encoding into memory");
        text
    }
}

fn gauge(name: &str, help: &str) -> IntGauge {
    IntGauge::new(name, help).expect("a valid metric definition")
}

impl Observer for Prometheus {
    /// The method's series, created at 0 for every code, as go-grpc-prometheus does, so a
    /// rate over them exists before the first call.
    fn method(&self, method: MethodName<'_>) -> Arc<dyn MethodObserver> {
        let kind = match method.kind {
            MethodType::Unary => "unary",
            MethodType::ClientStreaming => "client_stream",
            MethodType::ServerStreaming => "server_stream",
            MethodType::Duplex => "bidi_stream",
        };
        let (service, name) = (method.service, method.method);
        let labels = [kind, service, name];
        Arc::new(MethodMetrics(Arc::new(MethodSeries {
            refused: self.refused.clone(),
            service: service.to_owned(),
            method: name.to_owned(),
            started: self.started.with_label_values(&labels),
            received: self.received.with_label_values(&labels),
            sent: self.sent.with_label_values(&labels),
            handling: self.handling.with_label_values(&labels),
            handled: code_names::grpc_go_names()
                .map(|code| self.handled.with_label_values(&[kind, service, name, code])),
        })))
    }
}

/// One method's series, resolved once so that counting a call is an atomic add per event.
struct MethodSeries {
    /// The refusals, labelled when one happens (its reason is known only then).
    refused: IntCounterVec,
    service: String,
    method: String,
    started: IntCounter,
    received: IntCounter,
    sent: IntCounter,
    handling: Histogram,
    handled: [IntCounter; code_names::COUNT],
}

/// One method's metrics, handed to each of its calls.
struct MethodMetrics(Arc<MethodSeries>);

impl MethodObserver for MethodMetrics {
    fn call_started(&self, _ctx: &RpcContext, _caller: &Caller) -> Box<dyn CallObserver> {
        self.0.started.inc();
        Box::new(CallRecord { series: self.0.clone(), arrived: Instant::now() })
    }
}

/// One call: its messages, its status and how long it took from arrival to status.
struct CallRecord {
    series: Arc<MethodSeries>,
    arrived: Instant,
}

impl CallObserver for CallRecord {
    fn message_received(&self) {
        self.series.received.inc();
    }

    fn message_sent(&self) {
        self.series.sent.inc();
    }

    fn refused(&self, refusal: &Refusal) {
        let series = &self.series;
        series.refused.with_label_values(&[&series.service, &series.method, refusal.reason]).inc();
    }

    /// Codes outside the 17 defined ones count as `Unknown`.
    fn finished(&self, code: RpcStatusCode) {
        self.series.handled[code_names::index(code)].inc();
        self.series.handling.observe(self.arrived.elapsed().as_secs_f64());
    }
}
