#!/usr/bin/python3
"""Writes report.md and its PNG plots for a scripts/compare.sh output directory.

Reads OUT/summary.json, OUT/runs.jsonl and OUT/meta.json (machine, kernel,
library versions, emulator, seeds, command, fidelity check) and writes
OUT/report.md with plots beside it:
  cdf-<workload>-rtt<R>-loss<L>.png   CDFs of completion time per cell, both protocols
  complete-vs-loss-<workload>.png     median completion (with 95 % CI) against loss
  ttfb-vs-rtt.png                     handshake-workload TTFB against RTT, with 3/2/1 RTT theory lines
Uses matplotlib (Debian's python3-matplotlib) with the Agg backend.
"""
import json
import os
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cells  # noqa: E402
import parity  # noqa: E402
import report_html  # noqa: E402
import theory  # noqa: E402

COLORS = {"h2": "tab:blue", "h2-resumed": "tab:purple", "h3": "tab:orange", "h3-0rtt": "tab:green"}
# Round trips to the first response byte: TCP + TLS 1.3 (resumed or not) +
# request; QUIC's combined handshake + request; 0-RTT's request in the first flight.
THEORY_RTTS = {"h2": 3, "h2-resumed": 3, "h3": 2, "h3-0rtt": 1}


def load(out):
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    runs = []
    path = os.path.join(out, "runs.jsonl")
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    runs.append(json.loads(line))
    meta = {}
    mpath = os.path.join(out, "meta.json")
    if os.path.exists(mpath):
        with open(mpath) as f:
            meta = json.load(f)
    return summary, runs, meta


def save(fig, out, name):
    """Writes the figure as OUT/name (PNG, 110 dpi) and frees it; returns name."""
    fig.tight_layout()
    fig.savefig(os.path.join(out, name), dpi=110)
    plt.close(fig)
    return name


def missed_shortcut(r):
    """A run of h3-0rtt without accepted early data, or of h2-resumed without resumption."""
    return (r.get("protocol") == "h3-0rtt" and r.get("early_data") is not True) or \
        (r.get("protocol") == "h2-resumed" and r.get("resumed") is not True)


def fmt(v, digits=1):
    return "–" if v is None else f"{v:.{digits}f}"


def cdf_plots(runs, out):
    groups = defaultdict(lambda: defaultdict(list))
    for r in runs:
        if r.get("ok") and r.get("complete_ms") is not None and not missed_shortcut(r):
            groups[cells.key(r)][r["protocol"]].append((r["complete_ms"], r.get("ttfb_ms")))
    files = []
    for key, protos in sorted(groups.items()):
        wl, rtt, loss, rate = key[0], key[1], key[2], key[4]
        c = cells.from_key(key)
        # Completion and first byte, side by side.
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
        for ax, idx, what in ((axes[0], 0, "completion"), (axes[1], 1, "first byte (TTFB)")):
            for proto, pairs in sorted(protos.items()):
                vals = sorted(p[idx] for p in pairs if p[idx] is not None)
                if not vals:
                    continue
                ys = [(i + 1) / len(vals) for i in range(len(vals))]
                ax.step(vals, ys, where="post", label=f"{proto} (n={len(vals)})", color=COLORS.get(proto))
            ax.set_xlabel(f"{what} (ms)")
            ax.set_ylabel("fraction of runs")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle(f"{wl}: {cells.title(c)}", fontsize=9)
        name = f"cdf-{wl}-{cells.slug(c)}.png"
        save(fig, out, name)
        files.append((wl, rtt, loss, rate, name))
    return files


