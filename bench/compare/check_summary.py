#!/usr/bin/python3
"""Checks a compare.sh output directory against the documented schema
(docs/compare.md) and, with --handshake-order RTT, that the median TTFB of the
handshake workload at that RTT and no loss is ordered h3-0rtt < h3 < h2.
Exit 0 when it holds; otherwise prints what is wrong and exits 1."""
import argparse
import json
import os
import sys

CELL_KEYS = {"protocol": str, "rtt_ms": (int, float), "loss_pct": (int, float), "rate_mbit": (int, float),
             "workload": str, "runs": int, "failed": int}
METRICS = ("ttfb_ms", "handshake_ms", "complete_ms")


def check(out, order_rtt):
    errors = []
    for f in ("runs.jsonl", "runs.csv", "summary.json", "report.md", "meta.json"):
        if not os.path.exists(os.path.join(out, f)):
            errors.append(f"missing {f}")
    with open(os.path.join(out, "summary.json")) as f:
        s = json.load(f)
    if s.get("schema") != "quiclab-compare-summary/1":
        errors.append(f"schema is {s.get('schema')!r}")
    if not isinstance(s.get("cells"), list) or not s["cells"]:
        errors.append("no cells")
        return errors
    for i, c in enumerate(s["cells"]):
        for k, t in CELL_KEYS.items():
            if not isinstance(c.get(k), t):
                errors.append(f"cells[{i}].{k} missing or not {t}")
        for m in METRICS:
            d = c.get(m)
            if not isinstance(d, dict) or not {"median", "p95", "ci95"} <= d.keys():
                errors.append(f"cells[{i}].{m} lacks median/p95/ci95")
                continue
            if d["median"] is not None and d["ci95"] is not None:
                lo, hi = d["ci95"]
                if not lo <= d["median"] <= hi:
                    errors.append(f"cells[{i}].{m}: median {d['median']} outside ci95 {d['ci95']}")
                if d["p95"] < d["median"]:
                    errors.append(f"cells[{i}].{m}: p95 below median")
        if c.get("failed", 0) > 0:
            errors.append(f"cells[{i}] ({c['protocol']} {c['workload']}): {c['failed']} failed runs")
    for i, r in enumerate(s.get("ratios", [])):
        for k in ("protocol", "baseline", "metric", "median_ratio", "ci95"):
            if k not in r:
                errors.append(f"ratios[{i}] lacks {k}")
    if order_rtt is not None:
        ttfb = {c["protocol"]: c["ttfb_ms"]["median"] for c in s["cells"]
                if c["workload"] == "handshake" and c["rtt_ms"] == order_rtt and c["loss_pct"] == 0}
        need = ("h3-0rtt", "h3", "h2")
        if any(ttfb.get(p) is None for p in need):
            errors.append(f"handshake cells at {order_rtt} ms missing: have {sorted(ttfb)}")
        elif not ttfb["h3-0rtt"] < ttfb["h3"] < ttfb["h2"]:
            errors.append(f"handshake TTFB order wrong at {order_rtt} ms: {ttfb}")
        else:
            print(f"handshake TTFB at {order_rtt} ms: h3-0rtt {ttfb['h3-0rtt']:.1f} < h3 {ttfb['h3']:.1f} "
                  f"< h2 {ttfb['h2']:.1f} ms")
    return errors


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("out")
    ap.add_argument("--handshake-order", type=float, metavar="RTT")
    a = ap.parse_args()
    errors = check(a.out, a.handshake_order)
    for e in errors:
        print("check_summary: " + e, file=sys.stderr)
    if not errors:
        print("check_summary: summary.json matches the schema")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
