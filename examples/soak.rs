//! Soak: N clients call the server in a loop for a while (all four patterns, or the ones
//! named), with a progress line, then print calls, errors by status and the server's RSS.
//! `bench/soak` runs this against a server it starts and samples the server's memory.
//!
//! ```sh
//! cargo run --release --example server -- --stock-interval 10ms &
//! cargo run --release --example soak -- --clients 8 --duration 10m --server-pid $!
//! ```

mod cli;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use cli::ClientArgs;
use futures::{SinkExt as _, TryStreamExt as _};
use greeter::proto::health::{HealthCheckRequest, HealthClient};
use greeter::proto::reflection::v1::{ServerReflectionClient, ServerReflectionRequest};
use greeter::{ClientError, Greeter};

/// Load a running Greeter server, bounded in time.
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
    /// What each round calls, in order (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "say-hello,stock-price,record-metrics,chat")]
    patterns: Vec<Pattern>,
    /// A new connection for every round instead of one per client for the whole run.
    #[arg(long)]
    churn: bool,
    /// The server's process id, to report its resident memory at start and end.
    #[arg(long)]
    server_pid: Option<u32>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Pattern {
    SayHello,
    StockPrice,
    RecordMetrics,
    Chat,
    /// grpc.health.v1.Health/Check
    Health,
    /// grpc.reflection.v1 ListServices
    Reflection,
}

#[derive(Default)]
struct Tally {
    calls: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Tally {
    fn record<T>(&self, result: Result<T, ClientError>) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = result {
            let code = e.code().map_or("transport".to_owned(), |c| format!("{c:?}"));
            *self.errors.lock().unwrap().entry(code).or_default() += 1;
        }
    }
}

/// Health and reflection calls' deadline (the Greeter calls use `--timeout`).
const DEADLINE: Duration = Duration::from_secs(10);

/// One call of `pattern`, the tutorial's way (10 ticks, 100 values, 10 chat messages).
fn call(greeter: &Greeter, pattern: Pattern) -> Result<(), ClientError> {
    let client = greeter::blocking::Greeter::from(greeter.clone());
    let values: Vec<f64> = (0..100).map(f64::from).collect();
    let messages: Vec<String> = (0..10).map(|i| format!("message {i}")).collect();
    match pattern {
        Pattern::SayHello => client.say_hello("soak").map(drop),
        Pattern::StockPrice => client.stock_prices("SOAK", |_| {}).map(drop),
        Pattern::RecordMetrics => client.record_metrics(&values).map(drop),
        Pattern::Chat => client.chat("soak", &messages, |_| {}).map(drop),
        Pattern::Health => {
            let health = HealthClient::new(greeter.channel().clone());
            let result =
                health.check_opt(&HealthCheckRequest::default(), grpcio::CallOption::default().timeout(DEADLINE));
            result.map(drop).map_err(|e| ClientError::from_grpc("Check", greeter.target(), e))
        }
        Pattern::Reflection => {
            let error = |e| ClientError::from_grpc("ServerReflectionInfo", greeter.target(), e);
            let reflection = ServerReflectionClient::new(greeter.channel().clone());
            let call = grpcio::CallOption::default().timeout(DEADLINE);
            let (mut requests, replies) = reflection.server_reflection_info_opt(call).map_err(error)?;
            futures::executor::block_on(async move {
                let mut request = ServerReflectionRequest::new();
                request.set_list_services(String::new());
                requests.send((request, Default::default())).await?;
                requests.close().await?;
                replies.try_collect::<Vec<_>>().await.map(drop)
            })
            .map_err(error)
        }
    }
}

fn rss(pid: Option<u32>) -> String {
    let status = pid.and_then(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok());
    let line = status.as_deref().and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(str::to_owned));
    line.map_or("n/a".to_owned(), |l| l.trim_start_matches("VmRSS:").trim().to_owned())
}

fn main() -> std::process::ExitCode {
    cli::report(run(Arc::new(Opts::parse())))
}

fn run(opts: Arc<Opts>) -> Result<(), cli::CliError> {
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let rss_start = rss(opts.server_pid);
    let workers: Vec<_> = (0..opts.clients)
        .map(|_| {
            let mut greeter = opts.client.client()?;
            let (opts, tally, stop) = (opts.clone(), tally.clone(), stop.clone());
            Ok(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if opts.churn {
                        greeter = opts.client.client().expect("the first connect of these arguments worked");
                    }
                    opts.patterns.iter().for_each(|&pattern| tally.record(call(&greeter, pattern)));
                }
            }))
        })
        .collect::<Result<_, cli::CliError>>()?;

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
