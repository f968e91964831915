//! Prometheus metrics in go-grpc-prometheus's names, so dashboards and alerts written for Go
//! services work unchanged; plus ours (stock subscriptions, chats, ticks) and the process's.
//!
//! grpcio has no interceptors, so calls are counted by the sinks and streams the handlers use:
//! [`service`](crate::server::service) wraps grpcio's in [`call`]'s types for every method it
//! registers, and the handlers never see the difference. Calls grpcio refuses before any
//! handler runs (an unknown method; a unary request over the size limit) are not counted.

pub mod call;
pub mod endpoint;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use grpcio::{Method, MethodType, RpcContext, RpcStatusCode};
use prometheus::{
    Encoder as _, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use crate::heap;
use crate::patterns::stock_price::TickerStats;

pub use call::{Replies, Reply, Requests};
pub use endpoint::MetricsEndpoint;

const LABELS: [&str; 3] = ["grpc_type", "grpc_service", "grpc_method"];

/// Every status code, as grpc-go spells it in `grpc_code`, indexed by the code's number.
pub const CODE_NAMES: [&str; 17] = [
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
];

/// grpc-go's name for a status code; codes outside the 17 defined ones count as `Unknown`.
pub fn code_name(code: RpcStatusCode) -> &'static str {
    CODE_NAMES.get(i32::from(code) as usize).copied().unwrap_or("Unknown")
}

/// The server's metrics registry. One per server; [`ServerMetrics::render`] is what
/// `/metrics` serves.
pub struct ServerMetrics {
    registry: Registry,
    started: IntCounterVec,
    handled: IntCounterVec,
    received: IntCounterVec,
    sent: IntCounterVec,
    handling: HistogramVec,
    chats_open: IntGauge,
    subscriptions_active: IntGauge,
    ticks_sent: IntCounter,
    /// malloc's in-use and free bytes (glibc only): see [`crate::heap`].
    heap: Option<(IntGauge, IntGauge)>,
    ticker: Arc<TickerStats>,
    /// Serializes renders, which bring the ticker's counts up to date.
    render: Mutex<()>,
}

impl ServerMetrics {
    pub fn new(ticker: Arc<TickerStats>) -> Arc<Self> {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric definition")
        };
        let mut handled_labels = LABELS.to_vec();
        handled_labels.push("grpc_code");
        let metrics = ServerMetrics {
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
            chats_open: IntGauge::new("greeter_chats_open", "Chat calls open right now.").unwrap(),
            subscriptions_active: IntGauge::new(
                "greeter_stock_subscriptions_active",
                "GetStockPrice subscriptions sending ticks right now.",
            )
            .unwrap(),
            ticks_sent: IntCounter::new("greeter_stock_ticks_sent_total", "Stock price ticks sent, all subscriptions.")
                .unwrap(),
            heap: heap::AVAILABLE.then(|| {
                let gauge = |name, help| IntGauge::new(name, help).expect("a valid metric definition");
                (
                    gauge("greeter_malloc_in_use_bytes", "Bytes malloc has handed out and not had back (glibc)."),
                    gauge("greeter_malloc_free_bytes", "Bytes freed but kept in malloc's arenas, part of RSS (glibc)."),
                )
            }),
            ticker,
            render: Mutex::new(()),
        };
        let r = &metrics.registry;
        let collectors: [Box<dyn prometheus::core::Collector>; 8] = [
            Box::new(metrics.started.clone()),
            Box::new(metrics.handled.clone()),
            Box::new(metrics.received.clone()),
            Box::new(metrics.sent.clone()),
            Box::new(metrics.handling.clone()),
            Box::new(metrics.chats_open.clone()),
            Box::new(metrics.subscriptions_active.clone()),
            Box::new(metrics.ticks_sent.clone()),
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

    /// The series of one method, created at 0 for every code, as go-grpc-prometheus does, so
    /// a rate over them exists before the first call.
    pub fn method<Req, Resp>(self: &Arc<Self>, method: &Method<Req, Resp>) -> MethodMetrics {
        let (service, name) = method.name.trim_start_matches('/').split_once('/').expect("a method is /service/name");
        let kind = match method.ty {
            MethodType::Unary => "unary",
            MethodType::ClientStreaming => "client_stream",
            MethodType::ServerStreaming => "server_stream",
            MethodType::Duplex => "bidi_stream",
        };
        let labels = [kind, service, name];
        let handled = CODE_NAMES.map(|code| self.handled.with_label_values(&[kind, service, name, code]));
        let series = MethodSeries {
            started: self.started.with_label_values(&labels),
            received: self.received.with_label_values(&labels),
            sent: self.sent.with_label_values(&labels),
            handling: self.handling.with_label_values(&labels),
            handled,
            open: (name == "Chat" && service == "greeter.Greeter").then(|| self.chats_open.clone()),
        };
        MethodMetrics { series: Some(Arc::new(series)) }
    }

    /// Everything, in the Prometheus text format (version 0.0.4).
    pub fn render(&self) -> Vec<u8> {
        let _one_at_a_time = self.render.lock().unwrap();
        self.subscriptions_active.set(self.ticker.active() as i64);
        self.ticks_sent.inc_by(self.ticker.ticks_sent().saturating_sub(self.ticks_sent.get()));
        if let (Some((in_use, free)), Some(usage)) = (&self.heap, heap::usage()) {
            in_use.set(usage.in_use as i64);
            free.set(usage.free as i64);
        }
        let mut text = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut text).expect("text encoding into memory");
        text
    }
}

