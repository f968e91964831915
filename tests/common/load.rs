//! Client threads calling back to back until stopped, counting what failed and why: the load
//! under which replicas are stopped or killed, and beside which hostile input is sent.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use greeter::blocking::Greeter;
use greeter::patterns::stock_price::PRICE_RANGE;

/// One call, or one round of calls, by client thread `t` in its round `i`: why it failed.
type Round = fn(&Greeter, usize, u64) -> Result<(), String>;

/// Threads that call until stopped; they stop when this is stopped or dropped (a failed
/// assertion then leaves no thread calling on).
pub struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    /// SayHello back to back, one thread per client (give each its own channel to load like
    /// separate processes).
    pub fn say_hello(clients: Vec<Greeter>) -> Self {
        Self::start(clients, say_hello)
    }

    /// All four patterns in turn, every result checked, one thread per client.
    pub fn four_patterns(clients: Vec<Greeter>) -> Self {
        Self::start(clients, four_patterns)
    }

    fn start(clients: Vec<Greeter>, round: Round) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let threads = clients
            .into_iter()
            .enumerate()
            .map(|(t, client)| {
                let (stop, ok, failures) = (stop.clone(), ok.clone(), failures.clone());
                std::thread::spawn(move || {
                    for i in 0.. {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        match round(&client, t, i) {
                            Ok(()) => drop(ok.fetch_add(1, Ordering::Relaxed)),
                            Err(e) => failures.lock().unwrap().push(e),
                        }
                    }
                })
            })
            .collect();
        Load { stop, ok, failures, threads }
    }

    /// Rounds that succeeded so far.
    pub fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    /// Stops the threads; returns (rounds that succeeded, why the others failed).
    pub fn stop(mut self) -> (u64, Vec<String>) {
        self.join();
        let failures = self.failures.lock().unwrap().clone();
        (self.ok(), failures)
    }

    /// Stops the threads; fails the test, with the first reasons, if any round failed.
    /// Returns how many succeeded.
    pub fn stop_without_failures(self) -> u64 {
        let (ok, failures) = self.stop();
        assert!(
            failures.is_empty(),
            "{} of {} rounds failed: {:?}",
            failures.len(),
            ok as usize + failures.len(),
            &failures[..failures.len().min(5)]
        );
        ok
    }

    fn join(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.join();
    }
}

/// The length of client thread `t`'s names: a replica's log ("(N bytes of name)") tells which
/// client each call came from.
pub fn name_len(t: usize) -> usize {
    40 + t
}

fn say_hello(client: &Greeter, t: usize, i: u64) -> Result<(), String> {
    let name = format!("{:<width$}", format!("load {t}.{i}"), width = name_len(t));
    match client.say_hello(&name) {
        Ok(reply) if reply == format!("Hello {name}") => Ok(()),
        Ok(reply) => Err(format!("SayHello: wrong reply {reply:?}")),
        Err(e) => Err(e.to_string()),
    }
}

fn four_patterns(client: &Greeter, t: usize, i: u64) -> Result<(), String> {
    say_hello(client, t, i)?;
    let ticks = client.stock_prices("TSMC", |_| {}).map_err(|e| e.to_string())?;
    if ticks.len() != 5 || !ticks.iter().all(|tick| tick.symbol == "TSMC" && PRICE_RANGE.contains(&tick.price)) {
        return Err(format!("GetStockPrice: wrong ticks {ticks:?}"));
    }
    let summary = client.record_metrics(&[1.0, 2.0, 3.0]).map_err(|e| e.to_string())?;
    if (summary.count, summary.average) != (3, 2.0) {
        return Err(format!("RecordMetrics: wrong summary {summary:?}"));
    }
    let messages = [format!("{t}.{i}"), "Bye".to_owned()];
    let replies = client.chat("load", &messages, |_| {}).map_err(|e| e.to_string())?;
    let replies: Vec<&str> = replies.iter().map(|r| r.message.as_str()).collect();
    if replies != [format!("Server received: {t}.{i}"), "Server received: Bye".to_owned()] {
        return Err(format!("Chat: wrong replies {replies:?}"));
    }
    Ok(())
}
