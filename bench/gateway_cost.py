"""bash bench/run --gateway: what the gRPC-Web gateway adds, per unary call and per streamed
tick. The same load driver (gateway/examples/web_load.rs, tonic) calls our server straight
over gRPC (HTTP/2), then through the gateway over gRPC-Web (HTTP/1.1, binary), closed loop,
8 workers with a connection each. The server and the gateway share CPU 0, the driver runs on
CPU 1. Per call (or tick): the latency the driver sees, and the CPU the server and the
gateway spent (from /proc). The stream case subscribes to 100 ticks sent back to back
(--stock-ticks 100 --stock-interval 0s). The machine's load (uptime) is recorded with the
figures, first and last. Results: <out>/gateway.json, gateway.md.
"""
import json
import os
import statistics
import subprocess
import time

from common import CLIENT_CPU, REPO, SERVER_CPU, TARGET, log
from measure import free_port, proc_times

SERVER = os.path.join(TARGET, "release", "examples", "server")
GATEWAY = os.path.join(TARGET, "release", "greeter-gateway")
DRIVER = os.path.join(TARGET, "release", "examples", "web_load")
CALLS = ["unary", "stream"]
PATHS = ["direct", "gateway"]
STREAM_TICKS = 100


def build():
    for argv in (["cargo", "build", "--release", "--example", "server"],
                 ["cargo", "build", "--release", "-p", "greeter-gateway", "--bin", "greeter-gateway",
                  "--example", "web_load"]):
        log(f"bench: {' '.join(argv)}")
        subprocess.run(argv, cwd=REPO, check=True, timeout=3600)


def uptime():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


class Proc:
    def __init__(self, argv, cpu, log_path):
        self.log = open(log_path, "w")
        self.p = subprocess.Popen(["taskset", "-c", cpu] + argv, stdout=self.log, stderr=self.log,
                                  stdin=subprocess.DEVNULL)

    def wait_listening(self, port, what):
        end = time.time() + 30
        while True:
            if self.p.poll() is not None:
                raise RuntimeError(f"{what} exited with {self.p.returncode}; see {self.log.name}")
            try:
                import socket
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return
            except OSError:
                if time.time() > end:
                    raise RuntimeError(f"{what} not listening after 30 s; see {self.log.name}")
                time.sleep(0.05)

    def stop(self):
        self.p.terminate()
        try:
            self.p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        self.log.close()


def drive(target, protocol, call, seconds, logdir):
    argv = ["taskset", "-c", CLIENT_CPU, DRIVER, "--target", target, "--protocol", protocol, "--call", call,
            "--duration", f"{seconds}s"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 120)
    with open(os.path.join(logdir, "gateway-driver.log"), "a") as f:
        f.write(" ".join(argv) + "\n" + out.stdout + out.stderr)
    if out.returncode != 0:
        raise RuntimeError(f"the driver exited with {out.returncode}: {out.stderr[-500:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    if res["errors"]:
        raise RuntimeError(f"{res['errors']} calls failed: {res['first_error']}")
    return res


def one(call, path, args, logdir):
    port = free_port()
    server = Proc([SERVER, "--addr", f"127.0.0.1:{port}", "--stock-ticks", str(STREAM_TICKS), "--stock-interval", "0s"],
                  SERVER_CPU, os.path.join(logdir, f"gateway-server-{call}-{path}.log"))
    gateway = None
    try:
        server.wait_listening(port, "the server")
        target = f"http://127.0.0.1:{port}"
        if path == "gateway":
            gport = free_port()
            gateway = Proc([GATEWAY, "--listen", f"127.0.0.1:{gport}", "--upstream", f"127.0.0.1:{port}"],
                           SERVER_CPU, os.path.join(logdir, f"gateway-{call}.log"))
            gateway.wait_listening(gport, "the gateway")
            target = f"http://127.0.0.1:{gport}"
        protocol = "grpc-web" if gateway else "grpc"
        drive(target, protocol, call, args.warmup, logdir)
        s0 = proc_times(server.p.pid)
        g0 = proc_times(gateway.p.pid) if gateway else 0.0
        res = drive(target, protocol, call, args.duration, logdir)
        server_cpu = proc_times(server.p.pid) - s0
        gateway_cpu = (proc_times(gateway.p.pid) - g0) if gateway else 0.0
    finally:
        if gateway:
            gateway.stop()
        server.stop()
    per = res["ticks"] if call == "stream" else res["calls"]
    return {"calls_per_s": res["calls_per_s"], "ticks_per_s": res["ticks_per_s"],
            "p50_ms": res["p50_us"] / 1000, "p99_ms": res["p99_us"] / 1000,
            "server_cpu_us": server_cpu * 1e6 / per, "gateway_cpu_us": gateway_cpu * 1e6 / per}


def main(args, out, logdir, head):
    build()
    load_before = uptime()
    runs, failures = {}, []
    for r in range(1, args.repeat + 1):
        for call in CALLS:
            for path in PATHS:
                try:
                    res = one(call, path, args, logdir)
                    runs.setdefault((call, path), []).append(res)
                    what = (f"{res['calls_per_s']:,.0f} calls/s, p50 {res['p50_ms']:.2f} ms, server "
                            f"{res['server_cpu_us']:.1f} µs, gateway {res['gateway_cpu_us']:.1f} µs CPU per "
                            f"{'tick' if call == 'stream' else 'call'}")
                except (RuntimeError, OSError, ValueError, KeyError, subprocess.TimeoutExpired) as e:
                    failures.append(f"{call}/{path} round {r}: {e}")
                    what = f"FAILED: {e}"
                log(f"gateway {call:<6} {path:<7} round {r}/{args.repeat}: {what}")
    load_after = uptime()
    cells = {f"{c}/{p}": {k: statistics.median([x[k] for x in v]) for k in v[0]} | {"rounds": len(v)}
             for (c, p), v in runs.items()}
    doc = dict(head, repeat=args.repeat, duration_s=args.duration, load_before=load_before, load_after=load_after,
               cells=cells, failures=failures)
    with open(os.path.join(out, "gateway.json"), "w") as f:
        json.dump(doc, f, indent=1)
    md = [f"Gateway cost, {doc['date']}, `{doc['command']}`: 8 workers, closed loop, {args.repeat} round(s) of "
          f"{args.duration:g} s, medians; server and gateway on CPU 0, the driver on CPU 1; load average "
          f"(1, 5, 15 min) {load_before} before, {load_after} after.\n\n",
          "| call | path | calls/s | ticks/s | p50 ms | p99 ms | server CPU µs | gateway CPU µs |\n",
          "|---|---|---:|---:|---:|---:|---:|---:|\n"]
    for c in CALLS:
        for p in PATHS:
            x = cells.get(f"{c}/{p}")
            if x:
                unit = "per tick" if c == "stream" else "per call"
                ticks = f"{x['ticks_per_s']:,.0f}" if c == "stream" else "–"
                md.append(f"| {'SayHello' if c == 'unary' else f'GetStockPrice ({STREAM_TICKS} ticks)'} | "
                          f"{'gRPC, direct' if p == 'direct' else 'gRPC-Web, gateway'} | {x['calls_per_s']:,.0f} | "
                          f"{ticks} | {x['p50_ms']:.2f} | {x['p99_ms']:.2f} | {x['server_cpu_us']:.1f} {unit} | "
                          f"{x['gateway_cpu_us']:.1f} {unit} |\n")
    if failures:
        md.append("\nFailed: " + "; ".join(failures) + "\n")
    md = "".join(md)
    with open(os.path.join(out, "gateway.md"), "w") as f:
        f.write(md)
    print(md)
    return 1 if failures else 0
