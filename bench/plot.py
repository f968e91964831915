"""Draws bench/run's results.json as one PNG: python plot.py results.json plot.png

Bars are the cells' figures (medians when bench/run --repeat measured each cell more than once),
whiskers the lowest and highest run."""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

LABELS = {"rust": "rust\n(ours)", "go": "grpc-go", "cpp": "C++", "tonic": "tonic", "python": "Python"}
COLORS = {"rust": "#d9480f", "go": "#1c7ed6", "cpp": "#5f3dc4", "tonic": "#2b8a3e", "python": "#868e96"}


def dig(c, path):
    for k in path.split("."):
        c = c.get(k) if isinstance(c, dict) else None
    return c


def value(doc, scn, srv, path):
    return dig(doc["results"].get(scn, {}).get(srv), path)


def spread(doc, scn, srv, path):
    """(min, max) over the cell's runs; None for one run or an old results.json without runs."""
    runs = (doc["results"].get(scn, {}).get(srv) or {}).get("runs") or []
    vals = [v for v in (dig(r, path) for r in runs) if v is not None]
    return (min(vals), max(vals)) if len(runs) > 1 and vals else None


def panel(ax, doc, scn, path, title, better):
    servers = [s for s in doc["servers"] if value(doc, scn, s, path) is not None]
    if not servers:
        ax.set_visible(False)
        return
    vals = [value(doc, scn, s, path) for s in servers]
    spreads = [spread(doc, scn, s, path) for s in servers]
    yerr = None
    if any(spreads):  # asymmetric whiskers from the median down to min and up to max
        yerr = [[v - (r or (v, v))[0] for v, r in zip(vals, spreads)],
                [(r or (v, v))[1] - v for v, r in zip(vals, spreads)]]
    bars = ax.bar([LABELS[s] for s in servers], vals, color=[COLORS[s] for s in servers],
                  yerr=yerr, error_kw={"elinewidth": 0.8, "capsize": 3, "ecolor": "#343a40"})
    if path in ("calls_per_s", "msgs_per_s"):  # hatched: ghz, not the server, set this rate
        for b, s in zip(bars, servers):
            if doc["results"][scn][s].get("client_bound"):
                b.set_hatch("///")
                b.set_edgecolor("white")
    if min(vals) > 0 and max(vals) / min(vals) > 20:
        ax.set_yscale("log")
    base = value(doc, scn, "go", path)
    for b, s, v, r in zip(bars, servers, vals, spreads):
        txt = f"{v:,.0f}" if v >= 100 else f"{v:,.2f}" if v < 10 else f"{v:,.1f}"
        if base and s != "go":
            txt += f"\n×{v / base:.2f}"
        top = max(b.get_height(), r[1]) if r else b.get_height()  # above the whisker
        ax.annotate(txt, (b.get_x() + b.get_width() / 2, top), ha="center", va="bottom", fontsize=7)
    ax.set_title(f"{title}\n({better} is better)", fontsize=9)
    if ax.get_yscale() == "log":
        lo, hi = ax.get_ylim()
        ax.set_ylim(lo, hi * 4)
    else:
        ax.margins(y=0.25)
    ax.tick_params(axis="x", labelsize=8)
    ax.tick_params(axis="y", labelsize=7)


def main():
    doc = json.load(open(sys.argv[1]))
    panels = [
        ("unary", "calls_per_s", "unary SayHello: max calls/s", "higher"),
        ("unary", "server_cpu_us_per_call", "unary: server CPU µs per call", "lower"),
        ("unary_rate", "latency_ms.p99", f"unary at {doc.get('fixed_rps') or '?'} calls/s: p99 ms", "lower"),
        ("server_stream", "msgs_per_s", "server streaming: messages/s", "higher"),
        ("client_stream", "msgs_per_s", "client streaming: messages/s", "higher"),
        ("bidi", "msgs_per_s", "bidi Chat: messages/s", "higher"),
        ("server_stream", "server_cpu_us_per_msg", "server streaming: CPU µs/message", "lower"),
        ("client_stream", "server_cpu_us_per_msg", "client streaming: CPU µs/message", "lower"),
        ("bidi", "server_cpu_us_per_msg", "bidi: CPU µs/message", "lower"),
    ]
    panels = [p for p in panels if p[0] in doc["scenarios"]]
    cols = 3
    rows = max(1, (len(panels) + cols - 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(12, 3.4 * rows), squeeze=False)
    for ax, (scn, path, title, better) in zip(axes.flat, panels):
        panel(ax, doc, scn, path, title, better)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    m = doc["machine"]
    n = doc["settings"].get("repeat", 1)
    runs = f"median of {n} runs per cell, whiskers min–max" if n > 1 else "one run per cell"
    fig.suptitle(f"greeter servers, one core each (server CPU 0, ghz CPU 1) — {m['cpu_model']}, {m['cores']} cores; "
                 f"\n{doc['settings']['duration_s']:g} s per run, {runs}; ×: ratio to grpc-go; hatched: ghz-bound",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=110)


if __name__ == "__main__":
    main()
