#!/usr/bin/env python3
"""Flake hunt: the whole test suite, N times, on a deliberately loaded machine.

    python3 tests/stress.py                      # 20 runs of `cargo test --release` (the README's test command)
    python3 tests/stress.py --runs 10 --features tls
    python3 tests/stress.py --runs 3 --no-load -- --test hostile   (args after -- go to cargo test)

While the suite runs, one busy loop per core (`--hogs`, default: as many as cores) competes
with it for the CPU, the way other jobs do on a shared CI machine. Each run's full output is
kept under target/stress/; at the end a report lists every test that failed at least once,
how often, and the text of its first failure. It is written to the console and to
tests/stress-report.md (stress-report-tls.md with --features tls, or --report). Exit status 1 when any test failed.

Bounded: each run has a time limit (--run-timeout, default 30 min) and the hogs stop with the
script, even when it is interrupted.
"""

import argparse
import collections
import datetime
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNNING = re.compile(r"^\s+(?:Running (?:unittests )?(\S+) \(|Doc-tests (\S+))")
RESULT = re.compile(r"^test (.+?) \.\.\. (ok|FAILED|ignored)")
SUMMARY = re.compile(r"^test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored")
FAILURE_START = re.compile(r"^---- (\S+) stdout ----$")


def binary_name(source):
    """`tests/hostile.rs` -> `hostile`, `src/lib.rs` -> `lib`."""
    return Path(source).stem


def parse(log):
    """Per test binary and test: outcome; plus failure texts and the summary counts."""
    outcomes, failures = {}, {}
    passed = failed = ignored = 0
    binary, current, text = "?", None, []
    for line in log.splitlines():
        if m := RUNNING.match(line):
            binary = binary_name(m.group(1)) if m.group(1) else "doc"
            continue
        if m := RESULT.match(line):
            outcomes[f"{binary}::{m.group(1)}"] = m.group(2)
            continue
        if m := SUMMARY.match(line):
            passed += int(m.group(1))
            failed += int(m.group(2))
            ignored += int(m.group(3))
        if m := FAILURE_START.match(line):
            current, text = f"{binary}::{m.group(1)}", []
            continue
        if current is not None:
            if line.startswith("---- ") or line == "failures:":
                failures[current] = "\n".join(text).strip()
                current = None
                if m := FAILURE_START.match(line):
                    current, text = f"{binary}::{m.group(1)}", []
            else:
                text.append(line)
    if current is not None:
        failures[current] = "\n".join(text).strip()
    return outcomes, failures, (passed, failed, ignored)


class Hogs:
    """One busy process per core, at normal priority, stopped on exit."""

    def __init__(self, count):
        self.procs = [
            subprocess.Popen([sys.executable, "-c", "while True: pass"], stdin=subprocess.DEVNULL)
            for _ in range(count)
        ]

    def stop(self):
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait()


