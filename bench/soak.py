"""bench/soak: a long soak of our server with its memory sampled over time.

Starts the release `server` (loopback, free ports, --metrics-addr), runs the `soak` example
against it for --duration, and every --every seconds samples the server's RSS (/proc), malloc's
in-use and free bytes and the calls handled per method (its /metrics), and its open TCP
connections (/proc). Writes DIR/samples.csv, DIR/report.md (a table and the growth verdict)
and DIR/rss.png, and prints the report. Loopback only; stops by itself.

    bash bench/soak --duration 60m                      the 8-client, four-pattern soak
    bash bench/soak --duration 10m --patterns chat      one pattern
    bash bench/soak --duration 10m --churn              a new connection every round
    bash bench/soak --duration 10m --tls                over TLS (builds with --features tls)
"""
import argparse
import csv
import os
import re
import signal
import statistics
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import CORE_BUILD_TIMEOUT_S, REPO, TARGET, die, log, run  # noqa: E402
from measure import proc_status  # noqa: E402
from peers import setup_plot_venv  # noqa: E402

SERIES = re.compile(r'^grpc_server_handled_total\{(?P<labels>[^}]*)\} (?P<v>\S+)$')


def parse_duration(text):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(s|m|h)", text)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r}: want a number and s, m or h (e.g. 90s, 60m)")
    return float(m[1]) * {"s": 1, "m": 60, "h": 3600}[m[2]]


def scrape(url):
    """malloc's in-use and free bytes and the calls handled per method, from /metrics."""
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    gauges, calls = {}, {}
    for line in text.splitlines():
        if line.startswith("greeter_malloc_"):
            name, value = line.split()
            gauges[name] = int(float(value))
        elif (m := SERIES.match(line)) and float(m["v"]) > 0:
            method = re.search(r'grpc_method="([^"]+)"', m["labels"])[1]
            calls[method] = calls.get(method, 0) + int(float(m["v"]))
    return gauges.get("greeter_malloc_in_use_bytes"), gauges.get("greeter_malloc_free_bytes"), calls


