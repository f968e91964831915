//! OTLP's trace messages (opentelemetry-proto's `trace.proto`, `common.proto`,
//! `resource.proto`), encoded field by field into bytes: their field numbers, attributes, the
//! resource and the scope. A span's own fields are written by whoever knows the span: the
//! server's spans in `server_spans.rs`, the SDK's (our clients') in `client_spans.rs`.

use opentelemetry::{Array, Value};
use opentelemetry_sdk::Resource;

use super::protowire::{self, len_field_size};

/// `Span`'s fields.
pub(crate) mod span {
    pub(crate) const TRACE_ID: u32 = 1;
    pub(crate) const SPAN_ID: u32 = 2;
    pub(crate) const TRACE_STATE: u32 = 3;
    pub(crate) const PARENT_SPAN_ID: u32 = 4;
    pub(crate) const NAME: u32 = 5;
    pub(crate) const KIND: u32 = 6;
    pub(crate) const START_TIME_UNIX_NANO: u32 = 7;
    pub(crate) const END_TIME_UNIX_NANO: u32 = 8;
    pub(crate) const ATTRIBUTES: u32 = 9;
    pub(crate) const DROPPED_ATTRIBUTES_COUNT: u32 = 10;
    pub(crate) const EVENTS: u32 = 11;
    pub(crate) const DROPPED_EVENTS_COUNT: u32 = 12;
    pub(crate) const STATUS: u32 = 15;
    pub(crate) const FLAGS: u32 = 16;

    /// `Span.SpanKind`.
    pub(crate) const KIND_INTERNAL: u64 = 1;
    pub(crate) const KIND_SERVER: u64 = 2;
    pub(crate) const KIND_CLIENT: u64 = 3;
    pub(crate) const KIND_PRODUCER: u64 = 4;
    pub(crate) const KIND_CONSUMER: u64 = 5;

    /// `Span.Event`'s fields.
    pub(crate) const EVENT_TIME_UNIX_NANO: u32 = 1;
    pub(crate) const EVENT_NAME: u32 = 2;
    pub(crate) const EVENT_ATTRIBUTES: u32 = 3;

    /// `Status`'s fields and codes.
    pub(crate) const STATUS_MESSAGE: u32 = 2;
    pub(crate) const STATUS_CODE: u32 = 3;
    pub(crate) const STATUS_OK: u64 = 1;
    pub(crate) const STATUS_ERROR: u64 = 2;
}

/// `ScopeSpans.spans`: every span of a request is one of these.
pub(crate) const SCOPE_SPANS_SPANS: u32 = 2;

// `KeyValue` and `AnyValue`.
const KEY: u32 = 1;
const VALUE: u32 = 2;
const STRING_VALUE: u32 = 1;
const BOOL_VALUE: u32 = 2;
const INT_VALUE: u32 = 3;
const DOUBLE_VALUE: u32 = 4;
const ARRAY_VALUE: u32 = 5;
const ARRAY_VALUES: u32 = 1;

/// One string attribute, `KeyValue { key, value: AnyValue { string_value } }`, as field
/// `field` of the message being written.
#[inline]
pub(crate) fn str_attribute(out: &mut Vec<u8>, field: u32, key: &str, value: &str) {
    let any = len_field_size(value.len());
    protowire::len_prefix(out, field, len_field_size(key.len()) + len_field_size(any));
    protowire::bytes(out, KEY, key.as_bytes());
    protowire::len_prefix(out, VALUE, any);
    protowire::bytes(out, STRING_VALUE, value.as_bytes());
}

/// One integer attribute, `KeyValue { key, value: AnyValue { int_value } }`.
#[inline]
pub(crate) fn int_attribute(out: &mut Vec<u8>, field: u32, key: &str, value: i64) {
    let any = 1 + protowire::varint_len(value as u64);
    protowire::len_prefix(out, field, len_field_size(key.len()) + len_field_size(any));
    protowire::bytes(out, KEY, key.as_bytes());
    protowire::len_prefix(out, VALUE, any);
    protowire::int(out, INT_VALUE, value);
}

