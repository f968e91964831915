//! Server wiring: bind, completion queues, limits, Greeter + Health + Reflection, metrics,
//! shutdown (this file), and the services every server runs beside Greeter.
//!
//! The handlers know nothing of this file; this file knows nothing of what they compute.

pub mod health;
pub mod reflection;
pub(crate) mod send_batched;
pub mod service;
pub mod shutdown;

use std::sync::Arc;
use std::time::Duration;

use grpcio::{ChannelBuilder, EnvBuilder, Environment, ServerBuilder, ServerCredentials};

use crate::error::ServerError;
use crate::metrics::{MetricsEndpoint, ServerMetrics};
use crate::patterns::stock_price::{StockTicker, TickerConfig, TickerStats};
use crate::proto::health::health_check_response::ServingStatus;
use crate::tls::ServerTls;
use health::HealthService;
use reflection::{DescriptorIndex, ReflectionService};
use service::{GreeterService, Registrar};
use shutdown::{GracefulShutdown, ShutdownOutcome};

/// The service name health reports for Greeter (the empty name stands for the whole server).
pub const GREETER_SERVICE: &str = "greeter.Greeter";

/// Long enough for a health watcher on a LAN to hear NOT_SERVING and stop picking us;
/// short enough not to hold up a rolling restart.
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(1);

/// grpc-go's default receive limit, which we also apply to sends.
pub const DEFAULT_MAX_MESSAGE_LEN: usize = 4 * 1024 * 1024;

/// What one peer may ask of the server. Each limit, when hit, answers with a status that
/// names it (see the README's table); the defaults suit a public-facing server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Larger incoming messages are refused with RESOURCE_EXHAUSTED (C-core's check).
    pub max_receive_message_len: usize,
    /// Larger outgoing messages fail with RESOURCE_EXHAUSTED.
    pub max_send_message_len: usize,
    /// Concurrent calls per HTTP/2 connection (SETTINGS_MAX_CONCURRENT_STREAMS); a client
    /// queues calls beyond it until one finishes.
    pub max_concurrent_streams: u32,
    /// The server pings an idle connection this often to find dead peers…
    pub keepalive_time: Duration,
    /// …and closes it when a ping is not answered this fast.
    pub keepalive_timeout: Duration,
    /// Ping enforcement: a client pinging more often than this, without data, earns a strike;
    /// after `max_ping_strikes` the connection gets GOAWAY `too_many_pings`.
    pub min_client_ping_interval: Duration,
    pub max_ping_strikes: u32,
    /// A longer `ChatMessage.message` (bytes of UTF-8) ends the Chat with INVALID_ARGUMENT.
    pub max_chat_message_len: usize,
    /// Concurrent GetStockPrice subscriptions, server-wide; one more gets RESOURCE_EXHAUSTED.
    pub max_subscriptions: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_receive_message_len: DEFAULT_MAX_MESSAGE_LEN,
            max_send_message_len: DEFAULT_MAX_MESSAGE_LEN,
            max_concurrent_streams: 100,
            keepalive_time: Duration::from_secs(2 * 60 * 60),
            keepalive_timeout: Duration::from_secs(20),
            min_client_ping_interval: Duration::from_secs(5 * 60),
            max_ping_strikes: 2,
            max_chat_message_len: 64 * 1024,
            max_subscriptions: 10_000,
        }
    }
}

/// Everything needed to start a server. `ServerConfig::default()` is the tutorial's server.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Where to listen. `[::]:50051` takes IPv6 and IPv4 alike; `127.0.0.1:0` picks a free port.
    pub addr: String,
    /// Completion queues, each polled by one grpcio thread that also runs our handlers.
    pub completion_queues: usize,
    pub ticker: TickerConfig,
    /// How long in-flight calls may run on after shutdown begins.
    pub grace: Duration,
    /// How long the server keeps accepting calls after health turned NOT_SERVING, when a
    /// client or balancer is watching health (see [`GracefulShutdown`]).
    pub drain: Duration,
    pub limits: Limits,
    /// Serve TLS (mutual TLS if it names a client CA) instead of plaintext.
    pub tls: Option<ServerTls>,
    /// Serve gRPC reflection (v1 and v1alpha), so tools work without the .proto files.
    pub reflection: bool,
    /// Let other processes bind the same port too (SO_REUSEPORT), the kernel splitting
    /// connections between them. C-core's default is on; ours is off, so a second server
    /// started on a port already in use fails with [`ServerError::Bind`] instead of silently
    /// taking half the traffic.
    pub reuse_port: bool,
    /// Serve Prometheus metrics over HTTP at `/metrics` on this address (`HOST:PORT`);
    /// `None`, the default, counts nothing.
    pub metrics_addr: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            addr: "[::]:50051".to_owned(),
            completion_queues: 1,
            ticker: TickerConfig::default(),
            grace: Duration::from_secs(10),
            drain: DEFAULT_DRAIN,
            limits: Limits::default(),
            tls: None,
            reflection: true,
            reuse_port: false,
            metrics_addr: None,
        }
    }
}

impl ServerConfig {
    /// A config listening on a free loopback port: what tests want.
    pub fn local() -> Self {
        ServerConfig { addr: "127.0.0.1:0".to_owned(), ..ServerConfig::default() }
    }

