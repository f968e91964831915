"""bench/run --tracing: what tracing costs a unary call, ours and grpc-go's, in the same run.

Variants, each a fresh server on CPU 0 under bench/run's unary cell (ghz on CPU 1, 50
callers on 4 connections, closed loop):

  rust  off           our server, no tracing flags
        traces        every call traced (--otlp-endpoint), spans to otlp-sink
        traces_log    the same, and --access-log json to a file
        sampled_1pct  OTEL_TRACES_SAMPLER=parentbased_traceidratio, OTEL_TRACES_SAMPLER_ARG=0.01
  go    off           tests/interop/go/cmd/otel-server --traces=false: grpc-go, nothing traced
        traces        the same server with otelgrpc's stats handler (traces only), the SDK's
                      batch span processor and OTLP exporter to otlp-sink

otlp-sink (tests/interop/go/cmd/otlp-sink) answers every export at once and counts the spans;
it runs on CPU 1 with the load, a fresh one per run, so each run's spans are its own. CPU is
the server process's, every thread (the export and log threads too), read from /proc around
the measured run. Round r runs every variant of every server once before round r+1, every
other round in the opposite order; a figure is the median of its rounds, and an overhead is a
variant's median minus its server's `off` (the table also gives each round's difference).

Spans are counted, not assumed: each server is stopped gracefully after its run (our server
exports what is left and logs "spans: N exported, M dropped"; grpc-go's provider shuts down),
and the sink's count must equal the calls served (warm-up and measured run) for a 100 %
variant; dropped = calls - exported there, and our server's own count for the sampled one.
The access log's lines are counted against the calls too.
Results: <out>/tracing.json (and results.json, the same), tracing.md.

With --instructions, our variants instead run under valgrind's callgrind, which counts the
instructions every thread of the server executes over --calls unary calls (after 300 to warm
up): a figure that other work on the machine does not move, for judging a change on a busy
machine. It counts user space only (no system calls, no context switches), and at
callgrind's slow pace every batch leaves by its timer, small: it weighs the export's
per-request cost more than a loaded server does. Results: <out>/instructions.{json,md}.
"""
import glob
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import time

from common import CLIENT_CPU, PROTO, SCENARIOS, SERVER_CPU, log
from measure import busy_cpu_s, children_cpu_s, free_port, ghz_argv, proc_status, proc_times, run_ghz, wait_idle
from peers import GHZ, INTEROP, server_spec

SINK = os.path.join(INTEROP, "bin", "otlp-sink")
OTEL_SERVER = os.path.join(INTEROP, "bin", "otel-server")
VARIANTS = {"rust": ["off", "traces", "traces_log", "sampled_1pct"], "go": ["off", "traces"]}
SAMPLED = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.01"}
STOP_DEADLINE_S = 30  # a graceful stop, its last spans exported
# The bar, judged on the medians: (name, variant, minus, limit or None for "≤ grpc-go's").
TARGETS = [
    ("traces over off ≤ grpc-go's otelgrpc over off", ("rust", "traces"), ("rust", "off"), None),
    ("traces over off ≤ 3 µs", ("rust", "traces"), ("rust", "off"), 3.0),
    ("the access log over traces ≤ 1 µs", ("rust", "traces_log"), ("rust", "traces"), 1.0),
    ("sampled at 1 % over off ≤ 0.5 µs", ("rust", "sampled_1pct"), ("rust", "off"), 0.5),
]


class Process:
    """A process pinned to `cpu`, its output to `log_path`."""

    def __init__(self, argv, cpu, log_path, env=None, stdin=False, stdout=None):
        self.log = open(log_path, "ab")
        self.p = subprocess.Popen(["taskset", "-c", cpu] + argv, env=dict(os.environ, **(env or {})),
                                  stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                  stdout=stdout or self.log, stderr=self.log)

    def stop(self, sig=signal.SIGTERM, deadline_s=STOP_DEADLINE_S):
        """Signals it and waits; kills it past the deadline. Returns whether it stopped in time."""
        in_time = True
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(deadline_s)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
                in_time = False
        self.log.close()
        return in_time