/// An attribute of the spans' own, its key encoded once, as field `field` of the messages it is
/// written in: the `KeyValue.key` field and the tag of `KeyValue.value`; and, for the small
/// integers most values are (a status code, a message count), the whole attribute but its
/// last byte.
pub(crate) struct Key {
    field: u32,
    key: Vec<u8>,
    small_int: Vec<u8>,
}

impl Key {
    pub(crate) fn new(field: u32, key: &str) -> Self {
        let mut encoded = Vec::with_capacity(key.len() + 3);
        protowire::bytes(&mut encoded, KEY, key.as_bytes());
        protowire::len_prefix(&mut encoded, VALUE, 0);
        encoded.pop(); // the value's length goes with each value
        let mut small_int = Vec::new();
        protowire::len_prefix(&mut small_int, field, encoded.len() + 3);
        small_int.extend_from_slice(&encoded);
        small_int.extend_from_slice(&[2, (INT_VALUE << 3) as u8]);
        Key { field, key: encoded, small_int }
    }

    /// `KeyValue { key, value: AnyValue { int_value } }`.
    #[inline]
    pub(crate) fn int(&self, out: &mut Vec<u8>, value: i64) {
        if (0..0x80).contains(&value) {
            out.extend_from_slice(&self.small_int);
            out.push(value as u8);
            return;
        }
        let any = 1 + protowire::varint_len(value as u64);
        protowire::len_prefix(out, self.field, self.key.len() + 1 + any);
        out.extend_from_slice(&self.key);
        out.push(any as u8);
        protowire::int(out, INT_VALUE, value);
    }

    /// `KeyValue { key, value: AnyValue { string_value } }`.
    #[inline]
    pub(crate) fn str(&self, out: &mut Vec<u8>, value: &str) {
        let any = len_field_size(value.len());
        protowire::len_prefix(out, self.field, self.key.len() + protowire::varint_len(any as u64) + any);
        out.extend_from_slice(&self.key);
        protowire::varint(out, any as u64);
        protowire::bytes(out, STRING_VALUE, value.as_bytes());
    }
}

/// Any OpenTelemetry attribute (the SDK's, of our clients' spans and of the resource).
pub(crate) fn attribute(out: &mut Vec<u8>, field: u32, key: &str, value: &Value, scratch: &mut Vec<u8>) {
    match value {
        Value::String(s) => str_attribute(out, field, key, s.as_str()),
        Value::I64(i) => int_attribute(out, field, key, *i),
        other => {
            scratch.clear();
            protowire::bytes(scratch, KEY, key.as_bytes());
            let mut any = Vec::new();
            any_value(&mut any, other);
            protowire::bytes(scratch, VALUE, &any);
            protowire::bytes(out, field, scratch);
        }
    }
}

/// `AnyValue`'s content for `value`.
fn any_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Bool(b) => protowire::uint(out, BOOL_VALUE, u64::from(*b)),
        Value::I64(i) => protowire::int(out, INT_VALUE, *i),
        Value::F64(f) => protowire::fixed64(out, DOUBLE_VALUE, f.to_bits()),
        Value::String(s) => protowire::bytes(out, STRING_VALUE, s.as_str().as_bytes()),
        Value::Array(array) => {
            let mut values = Vec::new();
            let mut item = Vec::new();
            let mut each = |v: Value| {
                item.clear();
                any_value(&mut item, &v);
                protowire::bytes(&mut values, ARRAY_VALUES, &item);
            };
            match array {
                Array::Bool(v) => v.iter().for_each(|b| each(Value::Bool(*b))),
                Array::I64(v) => v.iter().for_each(|i| each(Value::I64(*i))),
                Array::F64(v) => v.iter().for_each(|f| each(Value::F64(*f))),
                Array::String(v) => v.iter().for_each(|s| each(Value::String(s.clone()))),
                _ => {}
            }
            protowire::bytes(out, ARRAY_VALUE, &values);
        }
        other => protowire::bytes(out, STRING_VALUE, other.to_string().as_bytes()),
    }
}

