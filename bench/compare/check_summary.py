#!/usr/bin/python3
"""Checks a compare.sh output directory against the documented schema
(docs/compare.md) and, with --handshake-order RTT, that the median TTFB of the
handshake workload at that RTT and no loss is ordered h3-0rtt < h3 < h2 (and
h3-0rtt < h3 < h2-resumed when h2-resumed ran). No cell may have failed runs, no
lossless cell runs of h3-0rtt / h2-resumed without accepted early data / resumption.
Exit 0 when it holds; otherwise prints what is wrong and exits 1."""
import argparse
import json
import os
import sys

CELL_KEYS = {"protocol": str, "rtt_ms": (int, float), "loss_pct": (int, float), "rate_mbit": (int, float),
             "workload": str, "runs": int, "failed": int, "loss_model": str, "queue_bdp": (int, float),
             "jitter_ms": (int, float), "reorder": bool, "cc": str, "shortcut_missed": int}
METRICS = ("ttfb_ms", "handshake_ms", "complete_ms")


def check(out, order_rtt):
    errors = []
    for f in ("runs.jsonl", "runs.csv", "summary.json", "report.md", "meta.json"):
        if not os.path.exists(os.path.join(out, f)):
            errors.append(f"missing {f}")
    with open(os.path.join(out, "summary.json")) as f:
        s = json.load(f)
    if s.get("schema") != "quiclab-compare-summary/2":
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
        # Without loss every ticket is fresh and must be taken (under loss a run may lose its shortcut: shown, not counted).
        if c.get("shortcut_missed", 0) > 0 and c.get("loss_pct") == 0:
            errors.append(f"cells[{i}] ({c['protocol']} {c['workload']}): {c['shortcut_missed']} runs without "
                          "resumption or accepted early data")
    # Every counted run of a resuming protocol resumed (h2-resumed) or had its early data taken (h3-0rtt).
    counted = {"h3-0rtt": 0, "h2-resumed": 0}
    with open(os.path.join(out, "runs.jsonl")) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            r = json.loads(line)
            p = r.get("protocol")
            if p not in counted or not r.get("ok"):
                continue
            flag = "early_data" if p == "h3-0rtt" else "resumed"
            if r.get(flag) is True:
                counted[p] += 1
            elif not isinstance(r.get(flag), bool):
                errors.append(f"runs.jsonl:{n}: a {p} run without '{flag}'")
    if counted["h3-0rtt"]:
        print(f"check_summary: {counted['h3-0rtt']} h3-0rtt runs with early data accepted, "
              f"{counted['h2-resumed']} h2-resumed runs resumed")
    if order_rtt is not None:
        ttfb = {c["protocol"]: c["ttfb_ms"]["median"] for c in s["cells"]
                if c["workload"] == "handshake" and c["rtt_ms"] == order_rtt and c["loss_pct"] == 0}
        need = ("h3-0rtt", "h3", "h2")
        if any(ttfb.get(p) is None for p in need):
            errors.append(f"handshake cells at {order_rtt} ms missing: have {sorted(ttfb)}")
        elif not ttfb["h3-0rtt"] < ttfb["h3"] < ttfb["h2"]:
            errors.append(f"handshake TTFB order wrong at {order_rtt} ms: {ttfb}")
        elif "h2-resumed" in ttfb and not ttfb["h3"] < ttfb["h2-resumed"]:
            errors.append(f"handshake TTFB: h3 not ahead of h2-resumed at {order_rtt} ms: {ttfb}")
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
