//! Level 2, server streaming: `cargo run --example stock_price -- --symbol TSMC`.

mod cli;

use clap::Parser;
use cli::ClientArgs;

/// Subscribe to a symbol and print each price tick as it arrives.
#[derive(Parser)]
struct Opts {
    #[command(flatten)]
    client: ClientArgs,
    /// Ticker symbol.
    #[arg(long, default_value = "TSMC")]
    symbol: String,
}

fn main() -> std::process::ExitCode {
    let opts = Opts::parse();
    let _traces = cli::client_tracing();
    cli::report(run(&opts))
}

fn run(opts: &Opts) -> Result<(), cli::CliError> {
    opts.client
        .blocking_client()?
        .stock_prices(&opts.symbol, |tick| println!("Stock: {}, Price: {:.2}", tick.symbol, tick.price))?;
    Ok(())
}
