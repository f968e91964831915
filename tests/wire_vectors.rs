//! Wire vectors: every case in `tests/interop/vectors.json` (the seven messages with empty,
//! unicode, negative and huge values) is encoded by Rust, Go and Python; the bytes must be
//! identical and decode back to the values we started from, in all three languages. The one
//! exception, -0.0, is asserted as such below.

mod common;

use common::tools::{run_ok, tools};
use greeter::proto::{Metric, MetricSummary, StockReply};
use protobuf::reflect::{MessageDescriptor, ReflectValueBox, ReflectValueRef, RuntimeType};
use protobuf::Message as _;
use serde_json::{Map, Value};

struct Case {
    name: String,
    message: String,
    fields: Map<String, Value>,
}

fn cases() -> Vec<Case> {
    let path = tools().repo.join("tests/interop/vectors.json");
    let json: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    json.as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            name: c["name"].as_str().unwrap().to_owned(),
            message: c["message"].as_str().unwrap().to_owned(),
            fields: c["fields"].as_object().unwrap().clone(),
        })
        .collect()
}

fn descriptor(message: &str) -> MessageDescriptor {
    greeter::proto::file_descriptor()
        .message_by_package_relative_name(message)
        .unwrap_or_else(|| panic!("no message {message} in greeter.proto"))
}

/// Builds the message from JSON field values through rust-protobuf's reflection, so one
/// function covers all seven messages, then serializes it.
fn rust_encode(case: &Case) -> Vec<u8> {
    let desc = descriptor(&case.message);
    let mut msg = desc.new_instance();
    for (name, value) in &case.fields {
        let field = desc.field_by_name(name).unwrap_or_else(|| panic!("{}: no field {name}", case.name));
        let value = match field.singular_runtime_type() {
            RuntimeType::String => ReflectValueBox::String(value.as_str().unwrap().to_owned()),
            RuntimeType::F64 => ReflectValueBox::F64(value.as_f64().unwrap()),
            RuntimeType::I32 => ReflectValueBox::I32(i32::try_from(value.as_i64().unwrap()).unwrap()),
            other => panic!("{}: field type {other:?} not in greeter.proto", case.name),
        };
        field.set_singular_field(&mut *msg, value);
    }
    msg.write_to_bytes_dyn().unwrap()
}

/// Every field of the decoded message, defaults included, as (name, value) for comparison.
fn rust_decode(message: &str, bytes: &[u8]) -> Vec<(String, Field)> {
    let desc = descriptor(message);
    let msg = desc.parse_from_bytes(bytes).unwrap();
    desc.fields()
        .map(|f| {
            let value = match f.get_singular_field_or_default(&*msg) {
                ReflectValueRef::String(s) => Field::Text(s.to_owned()),
                ReflectValueRef::F64(x) => Field::Number(x),
                ReflectValueRef::I32(x) => Field::Number(x.into()),
                other => panic!("unexpected field value {other:?}"),
            };
            (f.name().to_owned(), value)
        })
        .collect()
}

/// A field value as the three languages' JSON can express it; numbers compare as doubles
/// (JSON has one number type: Go writes a double 0 as `0`, Python as `0.0`), bit for bit,
/// so -0.0 and +0.0 differ.
#[derive(Debug)]
enum Field {
    Text(String),
    Number(f64),
}

impl PartialEq for Field {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Field::Text(a), Field::Text(b)) => a == b,
            (Field::Number(a), Field::Number(b)) => a.to_bits() == b.to_bits(),
            _ => false,
        }
    }
}