    /// Binds, registers Greeter, Health and (unless disabled) Reflection, starts serving and
    /// reports SERVING.
    pub fn start(self) -> Result<GreeterServer, ServerError> {
        let env = Arc::new(EnvBuilder::new().cq_count(self.completion_queues.max(1)).name_prefix("greeter-cq").build());
        let limits = &self.limits;
        let ticker = StockTicker::new(self.ticker.clone(), limits.max_subscriptions);
        let greeter = GreeterService::new(ticker.clone(), limits.max_chat_message_len);
        let health = HealthService::default();
        let metrics = self.metrics_addr.as_ref().map(|_| ServerMetrics::new(ticker.stats()));
        let registrar = Registrar::new(metrics.clone());
        let channel_args = ChannelBuilder::new(env.clone())
            .max_receive_message_len(clamp(limits.max_receive_message_len))
            .max_send_message_len(clamp(limits.max_send_message_len))
            .max_concurrent_stream(clamp(limits.max_concurrent_streams))
            .keepalive_time(limits.keepalive_time)
            .keepalive_timeout(limits.keepalive_timeout)
            .http2_min_recv_ping_interval_without_data(limits.min_client_ping_interval)
            .http2_max_ping_strikes(clamp(limits.max_ping_strikes))
            .raw_cfg_int(c"grpc.so_reuseport".into(), i32::from(self.reuse_port))
            // Channelz counts every call and message in shared atomics for a debug view we do
            // not serve (grpcio has only an in-process JSON API for it, no gRPC service);
            // turning it off saves CPU on every pattern (BENCHMARKS.md, "Tuning levers").
            .raw_cfg_int(c"grpc.enable_channelz".into(), 0)
            .build_args();
        let mut builder = ServerBuilder::new(env.clone())
            .channel_args(channel_args)
            .register_service(registrar.greeter(&greeter))
            .register_service(registrar.health(&health));
        if self.reflection {
            let reflection = ReflectionService::new(DescriptorIndex::for_greeter_server());
            for service in registrar.reflection(&reflection) {
                builder = builder.register_service(service);
            }
        }
        let mut server = builder.build().map_err(ServerError::Build)?;
        let credentials = match &self.tls {
            Some(tls) => tls.credentials()?,
            None => ServerCredentials::insecure(),
        };
        let port = server
            .add_listening_port(self.addr.as_str(), credentials)
            .map_err(|source| ServerError::Bind { addr: self.addr.clone(), source })?;
        let metrics_endpoint = match (&self.metrics_addr, metrics) {
            (Some(addr), Some(metrics)) => Some(
                MetricsEndpoint::start(addr, metrics)
                    .map_err(|source| ServerError::Metrics { addr: addr.clone(), source })?,
            ),
            _ => None,
        };
        server.start();
        health.set_serving_status("", ServingStatus::SERVING);
        health.set_serving_status(GREETER_SERVICE, ServingStatus::SERVING);
        let scheme = match &self.tls {
            Some(ServerTls { client_ca: Some(_), .. }) => "mutual TLS",
            Some(_) => "TLS",
            None => "plaintext",
        };
        log::info!("gRPC Server started at {} (port {port}, {scheme})", self.addr);
        Ok(GreeterServer {
            server,
            health,
            port,
            ticker_stats: ticker.stats(),
            shutdown: GracefulShutdown { grace: self.grace, drain: self.drain },
            metrics_endpoint,
            _env: env,
        })
    }
}

/// C-core takes limits as `int`; anything larger means "no practical limit".
fn clamp(value: impl TryInto<i32>) -> i32 {
    value.try_into().unwrap_or(i32::MAX)
}

/// A running server. Dropping it stops it abruptly; call [`GreeterServer::shutdown`] instead.
pub struct GreeterServer {
    server: grpcio::Server,
    health: HealthService,
    port: u16,
    ticker_stats: Arc<TickerStats>,
    shutdown: GracefulShutdown,
    metrics_endpoint: Option<MetricsEndpoint>,
    _env: Arc<Environment>,
}

impl GreeterServer {
    /// The port actually bound (the chosen one when the config said port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn ticker_stats(&self) -> &TickerStats {
        &self.ticker_stats
    }

    pub fn health(&self) -> &HealthService {
        &self.health
    }

    /// Where `/metrics` is served, when the config asked for it.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics_endpoint.as_ref().map(MetricsEndpoint::local_addr)
    }

    /// Graceful shutdown with the configured grace period; blocks the calling thread until
    /// the server is stopped. From async code, await [`GreeterServer::shutdown_async`] instead.
    pub fn shutdown(self) -> ShutdownOutcome {
        futures::executor::block_on(self.shutdown_async())
    }

    /// The same graceful shutdown as a future that resolves once the server is stopped. It
    /// waits on grpcio's completion queue and `futures-timer`'s thread, never on the
    /// executor polling it, so any runtime can await (or spawn) it.
    pub async fn shutdown_async(mut self) -> ShutdownOutcome {
        let outcome = self.shutdown.run(&mut self.server, &self.health).await;
        // Last, so a final scrape sees the calls the shutdown ended.
        if let Some(endpoint) = self.metrics_endpoint.take() {
            endpoint.stop();
        }
        log::info!("server stopped after {:?}", outcome.elapsed);
        outcome
    }
}
