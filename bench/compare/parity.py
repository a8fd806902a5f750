#!/usr/bin/python3
"""The parity table of a scripts/compare.sh run: what each stack really did,
row by row, and whether the two sides match.

Every value comes from the run's own records, not from what was asked for:
the server's per-connection records (`quiclab serve --conn-log`, copied into
each run record as `server_connections`: controller, MSS or datagram size,
initial window, pacing, RTO/PTO), the client's TLS facts (`tls` of
`quiclab get --json`) and meta.json (ACK policy, record sizing, TCP metrics).
A row whose sides differ is flagged; some differences are the protocols'
own (the TLS libraries Debian builds the stacks with, TCP's 200 ms RTO floor)
and say so in their note, but they are flagged all the same.

  parity.py OUT_DIR        prints the table and writes OUT_DIR/parity.json
"""
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cells as grid  # noqa: E402

# Header bytes around a segment / datagram on the wire (IPv4): TCP with
# timestamps 20 + 20 + 12, UDP 20 + 8.
TCP_OVERHEAD, UDP_OVERHEAD = 52, 28


def family(protocol):
    return "h2" if protocol.startswith("h2") else "h3"


def records(runs, fam):
    return [c for r in runs if family(r["protocol"]) == fam for c in r.get("server_connections") or []]


def values(recs, key):
    return [r[key] for r in recs if r.get(key) is not None]


def median(xs):
    return statistics.median(xs) if xs else None


def one(xs):
    """The single value of xs, a 'a / b' list when they disagree, None when empty."""
    s = sorted(set(xs), key=str)
    if not s:
        return None
    return s[0] if len(s) == 1 else " / ".join(str(v) for v in s)


def close(a, b, rel):
    return a is not None and b is not None and abs(a - b) <= rel * max(abs(a), abs(b))


def row(name, h2, h3, same, note=""):
    return {"row": name, "h2": h2, "h3": h3, "same": bool(same), "note": note}


def table(runs, meta):
    rec = {f: records(runs, f) for f in ("h2", "h3")}
    tls = {f: [r["tls"] for r in runs if family(r["protocol"]) == f and isinstance(r.get("tls"), dict)]
           for f in ("h2", "h3")}
    rows = []

    cc = {f: one(values(rec[f], "congestion_control")) for f in rec}
    rows.append(row("congestion controller (observed)", cc["h2"], cc["h3"],
                    cc["h2"] is not None and cc["h2"] == cc["h3"]))

    iwb = {f: median(values(rec[f], "initial_cwnd_bytes")) for f in rec}
    rows.append(row("initial window, bytes", iwb["h2"], iwb["h3"], close(iwb["h2"], iwb["h3"], 0.05),
                    "TCP: tcpi_snd_cwnd x MSS at accept; QUIC: ngtcp2's cwnd at creation; same within 5 %"))
    iwp = {f: median(values(rec[f], "initial_cwnd_packets")) for f in rec}
    rows.append(row("initial window, packets", iwp["h2"], iwp["h3"],
                    iwp["h2"] is not None and iwp["h2"] == iwp["h3"]))

    seg = {f: median(values(rec[f], "segment_bytes")) for f in rec}
    wire = {"h2": seg["h2"] + TCP_OVERHEAD if seg["h2"] else None,
            "h3": seg["h3"] + UDP_OVERHEAD if seg["h3"] else None}
    rows.append(row("largest packet on the wire, IP bytes", wire["h2"], wire["h3"], close(wire["h2"], wire["h3"], 0.05),
                    f"TCP MSS {fmt(seg['h2'])} + {TCP_OVERHEAD}; QUIC UDP payload {fmt(seg['h3'])} + {UDP_OVERHEAD}; "
                    "same within 5 %"))

    thresh = meta.get("h3_ack_thresh")
    rows.append(row("ACK policy (client)", "Linux delayed ACK: quick ACKs at first, then every 2nd full segment",
                    f"every {thresh} ack-eliciting packets (ack_thresh), max_ack_delay 25 ms" if thresh else None,
                    thresh == 2))

    def pacing(f):
        paced = one(values(rec[f], "paced"))
        if paced is None:
            return None
        if paced is False:
            return "not paced"
        if paced is True:
            ss, ca = one(values(rec[f], "pacing_ss_pct")), one(values(rec[f], "pacing_ca_pct"))
            return f"paced at {ss} % (slow start) / {ca} % (after) of cwnd/srtt"
        return "mixed"
    pc = {f: pacing(f) for f in rec}
    rows.append(row("pacing (server)", pc["h2"], pc["h3"], pc["h2"] is not None and pc["h2"] == pc["h3"]))

    for key, name, note in (("library", "TLS library", "the libraries Debian 12 builds the stacks with: "
                             "nghttp2 over OpenSSL, ngtcp2 over GnuTLS"),
                            ("cipher", "TLS cipher suite", ""), ("group", "TLS key exchange group", "")):
        v = {f: one([t.get(key) for t in tls[f] if t.get(key)]) for f in tls}
        rows.append(row(name, v["h2"], v["h3"], v["h2"] is not None and v["h2"] == v["h3"], note))

    recs_mode = meta.get("h2_tls_records")
    small = median(values(rec["h2"], "tls_records_small"))
    rows.append(row("TLS record sizing", f"{recs_mode} (median {fmt(small)} one-segment records per connection)"
                    if recs_mode else None, "n/a: each QUIC packet carries its own frames",
                    recs_mode == "dynamic",
                    "dynamic: a record never spans more than one segment at the start, as a QUIC packet does not"))

    rows.append(row("first retransmission timer", "1 s (SYN, RFC 6298)",
                    "PTO from a 333 ms initial RTT: 333 + 4 x 166.5 = 999 ms (RFC 9002)", True))
    tm = {f: median(values(rec[f], "timer_ms")) for f in rec}
    floor = meta.get("h2_rto_min_ms") or 200
    rows.append(row("retransmission timer at the end, median ms", tm["h2"], tm["h3"], close(tm["h2"], tm["h3"], 0.2),
                    f"TCP: RTO = srtt + max(4 rttvar, {floor} ms rto_min"
                    + (", the kernel's" if not meta.get("h2_rto_min_ms") else ", set by --h2-rto-min-ms")
                    + "); QUIC: PTO = srtt + 4 rttvar + max_ack_delay, no floor: a difference of the protocols as "
                    "deployed; same within 20 %"))

    metrics = meta.get("tcp_metrics")
    rows.append(row("TCP metrics cache", {"nosave": "not saved (tcp_no_metrics_save=1)", "save": "saved across runs"}
                    .get(metrics), "none: every run a new connection", metrics == "nosave"))
    return {"rows": rows, "differs": [r["row"] for r in rows if not r["same"]]}


