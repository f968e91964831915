//! All four patterns in order, printing what the tutorial's Go client prints:
//! `cargo run --example client`.

mod cli;

use clap::Parser;
use cli::ClientArgs;

/// Run the tutorial's four calls against a Greeter server.
#[derive(Parser)]
struct Opts {
    #[command(flatten)]
    client: ClientArgs,
}

fn main() -> std::process::ExitCode {
    let opts = Opts::parse();
    let _traces = cli::client_tracing();
    cli::report(run(&opts.client))
}

fn run(args: &ClientArgs) -> Result<(), cli::CliError> {
    let greeter = args.blocking_client()?;

    println!("--- 1. Unary ---");
    println!("Response: {}", greeter.say_hello("Rust Client")?);

    println!("\n--- 2. Server Streaming ---");
    greeter.stock_prices("TSMC", |t| println!("Stock: {}, Price: {:.2}", t.symbol, t.price))?;

    println!("\n--- 3. Client Streaming ---");
    let summary = greeter.record_metrics(&[25.5, 26.8, 27.1])?;
    println!("Statistics: Count {}, Average {:.2}", summary.count, summary.average);

    println!("\n--- 4. Chat ---");
    let messages = ["Hello".to_owned(), "Bye".to_owned()];
    greeter.chat("Rust", &messages, |r| println!("(Receive) {}: {}", r.user, r.message))?;
    Ok(())
}
