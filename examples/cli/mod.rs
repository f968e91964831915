//! Command-line pieces the examples share: flags, logging, and reporting an error once.
//! Each example takes what it needs (`mod cli;`); the library itself has no command line.
#![allow(dead_code)]

pub mod interop;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use greeter::{
    blocking, AccessLog, Authorization, ClientCert, ClientError, ClientTls, ClientTracing, Compression,
    GracefulShutdown, Greeter, GreeterConfig, LoadBalancing, ServerConfig, ServerTls, TlsError, TokenCheck, TokenFile,
    TokenKeys, TraceExport, TransportLimits,
};

/// Flags every client example takes.
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// Server address: host:port, or any gRPC target (ipv4:a:p,b:p,… ipv6:… dns:///host:port, or
    /// xds:///NAME: the servers a service mesh's control plane names, found through the xDS
    /// bootstrap in GRPC_XDS_BOOTSTRAP or GRPC_XDS_BOOTSTRAP_CONFIG).
    #[arg(long, default_value = "localhost:50051")]
    pub addr: String,
    /// How calls are spread over the addresses: pick_first, or round_robin (health-checked,
    /// SayHello retried on UNAVAILABLE).
    #[arg(long, default_value = "pick_first")]
    pub lb: LoadBalancing,
    /// How long each call may take (e.g. 500ms, 10s): its deadline is this long after it starts.
    #[arg(long, visible_alias = "deadline", default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Use TLS, trusting the server certificate this CA (PEM) signed.
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM), for servers that require mutual TLS.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Client key (PEM), with --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Name to expect in the server certificate instead of the host in --addr.
    #[arg(long)]
    pub tls_server_name: Option<String>,
    /// Compress requests of 1 KiB or more: gzip, deflate or none (the server must accept it).
    #[arg(long, default_value = "none")]
    pub compression: Compression,
    /// Send this bearer token with every call, for servers that check tokens (a token sent
    /// without --tls-ca travels in plaintext).
    #[arg(long, conflicts_with = "token_file")]
    pub token: Option<String>,
    /// Send the bearer token this file holds, read again as it nears its expiry (a
    /// Kubernetes projected service-account token, for instance).
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
}

impl ClientArgs {
    /// The blocking client for `--addr`, over TLS when `--tls-ca` is given.
    pub fn blocking_client(&self) -> Result<blocking::Greeter, CliError> {
        self.client().map(blocking::Greeter::from)
    }

    /// The async client for `--addr`, over TLS when `--tls-ca` is given.
    pub fn client(&self) -> Result<Greeter, CliError> {
        let mut builder =
            Greeter::builder(&self.addr, self.timeout).load_balancing(self.lb).compression(self.compression);
        if let Some(token) = &self.token {
            builder = builder.bearer_token(token.clone());
        }
        if let Some(path) = &self.token_file {
            builder = builder.token_source(TokenFile::new(path));
        }
        let Some(ca) = &self.tls_ca else {
            if self.tls_cert.is_some() || self.tls_server_name.is_some() {
                return Err(CliError::Needs("--tls-cert and --tls-server-name", "--tls-ca"));
            }
            return Ok(builder.build()?);
        };
        let tls =
            ClientTls::from_files(ca, self.tls_cert.as_deref(), self.tls_key.as_deref(), self.tls_server_name.clone())?;
        Ok(builder.tls(tls).build()?)
    }
}

/// A command line that cannot work, or what it asked for failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0} needs {1}")]
    Needs(&'static str, &'static str),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// The server example's flags; defaults are the tutorial's server.
