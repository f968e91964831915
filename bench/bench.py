#!/usr/bin/env python3
"""bench/run: our greeter server side by side with grpc-go, Python grpcio, tonic and C++.

Every peer serves proto/greeter.proto with the tutorial's semantics. Each cell (scenario x
server) starts a fresh server pinned to CPU 0 (one worker thread/core), warms it up with ghz,
then measures one ghz run pinned to CPU 1; streaming cells then count their messages call by call
(count_msgs.py). With --repeat N every cell is measured N times, round by round (each round runs
every server once before the next), and reported as the median of its runs with their min-max.
Results: <out>/results.json, results.md, plot.png.
Standard library only; the plot runs in target/bench/venv (bench/requirements.txt).
This file is main(); the parts it runs are common.py, peers.py, measure.py and report.py
(bench/README.md says which does what).
"""
import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import time

from common import (ALL_SERVERS, BENCH, CLIENT_CPU, EXTRA_SERVERS, LABELS, PLOT_TIMEOUT_S, SCENARIOS, SERVER_CPU,
                    STREAMING, TB, TICKS, die, log)
from peers import (server_spec, setup_cpp, setup_cpp156, setup_ghz, setup_interop, setup_plot_venv, setup_rust,
                   setup_tonic)
from measure import measure, wait_idle
import gateway_cost
import payload
import scale
import tracing
from report import combine, machine, markdown, publish, render, run_summary, targets, versions


