//! Server wiring: bind, completion queues, limits, Greeter + Health + Reflection, shutdown.
//!
//! The handlers know nothing of this file; this file knows nothing of what they compute.

use std::sync::Arc;
use std::time::Duration;

use grpcio::{ChannelBuilder, EnvBuilder, Environment, ServerBuilder, ServerCredentials};

use crate::error::ServerError;
use crate::health::HealthService;
use crate::proto::health::{create_health, health_check_response::ServingStatus};
use crate::proto::create_greeter;
use crate::reflection::{DescriptorIndex, ReflectionService};
use crate::service::GreeterService;
use crate::shutdown::{GracefulShutdown, ShutdownOutcome};
use crate::stock_price::{StockTicker, TickerConfig, TickerStats};

/// The service name health reports for Greeter (the empty name stands for the whole server).
pub const GREETER_SERVICE: &str = "greeter.Greeter";

/// grpc-go's default receive limit, which we also apply to sends.
pub const DEFAULT_MAX_MESSAGE_LEN: usize = 4 * 1024 * 1024;

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
    /// Larger incoming messages are refused with RESOURCE_EXHAUSTED.
    pub max_receive_message_len: usize,
    /// Larger outgoing messages fail with RESOURCE_EXHAUSTED.
    pub max_send_message_len: usize,
    /// Serve gRPC reflection (v1 and v1alpha), so tools work without the .proto files.
    pub reflection: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            addr: "[::]:50051".to_owned(),
            completion_queues: 1,
            ticker: TickerConfig::default(),
            grace: Duration::from_secs(10),
            max_receive_message_len: DEFAULT_MAX_MESSAGE_LEN,
            max_send_message_len: DEFAULT_MAX_MESSAGE_LEN,
            reflection: true,
        }
    }
}

impl ServerConfig {
    /// A config listening on a free loopback port: what tests want.
    pub fn local() -> Self {
        ServerConfig {
            addr: "127.0.0.1:0".to_owned(),
            ..ServerConfig::default()
        }
    }

    /// Binds, registers Greeter, Health and (unless disabled) Reflection, starts serving and
    /// reports SERVING.
    pub fn start(self) -> Result<GreeterServer, ServerError> {
        let env = Arc::new(
            EnvBuilder::new()
                .cq_count(self.completion_queues.max(1))
                .name_prefix("greeter-cq")
                .build(),
        );
        let ticker = StockTicker::new(self.ticker.clone());
        let health = HealthService::default();
        let limits = ChannelBuilder::new(env.clone())
            .max_receive_message_len(clamp_len(self.max_receive_message_len))
            .max_send_message_len(clamp_len(self.max_send_message_len))
            .build_args();
        let mut builder = ServerBuilder::new(env.clone())
            .channel_args(limits)
            .register_service(create_greeter(GreeterService::new(ticker.clone())))
            .register_service(create_health(health.clone()));
        if self.reflection {
            let reflection = ReflectionService::new(DescriptorIndex::for_greeter_server());
            for service in reflection.services() {
                builder = builder.register_service(service);
            }
        }
        let mut server = builder.build().map_err(ServerError::Build)?;
        let port = server
            .add_listening_port(self.addr.as_str(), ServerCredentials::insecure())
            .map_err(|source| ServerError::Bind {
                addr: self.addr.clone(),
                source,
            })?;
        server.start();
        health.set_serving_status("", ServingStatus::SERVING);
        health.set_serving_status(GREETER_SERVICE, ServingStatus::SERVING);
        log::info!("gRPC Server started at {} (port {port})", self.addr);
        Ok(GreeterServer {
            server,
            health,
            port,
            ticker_stats: ticker.stats(),
            shutdown: GracefulShutdown { grace: self.grace },
            _env: env,
        })
    }
}

/// grpcio takes limits as `i32`; anything larger means "no practical limit".
fn clamp_len(len: usize) -> i32 {
    i32::try_from(len).unwrap_or(i32::MAX)
}

/// A running server. Dropping it stops it abruptly; call [`GreeterServer::shutdown`] instead.
pub struct GreeterServer {
    server: grpcio::Server,
    health: HealthService,
    port: u16,
    ticker_stats: Arc<TickerStats>,
    shutdown: GracefulShutdown,
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

    /// Graceful shutdown with the configured grace period; blocks until the server is stopped.
    pub fn shutdown(mut self) -> ShutdownOutcome {
        let outcome = futures::executor::block_on(self.shutdown.run(&mut self.server, &self.health));
        log::info!("server stopped after {:?}", outcome.elapsed);
        outcome
    }
}
