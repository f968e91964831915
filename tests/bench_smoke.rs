//! Keeps the benchmark harness alive: `bench/run --quick` against our server only must give
//! numbers for every scenario with zero errors. Nothing about speed is asserted here; speed
//! lives in `bash bench/run` and BENCHMARKS.md.

use std::path::PathBuf;
use std::process::Command;

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

#[test]
fn the_quick_benchmark_against_our_server_gives_numbers_with_zero_errors() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = tempfile::tempdir().unwrap();
    let status = Command::new("bash")
        .arg(repo.join("bench/run"))
        .args(["--quick", "--servers", "rust", "--scenarios", "all", "--no-plot"])
        .arg("--out")
        .arg(out.path())
        .arg("--rust-server")
        .arg(debug_server())
        .status()
        .expect("cannot run bash bench/run");
    assert!(status.success(), "bench/run --quick failed (its output is above)");

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("results.json")).unwrap()).unwrap();
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
}
