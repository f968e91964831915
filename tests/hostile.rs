//! Hostile input over raw HTTP/2: `tests/hostile/hostile.py` (the `h2` library on a plain
//! socket) sends one malformed or abusive request per case to an in-process server; each test
//! checks what the server answered against what gRPC C-core 1.56 (grpcio-sys 0.13) really
//! does, and that a normal SayHello on a fresh connection still works afterwards.
//!
//! Where C-core differs from gRPC's PROTOCOL-HTTP2.md / statuscodes.md the assertion follows
//! C-core and the comment says what the spec wants; README.md's "Hostile input" section has
//! the table.
//! A C-core upgrade that changes any of these answers fails the test on purpose.

mod common;

use std::process::Command;

use common::abuse::{abuse, answer};
use common::tools::{hostile_case, run_ok, tools};
use common::TestServer;
use serde_json::Value;

const SCRIPT: &str = "tests/hostile/hostile.py";

// HTTP/2 error codes (RFC 9113 §7).
const NO_ERROR: i64 = 0;
const INTERNAL_ERROR: i64 = 2;
const ENHANCE_YOUR_CALM: i64 = 11;

// gRPC status codes.
const OK: i64 = 0;
const CANCELLED: i64 = 1;
const UNKNOWN: i64 = 2;
const DEADLINE_EXCEEDED: i64 = 4;
const RESOURCE_EXHAUSTED: i64 = 8;
const UNIMPLEMENTED: i64 = 12;
const INTERNAL: i64 = 13;
const UNAVAILABLE: i64 = 14;

/// Runs one case of hostile.py against `addr` and returns its JSON line.
fn run_case(addr: &str, case: &str) -> Value {
    hostile_case(addr, case, &[])
}

fn stdout_of(cmd: Command, what: &str) -> String {
    String::from_utf8_lossy(&run_ok(cmd, &format!("hostile.py {what}")).stdout).into_owned()
}

/// A normal call on a fresh connection still succeeds.
fn still_serves(server: &TestServer) {
    let reply = server.client().say_hello("still here").expect("SayHello after the hostile case");
    assert_eq!(reply, "Hello still here");
}

fn int(r: &Value, key: &str) -> Option<i64> {
    r[key].as_i64()
}

fn text<'a>(r: &'a Value, key: &str) -> &'a str {
    r[key].as_str().unwrap_or_default()
}

/// Nothing at the connection level: no GOAWAY, the server did not close the socket and
/// kept reading what we sent.
fn connection_intact(r: &Value) {
    assert_eq!(r["goaway"], Value::Null, "GOAWAY: {r}");
    assert_eq!(r["connection_closed"], Value::Bool(false), "connection closed: {r}");
    assert_eq!(r["send_stalled"], Value::Bool(false), "server stopped reading: {r}");
}

/// A gRPC answer in HEADERS (HTTP 200) with `status`, the connection left alone.
fn grpc_status(r: &Value, status: i64) {
    assert_eq!(int(r, "http_status"), Some(200), "{r}");
    assert_eq!(int(r, "grpc_status"), Some(status), "{r}");
    connection_intact(r);
}

/// No gRPC answer at all: only RST_STREAM with `code`.
fn reset_only(r: &Value, code: i64) {
    assert_eq!(int(r, "stream_reset"), Some(code), "{r}");
    assert_eq!(r["http_status"], Value::Null, "{r}");
    assert_eq!(r["grpc_status"], Value::Null, "{r}");
    connection_intact(r);
}

/// The good SayHello that hostile.py sent next on the SAME connection succeeded.
fn followup_ok(r: &Value) {
    let f = &r["followup"];
    assert_eq!(int(f, "grpc_status"), Some(OK), "followup on the same connection: {r}");
    assert_eq!(text(f, "reply"), "Hello followup", "{r}");
}

/// The frames received on stream `sid`, in order, as hostile.py logs them
/// ("HEADERS s1 END_STREAM").
fn stream_frames(r: &Value, sid: u32) -> Vec<&str> {
    let tag = format!("s{sid}");
    let frames = r["frames"].as_array().unwrap_or_else(|| panic!("no frames: {r}"));
    frames.iter().filter_map(Value::as_str).filter(|f| f.split(' ').nth(1) == Some(tag.as_str())).collect()
}