def connections(pid, port):
    """The server's established TCP connections on its gRPC port."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for row in f.readlines()[1:]:
                cols = row.split()
                if cols[3] == "01" and int(cols[1].rsplit(":", 1)[1], 16) == port and cols[9] in inodes:
                    count += 1
    return count


def tls_files(out):
    """A throwaway CA-less self-signed certificate for 127.0.0.1, made with openssl."""
    cert, key = os.path.join(out, "server.pem"), os.path.join(out, "server.key")
    run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", key, "-out", cert], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return cert, key


def growth(rows, since):
    """RSS change from the first sample at or after `since` seconds to the last, in kB and %."""
    window = [r for r in rows if r["t_s"] >= since]
    if len(window) < 2:
        return None
    first, last = window[0]["rss_kb"], window[-1]["rss_kb"]
    return last - first, 100.0 * (last - first) / first, window[0]["t_s"]


def report(args, rows, soak_out):
    kb = lambda v: "–" if v is None else f"{v / 1024:.0f}"  # noqa: E731  bytes → kB
    step = max(1, len(rows) // 20)
    shown = rows[::step] + ([rows[-1]] if (len(rows) - 1) % step else [])
    lines = [f"# Soak: {args.name}", "",
             f"`bash bench/soak {' '.join(sys.argv[1:])}` — {args.clients} clients, patterns "
             f"{args.patterns}, {'a new connection per round' if args.churn else 'one connection each'}, "
             f"{'TLS' if args.tls else 'plaintext'}, server `--stock-interval {args.stock_interval}`"
             f"{''.join(' ' + a for a in args.server_arg)}{''.join(', ' + e for e in args.server_env)}.", "",
             "| time | RSS kB | of which anonymous | of which file (code) | malloc in use kB | malloc free kB "
             "| connections | calls handled |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in shown:
        lines.append(f"| {r['t_s'] / 60:.1f} min | {r['rss_kb']} | {r['rss_anon_kb']} | {r['rss_file_kb']} "
                     f"| {kb(r['heap_in_use'])} | {kb(r['heap_free'])} "
                     f"| {r['connections']} | {r['calls']} |")
    lines.append("")
    for label, since in ((f"after warm-up ({args.warmup / 60:g} min)", args.warmup),
                         ("over the last half", rows[-1]["t_s"] / 2),
                         ("over the last 30 min", rows[-1]["t_s"] - 1800)):
        g = growth(rows, since) if since >= 0 else None
        if g:
            lines.append(f"- RSS growth {label}: {g[0]:+d} kB ({g[1]:+.2f} %) from {g[2] / 60:.1f} min to "
                         f"{rows[-1]['t_s'] / 60:.1f} min")
    after = [r for r in rows if r["t_s"] >= args.warmup]
    if after:
        lines.append(f"- RSS after warm-up: {min(r['rss_kb'] for r in after)}–{max(r['rss_kb'] for r in after)} kB")
        ins = [r["heap_in_use"] for r in after if r["heap_in_use"] is not None]
        if ins:
            lines.append(f"- malloc in use after warm-up: {min(ins) // 1024}–{max(ins) // 1024} kB "
                         f"(first {ins[0] // 1024}, last {ins[-1] // 1024})")
    lines += ["", "The soak client's own summary:", "", "```", soak_out.strip(), "```", ""]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(prog="bench/soak", description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=parse_duration, default=parse_duration("10m"), help="e.g. 90s, 10m, 2h")
    ap.add_argument("--every", type=parse_duration, default=parse_duration("30s"), help="sampling interval")
    ap.add_argument("--warmup", type=parse_duration, default=parse_duration("5m"),
                    help="samples before this are warm-up in the verdict (default 5m)")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--patterns", default="say-hello,stock-price,record-metrics,chat",
                    help="what each round calls: say-hello,stock-price,record-metrics,chat,health,reflection")
    ap.add_argument("--churn", action="store_true", help="a new connection every round")
    ap.add_argument("--tls", action="store_true", help="serve and call over TLS (--features tls)")
    ap.add_argument("--stock-interval", default="10ms", help="the server's tick interval")
    ap.add_argument("--server-arg", action="append", default=[], help="one more argument for the server")
    ap.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                    help="one more environment variable for the server (e.g. MALLOC_ARENA_MAX=1)")
    ap.add_argument("--server-bin", help="this server binary instead of target/release/examples/server")
    ap.add_argument("--name", help="result directory name under target/soak (default from the options)")
    ap.add_argument("--no-build", action="store_true", help="use the binaries already built")
    ap.add_argument("--no-plot", action="store_true")
    args = ap.parse_args()
    args.name = args.name or "-".join(
        [args.patterns.replace(",", "+") if args.patterns != ap.get_default("patterns") else "all",
         f"{args.clients}c"] + ["churn"] * args.churn + ["tls"] * args.tls)
    out = os.path.join(TARGET, "soak", args.name)
    os.makedirs(out, exist_ok=True)

    features = ["--features", "tls"] if args.tls else []
    if not args.no_build:
        run(["cargo", "build", "--release", *features, "--example", "server", "--example", "soak"], cwd=REPO,
            timeout=CORE_BUILD_TIMEOUT_S)
    bins = os.path.join(TARGET, "release", "examples")
    server_argv = [args.server_bin or os.path.join(bins, "server"), "--addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0",
                   "--stock-interval", args.stock_interval, *args.server_arg]
    client_argv = []
    if args.tls:
        cert, key = tls_files(out)
        server_argv += ["--tls-cert", cert, "--tls-key", key]
        client_argv += ["--tls-ca", cert, "--tls-server-name", "localhost"]

    server_log = open(os.path.join(out, "server.log"), "w+")
    server = subprocess.Popen(server_argv, stderr=server_log, stdout=server_log, env={**os.environ, "RUST_LOG": "info", **dict(kv.split("=", 1) for kv in args.server_env)})
    port = metrics = None
    deadline = time.time() + 30
    while (port is None or metrics is None) and time.time() < deadline and server.poll() is None:
        time.sleep(0.1)
        server_log.seek(0)
        text = server_log.read()
        port = port or (m := re.search(r"\(port (\d+),", text)) and int(m[1])
        metrics = metrics or (m := re.search(r"Metrics at (http://\S+/metrics)", text)) and m[1]
    if port is None or metrics is None:
        server.kill()
        die(f"bench/soak: the server did not report its ports within 30 s; see {out}/server.log")

    soak_argv = [os.path.join(bins, "soak"), "--addr", f"127.0.0.1:{port}", *client_argv,
                 "--clients", str(args.clients), "--duration", f"{int(args.duration)}s",
                 "--patterns", args.patterns, "--server-pid", str(server.pid)] + ["--churn"] * args.churn
    log(f"bench/soak: {args.name}: server pid {server.pid} port {port}, {args.duration / 60:g} min, "
        f"sample every {args.every:g} s → {out}")
    soak = subprocess.Popen(soak_argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    rows, start = [], time.time()
    try:
        while True:
            now = time.time() - start
            in_use, free, calls = scrape(metrics)
            status = proc_status(server.pid)
            kb_of = lambda key: int(status[key].split()[0])  # noqa: E731
            row = dict(t_s=round(now), rss_kb=kb_of("VmRSS"), rss_anon_kb=kb_of("RssAnon"), rss_file_kb=kb_of("RssFile"),
                       heap_in_use=in_use, heap_free=free, connections=connections(server.pid, port),
                       calls=sum(calls.values()), **{f"calls_{k}": v for k, v in sorted(calls.items())})
            rows.append(row)
            log(f"[{now / 60:5.1f}/{args.duration / 60:g} min] RSS {row['rss_kb']} kB (anon {row['rss_anon_kb']}, "
                f"file {row['rss_file_kb']})  malloc in use "
                f"{(in_use or 0) // 1024} kB free {(free or 0) // 1024} kB  connections {row['connections']}  "
                f"calls {row['calls']}")
            if soak.poll() is not None:
                break
            # The soak client stops by itself at --duration; one that has not a minute later
            # is hung, and the run fails instead of sampling for ever.
            if time.time() - start > args.duration + 60:
                soak.kill()
                die(f"bench/soak: the soak client did not stop within 60 s of its {args.duration:g} s; killed")
            time.sleep(max(0.0, min(args.every, args.duration + 5 - (time.time() - start))))
        soak_out = soak.stdout.read()
    finally:
        soak.kill() if soak.poll() is None else None
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    if soak.returncode != 0:
        die(f"bench/soak: the soak client failed (exit {soak.returncode}):\n{soak_out}")

    # The first sample's columns in their order, then any that appeared later (calls of a method first seen later).
    fields = list(rows[0]) + sorted({k for r in rows for k in r} - set(rows[0]))
    with open(os.path.join(out, "samples.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    md = report(args, rows, soak_out)
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write(md)
    if not args.no_plot:
        subprocess.run([setup_plot_venv(), os.path.join(REPO, "bench", "soak_plot.py"),
                        os.path.join(out, "samples.csv"), os.path.join(out, "rss.png"), args.name], check=True)
    print(md)
    print(f"CSV: {out}/samples.csv\nplot: {out}/rss.png")
    errors = re.search(r"^errors\s+(.*)$", soak_out, re.M)
    return 0 if errors and errors[1] == "none" else 1


if __name__ == "__main__":
    sys.exit(main())