#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// Address to listen on; `[::]` listens on IPv6 and IPv4 alike.
    #[arg(long, default_value = "[::]:50051")]
    pub addr: String,
    /// Completion queues (grpcio threads that poll for I/O and run the handlers).
    #[arg(long, default_value_t = 1)]
    pub completion_queues: usize,
    /// Price ticks sent per GetStockPrice subscription.
    #[arg(long, default_value_t = 5)]
    pub stock_ticks: u32,
    /// Pause between two ticks (e.g. 500ms; 0s sends them back to back).
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    pub stock_interval: Duration,
    /// On SIGINT/SIGTERM, how long in-flight calls may finish before they are cancelled.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub grace: Duration,
    /// On SIGINT/SIGTERM with health watchers (load-balancing clients), how long to keep
    /// accepting calls after reporting NOT_SERVING, so the watchers can move away first.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub drain: Duration,
    /// Share the port with other processes that set it too (SO_REUSEPORT); without it,
    /// starting on a port in use fails.
    #[arg(long)]
    pub reuse_port: bool,
    /// Serve Prometheus metrics at http://HOST:PORT/metrics (off by default).
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_addr: Option<String>,
    /// Trace every call to this OTLP/gRPC collector (http://HOST:4317, https:// for TLS);
    /// default: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT, else off.
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// Log every finished call, one line each, in this format (json).
    #[arg(long, value_name = "FORMAT", value_parser = ["json"])]
    pub access_log: Option<String>,
    /// Write the access log to this file (appended to) instead of stderr.
    #[arg(long, value_name = "PATH", requires = "access_log")]
    pub access_log_file: Option<PathBuf>,
    /// Do not serve gRPC reflection (grpcurl and similar tools then need the .proto files).
    #[arg(long)]
    pub no_reflection: bool,
    /// Compress replies of --compression-min-size bytes or more: gzip, deflate or none; a
    /// client that does not accept the algorithm gets the other one it accepts, or none.
    #[arg(long, default_value = "none")]
    pub compression: Compression,
    /// The least reply size, in bytes, worth compressing.
    #[arg(long, default_value_t = ServerConfig::default().compression_min_len)]
    pub compression_min_size: usize,
    /// Serve TLS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Check client certificates against this CA (PEM): mutual TLS.
    #[arg(long, requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// With --tls-client-ca: whether clients must present a certificate (required), or may
    /// call without one (optional: token-only callers share the port).
    #[arg(long, default_value = "required", requires = "tls_client_ca")]
    pub tls_client_cert: ClientCert,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub authz: AuthzArgs,
}

/// Who may call what (docs/security.md); see `greeter::Authorization`.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Authorization")]
pub struct AuthzArgs {
    /// A gRFC A43 policy (JSON, the file grpc-go's authz reads): who may call what, by TLS
    /// peer identity; anything not allowed is PERMISSION_DENIED.
    #[arg(long, value_name = "FILE")]
    pub authz_policy: Option<PathBuf>,
    /// A policy in the same format whose principals are bearer tokens' "iss/sub".
    #[arg(long, value_name = "FILE", requires = "jwt_issuer")]
    pub authz_token_policy: Option<PathBuf>,
    /// How often the policy files (and --jwt-jwks) are read again.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub authz_policy_refresh: Duration,
    /// Check bearer tokens: the issuer (iss) they must name.
    #[arg(long, requires_all = ["jwt_audience"])]
    pub jwt_issuer: Option<String>,
    /// The audience (aud) bearer tokens must include.
    #[arg(long, requires = "jwt_issuer")]
    pub jwt_audience: Option<String>,
    /// The keys that verify tokens: a JWKS file, read again every --authz-policy-refresh.
    #[arg(long, value_name = "FILE", conflicts_with = "jwt_key")]
    pub jwt_jwks: Option<PathBuf>,
    /// A public key (PEM: RSA, EC, Ed25519) that verifies tokens; repeat for several.
    #[arg(long, value_name = "FILE")]
    pub jwt_key: Vec<PathBuf>,
    /// Refuse calls that carry no bearer token (UNAUTHENTICATED); without it, such a call
    /// goes on without a token principal, for --authz-token-policy to judge.
    #[arg(long, requires = "jwt_issuer")]
    pub require_token: bool,
}

impl AuthzArgs {
    /// The settings, when any flag asks for them.
    pub fn authorization(&self) -> Result<Option<Authorization>, CliError> {
        let tokens = match (&self.jwt_issuer, &self.jwt_audience) {
            (Some(issuer), Some(audience)) => {
                let keys = match (&self.jwt_jwks, self.jwt_key.is_empty()) {
                    (Some(jwks), _) => TokenKeys::Jwks(jwks.clone()),
                    (None, false) => TokenKeys::Pem(self.jwt_key.clone()),
                    (None, true) => return Err(CliError::Needs("--jwt-issuer", "--jwt-jwks or --jwt-key")),
                };
                Some(TokenCheck {
                    issuer: issuer.clone(),
                    audience: audience.clone(),
                    keys,
                    required: self.require_token,
                })
            }
            _ => None,
        };
        if self.authz_policy.is_none() && self.authz_token_policy.is_none() && tokens.is_none() {
            return Ok(None);
        }
        Ok(Some(Authorization {
            policy: self.authz_policy.clone(),
            token_policy: self.authz_token_policy.clone(),
            refresh: self.authz_policy_refresh,
            tokens,
        }))
    }
}