/// The hostile stream (s1) got its Trailers-Only answer and RST_STREAM NO_ERROR, and then the
/// same pair again and again on the closed stream: `times` identical pairs in all. RFC 9113
/// §5.1 allows nothing on a stream after RST_STREAM. C-core 1.56 hand-writes these trailers
/// (`close_from_api`) without marking them sent, so every cancellation that reaches the
/// transport for the stream writes them once more; the count is the same in every run.
fn answered_times(r: &Value, times: usize) {
    let pair = ["HEADERS s1 END_STREAM", "RST_STREAM s1 NO_ERROR"];
    let expected: Vec<&str> = pair.iter().copied().cycle().take(2 * times).collect();
    assert_eq!(stream_frames(r, 1), expected, "{r}");
    assert_eq!(int(r, "distinct_header_blocks"), Some(1), "every repeat is the same header block: {r}");
}

/// A "Hello hostile" reply with OK: the server took the request as if it were good.
fn served(r: &Value) {
    grpc_status(r, OK);
    assert_eq!(text(r, "reply"), "Hello hostile", "{r}");
    followup_ok(r);
}

/// The checks, one per case of hostile.py, named after it.
mod checks {
    use super::*;

    /// The control: the harness itself gets a normal answer.
    pub fn good_call(r: &Value) {
        served(r);
        assert_eq!(int(r, "header_blocks"), Some(2), "headers + trailers: {r}");
    }

    /// Spec: "If Content-Type does not begin with "application/grpc", gRPC servers SHOULD
    /// respond with HTTP status of 415". C-core 1.56 rejects the value while decoding HPACK
    /// ("Error parsing 'content-type' metadata: invalid value") and answers RST_STREAM
    /// INTERNAL_ERROR only: no HTTP status at all.
    ///
    /// It also stores the headers indexed after the bad one in the same block (user-agent)
    /// in its HPACK table with the error attached, so the next request on the connection that
    /// refers to that entry is reset too, though it is well-formed.
    pub fn content_type_json(r: &Value) {
        reset_only(r, INTERNAL_ERROR);
        assert_eq!(int(&r["followup"], "stream_reset"), Some(INTERNAL_ERROR), "poisoned HPACK entry: {r}");
        assert_eq!(r["followup"]["grpc_status"], Value::Null, "{r}");
    }

    /// Spec: Method → ":method POST", no answer given for others. C-core: Trailers-Only,
    /// HTTP 200, UNKNOWN "Bad method header", then RST_STREAM NO_ERROR (the spec's "early
    /// server closure"); and it sends that same HEADERS + RST_STREAM pair 6 times in all on
    /// the closed stream (a strict client such as python-h2 answers GOAWAY STREAM_CLOSED).
    pub fn method_get(r: &Value) {
        grpc_status(r, UNKNOWN);
        assert_eq!(text(r, "grpc_message"), "Bad method header", "{r}");
        assert_eq!(int(r, "stream_reset"), Some(NO_ERROR), "{r}");
        answered_times(r, 6);
        followup_ok(r);
    }

    /// Spec: TE → "te" "trailers" is required; no answer given when it is missing. C-core:
    /// UNKNOWN "Missing :te header", otherwise as for GET (6 pairs too).
    pub fn missing_te(r: &Value) {
        grpc_status(r, UNKNOWN);
        assert_eq!(text(r, "grpc_message"), "Missing :te header", "{r}");
        assert_eq!(int(r, "stream_reset"), Some(NO_ERROR), "{r}");
        answered_times(r, 6);
        followup_ok(r);
    }

    /// Spec: TimeoutValue is at most 8 digits plus a unit; no answer given for bad values.
    /// C-core: an HPACK metadata error like the content-type one: RST_STREAM INTERNAL_ERROR,
    /// and the headers after it in the block poison the connection's HPACK table.
    pub fn timeout_not_a_number(r: &Value) {
        reset_only(r, INTERNAL_ERROR);
        assert_eq!(int(&r["followup"], "stream_reset"), Some(INTERNAL_ERROR), "poisoned HPACK entry: {r}");
    }

    /// 11 digits: outside the spec's grammar, yet C-core accepts it and serves the call.
    pub fn timeout_too_many_digits(r: &Value) {
        served(r);
    }

