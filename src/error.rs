//! The library's errors. Each says what failed and what to try; binaries print them once.

use grpcio::{RpcStatus, RpcStatusCode};

use crate::tls::TlsError;

/// Starting a server failed.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source} (is the port already in use, or the address mistyped?)")]
    Bind { addr: String, source: grpcio::Error },
    #[error("cannot serve {service}: {reason}")]
    Service { service: String, reason: String },
    #[error("cannot build the gRPC server: {0}")]
    Build(#[source] grpcio::Error),
    #[error("cannot serve metrics on {addr}: {source}")]
    Metrics { addr: String, source: std::io::Error },
    #[error("cannot export traces to {endpoint}: {source}")]
    TraceExport { endpoint: String, source: std::io::Error },
    #[error("cannot write the access log to {to}: {source}")]
    AccessLog { to: String, source: std::io::Error },
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// A client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach {addr}: {reason} — is the server running?")]
    Unreachable { addr: String, reason: String },
    #[error("{call} to {addr} failed: {code:?}: {message}")]
    Status { call: &'static str, addr: String, code: RpcStatusCode, message: String },
    #[error("cannot get a bearer token for calls to {target}: {reason}")]
    Token { target: String, reason: String },
    /// Boxed: `grpcio::Error` is large, and every client `Result` would carry its size.
    #[error("{call} to {addr} failed: {source}")]
    Transport { call: &'static str, addr: String, source: Box<grpcio::Error> },
    #[error(transparent)]
    Tls(#[from] TlsError),
}

impl ClientError {
    /// Classifies a grpcio error from `call` to `addr`: UNAVAILABLE means we never got through.
    /// For calls made on [`Greeter::channel`](crate::Greeter::channel) (health, reflection), so
    /// that they fail the way the Greeter calls do.
    pub fn from_grpc(call: &'static str, addr: &str, err: grpcio::Error) -> Self {
        let addr = addr.to_owned();
        match err {
            grpcio::Error::RpcFailure(status) if status.code() == RpcStatusCode::UNAVAILABLE => {
                ClientError::Unreachable { addr, reason: unreachable_reason(&status) }
            }
            grpcio::Error::RpcFailure(status) => {
                ClientError::Status { call, addr, code: status.code(), message: status.message().to_owned() }
            }
            source => ClientError::Transport { call, addr, source: Box::new(source) },
        }
    }

    /// The gRPC status code, when the server (or C-core on its behalf) gave one.
    pub fn code(&self) -> Option<RpcStatusCode> {
        match self {
            ClientError::Unreachable { .. } => Some(RpcStatusCode::UNAVAILABLE),
            ClientError::Status { code, .. } => Some(*code),
            ClientError::Transport { .. } | ClientError::Tls(_) | ClientError::Token { .. } => None,
        }
    }
}

/// C-core's UNAVAILABLE text is long ("failed to connect to all addresses; last error: …");
/// keep the part a person acts on.
fn unreachable_reason(status: &RpcStatus) -> String {
    let msg = status.message();
    if msg.contains("Connection refused") {
        "connection refused".to_owned()
    } else if msg.is_empty() {
        "unavailable".to_owned()
    } else {
        msg.to_owned()
    }
}
