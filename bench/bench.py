#!/usr/bin/env python3
"""bench/run: our greeter server side by side with grpc-go, Python grpcio, tonic and C++.

Every peer serves proto/greeter.proto with the tutorial's semantics. Each cell (scenario x
server) starts a fresh server pinned to CPU 0 (one worker thread/core), warms it up with ghz,
then measures one ghz run pinned to CPU 1; streaming cells then count their messages call by call
(count_msgs.py). With --repeat N every cell is measured N times, round by round (each round runs
every server once before the next), and reported as the median of its runs with their min-max.
Results: <out>/results.json, results.md, plot.png.
Standard library only; the plot runs in target/bench/venv (bench/requirements.txt).
"""
import argparse
import datetime
import hashlib
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(REPO, "bench")
TARGET = os.path.join(REPO, "target")
TB = os.path.join(TARGET, "bench")
PROTO = os.path.join(REPO, "proto", "greeter.proto")
GHZ_VERSION = "v0.121.0"  # github.com/bojand/ghz, latest on the Go module proxy when pinned
GHZ = os.path.join(TB, "bin", "ghz")
INTEROP = os.path.join(TARGET, "interop")
INTEROP_PY = os.path.join(INTEROP, "venv", "bin", "python")  # pinned grpcio (tests/interop/setup.sh)
PYTHON_GEN = os.path.join(INTEROP, "python_gen")
COUNTER = os.path.join(BENCH, "count_msgs.py")
CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVER_CPU, CLIENT_CPU = "0", "1"
TICKS = 1000  # messages per streaming call, every streaming scenario
CLIENT_BOUND = 0.85  # ghz busier than this (share of its core): the client limited the rate...
SERVER_BOUND = 0.90  # ...unless the server's core was this busy too (then the server did)
ALL_SERVERS = ["rust", "go", "cpp", "tonic", "python"]
# Not in a default run (its first build compiles C-core and grpc++, ~20 min here): the C++
# peer on the C-core our server runs, for comparisons of like with like.
EXTRA_SERVERS = ["cpp156"]
LABELS = {"rust": "rust (ours, grpcio)", "go": "grpc-go", "cpp": "C++ (C-core)", "tonic": "tonic", "python": "Python grpcio",
          "cpp156": "C++ (C-core 1.56.2)"}

# name: (method, data, msgs per call, concurrency, connections, extra ghz flags); `check`: the
# per-call counts that must equal msgs (see check_counts)
SCENARIOS = {
    "unary": dict(title="unary SayHello, closed loop (max rps)", method="SayHello",
                  data={"name": "bench"}, msgs=1, c=50, conns=4),
    "unary_rate": dict(title="unary SayHello, open loop at a fixed rate", method="SayHello",
                       data={"name": "bench"}, msgs=1, c=50, conns=4, rate=True),
    "server_stream": dict(title=f"server streaming GetStockPrice, {TICKS} ticks/call", method="GetStockPrice",
                          data={"symbol": "BENCH"}, msgs=TICKS, c=8, conns=2, check=("received",)),
    "client_stream": dict(title=f"client streaming RecordMetrics, {TICKS} values/call", method="RecordMetrics",
                          data=[{"value": 500.0 + (i % 100)} for i in range(TICKS)], msgs=TICKS, c=8, conns=2,
                          check=("sent", "counted")),
    "bidi": dict(title=f"bidi Chat, {TICKS} messages/call", method="Chat",
                 data=[{"user": "bench", "message": f"hello {i}"} for i in range(TICKS)], msgs=TICKS, c=8, conns=2,
                 check=("sent", "received")),
}
STREAMING = ["server_stream", "client_stream", "bidi"]
COUNT_WORDS = {"sent": "messages sent to it", "received": "messages received from it",
               "counted": "values it counted (MetricSummary.count)"}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def die(msg):
    log(f"bench: ERROR: {msg}")
    sys.exit(2)


def run(cmd, **kw):
    log("bench: $ " + " ".join(cmd))
    subprocess.run(cmd, check=True, **kw)


def out_of(cmd, **kw):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=True, **kw).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def digest(*parts):
    h = hashlib.sha256()
    for p in parts:
        if os.path.isfile(p):
            with open(p, "rb") as f:
                h.update(f.read())
        else:
            h.update(p.encode())
    return h.hexdigest()