    /// The prefix announces 1000 bytes, 9 come, then END_STREAM. C-core hands the call no
    /// message and grpcio answers INTERNAL "No payload" (statuscodes.md: a request that
    /// cannot be parsed is INTERNAL).
    pub fn length_prefix_beyond_body(r: &Value) {
        no_payload(r);
    }

    /// A 4 GiB - 1 prefix (the limit is 4 MiB), 9 bytes, END_STREAM: C-core does not look
    /// at the announced length, so this is INTERNAL "No payload", not RESOURCE_EXHAUSTED.
    pub fn length_prefix_4gib(r: &Value) {
        no_payload(r);
    }

    /// A 4 GiB - 1 prefix, then 8 MiB of body, twice the 4 MiB max_receive_message_len.
    /// statuscodes.md: a message larger than the limit is RESOURCE_EXHAUSTED. C-core 1.56
    /// checks the limit only once a message is complete: it keeps granting flow-control
    /// window for all of it and answers nothing. That it buffers what it accepted (server RSS
    /// grows by about what was sent, until the connection closes) was measured by hand, not
    /// here. This documents a weakness, not a wish: when C-core refuses early, flip it.
    pub fn length_prefix_4gib_streaming(r: &Value) {
        assert_eq!(int(r, "body_bytes_sent"), Some(8 << 20), "{r}");
        assert_eq!(r["stream_reset"], Value::Null, "{r}");
        assert_eq!(r["grpc_status"], Value::Null, "{r}");
        assert_eq!(r["stream_ended"], Value::Bool(false), "{r}");
        connection_intact(r);
        followup_ok(r);
    }

    /// The prefix says 5 bytes, 3 come, then END_STREAM.
    pub fn truncated_message(r: &Value) {
        no_payload(r);
    }

    fn no_payload(r: &Value) {
        grpc_status(r, INTERNAL);
        assert_eq!(text(r, "grpc_message"), "No payload", "{r}");
        followup_ok(r);
    }

    /// statuscodes.md: "Error parsing request proto: INTERNAL, server". grpcio's codec says
    /// so (its message says "response" though it is the request).
    pub fn not_protobuf(r: &Value) {
        grpc_status(r, INTERNAL);
        assert!(text(r, "grpc_message").starts_with("Failed to deserialize"), "{r}");
        assert!(text(r, "grpc_message").contains("IncorrectTag"), "{r}");
        followup_ok(r);
    }

    /// A proto3 `string` must be UTF-8; rust-protobuf refuses it: INTERNAL as above.
    pub fn invalid_utf8_name(r: &Value) {
        grpc_status(r, INTERNAL);
        assert!(text(r, "grpc_message").contains("Utf8Error"), "{r}");
        followup_ok(r);
    }

    /// Spec: "If the Message-Encoding header is omitted then the Compressed-Flag must be 0".
    /// C-core ignores the flag and serves the call (grpc-go answers INTERNAL here).
    pub fn compressed_flag_without_encoding(r: &Value) {
        served(r);
    }

    /// statuscodes.md: "Compression mechanism used by client not supported at server:
    /// UNIMPLEMENTED". C-core 1.56 rejects the unknown value while decoding HPACK: RST_STREAM
    /// INTERNAL_ERROR, no status. grpc-encoding was the last header, so nothing is poisoned.
    pub fn unknown_encoding(r: &Value) {
        reset_only(r, INTERNAL_ERROR);
        followup_ok(r);
    }

    /// A unary call whose HEADERS end the stream: no request message at all. As for a
    /// request that cannot be parsed, INTERNAL "No payload".
    pub fn unary_no_message(r: &Value) {
        no_payload(r);
    }

    /// A unary call with two request messages. C-core reads the first, serves it and drops
    /// the second (grpc-go answers INTERNAL "client streaming protocol violation" instead).
    pub fn unary_two_messages(r: &Value) {
        served(r);
        assert_eq!(int(r, "response_messages"), Some(1), "{r}");
    }

    /// One complete request of 4 MiB + 1 byte: RESOURCE_EXHAUSTED, C-core's check of
    /// max_receive_message_len once the message is whole. The status comes as Trailers-Only
    /// with RST_STREAM NO_ERROR, 6 times in all (see `answered_times`).
    pub fn message_over_limit(r: &Value) {
        grpc_status(r, RESOURCE_EXHAUSTED);
        assert_eq!(text(r, "grpc_message"), "Received message larger than max (4194305 vs. 4194304)", "{r}");
        assert_eq!(int(r, "body_bytes_sent"), Some(5 + (4 << 20) + 1), "{r}");
        let answer: Vec<&str> = stream_frames(r, 1).into_iter().filter(|f| !f.starts_with("WINDOW_UPDATE")).collect();
        let pair = ["HEADERS s1 END_STREAM", "RST_STREAM s1 NO_ERROR"];
        assert_eq!(answer, pair.iter().copied().cycle().take(12).collect::<Vec<_>>(), "{r}");
        followup_ok(r);
    }

