//! Keeps the benchmark harness alive: `bench/run --quick` against our server only must give
//! numbers for every scenario with zero errors, and every streaming call it counts must carry
//! exactly the 1000 messages its messages/s assumes; with `--repeat N` every figure must be the
//! median of the N runs it keeps, and a failure in any round must fail the cell; `--tracing` must
//! count every span and access-log line of its runs. Nothing about speed is asserted here;
//! speed lives in `bash bench/run` and BENCHMARKS.md.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use common::process::{output_within, status_within, DEADLINE};

/// Messages per streaming call (bench/common.py's TICKS).
const TICKS: u64 = 1000;

/// A measuring `bench/run`: seconds of cells, but its set-up may first install ghz and build
/// tests/interop's peers (Go binaries, the grpcio venv).
const BENCH_RUN_DEADLINE: Duration = Duration::from_secs(15 * 60);

// One bench/run at a time: each pins its server to CPU 0 and ghz to CPU 1, so two would measure each other.
static ONE_BENCH_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Held for a test's whole run; a test that failed while holding it does not fail the rest.
fn one_bench_at_a_time() -> MutexGuard<'static, ()> {
    ONE_BENCH_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The server example that `cargo test` builds next to the test binaries, in the test's own
/// profile (the harness would otherwise build one itself).
fn test_build_server() -> PathBuf {
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
    let _bench = one_bench_at_a_time();
    let out = tempfile::tempdir().unwrap();
    let status = status_within(
        bench_run(out.path(), &test_build_server(), &["--servers", "rust", "--scenarios", "all"]),
        "bash bench/run --quick",
        BENCH_RUN_DEADLINE,
    );
    assert!(status.success(), "bench/run --quick failed (its output is above)");

    let json = results(out.path());
    assert_eq!(json["failures"].as_array().map(Vec::len), Some(0), "{}", json["failures"]);
    assert_eq!(json["settings"]["repeat"], 1, "--quick measures each cell once");
    let scenarios = json["results"].as_object().expect("results by scenario");
    for scenario in ["unary", "unary_rate", "server_stream", "client_stream", "bidi"] {
        let cell = &scenarios[scenario]["rust"];
        assert_eq!(cell["errors"], 0, "{scenario}: {cell}");
        assert_eq!(cell["runs"].as_array().map(Vec::len), Some(1), "{scenario}: {cell}");
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
    let _bench = one_bench_at_a_time();
    let out = tempfile::tempdir().unwrap();
    let short = out.path().join("short-server");
    std::fs::write(
        &short,
        format!(
            "#!/usr/bin/env bash\nargs=()\nwhile (($#)); do\n  \
             if [[ $1 == --stock-ticks ]]; then args+=(\"$1\" 999); shift 2; else args+=(\"$1\"); shift; fi\n\
             done\nexec '{}' \"${{args[@]}}\"\n",
            test_build_server().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&short, std::fs::Permissions::from_mode(0o755)).unwrap();

    let run = output_within(
        bench_run(
            out.path(),
            &short,
            &["--servers", "rust", "--scenarios", "server_stream", "--warmup", "0.2", "--duration", "0.5"],
        ),
        "bash bench/run --quick against the short server",
        BENCH_RUN_DEADLINE,
    );
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

/// `bash bench/run --render JSON --out OUT --no-plot`: results.md again from a results.json.
fn render(json: &Path, out: &Path) -> String {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut cmd = Command::new("bash");
    cmd.arg(repo.join("bench/run")).arg("--render").arg(json).arg("--out").arg(out).arg("--no-plot");
    let run = output_within(cmd, "bash bench/run --render", DEADLINE);
    assert!(run.status.success(), "--render failed: {}", String::from_utf8_lossy(&run.stderr));
    std::fs::read_to_string(out.join("results.md")).unwrap()
}

fn number(v: &serde_json::Value, what: &str) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("{what} is not a number: {v}"))
}

/// `--repeat 2`: each cell keeps both runs, in rounds 1 and 2, and reports as its figure the
/// median of the two (their mean); results.md shows "median (min–max)" and says 2 runs, and
/// `--render` rebuilds it, from that results.json and from one without per-run values.
#[test]
fn the_repeated_benchmark_reports_the_median_of_its_runs() {
    let _bench = one_bench_at_a_time();
    let out = tempfile::tempdir().unwrap();
    let mut cmd = bench_run(
        out.path(),
        &test_build_server(),
        &["--servers", "rust", "--scenarios", "unary,server_stream", "--repeat", "2"],
    );
    // 2 s, not 0.5: server CPU is read in 10 ms clock ticks, and a starved server on a busy
    // machine can use none in half a second (0 µs per message).
    cmd.args(["--warmup", "0.2", "--duration", "2"]);
    let status = status_within(cmd, "bash bench/run --quick --repeat 2", BENCH_RUN_DEADLINE);
    assert!(status.success(), "bench/run --quick --repeat 2 failed (its output is above)");

    let mut json = results(out.path());
    assert_eq!(json["settings"]["repeat"], 2);
    for scenario in ["unary", "server_stream"] {
        let cell = &json["results"][scenario]["rust"];
        let runs = cell["runs"].as_array().unwrap_or_else(|| panic!("{scenario}: no runs: {cell}"));
        assert_eq!(runs.iter().map(|r| r["round"].clone()).collect::<Vec<_>>(), [1, 2], "{scenario}");
        for path in
            [&["calls_per_s"][..], &["msgs_per_s"][..], &["server_cpu_us_per_msg"][..], &["latency_ms", "p99"][..]]
        {
            let at = |v: &serde_json::Value| path.iter().fold(v.clone(), |v, k| v[k].clone());
            let (a, b) = (number(&at(&runs[0]), "run 1"), number(&at(&runs[1]), "run 2"));
            let median = number(&at(cell), "the median");
            assert!(a > 0.0 && b > 0.0, "{scenario} {path:?}: runs {a}, {b}");
            assert!(
                (median - (a + b) / 2.0).abs() <= 1e-9 * median.abs().max(1.0),
                "{scenario} {path:?}: median {median} of runs {a} and {b}"
            );
        }
        for run in runs {
            assert_eq!(run["errors"], 0, "{scenario}: {run}");
        }
    }

    let md = std::fs::read_to_string(out.path().join("results.md")).unwrap();
    assert!(md.starts_with("| scenario / metric: median of 2 runs (min–max) |"), "{md}");
    // unary's row "| calls/s | MEDIAN (MIN–MAX) |": the runs' lowest and highest, as rounded.
    let calls = json["results"]["unary"]["rust"]["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| number(&r["calls_per_s"], "calls/s"))
        .collect::<Vec<_>>();
    let row = md.lines().find(|l| l.starts_with("| calls/s |")).unwrap();
    let shown = row
        .trim_start_matches("| calls/s |")
        .split(['(', '–', ')'])
        .filter_map(|t| t.trim().replace(',', "").parse::<f64>().ok())
        .collect::<Vec<_>>();
    let expected = [(calls[0] + calls[1]) / 2.0, calls[0].min(calls[1]), calls[0].max(calls[1])];
    assert_eq!(shown.len(), 3, "not \"median (min–max)\": {row:?}");
    for (shown, expected) in shown.iter().zip(expected) {
        assert!((shown - expected).abs() <= 0.5, "{row:?}: {shown} shown for {expected}");
    }

    let again = tempfile::tempdir().unwrap();
    assert_eq!(render(&out.path().join("results.json"), again.path()), md);

    // A results.json from before --repeat: no runs, no settings.repeat.
    json["settings"].as_object_mut().unwrap().remove("repeat");
    for scenario in ["unary", "server_stream"] {
        json["results"][scenario]["rust"].as_object_mut().unwrap().remove("runs");
    }
    let old = tempfile::tempdir().unwrap();
    std::fs::write(old.path().join("results.json"), json.to_string()).unwrap();
    let md = render(&old.path().join("results.json"), old.path());
    assert!(md.starts_with("| scenario / metric | rust (ours, grpcio) |"), "{md}");
    let row = md.lines().find(|l| l.starts_with("| calls/s |")).unwrap();
    assert!(!row.contains('('), "a range without runs: {row:?}");
}

/// A cell whose second round fails fails as a whole, and the failure names the round: our
/// server behind a wrapper that serves 1000 ticks the first time it starts and 999 after.
#[test]
fn a_failure_in_a_later_round_fails_the_cell() {
    let _bench = one_bench_at_a_time();
    let out = tempfile::tempdir().unwrap();
    let (wrapper, started) = (out.path().join("flaky-server"), out.path().join("started"));
    std::fs::write(
        &wrapper,
        format!(
            "#!/usr/bin/env bash\nticks=1000\n[[ -e '{started}' ]] && ticks=999\ntouch '{started}'\nargs=()\n\
             while (($#)); do\n  \
             if [[ $1 == --stock-ticks ]]; then args+=(\"$1\" $ticks); shift 2; else args+=(\"$1\"); shift; fi\n\
             done\nexec '{}' \"${{args[@]}}\"\n",
            test_build_server().display(),
            started = started.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();

    let mut cmd =
        bench_run(out.path(), &wrapper, &["--servers", "rust", "--scenarios", "server_stream", "--repeat", "2"]);
    cmd.args(["--warmup", "0.2", "--duration", "0.5"]);
    let run = output_within(cmd, "bash bench/run --quick --repeat 2 against the flaky server", BENCH_RUN_DEADLINE);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "bench/run must fail; its stderr:\n{stderr}");
    assert!(stderr.contains("round 1/2 "), "round 1's progress line is missing:\n{stderr}");
    assert!(stderr.contains("round 2/2 FAILED"), "round 2's failure is missing:\n{stderr}");

    let json = results(out.path());
    assert!(json["results"]["server_stream"]["rust"].is_null(), "the failed cell kept its numbers: {json}");
    let failures = json["failures"].to_string();
    assert!(failures.contains("server_stream/rust, round 2/2: "), "{failures}");
    assert!(failures.contains("999 messages received from it"), "{failures}");
}

/// `bash bench/run --tracing --quick`: every variant of ours and of grpc-go gives a CPU cost
/// with zero errors, in the shape the lead's tooling reads (`results.<server>.<variant>`), and
/// the spans are counted, not assumed: every call of a fully traced run reaches the sink (the
/// calls served, warm-up included, equal the spans exported, none dropped), and the access
/// log has a line per call.
#[test]
fn the_quick_tracing_benchmark_counts_every_span_and_line() {
    let _bench = one_bench_at_a_time();
    let out = tempfile::tempdir().unwrap();
    let mut cmd = bench_run(out.path(), &test_build_server(), &["--tracing"]);
    // 2 s, not 0.5: server CPU is read in 10 ms clock ticks.
    cmd.args(["--warmup", "0.2", "--duration", "2"]);
    let status = status_within(cmd, "bash bench/run --tracing --quick", BENCH_RUN_DEADLINE);
    assert!(status.success(), "bench/run --tracing --quick failed (its output is above)");

    let json = results(out.path());
    assert_eq!(json["failures"].as_array().map(Vec::len), Some(0), "{}", json["failures"]);
    for (server, variants) in
        [("rust", &["off", "traces", "traces_log", "sampled_1pct"][..]), ("go", &["off", "traces"][..])]
    {
        for variant in variants {
            let cell = &json["results"][server][variant];
            assert_eq!(cell["errors"], 0, "{server} {variant}: {cell}");
            assert!(number(&cell["server_cpu_us_per_call"], "CPU per call") > 0.0, "{server} {variant}: {cell}");
            if *variant == "off" {
                continue;
            }
            assert_eq!(cell["spans_dropped"], 0, "{server} {variant}: {cell}");
            let exported = cell["spans_exported"].as_u64().unwrap();
            let served = cell["calls_served"].as_u64().unwrap();
            if *variant == "sampled_1pct" {
                assert!(exported < served / 10, "{server} {variant}: {exported} spans of {served} calls");
            } else {
                assert_eq!(exported, served, "{server} {variant}: a span per call");
            }
        }
    }
    let logged = &json["results"]["rust"]["traces_log"];
    assert_eq!(logged["log_lines"], logged["calls_served"], "a line per call: {logged}");
    assert!(json["targets"].as_array().is_some_and(|t| t.len() == 5), "{}", json["targets"]);
}
