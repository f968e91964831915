"""One cell of bench/run: a fresh server pinned to its CPU, a ghz warm-up, one measured ghz run
with the CPU counters read around it, and for streaming scenarios count_msgs.py's check.

Every program that talks to the server under test runs with a deadline: a stalled stream is
what the harness exists to catch, so it fails the cell (and the run goes on) instead of hanging."""
import json
import os
import resource
import signal
import socket
import subprocess
import tempfile
import time

from common import BENCH, CLIENT_CPU, PROTO, SCENARIOS, SERVER_CPU
from peers import GHZ, INTEROP_PY, PYTHON_GEN, server_spec

COUNTER = os.path.join(BENCH, "count_msgs.py")
CLK_TCK = os.sysconf("SC_CLK_TCK")
CLIENT_BOUND = 0.85  # ghz busier than this (share of its core): the client limited the rate...
SERVER_BOUND = 0.90  # ...unless the server's core was this busy too (then the server did)
# ghz stops starting calls after its duration and then waits for the calls in flight; past
# this margin one of them has stalled.
GHZ_MARGIN_S = 60
# count_msgs.py gives each call a 60 s deadline and makes them all at once.
COUNT_DEADLINE_S = 180
COUNT_WORDS = {"sent": "messages sent to it", "received": "messages received from it",
               "counted": "values it counted (MetricSummary.count)"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_times(pid):
    """utime+stime of a whole process (all threads, live and exited), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def busy_cpu_s():
    """CPU seconds all CPUs spent busy since boot (user, nice, system, irq, softirq, steal)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / CLK_TCK


def children_cpu_s():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def proc_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


class Server:
    def __init__(self, name, args, logdir):
        self.name = name
        self.port = free_port()
        argv, env, self.workers = server_spec(name, self.port, args)
        if not os.path.exists(argv[0]):
            raise RuntimeError(f"{argv[0]} not built")
        self.log_path = os.path.join(logdir, f"server-{name}.log")
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(["taskset", "-c", SERVER_CPU] + argv, env=dict(os.environ, **env),
                                     stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL)
        deadline = time.time() + 30
        while True:  # ready when it accepts a TCP connection
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name} server exited with {self.proc.returncode}; see {self.log_path}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                if time.time() > deadline:
                    raise RuntimeError(f"{name} server not listening after 30 s; see {self.log_path}")
                time.sleep(0.05)

    @property
    def target(self):
        return f"127.0.0.1:{self.port}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if self.name == "python" else signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


# --- one cell -----------------------------------------------------------------------------

def ghz_argv(scn, target, duration, data_file, rps, out_file):
    argv = ["taskset", "-c", CLIENT_CPU, GHZ, "--insecure", "--proto", PROTO,
            "--call", f"greeter.Greeter/{scn['method']}", "-D", data_file,
            "-c", str(scn["c"]), "--connections", str(scn["conns"]), "-z", f"{duration}s",
            "--duration-stop", "wait", "--cpus", "1", "-O", "json", "-o", out_file]
    if rps:
        argv += ["--rps", str(int(rps)), "--async"]
    return argv + [target]


def run_ghz(argv, duration, what):
    """Runs ghz; returns (ghz CPU share over its steady load phase, wall seconds).

    Kills it GHZ_MARGIN_S after its duration and raises, naming `what` (server, scenario,
    phase): ghz waits for every call in flight, so one stalled stream would hang it."""
    limit = duration + GHZ_MARGIN_S
    # stderr goes to a file, not a pipe read at the end: a full pipe would block ghz.
    with tempfile.TemporaryFile() as err_file:
        t0 = time.time()
        p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err_file)
        samples = []
        while p.poll() is None:
            now = time.time() - t0
            if now > limit:
                p.kill()
                p.wait()
                raise RuntimeError(f"{what}: ghz did not finish within {limit:g} s: a stalled stream?")
            try:
                if 0.3 <= now <= duration - 0.1:
                    samples.append((now, proc_times(p.pid)))
            except OSError:
                pass
            time.sleep(0.1)
        wall = time.time() - t0
        err_file.seek(0)
        err = err_file.read().decode(errors="replace")
    if p.returncode != 0:
        raise RuntimeError(f"ghz exited {p.returncode}: {err.strip()[-500:]}")
    share = None
    if len(samples) >= 2 and samples[-1][0] > samples[0][0]:
        share = (samples[-1][1] - samples[0][1]) / (samples[-1][0] - samples[0][0])
    return share, wall


def wait_idle(max_wait, threshold=0.3):
    """Waits (up to max_wait s) until the rest of the machine uses < threshold cores; returns it."""
    deadline = time.time() + max_wait
    while True:
        b0 = busy_cpu_s()
        time.sleep(1.0)
        load = busy_cpu_s() - b0
        if load < threshold or time.time() >= deadline:
            return load
        time.sleep(1.0)


def is_client_bound(client_share, server_share):
    """ghz's core was (nearly) full while the server's was not: the client set the rate."""
    return (client_share is not None and client_share >= CLIENT_BOUND
            and (server_share is None or server_share < SERVER_BOUND))


