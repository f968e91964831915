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
//!  server::service: the method's handler, registered with its metrics
//!                   │  wraps grpcio's sinks and streams (metrics::call), hands the call on
//!      ┌────────────┼──────────────────┬───────────────────┐
//!      ▼            ▼                  ▼                   ▼
//!  say_hello   stock_price         record_metrics         chat
//!  (unary)     (server stream)     (client stream)        (bidi stream)
//!  └──────────────────── patterns/, one file each ─────────────────────┘
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
//! ```text
//!  src/
//!  ├─ patterns/     the tutorial's four levels: say_hello, stock_price (StockTicker),
//!  │                record_metrics (MetricsAccumulator), chat
//!  ├─ server/       ServerConfig → GreeterServer: bind, limits, TLS, start (mod.rs);
//!  │                service.rs registers every method with its handler and metrics;
//!  │                health.rs, reflection.rs; shutdown.rs (GracefulShutdown);
//!  │                send_batched.rs: Chat's replies batched without making a client wait
//!  ├─ metrics/      go-grpc-prometheus's series, the call wrappers, the /metrics endpoint
//!  ├─ client/       async Greeter, blocking::Greeter, round_robin balancing
//!  ├─ interop/      gRPC's official interop cases: grpc.testing.TestService, server and client
//!  ├─ proto.rs      the code build.rs generates from proto/
//!  ├─ tls.rs        certificates for both sides (cargo feature `tls`)
//!  ├─ heap.rs       malloc's in-use and free bytes (leak or kept memory?)
//!  ├─ cli.rs        the flags the examples share
//!  └─ error.rs      ServerError, ClientError
//! ```
//!
//! - [`patterns`]: what the server computes, one file per call pattern.
//! - [`server`]: everything around them; [`server::service`] is the one place where calls
//!   are registered and wrapped in their [`metrics`].
//! - [`client`]: the tutorial's four calls from Rust, async ([`Greeter`]) and blocking
//!   ([`blocking::Greeter`]); [`cli`]: flags shared by the examples; [`tls`]: TLS and mutual TLS.

pub mod cli;
pub mod client;
pub mod error;
pub mod heap;
pub mod interop;
pub mod metrics;
pub mod patterns;
pub mod proto;
pub mod server;
pub mod tls;

pub use client::{blocking, Greeter, GreeterBuilder, LoadBalancing};
pub use error::{ClientError, ServerError};
pub use patterns::stock_price::{StockTicker, TickerConfig};
pub use server::shutdown::{GracefulShutdown, ShutdownOutcome};
pub use server::{GreeterServer, Limits, ServerConfig};
