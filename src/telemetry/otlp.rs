//! Spans to an OpenTelemetry collector over OTLP/gRPC (`TraceService/Export`), on grpcio
//! like everything else here: no async runtime. [`BoundedExport`] is the span processor: a
//! bounded queue, drained by a thread of its own that batches and exports, so ending a span
//! on a completion-queue thread never waits for the collector; when the queue is full or
//! the collector does not answer, spans are dropped and counted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use grpcio::{CallOption, ChannelBuilder, EnvBuilder};
use opentelemetry::trace::{SpanKind, Status};
use opentelemetry::{Array, Value};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanProcessor};
use opentelemetry_sdk::Resource;
use protobuf::{EnumOrUnknown, MessageField};

use crate::proto::otlp::{self, common, resource, trace};
use crate::tls::ClientTls;

/// Spans waiting for export at most; more are dropped (and counted) until the exporter
/// catches up.
const QUEUE_LEN: usize = 2048;
/// Spans sent in one `Export` call at most.
const BATCH_LEN: usize = 512;
/// How long a span may wait for companions before its batch goes.
const BATCH_WAIT: Duration = Duration::from_millis(500);
/// One `Export` call's deadline: a collector that does not answer costs the batch, no more.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where spans go: an OTLP/gRPC collector (Jaeger, the OpenTelemetry Collector, …).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceExport {
    /// The collector's `host:port` (OTLP/gRPC, usually port 4317).
    pub endpoint: String,
    /// Dial it over TLS, trusting the system's roots (an `https://` endpoint).
    pub tls: bool,
    /// `service.name` of the spans (`OTEL_SERVICE_NAME` wins when it is set).
    pub service_name: String,
}

impl TraceExport {
    /// From OpenTelemetry's standard variables: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, else
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (`http://host:4317`, or `https://…` for TLS). `None` when
    /// neither is set, or when `OTEL_TRACES_EXPORTER=none` or `OTEL_SDK_DISABLED=true` says so.
    pub fn from_env(service_name: &str) -> Option<Self> {
        let var = |name| std::env::var(name).ok().filter(|v| !v.is_empty());
        if var("OTEL_TRACES_EXPORTER").as_deref() == Some("none") || var("OTEL_SDK_DISABLED").as_deref() == Some("true")
        {
            return None;
        }
        let endpoint = var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT"))?;
        Some(Self::to(&endpoint, service_name))
    }

    /// To `endpoint`: `host:port`, `http://host:port` or `https://host:port`.
    pub fn to(endpoint: &str, service_name: &str) -> Self {
        let (tls, rest) = match endpoint.split_once("://") {
            Some((scheme, rest)) => (scheme == "https", rest),
            None => (false, endpoint),
        };
        TraceExport { endpoint: rest.trim_end_matches('/').to_owned(), tls, service_name: service_name.to_owned() }
    }

    /// The resource the spans describe: `service.name` and the SDK's own attributes.
    pub(crate) fn resource(&self) -> Resource {
        let builder = Resource::builder();
        if std::env::var_os("OTEL_SERVICE_NAME").is_some() {
            builder.build()
        } else {
            builder.with_service_name(self.service_name.clone()).build()
        }
    }
}

/// Client spans, to `export`: a tracer for [`GreeterBuilder::tracer`](crate::GreeterBuilder::tracer),
/// or, installed as the global tracer provider, for every client of the process (and any
/// other code instrumented with OpenTelemetry). Dropping it exports what is left (a few
/// seconds at most when the collector is away) and stops.
pub struct ClientTracing {
    provider: SdkTracerProvider,
    stats: Arc<ExportStats>,
}

impl ClientTracing {
    pub fn start(export: &TraceExport) -> std::io::Result<Self> {
        let stats = Arc::new(ExportStats::default());
        let resource = export.resource();
        let processor = BoundedExport::start(export, &resource, stats.clone())?;
        let provider = SdkTracerProvider::builder().with_resource(resource).with_span_processor(processor).build();
        Ok(ClientTracing { provider, stats })
    }

    /// The same, installed as the process's global tracer provider.
    pub fn install_global(export: &TraceExport) -> std::io::Result<Self> {
        let tracing = Self::start(export)?;
        opentelemetry::global::set_tracer_provider(tracing.provider.clone());
        Ok(tracing)
    }

    /// A tracer whose spans go to this export.
    pub fn tracer(&self) -> opentelemetry_sdk::trace::SdkTracer {
        use opentelemetry::trace::TracerProvider as _;
        self.provider.tracer("greeter")
    }

    /// Spans exported so far.
    pub fn spans_exported(&self) -> u64 {
        self.stats.exported.load(Ordering::Relaxed)
    }

    /// Spans lost so far: the queue was full, or the collector did not take them.
    pub fn spans_dropped(&self) -> u64 {
        self.stats.dropped.load(Ordering::Relaxed)
    }

