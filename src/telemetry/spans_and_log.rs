//! The server's spans and its access log, the one call observer that makes both: on a call's
//! thread it reads the clock, asks the sampler (`server_spans.rs`) and counts messages; when
//! the call ends it hands one compact record, a [`FinishedCall`], to a thread of its own
//! (`handoff.rs`), which encodes the span into the OTLP request (`otlp.rs`) and formats the
//! log line (`access_log.rs`). A call neither traced nor logged leaves no record.
//!
//! A fact about a call (like who called, or which rule refused it) is a field of
//! [`FinishedCall`] (`finished_call.rs`), then one line in `SpanEncoder::encode` for its span attribute and one in
//! `Line::serialize` for its log field.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use grpcio::{Environment, RpcContext, RpcStatusCode};
use opentelemetry::trace::TraceId;

use super::access_log::{AccessLogWriter, LineFormatter, LogStats};
use super::finished_call::{Clock, FinishedCall, MethodNames, Peer, PeerName, SpanIds};
use super::handoff::{Consumer, Handoff, Limits};
use super::otlp::{ExportStats, OtlpExporter, TraceExport, SETTLE_TIMEOUT};
use super::server_spans::{self, Decision, ServerAddress, ServerSpans, SpanEncoder};
use crate::call::{CallObserver, Caller, MethodName, MethodObserver, Observer, Refusal};

/// Finished calls waiting at most: more are dropped, their spans and lines counted (at the
/// bench's 40,000 calls a second, a fifth of a second of them). A full batch wakes the
/// recording thread at once; a call that finds it asleep wakes it, and it then waits a while
/// for companions: half a second for spans alone, so that even a 1 % sample of a busy server's
/// calls goes out in requests of dozens of spans, not one each; a twentieth of a second when
/// there is an access log, which someone may be reading as it grows.
const LIMITS: Limits = Limits { capacity: 8192, batch: 512, linger: Duration::from_millis(500) };
const LOG_LINGER: Duration = Duration::from_millis(50);
/// Spans in one export request at most.
const SPANS_PER_REQUEST: usize = 1024;

/// The server's spans and access log: what is on, where it goes, and the thread that
/// records finished calls.
pub(crate) struct SpansAndAccessLog {
    shared: Arc<Shared>,
    server: Arc<ServerAddress>,
    span_stats: Arc<ExportStats>,
    log_stats: Option<Arc<LogStats>>,
}

/// What every method's observer shares.
struct Shared {
    spans: Option<ServerSpans>,
    logged: bool,
    handoff: Handoff<FinishedCall>,
    span_stats: Arc<ExportStats>,
    log_stats: Option<Arc<LogStats>>,
}

impl SpansAndAccessLog {
    /// Spans to `export` and lines to `log`, each when asked for; `listen` is the server's
    /// `--addr`. The export's channel runs on `env`, the server's own completion queues: a
    /// thread polling for it alone would take calls' I/O from the server's thread, in more,
    /// smaller pieces.
    pub(crate) fn start(
        export: Option<&TraceExport>,
        log: Option<AccessLogWriter>,
        listen: &str,
        env: Arc<Environment>,
    ) -> std::io::Result<Self> {
        let server = Arc::new(ServerAddress::new(listen));
        let span_stats = Arc::new(ExportStats::default());
        let spans = match export {
            Some(export) => {
                let exporter = OtlpExporter::connect(export, env, &export.resource(), span_stats.clone())?;
                Some((SpanEncoder::new(server.clone()), exporter))
            }
            None => None,
        };
        let log_stats = log.as_ref().map(|log| log.stats.clone());
        let limits = if log.is_some() { Limits { linger: LOG_LINGER, ..LIMITS } } else { LIMITS };
        let traced = spans.is_some();
        let recorder = SpansAndLines {
            spans,
            log: log.map(|log| (LineFormatter::default(), log)),
            scope: super::otlp_wire::scope(server_spans::SCOPE),
            request: Vec::new(),
            in_request: 0,
            lines: Vec::new(),
            line_count: 0,
        };
        let shared = Arc::new(Shared {
            spans: traced.then(ServerSpans::from_env),
            logged: log_stats.is_some(),
            handoff: Handoff::start("greeter-record", limits, recorder)?,
            span_stats: span_stats.clone(),
            log_stats: log_stats.clone(),
        });
        Ok(SpansAndAccessLog { shared, server, span_stats, log_stats })
    }

