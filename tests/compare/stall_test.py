"""bench/compare/stall.py on traces made here, with known answers.

HTTP/2: a capture of a TLS 1.3 connection written with dpkt, its records
sealed with keys from a key log we write too: two streams, one TCP segment
lost and repaired 400 ms late. The stream whose bytes sat behind the hole
waited 400 ms (inorder_wait_ms) and its stall is that plus the client's
0.2 ms; the stream in the repaired segment did not wait. HTTP/3: a qlog whose
second stream's frame is repaired late, and the first stream not held by it.
Then the errors: no keys, a capture with a hole, a body that does not match,
a completion before the bytes, a qlog without a wall-clock reference.
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

import dpkt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

HERE = os.path.dirname(os.path.abspath(__file__))
STALL = os.path.join(HERE, "..", "..", "bench", "compare", "stall.py")
T0 = 1_796_000_000.0  # the connection start, s since the epoch
PORT = 4433
failures = 0


def check(cond, what):
    global failures
    print(("ok   " if cond else "FAIL ") + what)
    failures += 0 if cond else 1


def label(secret, name, n):
    full = b"tls13 " + name
    info = struct.pack("!H", n) + bytes([len(full)]) + full + b"\x00"
    return HKDFExpand(hashes.SHA256(), n, info).derive(secret)


class Sealer:
    def __init__(self, secret):
        self.aead = AESGCM(label(secret, b"key", 16))
        self.iv = label(secret, b"iv", 12)
        self.seq = 0

    def record(self, content, inner):
        plain = content + bytes([inner])
        header = bytes([23, 3, 3]) + struct.pack("!H", len(plain) + 16)
        nonce = bytes(a ^ b for a, b in zip(self.iv, self.seq.to_bytes(12, "big")))
        self.seq += 1
        return header + self.aead.encrypt(nonce, plain, header)


def h2frame(ftype, flags, sid, payload):
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + struct.pack("!I", sid) + payload


def tcp_packet(src, dst, sport, dport, seq, flags, data=b""):
    tcp = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq, ack=0, flags=flags, data=data)
    ip = dpkt.ip.IP(src=src, dst=dst, p=dpkt.ip.IP_PROTO_TCP, data=tcp)
    ip.len = len(bytes(ip))
    return bytes(dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, type=dpkt.ethernet.ETH_TYPE_IP, data=ip))


def run(args, lines):
    p = subprocess.run([sys.executable, STALL] + args, input="\n".join(json.dumps(l) for l in lines) + "\n",
                       capture_output=True, text=True)
    out = [json.loads(l) for l in p.stdout.splitlines() if l.strip()]
    return p.returncode, out, p.stderr


def h2_case(d, lose_entirely=False, wrong_bytes=False, early=False, keys=True):
    client_random = bytes(range(32))
    hs_secret, app_secret = b"\x11" * 32, b"\x22" * 32
    with open(f"{d}/keys", "w") as f:
        if keys:
            f.write(f"SERVER_HANDSHAKE_TRAFFIC_SECRET {client_random.hex()} {hs_secret.hex()}\n")
            f.write(f"SERVER_TRAFFIC_SECRET_0 {client_random.hex()} {app_secret.hex()}\n")
    hello = bytes([22, 3, 1]) + struct.pack("!H", 200) + bytes([1]) + (196).to_bytes(3, "big") + b"\x03\x03" + \
        client_random + bytes(200 - 38)
    sh_body = bytes([2]) + (38 + 4).to_bytes(3, "big") + b"\x03\x03" + b"\x5a" * 32 + b"\x00" + b"\x13\x01" + \
        b"\x00" + b"\x00\x00"
    server_hello = bytes([22, 3, 3]) + struct.pack("!H", len(sh_body)) + sh_body
    ccs = bytes([20, 3, 3, 0, 1, 1])
    hs = Sealer(hs_secret)
    app = Sealer(app_secret)
    body1a, body1b, body3 = b"a" * 3000, b"b" * 2000, b"c" * 1500
    seg0 = server_hello + ccs + hs.record(b"\x08\x00\x00\x02\x00\x00" + b"x" * 300, 22)
    rec1 = app.record(h2frame(4, 0, 0, b"") + h2frame(1, 4, 1, b"\x88") + h2frame(0, 0, 1, body1a), 23)
    rec2 = app.record(h2frame(1, 4, 3, b"\x88") + h2frame(0, 1, 3, body3), 23)
    ticket = app.record(b"\x04\x00\x00\x04" + b"t" * 4, 22)  # a NewSessionTicket: not HTTP/2
    rec3 = app.record(h2frame(0, 1, 1, body1b), 23)
    cip, sip = b"\xc0\x00\x02\x02", b"\xc6\x33\x64\x02"
    isn_c, isn_s, cport = 1000, 5000, 40000
    pkts = [(T0, tcp_packet(cip, sip, cport, PORT, isn_c, dpkt.tcp.TH_SYN)),
            (T0 + 0.040, tcp_packet(sip, cip, PORT, cport, isn_s, dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK)),
            (T0 + 0.041, tcp_packet(cip, sip, cport, PORT, isn_c + 1, dpkt.tcp.TH_ACK, hello))]
    off = 0
    segs = []
    for data in (seg0, rec1, rec2, ticket + rec3):
        segs.append((off, data))
        off += len(data)
    at = {0: 0.081, 1: 1.000, 2: None, 3: 1.100}  # segment 2 (rec2) lost; repaired at 1.5 s
    for i, (o, data) in enumerate(segs):
        if at[i] is not None:
            pkts.append((T0 + at[i], tcp_packet(sip, cip, PORT, cport, isn_s + 1 + o, dpkt.tcp.TH_ACK, data)))
    if not lose_entirely:
        o, data = segs[2]
        pkts.append((T0 + 1.500, tcp_packet(sip, cip, PORT, cport, isn_s + 1 + o, dpkt.tcp.TH_ACK, data)))
        # A spurious second copy later: the first copy is the arrival.
        pkts.append((T0 + 1.700, tcp_packet(sip, cip, PORT, cport, isn_s + 1 + o, dpkt.tcp.TH_ACK, data)))
    with open(f"{d}/c.pcap", "wb") as f:
        w = dpkt.pcap.Writer(f)
        for ts, buf in pkts:
            w.writepkt(buf, ts)
    start_us = int(T0 * 1e6)
    lines = [
        {"url": "https://s/bytes/5000", "status": 200, "bytes": 5000 + (1 if wrong_bytes else 0), "total": 1500.2,
         "start_unix_us": start_us, "complete_unix_us": start_us + 1_500_200},
        {"url": "https://s/bytes/1500", "status": 200, "bytes": 1500, "total": 1500.1,
         "start_unix_us": start_us, "complete_unix_us": start_us + (1_400_000 if early else 1_500_100)},
    ]
    return run(["h2", "--pcap", f"{d}/c.pcap", "--keylog", f"{d}/keys", "--port", str(PORT)], lines), lines


def h3_case(d, reference=True):
    ref_ms = T0 * 1000 + 0.25  # the qlog's time 0, 0.25 ms after the connection start
    os.makedirs(f"{d}/q", exist_ok=True)
    header = {"qlog_format": "JSON-SEQ", "qlog_version": "0.3",
              "trace": {"common_fields": {"reference_time": ref_ms if reference else 0}}}

    def received(t, frames):
        return {"time": t, "name": "transport:packet_received", "data": {"frames": frames}}

    def stream(sid, off, n):
        return {"frame_type": "stream", "stream_id": sid, "offset": off, "length": n}

    events = [received(80.125, [stream(0, 0, 1000)]),
              received(81.5, [stream(4, 0, 700)]),          # stream 4's first part
              received(82.0, [stream(0, 1000, 1030)]),      # stream 0 complete at 82.0
              received(300.375, [stream(4, 700, 830)]),     # stream 4's repair: complete at 300.375
              received(301.0, [stream(4, 700, 830)])]       # a duplicate: not the arrival
    with open(f"{d}/q/abc.sqlog", "w") as f:
        for j in [header] + events:
            f.write("\x1e" + json.dumps(j) + "\n")
    start_us = int(T0 * 1e6)
    # Completions: stream 0 at 82.5 ms after time 0 (0.5 ms after its bytes),
    # stream 4 at 300.375 (none).
    lines = [{"url": "https://s/bytes/2000", "status": 200, "bytes": 2000, "total": 0.25 + 82.5,
              "start_unix_us": start_us},
             {"url": "https://s/bytes/1500", "status": 200, "bytes": 1500, "total": 0.25 + 300.375,
              "start_unix_us": start_us}]
    return run(["h3", "--qlog-dir", f"{d}/q"], lines), lines


with tempfile.TemporaryDirectory() as d:
    (rc, out, err), _ = h2_case(d)
    check(rc == 0, f"h2: analysed (stderr: {err.strip()})")
    if rc == 0:
        s1, s3 = out
        check(abs(s1["stall_ms"] - 400.2) < 0.01, f"h2: stream 1 sat behind the hole: stall {s1['stall_ms']} ms")
        check(abs(s1["inorder_wait_ms"] - 400.0) < 0.01, f"h2: of which TCP's in-order wait {s1['inorder_wait_ms']} ms")
        check(abs(s1["own_arrival_ms"] - 1100.0) < 0.01, f"h2: stream 1's own bytes in at {s1['own_arrival_ms']} ms")
        check(abs(s3["stall_ms"] - 0.1) < 0.01 and s3["inorder_wait_ms"] == 0,
              f"h2: stream 3 (in the repaired segment) did not wait: {s3['stall_ms']} ms")
        check(abs(s3["own_arrival_ms"] - 1500.0) < 0.01, "h2: the first copy of the repair is the arrival")

# Refusals: exit 1, the reason on stderr, the lines unchanged.
for what, case, expect in [
        ("h2 without keys", dict(keys=False), "no server secrets"),
        ("h2 capture with a hole", dict(lose_entirely=True), "misses server bytes"),
        ("h2 body mismatch", dict(wrong_bytes=True), "body bytes"),
        ("h2 completion before arrival", dict(early=True), "disagree")]:
    with tempfile.TemporaryDirectory() as d:
        (rc, out, err), lines = h2_case(d, **case)
        check(rc == 1 and expect in err and out == lines, f"{what}: {err.strip()}")

with tempfile.TemporaryDirectory() as d:
    (rc, out, err), _ = h3_case(d)
    check(rc == 0, f"h3: analysed (stderr: {err.strip()})")
    if rc == 0:
        s0, s4 = out
        check(abs(s0["stall_ms"] - 0.5) < 0.002, f"h3: stream 0 not held by stream 4's repair: {s0['stall_ms']} ms")
        check(s4["stall_ms"] == 0 and abs(s4["own_arrival_ms"] - 300.625) < 0.002,
              f"h3: stream 4 complete at its repair, {s4['own_arrival_ms']} ms")
        check("inorder_wait_ms" not in s0, "h3: no TCP in-order wait")
with tempfile.TemporaryDirectory() as d:
    (rc, out, err), lines = h3_case(d, reference=False)
    check(rc == 1 and "reference_time" in err and out == lines, f"h3 qlog without a wall clock: {err.strip()}")

print("stall_test:", "FAILED" if failures else "all passed")
sys.exit(1 if failures else 0)