def fmt(v):
    if v is None:
        return "unknown"
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() and abs(v) < 1e15 else f"{v:.4g}"
    return str(v)


def markdown(t):
    lines = ["| | HTTP/2 (TCP) | HTTP/3 (QUIC) | | note |", "|---|---|---|---|---|"]
    for r in t["rows"]:
        lines.append(f"| {r['row']} | {fmt(r['h2'])} | {fmt(r['h3'])} | {'same' if r['same'] else '**differs**'} | "
                     f"{r['note']} |")
    return lines


def what_each_side_did(runs):
    """Per cell and protocol: medians of the server's retransmission facts."""
    cells = {}
    for r in runs:
        for c in r.get("server_connections") or []:
            key = grid.key(r) + (r["protocol"],)
            cells.setdefault(key, []).append((r, c))
    lines = ["| workload | RTT ms | loss % | link, controllers | protocol | connections | retransmitted packets | "
             "congestion events | timeouts (RTO/PTO) | bytes sent | min RTT ms |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for key, rcs in sorted(cells.items()):
        run, cs = rcs[0][0], [c for _, c in rcs]
        wl, rtt, loss, proto = key[0], key[1], key[2], key[-1]

        def m(k):
            return fmt(median(values(cs, k)))
        lines.append(f"| {wl} | {rtt:g} | {loss:g} | {grid.conditions(run) or '–'} | {proto} | {len(cs)} | {m('retransmitted_packets')} | "
                     f"{m('congestion_events')} | {m('timeouts')} | {m('bytes_sent')} | {m('min_rtt_ms')} |")
    return lines


def load(out):
    runs = []
    with open(os.path.join(out, "runs.jsonl")) as f:
        runs = [json.loads(line) for line in f if line.strip()]
    meta = {}
    if os.path.exists(os.path.join(out, "meta.json")):
        with open(os.path.join(out, "meta.json")) as f:
            meta = json.load(f)
    return runs, meta


def main():
    if len(sys.argv) != 2:
        print("usage: parity.py OUT_DIR", file=sys.stderr)
        return 2
    runs, meta = load(sys.argv[1])
    t = table(runs, meta)
    with open(os.path.join(sys.argv[1], "parity.json"), "w") as f:
        json.dump(t, f, indent=1)
    print("\n".join(markdown(t)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
