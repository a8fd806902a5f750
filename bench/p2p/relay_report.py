#!/usr/bin/python3
"""Summarises a bench/p2p/relay_bench.sh run.

Reads OUT/trials.jsonl (one line per trial: kind relayed | direct | move, the
trial's number, peer a's exit code, coturn's CPU seconds during the trial, the
paths of both peers' `quiclab peer --json` output) and writes
  OUT/report.md   relayed against direct: TTFB and throughput medians, the
                  ratios of the medians and the medians of the per-pair
                  ratios, coturn's CPU per relayed GB and its share of a core;
                  the move: time on the relay before the path change and
                  QUIC's validation of the new path
  OUT/relay.json  the same numbers
  OUT/relay.png   TTFB and throughput per trial, relayed beside direct
Exits 1 when a trial did not run as its kind says (a relayed trial not
through coturn, a fetch not verified, a move that did not happen is only
counted).
"""
import argparse
import json
import os
import statistics
import sys

from events import read_events


def last(events, name):
    found = [e for e in events if e["event"] == name]
    return found[-1] if found else None


def med(xs):
    return statistics.median(xs) if xs else None


def fmt(v, digits=0):
    return "–" if v is None else f"{v:.{digits}f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--rtt-ms", type=float, default=20)
    ap.add_argument("--bulk-mb", type=int, default=100)
    ap.add_argument("--no-plots", action="store_true")
    args = ap.parse_args()
    trials = []
    with open(os.path.join(args.out, "trials.jsonl")) as f:
        trials = [json.loads(line) for line in f if line.strip()]
    problems = []
    runs = {"relayed": {}, "direct": {}}
    moves = []
    for t in trials:
        a = read_events(t["a"])
        b = read_events(t["b"])
        ra = last(a, "result")
        where = f"{t['kind']} {t['n']}"
        if t["kind"] == "move":
            pc, qp, ba = last(a, "path_changed"), last(a, "quic_path"), last(a, "birthday_ended")
            bb = last(b, "birthday_ended")
            probes = (ba or {}).get("probes", 0) + (bb or {}).get("probes", 0)
            moves.append({
                "n": t["n"],
                "moved": pc is not None and qp is not None and qp.get("ok") is True,
                "on_relay_ms": pc["ms_since_connected"] if pc else None,
                "validation_ms": qp.get("ms_since_path_changed") if qp else None,
                "probes": probes,
                "outcome": ra and ra["outcome"],
            })
            continue
        c, fetch = last(a, "connected"), last(a, "fetch")
        if t["rc"] != 0 or ra is None or fetch is None or fetch.get("verified") is not True:
            problems.append(f"{where}: exit {t['rc']}, fetch {fetch}")
            continue
        path = c and c["path"]
        if path != t["kind"]:
            problems.append(f"{where}: ran {path}")
            continue
        # Either side's allocation may carry it (--relay-only on both: the controlling side's pair
        # may be its direct address to the peer's relay).
        rb = last(b, "result") or {}
        cd = sum(r.get("relay", {}).get(k, 0) for r in (ra, rb) for k in ("channel_data_sent", "channel_data_received"))
        if t["kind"] == "relayed" and cd == 0:
            problems.append(f"{where}: no ChannelData through coturn: {ra.get('relay')} / {rb.get('relay')}")
            continue
        transfer_ms = fetch["total"] - fetch["ttfb"]
        runs[t["kind"]][t["n"]] = {
            "ttfb_ms": fetch["ttfb"],
            "total_ms": fetch["total"],
            "mbit_s": fetch["bytes"] * 8 / 1e6 / (transfer_ms / 1000) if transfer_ms > 0 else None,
            "bytes": fetch["bytes"],
            "turn_cpu_s": t["turn_cpu_s"],
            "turn_core_share": t["turn_cpu_s"] / (fetch["total"] / 1000) if fetch["total"] > 0 else None,
            "turn_cpu_s_per_gb": t["turn_cpu_s"] / (fetch["bytes"] / 1e9),
        }
    rel, dire = runs["relayed"], runs["direct"]
    paired = sorted(set(rel) & set(dire))

    def series(kind, key):
        return [runs[kind][n][key] for n in sorted(runs[kind]) if runs[kind][n][key] is not None]

    def ratio_of_medians(key):
        r, d = med(series("relayed", key)), med(series("direct", key))
        return r / d if r is not None and d else None

    def paired_ratio(key):
        xs = [rel[n][key] / dire[n][key] for n in paired if rel[n][key] and dire[n][key]]
        return med(xs)

    summary = {
        "rtt_ms": args.rtt_ms,
        "bulk_mb": args.bulk_mb,
        "pairs": len(paired),
        "relayed": {k: med(series("relayed", k)) for k in ("ttfb_ms", "mbit_s", "turn_cpu_s", "turn_core_share",
                                                            "turn_cpu_s_per_gb")},
        "direct": {k: med(series("direct", k)) for k in ("ttfb_ms", "mbit_s", "turn_cpu_s")},
        "ttfb_ratio": ratio_of_medians("ttfb_ms"),
        "ttfb_paired_ratio": paired_ratio("ttfb_ms"),
        "throughput_ratio": ratio_of_medians("mbit_s"),
        "throughput_paired_ratio": paired_ratio("mbit_s"),
        "moves": moves,
        "moved": sum(1 for m in moves if m["moved"]),
        "on_relay_ms": med([m["on_relay_ms"] for m in moves if m["moved"]]),
        "validation_ms": med([m["validation_ms"] for m in moves if m["moved"]]),
        "runs": runs,
        "problems": problems,
    }
    with open(os.path.join(args.out, "relay.json"), "w") as f:
        json.dump(summary, f, indent=1)
    s = summary
    lines = [
        "# Relay benchmark",
        "",
        f"NAT lab, internet RTT {args.rtt_ms:g} ms, coturn in the lab's internet namespace. "
        f"{len(paired)} pairs of trials (relayed, direct; the order alternating), each fetching "
        f"{args.bulk_mb} MB over HTTP/3 byte-exact. Ratios: relayed / direct.",
        "",
        "| | relayed (coturn) | direct | ratio of medians | median of paired ratios |",
        "|---|---|---|---|---|",
        f"| TTFB, median (ms) | {fmt(s['relayed']['ttfb_ms'], 1)} | {fmt(s['direct']['ttfb_ms'], 1)} | "
        f"{fmt(s['ttfb_ratio'], 2)} | {fmt(s['ttfb_paired_ratio'], 2)} |",
        f"| throughput, median (Mbit/s) | {fmt(s['relayed']['mbit_s'])} | {fmt(s['direct']['mbit_s'])} | "
        f"{fmt(s['throughput_ratio'], 2)} | {fmt(s['throughput_paired_ratio'], 2)} |",
        f"| coturn CPU per trial, median (s) | {fmt(s['relayed']['turn_cpu_s'], 2)} | "
        f"{fmt(s['direct']['turn_cpu_s'], 2)} | | |",
        "",
        f"coturn while relaying: {fmt(s['relayed']['turn_cpu_s_per_gb'], 2)} CPU seconds per relayed GB "
        f"(median), {fmt(100 * s['relayed']['turn_core_share'] if s['relayed']['turn_core_share'] else None)} % of "
        f"a core at the relayed throughput above.",
    ]
    if moves:
        lines += ["", f"The move (port-restricted <-> symmetric, QUIC on coturn first, birthday punching from 2 s): "
                  f"{s['moved']}/{len(moves)} trials moved to the direct path; median time on the relay before the "
                  f"path change {fmt(s['on_relay_ms'])} ms, QUIC's validation of the new path "
                  f"{fmt(s['validation_ms'], 1)} ms after it.", "",
                  "| trial | moved | on the relay (ms) | validation (ms) | probes |", "|---|---|---|---|---|"]
        for m in moves:
            lines.append(f"| {m['n']} | {'yes' if m['moved'] else 'no'} | {fmt(m['on_relay_ms'])} | "
                         f"{fmt(m['validation_ms'], 1)} | {m['probes']} |")
    if problems:
        lines += ["", "Problems:", ""] + [f"- {p}" for p in problems]
    with open(os.path.join(args.out, "report.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    if not args.no_plots and paired:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
        for ax, key, label in ((axes[0], "ttfb_ms", "TTFB (ms)"), (axes[1], "mbit_s", "throughput (Mbit/s)")):
            ax.plot(paired, [rel[n][key] for n in paired], "o-", color="#6baed6", label="relayed (coturn)")
            ax.plot(paired, [dire[n][key] for n in paired], "s-", color="#2ca02c", label="direct")
            ax.set_xlabel("pair of trials")
            ax.set_ylabel(label)
            ax.set_ylim(bottom=0)
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=8)
        fig.suptitle(f"Relayed against direct, {args.bulk_mb} MB over HTTP/3, RTT {args.rtt_ms:g} ms", fontsize=10)
        fig.tight_layout()
        fig.savefig(os.path.join(args.out, "relay.png"), dpi=110)
        plt.close(fig)
    print("\n".join(lines[4:8]))
    print(f"relay_bench: {args.out}/report.md")
    return 1 if problems or not paired else 0


if __name__ == "__main__":
    sys.exit(main())
