//! A finished call as the recording thread receives it: the one record both sinks read, the
//! span encoder (`server_spans.rs`) and the access log (`access_log.rs`).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use grpcio::RpcStatusCode;
use opentelemetry::trace::{SpanId, TraceId};
use serde_json::value::RawValue;

use super::otlp_wire::{span, str_attribute};
use super::protowire;
use crate::call::MethodName;

/// One finished call, as its thread hands it off: what its span (when it has one) and its
/// access-log line (when there is a log) are made of.
pub(crate) struct FinishedCall {
    pub(crate) method: Arc<MethodNames>,
    pub(crate) peer: PeerName,
    pub(crate) started: Instant,
    pub(crate) duration: Duration,
    pub(crate) code: RpcStatusCode,
    pub(crate) messages_received: u64,
    pub(crate) messages_sent: u64,
    /// The call's trace: its own span's, or the caller's when the span is not recorded here.
    pub(crate) trace_id: Option<TraceId>,
    /// Its span, when recorded here.
    pub(crate) span: Option<SpanIds>,
    /// The caller the server verified (a token's `iss/sub`, else the certificate's name).
    pub(crate) principal: Option<Box<str>>,
    /// The policy rule (`policy/rule`), or the token's reason, that refused the call before
    /// its handler.
    pub(crate) denied_by: Option<Box<str>>,
}

/// A recorded span's ids, as the call's thread chose them.
#[derive(Clone)]
pub(crate) struct SpanIds {
    pub(crate) trace_id: TraceId,
    pub(crate) span_id: SpanId,
    /// The caller's span, when the call came with trace context.
    pub(crate) parent: Option<SpanId>,
    /// The caller's `tracestate`, when it sent one.
    pub(crate) trace_state: Option<Box<str>>,
}

/// The wall clock at one instant of the monotonic one: a call's thread reads the monotonic
/// clock only, and the recording thread turns its readings into wall-clock times with the
/// pair it reads once per batch (a clock step between the two moves them by as much).
#[derive(Clone, Copy)]
pub(crate) struct Clock {
    unix_nanos: u64,
    at: Instant,
}

impl Clock {
    pub(crate) fn now() -> Self {
        let unix_nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        Clock { unix_nanos, at: Instant::now() }
    }

    /// `instant` in nanoseconds since the Unix epoch.
    pub(crate) fn unix_nanos(&self, instant: Instant) -> u64 {
        match self.at.checked_duration_since(instant) {
            Some(before) => self.unix_nanos.saturating_sub(before.as_nanos() as u64),
            None => self.unix_nanos + instant.duration_since(self.at).as_nanos() as u64,
        }
    }

    #[cfg(test)]
    pub(crate) fn at(unix_nanos: u64, at: Instant) -> Self {
        Clock { unix_nanos, at }
    }
}

/// Who called, as gRPC names it (`ipv4:127.0.0.1:5000`; read by [`Peer::of`]), held in the
/// record itself: memory allocated on a call's thread and freed on the recording thread
/// would cost both threads' allocator caches a miss per call.
#[derive(Clone)]
pub(crate) enum PeerName {
    Inline {
        len: u8,
        bytes: [u8; PeerName::INLINE],
    },
    /// Longer than any IP address and port (a Unix socket's path).
    Long(Box<str>),
}

impl PeerName {
    const INLINE: usize = 62;

    pub(crate) fn new(name: &str) -> Self {
        if name.len() > Self::INLINE {
            return PeerName::Long(name.into());
        }
        let mut bytes = [0; Self::INLINE];
        bytes[..name.len()].copy_from_slice(name.as_bytes());
        PeerName::Inline { len: name.len() as u8, bytes }
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            // The bytes of a whole `str`: valid UTF-8.
            PeerName::Inline { len, bytes } => std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default(),
            PeerName::Long(name) => name,
        }
    }
}

/// A peer's address, read from gRPC's name for it.
pub(crate) struct Peer<'a> {
    /// As the access log writes it: `127.0.0.1:5000`, `[::1]:5000`, or gRPC's name when it is
    /// no IP address (`unix:/run/greeter.sock`).
    pub(crate) address: &'a str,
    /// `127.0.0.1`, `::1`.
    pub(crate) ip: &'a str,
    pub(crate) port: Option<u16>,
}

impl<'a> Peer<'a> {
    pub(crate) fn of(grpc_peer: &'a str) -> Self {
        let ip_port = grpc_peer.strip_prefix("ipv4:").or_else(|| grpc_peer.strip_prefix("ipv6:"));
        let Some((address, colon)) = ip_port.and_then(|a| Some((a, a.bytes().rposition(|b| b == b':')?))) else {
            return Peer { address: grpc_peer, ip: grpc_peer, port: None };
        };
        let ip = &address[..colon];
        let ip = ip.strip_prefix('[').and_then(|ip| ip.strip_suffix(']')).unwrap_or(ip);
        Peer { address, ip, port: address[colon + 1..].parse().ok() }
    }
}

/// A method's names, for its spans and its log lines.
pub(crate) struct MethodNames {
    /// `"/greeter.Greeter/SayHello"`, as the access log names it: a JSON string.
    pub(crate) path: Box<RawValue>,
    pub(crate) span: MethodSpan,
}

impl MethodNames {
    pub(crate) fn new(method: MethodName<'_>) -> Self {
        let path = serde_json::to_string(&format!("/{}/{}", method.service, method.method)).expect("a string is JSON");
        MethodNames {
            path: RawValue::from_string(path).expect("serde_json writes JSON"),
            span: MethodSpan::new(method),
        }
    }
}

/// What every span of one method has, encoded once: its name, its kind, and its `rpc.*`
/// attributes.
pub(crate) struct MethodSpan {
    /// Its name, kind and method attributes, as `Span` fields.
    pub(crate) encoded: Vec<u8>,
}

impl MethodSpan {
    pub(crate) fn new(method: MethodName<'_>) -> Self {
        let name = format!("{}/{}", method.service, method.method);
        let mut encoded = Vec::new();
        protowire::bytes(&mut encoded, span::NAME, name.as_bytes());
        protowire::uint(&mut encoded, span::KIND, span::KIND_SERVER);
        str_attribute(&mut encoded, span::ATTRIBUTES, "rpc.system", "grpc");
        str_attribute(&mut encoded, span::ATTRIBUTES, "rpc.service", method.service);
        str_attribute(&mut encoded, span::ATTRIBUTES, "rpc.method", method.method);
        MethodSpan { encoded }
    }
}