    /// GetStockPrice with `grpc-timeout: 1m`: the deadline passes at once, after the first
    /// tick or before it. DEADLINE_EXCEEDED, then the same trailers and RST_STREAM again on
    /// the closed stream (C-core 1.56 closes a stream cancelled by its deadline more than
    /// once; how often depends on which operations were pending, so no count is asserted).
    /// Through nginx this repetition becomes a reset (tests/nginx.rs).
    pub fn deadline_1ms_stream(r: &Value) {
        grpc_status(r, DEADLINE_EXCEEDED);
        assert_eq!(text(r, "grpc_message"), "Deadline Exceeded", "{r}");
        assert_eq!(int(r, "stream_reset"), Some(NO_ERROR), "{r}");
        let frames = stream_frames(r, 1);
        let ticks = frames.iter().take_while(|f| **f == "HEADERS s1" || **f == "DATA s1").count();
        assert!(int(r, "response_messages").unwrap() <= 1, "at most the first tick: {r}");
        let closes: Vec<&[&str]> = frames[ticks..].chunks(2).collect();
        assert!(closes.len() >= 2, "the close is repeated: {r}");
        assert!(closes.iter().all(|c| *c == ["HEADERS s1 END_STREAM", "RST_STREAM s1 NO_ERROR"]), "{r}");
        followup_ok(r);
    }

    /// statuscodes.md: "Method not found at server: UNIMPLEMENTED".
    pub fn unknown_service(r: &Value) {
        grpc_status(r, UNIMPLEMENTED);
        followup_ok(r);
    }

    pub fn unknown_method(r: &Value) {
        grpc_status(r, UNIMPLEMENTED);
        followup_ok(r);
    }

    /// Spec: servers may limit Request-Headers, 8 KiB suggested; statuscodes.md has
    /// RESOURCE_EXHAUSTED for "larger than configured limit". C-core 1.56: over its 16 KiB
    /// hard limit, Trailers-Only RESOURCE_EXHAUSTED "received metadata size exceeds hard
    /// limit …" (listing every header), RST_STREAM NO_ERROR, repeated like the GET case but 7
    /// times in all. (Between the 8 KiB soft and the 16 KiB hard limit C-core refuses at
    /// random, so the cases stay well above.)
    pub fn header_value_64k(r: &Value) {
        metadata_too_large(r);
    }

    /// The same 64 KiB header, sent right after the preface by a client that never ACKs our
    /// SETTINGS. C-core 1.56 applies the 16 KiB limit it announced there only once the peer
    /// has ACKed it, so the request is served as if it were good (and the followup too).
    /// **Weakness**, closed in front of the server: nginx answers GOAWAY ENHANCE_YOUR_CALM
    /// (tests/nginx.rs). When C-core enforces the limit from the first frame, flip this.
    pub fn header_value_64k_before_settings_ack(r: &Value) {
        // Usually served. Rarely (1 run in ~40 under load) C-core's random early detection
        // refuses it at the soft limit (8 KiB) even before the ACK: both outcomes are C-core's.
        if int(r, "grpc_status") == Some(RESOURCE_EXHAUSTED) {
            assert!(text(r, "grpc_message").starts_with("received metadata size exceeds soft limit"), "{r}");
            followup_ok(r);
        } else {
            served(r);
        }
    }

    pub fn many_headers(r: &Value) {
        metadata_too_large(r);
    }

    fn metadata_too_large(r: &Value) {
        grpc_status(r, RESOURCE_EXHAUSTED);
        assert!(text(r, "grpc_message").starts_with("received metadata size exceeds hard limit"), "{r}");
        assert_eq!(int(r, "stream_reset"), Some(NO_ERROR), "{r}");
        answered_times(r, 7);
        followup_ok(r);
    }

