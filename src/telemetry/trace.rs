//! One SERVER span per call, named and described as OpenTelemetry's RPC conventions say
//! (`greeter.Greeter/SayHello`; `rpc.system`, `rpc.service`, `rpc.method`,
//! `rpc.grpc.status_code`, the server's and the peer's address and port), a child of the
//! caller's span when the request carries W3C trace context (`traceparent`, `tracestate`), the
//! root of a new trace when it does not; and, when asked, the access log's line for the call.
//! Both are a call observer, registered like the metrics for every method of every service.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Instant, SystemTime};

use grpcio::{Metadata, RpcContext, RpcStatusCode};
use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt as _, Tracer as _, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider, Span};

use super::access_log::{AccessLogWriter, Entry};
use super::otlp::{BoundedExport, ExportStats, TraceExport};
use crate::call::{CallObserver, Caller, MethodName, MethodObserver, Observer, Refusal};

/// The server's spans and access log: what is on, and where it goes.
pub(crate) struct CallTrace {
    tracer: Option<SdkTracer>,
    provider: Option<SdkTracerProvider>,
    pub(crate) spans: Arc<ExportStats>,
    pub(crate) log: Option<Arc<AccessLogWriter>>,
    server: Arc<ServerAddress>,
}

/// The server's own address, for the spans: the host it listens on, and the port it got.
#[derive(Default)]
pub(crate) struct ServerAddress {
    host: String,
    port: OnceLock<u16>,
}

impl CallTrace {
    /// Spans to `export` and lines to `log`, each when asked for; `listen` is the server's
    /// `--addr`.
    pub(crate) fn start(
        export: Option<&TraceExport>,
        log: Option<Arc<AccessLogWriter>>,
        listen: &str,
    ) -> std::io::Result<Self> {
        let spans = Arc::new(ExportStats::default());
        let provider = match export {
            Some(export) => {
                let resource = export.resource();
                let processor = BoundedExport::start(export, &resource, spans.clone())?;
                Some(SdkTracerProvider::builder().with_resource(resource).with_span_processor(processor).build())
            }
            None => None,
        };
        let tracer = provider.as_ref().map(|p| p.tracer("greeter"));
        let host = listen.rsplit_once(':').map_or(listen, |(host, _)| host).trim_matches(['[', ']']).to_owned();
        Ok(CallTrace { tracer, provider, spans, log, server: Arc::new(ServerAddress { host, port: OnceLock::new() }) })
    }

    /// The port the server got, once it listens.
    pub(crate) fn listening_on(&self, port: u16) {
        let _ = self.server.port.set(port);
    }

    /// Exports what is left and stops (a few seconds at most when the collector is away).
    pub(crate) fn stop(&self) {
        if let Some(provider) = &self.provider {
            if let Err(e) = provider.shutdown() {
                log::warn!("spans not all exported at shutdown: {e}");
            }
        }
        if let Some(log) = &self.log {
            log.stop();
        }
    }
}

impl Observer for CallTrace {
    fn method(&self, method: MethodName<'_>) -> Arc<dyn MethodObserver> {
        Arc::new(MethodTrace {
            span_name: format!("{}/{}", method.service, method.method),
            path: format!("/{}/{}", method.service, method.method),
            service: method.service.to_owned(),
            method: method.method.to_owned(),
            tracer: self.tracer.clone(),
            log: self.log.clone(),
            server: self.server.clone(),
        })
    }
}

struct MethodTrace {
    span_name: String,
    path: String,
    service: String,
    method: String,
    tracer: Option<SdkTracer>,
    log: Option<Arc<AccessLogWriter>>,
    server: Arc<ServerAddress>,
}

