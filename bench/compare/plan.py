#!/usr/bin/python3
"""scripts/compare.sh --plan: the cells a grid would run, with their runs and an
estimate of the time each takes, without running anything.

The estimate per request is a fixed cost (the lab's exec, the client's
start, the run record: OVERHEAD_S, measured on the project's VM) plus the
slowest of: the lossless round-trip arithmetic (theory.expected), the
bottleneck's transmission time, and under random loss TCP's Mathis bound
(MSS / RTT x 1.22 / sqrt(p)), which QUIC's Cubic follows too (not BBR). It is an
estimate for planning a run, not a result.

  plan.py --seeds N --bulk BYTES [--shard I/N] CELL...   (CELL: compare.sh's key=value line)
"""
import argparse
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import theory  # noqa: E402

OVERHEAD_S = 0.22   # per request
LAB_S = 4.0         # per cell and seed: lab up and down, server start
PAGE_BYTES = 1_550_336


def request_s(proto, workload, bulk, rtt, loss, rate, cc="cubic/cubic"):
    size = {"handshake": 1024, "bulk": bulk, "page": PAGE_BYTES}[workload]
    t = theory.expected(proto, size, rtt)[1] / 1000
    if rate:
        t = max(t, size * 8 / (rate * 1e6) + 3 * rtt / 1000)
    if loss and "bbr" not in cc:  # BBR does not back off on random loss
        mathis = 1448 / (rtt / 1000) * 1.22 / math.sqrt(loss / 100)  # bytes/s
        t = max(t, size / mathis + 3 * rtt / 1000)
    return t + OVERHEAD_S


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--bulk", type=int, default=1 << 20)
    ap.add_argument("--shard", default="0/1")
    ap.add_argument("cells", nargs="+")
    a = ap.parse_args()
    si, sn = (int(x) for x in a.shard.split("/"))
    total = 0.0
    print(f"{'cell':>4}  {'runs':>9}  {'minutes':>7}  spec")
    for i, spec in enumerate(a.cells, 1):
        kv = dict(w.split("=", 1) for w in spec.split())
        if (i - 1) % sn != si:
            continue
        rtt, loss, rate, jitter = (float(kv[k]) for k in ("rtt", "loss", "rate", "jitter"))
        noisy = loss or rate or jitter
        if kv["runs"] == "auto":
            per_seed = math.ceil((30 if noisy else 10) / a.seeds)
            runs = f"{per_seed}x{a.seeds}" + ("(+)" if noisy else "")
        else:
            per_seed = int(kv["runs"])
            runs = f"{per_seed}x{a.seeds}"
        secs = a.seeds * LAB_S
        for proto in kv["protocols"].split(","):
            for wl in kv["workloads"].split(","):
                secs += per_seed * a.seeds * request_s(proto, wl, a.bulk, rtt, loss, rate, kv["cc"])
        total += secs
        print(f"{i:>4}  {runs:>9}  {secs / 60:7.1f}  {spec}")
    print(f"about {total / 60:.0f} minutes in all (an estimate; (+): up to 50 runs if bimodal)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