    /// Chat: one message answered, then our RST_STREAM(CANCEL): the connection goes on. On
    /// the stream we reset, C-core still sends trailers, CANCELLED, and RST_STREAM NO_ERROR;
    /// RFC 9113 §5.1 says nothing more should come (harmless: a client ignores them).
    pub fn rst_stream_mid_stream(r: &Value) {
        assert_eq!(r["chat_replies_before_reset"], serde_json::json!(["Server received: one"]), "{r}");
        assert_eq!(r["reset_sent"], Value::Bool(true), "{r}");
        assert_eq!(r["ping_acked"], Value::Bool(true), "{r}");
        assert_eq!(
            r["frames_after_reset"],
            serde_json::json!(["HEADERS s1 END_STREAM", "RST_STREAM s1 NO_ERROR"]),
            "{r}"
        );
        assert_eq!(int(r, "grpc_status_after_reset"), Some(CANCELLED), "{r}");
        connection_intact(r);
        followup_ok(r);
    }

    /// Chat: half a message, a PING round trip (the server has read it), then the socket
    /// closes. The server must be waiting for the rest, not have answered anything.
    pub fn close_mid_stream(r: &Value) {
        assert_eq!(r["ping_acked"], Value::Bool(true), "{r}");
        assert_eq!(r["stream_ended"], Value::Bool(false), "{r}");
        assert_eq!(r["stream_reset"], Value::Null, "{r}");
        connection_intact(r);
    }

    /// RFC 9113 §3.4: an invalid preface is a connection error PROTOCOL_ERROR, "A GOAWAY
    /// frame MAY be omitted". C-core sends its own SETTINGS, then closes without GOAWAY.
    pub fn garbage_preface(r: &Value) {
        assert_eq!(r["connection_closed"], Value::Bool(true), "{r}");
        assert_eq!(r["goaway"], Value::Null, "{r}");
        let frames: Vec<&str> = r["frames"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        assert_eq!(frames.first(), Some(&"SETTINGS"), "{r}");
        assert!(frames.iter().all(|f| *f == "SETTINGS" || *f == "WINDOW_UPDATE"), "{r}");
    }

    /// 1000 RecordMetrics calls opened and abandoned: 10 connections of 100 streams each
    /// (the server's SETTINGS_MAX_CONCURRENT_STREAMS), all at once; every one accepted.
    pub fn thousand_streams_abandoned(r: &Value) {
        assert_eq!(int(r, "max_concurrent_streams"), Some(100), "{r}");
        assert_eq!(int(r, "connections"), Some(10), "{r}");
        assert_eq!(int(r, "streams_opened"), Some(1000), "{r}");
        assert_eq!(int(r, "accepted"), Some(1000), "{r}");
        assert_eq!(int(r, "refused"), Some(0), "{r}");
        assert_eq!(int(r, "other_resets"), Some(0), "{r}");
        assert_eq!(r["ping_acked"], Value::Bool(true), "{r}");
        connection_intact(r);
    }

    /// A Chat open and PINGs back to back, far more often than min_client_ping_interval (30 s
    /// here). C-core counts a strike for each ping too soon after the previous one (the first
    /// after it last wrote HEADERS, DATA or WINDOW_UPDATE is free); past max_ping_strikes (2
    /// here) it sends GOAWAY ENHANCE_YOUR_CALM "too_many_pings", ends the open call
    /// UNAVAILABLE "Too many pings" and closes the connection. tests/limits.rs checks that
    /// the two limits are the server's settings.
    pub fn too_many_pings(r: &Value) {
        assert_eq!(int(r, "goaway"), Some(ENHANCE_YOUR_CALM), "{r}");
        assert_eq!(text(r, "goaway_debug"), "too_many_pings", "{r}");
        assert_eq!(int(r, "pings_since_server_write"), Some(1 + 3), "one free ping, then 2 strikes + 1: {r}");
        assert_eq!(int(r, "grpc_status"), Some(UNAVAILABLE), "the open call: {r}");
        assert_eq!(text(r, "grpc_message"), "Too many pings", "{r}");
        assert_eq!(r["connection_closed"], Value::Bool(true), "{r}");
    }
}

macro_rules! hostile_cases {
    ($($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                let server = TestServer::start(common::local());
                let r = run_case(&server.addr, stringify!($case));
                checks::$case(&r);
                still_serves(&server);
            }
        )*

        /// Every case, by name, with its check.
        const CASES: &[(&str, fn(&Value))] = &[$((stringify!($case), checks::$case)),*];
    };
}

