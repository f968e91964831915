//! gRFC A59's stdout audit logger: for each audited call, the JSON line grpc-go's
//! `authz/audit/stdout` logger prints, byte for byte but for the time, e.g.
//!
//! ```text
//! {"grpc_audit_log":{"rpc_method":"/greeter.Greeter/Chat","principal":"spiffe://example.org/ns/default/sa/billing","policy_name":"greeter","matched_rule":"greeter_deny_chat","authorized":false,"timestamp":"2026-12-07T10:15:00.123456789Z"}}
//! ```
//!
//! A call never waits for stdout: lines go through a bounded queue to a thread of their own,
//! and a line that finds the queue full is dropped and counted.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

/// Lines waiting to be written at most; more are dropped (and counted).
const QUEUE_LEN: usize = 4096;

/// One audited call: grpc-go's `audit.Event`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AuditEvent<'a> {
    /// `/package.Service/Method`.
    pub(crate) rpc_method: &'a str,
    /// Who called: the SPIFFE ID of a certificate (grpc-go's choice), the request principal
    /// for a token policy, or "".
    pub(crate) principal: &'a str,
    pub(crate) policy_name: &'a str,
    /// `<policy>_<rule>`, or "" when no rule matched.
    pub(crate) matched_rule: &'a str,
    pub(crate) authorized: bool,
}

/// The stdout logger: a queue and the thread that writes it. Dropping it writes what is
/// queued and ends the thread.
pub(crate) struct AuditLog {
    queue: Option<SyncSender<String>>,
    dropped: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl AuditLog {
    /// Writes to the process's stdout, as grpc-go's logger does.
    pub(crate) fn stdout() -> io::Result<Self> {
        Self::to(Box::new(io::stdout()))
    }

    /// Writes to `out`, one `write_all` per line, so lines never tear.
    pub(crate) fn to(mut out: Box<dyn Write + Send>) -> io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel::<String>(QUEUE_LEN);
        let thread = std::thread::Builder::new().name("greeter-audit-log".into()).spawn(move || {
            for line in rx {
                if let Err(e) = out.write_all(line.as_bytes()).and_then(|()| out.flush()) {
                    log::warn!("audit log line not written: {e}");
                }
            }
        })?;
        Ok(AuditLog { queue: Some(tx), dropped: Arc::default(), thread: Some(thread) })
    }

