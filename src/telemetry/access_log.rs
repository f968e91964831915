//! The access log: one JSON line per finished call. Lines are formatted off the call's path
//! (by the thread that records finished calls, `spans_and_log.rs`) and written by a thread of
//! their own, a batch at a time, so a call never waits for a disk or a pipe, and a stalled one
//! never holds up the spans. A write holds whole lines only, and to a pipe (stderr) never more
//! than `PIPE_BUF` bytes, which the kernel writes whole: lines never tear, whatever else writes
//! to the same stream.

use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

use grpcio::RpcStatusCode;
use opentelemetry::trace::TraceId;
use serde::ser::{Serialize, SerializeStruct as _, Serializer};
use serde_json::value::RawValue;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::OffsetDateTime;

use super::code_names;
use super::finished_call::{Clock, FinishedCall, Peer};

/// Batches of lines waiting to be written at most; more are dropped (and counted).
const QUEUE_LEN: usize = 16;
/// The most a write to a pipe may hold and still be written whole (POSIX's PIPE_BUF on Linux).
const PIPE_BUF: usize = 4096;

/// `2026-12-01T14:27:15.123Z`: RFC 3339, UTC, milliseconds.
const TIME: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// Where the access log goes; its lines are JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessLog {
    Stderr,
    /// Appended to.
    File(PathBuf),
}

/// Formats lines. What many lines share is made JSON once: the status codes' names, and the
/// time, which most lines of a busy server share with the line before (to the millisecond).
pub(crate) struct LineFormatter {
    code_names: Vec<Box<RawValue>>,
    time: Option<(u64, Box<RawValue>)>,
}

impl Default for LineFormatter {
    fn default() -> Self {
        let code_names = (0..code_names::COUNT as i32)
            .map(|code| json_string(code_names::canonical(RpcStatusCode::from(code))))
            .collect();
        LineFormatter { code_names, time: None }
    }
}

/// `text` as a JSON string, by serde_json.
fn json_string(text: &str) -> Box<RawValue> {
    let json = serde_json::to_string(text).expect("a string is JSON");
    RawValue::from_string(json).expect("serde_json writes JSON")
}

impl LineFormatter {
    /// Appends `call`'s line, and its newline, to `out`; `peer` is the call's, `clock` dates it.
    pub(crate) fn write_line(&mut self, out: &mut Vec<u8>, call: &FinishedCall, peer: &Peer, clock: &Clock) {
        let unix_millis = clock.unix_nanos(call.started) / 1_000_000;
        let time = match &self.time {
            Some((millis, time)) if *millis == unix_millis => time,
            _ => &self.time.insert((unix_millis, json_string(&rfc3339(unix_millis)))).1,
        };
        let code_name = &self.code_names[code_names::index(call.code)];
        let line = Line { call, time, code_name, peer: peer.address };
        serde_json::to_writer(&mut *out, &line).expect("a line serializes into memory");
        out.push(b'\n');
    }
}

/// `unix_millis` as [`TIME`] writes it.
fn rfc3339(unix_millis: u64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_millis) * 1_000_000)
        .ok()
        .and_then(|time| time.format(TIME).ok())
        // Every time a u64 of nanoseconds holds (to the year 2554) is valid.
        .unwrap_or_else(|| "1970-01-01T00:00:00.000Z".to_owned())
}

/// The access log's line of one finished call: `{"time":…,"method":…,"peer":…,"principal":…,
/// "code":…,"code_name":…,"duration_ms":…,"messages_in":…,"messages_out":…,"trace_id":…,
/// "denied_by":…}`, one field a line, in this order.
struct Line<'a> {
    call: &'a FinishedCall,
    time: &'a RawValue,
    code_name: &'a RawValue,
    peer: &'a str,
}

impl Serialize for Line<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let call = self.call;
        let mut line = serializer.serialize_struct("Line", 11)?;
        line.serialize_field("time", self.time)?;
        line.serialize_field("method", &call.method.path)?;
        line.serialize_field("peer", self.peer)?;
        line.serialize_field("principal", &call.principal)?;
        line.serialize_field("code", &i32::from(call.code))?;
        line.serialize_field("code_name", self.code_name)?;
        line.serialize_field("duration_ms", &(call.duration.as_micros() as f64 / 1e3))?;
        line.serialize_field("messages_in", &call.messages_received)?;
        line.serialize_field("messages_out", &call.messages_sent)?;
        line.serialize_field("trace_id", &call.trace_id.map(Hex))?;
        line.serialize_field("denied_by", &call.denied_by)?;
        line.end()
    }
}

