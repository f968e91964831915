//! Spans to an OpenTelemetry collector over OTLP/gRPC (`TraceService/Export`), on grpcio
//! like everything else here: no async runtime. [`TraceExport`] says where; [`OtlpExporter`]
//! sends requests whose spans are encoded already (`otlp_wire.rs`), without waiting for the
//! answer: the call's result is counted on grpcio's completion-queue thread, so the thread
//! that encodes the spans never waits for the collector. A few requests may be on their way
//! at once; a batch that finds them all still unanswered, or that the collector does not
//! take, is dropped and counted.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use grpcio::{CallOption, ChannelBuilder, Environment, GrpcSlice, Marshaller, Method, MethodType};
use opentelemetry_sdk::Resource;

use super::otlp_wire;
use crate::proto::otlp::ExportTraceServiceResponse;
use crate::tls::ClientTls;

/// One `Export` call's deadline: a collector that does not answer costs the batch, no more.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);
/// Requests on their way at most; a batch that finds this many unanswered is dropped.
const MAX_IN_FLIGHT: usize = 4;
/// How long settling may take at most: every export's deadline, and a margin.
pub(crate) const SETTLE_TIMEOUT: Duration = Duration::from_secs(EXPORT_TIMEOUT.as_secs() + 1);

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

/// Spans exported and dropped so far.
#[derive(Debug, Default)]
pub(crate) struct ExportStats {
    pub(crate) exported: AtomicU64,
    pub(crate) dropped: AtomicU64,
}

impl ExportStats {
    pub(crate) fn exported(&self) -> u64 {
        self.exported.load(Ordering::Relaxed)
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub(crate) fn drop_spans(&self, count: u64) {
        self.dropped.fetch_add(count, Ordering::Relaxed);
    }
}

/// `TraceService/Export`, its request sent as the bytes it is already encoded as (handed
/// over, not copied: the marshaller takes them).
const EXPORT: Method<Cell<Vec<u8>>, ExportTraceServiceResponse> = Method {
    ty: MethodType::Unary,
    name: "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    req_mar: Marshaller { ser: encoded_request, de: never_received },
    resp_mar: Marshaller { ser: grpcio::pb_ser, de: grpcio::pb_de },
};

fn encoded_request(request: &Cell<Vec<u8>>, out: &mut GrpcSlice) -> grpcio::Result<()> {
    // A vector exactly as long as its room becomes the slice itself.
    *out = GrpcSlice::from(request.take());
    Ok(())
}

fn never_received(_: grpcio::MessageReader) -> grpcio::Result<Cell<Vec<u8>>> {
    Err(grpcio::Error::Codec("an export request is only ever sent".into()))
}

/// The collector's client: the channel, the resource every request describes, and the
/// requests on their way.
pub(crate) struct OtlpExporter {
    client: grpcio::Client,
    resource: Vec<u8>,
    stats: Arc<ExportStats>,
    in_flight: Arc<InFlight>,
}

#[derive(Default)]
struct InFlight {
    count: Mutex<usize>,
    none_left: Condvar,
}

impl OtlpExporter {
    /// A channel to `export` on `env`'s completion queues (not connected until the first
    /// export); spans that describe `resource`, counted in `stats`.
    pub(crate) fn connect(
        export: &TraceExport,
        env: Arc<Environment>,
        resource: &Resource,
        stats: Arc<ExportStats>,
    ) -> std::io::Result<Self> {
        let mut builder = ChannelBuilder::new(env);
        if export.tls {
            builder = ClientTls::default().apply(builder).map_err(std::io::Error::other)?;
        }
        let channel = builder.connect(&export.endpoint);
        Ok(OtlpExporter {
            client: grpcio::Client::new(channel),
            resource: otlp_wire::resource(resource),
            stats,
            in_flight: Arc::default(),
        })
    }

    pub(crate) fn stats(&self) -> &Arc<ExportStats> {
        &self.stats
    }

    /// Sends `count` spans of `scope` (an encoded `InstrumentationScope`), encoded in `spans`
    /// as `ScopeSpans.spans` fields; returns at once, the answer counted when it comes.
    pub(crate) fn export(&self, scope: &[u8], spans: &[u8], count: u64) {
        if count == 0 {
            return;
        }
        {
            let mut in_flight = self.in_flight.count.lock().unwrap();
            if *in_flight >= MAX_IN_FLIGHT {
                drop(in_flight);
                log::debug!("OTLP export of {count} spans dropped: {MAX_IN_FLIGHT} exports still unanswered");
                self.stats.drop_spans(count);
                return;
            }
            *in_flight += 1;
        }
        let head = otlp_wire::request_head(&self.resource, scope, spans.len());
        let mut request = Vec::with_capacity(head.len() + spans.len());
        request.extend_from_slice(&head);
        request.extend_from_slice(spans);
        let options = CallOption::default().timeout(EXPORT_TIMEOUT);
        let (stats, in_flight) = (self.stats.clone(), self.in_flight.clone());
        match self.client.unary_call_async(&EXPORT, &Cell::new(request), options) {
            Ok(answer) => self.client.spawn(async move {
                match answer.await {
                    Ok(_) => stats.exported.fetch_add(count, Ordering::Relaxed),
                    Err(e) => {
                        log::debug!("OTLP export of {count} spans failed: {e}");
                        stats.dropped.fetch_add(count, Ordering::Relaxed)
                    }
                };
                in_flight.done();
            }),
            Err(e) => {
                log::debug!("OTLP export of {count} spans not started: {e}");
                stats.drop_spans(count);
                in_flight.done();
            }
        }
    }

    /// Waits until every export started is answered (or has failed); false after `timeout`.
    pub(crate) fn settle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut count = self.in_flight.count.lock().unwrap();
        while *count > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            count = self.in_flight.none_left.wait_timeout(count, left).unwrap().0;
        }
        true
    }
}

impl InFlight {
    fn done(&self) {
        let mut count = self.count.lock().unwrap();
        *count -= 1;
        if *count == 0 {
            self.none_left.notify_all();
        }
    }
}
