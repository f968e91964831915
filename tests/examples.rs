//! The examples as a user runs them: the server binary on a free port, each client binary
//! against it, output checked line by line, then SIGTERM and a clean exit.

#[path = "../examples/cli/mod.rs"]
mod cli;
mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;

use cli::ServerArgs;
use common::examples::{example, ServerProcess};
use common::process::{output_within, KillOnDrop, DEADLINE};
use common::RefusedPort;

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
    let status = server.wait_exit();
    assert!(status.success(), "the server exits 0 after SIGTERM, got {status}");
    let log = server.log();
    assert!(log.iter().any(|l| l.contains("Received subscription: TSMC")), "{log:#?}");
    assert!(log.iter().any(|l| l.contains("shutting down")), "{log:#?}");
}

#[test]
fn a_client_example_with_no_server_prints_one_clear_line_and_fails() {
    let refused = RefusedPort::hold();
    let mut cmd = example("say_hello");
    cmd.args(["--addr", &refused.addr, "--deadline", "5s"]);
    let out = output_within(cmd, "say_hello", DEADLINE);
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr, format!("error: cannot reach {}: connection refused — is the server running?\n", refused.addr));
}

/// C-core binds with SO_REUSEPORT by default, which would let a second server start on a port
/// in use and take half its connections. Ours refuses unless both ask for `--reuse-port`.
#[test]
fn a_second_server_on_a_port_in_use_fails_with_one_clear_line_unless_both_reuse_it() {
    let first = start_server();
    let mut second = example("server");
    second.args(["--addr", &first.addr()]);
    let out = output_within(second, "a second server", DEADLINE);
    assert!(!out.status.success(), "a second server started on {}", first.addr());
    // C-core logs the bind error in detail first; ours is the last line.
    let stderr = String::from_utf8(out.stderr).unwrap();
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with(&format!("error: cannot listen on {}: ", first.addr())), "{stderr}");
    assert!(last.ends_with("(is the port already in use, or the address mistyped?)"), "{stderr}");

    let sharing = ServerProcess::start(&["--addr", "127.0.0.1:0", "--reuse-port"], "info");
    let again = ServerProcess::start(&["--addr", &sharing.addr(), "--reuse-port"], "info");
    assert_eq!(again.port, sharing.port);
}

