//! # greeter
//!
//! The `greeter.Greeter` service of the Go + Python gRPC tutorial, in Rust on `grpcio`
//! (gRPC C-core), with its four call patterns, health checking, server reflection and a graceful
//! shutdown, and a client for it. Neither side depends on an async runtime; both fit into any.
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
//!  service::Registrar's handler for the method: wraps grpcio's sinks and streams in the
//!                   │  call's metrics (metrics::call) and hands the call to its pattern's file
//!      ┌────────────┼──────────────────┬───────────────────┐
//!      ▼            ▼                  ▼                   ▼
//!  say_hello   stock_price         record_metrics         chat
//!  (unary)     (server stream)     (client stream)        (bidi stream)
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
//! ## The modules
//!
//! - [`proto`]: the code `build.rs` generates from `proto/greeter.proto`.
//! - [`say_hello`], [`stock_price`], [`record_metrics`], [`chat`]: one file per pattern.
//! - [`service`]: registers every method (Greeter, health, reflection) with its handler, each
//!   call wrapped in its [`metrics`] (go-grpc-prometheus's names, `/metrics` over HTTP).
//! - [`server`]: bind, limits, Greeter + [`health`] + [`reflection`] registration;
//!   [`shutdown`]: the graceful stop.
//! - [`tls`]: TLS and mutual TLS (cargo feature `tls`).
//! - [`client`]: the tutorial's four calls from Rust, async ([`Greeter`]) and blocking
//!   ([`blocking::Greeter`]); [`cli`]: flags shared by the examples.

pub mod chat;
pub mod cli;
pub mod client;
pub mod error;
pub mod health;
pub mod metrics;
pub mod proto;
pub mod record_metrics;
pub mod reflection;
pub mod say_hello;
pub mod server;
pub mod service;
pub mod shutdown;
pub mod stock_price;
pub mod tls;

pub use client::{blocking, Greeter, GreeterBuilder, LoadBalancing};
pub use error::{ClientError, ServerError};
pub use server::{GreeterServer, Limits, ServerConfig};
pub use shutdown::{GracefulShutdown, ShutdownOutcome};
pub use stock_price::{StockTicker, TickerConfig};
