//! # greeter
//!
//! The `greeter.Greeter` service of the Go + Python gRPC tutorial, in Rust on `grpcio`
//! (gRPC C-core), with its four call patterns, health checking, server reflection, Prometheus
//! metrics and a graceful shutdown, and a client for it. Neither side depends on an async
//! runtime; both fit into any.
//!
//! ## Layers
//!
//! Each module imports only from the layers below it:
//!
//! ```text
//!  examples/ (the programs)
//!      │
//!  server            ServerConfig → GreeterServer: bind, register, observe, shut down
//!      │   └───────► telemetry    metrics, traces, access log (call observers), /metrics
//!      ▼                 │
//!  patterns, health, reflection, interop        the services: what each call computes
//!      │                 │
//!      ▼                 ▼
//!  call              the server side of one call: request stream, reply sinks, the
//!      │             observer hooks, the Registrar every method goes through
//!      ▼
//!  proto, transport, tls, compression, error    generated code; C-core's settings
//!
//!  client            Greeter, blocking::Greeter: on proto, tls, compression and error only
//! ```
//!
//! ## The path of a request
//!
//! ```text
//!  TCP socket ──► gRPC C-core (HTTP/2, framing, deadlines, flow control, limits)
//!                   │  a finished read is an event on a completion queue
//!                   ▼
//!  completion-queue thread (grpcio; one per queue, `--completion-queues`)
//!                   │  looks the method up in the registered services
//!                   ▼
//!  call::Registrar's wrapper: the request stream and reply sink, told to the observers
//!                   ▼
//!  the method's handler: patterns/say_hello.rs, stock_price.rs, record_metrics.rs, chat.rs
//! ```
//!
//! A handler never blocks. It wraps its work in a future and spawns it on the completion
//! queue the call arrived on (`RpcContext::spawn`); grpcio polls that future again whenever
//! C-core or a timer wakes it. There is no async runtime besides grpcio's queues: delays are
//! `futures-timer`.
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
//!  the client's completion-queue thread: the batch is done → wakes your task's Waker
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
//!   [`blocking::Greeter`], [`ClientError`].
//! - The server: [`ServerConfig`] (with [`GreeterConfig`], [`TransportLimits`],
//!   [`GracefulShutdown`]), [`GreeterServer`], [`ShutdownOutcome`], [`ServerError`].
//! - TLS: [`ServerTls`], [`ClientTls`], [`TlsError`]; message [`Compression`], either side.
//! - Traces and the access log: [`TraceExport`] and [`AccessLog`] in the server's config;
//!   [`ClientTracing`] for a program's client spans.
//! - [`patterns`]: the logic of the four calls, for a reader; [`proto`]: the generated types.
//! - [`interop`]: gRPC's official interop harness, for its examples and tests.

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

pub use client::{blocking, round_robin_service_config, Greeter, GreeterBuilder, Keepalive, LoadBalancing};
pub use compression::Compression;
pub use error::{ClientError, ServerError};
pub use patterns::GreeterConfig;
pub use server::{GracefulShutdown, GreeterServer, ServerConfig, ShutdownOutcome};
pub use telemetry::{AccessLog, ClientTracing, TraceExport};
pub use tls::{ClientTls, ServerTls, TlsError};
pub use transport::TransportLimits;
