//! The server's spans: one SERVER span per call, named and described as OpenTelemetry's RPC
//! conventions say (`greeter.Greeter/SayHello`; `rpc.system`, `rpc.service`, `rpc.method`,
//! `rpc.grpc.status_code`, the server's and the peer's address and port), a child of the
//! caller's span when the request carries W3C trace context (`traceparent`, `tracestate`), the
//! root of a new trace when it does not.
//!
//! Not the SDK's spans: on a call's thread a span is only a decision and its ids (the SDK's
//! id generator). The sampler (as `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` choose
//! it) decides first, from the ids alone; a span it drops costs nothing more. A recorded one
//! is encoded later, on the export thread, straight into the OTLP request, its method's
//! name and attributes encoded once, when the method is registered.

use std::sync::OnceLock;

use grpcio::{Metadata, RpcStatusCode};
use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
use opentelemetry::trace::{SpanContext, TraceContextExt as _, TraceId};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{IdGenerator as _, RandomIdGenerator};

use super::finished_call::{Clock, FinishedCall, Peer, SpanIds};
use super::otlp_wire::{self, int_attribute, span, str_attribute, Key};
use super::protowire;

/// The scope (`InstrumentationScope.name`) of the server's spans.
pub(crate) const SCOPE: &str = "greeter";

/// The call-side half: the sampler and the ids.
pub(crate) struct ServerSpans {
    sampler: Sampler,
    ids: RandomIdGenerator,
}

/// What the sampler made of a call.
pub(crate) enum Decision {
    Recorded(SpanIds),
    /// Not recorded here; the caller's trace, when it sent one (for the access log).
    NotRecorded(Option<TraceId>),
}

impl ServerSpans {
    /// With the sampler OpenTelemetry's variables ask for.
    pub(crate) fn from_env() -> Self {
        ServerSpans { sampler: Sampler::from_env(), ids: RandomIdGenerator::default() }
    }

    /// The sampler's decision for a call with these request headers, and the span's ids when
    /// it records one.
    pub(crate) fn start(&self, headers: &Metadata) -> Decision {
        let caller = caller_context(headers);
        let trace_id = caller.as_ref().map_or_else(|| self.ids.new_trace_id(), SpanContext::trace_id);
        if !self.sampler.samples(caller.as_ref(), trace_id) {
            return Decision::NotRecorded(caller.map(|span| span.trace_id()));
        }
        let trace_state = caller.as_ref().map(|span| span.trace_state().header()).filter(|h| !h.is_empty());
        Decision::Recorded(SpanIds {
            trace_id,
            span_id: self.ids.new_span_id(),
            parent: caller.map(|span| span.span_id()),
            trace_state: trace_state.map(String::into_boxed_str),
        })
    }
}

/// The sampler `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` choose, read as
/// OpenTelemetry's SDK reads them (`parentbased_always_on` when unset or unknown; a ratio
/// that is missing or no number is 1), and deciding as its samplers decide, from the ids
/// alone: a parent-based one follows the caller's `sampled` flag when the call has a caller;
/// a ratio keeps the traces whose id's last 8 bytes, shifted right once, fall below ratio ×
/// 2^63, so every service of a trace decides alike.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Sampler {
    parent_based: bool,
    root: Root,
}

/// What a sampler decides without a caller to follow.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Root {
    AlwaysOn,
    AlwaysOff,
    /// Trace ids below this bound (of their lower 63 bits) are kept.
    Ratio(u64),
}

impl Sampler {
    pub(crate) fn from_env() -> Self {
        let var = |name| std::env::var(name).ok();
        Self::from_vars(var("OTEL_TRACES_SAMPLER").as_deref(), var("OTEL_TRACES_SAMPLER_ARG").as_deref())
    }

    fn from_vars(name: Option<&str>, arg: Option<&str>) -> Self {
        let ratio = || match arg.and_then(|a| a.parse::<f64>().ok()) {
            Some(ratio) if ratio >= 1.0 => Root::AlwaysOn,
            Some(ratio) => Root::Ratio((ratio.max(0.0) * (1u64 << 63) as f64) as u64),
            None => {
                log::warn!("OTEL_TRACES_SAMPLER_ARG {arg:?} is no ratio between 0 and 1: every trace is sampled");
                Root::AlwaysOn
            }
        };
        let (parent_based, root) = match name {
            None => (true, Root::AlwaysOn),
            Some("always_on") => (false, Root::AlwaysOn),
            Some("always_off") => (false, Root::AlwaysOff),
            Some("traceidratio") => (false, ratio()),
            Some("parentbased_always_on") => (true, Root::AlwaysOn),
            Some("parentbased_always_off") => (true, Root::AlwaysOff),
            Some("parentbased_traceidratio") => (true, ratio()),
            Some(other) => {
                log::warn!("OTEL_TRACES_SAMPLER {other:?} is not a sampler of ours: parentbased_always_on is used");
                (true, Root::AlwaysOn)
            }
        };
        Sampler { parent_based, root }
    }

