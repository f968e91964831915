//! The server and the async client in one tokio program: `cargo run --release --example tokio_app`.
//!
//! Starts the server, fires 1 000 concurrent SayHello calls and 20 concurrent stock
//! subscriptions from tokio tasks, prints how long each batch took, then serves until Ctrl-C
//! (or SIGTERM) and shuts down gracefully, all without blocking a tokio worker.

mod cli;

use std::error::Error;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use cli::ServerArgs;
use futures::TryStreamExt as _;
use greeter::Greeter;
use tokio::signal::unix::{signal, SignalKind};

/// Serve greeter.Greeter and exercise it from tokio tasks.
#[derive(Parser)]
struct Opts {
    #[command(flatten)]
    server: ServerArgs,
    /// SayHello calls fired at once.
    #[arg(long, default_value_t = 1000)]
    hellos: usize,
    /// GetStockPrice subscriptions opened at once.
    #[arg(long, default_value_t = 20)]
    subscriptions: usize,
}

#[tokio::main]
async fn main() -> ExitCode {
    cli::init_logging();
    cli::report(run(Opts::parse()).await)
}

async fn run(opts: Opts) -> Result<(), Box<dyn Error>> {
    // Both signals are ours from the start: a Ctrl-C arriving before the `select!` below
    // (just after "serving" is printed, say) would otherwise kill the process.
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let server = opts.server.config()?.start()?;
    let greeter = Greeter::new(&format!("localhost:{}", server.port()), Duration::from_secs(30));

    let start = Instant::now();
    let calls: Vec<_> = (0..opts.hellos).map(|i| tokio::spawn(greeter.say_hello(&format!("tokio {i}")))).collect();
    for call in calls {
        call.await??;
    }
    println!("{} concurrent SayHello calls: {:.0?}", opts.hellos, start.elapsed());

    let start = Instant::now();
    let mut subscriptions = Vec::new();
    for _ in 0..opts.subscriptions {
        let ticks = greeter.stock_prices("TSMC")?;
        subscriptions.push(tokio::spawn(ticks.try_collect::<Vec<_>>()));
    }
    let mut ticks = 0;
    for subscription in subscriptions {
        ticks += subscription.await??.len();
    }
    println!("{} concurrent stock subscriptions ({ticks} ticks): {:.2?}", opts.subscriptions, start.elapsed());

    println!("serving on port {}; Ctrl-C to stop", server.port());
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    let outcome = server.shutdown_async().await;
    println!("stopped gracefully in {:.0?}", outcome.elapsed);
    Ok(())
}
