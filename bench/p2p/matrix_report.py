#!/usr/bin/python3
"""Summarises a scripts/p2p-matrix.sh run and checks it against the expected matrix.

Reads OUT/cells/<cell>/{cell.json, a<N>.jsonl, b<N>.jsonl, a<N>.rc, b<N>.rc}
(the `quiclab peer --json` lines of both sides of every trial) and writes
  OUT/matrix.json   per cell: outcome counts, time to connect (median, p95,
                    from the introduction to the nominated pair, as peer a saw
                    it), the pair types that won, failure reasons, checks
  OUT/matrix.md     the same as tables
  OUT/matrix.png    the matrix as a coloured grid (matplotlib, Agg backend)
  OUT/ttc_cdf.png   time-to-connect CDFs per cell
Exits 1 when a cell's outcome differs from the expected one (docs/p2p.md), a
trial gave no verdict, the two sides disagree, or a failed verdict came later
than the timeout allows.

With --birthday (both peers punch birthday-style), port-restricted <->
symmetric is expected direct "in most trials": every trial direct or the
fallback (relayed with coturn, else failed), and at least half of them (at
least one) direct; the cell reports its birthday rate and the packet cost of
each attempt (probes sent plus the opener's first checks).
"""
import argparse
import json
import os
import statistics
import sys

from events import percentile, read_events

TYPES = ["none", "full-cone", "address-restricted", "port-restricted", "symmetric"]
SHORT = {"none": "none", "full-cone": "FC", "address-restricted": "AR", "port-restricted": "PR", "symmetric": "SYM"}


def is_birthday_cell(a, b, same_nat, birthday):
    """Port-restricted <-> symmetric with --birthday: the one cell birthday punching opens."""
    return bool(birthday) and not same_nat and {a, b} == {"port-restricted", "symmetric"}


def expected(a, b, same_nat, turn=False, birthday=False):
    """The outcome the NAT types allow (RFC 4787 behaviours): without a direct
    path "failed", or "relayed" when the peers have coturn (--turn); with
    --birthday port-restricted <-> symmetric is "direct" (see fallback())."""
    if same_nat:
        return "direct"
    if is_birthday_cell(a, b, same_nat, birthday):
        return "direct"
    pair = {a, b}
    if pair == {"symmetric"} or pair == {"port-restricted", "symmetric"}:
        return "relayed" if turn else "failed"
    return "direct"


def fallback(a, b, same_nat, turn=False, birthday=False):
    """What a birthday cell's trial may end in when no probe landed (1.7 % with the defaults)."""
    if not is_birthday_cell(a, b, same_nat, birthday):
        return None
    return "relayed" if turn else "failed"


def last(events, name):
    found = [e for e in events if e["event"] == name]
    return found[-1] if found else None


