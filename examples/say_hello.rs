//! Level 1, unary: `cargo run --example say_hello -- --name Ferris`.

mod cli;

use clap::Parser;
use cli::ClientArgs;

/// Call SayHello once and print the greeting.
#[derive(Parser)]
struct Opts {
    #[command(flatten)]
    client: ClientArgs,
    /// Who to greet.
    #[arg(long, default_value = "Rust Client")]
    name: String,
}

fn main() -> std::process::ExitCode {
    let opts = Opts::parse();
    let _traces = cli::client_tracing();
    cli::report(run(&opts))
}

fn run(opts: &Opts) -> Result<(), cli::CliError> {
    let greeting = opts.client.blocking_client()?.say_hello(&opts.name)?;
    println!("Response: {greeting}");
    Ok(())
}