def fresh(name, key, *outputs):
    stamp = os.path.join(TB, "stamps", name)
    try:
        with open(stamp) as f:
            ok = f.read() == key
    except OSError:
        return False
    return ok and all(os.path.exists(o) for o in outputs)


def set_stamp(name, key):
    os.makedirs(os.path.join(TB, "stamps"), exist_ok=True)
    with open(os.path.join(TB, "stamps", name), "w") as f:
        f.write(key)


# --- setup: every peer built by the harness itself --------------------------------------

def setup_ghz():
    key = f"{GHZ_VERSION} {out_of(['go', 'env', 'GOVERSION'])}"
    if fresh("ghz", key, GHZ):
        return
    if not shutil.which("go"):
        die("'go' is needed to install ghz (and the grpc-go peer)")
    log(f"bench: installing ghz {GHZ_VERSION} into {os.path.dirname(GHZ)}")
    env = dict(os.environ, GOBIN=os.path.dirname(GHZ), GOWORK="off")
    run(["go", "install", f"github.com/bojand/ghz/cmd/ghz@{GHZ_VERSION}"], env=env)
    set_stamp("ghz", key)


def setup_rust(args):
    if args.rust_server:
        return
    if not args.no_build:
        run(["cargo", "build", "--release", "--example", "server"], cwd=REPO)


def rust_binary(args):
    return args.rust_server or os.path.join(TARGET, "release", "examples", "server")


def setup_interop(args):
    if not args.no_build:
        run(["bash", os.path.join(REPO, "tests", "interop", "setup.sh")])
    elif not os.path.exists(INTEROP_PY):
        die(f"{INTEROP_PY} is missing (run tests/interop/setup.sh, or drop --no-build)")


def setup_tonic(args):
    if args.no_build:
        return
    env = dict(os.environ, CARGO_TARGET_DIR=os.path.join(TARGET, "bench-tonic"))
    run(["cargo", "build", "--release", "--manifest-path", os.path.join(BENCH, "peers", "tonic", "Cargo.toml")], env=env)


def install_cpp_toolchain():
    """Debian's gRPC C++ (1.51), protoc and its gRPC plugin, with apt-get when missing."""
    have = lambda: (shutil.which("protoc") and shutil.which("grpc_cpp_plugin") and shutil.which("pkg-config")
                    and out_of(["pkg-config", "--exists", "grpc++"]) is not None)
    if not have():
        if os.geteuid() != 0:
            die("the C++ peer needs Debian's libgrpc++-dev protobuf-compiler-grpc pkg-config (run as root to install)")
        log("bench: installing libgrpc++-dev protobuf-compiler-grpc pkg-config with apt-get")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        run(["apt-get", "update", "-qq"], env=env)
        run(["apt-get", "install", "-y", "-qq", "libgrpc++-dev", "protobuf-compiler-grpc", "pkg-config", "g++"], env=env)


def generate_cpp(gen):
    """greeter.pb.{h,cc} and greeter.grpc.pb.{h,cc} into `gen`."""
    os.makedirs(gen, exist_ok=True)
    run(["protoc", f"-I{os.path.dirname(PROTO)}", f"--cpp_out={gen}", f"--grpc_out={gen}",
         f"--plugin=protoc-gen-grpc={shutil.which('grpc_cpp_plugin')}", PROTO])


def setup_cpp(args):
    binary = os.path.join(TB, "cpp", "greeter-cpp-server")
    if args.no_build:
        return
    install_cpp_toolchain()
    src = os.path.join(BENCH, "peers", "cpp", "server.cc")
    key = digest(src, PROTO, out_of(["pkg-config", "--modversion", "grpc++"]) or "", out_of(["g++", "--version"]) or "")
    if fresh("cpp", key, binary):
        return
    gen = os.path.join(TB, "cpp")
    generate_cpp(gen)
    flags = out_of(["pkg-config", "--cflags", "--libs", "grpc++", "protobuf"]).split()
    run(["g++", "-O2", "-std=c++17", f"-I{gen}", "-o", binary, src,
         os.path.join(gen, "greeter.pb.cc"), os.path.join(gen, "greeter.grpc.pb.cc")] + flags + ["-lpthread"])
    set_stamp("cpp", key)


def grpcio_sys_sources():
    """The gRPC source tree grpcio-sys bundles (C-core 1.56.2 and its C++ API), from cargo's registry."""
    meta = json.loads(out_of(["cargo", "metadata", "--format-version", "1"], cwd=REPO) or "{}")
    for pkg in meta.get("packages", []):
        if pkg["name"] == "grpcio-sys":
            return os.path.join(os.path.dirname(pkg["manifest_path"]), "grpc")
    die("bench: cargo metadata names no grpcio-sys package")


