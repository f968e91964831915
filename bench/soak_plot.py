"""Draws bench/soak's samples.csv: RSS and malloc's in-use and free bytes over time, in MiB.

    python soak_plot.py samples.csv rss.png TITLE"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

samples, png, title = sys.argv[1], sys.argv[2], sys.argv[3]
with open(samples) as f:
    rows = list(csv.DictReader(f))
minutes = [int(r["t_s"]) / 60 for r in rows]
fig, ax = plt.subplots(figsize=(9, 4.5))
ax.plot(minutes, [int(r["rss_kb"]) / 1024 for r in rows], label="RSS", color="#d9480f", linewidth=2)
for key, label, color in (("heap_in_use", "malloc in use", "#1c7ed6"), ("heap_free", "malloc free (kept)", "#868e96")):
    if rows and rows[0][key]:
        ax.plot(minutes, [int(r[key]) / 2**20 for r in rows], label=label, color=color)
ax.set_xlabel("minutes")
ax.set_ylabel("MiB")
ax.set_ylim(bottom=0)
ax.set_title(f"greeter server memory under soak: {title}")
ax.grid(alpha=0.3)
ax.legend()
fig.tight_layout()
fig.savefig(png, dpi=100)