impl MethodObserver for MethodTrace {
    fn call_started(&self, ctx: &RpcContext, caller: &Caller) -> Box<dyn CallObserver> {
        let parent = TraceContextPropagator::new().extract(&Headers(ctx.request_headers()));
        let peer = peer_address(&ctx.peer());
        let span = self.tracer.as_ref().map(|tracer| {
            let mut attributes = vec![
                KeyValue::new("rpc.system", "grpc"),
                KeyValue::new("rpc.service", self.service.clone()),
                KeyValue::new("rpc.method", self.method.clone()),
                KeyValue::new("server.address", self.server.host.clone()),
            ];
            if let Some(port) = self.server.port.get() {
                attributes.push(KeyValue::new("server.port", i64::from(*port)));
            }
            if let Some(principal) = caller.principal() {
                attributes.push(KeyValue::new("enduser.id", principal.to_owned()));
            }
            if let Some((address, port)) = peer.rsplit_once(':') {
                attributes.push(KeyValue::new("network.peer.address", address.trim_matches(['[', ']']).to_owned()));
                if let Ok(port) = port.parse::<i64>() {
                    attributes.push(KeyValue::new("network.peer.port", port));
                }
            }
            tracer
                .span_builder(self.span_name.clone())
                .with_kind(SpanKind::Server)
                .with_attributes(attributes)
                .start_with_context(tracer, &parent)
        });
        // The call's trace: its own span's, or the caller's when it is not traced here.
        let trace_id = match &span {
            Some(span) => Some(span.span_context().trace_id()),
            None => Some(parent.span().span_context().trace_id()).filter(|_| parent.has_active_span()),
        };
        Box::new(TracedCall {
            span: Mutex::new(span),
            log: self.log.clone(),
            path: self.path.clone(),
            peer,
            trace_id: trace_id.map(|id| id.to_string()),
            principal: caller.principal().map(str::to_owned),
            denied_by: Mutex::new(None),
            started: SystemTime::now(),
            clock: Instant::now(),
            received: AtomicU64::new(0),
            sent: AtomicU64::new(0),
        })
    }
}

struct TracedCall {
    span: Mutex<Option<Span>>,
    log: Option<Arc<AccessLogWriter>>,
    path: String,
    peer: String,
    trace_id: Option<String>,
    /// The caller, as the gate verified it.
    principal: Option<String>,
    /// The policy rule that refused the call, if one did.
    denied_by: Mutex<Option<String>>,
    started: SystemTime,
    clock: Instant,
    received: AtomicU64,
    sent: AtomicU64,
}

impl CallObserver for TracedCall {
    fn message_received(&self) {
        self.received.fetch_add(1, Ordering::Relaxed);
    }

    fn message_sent(&self) {
        self.sent.fetch_add(1, Ordering::Relaxed);
    }

    fn refused(&self, refusal: &Refusal) {
        *self.denied_by.lock().unwrap() = refusal.rule.clone().or_else(|| Some(refusal.reason.to_owned()));
    }

    fn finished(&self, code: RpcStatusCode) {
        let denied_by = self.denied_by.lock().unwrap().take();
        let (received, sent) = (self.received.load(Ordering::Relaxed), self.sent.load(Ordering::Relaxed));
        if let Some(mut span) = self.span.lock().unwrap().take() {
            span.set_attribute(KeyValue::new("rpc.grpc.status_code", i64::from(i32::from(code))));
            span.set_attribute(KeyValue::new("greeter.messages_received", received as i64));
            span.set_attribute(KeyValue::new("greeter.messages_sent", sent as i64));
            if is_server_error(code) {
                span.set_status(Status::error(super::access_log::code_name(code)));
            }
            if let Some(rule) = &denied_by {
                span.set_attribute(KeyValue::new("greeter.authz.denied_by", rule.clone()));
            }
            span.end();
        }
        if let Some(log) = &self.log {
            log.write(&Entry {
                started: self.started,
                method: &self.path,
                peer: &self.peer,
                code,
                duration: self.clock.elapsed(),
                messages_in: received,
                messages_out: sent,
                trace_id: self.trace_id.clone(),
                principal: self.principal.as_deref(),
                denied_by: denied_by.as_deref(),
            });
        }
    }
}

/// The codes OpenTelemetry's gRPC conventions count as a server span's error: the ones that
/// say the server failed, not the caller.
fn is_server_error(code: RpcStatusCode) -> bool {
    [
        RpcStatusCode::UNKNOWN,
        RpcStatusCode::DEADLINE_EXCEEDED,
        RpcStatusCode::UNIMPLEMENTED,
        RpcStatusCode::INTERNAL,
        RpcStatusCode::UNAVAILABLE,
        RpcStatusCode::DATA_LOSS,
    ]
    .contains(&code)
}

/// `ipv4:127.0.0.1:5000` → `127.0.0.1:5000`; `ipv6:[::1]:5000` → `[::1]:5000`.
fn peer_address(peer: &str) -> String {
    peer.split_once(':').filter(|(scheme, _)| scheme.starts_with("ipv")).map_or(peer, |(_, rest)| rest).to_owned()
}

/// A request's metadata, as the W3C propagator reads it.
struct Headers<'a>(&'a Metadata);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k).collect()
    }
}
