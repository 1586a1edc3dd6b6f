"""Draws `sightline bench`'s compare.json: arrival -> webhook p99 and the share of
wanted frames accounted for, against the number of streams, one line per system
and workload. Usage: plot.py compare.json WxH compare.png (matplotlib, from the bench venv)."""
import json
import sys

import matplotlib.pyplot as plt

rows = json.load(open(sys.argv[1]))
size = sys.argv[2]
colour = {
    "sightline keyframes": "tab:blue",
    "sightline keyframes, pixel gate only": "tab:cyan",
    "sightline keyframes, in a site": "tab:purple",
    "sightline full decode": "tab:green",
    "python peer": "tab:red",
}
dash = {"realistic": "-", "busy": "--"}
fig, (lat, acc) = plt.subplots(1, 2, figsize=(12, 4.8), dpi=110)
for system in colour:
    for workload in dash:
        these = sorted((r for r in rows if r["system"] == system and r["workload"] == workload),
                       key=lambda r: r["streams"])
        if not these:
            continue
        label = f"{system}, {workload}"
        xs = [r["streams"] for r in these]
        style = dict(color=colour[system], linestyle=dash[workload], marker="o", label=label)
        # A run with no alerts has no latency: leave a gap there.
        lat.plot(xs, [r["p99_ms"] if r["p99_ms"] is not None else float("nan") for r in these], **style)
        acc.plot(xs, [100 * r["accounted"] for r in these], **style)
lat.set_yscale("log")
lat.axhline(250, color="grey", linewidth=0.8)
lat.set_title("frame arrival -> webhook receipt, p99")
lat.set_xlabel(f"streams ({size}, 25 fps, 2 fps sampled)")
lat.set_ylabel("ms (log scale)")
acc.axhline(95, color="grey", linewidth=0.8)
acc.set_ylim(0, 105)
acc.set_title("wanted frames accounted for (scored, or judged unchanged)")
acc.set_xlabel(f"streams ({size}, 25 fps, 2 fps sampled)")
acc.set_ylabel("% of wanted")
counts = sorted({r["streams"] for r in rows})
for ax in (lat, acc):
    ax.set_xticks(counts)
    ax.grid(True, alpha=0.3)
acc.legend(fontsize=8, loc="lower left")
fig.tight_layout()
fig.savefig(sys.argv[3])