class Sink:
    """otlp-sink on the load's CPU; `spans()` stops it and returns what it counted."""

    def __init__(self, logdir):
        self.proc = Process([SINK], CLIENT_CPU, os.path.join(logdir, "otlp-sink.log"), stdin=True,
                            stdout=subprocess.PIPE)
        line = self.proc.p.stdout.readline().decode()
        if not line.startswith("LISTENING "):
            self.proc.stop(signal.SIGKILL)
            raise RuntimeError(f"otlp-sink did not start: {line!r}")
        self.port = int(line.split()[1])

    def spans(self):
        try:  # closing its stdin ends the sink, which prints its count
            out, _ = self.proc.p.communicate(timeout=STOP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            self.proc.stop(signal.SIGKILL)
            raise RuntimeError(f"otlp-sink did not stop within {STOP_DEADLINE_S} s")
        self.proc.log.close()
        m = re.search(rb"SPANS (\d+)", out)
        if not m:
            raise RuntimeError(f"otlp-sink printed no count: {out!r}")
        return int(m.group(1))


def variant_spec(server, variant, port, sink_port, access_log, args):
    """(argv, env) of one variant's server."""
    if server == "rust":
        argv, env, _ = server_spec("rust", port, args)
        env = dict(env)
        if variant != "off":
            argv += ["--otlp-endpoint", f"http://127.0.0.1:{sink_port}"]
        if variant == "traces_log":
            argv += ["--access-log", "json", "--access-log-file", access_log]
        if variant == "sampled_1pct":
            env.update(SAMPLED)
        return argv, env
    argv = [OTEL_SERVER, "--port", str(port), "--service-name", "go-bench"]
    argv += ["--batch", "--otlp", f"127.0.0.1:{sink_port}"] if variant == "traces" else ["--traces=false"]
    return argv, {"GOMAXPROCS": "1"}


def wait_listening(proc, port, what):
    end = time.time() + 30
    while True:
        if proc.p.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.p.returncode}; see {proc.log.name}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if time.time() > end:
                raise RuntimeError(f"{what} not listening after 30 s; see {proc.log.name}")
            time.sleep(0.05)


def ghz_count(path):
    with open(path) as f:
        rep = json.load(f)
    rep.pop("details", None)
    with open(path, "w") as f:  # the summary only
        json.dump(rep, f, indent=1)
    return rep


def our_span_counts(log_path):
    """(exported, dropped) as our server logs them when it stops, or None."""
    with open(log_path, errors="replace") as f:
        found = re.findall(r"spans: (\d+) exported, (\d+) dropped", f.read())
    return tuple(map(int, found[-1])) if found else None


def one_run(server, variant, args, logdir, rnd):
    what = f"{server} {variant}, round {rnd}"
    tag = f"{server}-{variant}-r{rnd}"
    scn = SCENARIOS["unary"]
    data_file = os.path.join(logdir, "data-unary.json")
    with open(data_file, "w") as f:
        json.dump(scn["data"], f)
    access_log = os.path.join(logdir, f"access-{tag}.log")
    sink = Sink(logdir) if variant != "off" else None
    port = free_port()
    try:
        argv, env = variant_spec(server, variant, port, sink.port if sink else 0, access_log, args)
        if not os.path.exists(argv[0]):
            raise RuntimeError(f"{argv[0]} not built")
        server_log = os.path.join(logdir, f"server-{tag}.log")
        srv = Process(argv, SERVER_CPU, server_log, env)
        try:
            wait_listening(srv, port, what)
            target = f"127.0.0.1:{port}"
            warm_file, out_file = os.path.join(logdir, f"ghz-{tag}-warmup.json"), os.path.join(logdir, f"ghz-{tag}.json")
            run_ghz(ghz_argv(scn, target, args.warmup, data_file, None, warm_file), args.warmup, f"{what}, warm-up")
            cpu0, busy0, kids0, t0 = proc_times(srv.p.pid), busy_cpu_s(), children_cpu_s(), time.time()
            client_share, _ = run_ghz(ghz_argv(scn, target, args.duration, data_file, None, out_file), args.duration,
                                      f"{what}, measured run")
            wall = time.time() - t0
            cpu1, busy1, kids1 = proc_times(srv.p.pid), busy_cpu_s(), children_cpu_s()
            threads = int(proc_status(srv.p.pid).get("Threads", "0"))
            alive = srv.p.poll() is None
        finally:
            stopped = srv.stop()
        if not alive:
            raise RuntimeError(f"{what}: the server died during the run; see {server_log}")
        if not stopped:
            raise RuntimeError(f"{what}: the server did not stop within {STOP_DEADLINE_S} s; see {server_log}")
        exported = sink.spans() if sink else 0
        sink = None
    finally:
        if sink:
            sink.proc.stop(signal.SIGKILL)
    warm, rep = ghz_count(warm_file), ghz_count(out_file)
    count, ok = rep.get("count", 0), rep.get("statusCodeDistribution", {}).get("OK", 0)
    served = warm.get("count", 0) + count
    cpu = cpu1 - cpu0
    run = {"round": rnd, "calls": count, "errors": count - ok + warm.get("count", 0)
           - warm.get("statusCodeDistribution", {}).get("OK", 0),
           "calls_per_s": rep.get("rps", 0.0), "server_cpu_us_per_call": cpu * 1e6 / count if count else None,
           "server_cpu_share": cpu / wall if wall else None, "client_cpu_share": client_share,
           "other_cpu_share": max(0.0, (busy1 - busy0) - cpu - (kids1 - kids0)) / wall if wall else None,
           "latency_ms": {f"p{d['percentage']}": d["latency"] / 1e6 for d in rep.get("latencyDistribution") or []
                          if d["percentage"] in (50, 99)},
           "server_threads": threads, "calls_served": served}
    if variant != "off":
        ours = our_span_counts(server_log) if server == "rust" else None
        run["spans_exported"] = exported
        if variant == "sampled_1pct":
            if ours is None:
                raise RuntimeError(f"{what}: the server logged no span counts; see {server_log}")
            if ours[0] != exported:
                raise RuntimeError(f"{what}: the server says {ours[0]} spans exported, the sink got {exported}")
            run["spans_dropped"] = ours[1]
        else:
            run["spans_dropped"] = served - exported
            if ours is not None and ours != (exported, served - exported):
                raise RuntimeError(f"{what}: the server counts {ours} spans (exported, dropped), "
                                   f"the sink {exported} of {served} calls")
    if variant == "traces_log":
        with open(access_log, "rb") as f:
            run["log_lines"] = sum(1 for _ in f)
        os.remove(access_log)
        if run["log_lines"] != served:
            raise RuntimeError(f"{what}: {run['log_lines']} access-log lines for {served} calls")
    return run