    /// Exports what is queued now.
    pub fn flush(&self) {
        let _ = self.provider.force_flush();
    }
}

impl Drop for ClientTracing {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown() {
            log::warn!("client spans not all exported: {e}");
        }
    }
}

/// Spans exported and dropped so far.
#[derive(Debug, Default)]
pub(crate) struct ExportStats {
    pub(crate) exported: AtomicU64,
    pub(crate) dropped: AtomicU64,
}

enum Queued {
    Span(Box<SpanData>),
    /// Export what is queued, then answer.
    Flush(SyncSender<()>),
}

/// The span processor: a bounded queue and the thread that exports it.
#[derive(Debug)]
pub(crate) struct BoundedExport {
    queue: Mutex<Option<SyncSender<Queued>>>,
    stats: Arc<ExportStats>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl BoundedExport {
    pub(crate) fn start(export: &TraceExport, resource: &Resource, stats: Arc<ExportStats>) -> std::io::Result<Self> {
        let client = Exporter::connect(export, resource)?;
        let (tx, rx) = mpsc::sync_channel(QUEUE_LEN);
        let thread_stats = stats.clone();
        let thread =
            std::thread::Builder::new().name("greeter-otlp".into()).spawn(move || client.run(rx, &thread_stats))?;
        Ok(BoundedExport { queue: Mutex::new(Some(tx)), stats, thread: Mutex::new(Some(thread)) })
    }
}

impl SpanProcessor for BoundedExport {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        let queue = self.queue.lock().unwrap();
        let queued = queue.as_ref().is_some_and(|q| q.try_send(Queued::Span(Box::new(span))).is_ok());
        if !queued {
            // The queue is full, or shut down: the span is lost, and counted.
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        let (ack, done) = mpsc::sync_channel(1);
        let queue = self.queue.lock().unwrap().clone();
        let sent = queue.map(|q| q.send(Queued::Flush(ack)).is_ok()).unwrap_or(false);
        if sent && done.recv_timeout(EXPORT_TIMEOUT * 2).is_ok() {
            Ok(())
        } else {
            Err(OTelSdkError::Timeout(EXPORT_TIMEOUT * 2))
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let _ = self.force_flush();
        drop(self.queue.lock().unwrap().take()); // the thread ends once the queue is empty
        let Some(thread) = self.thread.lock().unwrap().take() else { return Ok(()) };
        let deadline = Instant::now() + timeout;
        while !thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if thread.is_finished() {
            let _ = thread.join();
            Ok(())
        } else {
            Err(OTelSdkError::Timeout(timeout))
        }
    }
}

/// The collector's client, used by the export thread only.
struct Exporter {
    client: otlp::TraceServiceClient,
    resource: resource::Resource,
}

impl Exporter {
    fn connect(export: &TraceExport, resource: &Resource) -> std::io::Result<Self> {
        let env = Arc::new(EnvBuilder::new().cq_count(1).name_prefix("greeter-otlp-cq").build());
        let mut builder = ChannelBuilder::new(env);
        if export.tls {
            builder = ClientTls::default().apply(builder).map_err(std::io::Error::other)?;
        }
        let channel = builder.connect(&export.endpoint);
        let resource = resource::Resource {
            attributes: resource.iter().map(|(k, v)| key_value(k.as_str(), v)).collect(),
            ..Default::default()
        };
        Ok(Exporter { client: otlp::TraceServiceClient::new(channel), resource })
    }

    /// Batches what the queue brings and exports it, until the queue is closed and empty.
    fn run(self, queue: Receiver<Queued>, stats: &ExportStats) {
        let mut batch: Vec<SpanData> = Vec::new();
        let mut first_at = None::<Instant>;
        loop {
            let wait = first_at.map_or(BATCH_WAIT, |t: Instant| BATCH_WAIT.saturating_sub(t.elapsed()));
            match queue.recv_timeout(wait) {
                Ok(Queued::Span(span)) => {
                    batch.push(*span);
                    first_at.get_or_insert_with(Instant::now);
                    if batch.len() < BATCH_LEN {
                        continue;
                    }
                }
                Ok(Queued::Flush(ack)) => {
                    self.export(std::mem::take(&mut batch), stats);
                    first_at = None;
                    let _ = ack.send(());
                    continue;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.export(std::mem::take(&mut batch), stats);
                    return;
                }
            }
            self.export(std::mem::take(&mut batch), stats);
            first_at = None;
        }
    }

    fn export(&self, spans: Vec<SpanData>, stats: &ExportStats) {
        if spans.is_empty() {
            return;
        }
        let count = spans.len() as u64;
        let request = self.request(spans);
        let options = CallOption::default().timeout(EXPORT_TIMEOUT);
        match self.client.export_opt(&request, options) {
            Ok(_) => stats.exported.fetch_add(count, Ordering::Relaxed),
            Err(e) => {
                log::debug!("OTLP export of {count} spans failed: {e}");
                stats.dropped.fetch_add(count, Ordering::Relaxed)
            }
        };
    }