    /// Whether a call in trace `trace_id`, with `caller` when it came with trace context, is
    /// recorded.
    pub(crate) fn samples(&self, caller: Option<&SpanContext>, trace_id: TraceId) -> bool {
        match caller {
            Some(caller) if self.parent_based => caller.is_sampled(),
            _ => match self.root {
                Root::AlwaysOn => true,
                Root::AlwaysOff => false,
                Root::Ratio(bound) => {
                    let low = u64::from_be_bytes(trace_id.to_bytes()[8..].try_into().expect("8 bytes"));
                    (low >> 1) < bound
                }
            },
        }
    }
}

/// The caller's span, from the W3C trace context of the request, when it carries any (the
/// propagator only runs then).
pub(crate) fn caller_context(headers: &Metadata) -> Option<SpanContext> {
    let has_context = headers.iter().any(|(key, _)| key.eq_ignore_ascii_case("traceparent"));
    if !has_context {
        return None;
    }
    let cx = TraceContextPropagator::new().extract(&Headers(headers));
    let span = cx.span().span_context().clone();
    span.is_valid().then_some(span)
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

/// The server's own address, for the spans: the host it listens on, and the port it got.
pub(crate) struct ServerAddress {
    host: String,
    port: OnceLock<u16>,
}

impl ServerAddress {
    /// From the server's `--addr`: `[::]:50051` is host `::`.
    pub(crate) fn new(listen: &str) -> Self {
        let host = listen.rsplit_once(':').map_or(listen, |(host, _)| host).trim_matches(['[', ']']).to_owned();
        ServerAddress { host, port: OnceLock::new() }
    }

    /// The port the server got, once it listens.
    pub(crate) fn listening_on(&self, port: u16) {
        let _ = self.port.set(port);
    }
}

/// The export-thread half: encodes finished calls' spans, as `ScopeSpans.spans` fields.
pub(crate) struct SpanEncoder {
    server: std::sync::Arc<ServerAddress>,
    /// `server.address` and `server.port`, encoded once the port is known.
    server_attributes: Option<Vec<u8>>,
    keys: CallKeys,
    body: Vec<u8>,
}

/// The keys of the attributes each call has its own values of.
struct CallKeys {
    peer_address: Key,
    peer_port: Key,
    status_code: Key,
    messages_received: Key,
    messages_sent: Key,
    principal: Key,
    denied_by: Key,
}

impl SpanEncoder {
    pub(crate) fn new(server: std::sync::Arc<ServerAddress>) -> Self {
        let keys = CallKeys {
            peer_address: Key::new(span::ATTRIBUTES, "network.peer.address"),
            peer_port: Key::new(span::ATTRIBUTES, "network.peer.port"),
            status_code: Key::new(span::ATTRIBUTES, "rpc.grpc.status_code"),
            messages_received: Key::new(span::ATTRIBUTES, "greeter.messages_received"),
            messages_sent: Key::new(span::ATTRIBUTES, "greeter.messages_sent"),
            principal: Key::new(span::ATTRIBUTES, "enduser.id"),
            denied_by: Key::new(span::ATTRIBUTES, "greeter.authz.denied_by"),
        };
        SpanEncoder { server, server_attributes: None, keys, body: Vec::with_capacity(512) }
    }

    /// Appends `call`'s span, with `ids`, to `out`; `peer` is the call's, `clock` dates it.
    pub(crate) fn encode(&mut self, out: &mut Vec<u8>, call: &FinishedCall, ids: &SpanIds, peer: &Peer, clock: &Clock) {
        let body = &mut self.body;
        body.clear();
        protowire::bytes(body, span::TRACE_ID, &ids.trace_id.to_bytes());
        protowire::bytes(body, span::SPAN_ID, &ids.span_id.to_bytes());
        if let Some(state) = &ids.trace_state {
            protowire::bytes(body, span::TRACE_STATE, state.as_bytes());
        }
        if let Some(parent) = ids.parent {
            protowire::bytes(body, span::PARENT_SPAN_ID, &parent.to_bytes());
        }
        protowire::fixed32(body, span::FLAGS, 1); // sampled: only sampled spans are recorded
        body.extend_from_slice(&call.method.span.encoded);
        let start = clock.unix_nanos(call.started);
        protowire::fixed64(body, span::START_TIME_UNIX_NANO, start);
        protowire::fixed64(body, span::END_TIME_UNIX_NANO, start + call.duration.as_nanos() as u64);
        if self.server_attributes.is_none() {
            self.server_attributes = server_attributes(&self.server);
        }
        if let Some(server) = &self.server_attributes {
            body.extend_from_slice(server);
        }
        let keys = &self.keys;
        keys.peer_address.str(body, peer.ip);
        if let Some(port) = peer.port {
            keys.peer_port.int(body, i64::from(port));
        }
        keys.status_code.int(body, i64::from(i32::from(call.code)));
        keys.messages_received.int(body, call.messages_received as i64);
        keys.messages_sent.int(body, call.messages_sent as i64);
        if let Some(principal) = &call.principal {
            keys.principal.str(body, principal);
        }
        if let Some(rule) = &call.denied_by {
            keys.denied_by.str(body, rule);
        }
        if is_server_error(call.code) {
            let message = super::code_names::canonical(call.code);
            let status = protowire::len_field_size(message.len()) + 2;
            protowire::len_prefix(body, span::STATUS, status);
            protowire::bytes(body, span::STATUS_MESSAGE, message.as_bytes());
            protowire::uint(body, span::STATUS_CODE, span::STATUS_ERROR);
        }
        protowire::bytes(out, otlp_wire::SCOPE_SPANS_SPANS, body);
    }
}

fn server_attributes(server: &ServerAddress) -> Option<Vec<u8>> {
    let port = server.port.get()?;
    let mut encoded = Vec::new();
    str_attribute(&mut encoded, span::ATTRIBUTES, "server.address", &server.host);
    int_attribute(&mut encoded, span::ATTRIBUTES, "server.port", i64::from(*port));
    Some(encoded)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::MethodName;
    use crate::proto::otlp::trace::span::SpanKind as OtlpKind;
    use crate::proto::otlp::trace::status::StatusCode;
    use crate::proto::otlp::ExportTraceServiceRequest;
    use crate::telemetry::finished_call::{MethodNames, PeerName};
    use grpcio::MethodType;
    use opentelemetry::trace::SpanId;
    use protobuf::Message as _;
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::Instant;

    thread_local! {
        /// When the test's calls started, on the monotonic clock.
        static STARTED: Instant = Instant::now();
    }

    fn finished(code: RpcStatusCode, peer: &str, span: &SpanIds) -> FinishedCall {
        let method = MethodName::new("/greeter.Greeter/Chat", MethodType::Duplex);
        FinishedCall {
            method: Arc::new(MethodNames::new(method)),
            peer: PeerName::new(peer),
            started: STARTED.with(|s| *s),
            duration: std::time::Duration::from_micros(2500),
            code,
            messages_received: 3,
            messages_sent: 2,
            trace_id: Some(span.trace_id),
            span: Some(span.clone()),
            principal: None,
            denied_by: None,
        }
    }

    /// `calls`' spans, encoded as the export thread does, read back as OTLP's request.
    fn request_of(calls: &[FinishedCall], port: Option<u16>) -> ExportTraceServiceRequest {
        let server = Arc::new(ServerAddress::new("[::]:50051"));
        if let Some(port) = port {
            server.listening_on(port);
        }
        let mut encoder = SpanEncoder::new(server);
        let mut spans = Vec::new();
        let clock = Clock::at(1_764_599_235_000_000_000, STARTED.with(|s| *s));
        for call in calls {
            encoder.encode(&mut spans, call, call.span.as_ref().unwrap(), &Peer::of(call.peer.as_str()), &clock);
        }
        let resource = otlp_wire::resource(&opentelemetry_sdk::Resource::builder().with_service_name("svc").build());
        let mut request = otlp_wire::request_head(&resource, &otlp_wire::scope(SCOPE), spans.len());
        request.extend_from_slice(&spans);
        ExportTraceServiceRequest::parse_from_bytes(&request).unwrap()
    }

    #[test]
    fn a_span_reads_back_as_otlp_with_every_attribute() {
        let ids = SpanIds {
            trace_id: TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap(),
            span_id: SpanId::from_hex("b7ad6b7169203331").unwrap(),
            parent: Some(SpanId::from_hex("00f067aa0ba902b7").unwrap()),
            trace_state: Some("congo=t61rcWkgMzE".into()),
        };
        let ok = finished(RpcStatusCode::OK, "ipv6:[::1]:40000", &ids);
        let mut failed = finished(RpcStatusCode::UNAVAILABLE, "ipv4:127.0.0.1:5000", &ids);
        failed.principal = Some("issuer/alice".into());
        failed.denied_by = Some("policy/deny-all".into());
        let request = request_of(&[ok, failed], Some(50051));

        assert_eq!(request.resource_spans.len(), 1);
        let resource = &request.resource_spans[0];
        let service = resource.resource.attributes.iter().find(|kv| kv.key == "service.name").unwrap();
        assert_eq!(service.value.string_value(), "svc");
        let scope = &resource.scope_spans[0];
        assert_eq!(scope.scope.name, "greeter");
        assert_eq!(scope.spans.len(), 2);

        let span = &scope.spans[0];
        assert_eq!(span.trace_id, ids.trace_id.to_bytes());
        assert_eq!(span.span_id, ids.span_id.to_bytes());
        assert_eq!(span.parent_span_id, ids.parent.unwrap().to_bytes());
        assert_eq!(span.trace_state, "congo=t61rcWkgMzE");
        assert_eq!(span.flags, 1);
        assert_eq!(span.name, "greeter.Greeter/Chat");
        assert_eq!(span.kind.enum_value(), Ok(OtlpKind::SPAN_KIND_SERVER));
        assert_eq!(span.start_time_unix_nano, 1_764_599_235_000_000_000);
        assert_eq!(span.end_time_unix_nano, 1_764_599_235_002_500_000);
        let attributes: BTreeMap<&str, String> = span
            .attributes
            .iter()
            .map(|kv| {
                let v = &kv.value;
                let text = if v.has_int_value() { v.int_value().to_string() } else { v.string_value().to_owned() };
                (kv.key.as_str(), text)
            })
            .collect();
        let expected: BTreeMap<&str, String> = [
            ("rpc.system", "grpc"),
            ("rpc.service", "greeter.Greeter"),
            ("rpc.method", "Chat"),
            ("server.address", "::"),
            ("server.port", "50051"),
            ("network.peer.address", "::1"),
            ("network.peer.port", "40000"),
            ("rpc.grpc.status_code", "0"),
            ("greeter.messages_received", "3"),
            ("greeter.messages_sent", "2"),
        ]
        .into_iter()
        .map(|(k, v)| (k, v.to_owned()))
        .collect();
        assert_eq!(attributes, expected);
        assert_eq!(span.attributes.len(), expected.len(), "no attribute twice");
        assert!(span.status.is_none() || span.status.code.enum_value() == Ok(StatusCode::STATUS_CODE_UNSET));

        let failed = &scope.spans[1];
        assert_eq!(failed.status.code.enum_value(), Ok(StatusCode::STATUS_CODE_ERROR));
        assert_eq!(failed.status.message, "UNAVAILABLE");
        let attribute = |key: &str| failed.attributes.iter().find(|kv| kv.key == key).unwrap().value.clone();
        assert_eq!(attribute("network.peer.port").int_value(), 5000);
        assert_eq!(attribute("enduser.id").string_value(), "issuer/alice");
        assert_eq!(attribute("greeter.authz.denied_by").string_value(), "policy/deny-all");
    }

    #[test]
    fn a_root_span_has_no_parent_and_a_caller_error_is_no_span_error() {
        let ids = SpanIds {
            trace_id: TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            span_id: SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            parent: None,
            trace_state: None,
        };
        let call = finished(RpcStatusCode::INVALID_ARGUMENT, "unix:/tmp/s", &ids);
        let request = request_of(&[call], None);
        let span = &request.resource_spans[0].scope_spans[0].spans[0];
        assert!(span.parent_span_id.is_empty());
        assert!(span.trace_state.is_empty());
        assert!(span.status.is_none());
        let peer = span.attributes.iter().find(|kv| kv.key == "network.peer.address").unwrap();
        assert_eq!(peer.value.string_value(), "unix:/tmp/s");
        assert!(!span.attributes.iter().any(|kv| kv.key == "network.peer.port"), "no port but an IP's");
        assert!(!span.attributes.iter().any(|kv| kv.key == "server.port"), "no port before the server listens");
    }

    #[test]
    fn the_sampler_decides_from_the_callers_context() {
        let sampler = Sampler::from_vars(Some("parentbased_traceidratio"), Some("0"));
        let spans = ServerSpans { sampler, ids: RandomIdGenerator::default() };
        let headers = |traceparent: &str| {
            let mut builder = grpcio::MetadataBuilder::new();
            builder.add_str("traceparent", traceparent).unwrap();
            builder.add_str("tracestate", "congo=t61rcWkgMzE").unwrap();
            builder.build()
        };
        // A sampled caller: the span is its child, in its trace, with its trace state.
        let sampled = headers("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
        let Decision::Recorded(ids) = spans.start(&sampled) else { panic!("a sampled parent is followed") };
        assert_eq!(ids.trace_id, TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap());
        assert_eq!(ids.parent, Some(SpanId::from_hex("b7ad6b7169203331").unwrap()));
        assert_eq!(ids.trace_state.as_deref(), Some("congo=t61rcWkgMzE"));
        // An unsampled caller: no span, but the caller's trace for the log.
        let unsampled = headers("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00");
        let Decision::NotRecorded(Some(trace)) = spans.start(&unsampled) else { panic!("not recorded") };
        assert_eq!(trace, TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap());
        // No caller, ratio 0: no span and no trace.
        assert!(matches!(spans.start(&grpcio::MetadataBuilder::new().build()), Decision::NotRecorded(None)));
        // A malformed traceparent is no caller.
        assert!(matches!(spans.start(&headers("00-zz-b7ad6b7169203331-01")), Decision::NotRecorded(None)));
    }
}

#[cfg(test)]
mod sampler_tests {
    use super::*;
    use opentelemetry::trace::{SpanId, TraceFlags, TraceState};
    use opentelemetry_sdk::trace::{Sampler as SdkSampler, SamplingDecision, ShouldSample as _};

    fn caller(trace_id: TraceId, sampled: bool) -> SpanContext {
        let flags = if sampled { TraceFlags::SAMPLED } else { TraceFlags::default() };
        SpanContext::new(trace_id, SpanId::from(7), flags, true, TraceState::default())
    }

    /// The SDK's sampler of the same name, for comparison.
    fn sdk(parent_based: bool, root: SdkSampler) -> SdkSampler {
        if parent_based {
            SdkSampler::ParentBased(Box::new(root))
        } else {
            root
        }
    }

    #[test]
    fn the_variables_choose_as_the_sdk_reads_them() {
        let on = Sampler { parent_based: true, root: Root::AlwaysOn };
        assert_eq!(Sampler::from_vars(None, None), on);
        assert_eq!(Sampler::from_vars(Some("xray"), None), on);
        assert_eq!(
            Sampler::from_vars(Some("always_off"), None),
            Sampler { parent_based: false, root: Root::AlwaysOff }
        );
        assert_eq!(Sampler::from_vars(Some("parentbased_traceidratio"), Some("many")), on);
        assert_eq!(
            Sampler::from_vars(Some("traceidratio"), Some("1.5")),
            Sampler { parent_based: false, root: Root::AlwaysOn }
        );
        assert_eq!(
            Sampler::from_vars(Some("parentbased_traceidratio"), Some("0.5")),
            Sampler { parent_based: true, root: Root::Ratio(1 << 62) }
        );
        assert_eq!(
            Sampler::from_vars(Some("traceidratio"), Some("-1")),
            Sampler { parent_based: false, root: Root::Ratio(0) }
        );
    }

    #[test]
    fn decisions_are_the_sdks() {
        let ids = RandomIdGenerator::default();
        let cases = [
            ("parentbased_always_on", None, sdk(true, SdkSampler::AlwaysOn)),
            ("parentbased_always_off", None, sdk(true, SdkSampler::AlwaysOff)),
            ("parentbased_traceidratio", Some("0.25"), sdk(true, SdkSampler::TraceIdRatioBased(0.25))),
            ("traceidratio", Some("0.01"), sdk(false, SdkSampler::TraceIdRatioBased(0.01))),
            ("always_on", None, sdk(false, SdkSampler::AlwaysOn)),
            ("always_off", None, sdk(false, SdkSampler::AlwaysOff)),
        ];
        for (name, arg, theirs) in cases {
            let ours = Sampler::from_vars(Some(name), arg);
            for _ in 0..2000 {
                let trace_id = ids.new_trace_id();
                for parent in [None, Some(caller(trace_id, true)), Some(caller(trace_id, false))] {
                    let cx = parent.clone().map(|p| opentelemetry::Context::new().with_remote_span_context(p));
                    let sdk = theirs.should_sample(
                        cx.as_ref(),
                        trace_id,
                        "m",
                        &opentelemetry::trace::SpanKind::Server,
                        &[],
                        &[],
                    );
                    let expected = sdk.decision == SamplingDecision::RecordAndSample;
                    assert_eq!(
                        ours.samples(parent.as_ref(), trace_id),
                        expected,
                        "{name} {arg:?} {trace_id} {parent:?}"
                    );
                }
            }
        }
    }
}
