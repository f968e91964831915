//! C-core's side of a server: what one peer may ask of a connection ([`TransportLimits`]), and
//! listening on an address, plaintext or TLS. Shared by the Greeter server and the interop
//! server.

use std::sync::Arc;
use std::time::Duration;

use grpcio::{ChannelBuilder, Environment, ServerBuilder, ServerCredentials};

use crate::compression::Compression;
use crate::error::ServerError;
use crate::tls::{ClientCert, ServerTls};

/// grpc-go's default receive limit, which we also apply to sends.
pub(crate) const DEFAULT_MAX_MESSAGE_LEN: usize = 4 * 1024 * 1024;

/// What one peer may ask of the transport (C-core's settings). Each limit, when hit, answers
/// with a status or a GOAWAY that names it (docs/operations.md, "Limits and bad input"); the defaults suit a
/// public-facing server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportLimits {
    /// Larger incoming messages are refused with RESOURCE_EXHAUSTED (C-core's check).
    pub max_receive_message_len: usize,
    /// Larger outgoing messages fail with RESOURCE_EXHAUSTED.
    pub max_send_message_len: usize,
    /// Concurrent calls per HTTP/2 connection (SETTINGS_MAX_CONCURRENT_STREAMS); a client
    /// queues calls beyond it until one finishes.
    pub max_concurrent_streams: u32,
    /// The server pings a connection with a call open once it has read nothing from it for
    /// this long…
    pub keepalive_time: Duration,
    /// …and closes it when the ping is not answered this fast: the calls of a client that
    /// vanished or hung (its kernel may still acknowledge what we send) end, and what they
    /// hold is freed, within `keepalive_time + keepalive_timeout` of its last byte.
    pub keepalive_timeout: Duration,
    /// Ping enforcement: a ping that arrives less than this after the previous one, with no
    /// HEADERS or DATA sent by the server in between, earns the client a strike; the strike
    /// after `max_ping_strikes` gets the connection GOAWAY `too_many_pings`, which fails
    /// every call on it `UNAVAILABLE`. Below our client's keepalive time (60 s), so that its
    /// pings on a quiet stream are never counted.
    pub min_client_ping_interval: Duration,
    pub max_ping_strikes: u32,
    /// Close every connection after about this long (each gets ±10 % jitter), with a GOAWAY
    /// that lets its calls finish: clients then reconnect and re-resolve the server's name,
    /// which is how replicas added behind a DNS name get traffic. `None`: connections last.
    pub max_connection_age: Option<Duration>,
    /// How long calls may run on a connection past its age before they are cut (`None` with
    /// an age: no bound). Longer than the longest stream you want to keep whole.
    pub max_connection_age_grace: Option<Duration>,
    /// Close a connection that has carried no call for this long. A load-balancing client
    /// that health-checks keeps a Watch open, so its connections never count as idle.
    pub max_connection_idle: Option<Duration>,
}

impl Default for TransportLimits {
    fn default() -> Self {
        TransportLimits {
            max_receive_message_len: DEFAULT_MAX_MESSAGE_LEN,
            max_send_message_len: DEFAULT_MAX_MESSAGE_LEN,
            max_concurrent_streams: 100,
            keepalive_time: Duration::from_secs(2 * 60),
            keepalive_timeout: Duration::from_secs(20),
            min_client_ping_interval: Duration::from_secs(30),
            max_ping_strikes: 2,
            max_connection_age: None,
            max_connection_age_grace: None,
            max_connection_idle: None,
        }
    }
}

impl TransportLimits {
    /// A server builder with these limits, replies compressed as `compression` says (messages
    /// of `min_len` bytes or more), and port sharing as asked.
    pub(crate) fn server_builder(
        &self,
        env: &Arc<Environment>,
        reuse_port: bool,
        compression: Compression,
        min_len: usize,
    ) -> ServerBuilder {
        let mut args = compression.server_args(ChannelBuilder::new(env.clone()), min_len);
        // grpcio 0.13 has no setters for these; C-core reads them as milliseconds.
        for (key, value) in [
            (c"grpc.max_connection_age_ms", self.max_connection_age),
            (c"grpc.max_connection_age_grace_ms", self.max_connection_age_grace),
            (c"grpc.max_connection_idle_ms", self.max_connection_idle),
        ] {
            if let Some(value) = value {
                args = args.raw_cfg_int(key.into(), clamp(value.as_millis()));
            }
        }
        let args = args
            .max_receive_message_len(clamp(self.max_receive_message_len))
            .max_send_message_len(clamp(self.max_send_message_len))
            .max_concurrent_stream(clamp(self.max_concurrent_streams))
            .keepalive_time(self.keepalive_time)
            .keepalive_timeout(self.keepalive_timeout)
            .http2_min_recv_ping_interval_without_data(self.min_client_ping_interval)
            .http2_max_ping_strikes(clamp(self.max_ping_strikes))
            .raw_cfg_int(c"grpc.so_reuseport".into(), i32::from(reuse_port))
            // Channelz counts every call and message in shared atomics for a debug view we do
            // not serve (grpcio has only an in-process JSON API for it, no gRPC service);
            // turning it off saves CPU on every pattern (docs/design.md, "Decisions measured").
            .raw_cfg_int(c"grpc.enable_channelz".into(), 0)
            .build_args();
        ServerBuilder::new(env.clone()).channel_args(args)
    }
}

/// C-core takes limits as `int`; anything larger means "no practical limit".
fn clamp(value: impl TryInto<i32>) -> i32 {
    value.try_into().unwrap_or(i32::MAX)
}

/// Listens on `addr`, with TLS when `tls` says so; the port actually bound.
pub(crate) fn listen(server: &mut grpcio::Server, addr: &str, tls: Option<&ServerTls>) -> Result<u16, ServerError> {
    let credentials = match tls {
        Some(tls) => tls.credentials()?,
        None => ServerCredentials::insecure(),
    };
    server.add_listening_port(addr, credentials).map_err(|source| ServerError::Bind { addr: addr.to_owned(), source })
}

/// What a server's start-up line calls its security.
pub(crate) fn scheme(tls: Option<&ServerTls>) -> &'static str {
    match tls {
        Some(ServerTls { client_ca: Some(_), client_cert: ClientCert::Required, .. }) => "mutual TLS",
        Some(ServerTls { client_ca: Some(_), client_cert: ClientCert::Optional, .. }) => {
            "TLS, client certificates optional"
        }
        Some(_) => "TLS",
        None => "plaintext",
    }
}
