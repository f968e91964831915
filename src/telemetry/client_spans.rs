//! Client spans, made by OpenTelemetry's SDK (our clients', and any other code of the program
//! instrumented with OpenTelemetry): [`ClientTracing`] is the SDK's tracer provider with a span
//! processor of ours, which hands each ended span to a thread that batches, encodes and
//! exports them (`otlp.rs`), so ending a span never waits for the collector.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use grpcio::EnvBuilder;
use opentelemetry::trace::{SpanId, SpanKind, Status, TracerProvider as _};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider, SpanData, SpanProcessor};

use super::handoff::{Consumer, Handoff, Limits};
use super::otlp::{ExportStats, OtlpExporter, TraceExport, SETTLE_TIMEOUT};
use super::otlp_wire::{self, span};
use super::protowire;

/// Ended spans waiting for export at most, how many go in one request, and how long the
/// first waits for companions.
const LIMITS: Limits = Limits { capacity: 2048, batch: 512, linger: Duration::from_millis(500) };

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
        let env = Arc::new(EnvBuilder::new().cq_count(1).name_prefix("greeter-otlp-cq").build());
        let exporter = OtlpExporter::connect(export, env, &resource, stats.clone())?;
        let processor = ClientSpanExport::start(exporter)?;
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
    pub fn tracer(&self) -> SdkTracer {
        self.provider.tracer("greeter")
    }

    /// Spans exported so far.
    pub fn spans_exported(&self) -> u64 {
        self.stats.exported()
    }

    /// Spans lost so far: the queue was full, or the collector did not take them.
    pub fn spans_dropped(&self) -> u64 {
        self.stats.dropped()
    }

    /// Exports what is queued now, and waits for the collector's answer.
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

/// The SDK's span processor: ended spans handed off to the export thread.
#[derive(Debug)]
struct ClientSpanExport {
    spans: Handoff<SpanData>,
    stats: Arc<ExportStats>,
}

impl ClientSpanExport {
    fn start(exporter: OtlpExporter) -> std::io::Result<Self> {
        let stats = exporter.stats().clone();
        let encoder = SpanDataExport { exporter, scopes: Vec::new(), spans: Vec::new(), scratch: Vec::new() };
        Ok(ClientSpanExport { spans: Handoff::start("greeter-otlp", LIMITS, encoder)?, stats })
    }
}

impl SpanProcessor for ClientSpanExport {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        if self.spans.push(span).is_err() {
            // The queue is full, or shut down: the span is lost, and counted.
            self.stats.drop_spans(1);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        if self.spans.flush(SETTLE_TIMEOUT * 2) {
            Ok(())
        } else {
            Err(OTelSdkError::Timeout(SETTLE_TIMEOUT * 2))
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        if self.spans.stop(timeout) {
            Ok(())
        } else {
            Err(OTelSdkError::Timeout(timeout))
        }
    }
}

/// The export thread's side: the SDK's spans, encoded scope by scope, and exported.
struct SpanDataExport {
    exporter: OtlpExporter,
    /// Each scope's name and encoded `InstrumentationScope`, as seen so far.
    scopes: Vec<(String, Vec<u8>)>,
    spans: Vec<u8>,
    scratch: Vec<u8>,
}

impl Consumer<SpanData> for SpanDataExport {
    fn consume(&mut self, batch: &mut Vec<SpanData>, settle: bool) {
        // Usually one scope (`greeter`); the spans of each go in a request of their own.
        while !batch.is_empty() {
            let scope_name = batch[0].instrumentation_scope.name().to_owned();
            let (same, rest): (Vec<SpanData>, Vec<SpanData>) =
                batch.drain(..).partition(|s| s.instrumentation_scope.name() == scope_name);
            *batch = rest;
            self.spans.clear();
            for data in &same {
                protowire::message(&mut self.spans, otlp_wire::SCOPE_SPANS_SPANS, &mut self.scratch, |out| {
                    encode_span_data(out, data)
                });
            }
            let scope = match self.scopes.iter().position(|(name, _)| *name == scope_name) {
                Some(i) => &self.scopes[i].1,
                None => {
                    let encoded = otlp_wire::scope(&scope_name);
                    self.scopes.push((scope_name, encoded));
                    &self.scopes.last().expect("just pushed").1
                }
            };
            self.exporter.export(scope, &self.spans, same.len() as u64);
        }
        if settle {
            self.exporter.settle(SETTLE_TIMEOUT);
        }
    }
}

/// One of the SDK's spans, as `Span`'s content.
fn encode_span_data(out: &mut Vec<u8>, data: &SpanData) {
    let context = &data.span_context;
    let mut scratch = Vec::new();
    protowire::bytes(out, span::TRACE_ID, &context.trace_id().to_bytes());
    protowire::bytes(out, span::SPAN_ID, &context.span_id().to_bytes());
    let trace_state = context.trace_state().header();
    if !trace_state.is_empty() {
        protowire::bytes(out, span::TRACE_STATE, trace_state.as_bytes());
    }
    if data.parent_span_id != SpanId::INVALID {
        protowire::bytes(out, span::PARENT_SPAN_ID, &data.parent_span_id.to_bytes());
    }
    protowire::fixed32(out, span::FLAGS, u32::from(context.trace_flags().to_u8()));
    protowire::bytes(out, span::NAME, data.name.as_bytes());
    let kind = match data.span_kind {
        SpanKind::Server => span::KIND_SERVER,
        SpanKind::Client => span::KIND_CLIENT,
        SpanKind::Producer => span::KIND_PRODUCER,
        SpanKind::Consumer => span::KIND_CONSUMER,
        SpanKind::Internal => span::KIND_INTERNAL,
    };
    protowire::uint(out, span::KIND, kind);
    protowire::fixed64(out, span::START_TIME_UNIX_NANO, unix_nanos(data.start_time));
    protowire::fixed64(out, span::END_TIME_UNIX_NANO, unix_nanos(data.end_time));
    for kv in &data.attributes {
        otlp_wire::attribute(out, span::ATTRIBUTES, kv.key.as_str(), &kv.value, &mut scratch);
    }
    if data.dropped_attributes_count > 0 {
        protowire::uint(out, span::DROPPED_ATTRIBUTES_COUNT, u64::from(data.dropped_attributes_count));
    }
    let mut event = Vec::new();
    for e in data.events.iter() {
        event.clear();
        protowire::fixed64(&mut event, span::EVENT_TIME_UNIX_NANO, unix_nanos(e.timestamp));
        protowire::bytes(&mut event, span::EVENT_NAME, e.name.as_bytes());
        for kv in &e.attributes {
            otlp_wire::attribute(&mut event, span::EVENT_ATTRIBUTES, kv.key.as_str(), &kv.value, &mut scratch);
        }
        protowire::bytes(out, span::EVENTS, &event);
    }
    if data.events.dropped_count > 0 {
        protowire::uint(out, span::DROPPED_EVENTS_COUNT, u64::from(data.events.dropped_count));
    }
    let status = match &data.status {
        Status::Unset => None,
        Status::Ok => Some((span::STATUS_OK, "")),
        Status::Error { description } => Some((span::STATUS_ERROR, description.as_ref())),
    };
    if let Some((code, message)) = status {
        protowire::message(out, span::STATUS, &mut scratch, |status| {
            if !message.is_empty() {
                protowire::bytes(status, span::STATUS_MESSAGE, message.as_bytes());
            }
            protowire::uint(status, span::STATUS_CODE, code);
        });
    }
}

fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}
