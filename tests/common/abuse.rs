//! One hostile client beside well-behaved ones: `tests/hostile/hostile.py --loop` sends
//! malformed requests of many kinds, in turn, for a while, as four client threads call all four
//! patterns. What each kind was answered is for the test to judge, against its own table.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::load::Load;
use super::process::output_within;
use super::tools::tools;

/// The malformed kinds sent, by hostile.py's case names.
pub const KINDS: [&str; 11] = [
    "content_type_json",
    "method_get",
    "missing_te",
    "timeout_not_a_number",
    "unknown_encoding",
    "unary_no_message",
    "unary_two_messages",
    "not_protobuf",
    "message_over_limit",
    "rst_stream_mid_stream",
    "deadline_1ms_stream",
];

/// How long the hostile client keeps sending.
pub const SECONDS: u64 = 10;

/// What came of the abuse.
pub struct Outcome {
    /// Rounds of the four patterns the well-behaved threads completed, all checked.
    pub good_rounds: u64,
    /// Why any of their rounds failed.
    pub good_failures: Vec<String>,
    /// Rounds of the malformed kinds hostile.py completed.
    pub hostile_rounds: u64,
    /// Each kind's distinct answers (hostile.py's `answer()` fields), with how often each came.
    pub answers: BTreeMap<String, Vec<(Value, u64)>>,
}

/// Sends the malformed kinds to `addr` for [`SECONDS`] while `good_clients` (one thread each)
/// call all four patterns there.
pub fn abuse(addr: &str, good_clients: Vec<greeter::blocking::Greeter>) -> Outcome {
    let load = Load::four_patterns(good_clients);
    let mut hostile = tools().python("tests/hostile/hostile.py");
    hostile.args(["--addr", addr, "--loop", &SECONDS.to_string(), "--cases", &KINDS.join(",")]);
    let out = output_within(hostile, "hostile.py --loop", Duration::from_secs(SECONDS + 120));
    let (good_rounds, good_failures) = load.stop();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "hostile.py --loop failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"));
    let answers = report["cases"]
        .as_object()
        .expect("cases")
        .iter()
        .map(|(kind, seen)| {
            let seen = seen.as_array().expect("answers").iter();
            (kind.clone(), seen.map(|a| (a["answer"].clone(), a["count"].as_u64().unwrap())).collect())
        })
        .collect();
    Outcome { good_rounds, good_failures, hostile_rounds: report["rounds"].as_u64().unwrap(), answers }
}

impl Outcome {
    /// Every good round succeeded, and each kind got an answer `expected` lists for it (one,
    /// where the answer is fixed; `None` in a field of the answer: that field was absent),
    /// every time it was sent.
    pub fn assert(&self, expected: impl Fn(&str) -> Vec<Value>) {
        assert!(self.good_rounds > 0, "the well-behaved clients completed no round");
        assert!(
            self.good_failures.is_empty(),
            "{} of {} well-behaved rounds failed: {:?}",
            self.good_failures.len(),
            self.good_rounds + self.good_failures.len() as u64,
            &self.good_failures[..self.good_failures.len().min(5)]
        );
        assert!(self.hostile_rounds >= 1, "hostile.py completed no round");
        for kind in KINDS {
            let seen = &self.answers[kind];
            let want = expected(kind);
            assert!(
                seen.iter().all(|(answer, _)| want.contains(answer)),
                "{kind}: want one of {want:?} every time ({} rounds), got {seen:?}",
                self.hostile_rounds
            );
            let sent: u64 = seen.iter().map(|(_, count)| count).sum();
            assert_eq!(sent, self.hostile_rounds, "{kind} was sent every round");
        }
    }
}

/// An answer as hostile.py's `answer()` reports it.
pub fn answer(
    http_status: Option<i64>,
    grpc_status: Option<i64>,
    grpc_message: Option<&str>,
    stream_reset: Option<i64>,
    followup_grpc_status: Option<i64>,
) -> Value {
    serde_json::json!({
        "http_status": http_status,
        "grpc_status": grpc_status,
        "grpc_message": grpc_message,
        "stream_reset": stream_reset,
        "followup_grpc_status": followup_grpc_status,
    })
}
