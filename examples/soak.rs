//! Soak: N clients run all four patterns in a loop against a running server for a while,
//! with a progress line, then print calls, errors by status and the server's RSS.
//!
//! ```sh
//! cargo run --release --example server -- --stock-interval 10ms &
//! cargo run --release --example soak -- --clients 8 --duration 10m --server-pid $!
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use greeter::blocking::Greeter;
use greeter::cli::{self, ClientArgs};
use greeter::ClientError;

/// Load a running Greeter server with all four patterns, bounded in time.
#[derive(Parser)]
struct Opts {
    #[command(flatten)]
    client: ClientArgs,
    /// Concurrent clients, each with its own connection.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// How long to run (e.g. 30s, 10m).
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// The server's process id, to report its resident memory at start and end.
    #[arg(long)]
    server_pid: Option<u32>,
}

#[derive(Default)]
struct Tally {
    calls: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Tally {
    fn record(&self, result: Result<(), ClientError>) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = result {
            let code = e.code().map_or("transport".to_owned(), |c| format!("{c:?}"));
            *self.errors.lock().unwrap().entry(code).or_default() += 1;
        }
    }
}

/// One round of the tutorial's four calls.
fn round(greeter: &Greeter, tally: &Tally, values: &[f64], messages: &[String]) {
    tally.record(greeter.say_hello("soak").map(drop));
    tally.record(greeter.stock_prices("SOAK", |_| {}).map(drop));
    tally.record(greeter.record_metrics(values).map(drop));
    tally.record(greeter.chat("soak", messages, |_| {}).map(drop));
}

fn rss(pid: Option<u32>) -> String {
    let status = pid.and_then(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok());
    let line = status.as_deref().and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(str::to_owned));
    line.map_or("n/a".to_owned(), |l| l.trim_start_matches("VmRSS:").trim().to_owned())
}

fn main() -> std::process::ExitCode {
    let opts = Opts::parse();
    cli::report(run(&opts))
}

fn run(opts: &Opts) -> Result<(), ClientError> {
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let rss_start = rss(opts.server_pid);
    let values: Vec<f64> = (0..100).map(f64::from).collect();
    let messages: Vec<String> = (0..10).map(|i| format!("message {i}")).collect();
    let workers: Vec<_> = (0..opts.clients)
        .map(|_| {
            let greeter = opts.client.connect_blocking()?;
            let (tally, stop, values, messages) = (tally.clone(), stop.clone(), values.clone(), messages.clone());
            Ok(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    round(&greeter, &tally, &values, &messages);
                }
            }))
        })
        .collect::<Result<_, ClientError>>()?;

    let start = Instant::now();
    while start.elapsed() < opts.duration {
        std::thread::sleep(Duration::from_secs(5).min(opts.duration.saturating_sub(start.elapsed())));
        let (secs, calls) = (start.elapsed().as_secs_f64(), tally.calls.load(Ordering::Relaxed));
        let errors: u64 = tally.errors.lock().unwrap().values().sum();
        eprintln!(
            "[{secs:>5.0}s/{:.0}s] calls {calls} ({:.0}/s)  errors {errors}  server RSS {}",
            opts.duration.as_secs_f64(),
            calls as f64 / secs,
            rss(opts.server_pid)
        );
    }
    stop.store(true, Ordering::Relaxed);
    workers.into_iter().for_each(|w| w.join().unwrap());

    println!("clients           {}", opts.clients);
    println!("duration          {:.1?}", start.elapsed());
    println!("calls             {}", tally.calls.load(Ordering::Relaxed));
    let errors = tally.errors.lock().unwrap();
    println!("errors            {}", if errors.is_empty() { "none".to_owned() } else { format!("{errors:?}") });
    println!("server RSS        {rss_start} -> {}", rss(opts.server_pid));
    Ok(())
}
