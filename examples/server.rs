//! The Greeter server: `cargo run --release --example server` listens on port 50051.
//!
//! SIGINT (Ctrl-C) or SIGTERM starts a graceful shutdown; the process exits 0 once stopped.
//! `--health-check` asks a running server instead (a container's health check).

mod cli;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use cli::ServerArgs;
use greeter::proto::health::{health_check_response::ServingStatus, HealthCheckRequest, HealthClient};
use grpcio::{CallOption, ChannelBuilder, EnvBuilder};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Serve greeter.Greeter, with grpc.health.v1.Health and server reflection.
#[derive(Parser)]
#[command(version)]
struct Opts {
    /// Do not serve: ask the server at --addr (on loopback when it is a wildcard) whether
    /// greeter.Greeter is SERVING, over plaintext, and exit 0 if it is, 1 if not.
    #[arg(long)]
    health_check: bool,
    #[command(flatten)]
    server: ServerArgs,
}

fn main() -> ExitCode {
    let opts = Opts::parse();
    if opts.health_check {
        return cli::report(health_check(&opts.server));
    }
    cli::init_logging();
    cli::report(run(opts))
}

fn run(opts: Opts) -> Result<(), Box<dyn std::error::Error>> {
    // Signals are registered before we listen, so none arriving after start-up is lost.
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    let server = opts.server.config()?.start()?;
    if let Some(signal) = signals.forever().next() {
        log::info!("signal {signal} received: shutting down (grace {:?})", opts.server.grace);
    }
    server.shutdown();
    Ok(())
}

/// One `grpc.health.v1.Health/Check` of greeter.Greeter, the service the Kubernetes probe
/// checks, answered within a deadline shorter than a container runtime's usual timeout
/// (Docker's and Podman's health checks give a command 30 s by default).
fn health_check(args: &ServerArgs) -> Result<(), String> {
    if args.tls_cert.is_some() {
        return Err("--health-check speaks plaintext: probe a TLS server with grpc_health_probe -tls".into());
    }
    let addr = match args.addr.rsplit_once(':') {
        Some(("[::]" | "0.0.0.0" | "", port)) => format!("127.0.0.1:{port}"),
        _ => args.addr.clone(),
    };
    let env = Arc::new(EnvBuilder::new().cq_count(1).build());
    let health = HealthClient::new(ChannelBuilder::new(env).connect(&addr));
    let request = HealthCheckRequest { service: greeter::proto::GREETER_SERVICE.into(), ..Default::default() };
    let reply = health
        .check_opt(&request, CallOption::default().timeout(Duration::from_secs(3)))
        .map_err(|e| format!("health check of {addr}: {e}"))?;
    match reply.status.enum_value() {
        Ok(ServingStatus::SERVING) => {
            println!("{}: SERVING", request.service);
            Ok(())
        }
        Ok(status) => Err(format!("{} at {addr} is {status:?}, not SERVING", request.service)),
        Err(unknown) => Err(format!("{} at {addr} has a status unknown to grpc.health.v1: {unknown}", request.service)),
    }
}
