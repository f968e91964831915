//! The examples as a user runs them: the server binary on a free port, each client binary
//! against it, output checked line by line, then SIGTERM and a clean exit.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};

use common::examples::{example, KillOnDrop, ServerProcess};

fn start_server() -> ServerProcess {
    ServerProcess::start(&["--addr", "127.0.0.1:0", "--stock-interval", "10ms", "--grace", "5s"], "info")
}

fn stdout_lines(out: &Output) -> Vec<String> {
    String::from_utf8(out.stdout.clone()).unwrap().lines().map(str::to_owned).collect()
}

fn assert_price_line(line: &str, symbol: &str) {
    let price =
        line.strip_prefix(&format!("Stock: {symbol}, Price: ")).unwrap_or_else(|| panic!("not a price line: {line:?}"));
    let price: f64 = price.parse().unwrap();
    assert!((500.0..=600.0).contains(&price), "{line}");
    assert_eq!(line.rsplit('.').next().unwrap().len(), 2, "two decimals, like the tutorial: {line}");
}

#[test]
fn every_client_example_prints_the_tutorial_lines_and_the_server_stops_on_sigterm() {
    let mut server = start_server();

    let lines = stdout_lines(&server.run("client", &[]));
    assert_eq!(lines[..2], ["--- 1. Unary ---", "Response: Hello Rust Client"]);
    assert_eq!(lines[2..4], ["", "--- 2. Server Streaming ---"]);
    lines[4..9].iter().for_each(|l| assert_price_line(l, "TSMC"));
    assert_eq!(
        lines[9..],
        [
            "",
            "--- 3. Client Streaming ---",
            "Statistics: Count 3, Average 26.47",
            "",
            "--- 4. Chat ---",
            "(Receive) Server: Server received: Hello",
            "(Receive) Server: Server received: Bye",
        ]
    );

    assert_eq!(stdout_lines(&server.run("say_hello", &["--name", "Ferris"])), ["Response: Hello Ferris"]);
    let ticks = stdout_lines(&server.run("stock_price", &["--symbol", "ACME"]));
    assert_eq!(ticks.len(), 5);
    ticks.iter().for_each(|l| assert_price_line(l, "ACME"));
    assert_eq!(
        stdout_lines(&server.run("record_metrics", &["--values", "1,2,-3.5"])),
        ["Statistics: Count 3, Average -0.17"]
    );
    assert_eq!(
        stdout_lines(&server.run("chat", &["--messages", "Hi,Streaming is cool"])),
        ["(Receive) Server: Server received: Hi", "(Receive) Server: Server received: Streaming is cool"]
    );

    server.signal("TERM");
    let status = server.child.wait().unwrap();
    assert!(status.success(), "the server exits 0 after SIGTERM, got {status}");
    let log = server.log();
    assert!(log.iter().any(|l| l.contains("Received subscription: TSMC")), "{log:#?}");
    assert!(log.iter().any(|l| l.contains("shutting down")), "{log:#?}");
}

#[test]
fn a_client_example_with_no_server_prints_one_clear_line_and_fails() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let out = example("say_hello").args(["--addr", &addr, "--deadline", "5s"]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr, format!("error: cannot reach {addr}: connection refused — is the server running?\n"));
}

#[test]
fn the_server_help_explains_every_flag() {
    let out = example("server").arg("--help").output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    let flags = ["--addr", "--completion-queues", "--stock-ticks", "--stock-interval", "--grace", "--no-reflection"];
    let limits =
        ["--max-receive-message-size", "--max-concurrent-streams", "--keepalive-time", "--max-chat-message-len"];
    for flag in flags.iter().chain(&limits).chain(&["--tls-cert", "--tls-key", "--tls-client-ca"]) {
        assert!(help.contains(flag), "--help does not mention {flag}:\n{help}");
    }
}

/// Splits "N concurrent X: <time>" into its count and checks the time reads as a duration.
fn timing_line<'a>(line: &'a str, what: &str) -> &'a str {
    let (head, time) = line.split_once(": ").unwrap_or_else(|| panic!("not a timing line: {line:?}"));
    assert!(head.contains(what), "{line:?} is not about {what}");
    assert!(time.ends_with("ms") || time.ends_with('s') || time.ends_with("µs"), "no duration in {line:?}");
    head
}

#[test]
fn tokio_app_prints_its_timings_and_stops_gracefully_on_ctrl_c() {
    let child = example("tokio_app")
        .args(["--addr", "127.0.0.1:0", "--stock-interval", "10ms"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut app = KillOnDrop(child);
    let mut stdout = BufReader::new(app.0.stdout.take().unwrap()).lines().map_while(Result::ok);
    let mut next = || stdout.next().expect("tokio_app printed fewer lines than expected");
    assert_eq!(timing_line(&next(), "SayHello"), "1000 concurrent SayHello calls");
    assert_eq!(timing_line(&next(), "stock"), "20 concurrent stock subscriptions (100 ticks)");
    assert!(next().starts_with("serving on port "));

    let int = Command::new("kill").args(["-INT", &app.0.id().to_string()]).status().unwrap();
    assert!(int.success());
    assert!(next().starts_with("stopped gracefully in "));
    let status = app.0.wait().unwrap();
    assert!(status.success(), "tokio_app exits 0 after Ctrl-C, got {status}");
}

#[test]
fn smol_app_prints_its_timings_against_a_running_server() {
    let server = start_server();
    let lines = stdout_lines(&server.run("smol_app", &[]));
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(timing_line(&lines[0], "SayHello"), "1000 concurrent SayHello calls");
    assert_eq!(timing_line(&lines[1], "stock"), "20 concurrent stock subscriptions (100 ticks)");
}
