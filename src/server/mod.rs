//! The Greeter server: [`ServerConfig`] → [`GreeterServer`]. Binds, registers Greeter, the
//! config's own services, health and reflection through one [`Registrar`] with the server's
//! observers, serves `/metrics` when asked, and shuts down gracefully (`shutdown.rs`).

mod access;
mod shutdown;

use std::sync::Arc;

use grpcio::{EnvBuilder, Environment};

use crate::call::{Observer, Registrar, Service};
use crate::compression::Compression;
use crate::error::ServerError;
use crate::health::HealthService;
use crate::patterns::config::GreeterConfig;
use crate::patterns::greeter_parts;
use crate::proto::health::health_check_response::ServingStatus;
use crate::reflection::reflection_services;
use crate::telemetry::{AccessLog, AccessLogWriter, MetricsEndpoint, Prometheus, SpansAndAccessLog, TraceExport};
use crate::tls::ServerTls;
use crate::transport::{self, TransportLimits};

pub use access::{Authorization, TokenCheck, TokenKeys};
pub use shutdown::{GracefulShutdown, ShutdownOutcome};

use access::AccessGate;

/// Everything needed to start a server. `ServerConfig::default()` is the tutorial's server.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Where to listen. `[::]:50051` takes IPv6 and IPv4 alike; `127.0.0.1:0` picks a free port.
    pub addr: String,
    /// Completion queues, each polled by one grpcio thread that also runs our handlers.
    pub completion_queues: usize,
    /// The Greeter service: its ticks, its limits.
    pub greeter: GreeterConfig,
    /// Services of your own, served beside Greeter with everything Greeter gets (see
    /// [`Service`]); each is reported SERVING on health and described by reflection. One
    /// named `greeter.Greeter` replaces the built-in Greeter (a variant of the tutorial's).
    pub services: Vec<Service>,
    /// What one peer may ask of a connection.
    pub transport: TransportLimits,
    /// How the server stops: health first, then a drain, then a grace period.
    pub shutdown: GracefulShutdown,
    /// Serve TLS (mutual TLS if it names a client CA) instead of plaintext.
    pub tls: Option<ServerTls>,
    /// Who may call what: policies on the TLS peer and on bearer tokens (docs/security.md);
    /// `None`, the default, lets every caller call every method.
    pub authorization: Option<Authorization>,
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
    /// Trace every call (a SERVER span each, OpenTelemetry's RPC conventions) to this OTLP
    /// collector; `None`, the default, traces nothing.
    pub traces: Option<TraceExport>,
    /// Write a JSON line for every finished call here; `None`, the default, logs no call.
    pub access_log: Option<AccessLog>,
    /// Compress replies for the clients that accept it (see [`Compression`]); the default
    /// sends them as they are.
    pub compression: Compression,
    /// Replies shorter than this many bytes go uncompressed.
    pub compression_min_len: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            addr: "[::]:50051".to_owned(),
            completion_queues: 1,
            greeter: GreeterConfig::default(),
            services: Vec::new(),
            transport: TransportLimits::default(),
            shutdown: GracefulShutdown::default(),
            tls: None,
            authorization: None,
            reflection: true,
            reuse_port: false,
            metrics_addr: None,
            traces: None,
            access_log: None,
            compression: Compression::None,
            compression_min_len: crate::compression::DEFAULT_MIN_LEN,
        }
    }
}