def main():
    argv = sys.argv[1:]
    extra = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1 :]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--features", default="", help="cargo features, e.g. tls")
    ap.add_argument("--hogs", type=int, default=os.cpu_count() or 2, help="busy loops (default: one per core)")
    ap.add_argument("--no-load", action="store_true", help="no busy loops")
    ap.add_argument("--run-timeout", type=float, default=1800, help="seconds per run")
    ap.add_argument("--report", help="default: tests/stress-report.md, or stress-report-FEATURES.md")
    args = ap.parse_args(argv)
    args.code = code_version()  # before the runs: a pull during them must not relabel them

    if args.report is None:
        suffix = "-" + args.features.replace(",", "-") if args.features else ""
        args.report = str(ROOT / "tests" / f"stress-report{suffix}.md")
    cargo = ["cargo", "test", "--release", "--no-fail-fast"]
    if args.features:
        cargo += ["--features", args.features]
    cargo += extra
    logs = ROOT / "target" / "stress"
    logs.mkdir(parents=True, exist_ok=True)

    print(f"building: {' '.join(cargo)} --no-run", flush=True)
    subprocess.run(cargo + ["--no-run"], cwd=ROOT, check=True)

    hogs = None if args.no_load else Hogs(args.hogs)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    fail_count = collections.Counter()
    first_failure = {}
    tests_seen = set()
    rows = []
    started = time.monotonic()
    interrupted = False
    try:
        for run in range(1, args.runs + 1):
            t0 = time.monotonic()
            log_path = logs / f"run-{run:02}{'-' + args.features if args.features else ''}.log"
            try:
                proc = subprocess.run(cargo, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True, errors="replace", timeout=args.run_timeout)
                out, code = proc.stdout, proc.returncode
            except subprocess.TimeoutExpired as e:
                out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
                out += f"\n(stress.py: run timed out after {args.run_timeout:.0f} s)\n"
                code = "timeout"
            log_path.write_text(out)
            outcomes, failures, (passed, failed, ignored) = parse(out)
            tests_seen.update(outcomes)
            bad = sorted(t for t, o in outcomes.items() if o == "FAILED")
            for t in bad:
                fail_count[t] += 1
                first_failure.setdefault(t, (run, failures.get(t, "(no failure text captured)")))
            if code not in (0,) and not bad:
                # A build error, a crashed test binary or a timeout: count it, never hide it.
                key = f"(run exited {code} with no failed test line)"
                fail_count[key] += 1
                first_failure.setdefault(key, (run, out[-3000:]))
                bad = [key]
            secs = time.monotonic() - t0
            rows.append((run, passed, failed, ignored, secs, code))
            print(f"[run {run}/{args.runs}] {passed} passed, {failed} failed, {ignored} ignored "
                  f"in {secs:.0f} s (exit {code}){': ' + ', '.join(bad) if bad else ''}  "
                  f"[{time.monotonic() - started:.0f} s so far]", flush=True)
    except (KeyboardInterrupt, SystemExit):
        # Stopped early (Ctrl-C, SIGTERM): the runs that finished still make a report.
        interrupted = True
    finally:
        if hogs:
            hogs.stop()

    report = render(args, cargo, rows, tests_seen, fail_count, first_failure, interrupted)
    Path(args.report).write_text(report)
    print()
    print(report)
    return 1 if fail_count else 0


def code_version():
    """The commit the runs tested, and whether the work tree differed from it."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, timeout=30, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=30, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError) as e:
        return f"unknown ({e})"
    return f"commit {commit}" + (" with uncommitted changes" if dirty else "")


def render(args, cargo, rows, tests_seen, fail_count, first_failure, interrupted=False):
    load = "none" if args.no_load else f"{args.hogs} busy loops on {os.cpu_count()} cores"
    lines = [
        "# Flake hunt report",
        "",
        f"- command: `{shlex.join(['python3', 'tests/stress.py', *sys.argv[1:]])}`",
        f"- code: {args.code}",
        f"- each run: `{' '.join(cargo)}`",
        f"- load: {load}",
        f"- machine: {platform.node()}, {platform.machine()}, {os.cpu_count()} cores",
        f"- finished: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- runs × tests: {len(rows)} × {len(tests_seen)}; failed runs: "
        f"{sum(1 for r in rows if r[2] or r[5] != 0)}; test failures: {sum(fail_count.values())}",
        "",
        "| run | passed | failed | ignored | seconds | exit |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    if interrupted:
        lines.insert(2, f"- **interrupted** after {len(rows)} of {args.runs} runs")
    lines += [f"| {r} | {p} | {f} | {i} | {s:.0f} | {c} |" for r, p, f, i, s, c in rows]
    lines.append("")
    if not fail_count:
        lines.append("No test failed.")
    else:
        lines.append("## Tests that failed at least once")
        for test, n in fail_count.most_common():
            run, text = first_failure[test]
            lines += ["", f"### {test}: {n} of {len(rows)} runs (first in run {run})", "", "```", text[:4000], "```"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
