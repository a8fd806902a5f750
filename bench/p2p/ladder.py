#!/usr/bin/python3
"""Draws a ladder diagram of one `quiclab peer` run from both sides' --json lines.

  ladder.py A.jsonl B.jsonl OUT.png [--title TEXT]

A is the controlling peer (--connect), B the controlled one. Each event line
carries wall_ms (the wall clock: both peers run on one machine, so their lines
share one time line) and t_ms. The picture has three columns: peer a, the
rendezvous server, peer b; time runs down, in ms since the first event of either.
Arrows are the exchanges the events stand for (registration, introduction,
the checks that succeeded, the nomination, the QUIC handshake, each fetch);
the text beside each is the event as the peer reported it.
Uses matplotlib (Debian's python3-matplotlib) with the Agg backend.
"""
import argparse
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from events import read_events  # noqa: E402

X = {"a": 0.0, "server": 1.0, "b": 2.0}


def read(path):
    return read_events(path, ("event", "wall_ms"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("out")
    ap.add_argument("--title", default="quiclab peer: one run, from both sides' --json events")
    args = ap.parse_args()
    a, b = read(args.a), read(args.b)
    if not a or not b:
        print("ladder: no events with wall_ms in the inputs", file=sys.stderr)
        return 1
    start = min(e["wall_ms"] for e in a + b)

    def t(e):
        return e["wall_ms"] - start

    arrows = []  # (t0, from, t1, to, label, colour)
    notes = []  # (t, side, text)
    for side, events, other in (("a", a, "b"), ("b", b, "a")):
        for e in events:
            ev = e["event"]
            if ev == "registered":
                arrows.append((t(e) - 0.0, side, t(e), "server", "", "tab:gray"))
                notes.append((t(e), side, f"registered: mapped {e['mapped']}"))
            elif ev == "introduced":
                arrows.append((t(e), "server", t(e), side, "", "tab:purple"))
                cands = ", ".join(f"{c['type']} {c['address']}" for c in e.get("candidates", []))
                notes.append((t(e), side, f"introduced to {e['peer']} ({e['role']}): {cands}"))
            elif ev == "check" and e.get("result") == "success":
                rtt = e.get("rtt_ms") or 0.0
                nominated = e.get("detail") == "nominated"
                arrows.append((t(e) - rtt, side, t(e) - rtt / 2, other, "", "tab:red" if nominated else "tab:orange"))
                arrows.append((t(e) - rtt / 2, other, t(e), side, "", "tab:red" if nominated else "tab:orange"))
                pair = e.get("pair", {})
                notes.append((t(e), side, f"check {'(USE-CANDIDATE) ' if nominated else ''}"
                              f"{pair.get('remote', {}).get('type', '')} {e['remote']}: ok, {rtt:.1f} ms"))
            elif ev == "connected":
                notes.append((t(e), side, f"connected: {e['local']['type']} <-> {e['remote']['type']} "
                              f"{e['remote']['address']}, {e['ms_since_introduction']:.0f} ms after the introduction"))
            elif ev == "quic":
                hs = e.get("handshake_ms", 0.0)
                if side == "a":
                    arrows.append((t(e) - hs, "a", t(e) - hs / 2, "b", "", "tab:blue"))
                    arrows.append((t(e) - hs / 2, "b", t(e), "a", "", "tab:blue"))
                notes.append((t(e), side, f"QUIC {e['role']}: handshake {hs:.1f} ms, certificate pinned"))
            elif ev == "fetch":
                notes.append((t(e), side, f"GET {e['url'].split('/', 3)[-1]}: {e['status']}, {e['bytes']} bytes, "
                              f"ttfb {e.get('ttfb') or 0:.1f} ms"))
            elif ev == "result":
                notes.append((t(e), side, f"result: {e['outcome']}" + (f" ({e['reason']})" if e.get("reason") else "")))
    end = max(n[0] for n in notes) * 1.05 + 5
    fig, ax = plt.subplots(figsize=(13, 8))
    for name, x in X.items():
        ax.plot([x, x], [0, end], color="black", lw=1)
        ax.text(x, -end * 0.02, {"a": "peer a (controlling)", "server": "rendezvous server",
                                 "b": "peer b (controlled)"}[name], ha="center", va="bottom", fontsize=10)
    for t0, f, t1, to, _label, colour in arrows:
        ax.annotate("", xy=(X[to], t1), xytext=(X[f], t0),
                    arrowprops=dict(arrowstyle="->", color=colour, lw=1))
    # Notes: a's on the left, b's on the right, spread so they do not overlap.
    for side, x, ha in (("a", X["a"] - 0.05, "right"), ("b", X["b"] + 0.05, "left")):
        last = -1e9
        for tn, s, text in sorted(n for n in notes if n[1] == side):
            y = max(tn, last + end * 0.028)
            last = y
            ax.text(x, y, f"{tn:7.1f} ms  {text}" if side == "a" else f"{tn:7.1f} ms  {text}", ha=ha,
                    va="center", fontsize=7)
            ax.plot([x + (0.03 if side == "a" else -0.03), X[side]], [y, tn], color="lightgray", lw=0.5)
    ax.set_ylim(end, -end * 0.05)
    ax.set_xlim(-2.6, 4.6)
    ax.axis("off")
    ax.set_title(args.title, fontsize=10)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main())