impl ServerConfig {
    /// Binds, registers Greeter, the config's services, Health and (unless disabled)
    /// Reflection, starts serving and reports SERVING for each service.
    pub fn start(self) -> Result<GreeterServer, ServerError> {
        let (greeter, ticker, chats) = greeter_parts(&self.greeter);
        // A service of the config's named greeter.Greeter replaces the built-in one.
        let builtin = Some(&greeter).filter(|g| self.services.iter().all(|s| s.name() != g.name()));
        let served: Vec<&Service> = builtin.into_iter().chain(&self.services).collect();
        for service in &served {
            service.check().map_err(|reason| ServerError::Service { service: service.name().to_owned(), reason })?;
        }
        // The gate finds each caller's identity: for the policies, and for the traces and the
        // access log even when nothing is enforced. Without policies the only identity there is
        // to find is a client certificate's: the traces and the log want the gate only under
        // mutual TLS (elsewhere it would cost every call its check to find nobody).
        let mutual_tls = self.tls.as_ref().is_some_and(|tls| tls.client_ca.is_some());
        let observes_callers = self.traces.is_some() || self.access_log.is_some();
        let wants_caller = self.authorization.is_some() || (mutual_tls && observes_callers);
        let gate = match (&self.authorization, wants_caller) {
            (Some(authorization), _) => Some(Arc::new(AccessGate::start(authorization)?)),
            (None, true) => Some(Arc::new(AccessGate::start(&Authorization::default())?)),
            (None, false) => None,
        };
        let env = Arc::new(EnvBuilder::new().cq_count(self.completion_queues.max(1)).name_prefix("greeter-cq").build());
        let health = HealthService::default();
        let metrics = self.metrics_addr.as_ref().map(|_| Prometheus::new());
        let mut observers: Vec<Arc<dyn Observer>> = Vec::new();
        if let Some(metrics) = &metrics {
            metrics.gauge(
                "greeter_stock_subscriptions_active",
                "GetStockPrice subscriptions sending ticks right now.",
                ticker.active(),
            );
            metrics.gauge("greeter_chats_open", "Chat calls open right now.", chats.count());
            metrics.gauge(
                "greeter_health_watchers",
                "grpc.health.v1.Health/Watch calls open right now.",
                health.watchers(),
            );
            if let Some(gate) = &gate {
                let help = "Policy files found invalid when read again (the policy in force stayed).";
                metrics.counter("greeter_authz_policy_reload_failures_total", help, gate.reload_failures());
                let help = "Authorization audit lines lost: stdout could not keep up.";
                metrics.counter("greeter_authz_audit_lines_dropped_total", help, gate.audit_lines_dropped());
            }
            observers.push(metrics.clone());
        }
        let trace = self.spans_and_access_log(&env)?;
        if let Some(trace) = &trace {
            if let Some(metrics) = &metrics {
                let help = "Spans sent to the OTLP collector.";
                metrics.counter("greeter_trace_spans_exported_total", help, trace.spans_exported());
                let help = "Spans lost: the export queue was full, or the collector did not take them.";
                metrics.counter("greeter_trace_spans_dropped_total", help, trace.spans_dropped());
                if let Some(dropped) = trace.log_lines_dropped() {
                    let help = "Access log lines lost: the writer could not keep up.";
                    metrics.counter("greeter_access_log_lines_dropped_total", help, dropped);
                }
            }
            observers.push(trace.clone());
        }
        let mut infrastructure = vec![health.service()];
        if self.reflection {
            let described: Vec<&Service> = served.iter().copied().chain(&infrastructure).collect();
            let reflection = reflection_services(&described);
            infrastructure.extend(reflection);
        }
        let registrar = Registrar::new(observers);
        let mut builder =
            self.transport.server_builder(&env, self.reuse_port, self.compression, self.compression_min_len);
        for service in served.iter().copied().chain(&infrastructure) {
            builder = builder.register_service(registrar.register(service));
        }
        if let Some(gate) = gate {
            builder = builder.add_checker(registrar.gatekeeper(gate));
        }
        let mut server = builder.build().map_err(ServerError::Build)?;
        let port = transport::listen(&mut server, &self.addr, self.tls.as_ref())?;
        if let Some(trace) = &trace {
            trace.listening_on(port);
        }
        let metrics_endpoint = match (&self.metrics_addr, metrics) {
            (Some(addr), Some(metrics)) => Some(
                MetricsEndpoint::start(addr, metrics)
                    .map_err(|source| ServerError::Metrics { addr: addr.clone(), source })?,
            ),
            _ => None,
        };
        server.start();
        health.set_serving_status("", ServingStatus::SERVING);
        for service in &served {
            health.set_serving_status(service.name(), ServingStatus::SERVING);
        }
        let scheme = transport::scheme(self.tls.as_ref());
        log::info!("gRPC Server started at {} (port {port}, {scheme})", self.addr);
        Ok(GreeterServer { server, health, port, shutdown: self.shutdown, metrics_endpoint, trace, _env: env })
    }

    /// The spans and the access log, when either is asked for.
    fn spans_and_access_log(&self, env: &Arc<Environment>) -> Result<Option<Arc<SpansAndAccessLog>>, ServerError> {
        if self.traces.is_none() && self.access_log.is_none() {
            return Ok(None);
        }
        let log = match &self.access_log {
            Some(to) => Some(
                AccessLogWriter::start(to)
                    .map_err(|source| ServerError::AccessLog { to: format!("{to:?}"), source })?,
            ),
            None => None,
        };
        let trace = SpansAndAccessLog::start(self.traces.as_ref(), log, &self.addr, env.clone()).map_err(|source| {
            ServerError::TraceExport {
                endpoint: self.traces.as_ref().map(|t| t.endpoint.clone()).unwrap_or_default(),
                source,
            }
        })?;
        Ok(Some(Arc::new(trace)))
    }
}

/// A running server. Dropping it stops it abruptly; call [`GreeterServer::shutdown`] instead.
pub struct GreeterServer {
    server: grpcio::Server,
    health: HealthService,
    port: u16,
    shutdown: GracefulShutdown,
    metrics_endpoint: Option<MetricsEndpoint>,
    trace: Option<Arc<SpansAndAccessLog>>,
    _env: Arc<Environment>,
}

impl GreeterServer {
    /// The port actually bound (the chosen one when the config said port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address `/metrics` is served on, when the config asked for it (the port chosen
    /// when the config said port 0).
    pub fn metrics_local_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics_endpoint.as_ref().map(MetricsEndpoint::local_addr)
    }

    /// Reports `service` ("" for the whole server) as `status` on `grpc.health.v1.Health`, e.g.
    /// NOT_SERVING for maintenance; watchers hear of it at once. A shutdown makes every
    /// service NOT_SERVING for good.
    pub fn set_serving_status(&self, service: &str, status: ServingStatus) {
        self.health.set_serving_status(service, status);
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
        if let Some(trace) = self.trace.take() {
            // Exporting the last spans may wait on the collector: on a thread of its own, so
            // the executor polling us is never blocked.
            let (done, stopped) = futures::channel::oneshot::channel();
            std::thread::spawn(move || {
                trace.stop();
                let _ = done.send(());
            });
            let _ = stopped.await;
        }
        // Last, so a final scrape sees the calls the shutdown ended.
        if let Some(endpoint) = self.metrics_endpoint.take() {
            endpoint.stop();
        }
        log::info!("server stopped after {:?}", outcome.elapsed);
        outcome
    }
}
