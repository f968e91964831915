//! The library's errors. Each says what failed and what to try; binaries print them once.

use grpcio::{ConnectivityState, RpcStatus, RpcStatusCode};

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
    /// A policy or key file is unreadable or invalid: the message names it, its rule and,
    /// where it can, its line.
    #[error("cannot enforce the authorization settings: {0}")]
    Authorization(String),
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// A client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach {addr}: {reason} — is the server running?")]
    Unreachable { addr: String, reason: String },
    /// The channel has no server to call (UNAVAILABLE): for an `xds:` target, its bootstrap is
    /// missing or unusable, its control plane unreachable, or the name unknown to it.
    #[error("cannot find the servers of {addr}: {reason}")]
    Discovery { addr: String, reason: String },
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
                match xds_discovery_failure(status.message()) {
                    Some(reason) => ClientError::Discovery { addr, reason },
                    None => ClientError::Unreachable { addr, reason: unreachable_reason(&status) },
                }
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
            ClientError::Unreachable { .. } | ClientError::Discovery { .. } => Some(RpcStatusCode::UNAVAILABLE),
            ClientError::Status { code, .. } => Some(*code),
            ClientError::Transport { .. } | ClientError::Tls(_) | ClientError::Token { .. } => None,
        }
    }

    /// Says why a call to an `xds:` target missed its deadline when its channel had no
    /// connection ready (`state`) at the end: a call waits for the control plane to name the
    /// servers, and C-core tells of a name the control plane does not know only after 15 s.
    pub(crate) fn on_channel(self, state: ConnectivityState) -> Self {
        match self {
            ClientError::Status { call, addr, code: RpcStatusCode::DEADLINE_EXCEEDED, message }
                if addr.starts_with("xds:") && state != ConnectivityState::GRPC_CHANNEL_READY =>
            {
                let message = format!(
                    "{message}; no server was ready: the xDS control plane has not named one yet (a name it does \
                     not know is reported after 15 s), or the servers it named are still connecting"
                );
                ClientError::Status { call, addr, code: RpcStatusCode::DEADLINE_EXCEEDED, message }
            }
            other => other,
        }
    }
}

/// What an UNAVAILABLE from C-core's xDS resolver means to whoever set up the client, or
/// `None` when the status did not come from there.
fn xds_discovery_failure(message: &str) -> Option<String> {
    if let Some(why) = message.strip_prefix("Failed to create XdsClient: ") {
        return Some(if why.contains("GRPC_XDS_BOOTSTRAP or GRPC_XDS_BOOTSTRAP_CONFIG not defined") {
            "no xDS bootstrap: set GRPC_XDS_BOOTSTRAP to the bootstrap file's path (or GRPC_XDS_BOOTSTRAP_CONFIG \
             to its JSON) in the client's environment before it starts"
                .to_owned()
        } else {
            format!("its xDS bootstrap (GRPC_XDS_BOOTSTRAP or GRPC_XDS_BOOTSTRAP_CONFIG) is unusable: {why}")
        });
    }
    if let Some((_, rest)) = message.split_once("xDS channel for server ") {
        let (server, why) = rest.split_once(": ").unwrap_or((rest, ""));
        let why = if why.contains("Connection refused") { "connection refused" } else { why };
        return Some(format!("the xDS control plane at {server} (named in the bootstrap) is unreachable: {why}"));
    }
    // The listener, route, cluster or endpoints: "greeter: xDS listener resource does not
    // exist", "CDS resource \"greeter\" does not exist", "EDS resource greeter does not exist".
    let resource = ["xDS ", "CDS resource", "EDS resource"].iter().any(|kind| message.contains(kind));
    if resource && message.contains(" does not exist") {
        let what = message.strip_prefix("empty address list: ").unwrap_or(message);
        return Some(format!("the xDS control plane does not know a resource it needs ({what})"));
    }
    None
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
