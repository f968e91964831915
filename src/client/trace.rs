//! A CLIENT span per call, named and described as OpenTelemetry's RPC conventions say, a child
//! of the calling code's current span, and its context sent with the call as W3C trace context
//! (`traceparent`, `tracestate`), so the server's span joins the same trace.
//!
//! The spans go to the tracer the client was built with (`GreeterBuilder::tracer`), else to
//! the process's global tracer provider: nowhere, at next to no cost, unless the program
//! installed one (`ClientTracing::install_global`, or its own OpenTelemetry set-up).

use grpcio::{CallOption, MetadataBuilder, RpcStatusCode};
use opentelemetry::global::{self, BoxedSpan, BoxedTracer};
use opentelemetry::propagation::{Injector, TextMapPropagator as _};
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt as _, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracer;

use crate::proto::GREETER_SERVICE;

/// One call's span; ended once, by [`CallSpan::end`] or, for a call dropped unfinished, as
/// CANCELLED when dropped.
pub(crate) struct CallSpan(Option<BoxedSpan>);

impl CallSpan {
    /// Starts the span of `method` to `target` and adds its context to `headers`.
    pub(crate) fn start(
        tracer: Option<&SdkTracer>,
        method: &'static str,
        target: &str,
        headers: &mut Headers,
    ) -> CallSpan {
        let tracer = match tracer {
            Some(tracer) => BoxedTracer::new(Box::new(tracer.clone())),
            None => global::tracer("greeter"),
        };
        let parent = Context::current();
        let mut attributes = vec![
            KeyValue::new("rpc.system", "grpc"),
            KeyValue::new("rpc.service", GREETER_SERVICE),
            KeyValue::new("rpc.method", method),
        ];
        if let Some((host, port)) = target.rsplit_once(':').filter(|_| !target.contains(',')) {
            let host = host.rsplit('/').next().unwrap_or(host).trim_matches(['[', ']']);
            attributes.push(KeyValue::new("server.address", host.to_owned()));
            if let Ok(port) = port.parse::<i64>() {
                attributes.push(KeyValue::new("server.port", port));
            }
        }
        let span = tracer
            .span_builder(format!("{GREETER_SERVICE}/{method}"))
            .with_kind(SpanKind::Client)
            .with_attributes(attributes)
            .start_with_context(&tracer, &parent);
        let context = span.span_context().clone();
        if !context.is_valid() {
            return CallSpan(None);
        }
        TraceContextPropagator::new().inject_context(&parent.with_remote_span_context(context), headers);
        CallSpan(Some(span))
    }

    /// The call ended with `code` (`None`: no status, the transport failed).
    pub(crate) fn end(mut self, code: Option<RpcStatusCode>) {
        self.finish(code.unwrap_or(RpcStatusCode::UNKNOWN));
    }

    fn finish(&mut self, code: RpcStatusCode) {
        if let Some(mut span) = self.0.take() {
            span.set_attribute(KeyValue::new("rpc.grpc.status_code", i64::from(i32::from(code))));
            if code != RpcStatusCode::OK {
                span.set_status(Status::error(format!("{code:?}")));
            }
            span.end();
        }
    }
}

impl Drop for CallSpan {
    fn drop(&mut self) {
        self.finish(RpcStatusCode::CANCELLED);
    }
}

/// A call's outgoing metadata (its token, its trace context), as the W3C propagator writes it.
#[derive(Default)]
pub(crate) struct Headers {
    builder: Option<MetadataBuilder>,
}

impl Headers {
    pub(crate) fn add(&mut self, key: &str, value: &str) -> grpcio::Result<()> {
        self.builder.get_or_insert_with(MetadataBuilder::new).add_str(key, value).map(drop)
    }

    /// `options` with these headers, if there are any.
    pub(crate) fn apply(self, options: CallOption) -> CallOption {
        match self.builder {
            Some(builder) => options.headers(builder.build()),
            None => options,
        }
    }
}

impl Injector for Headers {
    fn set(&mut self, key: &str, value: String) {
        if let Err(e) = self.add(key, &value) {
            log::debug!("trace context not sent ({key}): {e}");
        }
    }
}
