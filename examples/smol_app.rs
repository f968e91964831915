//! The async client on smol: `cargo run --release --example smol_app` against a running
//! server (`cargo run --release --example server`).
//!
//! The same calls as `tokio_app` (1 000 concurrent SayHello, 20 concurrent stock
//! subscriptions) as smol tasks, with the time each batch took.

mod cli;

use std::error::Error;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use cli::ClientArgs;
use futures::TryStreamExt as _;

/// Exercise a Greeter server from smol tasks.
#[derive(Parser)]
struct Opts {
    #[command(flatten)]
    client: ClientArgs,
    /// SayHello calls fired at once.
    #[arg(long, default_value_t = 1000)]
    hellos: usize,
    /// GetStockPrice subscriptions opened at once.
    #[arg(long, default_value_t = 20)]
    subscriptions: usize,
}

fn main() -> ExitCode {
    cli::report(smol::block_on(run(Opts::parse())))
}

async fn run(opts: Opts) -> Result<(), Box<dyn Error>> {
    let greeter = opts.client.client()?;

    let start = Instant::now();
    let calls: Vec<_> = (0..opts.hellos).map(|i| smol::spawn(greeter.say_hello(&format!("smol {i}")))).collect();
    for call in calls {
        call.await?;
    }
    println!("{} concurrent SayHello calls: {:.0?}", opts.hellos, start.elapsed());

    let start = Instant::now();
    let mut subscriptions = Vec::new();
    for _ in 0..opts.subscriptions {
        subscriptions.push(smol::spawn(greeter.stock_prices("TSMC")?.try_collect::<Vec<_>>()));
    }
    let mut ticks = 0;
    for subscription in subscriptions {
        ticks += subscription.await?.len();
    }
    println!("{} concurrent stock subscriptions ({ticks} ticks): {:.2?}", opts.subscriptions, start.elapsed());
    Ok(())
}