/// `Resource`'s content: its attributes (`service.name`, the SDK's).
pub(crate) fn resource(resource: &Resource) -> Vec<u8> {
    let (mut out, mut scratch) = (Vec::new(), Vec::new());
    for (key, value) in resource.iter() {
        attribute(&mut out, 1, key.as_str(), value, &mut scratch);
    }
    out
}

/// `InstrumentationScope`'s content: its name.
pub(crate) fn scope(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    protowire::bytes(&mut out, 1, name.as_bytes());
    out
}

/// One `ExportTraceServiceRequest` but for its spans: the request's framing up to the first
/// span, for a resource, a scope and `spans_len` bytes of spans (each a `ScopeSpans.spans`
/// field) that follow it.
pub(crate) fn request_head(resource: &[u8], scope: &[u8], spans_len: usize) -> Vec<u8> {
    let scope_spans = len_field_size(scope.len()) + spans_len;
    let resource_spans = len_field_size(resource.len()) + len_field_size(scope_spans);
    let mut out = Vec::with_capacity(32 + resource.len() + scope.len());
    protowire::len_prefix(&mut out, 1, resource_spans); // ExportTraceServiceRequest.resource_spans
    protowire::bytes(&mut out, 1, resource); // ResourceSpans.resource
    protowire::len_prefix(&mut out, 2, scope_spans); // ResourceSpans.scope_spans
    protowire::bytes(&mut out, 1, scope); // ScopeSpans.scope
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::otlp::{common, resource};
    use protobuf::Message as _;

    /// `out`, attributes written as field 1, read back as a `Resource`'s first attribute.
    fn decoded(out: &[u8]) -> common::KeyValue {
        resource::Resource::parse_from_bytes(out).unwrap().attributes.remove(0)
    }

    #[test]
    fn attributes_decode_as_otlp_key_values() {
        let mut out = Vec::new();
        str_attribute(&mut out, 1, "rpc.method", "SayHello");
        let kv = decoded(&out);
        assert_eq!((kv.key.as_str(), kv.value.string_value()), ("rpc.method", "SayHello"));

        for value in [0i64, 1, 50051, -1, i64::MIN] {
            let mut out = Vec::new();
            int_attribute(&mut out, 1, "server.port", value);
            let kv = decoded(&out);
            assert_eq!((kv.key.as_str(), kv.value.int_value()), ("server.port", value));
        }

        for value in [0i64, 127, 128, 300, -5, i64::MAX] {
            let mut out = Vec::new();
            Key::new(1, "greeter.messages_sent").int(&mut out, value);
            let kv = decoded(&out);
            assert_eq!((kv.key.as_str(), kv.value.int_value()), ("greeter.messages_sent", value));
        }
        let long = "x".repeat(300);
        for value in ["", "127.0.0.1", long.as_str()] {
            let mut out = Vec::new();
            Key::new(1, "network.peer.address").str(&mut out, value);
            let kv = decoded(&out);
            assert_eq!((kv.key.as_str(), kv.value.string_value()), ("network.peer.address", value));
        }

        let mut out = Vec::new();
        attribute(&mut out, 1, "ok", &Value::Bool(true), &mut Vec::new());
        assert!(decoded(&out).value.bool_value());
        let mut out = Vec::new();
        attribute(&mut out, 1, "share", &Value::F64(0.25), &mut Vec::new());
        assert_eq!(decoded(&out).value.double_value(), 0.25);
        let mut out = Vec::new();
        let array = Value::Array(Array::I64(vec![3, 4]));
        attribute(&mut out, 1, "ports", &array, &mut Vec::new());
        let kv = decoded(&out);
        let values = &kv.value.array_value().values;
        assert_eq!(values.iter().map(|v| v.int_value()).collect::<Vec<_>>(), [3, 4]);
    }
}
