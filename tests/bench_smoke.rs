//! Keeps the benchmark harness alive: `bench/run --quick` against our server only must give
//! numbers for every scenario with zero errors, and every streaming call it counts must carry
//! exactly the 1000 messages its messages/s assumes. Nothing about speed is asserted here;
//! speed lives in `bash bench/run` and BENCHMARKS.md.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Messages per streaming call (bench.py's TICKS).
const TICKS: u64 = 1000;

/// The debug server example that `cargo test` builds next to the test binaries (the harness
/// would otherwise build a release one, which costs a second C-core build).
fn debug_server() -> PathBuf {
    let mut dir = std::env::current_exe().unwrap();
    dir.pop();
    dir.pop();
    let server = dir.join("examples").join("server");
    assert!(server.exists(), "{} is missing: run this with `cargo test`", server.display());
    server
}

/// `bash bench/run --quick --no-plot --out OUT --rust-server SERVER` plus `extra`.
fn bench_run(out: &Path, server: &Path, extra: &[&str]) -> Command {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut cmd = Command::new("bash");
    cmd.arg(repo.join("bench/run"))
        .args(["--quick", "--no-plot"])
        .arg("--out")
        .arg(out)
        .arg("--rust-server")
        .arg(server)
        .args(extra);
    cmd
}

fn results(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap()
}

#[test]
fn the_quick_benchmark_against_our_server_gives_numbers_with_zero_errors() {
    let out = tempfile::tempdir().unwrap();
    let status = bench_run(out.path(), &debug_server(), &["--servers", "rust", "--scenarios", "all"])
        .status()
        .expect("cannot run bash bench/run");
    assert!(status.success(), "bench/run --quick failed (its output is above)");

    let json = results(out.path());
    assert_eq!(json["failures"].as_array().map(Vec::len), Some(0), "{}", json["failures"]);
    let scenarios = json["results"].as_object().expect("results by scenario");
    for scenario in ["unary", "unary_rate", "server_stream", "client_stream", "bidi"] {
        let cell = &scenarios[scenario]["rust"];
        assert_eq!(cell["errors"], 0, "{scenario}: {cell}");
        for number in ["msgs_per_s", "server_cpu_us_per_msg", "server_peak_rss_mib"] {
            let value = cell[number].as_f64().unwrap_or(0.0);
            assert!(value > 0.0, "{scenario}: {number} = {value}");
        }
        assert!(cell["latency_ms"]["p99"].as_f64().unwrap_or(0.0) > 0.0, "{scenario}: no latency");
    }

    // messages/s is calls/s × 1000 only because the harness counted 1000 in every call it
    // checked: the counts it saw, per call, each way that carries the 1000.
    for (scenario, counts) in [
        ("server_stream", &["received"][..]),
        ("client_stream", &["sent", "counted"][..]),
        ("bidi", &["sent", "received"][..]),
    ] {
        let check = &scenarios[scenario]["rust"]["count_check"];
        assert!(check["calls"].as_u64().unwrap_or(0) > 0, "{scenario}: no calls counted: {check}");
        for count in counts {
            assert_eq!(check[count], serde_json::json!([TICKS]), "{scenario}: {count}: {check}");
        }
    }
}

/// A server that sends fewer messages than asked must fail the benchmark, not inflate it: our
/// server behind a wrapper that turns the harness's `--stock-ticks 1000` into 999.
#[test]
fn a_server_that_sends_fewer_messages_fails_the_benchmark() {
    let out = tempfile::tempdir().unwrap();
    let short = out.path().join("short-server");
    std::fs::write(
        &short,
        format!(
            "#!/usr/bin/env bash\nargs=()\nwhile (($#)); do\n  \
             if [[ $1 == --stock-ticks ]]; then args+=(\"$1\" 999); shift 2; else args+=(\"$1\"); shift; fi\n\
             done\nexec '{}' \"${{args[@]}}\"\n",
            debug_server().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&short, std::fs::Permissions::from_mode(0o755)).unwrap();

    let run = bench_run(
        out.path(),
        &short,
        &["--servers", "rust", "--scenarios", "server_stream", "--warmup", "0.2", "--duration", "0.5"],
    )
    .output()
    .expect("cannot run bash bench/run");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "bench/run must fail; its stderr:\n{stderr}");
    let expected = "rust server, server_stream: wrong message count in 8 checked calls: \
                    call 1: 999 messages received from it, expected 1000";
    assert!(stderr.contains(expected), "no {expected:?} in bench/run's stderr:\n{stderr}");

    let json = results(out.path());
    assert!(json["results"]["server_stream"]["rust"].is_null(), "the short cell kept its numbers: {json}");
    let failures = json["failures"].to_string();
    assert!(failures.contains("999 messages received from it"), "{failures}");
}
