//! SayHello through one channel, the calls counted: the client the xDS tests run against
//! replicas a service mesh's control plane names, each in a process of its own (C-core's xDS
//! client is process-wide and reads its bootstrap once). It takes grpc-go's `xds-client`
//! flags (tests/interop/go/cmd/xds-client), so the tests drive both alike.
//!
//! ```sh
//! GRPC_XDS_BOOTSTRAP=bootstrap.json cargo run --release --example xds_client -- --addr xds:///greeter --calls 300
//! ```
//!
//! `--warmup` makes health checks on the same channel until stdin says a line, so that the
//! counted calls start once the channel has connected to every endpoint (the replicas' access
//! logs tell the two apart by their method). Prints `CALLS ok=N failed=M`, and each distinct
//! failure once as `FAILED <error>` on stderr; exits 2 when a call failed.

mod cli;

use std::collections::BTreeSet;
use std::io::BufRead as _;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use clap::Parser;
use cli::ClientArgs;
use greeter::blocking;
use greeter::proto::health::{HealthCheckRequest, HealthClient};

/// Call SayHello a number of times, or until stdin closes, and count the failures.
#[derive(Parser)]
struct Opts {
    #[command(flatten)]
    client: ClientArgs,
    /// Make this many calls, one after another.
    #[arg(long, default_value_t = 0)]
    calls: u64,
    /// Before --calls: health checks until stdin says a line.
    #[arg(long, conflicts_with = "until_eof")]
    warmup: bool,
    /// Instead of --calls: call back to back until stdin is closed.
    #[arg(long)]
    until_eof: bool,
    /// Concurrent callers, with --until-eof.
    #[arg(long, default_value_t = 1, requires = "until_eof")]
    workers: usize,
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    seen: Mutex<BTreeSet<String>>,
}

impl Tally {
    fn record(&self, result: Result<(), String>) {
        match result {
            Ok(()) => drop(self.ok.fetch_add(1, Ordering::Relaxed)),
            Err(what) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                if self.seen.lock().unwrap().insert(what.clone()) {
                    eprintln!("FAILED {what}");
                }
            }
        }
    }
}

fn say_hello(greeter: &blocking::Greeter, name: &str) -> Result<(), String> {
    match greeter.say_hello(name) {
        Ok(reply) if reply == format!("Hello {name}") => Ok(()),
        Ok(reply) => Err(format!("wrong reply {reply:?}")),
        Err(e) => Err(e.to_string()),
    }
}

/// Blocks until stdin says a line, or ends.
fn stdin_says() {
    let _ = std::io::stdin().lock().read_line(&mut String::new());
}

fn main() -> ExitCode {
    let opts = Opts::parse();
    let greeter = match opts.client.client() {
        Ok(greeter) => greeter,
        Err(e) => return cli::report(Err(e)),
    };
    let tally = Tally::default();
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        if opts.until_eof {
            for w in 0..opts.workers {
                let (greeter, tally, stop) = (blocking::Greeter::from(greeter.clone()), &tally, &stop);
                scope.spawn(move || {
                    for i in 0.. {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        tally.record(say_hello(&greeter, &format!("Rust {w}.{i}")));
                    }
                });
            }
            while std::io::stdin().lock().read_line(&mut String::new()).is_ok_and(|n| n > 0) {}
            stop.store(true, Ordering::Relaxed);
            return;
        }
        if opts.warmup {
            scope.spawn(|| {
                stdin_says();
                stop.store(true, Ordering::Relaxed);
            });
            let health = HealthClient::new(greeter.channel().clone());
            let options = || grpcio::CallOption::default().timeout(greeter.timeout());
            while !stop.load(Ordering::Relaxed) {
                if let Err(e) = health.check_opt(&HealthCheckRequest::default(), options()) {
                    tally.record(Err(format!("warm-up health check: {e}")));
                }
            }
        }
        let greeter = blocking::Greeter::from(greeter.clone());
        (0..opts.calls).for_each(|i| tally.record(say_hello(&greeter, &format!("Rust {i}"))));
    });
    let (ok, failed) = (tally.ok.load(Ordering::Relaxed), tally.failed.load(Ordering::Relaxed));
    println!("CALLS ok={ok} failed={failed}");
    if failed > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}