def main():
    ap = argparse.ArgumentParser(prog="bench/run", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="~2.5 s per cell (0.5 s warm-up + 2 s)")
    ap.add_argument("--servers", default=",".join(ALL_SERVERS), help=f"comma list of {','.join(ALL_SERVERS + EXTRA_SERVERS)} (default: all but "
                    f"{','.join(EXTRA_SERVERS)}, the C++ peer on grpcio-sys's C-core 1.56.2)")
    ap.add_argument("--scenarios", default="all", help=f"'all' or a comma list of {','.join(SCENARIOS)}")
    ap.add_argument("--out", help="result directory (default target/bench)")
    ap.add_argument("--duration", type=float, help="measured seconds per cell (default 10, quick 2)")
    ap.add_argument("--warmup", type=float, help="warm-up seconds per cell (default 2, quick 0.5)")
    ap.add_argument("--repeat", type=int, metavar="N",
                    help="measure every cell N times, servers taking turns round by round, and report the "
                         "median with min-max (default 3, quick 1)")
    ap.add_argument("--rps", type=int, help="offered rate of unary_rate (default: half the slowest max rps)")
    ap.add_argument("--rust-server", help="use this greeter server binary instead of building it")
    ap.add_argument("--wait-idle", type=float,
                    help="before each cell wait up to this many s for other processes to use < 0.3 cores "
                         "(default 20 full, 0 quick)")
    ap.add_argument("--no-build", action="store_true", help="skip every build step (binaries must exist)")
    ap.add_argument("--no-plot", action="store_true", help="skip the PNG (and its venv)")
    ap.add_argument("--no-publish", action="store_true", help="full run: do not update BENCHMARKS.md / bench/results")
    ap.add_argument("--scale", action="store_true",
                    help="the scale curves instead of the cells (bench/scale.py): idle subscriptions, idle Chats, "
                         "connections, active Chats and open-loop unary, N up to 10,000; servers default to "
                         + ",".join(scale.SERVERS))
    ap.add_argument("--gateway", action="store_true",
                    help="the gRPC-Web gateway's cost instead of the cells (bench/gateway_cost.py): SayHello and "
                         "GetStockPrice straight to our server and through the gateway; <out>/gateway.{json,md}")
    ap.add_argument("--payload", action="store_true",
                    help="the compression scenario instead of the cells (bench/payload.py): unary with a 64 KiB "
                         "compressible name, plain and gzip, ours and grpc-go")
    ap.add_argument("--tracing", action="store_true",
                    help="the cost of tracing instead of the cells (bench/tracing.py): unary, ours off, traced, traced "
                         "with the access log and sampled at 1 %%, against grpc-go off and with otelgrpc")
    ap.add_argument("--instructions", action="store_true",
                    help="--tracing: count our variants' instructions per call under valgrind's callgrind instead "
                         "of timing them (a figure a busy machine does not move)")
    ap.add_argument("--calls", type=int, default=2000, help="--tracing --instructions: calls counted per variant")
    ap.add_argument("--curves", default="all", help=f"--scale: 'all' or a comma list of {','.join(scale.CURVES)}")
    ap.add_argument("--scale-duration", type=float, help="--scale: measured seconds of an active point (default 10, quick 3)")
    ap.add_argument("--step-duration", type=float, help="--scale: seconds of an open-loop step (default 5, quick 2)")
    ap.add_argument("--render", metavar="RESULTS_JSON",
                    help="only rebuild results.md, plot.png (and, without --out/--no-publish, BENCHMARKS.md) "
                         "from an earlier results.json")
    args = ap.parse_args()
    if args.render:
        return render(args)
    args.duration = args.duration or (2.0 if args.quick else 10.0)
    args.warmup = args.warmup or (0.5 if args.quick else 2.0)
    if args.wait_idle is None:
        args.wait_idle = 0.0 if args.quick else 20.0
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.repeat < 1:
        die("--repeat must be at least 1")
    if args.payload and args.servers == ",".join(ALL_SERVERS):
        args.servers = ",".join(payload.SERVERS)
    if args.scale and args.servers == ",".join(ALL_SERVERS):
        args.servers = ",".join(scale.SERVERS)
    if args.tracing and args.servers == ",".join(ALL_SERVERS):
        args.servers = ",".join(tracing.VARIANTS)
    if args.tracing:
        args.no_plot = True  # a table, no plot
    args.scale_duration = args.scale_duration or (3.0 if args.quick else 10.0)
    if args.gateway:
        out = os.path.abspath(args.out or TB)
        logdir = os.path.join(out, "logs")
        os.makedirs(logdir, exist_ok=True)
        head = {"command": " ".join(["bash bench/run"] + sys.argv[1:]),
                "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
        return gateway_cost.main(args, out, logdir, head)
    args.step_duration = args.step_duration or (2.0 if args.quick else 5.0)
    servers = [s for s in args.servers.split(",") if s]
    for s in servers:
        if s not in ALL_SERVERS + EXTRA_SERVERS:
            die(f"unknown server {s!r} (have {', '.join(ALL_SERVERS + EXTRA_SERVERS)})")
    scenarios = list(SCENARIOS) if args.scenarios == "all" else [s for s in args.scenarios.split(",") if s]
    for s in scenarios:
        if s not in SCENARIOS:
            die(f"unknown scenario {s!r} (have {', '.join(SCENARIOS)})")
    scenarios = [s for s in SCENARIOS if s in scenarios]  # unary before unary_rate
    out = os.path.abspath(args.out or TB)
    os.makedirs(out, exist_ok=True)
    logdir = os.path.join(out, "logs")
    shutil.rmtree(logdir, ignore_errors=True)
    os.makedirs(logdir)
    if not shutil.which("taskset"):
        die("taskset (util-linux) is needed to pin server and client to their CPUs")
    if (os.cpu_count() or 1) < 2:
        die("needs at least 2 CPUs (server on CPU 0, ghz on CPU 1)")
    start = time.time()
    machine_info = machine()

    log(f"bench: setup for {', '.join(servers)}")
    try:
        setup_ghz()
        if "rust" in servers:
            setup_rust(args)
        if args.scale or args.payload or args.tracing or "go" in servers or "python" in servers or set(scenarios) & set(STREAMING):
            setup_interop(args)  # the Go and Python peers, and count_msgs.py's grpcio
        if "tonic" in servers:
            setup_tonic(args)
        if "cpp" in servers:
            setup_cpp(args)
        if "cpp156" in servers:
            setup_cpp156(args)
    except subprocess.TimeoutExpired as e:
        die(f"setup step `{' '.join(e.cmd)}` did not finish within {e.timeout / 60:g} min; killed")
    plot_py = None
    if not args.no_plot:
        try:
            plot_py = setup_plot_venv()
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
            log(f"bench: WARNING: no plot venv ({e}); continuing without the PNG")
    setup_s = time.time() - start
    if args.tracing:
        head = {"command": " ".join(["bash bench/run"] + sys.argv[1:]),
                "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                "machine": machine_info}
        if args.instructions:
            rc = tracing.instructions(args, out, logdir, head)
        else:
            rc = tracing.main(args, servers, out, logdir, head)
        log(f"bench: done in {(time.time() - start) / 60:.1f} min (setup {setup_s:.0f} s)")
        return rc
    if args.payload:
        head = {"command": " ".join(["bash bench/run"] + sys.argv[1:]),
                "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
        return payload.main(args, servers, out, logdir, head)
    if args.scale:
        log(f"bench: setup took {setup_s:.0f} s; scale curves for {', '.join(servers)}, {args.repeat} round(s)")
        head = {"command": " ".join(["bash bench/run"] + sys.argv[1:]),
                "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
        rc = scale.main(args, servers, out, logdir, machine_info, versions(servers), plot_py, head)
        log(f"bench: done in {(time.time() - start) / 60:.1f} min (setup {setup_s:.0f} s)")
        return rc

    cells = [(scn, s) for scn in scenarios for s in servers]
    n = args.repeat
    per_run = args.warmup + args.duration + 1.5
    planned = len(cells) * n  # runs; shrinks when a failed cell skips its later rounds
    log(f"bench: setup took {setup_s:.0f} s; {len(cells)} cells × {n} round{'s' * (n > 1)}, {args.warmup:g} s "
        f"warm-up + {args.duration:g} s each, ~{per_run * planned / 60:.1f} min. Server on CPU {SERVER_CPU}, "
        f"ghz on CPU {CLIENT_CPU}.")
    for s in servers:
        log(f"bench:   {LABELS[s]:<22} {server_spec(s, 0, args)[2]}")
    results, failures, workers = {}, [], {}
    fixed_rps = args.rps
    t_run = time.time()
    done = 0
    # Scenario by scenario, and within one, round by round over every server: drift of the
    # machine (other jobs, thermal) then falls on every server alike, and unary_rate's rate
    # comes from unary's medians.
    for scn in scenarios:
        if scn == "unary_rate" and fixed_rps is None:
            maxes = [c["calls_per_s"] for c in results.get("unary", {}).values() if c and c["calls_per_s"]]
            fixed_rps = max(100, int(round(min(maxes) / 2 / 100.0) * 100)) if maxes else 1000
            log(f"bench: unary_rate offers {fixed_rps} calls/s (half the slowest max rps)")
        runs = {s: [] for s in servers}  # None once a round of that server failed
        for r in range(1, n + 1):
            where = f", round {r}/{n}" if n > 1 else ""
            for s in servers:
                if runs[s] is None:
                    continue
                if args.wait_idle > 0:
                    idle_load = wait_idle(args.wait_idle)
                    if idle_load >= 0.3:
                        log(f"bench: the machine stays busy ({idle_load:.2f} cores used by others); measuring anyway")
                try:
                    one = measure(s, scn, args, fixed_rps if scn == "unary_rate" else None, logdir, r)
                    workers[s] = f"{one['workers']} (OS threads in the process: {one['server_threads']})"
                    runs[s].append(one)
                    if one["errors"] > 0 or not one["calls"]:
                        failures.append(f"{scn}/{s}{where}: {one['errors']} errors of {one['calls']} calls "
                                        f"{one['error_kinds']}")
                    summary = run_summary(one, scn)
                except (RuntimeError, OSError, ValueError, json.JSONDecodeError) as e:
                    runs[s] = None  # the cell fails as a whole; its later rounds would not count
                    failures.append(f"{scn}/{s}{where}: {e}")
                    planned -= n - r
                    summary = f"FAILED: {e}" + (f" (rounds {r + 1}–{n} skipped)" if r < n else "")
                done += 1
                el = time.time() - t_run
                left = (el / done) * (planned - done)
                log(f"[{done:>2}/{planned} {el:5.0f}s elapsed, ~{left:4.0f}s left] {scn:<13} {s:<6} "
                    f"{f'round {r}/{n} ' if n > 1 else ''}{summary}")
        for s in servers:
            results.setdefault(scn, {})[s] = combine(runs[s]) if runs[s] else None
            if n > 1 and runs[s]:
                log(f"bench:   {scn:<13} {s:<6} median of {n}: {run_summary(results[scn][s], scn)}")

    doc = {
        "command": " ".join(["bash bench/run"] + sys.argv[1:]),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info, "versions": versions(servers),
        "settings": {"quick": args.quick, "warmup_s": args.warmup, "duration_s": args.duration, "repeat": n,
                     "server_cpu": SERVER_CPU, "client_cpu": CLIENT_CPU, "ticks": TICKS,
                     "scenarios": {k: {kk: vv for kk, vv in SCENARIOS[k].items() if kk != "data"} for k in scenarios}},
        "servers": servers, "scenarios": scenarios, "fixed_rps": fixed_rps, "workers": workers,
        "results": results, "failures": failures, "elapsed_s": 0,
    }
    doc["targets"] = targets(results)
    doc["elapsed_s"] = time.time() - start
    doc["machine"]["loadavg_at_end"] = open("/proc/loadavg").read().split()[:3]
    json_path = os.path.join(out, "results.json")
    md_path = os.path.join(out, "results.md")
    with open(json_path, "w") as f:
        json.dump(doc, f, indent=1)
    md = markdown(doc)
    with open(md_path, "w") as f:
        f.write(md)
    plot = None
    if plot_py:
        plot = os.path.join(out, "plot.png")
        try:
            subprocess.run([plot_py, os.path.join(BENCH, "plot.py"), json_path, plot], check=True,
                           timeout=PLOT_TIMEOUT_S)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
            log(f"bench: WARNING: plot failed: {e}")
            plot = None
    print(md)
    if not args.quick and not args.out and not args.no_publish:
        publish(doc, md_path, plot)
    log(f"bench: done in {doc['elapsed_s'] / 60:.1f} min (setup {setup_s:.0f} s)")
    print(f"JSON: {json_path}")
    print(f"Markdown: {md_path}")
    if plot:
        print(f"Plot: {plot}")
    if failures:
        log("bench: FAILED cells:\n  " + "\n  ".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