def combine(runs):
    cell = {k: statistics.median([r[k] for r in runs]) for k in
            ("server_cpu_us_per_call", "calls_per_s", "server_cpu_share", "client_cpu_share", "other_cpu_share")
            if all(r.get(k) is not None for r in runs)}
    cell["latency_ms"] = {p: statistics.median([r["latency_ms"][p] for r in runs]) for p in runs[0]["latency_ms"]}
    cell["errors"] = sum(r["errors"] for r in runs)
    for k in ("spans_exported", "spans_dropped", "log_lines", "calls_served"):
        if k in runs[0]:
            cell[k] = sum(r[k] for r in runs)
    cell["runs"] = runs
    return cell


def overheads(results):
    """Each variant over its server's `off`: the difference of the medians, and of each round's
    pair (the two ran minutes apart, so a round's pair shares the machine's state)."""
    out = {}
    for server, cells in results.items():
        off = cells.get("off")
        for variant, cell in cells.items():
            if variant == "off" or not off:
                continue
            off_by_round = {r["round"]: r["server_cpu_us_per_call"] for r in off["runs"]}
            out[f"{server}/{variant}"] = {
                "over_off_us": cell["server_cpu_us_per_call"] - off["server_cpu_us_per_call"],
                "ratio": cell["server_cpu_us_per_call"] / off["server_cpu_us_per_call"],
                "over_off_per_round_us": [r["server_cpu_us_per_call"] - off_by_round[r["round"]]
                                          for r in cell["runs"] if r["round"] in off_by_round]}
    return out


def judge(results):
    def cpu(key):
        return (results.get(key[0]) or {}).get(key[1], {}).get("server_cpu_us_per_call")

    out = []
    for name, a, b, limit in TARGETS:
        if cpu(a) is None or cpu(b) is None:
            continue
        delta = cpu(a) - cpu(b)
        bar = limit
        if limit is None:
            if cpu(("go", "traces")) is None or cpu(("go", "off")) is None:
                continue
            bar = cpu(("go", "traces")) - cpu(("go", "off"))
        out.append({"target": name, "us": delta, "limit_us": bar, "met": delta <= bar})
    dropped = sum(c.get("spans_dropped", 0) for cells in results.values() for c in cells.values())
    out.append({"target": "0 spans dropped", "spans_dropped": dropped, "met": dropped == 0})
    return out


