//! # greeter-gateway
//!
//! gRPC-Web in, gRPC out: browsers reach the greeter server (or any gRPC server) through this
//! gateway, which also serves the web page. gRPC C-core speaks no gRPC-Web and nginx cannot
//! translate it, so the translation is tonic-web's `GrpcWebLayer`, in front of an HTTP/2
//! proxy of ours.
//!
//! ```text
//!  browser ── HTTP/1.1 (or HTTP/2 over TLS) ──► listener (serve.rs: TLS, graceful shutdown)
//!                                                   │
//!                                            route.rs: gRPC-Web and CORS preflights ─┐
//!                                                   │ everything else: static files   │
//!                                                   ▼                                 ▼
//!                                       tower-http CORS ─► tonic-web GrpcWebLayer ─► call.rs
//!                                                                                     │
//!          admission (limits.rs: request size, calls in flight), metrics (metrics.rs) ┤
//!                                                                                     ▼
//!                                      upstream.rs: HTTP/2 connections to the gRPC server
//!                                      body.rs: the reply's body, ended by a gRPC status
//! ```
//!
//! The library is the gateway itself, for the binary (`src/main.rs`) and for tests that
//! start it in-process: [`GatewayConfig::start`] binds and serves on the caller's tokio
//! runtime and gives a [`Gateway`].

mod body;
mod call;
mod cors;
mod limits;
mod metrics;
mod route;
mod serve;
mod status;
mod tls;
mod upstream;

pub use cors::InvalidOrigin;
pub use serve::{Gateway, GatewayConfig, StartError};
pub use tls::{TlsError, TlsFiles};
pub use upstream::UpstreamAddrError;