    /// The port the server got, once it listens.
    pub(crate) fn listening_on(&self, port: u16) {
        self.server.listening_on(port);
    }

    /// Spans sent to the collector so far.
    pub(crate) fn spans_exported(&self) -> impl Fn() -> u64 + Send + Sync + 'static {
        let stats = self.span_stats.clone();
        move || stats.exported()
    }

    /// Spans lost so far: the queue was full, or the collector did not take them.
    pub(crate) fn spans_dropped(&self) -> impl Fn() -> u64 + Send + Sync + 'static {
        let stats = self.span_stats.clone();
        move || stats.dropped()
    }

    /// Access-log lines lost so far (the writer could not keep up), when there is a log.
    pub(crate) fn log_lines_dropped(&self) -> Option<impl Fn() -> u64 + Send + Sync + 'static> {
        let stats = self.log_stats.clone()?;
        Some(move || stats.dropped.load(Ordering::Relaxed))
    }

    /// Records what is left, exports it and stops (a few seconds at most when the collector
    /// is away).
    pub(crate) fn stop(&self) {
        if !self.shared.handoff.stop(SETTLE_TIMEOUT * 2) {
            log::warn!("spans and access log: not all recorded at shutdown");
        }
        if self.shared.spans.is_some() {
            let (exported, dropped) = (self.span_stats.exported(), self.span_stats.dropped());
            log::info!("spans: {exported} exported, {dropped} dropped");
        }
        if let Some(stats) = &self.log_stats {
            let (written, dropped) = (stats.written.load(Ordering::Relaxed), stats.dropped.load(Ordering::Relaxed));
            log::info!("access log: {written} lines written, {dropped} dropped");
        }
    }
}

impl Drop for SpansAndAccessLog {
    fn drop(&mut self) {
        // Ends the thread when the server is dropped without a shutdown.
        self.shared.handoff.stop(Duration::ZERO);
    }
}

impl Observer for SpansAndAccessLog {
    fn method(&self, method: MethodName<'_>) -> Arc<dyn MethodObserver> {
        let names = Arc::new(MethodNames::new(method));
        Arc::new(MethodRecorder(Arc::new(MethodRecord { shared: self.shared.clone(), names })))
    }
}

/// What each call of one method needs to be recorded.
struct MethodRecord {
    shared: Arc<Shared>,
    names: Arc<MethodNames>,
}

/// One method's calls, recorded.
struct MethodRecorder(Arc<MethodRecord>);

impl MethodObserver for MethodRecorder {
    fn call_started(&self, ctx: &RpcContext, caller: &Caller) -> Box<dyn CallObserver> {
        let shared = &self.0.shared;
        let (span, trace_id) = match &shared.spans {
            Some(spans) => match spans.start(ctx.request_headers()) {
                Decision::Recorded(ids) => {
                    let trace_id = ids.trace_id;
                    (Some(ids), Some(trace_id))
                }
                Decision::NotRecorded(caller) => (None, caller),
            },
            None => (None, server_spans::caller_context(ctx.request_headers()).map(|span| span.trace_id())),
        };
        if span.is_none() && !shared.logged {
            return Box::new(NotRecorded);
        }
        Box::new(CallInProgress {
            method: self.0.clone(),
            peer: PeerName::new(&ctx.peer()),
            started: Instant::now(),
            trace_id,
            span,
            principal: caller.principal().map(Box::from),
            denied_by: Mutex::new(None),
            received: AtomicU64::new(0),
            sent: AtomicU64::new(0),
        })
    }
}

/// A call that leaves no record: its span was not sampled and nothing is logged.
struct NotRecorded;

impl CallObserver for NotRecorded {
    fn message_received(&self) {}
    fn message_sent(&self) {}
    fn finished(&self, _code: RpcStatusCode) {}
}

/// A call being recorded.
struct CallInProgress {
    method: Arc<MethodRecord>,
    peer: PeerName,
    started: Instant,
    trace_id: Option<TraceId>,
    span: Option<SpanIds>,
    principal: Option<Box<str>>,
    /// Set when the server's gate refuses the call, just before it finishes.
    denied_by: Mutex<Option<Box<str>>>,
    received: AtomicU64,
    sent: AtomicU64,
}

impl CallObserver for CallInProgress {
    fn message_received(&self) {
        self.received.fetch_add(1, Ordering::Relaxed);
    }

    fn message_sent(&self) {
        self.sent.fetch_add(1, Ordering::Relaxed);
    }