def setup_cpp156(args):
    """The same server.cc on grpc++ built from grpcio-sys's own sources: the engine ours runs.
    Release build (-O3), as grpcio-sys builds C-core; Debian's protoc plugin writes the stubs."""
    out = os.path.join(TB, "cpp156")
    binary = os.path.join(out, "greeter-cpp-server")
    if args.no_build:
        return
    install_cpp_toolchain()
    grpc = grpcio_sys_sources()
    peer = os.path.join(BENCH, "peers", "cpp")
    key = digest(os.path.join(peer, "server.cc"), os.path.join(peer, "CMakeLists.txt"), PROTO, grpc,
                 out_of(["g++", "--version"]) or "")
    if fresh("cpp156", key, binary):
        return
    log("bench: building the C++ peer on grpcio-sys's C-core 1.56.2 (first time ~20 min on 2 cores)")
    gen = os.path.join(out, "gen")
    generate_cpp(gen)
    build = os.path.join(out, "build")
    run(["cmake", "-S", peer, "-B", build, "-DCMAKE_BUILD_TYPE=Release", f"-DGRPC_SOURCE_DIR={grpc}",
         f"-DGEN_DIR={gen}", "-DCMAKE_POLICY_VERSION_MINIMUM=3.5"])
    run(["cmake", "--build", build, "--target", "greeter-cpp-server", "--parallel", str(os.cpu_count() or 1)])
    shutil.copy(os.path.join(build, "greeter-cpp-server"), binary)
    set_stamp("cpp156", key)


