//! Cross-language interop, run by `cargo test`: clients {Rust, Go, Python} × servers {Rust,
//! Go, Python}, every cell running all four patterns with checked results; the tutorial's own
//! clients, unmodified, against our server; and wire vectors encoded identically by all three.
//!
//! The Go and Python programs live in `tests/interop/`; `tests/interop/setup.sh` builds them
//! (and a venv) under `target/interop/` on first use.

mod common;

use std::process::Command;
use std::time::Duration;

use common::netns::in_private_network;
use common::scrape::scrape;
use common::tools::{run_ok, run_tutorial_clients, tools, PeerServer};
use common::TestServer;
use greeter::blocking::Greeter;
use greeter::ServerConfig;

/// Ticks are this far apart on every server in the matrix, so no cell waits 2.5 s a stream.
const INTERVAL_MS: u64 = 5;

enum Server {
    Rust(Box<TestServer>),
    Peer(PeerServer),
}

impl Server {
    fn rust() -> Self {
        Server::Rust(Box::new(TestServer::with_interval(Duration::from_millis(INTERVAL_MS))))
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
    common::assert_all_four_patterns(&Greeter::new(&server.addr(), Duration::from_secs(30)), "Rust Client");
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
/// `localhost:50051`, so our server listens there (`[::]:50051`, IPv6 and IPv4), in a network
/// of the test's own where that port is always free and no lookup reaches a nameserver. The
/// ticks our server counted prove the clients talked to it.
#[test]
fn the_tutorials_own_clients_work_unmodified_against_our_server() {
    tools(); // set up (it may download) before the network goes private
    let (ticks, completed) = in_private_network(|| {
        // [::]:50051, and /metrics on this network's loopback
        let config = common::with_metrics(ServerConfig::default(), Duration::from_millis(INTERVAL_MS));
        let server = config.start().expect("our server on port 50051 of the test's own network");
        run_tutorial_clients();
        let metrics = scrape(server.metrics_local_addr().unwrap());
        (metrics.ticks_sent(), metrics.subscriptions_ended("OK"))
    });
    // Five ticks for the Go client and five for the Python one, all sent by this server.
    assert_eq!(ticks, 10.0);
    assert_eq!(completed, 2.0);
}