hostile_cases!(
    good_call,
    content_type_json,
    method_get,
    missing_te,
    timeout_not_a_number,
    timeout_too_many_digits,
    length_prefix_beyond_body,
    length_prefix_4gib,
    length_prefix_4gib_streaming,
    truncated_message,
    not_protobuf,
    invalid_utf8_name,
    compressed_flag_without_encoding,
    unknown_encoding,
    unary_no_message,
    unary_two_messages,
    message_over_limit,
    deadline_1ms_stream,
    unknown_service,
    unknown_method,
    header_value_64k,
    header_value_64k_before_settings_ack,
    many_headers,
    rst_stream_mid_stream,
    close_mid_stream,
    garbage_preface,
    thousand_streams_abandoned,
    too_many_pings,
);

/// One server takes the whole suite, case after case, and still answers; a Chat opened by a
/// well-behaved client before the first case is still answered after the last.
#[test]
fn one_server_survives_every_case_in_a_row() {
    use futures::executor::block_on;
    use futures::{SinkExt as _, TryStreamExt as _};
    use greeter::proto::ChatMessage;
    use grpcio::WriteFlags;

    let mut list = tools().python(SCRIPT);
    list.arg("--list");
    let listed = stdout_of(list, "--list");
    let listed: Vec<&str> = listed.lines().collect();
    let ours: Vec<&str> = CASES.iter().map(|(name, _)| *name).collect();
    assert_eq!(listed, ours, "hostile.py's cases and this file's tests differ");

    let server = TestServer::start(common::local());
    let client = server.raw_client();
    let (mut sink, mut replies) = client.chat_opt(common::deadline()).unwrap();
    let mut chat = |text: &str| {
        block_on(async {
            let msg = ChatMessage { user: "bystander".into(), message: text.into(), ..Default::default() };
            sink.send((msg, WriteFlags::default())).await.unwrap();
            let reply = replies.try_next().await.unwrap().expect("a reply");
            assert_eq!(reply.message, format!("Server received: {text}"));
        })
    };
    chat("before");
    for (case, check) in CASES {
        let r = run_case(&server.addr, case);
        check(&r);
    }
    chat("after");
    still_serves(&server);
}

/// What the bare server answers each malformed kind of `common::abuse` (the fields of
/// hostile.py's `answer()`), as the single-case tests above check in detail. Three kinds get
/// a reset and no status, and two of them poison the connection's HPACK table, so the good
/// request that follows on it is reset too (no followup status).
fn direct_answer(kind: &str) -> Value {
    const MESSAGE_OVER_LIMIT: &str = "Received message larger than max (4194305 vs. 4194304)";
    const NOT_PROTOBUF: &str = "Failed to deserialize response message: Codec(Error(WireError(IncorrectTag(110))))";
    let ok = Some(OK);
    match kind {
        "content_type_json" => answer(None, None, None, Some(INTERNAL_ERROR), None),
        "method_get" => answer(Some(200), Some(UNKNOWN), Some("Bad method header"), Some(NO_ERROR), ok),
        "missing_te" => answer(Some(200), Some(UNKNOWN), Some("Missing :te header"), Some(NO_ERROR), ok),
        "timeout_not_a_number" => answer(None, None, None, Some(INTERNAL_ERROR), None),
        "unknown_encoding" => answer(None, None, None, Some(INTERNAL_ERROR), ok),
        "unary_no_message" => answer(Some(200), Some(INTERNAL), Some("No payload"), None, ok),
        "unary_two_messages" => answer(Some(200), Some(OK), Some(""), None, ok),
        "not_protobuf" => answer(Some(200), Some(INTERNAL), Some(NOT_PROTOBUF), None, ok),
        "message_over_limit" => {
            answer(Some(200), Some(RESOURCE_EXHAUSTED), Some(MESSAGE_OVER_LIMIT), Some(NO_ERROR), ok)
        }
        "rst_stream_mid_stream" => answer(Some(200), Some(CANCELLED), Some("CANCELLED"), Some(NO_ERROR), ok),
        "deadline_1ms_stream" => {
            answer(Some(200), Some(DEADLINE_EXCEEDED), Some("Deadline Exceeded"), Some(NO_ERROR), ok)
        }
        other => panic!("no answer written down for {other}"),
    }
}