def markdown(doc):
    res, over = doc["results"], doc["overheads"]
    n = doc["repeat"]
    lines = [f"Tracing cost, {doc['date']}, `{doc['command']}`: unary SayHello, closed loop (50 callers, 4 "
             f"connections), server on CPU {SERVER_CPU}, ghz and otlp-sink on CPU {CLIENT_CPU}; {n} round(s) of "
             f"{doc['duration_s']:g} s, medians (min–max). Load average at start / end: "
             f"{' '.join(doc['loadavg_at_start'])} / {' '.join(doc['loadavg_at_end'])}.\n\n",
             "| server | variant | server CPU µs/call | over off, µs (per round) | ×off | calls/s | spans exported / dropped | errors |\n",
             "|---|---|---:|---:|---:|---:|---:|---:|\n"]
    for server, cells in res.items():
        for variant, c in cells.items():
            xs = [r["server_cpu_us_per_call"] for r in c["runs"]]
            o = over.get(f"{server}/{variant}")
            over_cell = (f"{o['over_off_us']:+.2f} ({', '.join(f'{x:+.1f}' for x in o['over_off_per_round_us'])})"
                         if o else "–")
            ratio = f"×{o['ratio']:.2f}" if o else "×1.00"
            spans = f"{c['spans_exported']:,} / {c['spans_dropped']:,}" if "spans_exported" in c else "–"
            lines.append(f"| {'rust (ours)' if server == 'rust' else 'grpc-go'} | {variant} | "
                         f"{c['server_cpu_us_per_call']:.2f} ({min(xs):.2f}–{max(xs):.2f}) | {over_cell} | {ratio} | "
                         f"{c['calls_per_s']:,.0f} | {spans} | {c['errors']} |\n")
    lines.append("\n| target | measured | bar | met |\n|---|---:|---:|---|\n")
    for t in doc["targets"]:
        if "us" in t:
            lines.append(f"| {t['target']} | {t['us']:+.2f} µs | {t['limit_us']:.2f} µs | {'yes' if t['met'] else 'NO'} |\n")
        else:
            lines.append(f"| {t['target']} | {t['spans_dropped']} | 0 | {'yes' if t['met'] else 'NO'} |\n")
    if doc["failures"]:
        lines.append("\nFailed: " + "; ".join(doc["failures"]) + "\n")
    return "".join(lines)


def main(args, servers, out, logdir, head):
    servers = [s for s in servers if s in VARIANTS] or list(VARIANTS)
    runs, failures = {}, []
    plan = [(s, v) for s in servers for v in VARIANTS[s]]
    total, done, t0 = args.repeat * len(plan), 0, time.time()
    loadavg_at_start = open("/proc/loadavg").read().split()[:3]
    for r in range(1, args.repeat + 1):
        # Every other round backwards: a machine whose load drifts during a round then weighs
        # on the first and the last variants alike.
        for server, variant in (plan if r % 2 else plan[::-1]):
            if args.wait_idle > 0:
                idle = wait_idle(args.wait_idle)
                if idle >= 0.3:
                    log(f"bench: the machine stays busy ({idle:.2f} cores used by others); measuring anyway")
            try:
                run = one_run(server, variant, args, logdir, r)
                runs.setdefault(server, {}).setdefault(variant, []).append(run)
                if run["errors"]:
                    failures.append(f"{server} {variant} round {r}: {run['errors']} calls failed")
                spans = (f", spans {run['spans_exported']:,} exported / {run['spans_dropped']:,} dropped"
                         if "spans_exported" in run else "")
                summary = (f"{run['server_cpu_us_per_call']:.2f} µs CPU/call, {run['calls_per_s']:,.0f} calls/s, "
                           f"{run['errors']} errors{spans}, others {run['other_cpu_share']:.2f} cores")
            except (RuntimeError, OSError, ValueError, KeyError, json.JSONDecodeError) as e:
                failures.append(f"{server} {variant} round {r}: {e}")
                summary = f"FAILED: {e}"
            done += 1
            log(f"[{done:>2}/{total} {time.time() - t0:5.0f}s] tracing {server:<4} {variant:<12} round {r}/{args.repeat}: "
                f"{summary}")
    results = {s: {v: combine(runs[s][v]) for v in VARIANTS[s] if runs.get(s, {}).get(v)} for s in servers}
    doc = dict(head, repeat=args.repeat, warmup_s=args.warmup, duration_s=args.duration,
               loadavg_at_start=loadavg_at_start, loadavg_at_end=open("/proc/loadavg").read().split()[:3],
               results=results, overheads=overheads(results), failures=failures)
    doc["targets"] = judge(results)
    for name in ("tracing.json", "results.json"):
        with open(os.path.join(out, name), "w") as f:
            json.dump(doc, f, indent=1)
    md = markdown(doc)
    with open(os.path.join(out, "tracing.md"), "w") as f:
        f.write(md)
    print(md)
    print(f"JSON: {os.path.join(out, 'results.json')}")
    return 1 if failures else 0