def vs_loss_plots(summary, out):
    by_wl = defaultdict(lambda: defaultdict(list))
    for c in summary["cells"]:
        m = c["complete_ms"]
        if m["median"] is None:
            continue
        k = cells.key(c)
        by_wl[k[:2] + k[3:]][c["protocol"]].append((c["loss_pct"], m["median"], m["ci95"], c.get("failed", 0)))
    files = []
    for k, protos in sorted(by_wl.items()):
        wl = k[0]
        c = dict(zip(("workload", "rtt_ms", "loss_model", "rate_mbit", "queue_bdp", "jitter_ms", "reorder", "cc"), k))
        if len({p[0] for v in protos.values() for p in v}) < 2:
            continue
        fig, ax = plt.subplots(figsize=(5.5, 3.5))
        for proto, pts in sorted(protos.items()):
            pts.sort()
            xs = [p[0] for p in pts]
            ys = [p[1] for p in pts]
            lo = [p[1] - (p[2][0] if p[2] else p[1]) for p in pts]
            hi = [(p[2][1] if p[2] else p[1]) - p[1] for p in pts]
            ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3, label=proto, color=COLORS.get(proto))
            # Failure markers: a red x with the count where runs of the cell failed.
            for p in pts:
                if p[3]:
                    ax.plot([p[0]], [p[1]], "x", color="red", markersize=9)
                    ax.annotate(f"{p[3]} failed", (p[0], p[1]), textcoords="offset points", xytext=(4, 4),
                                fontsize=7, color="red")
        ax.set_xlabel("loss (%)")
        ax.set_ylabel("median completion (ms), 95 % CI")
        # Wide ranges on log axes (loss 0 stays on the linear part of a symlog axis).
        losses = sorted({p[0] for v in protos.values() for p in v})
        if losses[-1] / max(min(x for x in losses if x > 0), 1e-9) >= 8:
            ax.set_xscale("symlog", linthresh=min(x for x in losses if x > 0))
        ys_all = [p[1] for v in protos.values() for p in v]
        if max(ys_all) / max(min(ys_all), 1e-9) >= 8:
            ax.set_yscale("log")
        rest = cells.conditions(c)
        ax.set_title(f"{wl} at RTT {c['rtt_ms']:g} ms" + (f", {rest}" if rest else ""), fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend()
        name = f"complete-vs-loss-{wl}-" + cells.slug({**c, "loss_pct": 0}).replace("-loss0", "") + ".png"
        save(fig, out, name)
        files.append(name)
    return files


def pacing_of(meta, fam):
    """The pacing factor the model gives a side: 1.25 when it paced (ngtcp2's and matched TCP's), else None."""
    side = meta.get(f"{fam}_pacing")
    if side is None:
        side = {"matched": "on", "off": "off"}.get(meta.get("pacing"), "on" if fam == "h3" else "off")
    return 1.25 if side == "on" else None


def plain_lossless(c):
    return (c.get("loss_pct") == 0 and not c.get("rate_mbit") and not c.get("jitter_ms"))


def arithmetic(summary, runs, meta, out):
    """Lossless cells against theory.expected(): a table and completion against RTT (log axes)."""
    sizes = defaultdict(list)
    for r in runs:
        if r.get("ok") and r.get("bytes"):
            sizes[r["workload"]].append(r["bytes"])
    rows, pts = [], defaultdict(list)
    med = {}
    for c in summary["cells"]:
        if not plain_lossless(c) or c["complete_ms"]["median"] is None or not sizes.get(c["workload"]):
            continue
        size = sorted(sizes[c["workload"]])[len(sizes[c["workload"]]) // 2]
        fam = theory.family(c["protocol"])
        first, last = theory.expected(c["protocol"], size, c["rtt_ms"], pacing_of(meta, fam))
        m_first, m_last = c["ttfb_ms"]["median"], c["complete_ms"]["median"]
        med[(c["workload"], c["rtt_ms"], c.get("cc"), c["protocol"])] = m_last
        rows.append((c["workload"], c["rtt_ms"], c.get("cc") or "", c["protocol"], m_first, first, m_last, last))
        pts[(c["workload"], c["protocol"])].append((c["rtt_ms"], m_last, last))
    if not rows:
        return [], None
    lines = ["| workload | RTT ms | controllers | protocol | TTFB ms | arithmetic | complete ms | arithmetic | "
             "excess ms | excess in RTTs | h2 − this, RTTs |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for wl, rtt, cc, proto, mf, tf, ml, tl in sorted(rows):
        h2 = med.get((wl, rtt, cc or None, "h2"), med.get((wl, rtt, cc, "h2")))
        lead = f"{(h2 - ml) / rtt:.2f}" if h2 is not None and proto != "h2" else "–"
        lines.append(f"| {wl} | {rtt:g} | {cc or '–'} | {proto} | {fmt(mf)} | {fmt(tf)} | {fmt(ml)} | {fmt(tl)} | "
                     f"{fmt(ml - tl)} | {(ml - tl) / rtt:.2f} | {lead} |")
    fig, axes = plt.subplots(1, len({w for w, _ in pts}), figsize=(4.2 * len({w for w, _ in pts}), 3.6), squeeze=False)
    for ax, wl in zip(axes[0], sorted({w for w, _ in pts})):
        for (w, proto), v in sorted(pts.items()):
            if w != wl:
                continue
            v.sort()
            ax.plot([x[0] for x in v], [x[1] for x in v], "o", color=COLORS.get(proto), label=f"{proto}")
            ax.plot([x[0] for x in v], [x[2] for x in v], "--", color=COLORS.get(proto), alpha=0.6)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("RTT (ms)")
        ax.set_ylabel("median completion (ms)")
        ax.set_title(f"{wl}, no loss: measured (dots), arithmetic (dashed)", fontsize=8)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    save(fig, out, "arithmetic.png")
    return lines, "arithmetic.png"


def forest(summary, out, metric="complete_ms"):
    """Every cell's paired ratio to HTTP/2 with its 95 % interval, one row each (log x axis)."""
    rows = [r for r in summary.get("ratios", []) if r["metric"] == metric and r.get("baseline", "h2") == "h2"]
    if not rows:
        return None
    rows.sort(key=lambda r: cells.key(r) + (r["protocol"],), reverse=True)
    fig, ax = plt.subplots(figsize=(7.5, 1.2 + 0.28 * len(rows)))
    for i, r in enumerate(rows):
        ci = r.get("ci95")
        lo, hi = (ci[0], ci[1]) if ci else (r["median_ratio"], r["median_ratio"])
        ax.errorbar([r["median_ratio"]], [i], xerr=[[r["median_ratio"] - lo], [hi - r["median_ratio"]]], fmt="o",
                    color=COLORS.get(r["protocol"]), capsize=3, markersize=4)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{r['protocol']} {r['workload']}: {cells.title(r)}" for r in rows], fontsize=7)
    ax.axvline(1.0, color="grey", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel(f"paired ratio to h2 ({metric.replace('_ms', '')}), 95 % CI; < 1: faster than HTTP/2")
    ax.grid(alpha=0.3, axis="x", which="both")
    fig.tight_layout()
    name = f"forest-{metric.replace('_ms', '')}.png"
    fig.savefig(os.path.join(out, name), dpi=110)
    plt.close(fig)
    return name


def step_cdf(out, name, title, xlabel, series):
    """One CDF figure of per-object values: series of (label, color, sorted values)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for label, color, vals in series:
        ax.step(vals, [(i + 1) / len(vals) for i in range(len(vals))], where="post", label=label, color=color)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction of objects")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, out, name)


def object_cdfs(runs, out):
    """Per-object completion (each object of the page workload, all runs pooled), per cell and protocol."""
    groups = defaultdict(lambda: defaultdict(list))
    for r in runs:
        if r.get("workload") != "page" or not r.get("ok") or missed_shortcut(r):
            continue
        for o in r.get("objects") or []:
            if o.get("complete_ms") is not None and o["complete_ms"] >= 0:
                groups[cells.key(r)][r["protocol"]].append(o["complete_ms"])
    files = []
    for key, protos in sorted(groups.items()):
        c = cells.from_key(key)
        series = [(f"{proto} ({len(vals)} objects)", COLORS.get(proto), sorted(vals))
                  for proto, vals in sorted(protos.items())]
        files.append(step_cdf(out, f"objects-cdf-{cells.slug(c)}.png", f"page objects: {cells.title(c)}",
                              "object completion (ms since the connection's start)", series))
    return files


def pct(vals, q):
    """The q-quantile (0..1) of sorted vals, linear between ranks."""
    if not vals:
        return None
    pos = q * (len(vals) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(vals) - 1)
    return vals[lo] + (vals[hi] - vals[lo]) * (pos - lo)


def hol_section(runs, out):
    """compare.sh --hol: per-object stall time (bench/compare/stall.py), a
    table per cell and protocol and a CDF per cell."""
    groups = defaultdict(lambda: defaultdict(lambda: {"runs": 0, "traced": 0, "stall": [], "wait": [], "per_run": []}))
    for r in runs:
        if r.get("workload") != "page" or not r.get("ok") or missed_shortcut(r):
            continue
        g = groups[cells.key(r)][r["protocol"]]
        g["runs"] += 1
        objs = r.get("objects") or []
        if not objs or any(o.get("stall_ms") is None for o in objs):
            continue
        g["traced"] += 1
        g["stall"] += [o["stall_ms"] for o in objs]
        g["wait"] += [o["inorder_wait_ms"] for o in objs if o.get("inorder_wait_ms") is not None]
        g["per_run"].append(sum(o["stall_ms"] for o in objs))
    groups = {k: v for k, v in groups.items() if any(g["traced"] for g in v.values())}
    if not groups:
        return [], []
    rows = ["| cell | protocol | runs traced | objects | stalled > 1 ms | median | p90 | p99 | max | "
            "stall per run (median of sums) | TCP in-order wait, share of stall |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    files = []
    for key, protos in sorted(groups.items()):
        c = cells.from_key(key)
        series = []
        for proto, g in sorted(protos.items()):
            st = sorted(g["stall"])
            if not st:
                continue
            stalled = sum(1 for v in st if v > 1.0)
            share = sum(g["wait"]) / sum(st) if g["wait"] and sum(st) > 0 else None
            rows.append(f"| {cells.title(c)} | {proto} | {g['traced']}/{g['runs']} | {len(st)} | "
                        f"{stalled} ({100 * stalled / len(st):.1f} %) | {fmt(pct(st, 0.5), 2)} | {fmt(pct(st, 0.9), 2)} | "
                        f"{fmt(pct(st, 0.99), 1)} | {fmt(st[-1], 1)} | {fmt(pct(sorted(g['per_run']), 0.5), 1)} | "
                        f"{'–' if share is None else f'{100 * share:.0f} %'} |")
            series.append((f"{proto} ({len(st)} objects, {g['traced']} runs)", COLORS.get(proto), st))
        files.append(step_cdf(out, f"stall-cdf-{cells.slug(c)}.png", f"head-of-line stall per object: {cells.title(c)}",
                              "stall: last own byte in → object complete at the client (ms)", series))
    lines = ["", "## Head-of-line blocking, measured (per-object stall time)", "",
             "For each object of the page workload, from the client's own traces (`compare.sh --hol`, "
             "bench/compare/stall.py): the time from the arrival of the last of its own bytes (its stream's frames; "
             "HTTP/2: a packet capture in the client's namespace, decrypted with the client's TLS key log; HTTP/3: "
             "the client's qlog) to its completion at the application. An object of HTTP/2 whose bytes are all in "
             "waits while TCP repairs a hole in bytes of other streams ahead of it; the last column is the part "
             "TCP's in-order delivery explains. HTTP/3 should show none: it is measured, not assumed. Values in ms.",
             ""] + rows + [""] + [f"![{x}]({x})" for x in files]
    return lines, files


def ttfb_vs_rtt(summary, out):
    pts = defaultdict(list)
    for c in summary["cells"]:
        if (c["workload"] == "handshake" and plain_lossless(c) and c["ttfb_ms"]["median"] is not None
                and (c.get("cc") or "cubic/cubic") == "cubic/cubic"):
            pts[c["protocol"]].append((c["rtt_ms"], c["ttfb_ms"]["median"], c["ttfb_ms"]["ci95"]))
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    rtts = sorted({p[0] for v in pts.values() for p in v})
    for proto, v in sorted(pts.items()):
        v.sort()
        lo = [p[1] - (p[2][0] if p[2] else p[1]) for p in v]
        hi = [(p[2][1] if p[2] else p[1]) - p[1] for p in v]
        ax.errorbar([p[0] for p in v], [p[1] for p in v], yerr=[lo, hi], fmt="o", capsize=3, color=COLORS.get(proto),
                    label=f"{proto} measured (95 % CI)")
        k = THEORY_RTTS.get(proto)
        if k:
            ax.plot([0] + rtts, [0] + [k * r for r in rtts], "--", color=COLORS.get(proto), alpha=0.6,
                    label=f"{proto} theory ({k} RTT)")
    ax.set_xlabel("RTT (ms)")
    ax.set_ylabel("median TTFB (ms)")
    ax.set_title("handshake workload, no loss, no rate cap, cubic/cubic", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save(fig, out, "ttfb-vs-rtt.png")
    return "ttfb-vs-rtt.png"


def main():
    if len(sys.argv) != 2:
        print("usage: report.py OUT_DIR", file=sys.stderr)
        return 2
    out = sys.argv[1]
    summary, runs, meta = load(out)
    lines = ["# HTTP/2 vs HTTP/3 under delay and loss", ""]
    if meta:
        lines += ["## Setup", ""]
        for k in ("command", "machine", "cpu", "kernel", "libraries", "emulator", "h2_congestion_control",
                  "h3_congestion_control", "pacing", "tcp_metrics", "h2_tls_records", "h3_ack_thresh", "tls_cipher",
                  "tls_group", "seed", "runs_per_cell", "date"):
            if k in meta:
                v = meta[k]
                if isinstance(v, dict):
                    v = ", ".join(f"{a} {b}" for a, b in v.items())
                lines.append(f"- **{k}**: `{v}`" if k == "command" else f"- **{k}**: {v}")
        if "fidelity" in meta:
            lines += ["", "Link fidelity (`scripts/netlab.sh check`, same emulator and settings):", "",
                      "```json", json.dumps(meta["fidelity"], indent=1), "```"]
        lines.append("")
    par = parity.table(runs, meta)
    with open(os.path.join(out, "parity.json"), "w") as f:
        json.dump(par, f, indent=1)
    lines += ["## Stack parity", "",
              "What each stack did, from the server's per-connection records (`quiclab serve --conn-log`), the "
              "client's TLS facts and the settings in meta.json (bench/compare/parity.py; also parity.json). "
              + (f"Rows that differ: {', '.join(par['differs'])}." if par["differs"] else "No row differs."), ""]
    lines += parity.markdown(par) + [""]
    lines += ["## What each side did (server records, medians per connection)", ""]
    lines += parity.what_each_side_did(runs) + [""]
    emu = emulator_table(out)
    if emu:
        lines += ["## The link as it was (the emulator's counters per cell)", "",
                  "Configured against realized: loss per direction (random-loss drops / packets in), drop-tail "
                  "queue drops, and the one-way delay the packets got (the configured delay plus the delay "
                  "line's timer lateness, median and p99).", ""] + emu + [""]
    lines += ["## Medians per cell", "",
              "Intervals: order statistics of the median (distribution-free). Failed runs are counted, with the "
              "first error of each, and left out of the medians. *bimodal*: the completion times' bimodality "
              "coefficient is above 5/9 (such lossy cells get 50 runs). *seed spread*: the largest minus the "
              "smallest per-seed median of completion when the cell ran under several seeds.", "",
              "| workload | RTT ms | loss % | link, controllers | protocol | runs (failed, no shortcut) | handshake ms | TTFB ms [95 % CI] | complete ms [95 % CI] | complete p95 | bimodal | seed spread ms | failures |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in sorted(summary["cells"], key=lambda c: cells.key(c) + (c["protocol"],)):
        def ci(m):
            return f"{fmt(m['median'])} [{fmt(m['ci95'][0])}, {fmt(m['ci95'][1])}]" if m["ci95"] else fmt(m["median"])
        lines.append(f"| {c['workload']} | {c['rtt_ms']:g} | {c['loss_pct']:g} | {cells.conditions(c) or '–'} | "
                     f"{c['protocol']} | {c['runs']} ({c['failed']}, {c.get('shortcut_missed', 0)}) | "
                     f"{fmt(c['handshake_ms']['median'])} | {ci(c['ttfb_ms'])} | "
                     f"{ci(c['complete_ms'])} | {fmt(c['complete_ms']['p95'])} | "
                     f"{'yes' if c['complete_ms'].get('bimodal') else 'no'} | "
                     f"{fmt(c['complete_ms'].get('between_seed_spread'))} | "
                     + (", ".join(f"{k} ({v})" for k, v in c.get("failure_reasons", {}).items()) or "–") + " |")
    if summary.get("ratios"):
        lines += ["", "## Ratios (< 1 means faster than the baseline)", "",
                  "The median of the paired ratios (run r of the protocol over run r of the baseline, same seed) "
                  "with the order-statistic interval of the pairs; the ratio of the two medians beside it. "
                  "h3-0rtt is also set against h2-resumed: both skip what a returning client may skip.", "",
                  "| workload | RTT ms | loss % | link, controllers | metric | protocol / baseline | pairs | paired ratio | 95 % CI | ratio of medians |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in sorted(summary["ratios"], key=lambda r: cells.key(r) + (r["metric"], r.get("baseline", "h2"), r["protocol"])):
            ci = r["ci95"]
            rom = r.get("ratio_of_medians")
            lines.append(f"| {r['workload']} | {r['rtt_ms']:g} | {r['loss_pct']:g} | {cells.conditions(r) or '–'} | "
                         f"{r['metric']} | {r['protocol']} / {r.get('baseline', 'h2')} | "
                         f"{r.get('pairs', '–')} | {r['median_ratio']:.3f} | "
                         + (f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "–") + " | "
                         + ("–" if rom is None else f"{rom:.3f}") + " |")
    t = ttfb_vs_rtt(summary, out)
    if t:
        lines += ["", "## Handshake: theory against measurement", "",
                  "TCP + TLS 1.3 puts the first response byte at about 3 RTT (SYN, ClientHello, request), "
                  "QUIC at about 2 RTT, QUIC 0-RTT at about 1 RTT.", "", f"![TTFB against RTT]({t})"]
    arith, arith_png = arithmetic(summary, runs, meta, out)
    if arith:
        lines += ["", "## Without loss: measured against the round-trip arithmetic", "",
                  "The arithmetic (bench/compare/theory.py): the first byte after 3 round trips (TCP + TLS 1.3 + "
                  "request, resumed or not), 2 (QUIC), 1 (0-RTT); then slow start from the server's window at the "
                  "response (TCP 10 segments; QUIC ngtcp2's initial window plus its ACKed handshake packets), "
                  "every second packet ACKed, paced at 1.25 x cwnd / RTT where the side paced. *excess*: measured "
                  "minus arithmetic; *h2 − this*: how many round trips the protocol finished ahead of HTTP/2.", ""]
        lines += arith + ["", f"![completion against RTT]({arith_png})"]
    files = vs_loss_plots(summary, out)
    if files:
        lines += ["", "## Completion time against loss", ""] + [f"![{f}]({f})" for f in files]
    f = [x for x in (forest(summary, out, "complete_ms"), forest(summary, out, "ttfb_ms")) if x]
    if f:
        lines += ["", "## Every cell's ratio at a glance (forest plots)", ""] + [f"![{x}]({x})" for x in f]
    objs = object_cdfs(runs, out)
    if objs:
        lines += ["", "## Per-object completion (page workload)", "",
                  "Each of the page's 50 objects, all runs pooled: when its last byte arrived. Under loss, "
                  "head-of-line blocking delays objects that were not lost themselves over one TCP connection; over "
                  "QUIC only the lost stream waits.", ""] + [f"![{x}]({x})" for x in objs]
    hol_lines, _ = hol_section(runs, out)
    lines += hol_lines
    cdfs = cdf_plots(runs, out)
    if cdfs:
        lines += ["", "## Distributions (CDFs of completion and first byte per cell)", ""]
        lines += [f"![{name}]({name})" for *_, name in cdfs]
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print_compact(summary)
    print("report: " + os.path.join(out, "report.md"))
    print("report: " + report_html.build(out))
    return 0


def emulator_table(out):
    path = os.path.join(out, "emulator.jsonl")
    if not os.path.exists(path):
        return []
    rows = ["| cell | seed | RTT ms | loss % asked | loss % c2s / s2c | queue drops c2s / s2c | packets c2s / s2c | "
            "one-way delay ms, median / p99 (s2c) |", "|---|---|---|---|---|---|---|---|"]
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            e = json.loads(line)

            def realized(d):
                n = e[d].get("packets_in", 0)
                return 100 * e[d].get("dropped_loss", 0) / n if n else None
            late = e["s2c"].get("timer_error_us", {})
            one_way = e["rtt_ms"] / 2
            delay = (f"{one_way + late.get('median', 0) / 1000:.2f} / {one_way + late.get('p99', 0) / 1000:.2f}"
                     if late.get("samples") else "–")
            rows.append(f"| {e['cell']} | {e['seed']} | {e['rtt_ms']:g} | {e['loss_pct']:g} ({e['loss_model']}) | "
                        f"{fmt(realized('c2s'), 2)} / {fmt(realized('s2c'), 2)} | "
                        f"{e['c2s'].get('dropped_queue', 0)} / {e['s2c'].get('dropped_queue', 0)} | "
                        f"{e['c2s'].get('packets_in', 0)} / {e['s2c'].get('packets_in', 0)} | {delay} |")
    return rows


def print_compact(summary):
    """One line per cell: H2 and H3 medians of completion time, and their ratio."""
    by_cell = defaultdict(dict)
    for c in summary["cells"]:
        by_cell[cells.key(c)][c["protocol"]] = c
    ratios = {cells.key(r) + (r["protocol"],): r
              for r in summary.get("ratios", []) if r["metric"] == "complete_ms" and r.get("baseline", "h2") == "h2"}
    print(f"{'workload':<10} {'rtt ms':>6} {'loss %':>6} {'rate':>5} {'h2 ms':>9} {'h3 ms':>9} {'h3/h2':>6} "
          f"{'95% CI':>15} {'h3-0rtt ms':>10}  link")
    for key in sorted(by_cell):
        protos = by_cell[key]

        def med(p):
            return protos[p]["complete_ms"]["median"] if p in protos else None
        r = ratios.get(key + ("h3",))
        ci = f"[{r['ci95'][0]:.2f}, {r['ci95'][1]:.2f}]" if r and r["ci95"] else "-"
        ratio = f"{r['median_ratio']:.2f}" if r else "-"
        any_cell = next(iter(protos.values()))
        print(f"{key[0]:<10} {key[1]:>6g} {key[2]:>6g} {key[4]:>5g} {fmt(med('h2')):>9} {fmt(med('h3')):>9} "
              f"{ratio:>6} {ci:>15} {fmt(med('h3-0rtt')):>10}  {cells.conditions(any_cell)}")


if __name__ == "__main__":
    sys.exit(main())