    /// Queues the event's line; never blocks.
    pub(crate) fn log(&self, event: &AuditEvent<'_>) {
        let line = json_line(event, SystemTime::now());
        let queued = match self.queue.as_ref().map(|queue| queue.try_send(line)) {
            Some(Ok(())) => true,
            Some(Err(TrySendError::Full(_) | TrySendError::Disconnected(_))) | None => false,
        };
        if !queued {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Lines lost because stdout could not keep up.
    #[allow(dead_code)] // used by tests/authz.rs and examples/authz_bench.rs, which include this module
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// [`Self::dropped`] for a metrics counter, valid as long as anyone holds it.
    pub(crate) fn dropped_counter(&self) -> impl Fn() -> u64 + Send + Sync + 'static {
        let dropped = self.dropped.clone();
        move || dropped.load(Ordering::Relaxed)
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The line grpc-go's stdout logger prints for `event` at `now` (with its newline).
pub(crate) fn json_line(event: &AuditEvent<'_>, now: SystemTime) -> String {
    let mut line = String::with_capacity(256);
    line.push_str("{\"grpc_audit_log\":{\"rpc_method\":");
    go_json_string(&mut line, event.rpc_method);
    line.push_str(",\"principal\":");
    go_json_string(&mut line, event.principal);
    line.push_str(",\"policy_name\":");
    go_json_string(&mut line, event.policy_name);
    line.push_str(",\"matched_rule\":");
    go_json_string(&mut line, event.matched_rule);
    line.push_str(if event.authorized { ",\"authorized\":true" } else { ",\"authorized\":false" });
    line.push_str(",\"timestamp\":\"");
    rfc3339_nano_utc(&mut line, now);
    line.push_str("\"}}\n");
    line
}

/// A JSON string as Go's `json.Marshal` writes it: besides `"`, `\` and control characters,
/// it escapes `<`, `>`, `&`, U+2028 and U+2029.
fn go_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || matches!(c, '<' | '>' | '&' | '\u{2028}' | '\u{2029}') => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `at` in RFC 3339, UTC, as [`rfc3339_nano_utc`] writes it.
pub(crate) fn rfc3339_utc(at: SystemTime) -> String {
    let mut out = String::with_capacity(30);
    rfc3339_nano_utc(&mut out, at);
    out
}

/// `now` as Go's `time.RFC3339Nano` formats a UTC time: `2026-12-07T10:15:00.1234Z`, the
/// fraction without trailing zeros, and none at all on a whole second.
fn rfc3339_nano_utc(out: &mut String, now: SystemTime) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    out.push_str(&format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}", rest / 3600, rest / 60 % 60, rest % 60));
    let nanos = since.subsec_nanos();
    if nanos > 0 {
        let fraction = format!("{nanos:09}");
        out.push('.');
        out.push_str(fraction.trim_end_matches('0'));
    }
    out.push('Z');
}

/// The proleptic Gregorian date of a day counted from 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_line_is_grpc_gos() {
        let event = AuditEvent {
            rpc_method: "/greeter.Greeter/SayHello",
            principal: "spiffe://example.org/a<b>&c",
            policy_name: "greeter",
            matched_rule: "greeter_allow_\"all\"\n",
            authorized: true,
        };
        let at = UNIX_EPOCH + Duration::new(1_796_601_600, 120_000_000); // 2026-12-07
        assert_eq!(
            json_line(&event, at),
            "{\"grpc_audit_log\":{\"rpc_method\":\"/greeter.Greeter/SayHello\",\"principal\":\
             \"spiffe://example.org/a\\u003cb\\u003e\\u0026c\",\"policy_name\":\"greeter\",\"matched_rule\":\
             \"greeter_allow_\\\"all\\\"\\n\",\"authorized\":true,\"timestamp\":\"2026-12-07T00:00:00.12Z\"}}\n"
        );
    }

    #[test]
    fn timestamps_are_rfc3339_nano() {
        let format = |secs, nanos| {
            let mut s = String::new();
            rfc3339_nano_utc(&mut s, UNIX_EPOCH + Duration::new(secs, nanos));
            s
        };
        assert_eq!(format(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(format(951_782_400 + 86_399, 1), "2000-02-29T23:59:59.000000001Z");
        assert_eq!(format(4_107_542_400, 500_000_000), "2100-03-01T00:00:00.5Z");
    }

    /// A writer the test reads back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn dropping_the_log_writes_every_queued_line_and_ends_its_thread() {
        let out = Shared::default();
        let log = AuditLog::to(Box::new(out.clone())).unwrap();
        let event =
            AuditEvent { rpc_method: "/m", principal: "", policy_name: "p", matched_rule: "", authorized: false };
        for _ in 0..100 {
            log.log(&event);
        }
        assert_eq!(log.dropped(), 0);
        drop(log);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 100);
        assert!(text.lines().all(|l| l.starts_with("{\"grpc_audit_log\":{\"rpc_method\":\"/m\"")));
    }

    /// A writer that blocks until the test lets it go.
    struct Stuck(mpsc::Receiver<()>);
    impl Write for Stuck {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let _ = self.0.recv();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stuck_stdout_drops_and_counts_lines_instead_of_blocking() {
        let (release, stuck) = mpsc::channel();
        let log = AuditLog::to(Box::new(Stuck(stuck))).unwrap();
        let event =
            AuditEvent { rpc_method: "/m", principal: "", policy_name: "p", matched_rule: "", authorized: true };
        // The writer holds at most one line; the queue QUEUE_LEN more; the rest are dropped.
        let sent = QUEUE_LEN as u64 + 100;
        for _ in 0..sent {
            log.log(&event);
        }
        let dropped = log.dropped();
        assert!((99..=100).contains(&dropped), "{dropped} dropped of {sent}");
        drop(release); // the writer's recv fails from now on: it drains the queue at once
        drop(log);
    }
}
