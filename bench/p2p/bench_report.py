#!/usr/bin/python3
"""Summarises bench/p2p/p2p_bench.sh: OUT/trials.jsonl -> OUT/report.md (and prints it).

Per cell and RTT: quiclab peer's time from introduction to the nominated pair
and to the first HTTP/3 response byte (median, p95), libnice's time from the
remote offer to the selected pair, the ratio of the medians (ours / libnice's;
target <= 1.0), the floor (one peer RTT + Ta); bulk throughput punched vs
plain (target >= 0.9); peak memory of a controlled peer of each kind.
"""
import json
import os
import statistics
import sys

from events import percentile


def f(v, nd=0):
    return "–" if v is None else f"{v:.{nd}f}"


def main():
    out = sys.argv[1]
    rows = [json.loads(l) for l in open(os.path.join(out, "trials.jsonl")) if l.strip()]
    meta = next((r for r in rows if r["kind"] == "meta"), {})
    rows = [r for r in rows if r["kind"] != "meta"]
    lines = ["# P2P benchmark", "",
             "Times in ms on peer a (controlling). quiclab: introduction → nominated pair, and → first "
             "HTTP/3 response byte over the punched path; libnice (against libnice): remote offer → selected "
             f"pair, with its pacing timer at {meta.get('nice_ta_ms', '?')} ms (ours: Ta = 50 ms). Ratio: quiclab "
             "median / libnice median (target ≤ 1.0). Floor: one peer RTT + Ta (50 ms). "
             f"Commit {meta.get('commit', '?')}.",
             "",
             "| cell | RTT | quiclab nominated median / p95 | first byte median / p95 | libnice median / p95 | ratio | floor | ok (ours / libnice) |",
             "|---|---|---|---|---|---|---|---|"]
    keys = sorted({(r["cell"], r["rtt_ms"]) for r in rows if r["kind"] != "bulk"}, key=lambda k: (k[1], k[0]))
    for cell, rtt in keys:
        ours = [r for r in rows if r["kind"] == "quiclab" and r["cell"] == cell and r["rtt_ms"] == rtt]
        nice = [r for r in rows if r["kind"] == "libnice" and r["cell"] == cell and r["rtt_ms"] == rtt]
        on = [r["nominated_ms"] for r in ours if "nominated_ms" in r]
        ob = [r["first_byte_ms"] for r in ours if "first_byte_ms" in r]
        nn = [r["nominated_ms"] for r in nice if "nominated_ms" in r]
        ratio = statistics.median(on) / statistics.median(nn) if on and nn else None
        lines.append(
            f"| {cell} | {rtt:.0f} | {f(statistics.median(on) if on else None)} / {f(percentile(on, 95))} | "
            f"{f(statistics.median(ob) if ob else None)} / {f(percentile(ob, 95))} | "
            f"{f(statistics.median(nn) if nn else None)} / {f(percentile(nn, 95))} | {f(ratio, 2)}× | {rtt + 50:.0f} | "
            f"{len(on)}/{len(ours)} / {len(nn)}/{len(nice)} |")
    bulk = [r for r in rows if r["kind"] == "bulk"]
    if bulk:
        lines += ["", "| bulk | RTT | punched Mbit/s | plain Mbit/s | ratio (target ≥ 0.9) |", "|---|---|---|---|---|"]
        for r in bulk:
            p, q = r.get("punched_mbit_s"), r.get("plain_mbit_s")
            lines.append(f"| {r['mb']} MB | {r['rtt_ms']:.0f} | {f(p)} | {f(q)} | {f(p / q if p and q else None, 2)}× |")
        ps = [r["punched_mbit_s"] for r in bulk if r.get("punched_mbit_s")]
        qs = [r["plain_mbit_s"] for r in bulk if r.get("plain_mbit_s")]
        if ps and qs:
            lines.append(f"| median | | {f(statistics.median(ps))} | {f(statistics.median(qs))} | "
                         f"**{statistics.median(ps) / statistics.median(qs):.2f}×** |")
    mo = [r["rss_kib"] for r in rows if r["kind"] == "quiclab" and r.get("rss_kib")]
    mn = [r["rss_kib"] for r in rows if r["kind"] == "libnice" and r.get("rss_kib")]
    if mo or mn:
        lines += ["", f"Peak memory (VmHWM) of the controlled peer: quiclab peer (HTTP/3 server included) median "
                  f"{f(statistics.median(mo) if mo else None)} KiB; libnice nice_peer (checks only) median "
                  f"{f(statistics.median(mn) if mn else None)} KiB."]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(out, "report.md"), "w") as fh:
        fh.write(text)
    print(text)


if __name__ == "__main__":
    main()