struct MethodSeries {
    started: IntCounter,
    received: IntCounter,
    sent: IntCounter,
    handling: Histogram,
    handled: [IntCounter; 17],
    /// A gauge of the calls open right now, for the methods that have one.
    open: Option<IntGauge>,
}

/// One method's metrics, handed to each of its calls; [`MethodMetrics::off`] counts nothing.
#[derive(Clone, Default)]
pub struct MethodMetrics {
    series: Option<Arc<MethodSeries>>,
}

impl MethodMetrics {
    pub fn off() -> Self {
        MethodMetrics { series: None }
    }

    /// A call has arrived: counts it as started, and its request if it came with one.
    pub fn start(&self, ctx: &RpcContext, request_included: bool) -> CallMetrics {
        let Some(series) = &self.series else { return CallMetrics(None) };
        series.started.inc();
        if request_included {
            series.received.inc();
        }
        if let Some(open) = &series.open {
            open.inc();
        }
        let record = CallRecord {
            series: series.clone(),
            arrived: Instant::now(),
            deadline: ctx.deadline(),
            done: AtomicBool::new(false),
        };
        CallMetrics(Some(Arc::new(record)))
    }
}

/// One call's record, shared by its request stream and its reply sink: its messages, and its
/// status once sent. Nothing when metrics are off.
#[derive(Clone)]
pub struct CallMetrics(Option<Arc<CallRecord>>);

struct CallRecord {
    series: Arc<MethodSeries>,
    arrived: Instant,
    deadline: grpcio::Deadline,
    done: AtomicBool,
}

impl CallMetrics {
    fn received(&self) {
        if let Some(record) = &self.0 {
            record.series.received.inc();
        }
    }

    fn sent(&self) {
        if let Some(record) = &self.0 {
            record.series.sent.inc();
        }
    }

    /// The call is over with `code`; only the first report counts.
    fn finish(&self, code: RpcStatusCode) {
        if let Some(record) = &self.0 {
            record.finish(code);
        }
    }

    /// The call ended with grpcio error `e`: a status from C-core, or the client gone.
    fn failed(&self, e: &grpcio::Error) {
        if let Some(record) = &self.0 {
            let code = match e {
                grpcio::Error::RpcFailure(status) | grpcio::Error::RpcFinished(Some(status)) => status.code(),
                _ => record.ended_by_client(),
            };
            record.finish(code);
        }
    }
}

impl CallRecord {
    fn finish(&self, code: RpcStatusCode) {
        if self.done.swap(true, Ordering::AcqRel) {
            return;
        }
        let index = usize::try_from(i32::from(code)).ok().filter(|&i| i < CODE_NAMES.len()).unwrap_or(2);
        self.series.handled[index].inc();
        self.series.handling.observe(self.arrived.elapsed().as_secs_f64());
        if let Some(open) = &self.series.open {
            open.dec();
        }
    }

    /// What the client saw when the call ended without a status from us.
    fn ended_by_client(&self) -> RpcStatusCode {
        if self.deadline.exceeded() {
            RpcStatusCode::DEADLINE_EXCEEDED
        } else {
            RpcStatusCode::CANCELLED
        }
    }
}

impl Drop for CallRecord {
    /// Handlers always end a call with a status; one that ends unreported was cancelled by
    /// grpcio (the client went away, or its deadline passed).
    fn drop(&mut self) {
        if !self.done.load(Ordering::Acquire) {
            self.finish(self.ended_by_client());
        }
    }
}
