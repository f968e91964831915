"""bench/run --payload: what compression costs and saves, ours against grpc-go: unary SayHello
with a 64 KiB compressible name (and a reply as large), closed loop, once plain and once with
gzip both ways. Per call: the server's CPU, and the bytes of the request and of the reply on
the wire (after compression, as grpc-go's stats handler in the driver counts them).

Our server compresses with `--compression gzip` (for a client that accepts gzip, as grpc-go
with its gzip codec does); grpc-go's answers a gzip request in gzip once its gzip codec is
imported (tests/interop/go/cmd/interop-server does). The load is scale-driver's `payload`
mode, pinned to CPU 1; the server runs on CPU 0. Results: <out>/payload.json, payload.md.
"""
import json
import os
import statistics
import time

from common import LABELS, log
from measure import proc_times
from scale import driver, start_server

SERVERS = ["rust", "go"]
PAYLOAD = 64 << 10
MODES = {"identity": ([], ""), "gzip": (["--compression", "gzip"], "gzip")}  # our server's flags, the codec


def one(name, mode, args, logdir):
    extra = MODES[mode][0] if name == "rust" else []
    srv = start_server(name, args, logdir, extra)
    try:
        flags = ["-mode", "payload", "-payload", PAYLOAD, "-duration", f"{args.scale_duration}s", "-workers", 8]
        if MODES[mode][1]:
            flags += ["-compress", MODES[mode][1]]
        drv = driver(srv, logdir, name, *flags)
        try:
            drv.json_line(120, f"{name} server, payload {mode}: the first call")
            c0, w0 = proc_times(srv.p.pid), time.time()
            res = drv.json_line(args.scale_duration + 120, f"{name} server, payload {mode}")
            cpu, wall = proc_times(srv.p.pid) - c0, time.time() - w0
        finally:
            rc = drv.stop(sig=None, deadline_s=60)
    finally:
        srv.stop()
    if rc != 0 or res.get("failed"):
        raise RuntimeError(f"{name} server, payload {mode}: {res.get('failed')} calls failed (driver exit {rc})")
    n = res["calls"]
    return {"calls_per_s": res["calls_per_s"], "cpu_us_per_call": cpu * 1e6 / n if n else None,
            "server_cpu_cores": cpu / wall, "request_wire_bytes": res.get("request_wire_bytes"),
            "reply_wire_bytes": res.get("reply_wire_bytes")}


def main(args, servers, out, logdir, doc_head):
    servers = [s for s in servers if s in SERVERS] or SERVERS
    runs, failures = {}, []
    total, done, t0 = args.repeat * len(servers) * len(MODES), 0, time.time()
    for r in range(1, args.repeat + 1):
        for mode in MODES:
            for s in servers:
                try:
                    res = one(s, mode, args, logdir)
                    runs.setdefault((s, mode), []).append(res)
                    what = (f"{res['calls_per_s']:,.0f} calls/s, {res['cpu_us_per_call']:,.0f} µs CPU/call, "
                            f"{res['request_wire_bytes']:,.0f} B out / {res['reply_wire_bytes']:,.0f} B back per call")
                except (RuntimeError, OSError, ValueError, KeyError) as e:
                    failures.append(f"payload {mode}/{s} round {r}: {e}")
                    what = f"FAILED: {e}"
                done += 1
                el = time.time() - t0
                log(f"[{done:>2}/{total} {el:4.0f}s] payload {mode:<8} {s:<5} round {r}/{args.repeat}: {what}")
    cells = {f"{s}/{m}": {k: statistics.median([x[k] for x in v]) for k in v[0]} | {"rounds": len(v)}
             for (s, m), v in runs.items()}
    doc = dict(doc_head, payload_bytes=PAYLOAD, repeat=args.repeat, duration_s=args.scale_duration, cells=cells,
               failures=failures)
    with open(os.path.join(out, "payload.json"), "w") as f:
        json.dump(doc, f, indent=1)
    md = [f"Payload scenario, {doc['date']}, `{doc['command']}`: unary SayHello, a {PAYLOAD // 1024} KiB "
          f"compressible name, 8 callers, {args.repeat} round(s) of {args.scale_duration:g} s, medians.\n\n",
          "| server | compression | calls/s | server CPU µs/call | request bytes on the wire | reply bytes on the wire |\n",
          "|---|---|---:|---:|---:|---:|\n"]
    for s in servers:
        for m in MODES:
            c = cells.get(f"{s}/{m}")
            if c:
                md.append(f"| {LABELS[s]} | {m} | {c['calls_per_s']:,.0f} | {c['cpu_us_per_call']:,.0f} | "
                          f"{c['request_wire_bytes']:,.0f} | {c['reply_wire_bytes']:,.0f} |\n")
    if failures:
        md.append("\nFailed: " + "; ".join(failures) + "\n")
    md = "".join(md)
    with open(os.path.join(out, "payload.md"), "w") as f:
        f.write(md)
    print(md)
    return 1 if failures else 0
