//! The Greeter server: `cargo run --release --example server` listens on port 50051.
//!
//! SIGINT (Ctrl-C) or SIGTERM starts a graceful shutdown; the process exits 0 once stopped.

mod cli;

use std::process::ExitCode;

use clap::Parser;
use cli::ServerArgs;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Serve greeter.Greeter, with grpc.health.v1.Health and server reflection.
#[derive(Parser)]
#[command(version)]
struct Opts {
    #[command(flatten)]
    server: ServerArgs,
}

fn main() -> ExitCode {
    let opts = Opts::parse();
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