def setup_plot_venv():
    req = os.path.join(BENCH, "requirements.txt")
    py = os.path.join(TB, "venv", "bin", "python")
    key = digest(req, sys.version)
    if fresh("venv", key, py):
        return py
    log("bench: creating target/bench/venv for the plot (bench/requirements.txt)")
    shutil.rmtree(os.path.join(TB, "venv"), ignore_errors=True)
    run([sys.executable, "-m", "venv", os.path.join(TB, "venv")])
    run([py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", req])
    set_stamp("venv", key)
    return py


# --- servers ------------------------------------------------------------------------------

def server_spec(name, port, args):
    """(argv, extra env, worker description) for one server, ticks=1000 and interval 0."""
    if name == "rust":
        return ([rust_binary(args), "--addr", f"127.0.0.1:{port}", "--completion-queues", "1",
                 "--stock-ticks", str(TICKS), "--stock-interval", "0s", "--no-reflection", "--grace", "1s"],
                {"RUST_LOG": "info"}, "--completion-queues 1 (one grpcio CQ thread runs I/O and handlers)")
    if name == "go":
        return ([os.path.join(INTEROP, "bin", "interop-server"), "--host", "127.0.0.1", "--port", str(port),
                 "--ticks", str(TICKS), "--interval", "0s"], {"GOMAXPROCS": "1"}, "GOMAXPROCS=1")
    if name == "python":
        return ([INTEROP_PY, os.path.join(REPO, "tests", "interop", "python", "interop_server.py"),
                 "--port", str(port), "--ticks", str(TICKS), "--interval", "0"],
                {"PYTHONPATH": PYTHON_GEN, "PYTHONUNBUFFERED": "1"},
                "ThreadPoolExecutor(max_workers=16) as the interop server has it (one GIL)")
    if name == "tonic":
        return ([os.path.join(TARGET, "bench-tonic", "release", "greeter-tonic-peer"), "--port", str(port),
                 "--ticks", str(TICKS), "--interval-ms", "0"], {}, "tokio current_thread runtime (one thread)")
    if name in ("cpp", "cpp156"):
        return ([os.path.join(TB, name, "greeter-cpp-server"), "--port", str(port),
                 "--ticks", str(TICKS), "--interval-ms", "0"], {}, "async API, one ServerCompletionQueue, one thread")
    raise ValueError(name)


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


def run_ghz(argv, duration):
    """Runs ghz; returns (ghz CPU share over its steady load phase, wall seconds)."""
    t0 = time.time()
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    samples = []
    while p.poll() is None:
        now = time.time() - t0
        try:
            if 0.3 <= now <= duration - 0.1:
                samples.append((now, proc_times(p.pid)))
        except OSError:
            pass
        time.sleep(0.1)
    wall = time.time() - t0
    err = p.stderr.read()
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
        run_ghz(ghz_argv(scn, srv.target, args.warmup, data_file, rps, os.devnull), args.warmup)
        cpu0, busy0, kids0 = proc_times(srv.proc.pid), busy_cpu_s(), children_cpu_s()
        t0 = time.time()
        client_share, _ = run_ghz(ghz_argv(scn, srv.target, args.duration, data_file, rps, out_file), args.duration)
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
        p = subprocess.run(argv, capture_output=True, text=True, timeout=180,
                           env=dict(os.environ, PYTHONPATH=PYTHON_GEN))
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{name} server, {scn_name}: count_msgs.py did not finish in 180 s")
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


# --- report -------------------------------------------------------------------------------

def versions(servers):
    v = {"ghz": GHZ_VERSION}
    v["rustc"] = out_of(["rustc", "-V"])
    v["go"] = out_of(["go", "version"])
    v["python"] = platform.python_version()
    lock = os.path.join(REPO, "Cargo.lock")
    if os.path.exists(lock):
        txt = open(lock).read()
        for crate in ("grpcio", "grpcio-sys", "protobuf"):
            found = re.findall(rf'name = "{crate}"\nversion = "([^"]+)"', txt)
            if found:
                v[f"{crate} (crate)"] = ", ".join(found)
    gomod = os.path.join(REPO, "tests", "interop", "go", "go.mod")
    m = re.search(r"google.golang.org/grpc (v\S+)", open(gomod).read())
    v["grpc-go"] = m.group(1) if m else None
    req = open(os.path.join(REPO, "tests", "interop", "python", "requirements.txt")).read()
    m = re.search(r"^grpcio==(\S+)", req, re.M)
    v["grpcio (python)"] = m.group(1) if m else None
    tlock = os.path.join(BENCH, "peers", "tonic", "Cargo.lock")
    if os.path.exists(tlock):
        txt = open(tlock).read()
        for crate in ("tonic", "prost", "tokio", "hyper", "h2"):
            m = re.search(rf'name = "{crate}"\nversion = "([^"]+)"', txt)
            if m:
                v[f"{crate} (tonic peer)"] = m.group(1)
    v["libgrpc++"] = out_of(["pkg-config", "--modversion", "grpc++"])
    v["g++"] = (out_of(["g++", "--version"]) or "").split("\n")[0] or None
    return v


def machine():
    model = None
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpu_model": model, "cores": os.cpu_count(), "kernel": platform.release(),
            "os": out_of(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "loadavg_at_start": open("/proc/loadavg").read().split()[:3]}


def auto_digits(v):
    return 0 if abs(v) >= 100 else (1 if abs(v) >= 10 else 2)


def fmt(v, digits=None):
    if v is None:
        return "–"
    if digits is None:
        digits = auto_digits(v)
    return f"{v:,.{digits}f}"


def fmt_spread(v, rng, digits=None):
    """"median (min–max)", the range in the median's precision; just the value without a range."""
    if v is None or rng is None:
        return fmt(v, digits)
    d = auto_digits(v) if digits is None else digits
    return f"{fmt(v, d)} ({fmt(rng[0], d)}–{fmt(rng[1], d)})"


METRICS = [  # (key path, label, applies to streaming only?, higher is better?)
    ("calls_per_s", "calls/s", None, True),
    ("msgs_per_s", "messages/s", "stream", True),
    ("latency_ms.p50", "p50 latency, ms", None, False),
    ("latency_ms.p90", "p90 latency, ms", None, False),
    ("latency_ms.p99", "p99 latency, ms", None, False),
    ("server_cpu_us_per_call", "server CPU µs/call", None, False),
    ("server_cpu_us_per_msg", "server CPU µs/message", "stream", False),
    ("msgs_per_core_s", "calls (unary) or messages/s per server core, from CPU cost", None, True),
    ("server_cpu_share", "server CPU share (1.0 = one core)", None, False),
    ("client_cpu_share", "ghz CPU share (1.0 = its core is full)", None, None),
    ("server_peak_rss_mib", "server peak RSS, MiB", None, False),
    ("other_cpu_share", "other processes' CPU during the run, cores (noise)", None, None),
    ("errors", "errors", None, False),
]


def get(cell, path):
    v = cell
    for k in path.split("."):
        v = v.get(k) if isinstance(v, dict) else None
    return v


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def median_of(values):
    """Median of the rounds that have the figure (None if none has it)."""
    vals = [v for v in values if is_number(v)]
    if not vals:
        return None
    m = statistics.median(vals)
    # Counts stay integers (an even N averages two middles), so the JSON reads like one run's.
    return int(m) if all(isinstance(v, int) for v in vals) and m == int(m) else m


def combine(runs):
    """One cell from its rounds: every figure is the median over the rounds; the rounds stay
    under "runs" (for min-max, and for anyone re-analysing results.json)."""
    cell = {}
    for k, first in runs[0].items():
        vals = [r.get(k) for r in runs]
        if k == "error_kinds":  # error -> how many calls, over all rounds
            cell[k] = {}
            for kinds in vals:
                for err, n in (kinds or {}).items():
                    cell[k][err] = cell[k].get(err, 0) + n
        elif k == "count_check":  # every call counted in any round, and every count seen
            checks = [c for c in vals if c]
            cell[k] = {"calls": sum(c["calls"] for c in checks),
                       **{w: sorted({n for c in checks for n in c[w]}) for w in checks[0] if w != "calls"}} if checks else None
        elif k == "latency_ms":
            cell[k] = {p: median_of([v.get(p) for v in vals]) for p in first}
        elif any(is_number(v) for v in vals):
            cell[k] = median_of(vals)
        else:  # server, scenario, workers: the same in every round
            cell[k] = first
    # Judged on the medians, like everything else.
    cell["client_bound"] = is_client_bound(cell["client_cpu_share"], cell["server_cpu_share"])
    cell["runs"] = [{"round": i, **{k: v for k, v in r.items() if k not in ("server", "scenario", "workers")}}
                    for i, r in enumerate(runs, 1)]
    return cell


def spread(cell, path):
    """(min, max) of a figure over the cell's rounds; None with one round, or for an old
    results.json that has no per-run values."""
    runs = (cell or {}).get("runs") or []
    vals = [v for v in (get(r, path) for r in runs) if is_number(v)]
    return (min(vals), max(vals)) if len(runs) > 1 and vals else None


def targets(results):
    """Issue 11's targets: on the same engine, our server's CPU per message no worse than the C++
    server's, and Chat at most 3.5 µs per message."""
    def cell(scn, srv):
        return results.get(scn, {}).get(srv)
    out = []

    def add(name, scn, metric, ref, op, limit):
        """`ref` a server: the ratio ours/ref is judged; `ref` None: our own figure is."""
        a = cell(scn, "rust")
        b = cell(scn, ref) if ref else {"runs": [{"round": r.get("round")} for r in (a or {}).get("runs") or []]}
        if not a or not b or get(a, metric) in (None, 0) or (ref and get(b, metric) in (None, 0)):
            return
        ratio = get(a, metric) / get(b, metric) if ref else get(a, metric)
        met = ratio <= limit if op == "<=" else ratio >= limit
        # Rounds ran both servers back to back, so round r's ratio pairs like with like: how
        # far the verdict on the medians would move from round to round.
        b_runs = {r["round"]: (get(r, metric) if ref else 1.0) for r in b.get("runs") or []}
        per_round = [get(r, metric) / b_runs[r["round"]] for r in a.get("runs") or []
                     if get(r, metric) and b_runs.get(r["round"])]
        out.append({"target": name, "scenario": scn, "metric": metric, "vs": ref, "ratio": ratio,
                    "ratio_per_round": per_round,
                    "rounds_met": sum(1 for x in per_round if (x <= limit if op == "<=" else x >= limit)),
                    "limit": f"{op} {limit}", "met": met, "absolute": ref is None,
                    # Only our own cell being client-bound can hide a higher rate of ours.
                    "client_bound": metric == "msgs_per_s" and not met and bool(a.get("client_bound"))})

    # "The same engine" is cpp156 (C-core 1.56.2, as ours); Debian's 1.51 peer is listed too.
    for cpp, label in (("cpp156", "C++ on C-core 1.56.2"), ("cpp", "C++")):
        add(f"unary server CPU per call ≤ {label}", "unary", "server_cpu_us_per_call", cpp, "<=", 1.0)
        for s in STREAMING:
            add(f"{s} server CPU per message ≤ {label}", s, "server_cpu_us_per_msg", cpp, "<=", 1.0)
    add("bidi server CPU per message ≤ 3.5 µs", "bidi", "server_cpu_us_per_msg", None, "<=", 3.5)
    return out


def markdown(doc):
    servers = doc["servers"]
    res = doc["results"]
    lines = []
    n = doc["settings"].get("repeat", 1)  # old results.json: one run per cell
    what = f"scenario / metric: median of {n} runs (min–max)" if n > 1 else "scenario / metric"
    head = f"| {what} | " + " | ".join(LABELS[s] for s in servers) + " |"
    lines += [head, "|" + " --- |" * (len(servers) + 1)]
    for scn in doc["scenarios"]:
        extra = f" — {doc['fixed_rps']:,} calls/s offered" if scn == "unary_rate" else ""
        lines.append(f"| **{SCENARIOS[scn]['title']}{extra}** |" + " |" * len(servers))
        for path, label, only, better in METRICS:
            if only == "stream" and scn not in STREAMING:
                continue
            if path == "calls_per_s" and scn in STREAMING:
                label = "calls/s"
            row = f"| {label} |"
            base = get(res.get(scn, {}).get("go") or {}, path)
            for s in servers:
                c = res.get(scn, {}).get(s)
                if c is None:
                    row += " failed |"
                    continue
                v = get(c, path)
                rng = spread(c, path)
                if path == "errors" and rng and not rng[1]:
                    rng = None  # "0", not "0 (0–0)": no round had errors
                txt = fmt_spread(v, rng, 0 if path == "errors" else (2 if "share" in path else None))
                if path in ("calls_per_s", "msgs_per_s") and c.get("client_bound") and scn != "unary_rate":
                    txt += " †"
                if s != "go" and base and v is not None and better is not None and path != "errors":
                    txt += f" (×{v / base:.2f})"
                row += f" {txt} |"
            lines.append(row)
    lines.append("")
    if n > 1:
        lines.append(f"Every figure is the median of {n} runs of its cell, with the lowest and highest run "
                     "in parentheses; the servers took turns round by round (round r measured each server "
                     "once before round r+1 began). Ratios, † and targets are from the medians.")
        lines.append("")
    lines.append(f"Ratios in parentheses are to grpc-go. † ghz's own core was ≥ {CLIENT_BOUND:.0%} busy while "
                 f"the server's was < {SERVER_BOUND:.0%}: the client, not the server, set that rate; compare CPU "
                 "per call/message and messages/s per server core instead.")
    if any(c and c.get("count_check") for scn in STREAMING for c in res.get(scn, {}).values()):  # not in old JSON
        lines.append("")
        calls = "/".join(str(c) for c in sorted({SCENARIOS[s]["c"] for s in STREAMING}))
        lines.append(f"Streaming messages/s = calls/s × {TICKS}. ghz counts a stream as OK whatever it carried, so "
                     f"after each measured run bench/count_msgs.py (Python grpcio) makes {calls} concurrent calls "
                     f"on the same server and counts every message; a call with other than {TICKS} fails the cell.")
    lines.append("")
    lines.append("Workers: " +
                 "; ".join(f"{LABELS[s]}: {doc['workers'].get(s, '?')}" for s in servers) + ".")
    if doc["targets"]:
        per_round = n > 1 and any(len(t.get("ratio_per_round") or []) > 1 for t in doc["targets"])
        lines += ["", "| target (ours vs peer) | ratio" + (" of medians (per-round min–max)" if per_round else "")
                  + " | met? |", "| --- | --- | --- |"]
        for t in doc["targets"]:
            verdict = "yes" if t["met"] else "no"
            rounds = t.get("ratio_per_round") or []
            ratio = f"{t['ratio']:.2f} µs" if t.get("absolute") else f"×{t['ratio']:.2f}"
            if len(rounds) > 1:
                ratio += f" ({min(rounds):.2f}–{max(rounds):.2f})"
                if t["rounds_met"] not in (0, len(rounds)):  # the verdict hangs on which round
                    verdict += f" (met in {t['rounds_met']} of {len(rounds)} rounds)"
            if t.get("client_bound"):
                verdict += " (client-bound: inconclusive)"
            lines.append(f"| {t['target']} | {ratio} | {verdict} |")
    return "\n".join(lines) + "\n"


def render(args):
    with open(args.render) as f:
        doc = json.load(f)
    for cells in doc["results"].values():
        for c in cells.values():
            if c:
                c["client_bound"] = is_client_bound(c.get("client_cpu_share"), c.get("server_cpu_share"))
    doc["targets"] = targets(doc["results"])
    out = os.path.abspath(args.out or os.path.dirname(os.path.abspath(args.render)))
    os.makedirs(out, exist_ok=True)
    json_path, md_path = os.path.join(out, "results.json"), os.path.join(out, "results.md")
    with open(json_path, "w") as f:
        json.dump(doc, f, indent=1)
    with open(md_path, "w") as f:
        f.write(markdown(doc))
    plot = None
    if not args.no_plot:
        plot = os.path.join(out, "plot.png")
        subprocess.run([setup_plot_venv(), os.path.join(BENCH, "plot.py"), json_path, plot], check=True)
    if not doc["settings"]["quick"] and not args.out and not args.no_publish:
        publish(doc, md_path, plot)
    print(open(md_path).read())
    return 0


def publish(doc, md, plot):
    os.makedirs(os.path.join(BENCH, "results"), exist_ok=True)
    shutil.copy(md, os.path.join(BENCH, "results", "results.md"))
    shutil.copy(os.path.join(os.path.dirname(md), "results.json"), os.path.join(BENCH, "results", "results.json"))
    if plot and os.path.exists(plot):
        shutil.copy(plot, os.path.join(BENCH, "results", "plot.png"))
    path = os.path.join(REPO, "BENCHMARKS.md")
    n = doc["settings"].get("repeat", 1)
    begin, end = "<!-- BEGIN bench/run output -->", "<!-- END bench/run output -->"
    block = (f"{begin}\n_Generated by `{doc['command']}` on {doc['date']} ({doc['machine']['cpu_model']}, "
             f"{doc['machine']['cores']} cores, kernel {doc['machine']['kernel']}; load average at start / end "
             f"{' '.join(doc['machine']['loadavg_at_start'])} / {' '.join(doc['machine'].get('loadavg_at_end', []))}). Run time {doc['elapsed_s'] / 60:.1f} min"
             + (f"; every cell measured {n} times, servers taking turns round by round" if n > 1 else "") + "._\n\n"
             + ("![benchmark plot](bench/results/plot.png)\n\n" if plot else "")
             + open(md).read() + end)
    if os.path.exists(path):
        text = open(path).read()
        if begin in text and end in text:
            text = text[:text.index(begin)] + block + text[text.index(end) + len(end):]
        else:
            text += "\n" + block + "\n"
    else:
        text = "# Benchmarks\n\n" + block + "\n"
    with open(path, "w") as f:
        f.write(text)
    log(f"bench: updated {path} and bench/results/")


# --- main ---------------------------------------------------------------------------------

def run_summary(c, scn):
    """One progress line's figures: of one run, or of a cell's medians."""
    return (f"{fmt(c['calls_per_s'])} calls/s" + (f" = {fmt(c['msgs_per_s'])} msgs/s" if scn in STREAMING else "")
            + f", p50 {fmt(c['latency_ms']['p50'])} ms, p99 {fmt(c['latency_ms']['p99'])} ms, "
            f"server {fmt(c['server_cpu_us_per_call'])} µs CPU/call ({fmt(c['server_cpu_share'], 2)} core), "
            f"ghz {fmt(c['client_cpu_share'], 2)} core, other {fmt(c['other_cpu_share'], 2)} core, "
            f"RSS {fmt(c['server_peak_rss_mib'])} MiB, errors {c['errors']}"
            + (f", {c['count_check']['calls']} calls counted: {SCENARIOS[scn]['msgs']} msgs each"
               if c["count_check"] else ""))


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
    setup_ghz()
    if "rust" in servers:
        setup_rust(args)
    if "go" in servers or "python" in servers or set(scenarios) & set(STREAMING):
        setup_interop(args)  # the Go and Python peers, and count_msgs.py's grpcio
    if "tonic" in servers:
        setup_tonic(args)
    if "cpp" in servers:
        setup_cpp(args)
    if "cpp156" in servers:
        setup_cpp156(args)
    plot_py = None
    if not args.no_plot:
        try:
            plot_py = setup_plot_venv()
        except (subprocess.CalledProcessError, OSError) as e:
            log(f"bench: WARNING: no plot venv ({e}); continuing without the PNG")
    setup_s = time.time() - start

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
            subprocess.run([plot_py, os.path.join(BENCH, "plot.py"), json_path, plot], check=True)
        except (subprocess.CalledProcessError, OSError) as e:
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