fn from_json(message: &str, decoded: &Value) -> Vec<(String, Field)> {
    descriptor(message)
        .fields()
        .map(|f| {
            let v = &decoded[f.name()];
            let value = match v.as_str() {
                Some(s) => Field::Text(s.to_owned()),
                None => Field::Number(v.as_f64().unwrap_or_else(|| panic!("{}: {v}", f.name()))),
            };
            (f.name().to_owned(), value)
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
}

/// The other language's answers: one `{"hex", "decoded"}` per case, in order.
fn peer_vectors(mut cmd: std::process::Command, what: &str) -> Vec<Value> {
    cmd.arg(tools().repo.join("tests/interop/vectors.json"));
    let out = run_ok(cmd, what);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    json.as_array().unwrap().clone()
}

#[test]
fn rust_go_and_python_encode_every_vector_identically_and_decode_it_back() {
    let cases = cases();
    let tools = tools();
    let go = peer_vectors(tools.go_bin("vectors-go"), "vectors-go");
    let python = peer_vectors(tools.python("tests/interop/python/vectors.py"), "vectors.py");
    assert_eq!(go.len(), cases.len());
    assert_eq!(python.len(), cases.len());
    assert_eq!(cases.len(), 51, "tests/interop/vectors.json holds 51 cases");

    let mut negative_zero_cases = 0;
    for ((case, go), python) in cases.iter().zip(&go).zip(&python) {
        let rust_bytes = rust_encode(case);
        let rust_hex = hex(&rust_bytes);
        // What we meant: the case's fields, with the unset ones at their defaults.
        let wanted = from_json(&case.message, &Value::Object(case.fields.clone()).pipe_defaults(&case.message));
        if has_negative_zero(case) {
            assert_negative_zero_difference(case, &rust_bytes, go, python);
            negative_zero_cases += 1;
        } else {
            assert_eq!(go["hex"].as_str().unwrap(), rust_hex, "{}: Go bytes differ from Rust's", case.name);
            assert_eq!(python["hex"].as_str().unwrap(), rust_hex, "{}: Python bytes differ from Rust's", case.name);
            assert_eq!(rust_decode(&case.message, &rust_bytes), wanted, "{}: Rust decode", case.name);
            assert_eq!(rust_decode(&case.message, &unhex(go["hex"].as_str().unwrap())), wanted, "{}", case.name);
        }
        // Go and Python decode the bytes they wrote (checked above: Rust's, or for -0.0 the
        // bytes that carry -0.0) and must read back exactly what we meant, -0.0 with its sign.
        assert_eq!(from_json(&case.message, &go["decoded"]), wanted, "{}: Go decode", case.name);
        assert_eq!(from_json(&case.message, &python["decoded"]), wanted, "{}: Python decode", case.name);
    }
    assert!(negative_zero_cases > 0, "the vectors keep covering -0.0");
}

fn has_negative_zero(case: &Case) -> bool {
    case.fields.values().any(|v| v.as_f64().is_some_and(|x| x == 0.0 && x.is_sign_negative()))
}

/// The one known difference. Go and Python (like C++) write a proto3 double whose bits are
/// not all zero, so -0.0 goes on the wire; rust-protobuf 3.7 tests `value != 0.0`, which
/// -0.0 fails, so it writes nothing and the peer reads +0.0. All three *read* -0.0 correctly:
/// Rust here, Go and Python in the caller (their decoded values, compared bit for bit).
/// If rust-protobuf changes, this fails and the case joins the identical ones.
fn assert_negative_zero_difference(case: &Case, rust_bytes: &[u8], go: &Value, python: &Value) {
    let go_hex = go["hex"].as_str().unwrap();
    assert_eq!(python["hex"].as_str().unwrap(), go_hex, "{}: Go and Python agree", case.name);
    assert!(go_hex.ends_with("0000000000000080"), "{}: Go writes -0.0: {go_hex}", case.name);
    assert!(
        rust_bytes.is_empty(),
        "{}: rust-protobuf now writes -0.0 ({}); treat it as identical",
        case.name,
        hex(rust_bytes)
    );
    // Typed access: rust-protobuf's reflection also takes -0.0 for "unset" and reports +0.0.
    let bytes = unhex(go_hex);
    let double = match case.message.as_str() {
        "Metric" => Metric::parse_from_bytes(&bytes).unwrap().value,
        "MetricSummary" => MetricSummary::parse_from_bytes(&bytes).unwrap().average,
        "StockReply" => StockReply::parse_from_bytes(&bytes).unwrap().price,
        other => panic!("{}: no double in {other}", case.name),
    };
    assert!(double == 0.0 && double.is_sign_negative(), "{}: Rust reads Go's -0.0 back as -0.0", case.name);
}

trait WithDefaults {
    fn pipe_defaults(self, message: &str) -> Value;
}

impl WithDefaults for Value {
    /// Fills in the fields a case leaves out with proto3's defaults ("" and 0).
    fn pipe_defaults(mut self, message: &str) -> Value {
        let map = self.as_object_mut().unwrap();
        for f in descriptor(message).fields() {
            map.entry(f.name()).or_insert_with(|| match f.singular_runtime_type() {
                RuntimeType::String => Value::from(""),
                _ => Value::from(0),
            });
        }
        self
    }
}
