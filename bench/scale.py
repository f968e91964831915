"""bench/run --scale: how each server's cost grows with its work, from one stream to 10,000.

Four curves, each point on a fresh server pinned to CPU 0 with the harness's own load driver
(tests/interop/go/cmd/scale-driver, grpc-go) pinned to CPU 1:

  subs      N idle GetStockPrice subscriptions (one tick an hour): RSS per stream, idle CPU
  chats     N idle Chats: RSS per stream, idle CPU
  conns     N connections, one idle Chat each: RSS per connection
  active    N Chats sharing a fixed total rate (ACTIVE_RATE messages/s): CPU per message
  openloop  unary SayHello offered at stepped rates, open loop: p50/p99/p99.9 per step, and
            the rate at which p99 crosses 10 ms

Memory per stream is the slope of a least-squares line through every point's RSS above the
server's own RSS before the driver connected, not any one point. Streams share connections
at STREAMS_PER_CONN a connection (our server's default max_concurrent_streams is 100).
Rounds as in bench/run: round r runs every server once before round r+1; a point's figure is
its median over the rounds. Results: <out>/scale.json, scale.md, scale.png.
"""
import json
import math
import os
import resource
import signal
import socket
import statistics
import subprocess
import threading
import time
import queue

from common import CLIENT_CPU, LABELS, SERVER_CPU, die, log
from peers import INTEROP, INTEROP_PY, PYTHON_GEN, server_spec
from measure import free_port, proc_status, proc_times

DRIVER = os.path.join(INTEROP, "bin", "scale-driver")
AIO_SERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "peers", "python", "aio_server.py")
SERVERS = ["rust", "go", "cpp156", "tonic", "python"]
CURVES = ["subs", "chats", "conns", "active", "openloop"]
COUNTS = [1, 100, 1000, 10000]  # streams or connections per memory point
ACTIVE_COUNTS = [10, 100, 1000, 10000]
ACTIVE_RATE = 2000  # messages/s over all of a point's streams
STREAMS_PER_CONN = 100
OPENLOOP_RATES = [500, 1000, 1500, 2000, 3000, 4000, 6000, 8000, 12000, 16000, 20000, 24000, 32000, 48000]
KNEE_P99_MS = 10.0
FDS = 20000  # RLIMIT_NOFILE the harness raises itself and its children to (10,000 connections)
FDS_NEEDED = 10_000 + 1000  # a server or the driver holding 10,000 sockets, and the rest
OPEN_DEADLINE_S = 300  # opening 10,000 streams, on the slowest server
SETTLE_S = 2.0  # after the last stream opened, before RSS is read
IDLE_S = 5.0  # the idle-CPU window


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(FDS, hard) if hard != resource.RLIM_INFINITY else FDS
    if want < FDS_NEEDED:
        die(f"--scale needs {FDS_NEEDED} open files per process; the hard limit is {hard} "
            "(raise it: ulimit -Hn, or LimitNOFILE= for a service)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))  # inherited by server and driver


def scale_spec(name, port, args):
    """How each server starts for a scale point: subscriptions tick once an hour, so they stay
    open and idle once their first tick has arrived. Python runs its asyncio peer: the
    thread-pool one holds at most 16 streams."""
    ticks, hour = 1_000_000, 3600
    if name == "python":
        return ([INTEROP_PY, AIO_SERVER, "--port", str(port), "--ticks", str(ticks), "--interval", str(hour)],
                {"PYTHONPATH": PYTHON_GEN, "PYTHONUNBUFFERED": "1"}, "grpc.aio, one event loop")
    argv, env, workers = server_spec(name, port, args)
    flags = {"rust": ("--stock-ticks", "--stock-interval", f"{hour}s"), "go": ("--ticks", "--interval", f"{hour}s"),
             "tonic": ("--ticks", "--interval-ms", str(hour * 1000)),
             "cpp156": ("--ticks", "--interval-ms", str(hour * 1000)), "cpp": ("--ticks", "--interval-ms", str(hour * 1000))}
    t, i, v = flags[name]
    argv[argv.index(t) + 1] = str(ticks)
    argv[argv.index(i) + 1] = v
    return argv, env, workers


class Proc:
    """A process pinned to a CPU whose stdout lines arrive on a queue (read on a thread, so
    waiting for one has a deadline)."""

    def __init__(self, argv, cpu, log_path, env=None, stdin=True):
        self.log = open(log_path, "ab")
        self.p = subprocess.Popen(["taskset", "-c", cpu] + argv, env=dict(os.environ, **(env or {})),
                                  stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=self.log)
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            self.lines.put(line.decode(errors="replace").rstrip("\n"))
        self.lines.put(None)

    def json_line(self, deadline_s, what):
        """The next stdout line that is a JSON object; raises on exit or past the deadline."""
        end = time.time() + deadline_s
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, end - time.time()))
            except queue.Empty:
                raise RuntimeError(f"{what}: nothing within {deadline_s:g} s")
            if line is None:
                self.p.wait()
                raise RuntimeError(f"{what}: exited with {self.p.returncode} (see {self.log.name})")
            if line.startswith("{"):
                return json.loads(line)

    def stop(self, sig=signal.SIGTERM, deadline_s=30):
        if self.p.poll() is None:
            if self.p.stdin:
                try:
                    self.p.stdin.close()
                except OSError:
                    pass
            if sig is not None:
                self.p.send_signal(sig)
            try:
                self.p.wait(deadline_s)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.log.close()
        return self.p.returncode


