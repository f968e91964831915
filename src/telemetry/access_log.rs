//! The access log: one JSON line per finished call, written by a thread of its own, so a call
//! never waits for a disk or a pipe. Each line is one write, so lines never tear, whatever
//! else writes to the same stream.

use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use grpcio::RpcStatusCode;

/// Lines waiting to be written at most; more are dropped (and counted).
const QUEUE_LEN: usize = 4096;

/// Where the access log goes; its lines are JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessLog {
    Stderr,
    /// Appended to.
    File(PathBuf),
}

/// One finished call, as the log tells it.
pub(crate) struct Entry<'a> {
    pub(crate) started: SystemTime,
    pub(crate) method: &'a str,
    pub(crate) peer: &'a str,
    pub(crate) code: RpcStatusCode,
    pub(crate) duration: Duration,
    pub(crate) messages_in: u64,
    pub(crate) messages_out: u64,
    pub(crate) trace_id: Option<String>,
    /// The caller the server verified (certificate principal or token `iss/sub`).
    pub(crate) principal: Option<&'a str>,
    /// The rule (`policy/rule`), or the reason, that refused the call before its handler.
    pub(crate) denied_by: Option<&'a str>,
}

/// The running log: a queue and the thread that writes it.
pub(crate) struct AccessLogWriter {
    queue: Mutex<Option<SyncSender<String>>>,
    dropped: Arc<AtomicU64>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl AccessLogWriter {
    pub(crate) fn start(to: &AccessLog) -> io::Result<Self> {
        let mut out: Box<dyn Write + Send> = match to {
            AccessLog::Stderr => Box::new(io::stderr()),
            AccessLog::File(path) => Box::new(File::options().create(true).append(true).open(path)?),
        };
        let (tx, rx) = mpsc::sync_channel::<String>(QUEUE_LEN);
        let thread = std::thread::Builder::new().name("greeter-access-log".into()).spawn(move || {
            for line in rx {
                if let Err(e) = out.write_all(line.as_bytes()).and_then(|()| out.flush()) {
                    log::warn!("access log not written: {e}");
                }
            }
        })?;
        Ok(AccessLogWriter { queue: Mutex::new(Some(tx)), dropped: Arc::default(), thread: Mutex::new(Some(thread)) })
    }

    pub(crate) fn write(&self, entry: &Entry<'_>) {
        let line = json_line(entry);
        let queued = self.queue.lock().unwrap().as_ref().is_some_and(|q| q.try_send(line).is_ok());
        if !queued {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Lines lost because the writer could not keep up.
    pub(crate) fn dropped(&self) -> impl Fn() -> u64 + Send + Sync + 'static {
        let dropped = self.dropped.clone();
        move || dropped.load(Ordering::Relaxed)
    }

    /// Writes what is queued and stops the thread.
    pub(crate) fn stop(&self) {
        drop(self.queue.lock().unwrap().take());
        if let Some(thread) = self.thread.lock().unwrap().take() {
            let _ = thread.join();
        }
    }
}

/// `{"time":…,"method":…,"peer":…,"principal":…,"code":…,"code_name":…,"duration_ms":…,
/// "messages_in":…,"messages_out":…,"trace_id":…,"denied_by":…}` and a newline.
fn json_line(e: &Entry<'_>) -> String {
    let code = i32::from(e.code);
    let trace_id = e.trace_id.as_deref().map_or("null".to_owned(), quoted);
    let principal = e.principal.map_or("null".to_owned(), quoted);
    let denied_by = e.denied_by.map_or("null".to_owned(), quoted);
    format!(
        "{{\"time\":{},\"method\":{},\"peer\":{},\"principal\":{principal},\"code\":{code},\"code_name\":{},\
         \"duration_ms\":{:.3},\"messages_in\":{},\"messages_out\":{},\"trace_id\":{trace_id},\
         \"denied_by\":{denied_by}}}\n",
        quoted(&rfc3339(e.started)),
        quoted(e.method),
        quoted(e.peer),
        quoted(code_name(e.code)),
        e.duration.as_secs_f64() * 1e3,
        e.messages_in,
        e.messages_out,
    )
}

/// gRPC's name for a status code (statuscodes.md); codes outside the 17 defined ones are UNKNOWN.
pub(crate) fn code_name(code: RpcStatusCode) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    usize::try_from(i32::from(code)).ok().and_then(|i| NAMES.get(i)).copied().unwrap_or("UNKNOWN")
}

/// A JSON string.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `2026-12-01T14:27:15.123Z`.
fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let (days, secs) = (since.as_secs() / 86_400, since.as_secs() % 86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60,
        since.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_in_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_764_599_235_123); // 2025-12-01T14:27:15.123Z
        assert_eq!(rfc3339(t), "2025-12-01T14:27:15.123Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn a_line_is_one_json_object() {
        let entry = Entry {
            started: UNIX_EPOCH,
            method: "/greeter.Greeter/SayHello",
            peer: "127.0.0.1:5\"1",
            code: RpcStatusCode::DEADLINE_EXCEEDED,
            duration: Duration::from_micros(1500),
            messages_in: 1,
            messages_out: 0,
            trace_id: Some("0af7651916cd43dd8448eb211c80319c".into()),
            principal: Some("spiffe://example.org/billing"),
            denied_by: None,
        };
        let line = json_line(&entry);
        assert!(line.ends_with("}\n") && line.matches('\n').count() == 1, "{line}");
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["peer"], "127.0.0.1:5\"1");
        assert_eq!(value["code"], 4);
        assert_eq!(value["code_name"], "DEADLINE_EXCEEDED");
        assert_eq!(value["duration_ms"], 1.5);
        assert_eq!(value["trace_id"], "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(value["principal"], "spiffe://example.org/billing");
        assert_eq!(value["denied_by"], serde_json::Value::Null);
    }
}
