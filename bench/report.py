"""The report of bench/run: versions and machine, the figures' formats, a cell's median over
its rounds, the targets, results.md, --render and publishing to BENCHMARKS.md."""
import json
import os
import platform
import re
import shutil
import statistics
import subprocess

from common import BENCH, LABELS, PLOT_TIMEOUT_S, REPO, SCENARIOS, STREAMING, TICKS, log, out_of
from measure import CLIENT_BOUND, SERVER_BOUND, is_client_bound
from peers import GHZ_VERSION, setup_plot_venv


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


def run_summary(c, scn):
    """One progress line's figures: of one run, or of a cell's medians."""
    return (f"{fmt(c['calls_per_s'])} calls/s" + (f" = {fmt(c['msgs_per_s'])} msgs/s" if scn in STREAMING else "")
            + f", p50 {fmt(c['latency_ms']['p50'])} ms, p99 {fmt(c['latency_ms']['p99'])} ms, "
            f"server {fmt(c['server_cpu_us_per_call'])} µs CPU/call ({fmt(c['server_cpu_share'], 2)} core), "
            f"ghz {fmt(c['client_cpu_share'], 2)} core, other {fmt(c['other_cpu_share'], 2)} core, "
            f"RSS {fmt(c['server_peak_rss_mib'])} MiB, errors {c['errors']}"
            + (f", {c['count_check']['calls']} calls counted: {SCENARIOS[scn]['msgs']} msgs each"
               if c["count_check"] else ""))


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
    """(min, max) of a figure over the cell's rounds; None with one round, or for a
    results.json that has no per-run values."""
    runs = (cell or {}).get("runs") or []
    vals = [v for v in (get(r, path) for r in runs) if is_number(v)]
    return (min(vals), max(vals)) if len(runs) > 1 and vals else None


def targets(results):
    """Same-engine targets: our server's CPU per call (unary) and per message (each streaming
    scenario) no worse than the C++ server's on the same C-core, 1.56.2 as `cpp156`, or Debian's
    1.51 as `cpp`; and Chat (bidi) at most 3.5 µs of server CPU per message. A target is judged
    on the cells' medians; the ratio of each round's pair of runs is kept beside it."""
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
        # A round runs both servers back to back, so round r's ratio pairs like with like: how
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
    n = doc["settings"].get("repeat", 1)  # a results.json without it: one run per cell
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
    # Not every results.json has count checks.
    if any(c and c.get("count_check") for scn in STREAMING for c in res.get(scn, {}).values()):
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
        subprocess.run([setup_plot_venv(), os.path.join(BENCH, "plot.py"), json_path, plot], check=True,
                       timeout=PLOT_TIMEOUT_S)
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