def start_server(name, args, logdir, extra=()):
    port = free_port()
    argv, env, workers = scale_spec(name, port, args)
    argv = argv + list(extra)
    if not os.path.exists(argv[0]):
        raise RuntimeError(f"{argv[0]} not built")
    srv = Proc(argv, SERVER_CPU, os.path.join(logdir, f"scale-server-{name}.log"), env, stdin=False)
    end = time.time() + 30
    while True:
        if srv.p.poll() is not None:
            raise RuntimeError(f"{name} server exited with {srv.p.returncode}; see {srv.log.name}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if time.time() > end:
                srv.stop(signal.SIGKILL)
                raise RuntimeError(f"{name} server not listening after 30 s")
            time.sleep(0.05)
    srv.target, srv.workers = f"127.0.0.1:{port}", workers
    time.sleep(0.5)
    return srv


def rss_kib(pid):
    return int(proc_status(pid)["VmRSS"].split()[0])


def driver(srv, logdir, name, *flags):
    return Proc([DRIVER, "-addr", srv.target] + [str(f) for f in flags], CLIENT_CPU,
                os.path.join(logdir, f"scale-driver-{name}.log"))


def finish(drv, name):
    rc = drv.stop(sig=None, deadline_s=60)  # closing stdin ends the driver
    if rc != 0:
        raise RuntimeError(f"{name}: the driver exited with {rc} (see {drv.log.name})")


def memory_point(name, curve, n, args, logdir):
    """One point of subs/chats/conns: RSS before and after n streams (or connections), the
    idle CPU with them open."""
    srv = start_server(name, args, logdir)
    try:
        pid = srv.p.pid
        rss0 = rss_kib(pid)
        conns = n if curve == "conns" else max(1, math.ceil(n / STREAMS_PER_CONN))
        drv = driver(srv, logdir, name, "-mode", curve, "-streams", n, "-conns", conns)
        try:
            t0 = time.time()
            opened = drv.json_line(OPEN_DEADLINE_S, f"{name} server, {curve} {n}: opening")
            open_s = time.time() - t0
            if opened.get("failed"):
                raise RuntimeError(f"{name} server, {curve} {n}: {opened['failed']} streams failed to open")
            time.sleep(SETTLE_S)
            rss1 = rss_kib(pid)
            c0, w0 = proc_times(pid), time.time()
            time.sleep(IDLE_S)
            idle = (proc_times(pid) - c0) / (time.time() - w0)
            threads = int(proc_status(pid).get("Threads", "0"))
            alive = srv.p.poll() is None
        finally:
            finish(drv, f"{name} server, {curve} {n}")
    finally:
        srv.stop()
    if not alive:
        raise RuntimeError(f"{name} server died")
    return {"n": n, "conns": conns, "rss0_kib": rss0, "rss_kib": rss1, "rss_added_kib": rss1 - rss0,
            "idle_cpu_cores": idle, "open_s": open_s, "threads": threads}


def active_point(name, n, args, logdir):
    srv = start_server(name, args, logdir)
    try:
        pid = srv.p.pid
        conns = max(1, math.ceil(n / STREAMS_PER_CONN))
        rate = ACTIVE_RATE / n
        drv = driver(srv, logdir, name, "-mode", "active", "-streams", n, "-conns", conns, "-rate", rate,
                     "-duration", f"{args.scale_duration}s")
        try:
            opened = drv.json_line(OPEN_DEADLINE_S, f"{name} server, active {n}: opening")
            if opened.get("failed"):
                raise RuntimeError(f"{name} server, active {n}: {opened['failed']} chats failed to open")
            c0, d0, w0 = proc_times(pid), proc_times(drv.p.pid), time.time()
            res = drv.json_line(args.scale_duration + 120, f"{name} server, active {n}: the measured step")
            cpu, dcpu, wall = proc_times(pid) - c0, proc_times(drv.p.pid) - d0, time.time() - w0
        finally:
            finish(drv, f"{name} server, active {n}")
    finally:
        srv.stop()
    if res.get("failed"):
        raise RuntimeError(f"{name} server, active {n}: {res['failed']} chats failed")
    msgs = res["received"]
    return {"n": n, "conns": conns, "msgs": msgs, "msgs_per_s": res["msgs_per_s"],
            "cpu_us_per_msg": cpu * 1e6 / msgs if msgs else None, "server_cpu_cores": cpu / wall,
            "driver_cpu_cores": dcpu / wall}


def openloop_curve(name, args, logdir):
    """Every step of one server's open-loop curve (one server process for all steps)."""
    srv = start_server(name, args, logdir)
    steps = []
    try:
        pid = srv.p.pid
        drv = driver(srv, logdir, name, "-mode", "openloop", "-conns", 4, "-rates",
                     ",".join(map(str, OPENLOOP_RATES)), "-duration", f"{args.step_duration}s", "-timeout", "20s")
        try:
            while True:
                try:
                    step = drv.json_line(args.step_duration + 60, f"{name} server, openloop")
                except RuntimeError:
                    if drv.p.poll() is not None and drv.p.returncode == 0:
                        break  # the driver has run its last step
                    raise
                c0, d0, w0 = proc_times(pid), proc_times(drv.p.pid), time.time()
                res = drv.json_line(args.step_duration + 60, f"{name} server, openloop {step['step']}/s")
                wall = time.time() - w0
                res["server_cpu_cores"] = (proc_times(pid) - c0) / wall
                res["driver_cpu_cores"] = (proc_times(drv.p.pid) - d0) / wall
                steps.append(res)
                log(f"bench:   {name:<7} openloop {res['offered']:>6,.0f}/s offered: {res['achieved']:>8,.0f}/s, "
                    f"p50 {res['p50_ms']:.2f} p99 {res['p99_ms']:.2f} p99.9 {res['p999_ms']:.2f} ms, "
                    f"server {res['server_cpu_cores']:.2f} driver {res['driver_cpu_cores']:.2f} cores, "
                    f"{res['failed']} failed")
        finally:
            drv.stop(sig=signal.SIGTERM)
    finally:
        srv.stop()
    # The driver stops after the first step past saturation; calls failed there were shed.
    short = [s for s in steps[:-1] if s["failed"]]
    if short:
        raise RuntimeError(f"{name} server, openloop: {sum(s['failed'] for s in short)} calls failed below saturation")
    return steps


def slope(points, key):
    """Least-squares slope of points[key] over points["n"], in the key's unit per n."""
    xs = [p["n"] for p in points]
    ys = [p[key] for p in points]
    if len(xs) < 2:
        return None
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else None


def knee(steps):
    """The offered rate at which p99 crosses KNEE_P99_MS (log-linear between the steps around
    it); None if it never does, "<first" if the first step is already over."""
    prev = None
    for s in steps:
        if s["p99_ms"] > KNEE_P99_MS:
            if prev is None:
                return f"< {s['offered']:,.0f}"
            lo, hi = math.log(prev["offered"]), math.log(s["offered"])
            f = (KNEE_P99_MS - prev["p99_ms"]) / (s["p99_ms"] - prev["p99_ms"])
            return math.exp(lo + f * (hi - lo))
        prev = s
    return None


def median(vals):
    vals = [v for v in vals if isinstance(v, (int, float))]
    return statistics.median(vals) if vals else None


def combine_points(rounds):
    """Points of one curve and server over its rounds: per n, each figure's median."""
    by_n = {}
    for pts in rounds:
        for p in pts:
            by_n.setdefault(p["n"], []).append(p)
    out = []
    for n in sorted(by_n):
        ps = by_n[n]
        out.append({k: (median([p[k] for p in ps]) if isinstance(ps[0][k], (int, float)) else ps[0][k])
                    for k in ps[0]} | {"rounds": len(ps)})
    return out


def combine_steps(rounds):
    by = {}
    for steps in rounds:
        for s in steps:
            by.setdefault(s["offered"], []).append(s)
    return [{k: median([s[k] for s in ss]) for k in ss[0]} | {"rounds": len(ss)} for _, ss in sorted(by.items())]


def fmt(v, d=None):
    if v is None:
        return "–"
    if isinstance(v, str):
        return v
    if d is None:
        d = 0 if abs(v) >= 100 else (1 if abs(v) >= 10 else 2)
    return f"{v:,.{d}f}"


def markdown(doc):
    s, res = doc["servers"], doc["results"]
    lab = lambda x: LABELS.get(x, x) + (" (asyncio)" if x == "python" else "")
    head = "| | " + " | ".join(lab(x) for x in s) + " |\n|---|" + "---:|" * len(s) + "\n"
    md = [f"Scale curves, {doc['date']}, `{doc['command']}`: {doc['settings']['repeat']} round(s), medians.\n"]
    for curve, title, unit in (("subs", "idle GetStockPrice subscriptions", "stream"), ("chats", "idle Chats", "stream"),
                               ("conns", "connections, one idle Chat each", "connection")):
        if curve not in doc["curves"]:
            continue
        md.append(f"\n**{title}**: server RSS above its empty self, MiB, at N; slope (KiB per {unit}, "
                  "least squares over all N); idle CPU at the largest N\n\n")
        md.append(head)
        for n in doc["counts"]:
            row = [next((p for p in (res[curve].get(x) or {}).get("points", []) if p["n"] == n), None) for x in s]
            md.append(f"| N = {n:,} | " + " | ".join(fmt(p and p["rss_added_kib"] / 1024, 1) for p in row) + " |\n")
        md.append(f"| **KiB per {unit}** | " + " | ".join(fmt((res[curve].get(x) or {}).get("kib_per_n"), 1) for x in s) + " |\n")
        md.append(f"| idle CPU at N = {max(doc['counts']):,}, cores | " + " | ".join(
            fmt((res[curve].get(x) or {}).get("points", [{}])[-1].get("idle_cpu_cores"), 3)
            if (res[curve].get(x) or {}).get("points") else "–" for x in s) + " |\n")
    if "active" in doc["curves"]:
        md.append(f"\n**active Chats**, {ACTIVE_RATE:,} messages/s shared by N streams: server CPU µs per message "
                  "(and ratio to its own at the smallest N)\n\n" + head)
        for n in doc["active_counts"]:
            cells = []
            for x in s:
                pts = (res["active"].get(x) or {}).get("points", [])
                p = next((p for p in pts if p["n"] == n), None)
                base = pts[0]["cpu_us_per_msg"] if pts else None
                cells.append("–" if not p else f"{fmt(p['cpu_us_per_msg'], 1)} (×{p['cpu_us_per_msg'] / base:.2f})")
            md.append(f"| N = {n:,} | " + " | ".join(cells) + " |\n")
    if "openloop" in doc["curves"]:
        md.append(f"\n**open-loop unary SayHello**: p99 ms per offered rate (p50 / p99 / p99.9 in scale.json); "
                  f"knee = offered calls/s at which p99 crosses {KNEE_P99_MS:g} ms\n\n" + head)
        for r in OPENLOOP_RATES:
            cells = []
            for x in s:
                st = next((t for t in (res["openloop"].get(x) or {}).get("steps", []) if t["offered"] == r), None)
                cells.append("–" if not st else fmt(st["p99_ms"], 2) + ("*" if st["driver_cpu_cores"] > 0.85 else "")
                             + (f" ({st['failed'] / st['calls']:.0%} shed)" if st["failed"] else ""))
            if any(c != "–" for c in cells):
                md.append(f"| {r:,}/s | " + " | ".join(cells) + " |\n")
        md.append("| **knee, calls/s** | " + " | ".join(fmt((res["openloop"].get(x) or {}).get("knee")) for x in s) + " |\n")
        md.append("\n\\* the driver's core was over 85 % busy: the step measures the driver as much as the server. "
                  "\"shed\": calls the server cancelled at that rate, past its saturation (the last step run).\n")
    if doc["failures"]:
        md.append("\nFailed: " + "; ".join(doc["failures"]) + "\n")
    return "".join(md)


def run_scale(args, servers, logdir):
    raise_fd_limit()
    if not os.path.exists(DRIVER):
        die(f"{DRIVER} is missing (tests/interop/setup.sh builds it)")
    counts = [n for n in COUNTS if not args.quick or n <= 1000]
    active_counts = [n for n in ACTIVE_COUNTS if not args.quick or n <= 1000]
    curves = CURVES if args.curves == "all" else args.curves.split(",")
    for c in curves:
        if c not in CURVES:
            die(f"unknown curve {c!r} (have {', '.join(CURVES)})")
    results = {c: {} for c in curves}
    failures = []
    t_run = time.time()
    planned = args.repeat * len(servers) * sum(
        len(counts) if c in ("subs", "chats", "conns") else len(active_counts) if c == "active" else 1 for c in curves)
    done = 0
    for curve in curves:
        rounds = {x: [] for x in servers}
        for r in range(1, args.repeat + 1):
            for x in servers:
                if rounds[x] is None:
                    continue
                pts = []
                try:
                    if curve == "openloop":
                        pts = openloop_curve(x, args, logdir)
                        done += 1
                    else:
                        for n in (active_counts if curve == "active" else counts):
                            p = active_point(x, n, args, logdir) if curve == "active" else memory_point(x, curve, n, args, logdir)
                            pts.append(p)
                            done += 1
                            el = time.time() - t_run
                            what = (f"{fmt(p['cpu_us_per_msg'], 1)} µs CPU/msg at {fmt(p['msgs_per_s'])} msgs/s, "
                                    f"driver {p['driver_cpu_cores']:.2f} cores" if curve == "active" else
                                    f"+{p['rss_added_kib'] / 1024:.1f} MiB RSS, idle {p['idle_cpu_cores']:.3f} cores, "
                                    f"opened in {p['open_s']:.1f} s")
                            log(f"[{done:>3}/{planned} {el:5.0f}s, ~{el / done * (planned - done):5.0f}s left] "
                                f"{curve:<6} {x:<7} round {r}/{args.repeat} N={n:<6,} {what}")
                    rounds[x].append(pts)
                except (RuntimeError, OSError, ValueError, KeyError, json.JSONDecodeError) as e:
                    failures.append(f"{curve}/{x} round {r}: {e}")
                    log(f"bench: FAILED {curve}/{x} round {r}: {e}")
                    rounds[x] = None
        for x in servers:
            if not rounds[x]:
                results[curve][x] = None
                continue
            if curve == "openloop":
                steps = combine_steps(rounds[x])
                results[curve][x] = {"steps": steps, "knee": knee(steps),
                                     "knee_per_round": [knee(st) for st in rounds[x]]}
            else:
                pts = combine_points(rounds[x])
                cell = {"points": pts, "rounds": rounds[x]}
                if curve != "active":
                    cell["kib_per_n"] = slope(pts, "rss_added_kib")
                    cell["kib_per_n_per_round"] = [slope(rp, "rss_added_kib") for rp in rounds[x]]
                results[curve][x] = cell
    return {"counts": counts, "active_counts": active_counts, "curves": curves, "results": results,
            "failures": failures}


def main(args, servers, out, logdir, machine_info, versions_info, plot_py, doc_head):
    res = run_scale(args, servers, logdir)
    doc = dict(doc_head, servers=servers, machine=machine_info, versions=versions_info,
               settings={"repeat": args.repeat, "quick": args.quick, "active_rate": ACTIVE_RATE,
                         "active_duration_s": args.scale_duration, "openloop_step_s": args.step_duration,
                         "streams_per_conn": STREAMS_PER_CONN, "openloop_rates": OPENLOOP_RATES},
               **res)
    json_path = os.path.join(out, "scale.json")
    with open(json_path, "w") as f:
        json.dump(doc, f, indent=1)
    md = markdown(doc)
    with open(os.path.join(out, "scale.md"), "w") as f:
        f.write(md)
    print(md)
    if plot_py:
        png = os.path.join(out, "scale.png")
        try:
            subprocess.run([plot_py, os.path.join(os.path.dirname(os.path.abspath(__file__)), "scale_plot.py"),
                            json_path, png], check=True, timeout=600)
            print(f"Plot: {png}")
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
            log(f"bench: WARNING: scale plot failed: {e}")
    print(f"JSON: {json_path}")
    if doc["failures"]:
        log("bench: FAILED:\n  " + "\n  ".join(doc["failures"]))
        return 1
    return 0
