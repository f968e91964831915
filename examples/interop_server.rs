//! gRPC's interop server (`grpc.testing.TestService`), with upstream's flags:
//! `cargo run --example interop_server -- --port 10000 [--use_tls --tls_cert_file F --tls_key_file F]`.
//!
//! Listens on every interface and prints `LISTENING <port>` once it serves (with `--port 0`,
//! the port it picked); stops on SIGINT/SIGTERM.

mod cli;

use clap::Parser;
use cli::interop::InteropServerArgs;

/// Serve grpc.testing.TestService for gRPC's official interop clients.
#[derive(Parser)]
struct Opts {
    #[command(flatten)]
    server: InteropServerArgs,
}

fn main() -> std::process::ExitCode {
    cli::init_logging();
    cli::report(run(&Opts::parse()))
}

fn run(opts: &Opts) -> Result<(), Box<dyn std::error::Error>> {
    // Registered before we listen, so a signal sent as soon as the port is printed is ours.
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])?;
    let server = opts.server.config()?.start()?;
    println!("LISTENING {}", server.port());
    signals.forever().next();
    server.shutdown();
    Ok(())
}