/// Every flag `ServerArgs` defines appears in `server --help`, by its exact name, with a line
/// saying what it does; the help lists no flag that does not exist; docs/operations.md shows
/// it as it is.
#[test]
fn the_server_help_explains_every_flag() {
    let mut cmd = example("server");
    cmd.arg("--help");
    let out = output_within(cmd, "server --help", DEADLINE);
    assert!(out.status.success(), "server --help exits {}", out.status);
    let help = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = help.lines().collect();
    let mut listed = BTreeSet::new();
    for (i, line) in lines.iter().enumerate() {
        // "  -h, --help" or "      --addr <ADDR>"
        let line = line.trim_start();
        let line = line.split_once(", ").filter(|(short, _)| short.len() == 2).map_or(line, |(_, long)| long);
        if let Some(flag) = line.strip_prefix("--") {
            let name = flag.split([' ', '=']).next().unwrap();
            let explained =
                lines.get(i + 1).is_some_and(|next| !next.trim().is_empty() && !next.trim().starts_with('-'));
            assert!(explained, "--{name} has no explanation in:\n{help}");
            listed.insert(name.to_owned());
        }
    }
    let defined = <ServerArgs as clap::Args>::augment_args(clap::Command::new("server").version("0"));
    let mut expected: BTreeSet<String> =
        defined.get_arguments().filter_map(|a| a.get_long()).map(str::to_owned).collect();
    // With the server example's own flag (examples/server.rs), beside the ones it shares.
    expected.extend(["help".to_owned(), "version".to_owned(), "health-check".to_owned()]);
    assert_eq!(listed, expected, "flags in --help vs flags ServerArgs defines");

    let guide = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md")).unwrap();
    let shown = format!("$ cargo run --release --example server -- --help\n{help}```");
    assert!(
        guide.contains(&shown),
        "docs/operations.md's copy of `server --help` is out of date; the real one:\n{help}"
    );
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
    let stdout = BufReader::new(app.0.stdout.take().unwrap());
    let (line, lines) = mpsc::channel();
    std::thread::spawn(move || stdout.lines().map_while(Result::ok).try_for_each(|l| line.send(l)));
    let next = || lines.recv_timeout(DEADLINE).expect("tokio_app printed fewer lines than expected, or hangs");
    assert_eq!(timing_line(&next(), "SayHello"), "1000 concurrent SayHello calls");
    assert_eq!(timing_line(&next(), "stock"), "20 concurrent stock subscriptions (100 ticks)");
    assert!(next().starts_with("serving on port "));

    let int = Command::new("kill").args(["-INT", &app.0.id().to_string()]).status().unwrap();
    assert!(int.success());
    assert!(next().starts_with("stopped gracefully in "));
    let status = app.wait("tokio_app", DEADLINE);
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

/// examples/own_service.rs: `echo.Echo` beside Greeter, with what Greeter gets: grpcurl finds
/// it through reflection and calls it, health reports it SERVING, /metrics counts its calls,
/// a bad request gets its status, and SIGTERM stops it cleanly.
#[test]
fn own_service_example_serves_its_service_beside_greeter() {
    use common::tools::tools;
    let args = ["--addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0"];
    let mut server = ServerProcess::start_example("own_service", &args, "info");
    let metrics = server.wait_for_line("the server logs its metrics address", |l| l.contains("Metrics at http://"));
    let metrics: std::net::SocketAddr =
        metrics.split("http://").nth(1).and_then(|s| s.split('/').next()).unwrap().parse().unwrap();
    let grpcurl = |args: &[&str]| {
        let mut cmd = tools().go_bin("grpcurl");
        cmd.arg("-plaintext").args(&args[..args.len() - 1]).arg(server.addr()).arg(args[args.len() - 1]);
        output_within(cmd, &format!("grpcurl {args:?}"), DEADLINE)
    };
    let listed = grpcurl(&["list"]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.lines().any(|l| l == "echo.Echo") && listed.lines().any(|l| l == "greeter.Greeter"), "{listed}");

    let said = grpcurl(&["-d", r#"{"text": "hi"}"#, "echo.Echo/Say"]);
    let said: serde_json::Value = serde_json::from_slice(&said.stdout).expect("Say's reply as JSON");
    assert_eq!(said, serde_json::json!({"text": "hi"}));

    let repeated = grpcurl(&["-d", r#"{"text": "hi", "times": 3}"#, "echo.Echo/Repeat"]);
    let replies: Vec<serde_json::Value> = serde_json::Deserializer::from_slice(&repeated.stdout)
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("Repeat's replies as JSON");
    let indexes: Vec<i64> = replies.iter().map(|r| r["index"].as_i64().unwrap()).collect();
    assert_eq!(indexes, [1, 2, 3], "{replies:?}");

    let refused = grpcurl(&["-d", r#"{"text": "hi", "times": 101}"#, "echo.Echo/Repeat"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("Code: InvalidArgument"), "{stderr}");
    assert!(stderr.contains("times is 101; it must be between 0 and 100"), "{stderr}");

    let health = grpcurl(&["-d", r#"{"service": "echo.Echo"}"#, "grpc.health.v1.Health/Check"]);
    assert!(String::from_utf8_lossy(&health.stdout).contains("SERVING"), "{health:?}");

    let counted = common::scrape::scrape(metrics);
    let say_ok = [("grpc_type", "unary"), ("grpc_service", "echo.Echo"), ("grpc_method", "Say"), ("grpc_code", "OK")];
    assert_eq!(counted.get("grpc_server_handled_total", &say_ok), Some(1.0));
    let repeat = [("grpc_type", "server_stream"), ("grpc_service", "echo.Echo"), ("grpc_method", "Repeat")];
    assert_eq!(counted.get("grpc_server_msg_sent_total", &repeat), Some(3.0));

    server.signal("TERM");
    assert!(server.wait_exit().success());
}
