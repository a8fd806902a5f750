#!/usr/bin/python3
"""Puts the runs of `scripts/compare.sh --ablate KNOB` side by side.

OUT/ablate-baseline/ is the cell as configured; OUT/ablate-h2/, ablate-h3/ (or
ablate-both/) the same cell with KNOB flipped on that side (flip.txt says how).
Writes OUT/ablation.json and OUT/ablation.md: per variant, workload and
protocol the median TTFB and completion with their intervals, the change
against the baseline, and the h3/h2 ratio, so a reader sees which side's
setting moves the comparison.

  ablate.py --knob KNOB OUT
"""
import argparse
import json
import os
import sys


def load(d):
    with open(os.path.join(d, "summary.json")) as f:
        s = json.load(f)
    flip = ""
    if os.path.exists(os.path.join(d, "flip.txt")):
        with open(os.path.join(d, "flip.txt")) as f:
            flip = f.read().strip()
    return s, flip


def medians(summary):
    out = {}
    for c in summary["cells"]:
        out[(c["workload"], c["protocol"])] = {
            "ttfb_ms": c["ttfb_ms"]["median"], "ttfb_ci95": c["ttfb_ms"]["ci95"],
            "complete_ms": c["complete_ms"]["median"], "complete_ci95": c["complete_ms"]["ci95"],
            "runs": c["runs"], "failed": c["failed"]}
    return out


def fmt(v):
    return "–" if v is None else f"{v:.1f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--knob", required=True)
    ap.add_argument("out")
    a = ap.parse_args()
    variants = ["baseline"] + sorted(n[len("ablate-"):] for n in os.listdir(a.out)
                                     if n.startswith("ablate-") and n != "ablate-baseline")
    data = {}
    for v in variants:
        s, flip = load(os.path.join(a.out, f"ablate-{v}"))
        data[v] = {"flip": flip, "cells": medians(s)}
    base = data["baseline"]["cells"]
    rows = []
    for v in variants:
        for (wl, proto), m in sorted(data[v]["cells"].items()):
            b = base.get((wl, proto), {})
            h2 = data[v]["cells"].get((wl, "h2"), {}).get("complete_ms")
            delta = (m["complete_ms"] - b["complete_ms"]) if m["complete_ms"] is not None and b.get(
                "complete_ms") is not None else None
            rows.append({"variant": v, "flip": data[v]["flip"], "workload": wl, "protocol": proto, **m,
                         "complete_change_ms": delta,
                         "ratio_to_h2": (m["complete_ms"] / h2) if h2 and m["complete_ms"] is not None else None})
    with open(os.path.join(a.out, "ablation.json"), "w") as f:
        json.dump({"knob": a.knob, "rows": rows}, f, indent=1)
    lines = [f"# Ablation of `{a.knob}`", "",
             "The same cell (same seed, a fresh lab each) as configured and with the knob flipped on one side.", "",
             "| variant | flipped | workload | protocol | runs (failed) | TTFB ms | complete ms [95 % CI] | "
             "change vs baseline ms | complete / h2's |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ci = r["complete_ci95"]
        lines.append(f"| {r['variant']} | {r['flip'] or '–'} | {r['workload']} | {r['protocol']} | "
                     f"{r['runs']} ({r['failed']}) | {fmt(r['ttfb_ms'])} | {fmt(r['complete_ms'])}"
                     + (f" [{fmt(ci[0])}, {fmt(ci[1])}]" if ci else "") + f" | {fmt(r['complete_change_ms'])} | "
                     + ("–" if r["ratio_to_h2"] is None else f"{r['ratio_to_h2']:.3f}") + " |")
    with open(os.path.join(a.out, "ablation.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
