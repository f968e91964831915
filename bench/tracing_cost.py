#!/usr/bin/env python3
"""What traces and the access log cost our server, A/B, with bench/run's own cells:

    python3 bench/tracing_cost.py --before PATH/TO/OLD/server [--rounds 3] [--scenarios unary,bidi]

Variants, taking turns round by round: `before` (a server binary built without tracing, for
"compiled in but off costs nothing"), `off` (this tree's server, no tracing flags), `traces`
(`--otlp-endpoint` to tests/interop/go/cmd/otlp-sink, a collector that keeps nothing, on the
load's CPU) and `traces+log` (plus `--access-log json` to a file). Each run is one
`bench/run --servers rust --no-build` invocation; the table gives each variant's median
server CPU per call (unary) and per message (streaming) over the rounds, with min–max, and
the sink's span count. Build first: `cargo build --release --example server` and
`bash tests/interop/setup.sh`.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SERVER = os.path.join(REPO, "target", "release", "examples", "server")
SINK = os.path.join(REPO, "target", "interop", "bin", "otlp-sink")


def wrapper(path, binary, flags):
    with open(path, "w") as f:
        f.write("#!/bin/sh\nexec " + binary + " \"$@\" " + " ".join(flags) + "\n")
    os.chmod(path, 0o755)
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, help="a server binary without tracing")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--scenarios", default="unary,bidi")
    ap.add_argument("--duration", default="8")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="tracing-cost-")
    sink = subprocess.Popen(["taskset", "-c", "1", SINK], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    port = int(sink.stdout.readline().split()[1])
    variants = {
        "before": a.before,
        "off": SERVER,
        "traces": wrapper(os.path.join(tmp, "traces.sh"), SERVER, ["--otlp-endpoint", f"http://127.0.0.1:{port}"]),
        "traces+log": wrapper(os.path.join(tmp, "log.sh"), SERVER,
                              ["--otlp-endpoint", f"http://127.0.0.1:{port}", "--access-log", "json",
                               "--access-log-file", os.path.join(tmp, "access.log")]),
    }
    scenarios = a.scenarios.split(",")
    figures = {v: {s: [] for s in scenarios} for v in variants}
    try:
        for r in range(1, a.rounds + 1):
            for v, binary in variants.items():
                out = os.path.join(tmp, f"{v}-{r}")
                cmd = ["bash", os.path.join(HERE, "run"), "--servers", "rust", "--scenarios", a.scenarios,
                       "--duration", a.duration, "--warmup", "2", "--repeat", "1", "--no-build", "--no-publish",
                       "--no-plot", "--rust-server", binary, "--out", out]
                print(f"tracing_cost: round {r}/{a.rounds}, {v}", file=sys.stderr, flush=True)
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, timeout=900)
                doc = json.load(open(os.path.join(out, "results.json")))
                for s in scenarios:
                    cell = doc["results"][s]["rust"]
                    key = "server_cpu_us_per_call" if s.startswith("unary") else "server_cpu_us_per_msg"
                    figures[v][s].append(cell[key])
    finally:
        sink.stdin.close()
        spans = sink.stdout.read().strip()
        sink.wait(30)
    print(f"| variant | " + " | ".join(f"{s}: server CPU µs per {'call' if s.startswith('unary') else 'message'}"
                                      for s in scenarios) + " |")
    print("|---|" + "---:|" * len(scenarios))
    base = {s: statistics.median(figures["off"][s]) for s in scenarios}
    for v in variants:
        cells = []
        for s in scenarios:
            xs = figures[v][s]
            m = statistics.median(xs)
            cells.append(f"{m:.2f} ({min(xs):.2f}–{max(xs):.2f}), ×{m / base[s]:.2f}")
        print(f"| {v} | " + " | ".join(cells) + " |")
    print(f"\nsink: {spans}; {a.rounds} rounds of {a.duration} s cells; runs in {tmp}")


if __name__ == "__main__":
    main()
