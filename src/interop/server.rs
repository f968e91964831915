//! The interop server: [`TestService`] and [`UnimplementedService`] on one port, plaintext
//! or TLS, as upstream's interop servers run (no health, no reflection, no metrics).

use std::sync::Arc;

use grpcio::{EnvBuilder, Environment};

use super::service::{test_service, unimplemented_service};
use crate::call::Registrar;
use crate::compression::Compression;
use crate::error::ServerError;
use crate::tls::ServerTls;
use crate::transport::{self, TransportLimits};

/// Where and how to serve.
#[derive(Clone, Debug)]
pub struct InteropServerConfig {
    /// `[::]:10000` (upstream's default) listens on every interface, IPv6 and IPv4;
    /// `127.0.0.1:0` picks a free loopback port.
    pub addr: String,
    pub tls: Option<ServerTls>,
}

impl InteropServerConfig {
    /// Plaintext on every interface, on `port` (0: any free one).
    pub fn on_port(port: u16) -> Self {
        InteropServerConfig { addr: format!("[::]:{port}"), tls: None }
    }

    /// Binds and starts serving.
    pub fn start(self) -> Result<InteropServer, ServerError> {
        let env = Arc::new(EnvBuilder::new().cq_count(1).name_prefix("interop-cq").build());
        let registrar = Registrar::new(Vec::new());
        // Upstream's cases ask for responses of up to 4 MiB of payload, more than our send
        // limit with the framing; C-core's default is no send limit.
        let limits = TransportLimits { max_send_message_len: usize::MAX, ..TransportLimits::default() };
        let mut server = limits
            .server_builder(&env, false, Compression::None, 0)
            .register_service(registrar.register(&test_service()))
            .register_service(registrar.register(&unimplemented_service()))
            .build()
            .map_err(ServerError::Build)?;
        let port = transport::listen(&mut server, &self.addr, self.tls.as_ref())?;
        server.start();
        let scheme = transport::scheme(self.tls.as_ref());
        log::info!("interop server (grpc.testing.TestService) serving {scheme} on {} (port {port})", self.addr);
        Ok(InteropServer { server, port, _env: env })
    }
}

/// A running interop server; dropping it stops it at once.
pub struct InteropServer {
    server: grpcio::Server,
    port: u16,
    _env: Arc<Environment>,
}

impl InteropServer {
    /// The port actually bound (the chosen one for port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops accepting calls and waits for the running ones to end.
    pub fn shutdown(mut self) {
        let _ = futures::executor::block_on(self.server.shutdown());
    }
}
