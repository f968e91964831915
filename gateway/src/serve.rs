//! The listener: the gateway's configuration, binding, the accept loop (TLS when
//! configured), and the graceful shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::Layer as _;
use tower_http::services::ServeDir;

use crate::call::CallService;
use crate::cors::{self, InvalidOrigin};
use crate::limits::Limits;
use crate::metrics::{self, Metrics};
use crate::route::Router;
use crate::tls::{TlsError, TlsFiles};
use crate::upstream::{Upstream, UpstreamAddrError};

/// How long a TLS handshake may take before the connection is dropped.
const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);
/// How long an HTTP/1.1 request's headers may take to arrive.
const HEADER_DEADLINE: Duration = Duration::from_secs(10);

/// Where the gateway listens, what it forwards to, and its limits.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// `host:port` to listen on; port 0 picks a free one.
    pub listen: String,
    /// The gRPC server: `host:port` or `http://host:port`.
    pub upstream: String,
    /// HTTP/2 connections to the server (each carries up to the server's
    /// max-concurrent-streams calls at once).
    pub upstream_connections: usize,
    /// The page's files (the built `web/dist`), served at `/`; `None` serves none.
    pub static_dir: Option<PathBuf>,
    /// Origins (`scheme://host[:port]`, or `*`) whose pages may call across origins.
    /// None by default: only the page the gateway serves itself.
    pub allowed_origins: Vec<String>,
    /// The largest request body taken, as sent (text mode's base64 counts 4/3).
    pub max_request_bytes: u64,
    /// Calls in flight at once (a subscription counts until it ends); past it,
    /// `RESOURCE_EXHAUSTED`.
    pub max_concurrent_calls: usize,
    /// On shutdown, how long calls in flight get to finish.
    pub grace: Duration,
    /// Serve TLS (HTTP/2 and HTTP/1.1 by ALPN) instead of plaintext.
    pub tls: Option<TlsFiles>,
    /// `host:port` for `GET /metrics`; `None` serves no metrics.
    pub metrics_addr: Option<String>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listen: "localhost:8080".to_owned(),
            upstream: "localhost:50051".to_owned(),
            upstream_connections: 4,
            static_dir: None,
            allowed_origins: Vec::new(),
            max_request_bytes: 4 << 20,
            max_concurrent_calls: 400,
            grace: Duration::from_secs(10),
            tls: None,
            metrics_addr: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: String, source: std::io::Error },
    #[error("--upstream {0}")]
    Upstream(#[from] UpstreamAddrError),
    #[error("--allow-origin {0}")]
    Origin(#[from] InvalidOrigin),
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    #[error(
        "--static-dir {0}: not a directory (build the page first: npm --prefix web ci && npm --prefix web run build)"
    )]
    StaticDir(PathBuf),
}

/// A running gateway, on the tokio runtime that started it.
pub struct Gateway {
    addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    tls: bool,
    stop: watch::Sender<bool>,
    serving: tokio::task::JoinHandle<bool>,
}

impl GatewayConfig {
    /// Binds and starts serving on the current tokio runtime.
    pub async fn start(self) -> Result<Gateway, StartError> {
        if let Some(dir) = self.static_dir.as_ref().filter(|d| !d.is_dir()) {
            return Err(StartError::StaticDir(dir.clone()));
        }
        let upstream = Arc::new(Upstream::new(&self.upstream, self.upstream_connections)?);
        let cors = cors::layer(&self.allowed_origins)?;
        let tls = self.tls.as_ref().map(TlsFiles::acceptor).transpose()?;
        let metrics = Metrics::new();
        let limits = Arc::new(Limits::new(self.max_request_bytes, self.max_concurrent_calls));
        let call =
            CallService { upstream, limits, metrics: metrics.clone(), max_request_bytes: self.max_request_bytes };
        let grpc_web = cors.layer(tonic_web::GrpcWebLayer::new().layer(call));
        let files = self.static_dir.as_ref().map(|dir| ServeDir::new(dir).append_index_html_on_directories(true));
        let router = Router { grpc_web, files, metrics: metrics.clone() };

        let listen_error = |addr: &str, source| StartError::Listen { addr: addr.to_owned(), source };
        let listener = TcpListener::bind(&self.listen).await.map_err(|e| listen_error(&self.listen, e))?;
        let addr = listener.local_addr().map_err(|e| listen_error(&self.listen, e))?;
        let metrics_addr = match &self.metrics_addr {
            Some(at) => {
                let (listener, local) = metrics::bind(at).await.map_err(|e| listen_error(at, e))?;
                metrics::serve(listener, metrics);
                Some(local)
            }
            None => None,
        };
        let (stop, stopped) = watch::channel(false);
        let has_tls = tls.is_some();
        let serving = tokio::spawn(accept_loop(listener, tls, router, stopped, self.grace));
        let scheme = if has_tls { "https" } else { "http" };
        log::info!("gRPC-Web gateway serving {scheme}://{addr}, forwarding to {}", self.upstream);
        Ok(Gateway { addr, metrics_addr, tls: has_tls, stop, serving })
    }
}

impl Gateway {
    /// The address it listens on (the port chosen, for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR` (or `https://`): the page's address, and the gRPC-Web endpoint.
    pub fn url(&self) -> String {
        format!("{}://{}", if self.tls { "https" } else { "http" }, self.addr)
    }

    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Stops accepting connections, lets the calls in flight finish within the grace, and
    /// returns whether all of them did.
    pub async fn shutdown(self) -> bool {
        let _ = self.stop.send(true);
        self.serving.await.unwrap_or(false)
    }
}

/// Accepts until told to stop, then drains: true if every connection closed within `grace`.
async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) -> bool {
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // A client that opens a connection and sends its headers slowly, or never, is cut off.
    builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_DEADLINE);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let mut connections = JoinSet::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, most likely: wait for some to close.
                    log::warn!("cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let (service, builder, watcher, tls) =
            (TowerToHyperService::new(router.clone()), builder.clone(), graceful.watcher(), tls.clone());
        connections.spawn(async move {
            match tls {
                None => {
                    let _ = watcher.watch(builder.serve_connection_with_upgrades(TokioIo::new(stream), service)).await;
                }
                Some(tls) => match tokio::time::timeout(HANDSHAKE_DEADLINE, tls.accept(stream)).await {
                    Ok(Ok(stream)) => {
                        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                        let _ = watcher.watch(conn).await;
                    }
                    Ok(Err(e)) => log::debug!("TLS handshake failed: {e}"),
                    Err(_) => log::debug!("TLS handshake took over {HANDSHAKE_DEADLINE:?}"),
                },
            }
        });
        // Reap the connections that have ended, so the set holds only live ones.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    log::info!("gRPC-Web gateway: shutting down; calls in flight get {grace:?}");
    let drained = tokio::time::timeout(grace, graceful.shutdown()).await.is_ok();
    if !drained {
        log::warn!("gRPC-Web gateway: calls still in flight after {grace:?}; closing their connections");
    }
    connections.shutdown().await;
    drained
}
