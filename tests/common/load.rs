//! Client threads calling SayHello back to back until stopped, counting what failed and why:
//! the load under which replicas are stopped or killed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use greeter::blocking::Greeter;

pub struct HelloLoad {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    threads: Vec<JoinHandle<()>>,
}

impl HelloLoad {
    /// One thread per client (give each its own channel to load like separate processes).
    pub fn start(clients: Vec<Greeter>) -> Self {
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
                        let name = format!("load {t}.{i}");
                        match client.say_hello(&name) {
                            Ok(reply) if reply == format!("Hello {name}") => drop(ok.fetch_add(1, Ordering::Relaxed)),
                            Ok(reply) => failures.lock().unwrap().push(format!("wrong reply {reply:?}")),
                            Err(e) => failures.lock().unwrap().push(e.to_string()),
                        }
                    }
                })
            })
            .collect();
        HelloLoad { stop, ok, failures, threads }
    }

    /// Stops the threads; returns (calls that succeeded, why the others failed).
    pub fn stop(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.threads.into_iter().for_each(|t| t.join().unwrap());
        let failures = self.failures.lock().unwrap().clone();
        (self.ok.load(Ordering::Relaxed), failures)
    }
}