def measure(name, scn_name, args, rps, logdir, rnd=1):
    scn = SCENARIOS[scn_name]
    data_file = os.path.join(logdir, f"data-{scn_name}.json")
    with open(data_file, "w") as f:
        json.dump(scn["data"], f)
    out_file = os.path.join(logdir, f"ghz-{scn_name}-{name}-r{rnd}.json")
    srv = Server(name, args, logdir)
    try:
        run_ghz(ghz_argv(scn, srv.target, args.warmup, data_file, rps, os.devnull), args.warmup,
                f"{name} server, {scn_name}, warm-up")
        cpu0, busy0, kids0 = proc_times(srv.proc.pid), busy_cpu_s(), children_cpu_s()
        t0 = time.time()
        client_share, _ = run_ghz(ghz_argv(scn, srv.target, args.duration, data_file, rps, out_file), args.duration,
                                  f"{name} server, {scn_name}, measured run")
        wall = time.time() - t0
        cpu1, busy1, kids1 = proc_times(srv.proc.pid), busy_cpu_s(), children_cpu_s()
        status = proc_status(srv.proc.pid)
        alive = srv.proc.poll() is None
        # After the counters: the check's calls are not part of the measurement.
        counts = check_counts(name, scn_name, srv.target, data_file) if alive and "check" in scn else None
    finally:
        srv.stop()
    if not alive:
        raise RuntimeError(f"{name} server died during the run; see {srv.log_path}")
    with open(out_file) as f:
        rep = json.load(f)
    rep.pop("details", None)
    with open(out_file, "w") as f:  # keep the summary only (details can be 100 MB)
        json.dump(rep, f, indent=1)
    count = rep.get("count", 0)
    ok = rep.get("statusCodeDistribution", {}).get("OK", 0)
    lat = {f"p{d['percentage']}": d["latency"] / 1e6 for d in rep.get("latencyDistribution") or []}
    cpu = cpu1 - cpu0
    calls_s = rep.get("rps", 0.0)
    return {
        "server": name, "scenario": scn_name, "workers": srv.workers,
        "server_threads": int(status.get("Threads", "0")),
        "calls": count, "ok": ok, "errors": count - ok,
        "error_kinds": rep.get("errorDistribution") or {},
        "duration_s": rep.get("total", 0) / 1e9, "target_rps": rps,
        # x msgs holds because check_counts found exactly msgs in every call it counted.
        "calls_per_s": calls_s, "msgs_per_s": calls_s * scn["msgs"],
        "latency_ms": {"p50": lat.get("p50"), "p90": lat.get("p90"), "p99": lat.get("p99"),
                       "avg": rep.get("average", 0) / 1e6},
        "server_cpu_s": cpu, "server_cpu_share": cpu / wall if wall else None,
        "server_cpu_us_per_call": cpu * 1e6 / count if count else None,
        "server_cpu_us_per_msg": cpu * 1e6 / (count * scn["msgs"]) if count else None,
        "client_cpu_share": client_share,
        # Everything else on the machine during the run (other agents, builds), in cores.
        "other_cpu_share": max(0.0, (busy1 - busy0) - (cpu1 - cpu0) - (kids1 - kids0)) / wall if wall else None,
        # The rate one full server core would sustain at this CPU cost (meaningful when the
        # client, not the server, is the bottleneck).
        "msgs_per_core_s": (count * scn["msgs"]) / cpu if cpu > 0 else None,
        "client_bound": is_client_bound(client_share, cpu / wall if wall else None),
        "server_peak_rss_mib": int(status.get("VmHWM", "0 kB").split()[0]) / 1024,
        "count_check": counts,
    }


def check_counts(name, scn_name, target, data_file):
    """Counts the messages of scn["c"] calls on the measured server, right after its run.

    ghz reports a stream as OK however many messages it carried, so msgs_per_s = calls/s x msgs
    is only true if each call carried msgs. count_msgs.py (another client: Python grpcio) makes
    the same calls at the same concurrency and counts every message; any call with another count
    fails the cell, so its inflated figure never reaches the table. Returns the counts seen.
    """
    scn = SCENARIOS[scn_name]
    argv = ["taskset", "-c", CLIENT_CPU, INTEROP_PY, COUNTER, "--target", target, "--method", scn["method"],
            "--data", data_file, "--calls", str(scn["c"]), "--concurrency", str(scn["c"]),
            "--connections", str(scn["conns"])]
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=COUNT_DEADLINE_S,
                           env=dict(os.environ, PYTHONPATH=PYTHON_GEN))
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{name} server, {scn_name}: count_msgs.py did not finish within {COUNT_DEADLINE_S} s: "
                           "a stalled stream?")
    if p.returncode != 0:
        raise RuntimeError(f"count_msgs.py exited {p.returncode}: {p.stderr.strip()[-500:]}")
    calls = json.loads(p.stdout)
    wrong = [] if len(calls) == scn["c"] else [f"{len(calls)} calls made, not {scn['c']}"]
    for i, c in enumerate(calls, 1):
        if c["error"]:
            wrong.append(f"call {i} failed ({c['error']}) after {c['received']} {COUNT_WORDS['received']}")
        else:
            wrong += [f"call {i}: {c[k]} {COUNT_WORDS[k]}, expected {scn['msgs']}"
                      for k in scn["check"] if c[k] != scn["msgs"]]
    if wrong:
        more = f"; and {len(wrong) - 3} more" if len(wrong) > 3 else ""
        raise RuntimeError(f"{name} server, {scn_name}: wrong message count in {len(calls)} checked calls: "
                           + "; ".join(wrong[:3]) + more)
    return {"calls": len(calls), **{k: sorted({c[k] for c in calls}) for k in scn["check"]}}
