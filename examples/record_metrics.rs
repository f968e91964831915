//! Level 3, client streaming: `cargo run --example record_metrics -- --values 25.5,26.8,27.1`.

mod cli;

use clap::Parser;
use cli::ClientArgs;

/// Upload readings and print the server's count and average.
#[derive(Parser)]
struct Opts {
    #[command(flatten)]
    client: ClientArgs,
    /// Readings to upload, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "25.5,26.8,27.1", allow_negative_numbers = true)]
    values: Vec<f64>,
}

fn main() -> std::process::ExitCode {
    let opts = Opts::parse();
    let _traces = cli::client_tracing();
    cli::report(run(&opts))
}

fn run(opts: &Opts) -> Result<(), cli::CliError> {
    let summary = opts.client.blocking_client()?.record_metrics(&opts.values)?;
    println!("Statistics: Count {}, Average {:.2}", summary.count, summary.average);
    Ok(())
}