/// A trace id as W3C trace context writes it: 32 lowercase hex digits.
struct Hex(TraceId);

impl Serialize for Hex {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut text = [0u8; 32];
        for (i, byte) in self.0.to_bytes().into_iter().enumerate() {
            text[2 * i] = DIGITS[usize::from(byte >> 4)];
            text[2 * i + 1] = DIGITS[usize::from(byte & 0xf)];
        }
        serializer.serialize_str(std::str::from_utf8(&text).expect("hex digits are ASCII"))
    }
}

/// Lines written and lost so far.
#[derive(Debug, Default)]
pub(crate) struct LogStats {
    pub(crate) written: AtomicU64,
    pub(crate) dropped: AtomicU64,
}

/// The thread that writes the lines, and the queue of batches to it.
pub(crate) struct AccessLogWriter {
    queue: Option<SyncSender<(Vec<u8>, u64)>>,
    thread: Option<JoinHandle<()>>,
    pub(crate) stats: Arc<LogStats>,
}

impl AccessLogWriter {
    /// Opens `to` (a file is created if need be) and starts the writer.
    pub(crate) fn start(to: &AccessLog) -> io::Result<Self> {
        let (out, pipe): (Box<dyn Write + Send>, bool) = match to {
            AccessLog::Stderr => (Box::new(io::stderr()), true),
            AccessLog::File(path) => (Box::new(File::options().create(true).append(true).open(path)?), false),
        };
        let stats = Arc::new(LogStats::default());
        let (queue, batches) = mpsc::sync_channel::<(Vec<u8>, u64)>(QUEUE_LEN);
        let thread_stats = stats.clone();
        let thread = std::thread::Builder::new().name("greeter-access-log".into()).spawn(move || {
            let mut out = out;
            for (lines, count) in batches {
                match write_lines(&mut out, &lines, pipe) {
                    Ok(()) => thread_stats.written.fetch_add(count, Ordering::Relaxed),
                    Err(e) => {
                        log::warn!("access log: {count} lines not written: {e}");
                        thread_stats.dropped.fetch_add(count, Ordering::Relaxed)
                    }
                };
            }
        })?;
        Ok(AccessLogWriter { queue: Some(queue), thread: Some(thread), stats })
    }

    /// Hands `count` lines, `lines`, to the writer; drops them (counted) when it lags behind.
    pub(crate) fn write(&self, lines: Vec<u8>, count: u64) {
        let Some(queue) = &self.queue else { return };
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = queue.try_send((lines, count)) {
            self.stats.dropped.fetch_add(count, Ordering::Relaxed);
        }
    }
}