    fn refused(&self, refusal: &Refusal) {
        let by = refusal.rule.as_deref().unwrap_or(refusal.reason);
        *self.denied_by.lock().unwrap() = Some(by.into());
    }

    fn finished(&self, code: RpcStatusCode) {
        let MethodRecord { shared, names } = &*self.method;
        let call = FinishedCall {
            method: names.clone(),
            peer: self.peer.clone(),
            started: self.started,
            duration: self.started.elapsed(),
            code,
            messages_received: self.received.load(Ordering::Relaxed),
            messages_sent: self.sent.load(Ordering::Relaxed),
            trace_id: self.trace_id,
            span: self.span.clone(),
            principal: self.principal.clone(),
            denied_by: self.denied_by.lock().unwrap().take(),
        };
        if let Err(call) = shared.handoff.push(call) {
            if call.span.is_some() {
                shared.span_stats.drop_spans(1);
            }
            if let Some(stats) = &shared.log_stats {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The recording thread's side: finished calls to spans, exported, and to lines, written.
struct SpansAndLines {
    spans: Option<(SpanEncoder, OtlpExporter)>,
    log: Option<(LineFormatter, AccessLogWriter)>,
    /// The server's `InstrumentationScope`, encoded.
    scope: Vec<u8>,
    /// The spans of the request being filled, and how many.
    request: Vec<u8>,
    in_request: usize,
    /// The lines of this batch, and how many.
    lines: Vec<u8>,
    line_count: u64,
}

impl SpansAndLines {
    fn export(&mut self) {
        if let Some((_, exporter)) = &self.spans {
            exporter.export(&self.scope, &self.request, self.in_request as u64);
        }
        self.request.clear();
        self.in_request = 0;
    }
}

impl Consumer<FinishedCall> for SpansAndLines {
    fn consume(&mut self, batch: &mut Vec<FinishedCall>, settle: bool) {
        let clock = Clock::now();
        for call in batch.drain(..) {
            let peer = Peer::of(call.peer.as_str());
            if let (Some((encoder, _)), Some(ids)) = (&mut self.spans, &call.span) {
                encoder.encode(&mut self.request, &call, ids, &peer, &clock);
                self.in_request += 1;
                if self.in_request == SPANS_PER_REQUEST {
                    self.export();
                }
            }
            if let Some((formatter, _)) = &mut self.log {
                formatter.write_line(&mut self.lines, &call, &peer, &clock);
                self.line_count += 1;
            }
        }
        self.export();
        if let Some((_, log)) = &self.log {
            if self.line_count > 0 {
                log.write(std::mem::take(&mut self.lines), std::mem::take(&mut self.line_count));
            }
        }
        if settle {
            if let Some((_, exporter)) = &self.spans {
                exporter.settle(SETTLE_TIMEOUT);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_as_grpc_names_them() {
        let peer = |name: &str| {
            let kept = PeerName::new(name);
            assert_eq!(kept.as_str(), name);
            let Peer { address, ip, port } = Peer::of(kept.as_str());
            (address.to_owned(), ip.to_owned(), port)
        };
        assert_eq!(peer("ipv4:127.0.0.1:5000"), ("127.0.0.1:5000".into(), "127.0.0.1".into(), Some(5000)));
        assert_eq!(peer("ipv6:[::1]:40000"), ("[::1]:40000".into(), "::1".into(), Some(40000)));
        let v6 = "ipv6:[fe80::1234:5678:9abc:def0%eth0]:65535";
        assert_eq!(
            peer(v6),
            ("[fe80::1234:5678:9abc:def0%eth0]:65535".into(), "fe80::1234:5678:9abc:def0%eth0".into(), Some(65535))
        );
        let unix = format!("unix:/run/{}/greeter.sock", "a".repeat(80));
        assert_eq!(peer(&unix), (unix.clone(), unix.clone(), None));
        assert_eq!(peer("unix:/run/g.sock"), ("unix:/run/g.sock".into(), "unix:/run/g.sock".into(), None));
    }

    #[test]
    fn the_clock_turns_instants_into_wall_clock_times() {
        let at = Instant::now();
        let clock = Clock::at(1_000_000_000, at);
        assert_eq!(clock.unix_nanos(at), 1_000_000_000);
        assert_eq!(clock.unix_nanos(at + Duration::from_millis(5)), 1_005_000_000);
        assert_eq!(clock.unix_nanos(at - Duration::from_millis(5)), 995_000_000);
    }
}
