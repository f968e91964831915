//! gRPC's official interop test cases (upstream's `doc/interop-test-descriptions.md`) on
//! grpcio: the `grpc.testing` server and client, so this engine can be checked against every
//! other gRPC implementation's interop client and server.
//!
//! A test harness, not the Greeter service's API: it is public for its two examples
//! (`interop_server`, `interop_client`, which take upstream's flags) and for
//! `tests/official_interop.rs`. It lives in this crate because its TestService is registered
//! through the same call layer as every other service.
//!
//! ```text
//!  interop/
//!  ├─ service.rs   TestService and UnimplementedService, registered through the call layer
//!  ├─ server.rs    InteropServer: TestService + UnimplementedService on one port (TLS optional)
//!  ├─ client.rs    InteropClient: every core case, the four compression cases, the two soaks
//!  └─ error.rs     InteropError: which case, which check
//! ```
//!
//! Two engine limits of grpcio 0.13 block half of `custom_metadata`: its server cannot send
//! custom trailing metadata ([`service::TRAILING_METADATA_LIMIT`]) and its client cannot
//! read the trailing metadata of a streaming call ([`client::STREAM_TRAILERS_LIMIT`]). Two
//! more meet the compression cases: the server cannot tell whether a request arrived
//! compressed ([`service::COMPRESSION_LIMIT`]), so it fails `client_compressed_*`; the client
//! cannot tell whether a response did ([`client::RESPONSE_COMPRESSION_LIMIT`]), so it checks
//! the payloads of `server_compressed_*` only. The server compresses as those cases ask.

mod client;
mod error;
mod server;
mod service;

use std::fmt;
use std::str::FromStr;

pub use client::{InteropClient, SoakConfig, RESPONSE_COMPRESSION_LIMIT, STREAM_TRAILERS_LIMIT};
pub use error::InteropError;
pub use server::{InteropServer, InteropServerConfig};
pub use service::{COMPRESSION_LIMIT, TRAILING_METADATA_LIMIT};

/// One interop test case, by its upstream name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Case {
    EmptyUnary,
    LargeUnary,
    ClientStreaming,
    ServerStreaming,
    PingPong,
    EmptyStream,
    TimeoutOnSleepingServer,
    CancelAfterBegin,
    CancelAfterFirstResponse,
    StatusCodeAndMessage,
    SpecialStatusMessage,
    CustomMetadata,
    UnimplementedMethod,
    UnimplementedService,
    ClientCompressedUnary,
    ClientCompressedStreaming,
    ServerCompressedUnary,
    ServerCompressedStreaming,
    RpcSoak,
    ChannelSoak,
}

impl Case {
    /// Every case this client runs: the fourteen core ones, the four of compression, then
    /// the two soaks.
    pub const ALL: [Case; 20] = [
        Case::EmptyUnary,
        Case::LargeUnary,
        Case::ClientStreaming,
        Case::ServerStreaming,
        Case::PingPong,
        Case::EmptyStream,
        Case::TimeoutOnSleepingServer,
        Case::CancelAfterBegin,
        Case::CancelAfterFirstResponse,
        Case::StatusCodeAndMessage,
        Case::SpecialStatusMessage,
        Case::CustomMetadata,
        Case::UnimplementedMethod,
        Case::UnimplementedService,
        Case::ClientCompressedUnary,
        Case::ClientCompressedStreaming,
        Case::ServerCompressedUnary,
        Case::ServerCompressedStreaming,
        Case::RpcSoak,
        Case::ChannelSoak,
    ];

    /// The fourteen core cases: what every implementation's client and server must pass.
    pub const CORE: &[Case] = Case::ALL.split_at(14).0;

    /// The upstream name, as `--test_case` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Case::EmptyUnary => "empty_unary",
            Case::LargeUnary => "large_unary",
            Case::ClientStreaming => "client_streaming",
            Case::ServerStreaming => "server_streaming",
            Case::PingPong => "ping_pong",
            Case::EmptyStream => "empty_stream",
            Case::TimeoutOnSleepingServer => "timeout_on_sleeping_server",
            Case::CancelAfterBegin => "cancel_after_begin",
            Case::CancelAfterFirstResponse => "cancel_after_first_response",
            Case::StatusCodeAndMessage => "status_code_and_message",
            Case::SpecialStatusMessage => "special_status_message",
            Case::CustomMetadata => "custom_metadata",
            Case::UnimplementedMethod => "unimplemented_method",
            Case::UnimplementedService => "unimplemented_service",
            Case::ClientCompressedUnary => "client_compressed_unary",
            Case::ClientCompressedStreaming => "client_compressed_streaming",
            Case::ServerCompressedUnary => "server_compressed_unary",
            Case::ServerCompressedStreaming => "server_compressed_streaming",
            Case::RpcSoak => "rpc_soak",
            Case::ChannelSoak => "channel_soak",
        }
    }
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Case {
    type Err = InteropError;

    fn from_str(name: &str) -> Result<Case, InteropError> {
        Case::ALL.into_iter().find(|c| c.name() == name).ok_or_else(|| InteropError::UnknownCase(name.to_owned()))
    }
}

/// What `--test_case` names: one case, or `all` of them in order.
pub fn cases(test_case: &str) -> Result<Vec<Case>, InteropError> {
    if test_case == "all" {
        Ok(Case::ALL.to_vec())
    } else {
        Ok(vec![test_case.parse()?])
    }
}
