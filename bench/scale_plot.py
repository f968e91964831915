"""Draws bench/run --scale's scale.json as one PNG of log-log curves: python scale_plot.py scale.json scale.png"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

LABELS = {"rust": "rust (ours)", "go": "grpc-go", "cpp156": "C++ (C-core 1.56.2)", "cpp": "C++ (Debian)",
          "tonic": "tonic", "python": "Python (asyncio)"}
COLORS = {"rust": "#d9480f", "go": "#1c7ed6", "cpp156": "#5f3dc4", "cpp": "#9775fa", "tonic": "#2b8a3e",
          "python": "#868e96"}
PANELS = [  # (curve, x key, y key, y scale, title, x label, y label)
    ("subs", "n", "rss_added_kib", 1 / 1024, "idle subscriptions", "N streams", "RSS added, MiB"),
    ("chats", "n", "rss_added_kib", 1 / 1024, "idle Chats", "N streams", "RSS added, MiB"),
    ("conns", "n", "rss_added_kib", 1 / 1024, "connections (one Chat each)", "N connections", "RSS added, MiB"),
    ("active", "n", "cpu_us_per_msg", 1, "active Chats, 2,000 msgs/s shared", "N streams", "server CPU µs/message"),
    ("openloop", "offered", "p99_ms", 1, "open-loop SayHello", "offered calls/s", "p99 latency, ms"),
]


def main(src, dst):
    doc = json.load(open(src))
    fig, axes = plt.subplots(2, 3, figsize=(15, 9))
    for ax, (curve, xk, yk, mul, title, xl, yl) in zip(axes.flat, PANELS):
        cells = doc["results"].get(curve)
        if not cells:
            ax.set_visible(False)
            continue
        for srv in doc["servers"]:
            cell = cells.get(srv)
            pts = (cell or {}).get("steps" if curve == "openloop" else "points") or []
            pts = [p for p in pts if p.get(yk) is not None and p[yk] * mul > 0]
            if pts:
                ax.plot([p[xk] for p in pts], [p[yk] * mul for p in pts], "o-", label=LABELS.get(srv, srv),
                        color=COLORS.get(srv))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.grid(True, which="both", alpha=0.3)
        if curve == "openloop":
            ax.axhline(10, color="#343a40", lw=0.8, ls="--")
        ax.legend(fontsize=8)
    axes.flat[-1].set_visible(False)
    fig.suptitle(f"bench/run --scale, {doc['date']} ({doc['settings']['repeat']} rounds, medians)")
    fig.tight_layout()
    fig.savefig(dst, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
