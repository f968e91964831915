//! Cross-language interop, run by `cargo test`: clients {Rust, Go, Python} × servers {Rust,
//! Go, Python}, every cell running all four patterns with checked results; the tutorial's own
//! clients, unmodified, against our server; and wire vectors encoded identically by all three.
//!
//! The Go and Python programs live in `tests/interop/`; `tests/interop/setup.sh` builds them
//! (and a venv) under `target/interop/` on first use.

mod common;

use std::process::Command;
use std::time::Duration;

use common::tools::{run_ok, run_tutorial_clients, tools, PeerServer};
use common::TestServer;
use greeter::blocking::Greeter;
use greeter::stock_price::PRICE_RANGE;
use greeter::ServerConfig;

/// Ticks are this far apart on every server in the matrix, so no cell waits 2.5 s a stream.
const INTERVAL_MS: u64 = 5;

enum Server {
    Rust(TestServer),
    Peer(PeerServer),
}

impl Server {
    fn rust() -> Self {
        Server::Rust(TestServer::with_interval(Duration::from_millis(INTERVAL_MS)))
    }

    fn go() -> Self {
        let mut cmd = tools().go_bin("interop-server");
        cmd.args(["--port", "0", "--interval", &format!("{INTERVAL_MS}ms")]);
        Server::Peer(PeerServer::start(cmd, "the Go interop server"))
    }

    fn python() -> Self {
        let mut cmd = tools().python("tests/interop/python/interop_server.py");
        cmd.args(["--port", "0", "--interval", &format!("{}", INTERVAL_MS as f64 / 1000.0)]);
        Server::Peer(PeerServer::start(cmd, "the Python interop server"))
    }

    fn addr(&self) -> String {
        match self {
            Server::Rust(s) => s.addr.clone(),
            Server::Peer(p) => p.addr(),
        }
    }
}

/// The Rust client's side of a cell: the tutorial's four calls, every result checked.
fn rust_client(server: &Server) {
    let greeter = Greeter::connect(&server.addr(), Duration::from_secs(30));
    assert_eq!(greeter.say_hello("Rust Client").unwrap(), "Hello Rust Client");

    let ticks = greeter.stock_prices("TSMC", |_| {}).unwrap();
    assert_eq!(ticks.len(), 5, "ticks: {ticks:?}");
    for tick in &ticks {
        assert_eq!(tick.symbol, "TSMC");
        assert!(PRICE_RANGE.contains(&tick.price), "price {} not in [500, 600)", tick.price);
    }

    let summary = greeter.record_metrics(&[25.5, 26.8, 27.1]).unwrap();
    assert_eq!(summary.count, 3);
    assert!((summary.average - (25.5 + 26.8 + 27.1) / 3.0).abs() < 1e-9, "average {}", summary.average);
    let empty = greeter.record_metrics(&[]).unwrap();
    assert_eq!((empty.count, empty.average), (0, 0.0));

    let messages = ["Hello".to_owned(), "Bye".to_owned()];
    let replies = greeter.chat("Rust", &messages, |_| {}).unwrap();
    let replies: Vec<(&str, &str)> = replies.iter().map(|r| (r.user.as_str(), r.message.as_str())).collect();
    assert_eq!(replies, [("Server", "Server received: Hello"), ("Server", "Server received: Bye")]);
}

/// A Go or Python client checks everything itself and exits non-zero, saying what differed.
fn peer_client(mut cmd: Command, what: &str, server: &Server) {
    cmd.args(["--addr", &server.addr(), "--ticks", "5"]);
    let out = run_ok(cmd, what);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.lines().any(|l| l == "OK all four patterns"), "{what} did not finish:\n{stdout}");
}

fn go_client(server: &Server) {
    peer_client(tools().go_bin("interop-client"), "the Go interop client", server)
}

fn python_client(server: &Server) {
    peer_client(tools().python("tests/interop/python/interop_client.py"), "the Python interop client", server)
}

#[test]
fn rust_client_vs_rust_server() {
    rust_client(&Server::rust());
}
#[test]
fn rust_client_vs_go_server() {
    rust_client(&Server::go());
}
#[test]
fn rust_client_vs_python_server() {
    rust_client(&Server::python());
}
#[test]
fn go_client_vs_rust_server() {
    go_client(&Server::rust());
}
#[test]
fn go_client_vs_go_server() {
    go_client(&Server::go());
}
#[test]
fn go_client_vs_python_server() {
    go_client(&Server::python());
}
#[test]
fn python_client_vs_rust_server() {
    python_client(&Server::rust());
}
#[test]
fn python_client_vs_go_server() {
    python_client(&Server::go());
}
#[test]
fn python_client_vs_python_server() {
    python_client(&Server::python());
}

/// The tutorial's `client/main.go` and `client/python_client.py`, as published, dial
/// `localhost:50051`: our server listens there on IPv6 and IPv4. The only test on a fixed port.
#[test]
fn the_tutorials_own_clients_work_unmodified_against_our_server() {
    let mut config = ServerConfig::default(); // [::]:50051
    config.ticker.interval = Duration::from_millis(INTERVAL_MS);
    let _server = config.start().expect("our server on port 50051 (is something else listening there?)");

    run_tutorial_clients();
}