/// The abuse that tests/nginx.rs sends through the front, here direct to one server: what the
/// bare server withstands. Four well-behaved threads lose no call while one hostile client
/// sends ten seconds of malformed requests of eleven kinds, and each kind gets its one answer
/// every time.
#[test]
fn well_behaved_clients_lose_no_call_beside_a_hostile_one() {
    let mut config = common::local();
    config.greeter.stock_interval = std::time::Duration::from_millis(10);
    let server = TestServer::start(config);
    let outcome = abuse(&server.addr, (0..4).map(|_| server.client()).collect());
    outcome.assert(|kind| vec![direct_answer(kind)]);
    still_serves(&server);
}

/// After abuse the server holds nothing: chats reset and cut mid-message, 1,000 streams opened
/// and abandoned, subscriptions and chats dropped by their client or ended by a deadline; once
/// the dust settles no chat is open, no subscription runs, and every call of every method that
/// started has been handled once, by `/metrics`.
#[test]
fn after_abuse_every_call_is_released_and_handled() {
    use futures::TryStreamExt as _;
    use grpcio::CallOption;

    let mut config = common::local();
    config.metrics_addr = Some("127.0.0.1:0".to_owned());
    config.greeter.stock_interval = std::time::Duration::from_secs(60);
    let server = TestServer::start(config);
    for case in ["rst_stream_mid_stream", "close_mid_stream", "thousand_streams_abandoned"] {
        run_case(&server.addr, case);
    }
    let client = server.raw_client();
    let mut dropped = Vec::new();
    for _ in 0..10 {
        // Each has its first tick, or its first reply: running on the server when dropped.
        let mut ticks = client.get_stock_price_opt(&common::tsmc(), common::deadline()).unwrap();
        futures::executor::block_on(ticks.try_next()).unwrap().unwrap();
        dropped.push(ticks);
        let (mut sink, mut replies) = client.chat_opt(common::deadline()).unwrap();
        futures::executor::block_on(async {
            use futures::SinkExt as _;
            let msg = greeter::proto::ChatMessage { message: "hi".into(), ..Default::default() };
            sink.send((msg, grpcio::WriteFlags::default())).await.unwrap();
            replies.try_next().await.unwrap().unwrap();
        });
        drop((sink, replies)); // never half-closed: the call is cancelled
                               // And one whose deadline passes while the server waits for a message.
        let (quiet, mut expiring) =
            client.chat_opt(CallOption::default().timeout(std::time::Duration::from_millis(50))).unwrap();
        let end = futures::executor::block_on(expiring.try_next());
        assert!(end.is_err(), "the quiet chat ends at its deadline: {end:?}");
        drop(quiet);
    }
    drop(dropped);

    common::wait_until("no chat is open and no subscription runs", || {
        let m = server.scrape();
        m.value("greeter_chats_open") == 0.0 && m.subscriptions_active() == 0.0
    });
    common::wait_until("every call that started is handled", || started_equals_handled(&server.scrape()).is_ok());
    let m = server.scrape();
    started_equals_handled(&m).unwrap();
    assert_eq!(m.started("bidi_stream", "Chat"), 22.0, "two resets/cuts, ten dropped, ten expired");
    assert_eq!(m.started("server_stream", "GetStockPrice"), 10.0);
    assert_eq!(m.started("client_stream", "RecordMetrics"), 1000.0);
    still_serves(&server);
}

/// `Ok` when every method's `started` equals its `handled`, summed over codes.
fn started_equals_handled(m: &common::scrape::Metrics) -> Result<(), String> {
    let mut methods = std::collections::BTreeSet::new();
    for line in m.0.lines().filter(|l| l.starts_with("grpc_server_started_total{")) {
        methods.insert(line.split('}').next().unwrap().trim_start_matches("grpc_server_started_total{").to_owned());
    }
    for labels in methods {
        let started: f64 =
            m.0.lines()
                .filter(|l| l.starts_with(&format!("grpc_server_started_total{{{labels}}}")))
                .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
                .sum();
        let handled: f64 =
            m.0.lines()
                .filter(|l| l.starts_with("grpc_server_handled_total{") && labels.split(',').all(|kv| l.contains(kv)))
                .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
                .sum();
        if started != handled {
            return Err(format!("{labels}: started {started}, handled {handled}"));
        }
    }
    Ok(())
}
