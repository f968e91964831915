//! The clients a program makes share one completion-queue thread, made with the first client
//! and ended with the last: a program that makes many short-lived clients makes one thread,
//! not one each. (A test binary of its own: no other test's clients may share the thread.)

use std::time::{Duration, Instant};

use greeter::{blocking, Greeter};

/// Threads of this process whose name starts with `prefix` (`/proc/self/task/*/comm`).
fn threads(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with(prefix))
        .count()
}

/// Waits until the client threads number `n`; fails after 30 s with the count it saw.
fn wait_for_threads(n: usize) {
    let start = Instant::now();
    while threads("greeter-client") != n {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{} client threads, expected {n}",
            threads("greeter-client")
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_thousand_clients_share_one_thread_that_ends_with_the_last() {
    assert_eq!(threads("greeter-client"), 0, "no client yet");
    let clients: Vec<Greeter> = (0..1000).map(|_| Greeter::new("127.0.0.1:1", Duration::from_secs(1))).collect();
    let blocking: Vec<blocking::Greeter> =
        (0..10).map(|_| blocking::Greeter::new("127.0.0.1:1", Duration::from_secs(1))).collect();
    assert_eq!(threads("greeter-client"), 1, "1,010 clients, one thread");
    drop(clients);
    assert_eq!(threads("greeter-client"), 1, "the blocking clients still use it");
    drop(blocking);
    wait_for_threads(0);
    // The next client makes the thread anew.
    let again = Greeter::new("127.0.0.1:1", Duration::from_secs(1));
    assert_eq!(threads("greeter-client"), 1);
    drop(again);
    wait_for_threads(0);
}