    /// One `ExportTraceServiceRequest`: the resource, then the spans by instrumentation scope.
    fn request(&self, spans: Vec<SpanData>) -> otlp::ExportTraceServiceRequest {
        let mut scopes: Vec<trace::ScopeSpans> = Vec::new();
        for span in spans {
            let name = span.instrumentation_scope.name().to_owned();
            let converted = span_of(span);
            match scopes.iter_mut().find(|s| s.scope.name == name) {
                Some(scope) => scope.spans.push(converted),
                None => scopes.push(trace::ScopeSpans {
                    scope: MessageField::some(common::InstrumentationScope { name, ..Default::default() }),
                    spans: vec![converted],
                    ..Default::default()
                }),
            }
        }
        let resource_spans = trace::ResourceSpans {
            resource: MessageField::some(self.resource.clone()),
            scope_spans: scopes,
            ..Default::default()
        };
        otlp::ExportTraceServiceRequest { resource_spans: vec![resource_spans], ..Default::default() }
    }
}

/// One span in OTLP's terms.
fn span_of(span: SpanData) -> trace::Span {
    let context = &span.span_context;
    let parent = span.parent_span_id;
    let kind = match span.span_kind {
        SpanKind::Server => trace::span::SpanKind::SPAN_KIND_SERVER,
        SpanKind::Client => trace::span::SpanKind::SPAN_KIND_CLIENT,
        SpanKind::Producer => trace::span::SpanKind::SPAN_KIND_PRODUCER,
        SpanKind::Consumer => trace::span::SpanKind::SPAN_KIND_CONSUMER,
        SpanKind::Internal => trace::span::SpanKind::SPAN_KIND_INTERNAL,
    };
    let status = match &span.status {
        Status::Unset => trace::Status::default(),
        Status::Ok => {
            trace::Status { code: EnumOrUnknown::new(trace::status::StatusCode::STATUS_CODE_OK), ..Default::default() }
        }
        Status::Error { description } => trace::Status {
            code: EnumOrUnknown::new(trace::status::StatusCode::STATUS_CODE_ERROR),
            message: description.to_string(),
            ..Default::default()
        },
    };
    trace::Span {
        trace_id: context.trace_id().to_bytes().to_vec(),
        span_id: context.span_id().to_bytes().to_vec(),
        trace_state: context.trace_state().header(),
        parent_span_id: if parent == opentelemetry::trace::SpanId::INVALID {
            vec![]
        } else {
            parent.to_bytes().to_vec()
        },
        flags: u32::from(context.trace_flags().to_u8()),
        name: span.name.into_owned(),
        kind: EnumOrUnknown::new(kind),
        start_time_unix_nano: unix_nanos(span.start_time),
        end_time_unix_nano: unix_nanos(span.end_time),
        attributes: span.attributes.iter().map(|kv| key_value(kv.key.as_str(), &kv.value)).collect(),
        dropped_attributes_count: span.dropped_attributes_count,
        events: span
            .events
            .iter()
            .map(|e| trace::span::Event {
                time_unix_nano: unix_nanos(e.timestamp),
                name: e.name.to_string(),
                attributes: e.attributes.iter().map(|kv| key_value(kv.key.as_str(), &kv.value)).collect(),
                ..Default::default()
            })
            .collect(),
        status: MessageField::some(status),
        ..Default::default()
    }
}

fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

fn key_value(key: &str, value: &Value) -> common::KeyValue {
    common::KeyValue { key: key.to_owned(), value: MessageField::some(any_value(value)), ..Default::default() }
}

fn any_value(value: &Value) -> common::AnyValue {
    use common::any_value::Value as V;
    let value = match value {
        Value::Bool(b) => V::BoolValue(*b),
        Value::I64(i) => V::IntValue(*i),
        Value::F64(f) => V::DoubleValue(*f),
        Value::String(s) => V::StringValue(s.to_string()),
        Value::Array(array) => {
            let values: Vec<common::AnyValue> = match array {
                Array::Bool(v) => v.iter().map(|b| any_value(&Value::Bool(*b))).collect(),
                Array::I64(v) => v.iter().map(|i| any_value(&Value::I64(*i))).collect(),
                Array::F64(v) => v.iter().map(|f| any_value(&Value::F64(*f))).collect(),
                Array::String(v) => v.iter().map(|s| any_value(&Value::String(s.clone()))).collect(),
                _ => Vec::new(),
            };
            V::ArrayValue(common::ArrayValue { values, ..Default::default() })
        }
        other => V::StringValue(other.to_string()),
    };
    common::AnyValue { value: Some(value), ..Default::default() }
}