def read_rc(path):
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def summarise_cell(dir_, timeout_ms):
    with open(os.path.join(dir_, "cell.json")) as f:
        cell = json.load(f)
    trials = sorted(
        int(n[1:-6]) for n in os.listdir(dir_) if n.startswith("a") and n.endswith(".jsonl")
    )
    outcomes = {"direct": 0, "relayed": 0, "failed": 0, "no verdict": 0}
    ttc, ttfb, pairs, reasons, problems = [], [], {}, {}, []
    relay_ttfb, moved_ms = [], []
    bd = {"hits": 0, "attempts": 0, "probes": [], "sprays": [], "packets": [], "probes_to_hit": [],
          "direct_at_once": 0, "moved": 0}
    birthday_cell = is_birthday_cell(cell["nat_a"], cell["nat_b"], cell["same_nat"], cell.get("birthday", False))
    for n in trials:
        a = read_events(os.path.join(dir_, f"a{n}.jsonl"))
        b = read_events(os.path.join(dir_, f"b{n}.jsonl"))
        ra, rb = last(a, "result"), last(b, "result")
        if ra is None:
            outcomes["no verdict"] += 1
            problems.append(f"trial {n}: peer a gave no verdict (exit {read_rc(os.path.join(dir_, f'a{n}.rc'))})")
            continue
        outcomes[ra["outcome"]] = outcomes.get(ra["outcome"], 0) + 1
        if birthday_cell:
            # The prober's and the opener's counts (either side may be either).
            rb_ = rb or {}
            sides = [r.get("birthday", {}) for r in (ra, rb_)]
            probes = sum(s.get("probes", 0) for s in sides)
            sprays = sum(s.get("sprays", 0) for s in sides)
            if probes or sprays:
                bd["attempts"] += 1
                bd["probes"].append(probes)
                bd["sprays"].append(sprays)
                bd["packets"].append(probes + sprays)
            if any(s.get("hit") for s in sides):
                bd["hits"] += 1
                bd["probes_to_hit"].append(probes)
                if ra["outcome"] == "direct":
                    if last(a, "path_changed") is not None:
                        bd["moved"] += 1
                    else:
                        bd["direct_at_once"] += 1
        if ra["outcome"] in ("direct", "relayed"):
            c = last(a, "connected")
            if c:
                ttc.append(c["ms_since_introduction"])
                key = f"{c['local']['type']}-{c['remote']['type']}"
                pairs[key] = pairs.get(key, 0) + 1
            fetch = last(a, "fetch")
            if fetch is None or fetch.get("status") != 200 or fetch.get("verified") is False:
                problems.append(f"trial {n}: the fetch over the punched path failed: {fetch}")
            elif fetch.get("ttfb") is not None:
                ttfb.append(fetch["ttfb"])
                if ra["outcome"] == "relayed":
                    relay_ttfb.append(fetch["ttfb"])
            pc = last(a, "path_changed")
            if pc is not None:
                moved_ms.append(pc["ms_since_connected"])
            if rb is None or rb["outcome"] != ra["outcome"]:
                problems.append(f"trial {n}: b's verdict is {rb and rb['outcome']}, a's is {ra['outcome']}")
        else:
            reasons[ra["reason"]] = reasons.get(ra["reason"], 0) + 1
            intro = last(a, "introduced")
            # Birthday punching's probe window (defaults: 1 s wait, 1024 probes at 100/s) extends the verdict.
            allowed = max(timeout_ms, 12400) if cell.get("birthday") else timeout_ms
            if intro is not None and ra["t_ms"] - intro["t_ms"] > allowed + 1000:
                problems.append(f"trial {n}: the failed verdict came {ra['t_ms'] - intro['t_ms']:.0f} ms after the introduction")
    want = expected(cell["nat_a"], cell["nat_b"], cell["same_nat"], cell.get("turn", False), cell.get("birthday", False))
    alt = fallback(cell["nat_a"], cell["nat_b"], cell["same_nat"], cell.get("turn", False), cell.get("birthday", False))
    if alt is None:
        got_all = outcomes.get(want, 0) == len(trials) and len(trials) > 0
        if not got_all:
            problems.append(f"expected {want} in every trial, got {outcomes}")
    else:
        others = len(trials) - outcomes.get(want, 0) - outcomes.get(alt, 0)
        got_all = len(trials) > 0 and others == 0 and outcomes.get(want, 0) >= max(1, len(trials) // 2)
        if not got_all:
            problems.append(f"expected {want} in most trials (else {alt}), got {outcomes}")
        if outcomes.get(alt, 0) and alt == "failed" and not all("birthday punching found no mapping" in r
                                                                 for r in reasons):
            problems.append(f"a failed birthday trial does not say why: {list(reasons)}")
    return {
        "cell": os.path.basename(dir_),
        **cell,
        "trials": len(trials),
        "expected": want,
        "outcomes": outcomes,
        "as_expected": got_all and not problems,
        "time_to_connect_ms": {
            "median": statistics.median(ttc) if ttc else None,
            "p95": percentile(ttc, 95),
            "samples": ttc,
        },
        "ttfb_ms": {"median": statistics.median(ttfb) if ttfb else None, "samples": ttfb},
        "relayed_ttfb_ms": {"median": statistics.median(relay_ttfb) if relay_ttfb else None, "samples": relay_ttfb},
        "moved_to_direct_ms": {"median": statistics.median(moved_ms) if moved_ms else None, "samples": moved_ms},
        "winning_pairs": pairs,
        "birthday_cell": birthday_cell,
        "birthday": {
            "rate": bd["hits"] / len(trials) if birthday_cell and trials else None,
            "hits": bd["hits"],
            "attempts": bd["attempts"],
            "direct_at_once": bd["direct_at_once"],
            "moved_from_relay": bd["moved"],
            "probes_to_hit": {"median": statistics.median(bd["probes_to_hit"]) if bd["probes_to_hit"] else None,
                              "samples": bd["probes_to_hit"]},
            "packets_per_attempt": {"median": statistics.median(bd["packets"]) if bd["packets"] else None,
                                    "mean": statistics.mean(bd["packets"]) if bd["packets"] else None,
                                    "max": max(bd["packets"]) if bd["packets"] else None,
                                    "samples": bd["packets"]},
        } if birthday_cell else None,
        "failure_reasons": reasons,
        "problems": problems,
    }


def fmt_ms(v):
    return "–" if v is None else f"{v:.0f}"


def write_md(out, cells, args):
    lines = ["# NAT matrix", ""]
    lines.append(f"Trials per cell: {cells[0]['trials'] if cells else 0}; internet RTT "
                 f"{cells[0]['rtt_ms'] if cells else 0} ms, loss {cells[0]['loss_pct'] if cells else 0} %; "
                 f"verdict timeout {args.timeout_ms} ms"
                 f"{'; coturn in the lab, both peers with --turn' if cells and cells[0].get('turn') else ''}"
                 f"{'; both peers with --birthday' if cells and cells[0].get('birthday') else ''}. "
                 "Rows: peer a's NAT (controlling, QUIC client); "
                 "columns: peer b's NAT.")
    lines.append("")
    grid = [c for c in cells if not c["same_nat"]]
    types = [t for t in TYPES if any(c["nat_a"] == t for c in grid)]
    if grid:
        lines.append("| A \\ B | " + " | ".join(types) + " |")
        lines.append("|---" * (len(types) + 1) + "|")
        for ta in types:
            row = [ta]
            for tb in types:
                c = next((x for x in grid if x["nat_a"] == ta and x["nat_b"] == tb), None)
                if c is None:
                    row.append("")
                    continue
                d = c["outcomes"].get("direct", 0)
                if c["birthday_cell"]:
                    text = f"{d}/{c['trials']} direct by birthday punching"
                elif c["expected"] == "direct":
                    text = f"{d}/{c['trials']} direct"
                elif c["expected"] == "relayed":
                    text = f"{c['outcomes'].get('relayed', 0)}/{c['trials']} relayed"
                else:
                    text = f"{c['outcomes'].get('failed', 0)}/{c['trials']} no direct path"
                if c["expected"] != "failed" and c["winning_pairs"]:
                    text += " (" + ", ".join(sorted(c["winning_pairs"])) + ")"
                if not c["as_expected"]:
                    text = "**" + text + " — unexpected**"
                row.append(text)
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    lines.append("| cell | expected | direct | relayed | failed | time to connect median / p95 (ms) | TTFB median (ms) "
                 "| TTFB over the relay (ms) | moved to direct after (ms) | pairs | ok |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for c in cells:
        t = c["time_to_connect_ms"]
        lines.append(
            f"| {c['cell']} | {c['expected']} | {c['outcomes'].get('direct', 0)} | {c['outcomes'].get('relayed', 0)} | "
            f"{c['outcomes'].get('failed', 0)} | "
            f"{fmt_ms(t['median'])} / {fmt_ms(t['p95'])} | {fmt_ms(c['ttfb_ms']['median'])} | "
            f"{fmt_ms(c['relayed_ttfb_ms']['median'])} | {fmt_ms(c['moved_to_direct_ms']['median'])} | "
            f"{', '.join(f'{k} ×{v}' for k, v in sorted(c['winning_pairs'].items())) or '–'} | "
            f"{'yes' if c['as_expected'] else 'NO'} |")
    bcells = [c for c in cells if c["birthday_cell"]]
    if bcells:
        lines += ["", "Birthday punching (port-restricted <-> symmetric; packets: probes plus the opener's first "
                  "check from each extra socket):", "",
                  "| cell | birthday rate | direct at once | moved from the relay | probes to a hit, median | "
                  "packets per attempt, median / mean / max |", "|---|---|---|---|---|---|"]
        for c in bcells:
            b = c["birthday"]
            p = b["packets_per_attempt"]
            lines.append(f"| {c['cell']} | {b['hits']}/{c['trials']} | {b['direct_at_once']} | {b['moved_from_relay']} | "
                         f"{fmt_ms(b['probes_to_hit']['median'])} | {fmt_ms(p['median'])} / {fmt_ms(p['mean'])} / "
                         f"{fmt_ms(p['max'])} |")
    reasons = {}
    for c in cells:
        for r in c["failure_reasons"]:
            reasons.setdefault(r, []).append(c["cell"])
    if reasons:
        lines += ["", "Failure reasons (as the peer printed them):", ""]
        for r, where in reasons.items():
            lines.append(f"- {', '.join(where)}: \"{r}\"")
    problems = [(c["cell"], p) for c in cells for p in c["problems"]]
    if problems:
        lines += ["", "Problems:", ""] + [f"- {cell}: {p}" for cell, p in problems]
    with open(os.path.join(out, "matrix.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def plot(out, cells):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = [c for c in cells if not c["same_nat"]]
    types = [t for t in TYPES if any(c["nat_a"] == t for c in grid)]
    if grid:
        fig, ax = plt.subplots(figsize=(1.6 * len(types) + 2, 1.3 * len(types) + 1.5))
        for i, ta in enumerate(types):
            for j, tb in enumerate(types):
                c = next((x for x in grid if x["nat_a"] == ta and x["nat_b"] == tb), None)
                if c is None:
                    continue
                direct = c["outcomes"].get("direct", 0)
                if not c["as_expected"]:
                    color = "#d62728"
                elif c["birthday_cell"]:
                    color = "#98df8a"
                elif c["expected"] == "direct":
                    color = "#2ca02c"
                elif c["expected"] == "relayed":
                    color = "#6baed6"
                else:
                    color = "#bbbbbb"
                ax.add_patch(plt.Rectangle((j, i), 1, 1, color=color, ec="white"))
                med = c["time_to_connect_ms"]["median"]
                if c["birthday_cell"]:
                    label = f"{direct}/{c['trials']} birthday" + (f"\n{med:.0f} ms" if med is not None else "")
                elif c["expected"] == "relayed":
                    label = f"{c['outcomes'].get('relayed', 0)}/{c['trials']} relayed" + (
                        f"\n{med:.0f} ms" if med is not None else "")
                else:
                    label = f"{direct}/{c['trials']} direct" + (
                        f"\n{med:.0f} ms" if med is not None else "\nno direct path")
                if c["winning_pairs"]:
                    label += "\n" + ",".join(sorted(c["winning_pairs"]))
                ax.text(j + 0.5, i + 0.5, label, ha="center", va="center", fontsize=8)
        ax.set_xlim(0, len(types))
        ax.set_ylim(len(types), 0)
        ax.set_xticks([k + 0.5 for k in range(len(types))])
        ax.set_xticklabels([SHORT[t] for t in types])
        ax.set_yticks([k + 0.5 for k in range(len(types))])
        ax.set_yticklabels([SHORT[t] for t in types])
        ax.set_xlabel("peer b's NAT (controlled, QUIC server)")
        ax.set_ylabel("peer a's NAT (controlling)")
        ax.set_title("NAT matrix: green direct (light: by birthday punching), blue relayed (coturn), grey no direct "
                     "path, as expected; red unexpected", fontsize=8)
        fig.tight_layout()
        fig.savefig(os.path.join(out, "matrix.png"), dpi=110)
        plt.close(fig)
    fig, ax = plt.subplots(figsize=(8, 5))
    for c in cells:
        s = sorted(c["time_to_connect_ms"]["samples"])
        if not s:
            continue
        ys = [(k + 1) / len(s) for k in range(len(s))]
        ax.step(s, ys, where="post", label=c["cell"])
    ax.set_xlabel("time from introduction to nominated pair (ms), peer a")
    ax.set_ylabel("fraction of trials")
    ax.set_title("Time to connect per cell")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "ttc_cdf.png"), dpi=110)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--timeout-ms", type=int, default=10000)
    ap.add_argument("--no-plots", action="store_true")
    args = ap.parse_args()
    root = os.path.join(args.out, "cells")
    cells = [summarise_cell(os.path.join(root, d), args.timeout_ms) for d in sorted(os.listdir(root))
             if os.path.exists(os.path.join(root, d, "cell.json"))]
    order = {t: k for k, t in enumerate(TYPES)}
    cells.sort(key=lambda c: (c["same_nat"], order[c["nat_a"]], order[c["nat_b"]]))
    with open(os.path.join(args.out, "matrix.json"), "w") as f:
        json.dump({"timeout_ms": args.timeout_ms, "cells": cells}, f, indent=1)
    write_md(args.out, cells, args)
    if not args.no_plots:
        plot(args.out, cells)
    bad = [c for c in cells if not c["as_expected"]]
    for c in bad:
        for p in c["problems"]:
            print(f"p2p-matrix: {c['cell']}: {p}", file=sys.stderr)
    print(f"p2p-matrix: {len(cells) - len(bad)}/{len(cells)} cells as expected; {args.out}/matrix.md")
    return 1 if bad or not cells else 0


if __name__ == "__main__":
    sys.exit(main())