/// The server's limits; see `greeter::TransportLimits` and `greeter::GreeterConfig` for
/// what each one answers when hit.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Limits")]
pub struct LimitArgs {
    /// Largest message accepted, in bytes (larger: RESOURCE_EXHAUSTED).
    #[arg(long, default_value_t = TransportLimits::default().max_receive_message_len)]
    pub max_receive_message_size: usize,
    /// Largest message sent, in bytes (larger: RESOURCE_EXHAUSTED).
    #[arg(long, default_value_t = TransportLimits::default().max_send_message_len)]
    pub max_send_message_size: usize,
    /// Concurrent calls per connection; a client queues calls beyond it.
    #[arg(long, default_value_t = TransportLimits::default().max_concurrent_streams)]
    pub max_concurrent_streams: u32,
    /// Ping a connection with calls open after this long without reading from it, to find
    /// clients that vanished or hung.
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    pub keepalive_time: Duration,
    /// Close a connection whose keepalive ping is not answered within this (its calls end).
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub keepalive_timeout: Duration,
    /// Ping enforcement: clients pinging more often without data get strikes...
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub min_client_ping_interval: Duration,
    /// ...and after this many strikes, GOAWAY "too_many_pings".
    #[arg(long, default_value_t = TransportLimits::default().max_ping_strikes)]
    pub max_ping_strikes: u32,
    /// Close each connection after about this long (±10 %), letting its calls finish, so that
    /// clients reconnect and re-resolve the server's name (DNS discovery of new replicas).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub max_connection_age: Option<Duration>,
    /// Calls still running this long after a connection's age are cut (default: no bound).
    #[arg(long, requires = "max_connection_age", value_parser = humantime::parse_duration)]
    pub max_connection_age_grace: Option<Duration>,
    /// Close a connection that has carried no call for this long.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub max_connection_idle: Option<Duration>,
    /// Longest Chat message, in bytes (longer: INVALID_ARGUMENT).
    #[arg(long, default_value_t = GreeterConfig::default().max_chat_message_len)]
    pub max_chat_message_len: usize,
    /// Concurrent GetStockPrice subscriptions, server-wide (more: RESOURCE_EXHAUSTED).
    #[arg(long, default_value_t = GreeterConfig::default().max_subscriptions)]
    pub max_subscriptions: u64,
}

impl LimitArgs {
    pub fn transport(&self) -> TransportLimits {
        TransportLimits {
            max_receive_message_len: self.max_receive_message_size,
            max_send_message_len: self.max_send_message_size,
            max_concurrent_streams: self.max_concurrent_streams,
            keepalive_time: self.keepalive_time,
            keepalive_timeout: self.keepalive_timeout,
            min_client_ping_interval: self.min_client_ping_interval,
            max_ping_strikes: self.max_ping_strikes,
            max_connection_age: self.max_connection_age,
            max_connection_age_grace: self.max_connection_age_grace,
            max_connection_idle: self.max_connection_idle,
        }
    }
}

impl ServerArgs {
    /// The server's config; fails only when a TLS file cannot be read or the flags do not
    /// go together.
    pub fn config(&self) -> Result<ServerConfig, CliError> {
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(ServerTls {
                client_cert: self.tls_client_cert,
                ..ServerTls::from_files(cert, key, self.tls_client_ca.as_deref())?
            }),
            _ => None,
        };
        Ok(ServerConfig {
            addr: self.addr.clone(),
            completion_queues: self.completion_queues,
            services: Vec::new(),
            greeter: GreeterConfig {
                stock_ticks: self.stock_ticks,
                stock_interval: self.stock_interval,
                max_subscriptions: self.limits.max_subscriptions,
                max_chat_message_len: self.limits.max_chat_message_len,
            },
            transport: self.limits.transport(),
            shutdown: GracefulShutdown { grace: self.grace, drain: self.drain },
            reflection: !self.no_reflection,
            compression: self.compression,
            compression_min_len: self.compression_min_size,
            reuse_port: self.reuse_port,
            metrics_addr: self.metrics_addr.clone(),
            traces: match &self.otlp_endpoint {
                Some(url) => Some(TraceExport::to(url, "greeter")),
                None => TraceExport::from_env("greeter"),
            },
            access_log: self.access_log.as_ref().map(|_| match &self.access_log_file {
                Some(path) => AccessLog::File(path.clone()),
                None => AccessLog::Stderr,
            }),
            tls,
            authorization: self.authz.authorization()?,
        })
    }
}

/// Logs go to stderr at `info` unless `RUST_LOG` says otherwise (`RUST_LOG=greeter=debug`
/// shows every metric and chat message, as the tutorial's server does). gRPC C-core's own
/// log lines are routed into the same logger.
pub fn init_logging() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    grpcio::redirect_log();
}

/// A client program's spans, when OpenTelemetry's variables name a collector
/// (`OTEL_EXPORTER_OTLP_ENDPOINT`, …); keep it alive while the program makes calls.
pub fn client_tracing() -> Option<ClientTracing> {
    let export = TraceExport::from_env("greeter-client")?;
    ClientTracing::install_global(&export)
        .map_err(|e| eprintln!("warning: traces not exported to {}: {e}", export.endpoint))
        .ok()
}

/// Runs an example's body and reports its error, if any, as one line on stderr.
pub fn report<E: std::fmt::Display>(result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
