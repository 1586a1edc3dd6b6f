"""Draws `sightline bench soak`'s soak.csv: one panel per line (memory, open
files, threads, state database and WAL, recording folder, deliveries), hours
on the x axis, warm-up shaded. Usage: soak_plot.py soak.csv WARMUP_SECS soak.png
(matplotlib, from the bench venv)."""
import csv
import sys

import matplotlib.pyplot as plt

rows = list(csv.DictReader(open(sys.argv[1])))
warm_h = float(sys.argv[2]) / 3600
hours = [float(r["secs"]) / 3600 for r in rows]
panels = [
    ("RSS (MB)", ["rss_mb"]),
    ("open files", ["fds"]),
    ("threads", ["threads"]),
    ("state database (MB)", ["db_mb", "wal_mb"]),
    ("recording folder (MB)", ["recording_mb"]),
    ("webhooks delivered / reconnects", ["deliveries", "reconnects"]),
]
fig, axes = plt.subplots(2, 3, figsize=(15, 7.5), dpi=100)
for ax, (title, cols) in zip(axes.flat, panels):
    for col in cols:
        ax.plot(hours, [float(r[col]) for r in rows], label=col)
    if warm_h > 0:
        ax.axvspan(0, warm_h, color="grey", alpha=0.15)
    ax.set_title(title)
    ax.set_xlabel("hours")
    ax.set_ylim(bottom=0)
    if len(cols) > 1:
        ax.legend()
fig.suptitle("sightline bench soak (warm-up shaded)")
fig.tight_layout()
fig.savefig(sys.argv[3])
