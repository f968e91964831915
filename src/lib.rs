//! # greeter
//!
//! The `greeter.Greeter` service of the Go + Python gRPC tutorial, in Rust on `grpcio`
//! (gRPC C-core), with its four call patterns, health checking, server reflection, TLS,
//! authorization, Prometheus metrics, traces and a graceful shutdown; a client for it; and
//! the means to serve a service of your own beside it the same way ([`Service`]). Neither
//! side depends on an async runtime; both fit into any.
//!
//! ## Layers
//!
//! Each module imports only from the layers below it:
//!
//! ```text
//!  examples/ (the programs)
//!      │
//!  server          ServerConfig → GreeterServer: bind, register, gate, observe, shut down
//!      │   ├─────► telemetry    metrics, traces, access log (call observers), /metrics
//!      │   └─────► authz        who is calling and whether they may (the call gate)
//!      ▼                │
//!  patterns, health, reflection, interop     the services: one async handler per method
//!      │                │
//!      ▼                ▼
//!  call            what a handler gets (Service, Call, Requests, Replies) and how every call
//!      │           runs: the gate, the observers, the driver, the Registrar
//!      ▼
//!  proto, transport, tls, compression, error    generated code; C-core's settings
//!
//!  client          Greeter, blocking::Greeter: on proto, tls, compression and error only
//! ```
//!
//! ## The path of a request
//!
//! ```text
//!  TCP socket ──► gRPC C-core (HTTP/2, TLS, framing, deadlines, flow control, limits)
//!                   │  a finished read is an event on a completion queue
//!                   ▼
//!  completion-queue thread (grpcio; one per queue, `--completion-queues`)
//!                   │  looks the method up in the registered services
//!                   ▼
//!  call: the gate (who calls, may they?) → the observers → the method's closure → its
//!        handler's future, spawned with a driver that writes its replies and ends the call
//!                   ▼
//!  the handler: patterns/say_hello.rs, stock_price.rs, record_metrics.rs, chat.rs
//! ```
//!
//! A handler never blocks: it is an async function, polled on the completion queue the call
//! arrived on; grpcio polls it again whenever C-core or a timer wakes it. There is no async
//! runtime besides grpcio's queues: delays are `futures-timer`. When a call ends, however it
//! ends, the driver drops the handler's future, and whatever the handler held goes with it.
//!
//! ## The path of a call, client side
//!
//! ```text
//!  your task (tokio, smol, futures::executor, …)
//!      │  greeter.say_hello("Ferris").await        client::Greeter
//!      ▼
//!  generated GreeterClient ──► C-core starts the call (a batch on the channel's queue)
//!                                   │  HTTP/2 out and back
//!                                   ▼
//!  the clients' completion-queue thread: the batch is done → wakes your task's Waker
//!      │
//!      ▼
//!  your task is polled again by its own executor and gets the reply
//! ```
//!
//! The caller's executor never waits on I/O: grpcio's thread does, and only wakes it. So
//! [`Greeter`]'s futures and streams run on any executor, and [`blocking::Greeter`] is a
//! `block_on` over them for code that is not async.
//!
//! ## The public API
//!
//! - The client: [`Greeter`], [`GreeterBuilder`], [`LoadBalancing`], [`Keepalive`],
//!   [`blocking::Greeter`], bearer tokens ([`TokenSource`], [`TokenFile`], [`Token`]),
//!   [`ClientError`].
//! - The server: [`ServerConfig`] (with [`GreeterConfig`], [`TransportLimits`],
//!   [`GracefulShutdown`], [`Authorization`]), [`GreeterServer`], [`ShutdownOutcome`],
//!   [`ServerError`].
//! - A service of your own: [`Service`], and what its handlers get: [`Call`], [`Caller`],
//!   [`Requests`], [`Replies`] (`examples/own_service.rs`).
//! - TLS: [`ServerTls`], [`ClientCert`], [`ClientTls`], [`TlsError`]; message [`Compression`],
//!   either side.
//! - Traces and the access log: [`TraceExport`] and [`AccessLog`] in the server's config;
//!   [`ClientTracing`] for a program's client spans.
//! - [`patterns`]: the four handlers; [`proto`]: the generated types.
//! - [`interop`]: gRPC's official interop harness, for its examples and tests.
//! - [`grpcio`], [`protobuf`], [`opentelemetry`], [`opentelemetry_sdk`]: the crates whose types
//!   the API uses, re-exported.

mod authz;
mod call;
mod client;
mod compression;
mod error;
mod health;
pub mod interop;
pub mod patterns;
pub mod proto;
mod reflection;
mod server;
mod telemetry;
mod tls;
mod transport;

pub use call::{Call, Caller, Replies, Requests, Service};
pub use client::{blocking, Greeter, GreeterBuilder, Keepalive, LoadBalancing, Token, TokenFile, TokenSource};
pub use compression::Compression;
pub use error::{ClientError, ServerError};
pub use patterns::config::GreeterConfig;
pub use server::{
    Authorization, GracefulShutdown, GreeterServer, ServerConfig, ShutdownOutcome, TokenCheck, TokenKeys,
};
pub use telemetry::{AccessLog, ClientTracing, TraceExport};
pub use tls::{ClientCert, ClientTls, ServerTls, TlsError};
pub use transport::TransportLimits;

// The crates whose types appear in this crate's public API, so a program uses the very
// versions this crate was built with instead of pinning them by hand.
pub use grpcio;
pub use opentelemetry;
pub use opentelemetry_sdk;
pub use protobuf;