impl Drop for AccessLogWriter {
    /// Writes what is queued and ends the thread.
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `lines` (whole lines) to `out`: in one write to a file; to a pipe, in writes of whole lines
/// of at most `PIPE_BUF` bytes each (a longer line alone).
fn write_lines(out: &mut dyn Write, lines: &[u8], pipe: bool) -> io::Result<()> {
    if !pipe {
        return out.write_all(lines).and_then(|()| out.flush());
    }
    let mut rest = lines;
    while !rest.is_empty() {
        let window = &rest[..rest.len().min(PIPE_BUF)];
        let end = match window.iter().rposition(|&b| b == b'\n') {
            Some(last) => last + 1,
            // One line longer than PIPE_BUF: alone, as it is.
            None => rest.iter().position(|&b| b == b'\n').map_or(rest.len(), |i| i + 1),
        };
        out.write_all(&rest[..end])?;
        rest = &rest[end..];
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::finished_call::{MethodNames, PeerName};
    use grpcio::{MethodType, RpcStatusCode};
    use std::time::{Duration, Instant};

    /// A call that started at `unix_nanos`, by the clock it returns too.
    fn call(unix_nanos: u64) -> (FinishedCall, Clock) {
        let started = Instant::now();
        let call = FinishedCall {
            method: Arc::new(MethodNames::new(crate::call::MethodName::new(
                "/greeter.Greeter/SayHello",
                MethodType::Unary,
            ))),
            peer: PeerName::new("ipv4:127.0.0.1:5001"),
            started,
            duration: Duration::from_nanos(1_500_400),
            code: RpcStatusCode::DEADLINE_EXCEEDED,
            messages_received: 1,
            messages_sent: 0,
            trace_id: Some(TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap()),
            span: None,
            principal: Some("spiffe://example.org/billing".into()),
            denied_by: None,
        };
        (call, Clock::at(unix_nanos, started))
    }

    fn line((call, clock): &(FinishedCall, Clock)) -> String {
        let mut out = Vec::new();
        LineFormatter::default().write_line(&mut out, call, &Peer::of(call.peer.as_str()), clock);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_line_is_one_json_object_with_every_field_in_order() {
        let t = 1_764_599_235_123_456_789; // 2025-12-01T14:27:15.123456789Z
        assert_eq!(
            line(&call(t)),
            "{\"time\":\"2025-12-01T14:27:15.123Z\",\"method\":\"/greeter.Greeter/SayHello\",\
             \"peer\":\"127.0.0.1:5001\",\"principal\":\"spiffe://example.org/billing\",\"code\":4,\
             \"code_name\":\"DEADLINE_EXCEEDED\",\"duration_ms\":1.5,\"messages_in\":1,\"messages_out\":0,\
             \"trace_id\":\"0af7651916cd43dd8448eb211c80319c\",\"denied_by\":null}\n"
        );
    }

    #[test]
    fn times_are_rfc3339_in_utc_to_the_millisecond() {
        let time = |nanos| serde_json::from_str::<serde_json::Value>(&line(&call(nanos))).unwrap()["time"].clone();
        assert_eq!(time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(time(951_782_400_000_000_000), "2000-02-29T00:00:00.000Z");
        // One formatter, one line after another: each its own time.
        let mut formatter = LineFormatter::default();
        let mut out = Vec::new();
        for nanos in [5_000_000, 5_900_000, 6_000_000, 1_000_000_000] {
            let (c, clock) = call(nanos);
            formatter.write_line(&mut out, &c, &Peer::of(c.peer.as_str()), &clock);
        }
        let times: Vec<String> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["time"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            times,
            [
                "1970-01-01T00:00:00.005Z",
                "1970-01-01T00:00:00.005Z",
                "1970-01-01T00:00:00.006Z",
                "1970-01-01T00:00:01.000Z"
            ]
        );
    }

    #[test]
    fn a_refused_call_names_the_rule() {
        let (mut c, clock) = call(0);
        c.code = RpcStatusCode::PERMISSION_DENIED;
        c.principal = None;
        c.denied_by = Some("policy/deny-billing".into());
        let value: serde_json::Value = serde_json::from_str(&line(&(c, clock))).unwrap();
        assert_eq!(value["principal"], serde_json::Value::Null);
        assert_eq!(value["denied_by"], "policy/deny-billing");
        assert_eq!(value["code_name"], "PERMISSION_DENIED");
    }

    #[test]
    fn ipv6_and_odd_peers_and_a_missing_trace() {
        let (mut c, clock) = call(0);
        c.peer = PeerName::new("ipv6:[::1]:5002");
        let value: serde_json::Value = serde_json::from_str(&line(&(c, clock))).unwrap();
        assert_eq!(value["peer"], "[::1]:5002");
        let (mut c, clock) = call(0);
        c.peer = PeerName::new("unix:/tmp/a \"b\"\n");
        c.trace_id = None;
        let value: serde_json::Value = serde_json::from_str(&line(&(c, clock))).unwrap();
        assert_eq!(value["peer"], "unix:/tmp/a \"b\"\n");
        assert_eq!(value["trace_id"], serde_json::Value::Null);
    }

    #[test]
    fn writes_to_a_pipe_hold_whole_lines_of_at_most_pipe_buf_bytes() {
        struct Writes(Vec<Vec<u8>>);
        impl Write for Writes {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0.push(buf.to_vec());
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut lines = Vec::new();
        for i in 0..100 {
            lines.extend_from_slice(format!("{{\"line\":{i},\"pad\":\"{}\"}}\n", "x".repeat(100)).as_bytes());
        }
        lines.extend_from_slice(format!("{{\"long\":\"{}\"}}\n", "y".repeat(2 * PIPE_BUF)).as_bytes());
        let mut writes = Writes(Vec::new());
        write_lines(&mut writes, &lines, true).unwrap();
        assert_eq!(writes.0.concat(), lines);
        for write in &writes.0 {
            assert!(write.ends_with(b"\n"), "a write ends with its line");
            assert!(write.len() <= PIPE_BUF || write.iter().filter(|&&b| b == b'\n').count() == 1);
        }
        let mut file = Writes(Vec::new());
        write_lines(&mut file, &lines, false).unwrap();
        assert_eq!(file.0.len(), 1, "one write to a file");
    }
}
