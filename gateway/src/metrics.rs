//! The gateway's own `/metrics`, named `greeter_gateway_*` so that one Prometheus can scrape
//! it beside the server (whose series are `grpc_server_*`, `greeter_*` and `process_*`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};
use tokio::net::TcpListener;
use tonic::Code;

use crate::status::code_name;

/// gRPC-Web's two content types.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Format {
    /// `application/grpc-web` (`+proto`): messages as they are.
    #[default]
    Binary,
    /// `application/grpc-web-text`: base64, for clients that cannot read binary bodies.
    Text,
}

impl Format {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Format::Binary => "binary",
            Format::Text => "text",
        }
    }
}

pub(crate) struct Metrics {
    registry: Registry,
    started: IntCounterVec,
    handled: IntCounterVec,
    seconds: HistogramVec,
    in_flight: IntGauge,
    rejected: IntCounterVec,
    files: IntCounterVec,
}

impl Metrics {
    pub(crate) fn new() -> Arc<Self> {
        let registry = Registry::new();
        let started = IntCounterVec::new(
            Opts::new("greeter_gateway_calls_started_total", "gRPC-Web calls the gateway received, by content type"),
            &["format"],
        )
        .unwrap();
        let handled = IntCounterVec::new(
            Opts::new(
                "greeter_gateway_calls_handled_total",
                "gRPC-Web calls ended, by method and status code (Canceled: the browser went away)",
            ),
            &["grpc_service", "grpc_method", "grpc_code", "format"],
        )
        .unwrap();
        let seconds = HistogramVec::new(
            HistogramOpts::new(
                "greeter_gateway_call_seconds",
                "From a call's request headers to the end of its reply, through the gateway",
            )
            .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            &["grpc_service", "grpc_method"],
        )
        .unwrap();
        let in_flight =
            IntGauge::new("greeter_gateway_calls_in_flight", "gRPC-Web calls whose reply has not ended").unwrap();
        let rejected = IntCounterVec::new(
            Opts::new(
                "greeter_gateway_rejected_total",
                "Calls the gateway answered RESOURCE_EXHAUSTED itself: too_large, too_many_calls",
            ),
            &["reason"],
        )
        .unwrap();
        let files = IntCounterVec::new(
            Opts::new("greeter_gateway_file_requests_total", "Requests for the page's files, by HTTP status"),
            &["code"],
        )
        .unwrap();
        for collector in [&started, &handled, &rejected, &files] {
            registry.register(Box::new(collector.clone())).unwrap();
        }
        registry.register(Box::new(seconds.clone())).unwrap();
        registry.register(Box::new(in_flight.clone())).unwrap();
        let process =
            prometheus::process_collector::ProcessCollector::new(std::process::id() as i32, "greeter_gateway");
        registry.register(Box::new(process)).unwrap();
        Arc::new(Metrics { registry, started, handled, seconds, in_flight, rejected, files })
    }

    /// A call begins: counted now, and again with its code when the record is finished (or
    /// dropped: the browser went away).
    pub(crate) fn start(self: &Arc<Self>, path: &str, format: Format) -> CallRecord {
        self.started.with_label_values(&[format.label()]).inc();
        self.in_flight.inc();
        CallRecord { metrics: self.clone(), path: path.to_owned(), format, start: Instant::now(), done: false }
    }

    pub(crate) fn rejected(&self, reason: &str) {
        self.rejected.with_label_values(&[reason]).inc();
    }

    pub(crate) fn file(&self, status: StatusCode) {
        self.files.with_label_values(&[status.as_str()]).inc();
    }

    pub(crate) fn text(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }
}

/// One call, counted once when it ends.
pub(crate) struct CallRecord {
    metrics: Arc<Metrics>,
    path: String,
    format: Format,
    start: Instant,
    done: bool,
}

impl CallRecord {
    pub(crate) fn finish(&mut self, code: Code) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        // A path the server does not know is the caller's to choose: one series for all of
        // them, so no caller can grow the metrics without bound.
        let (service, method) = match self.path.trim_start_matches('/').split_once('/') {
            Some((service, method)) if code != Code::Unimplemented => (service, method),
            _ => ("unknown", "unknown"),
        };
        let m = &self.metrics;
        m.handled.with_label_values(&[service, method, code_name(code), self.format.label()]).inc();
        m.seconds.with_label_values(&[service, method]).observe(self.start.elapsed().as_secs_f64());
        m.in_flight.dec();
    }
}

impl Drop for CallRecord {
    fn drop(&mut self) {
        self.finish(Code::Cancelled);
    }
}

/// Serves `GET /metrics` on `listener` until the runtime stops.
pub(crate) fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, most likely: wait for some to close.
                    log::warn!("/metrics: cannot accept a connection: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let metrics = metrics.clone();
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let reply = if req.uri().path() == "/metrics" {
                    Response::builder()
                        .header("content-type", "text/plain; version=0.0.4")
                        .body(Full::<bytes::Bytes>::from(metrics.text()))
                } else {
                    Response::builder()
                        .status(StatusCode::NOT_FOUND)
                        .body(Full::<bytes::Bytes>::from("metrics are at /metrics\n"))
                };
                async move { reply }
            });
            tokio::spawn(async move {
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let _ = builder.serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
}

/// The address `/metrics` is served on.
pub(crate) async fn bind(addr: &str) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}