def instructions_of(variant, args, logdir):
    """Instructions per call of one of our variants, under callgrind."""
    cg = os.path.join(logdir, "callgrind", variant)
    shutil.rmtree(cg, ignore_errors=True)
    os.makedirs(cg)
    access_log = os.path.join(cg, "access.log")
    sink = Sink(logdir) if variant != "off" else None
    port = free_port()
    try:
        argv, env = variant_spec("rust", variant, port, sink.port if sink else 0, access_log, args)
        srv = Process(["valgrind", "--tool=callgrind", f"--callgrind-out-file={cg}/callgrind.out.%p"] + argv,
                      SERVER_CPU, os.path.join(cg, "server.log"), env)
        try:
            end = time.time() + 120
            while True:  # valgrind starts slowly
                if srv.p.poll() is not None:
                    raise RuntimeError(f"rust {variant} under callgrind exited; see {srv.log.name}")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    if time.time() > end:
                        raise RuntimeError(f"rust {variant} under callgrind not listening after 120 s")
                    time.sleep(0.2)
            pid = str(srv.p.pid)
            ghz = [GHZ, "--insecure", "--proto", PROTO, "--call", "greeter.Greeter/SayHello",
                   "-d", json.dumps(SCENARIOS["unary"]["data"]), "-c", "10", "--connections", "2", "--cpus", "1",
                   "-t", "60s", "-O", "json"]
            target = f"127.0.0.1:{port}"
            subprocess.run(["taskset", "-c", CLIENT_CPU] + ghz + ["-n", "300", target], check=True,
                           stdout=subprocess.DEVNULL, timeout=600)
            time.sleep(1)  # the warm-up's last batch leaves
            subprocess.run(["callgrind_control", "--zero", pid], check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=60)
            run = subprocess.run(["taskset", "-c", CLIENT_CPU] + ghz + ["-n", str(args.calls), target], check=True,
                                 capture_output=True, text=True, timeout=3600)
            time.sleep(1)  # and the measured calls' last one
            subprocess.run(["callgrind_control", "--dump=measured", pid], check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=60)
        finally:
            srv.stop(deadline_s=120)
        if sink:
            sink.spans()
            sink = None
    finally:
        if sink:
            sink.proc.stop(signal.SIGKILL)
    rep = json.loads(run.stdout)
    ok = rep.get("statusCodeDistribution", {}).get("OK", 0)
    if ok != args.calls:
        raise RuntimeError(f"rust {variant} under callgrind: {ok} of {args.calls} calls OK")
    for dump in glob.glob(os.path.join(cg, "callgrind.out.*")):
        with open(dump, errors="replace") as f:
            text = f.read()
        if "dump measured" in text[:4096]:
            total = int(re.search(r"^(?:summary|totals): (\d+)", text, re.M).group(1))
            return total / args.calls
    raise RuntimeError(f"rust {variant}: no callgrind dump of the measured calls in {cg}")


def instructions(args, out, logdir, head):
    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        log("bench: ERROR: --instructions needs valgrind (Debian: apt-get install valgrind)")
        return 2
    per_call, failures = {}, []
    for variant in VARIANTS["rust"]:
        try:
            per_call[variant] = instructions_of(variant, args, logdir)
            log(f"bench: rust {variant:<12} {per_call[variant]:,.0f} instructions per call")
        except (RuntimeError, OSError, ValueError, subprocess.SubprocessError) as e:
            failures.append(f"rust {variant}: {e}")
            log(f"bench: rust {variant:<12} FAILED: {e}")
    doc = dict(head, calls=args.calls, instructions_per_call=per_call, failures=failures)
    with open(os.path.join(out, "instructions.json"), "w") as f:
        json.dump(doc, f, indent=1)
    off = per_call.get("off")
    md = [f"Instructions per unary call (callgrind, every thread, user space), {doc['date']}, `{doc['command']}`: "
          f"{args.calls} calls, 10 callers on 2 connections, after 300 to warm up.\n\n",
          "| variant | instructions per call | over off |\n|---|---:|---:|\n"]
    for variant, n in per_call.items():
        md.append(f"| {variant} | {n:,.0f} | {'–' if variant == 'off' or off is None else f'{n - off:+,.0f}'} |\n")
    if failures:
        md.append("\nFailed: " + "; ".join(failures) + "\n")
    md = "".join(md)
    with open(os.path.join(out, "instructions.md"), "w") as f:
        f.write(md)
    print(md)
    return 1 if failures else 0
