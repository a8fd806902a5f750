"""Per-object stall time from the client's own traces: how long an object's
data sat at the client, complete, before the application had it.

For every object of a `quiclab get --json` run:

  own arrival   the moment the last of the object's own bytes reached the
                client: the response's frames on its stream (HEADERS and
                DATA for HTTP/2, with the whole TLS records that carry them;
                the STREAM frames for HTTP/3), each byte at its first arrival.
  completion    the moment the application had the whole response (get's
                complete_unix_us for HTTP/2, against the capture's wall-clock
                stamps; start_unix_us + total for HTTP/3, the qlog's
                monotonic offsets: each compared within one clock, as a VM's
                wall clock can be slewed against the monotonic one mid-run).
  stall_ms      completion - own arrival. For HTTP/2 this is the time the
                object waited behind bytes of other streams that TCP still
                had to repair (head-of-line blocking) plus the client's own
                processing; for HTTP/3 only the latter, if QUIC keeps its
                promise. The trace measures it; nothing is assumed.
  inorder_wait_ms  (HTTP/2) the part TCP's in-order delivery explains: the
                moment every byte before the object's last record had arrived,
                minus own arrival.

HTTP/2 traces are a packet capture taken in the client's namespace (kernel
timestamps on arrival) and the TLS secrets the client wrote to SSLKEYLOGFILE:
the server's byte stream is rebuilt by sequence number, its TLS 1.3 records
decrypted (the key schedule's two labels, RFC 8446 section 7.3, with
python3-cryptography's HKDF and AEADs) and the HTTP/2 frames read from the
plaintext. HTTP/3 traces are the client's qlog (ngtcp2's, on the µs and with
a wall-clock reference_time, see h3::ClientConnection::refine_qlog_chunk):
arrival there is when ngtcp2 read the datagram, after the socket's queue, so
sub-ms user-space delays count against HTTP/2 and not against HTTP/3; the
stalls that matter are round trips long.

Objects map to streams by order: the client opens one stream per URL, in the
order of its arguments, on one connection (HTTP/2 stream 1, 3, 5..., HTTP/3
0, 4, 8...), and the check that each stream's body length equals the
object's byte count proves the mapping.

The packet and record parsing is ours (dpkt reads the capture; TLS record
framing and the HTTP/2 frame header are a few lines each, and tshark's
reassembly reports frames where they complete, not where their bytes arrived).

Usage: stall.py h2 --pcap F --keylog F --port N < get.jsonl > get+stall.jsonl
       stall.py h3 --qlog-dir D < get.jsonl > get+stall.jsonl
Lines go out in the order they came, each with stall_ms (and for HTTP/2
inorder_wait_ms, own_arrival_ms since the connection start); an unusable
trace is an error on stderr and exit status 1, the lines unchanged.
"""
import argparse
import glob
import json
import struct
import sys

import dpkt
import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand


class TraceError(Exception):
    pass


# TLS 1.3 cipher suites: (AEAD, key length, hash).
SUITES = {
    0x1301: (AESGCM, 16, hashes.SHA256),
    0x1302: (AESGCM, 32, hashes.SHA384),
    0x1303: (ChaCha20Poly1305, 32, hashes.SHA256),
}


def hkdf_expand_label(secret, label, length, hash_cls):
    full = b"tls13 " + label
    info = struct.pack("!H", length) + bytes([len(full)]) + full + b"\x00"
    return HKDFExpand(hash_cls(), length, info).derive(secret)


class RecordKey:
    """One direction's traffic key (RFC 8446 7.3) and its record counter."""

    def __init__(self, secret, suite):
        aead, keylen, hash_cls = SUITES[suite]
        self.aead = aead(hkdf_expand_label(secret, b"key", keylen, hash_cls))
        self.iv = hkdf_expand_label(secret, b"iv", 12, hash_cls)
        self.seq = 0

    def open(self, header, body):
        nonce = bytes(a ^ b for a, b in zip(self.iv, self.seq.to_bytes(12, "big")))
        plain = self.aead.decrypt(nonce, body, header)  # raises InvalidTag
        self.seq += 1
        plain = plain.rstrip(b"\x00")
        if not plain:
            raise TraceError("a TLS record with no content type")
        return plain[-1], plain[:-1]


def read_keylog(path):
    keys = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and not line.startswith("#"):
                keys[(parts[0], parts[1].lower())] = bytes.fromhex(parts[2])
    return keys


def ip_of(buf, linktype):
    if linktype == dpkt.pcap.DLT_EN10MB:
        eth = dpkt.ethernet.Ethernet(buf)
        return eth.data
    if linktype in (dpkt.pcap.DLT_RAW, 101, 228, 229):
        return dpkt.ip6.IP6(buf) if buf and buf[0] >> 4 == 6 else dpkt.ip.IP(buf)
    if linktype == dpkt.pcap.DLT_LINUX_SLL:
        return dpkt.sll.SLL(buf).data
    raise TraceError(f"capture link type {linktype} is not one this reader knows (Ethernet, raw IP, Linux cooked)")


def tcp_streams(pcap_path, port):
    """Per TCP connection with the server port: the client's first payload
    and the server's segments (time, seq, payload) with its ISN."""
    conns = {}
    with open(pcap_path, "rb") as f:
        reader = dpkt.pcap.Reader(f)
        linktype = reader.datalink()
        for ts, buf in reader:
            ip = ip_of(buf, linktype)
            if not isinstance(ip, (dpkt.ip.IP, dpkt.ip6.IP6)) or not isinstance(ip.data, dpkt.tcp.TCP):
                continue
            tcp = ip.data
            if tcp.sport == port:
                key, to_client = tcp.dport, True
            elif tcp.dport == port:
                key, to_client = tcp.sport, False
            else:
                continue
            c = conns.setdefault(key, {"isn": None, "segments": [], "hello": b"", "client_isn": None})
            if to_client:
                if tcp.flags & dpkt.tcp.TH_SYN:
                    c["isn"] = tcp.seq
                elif tcp.data:
                    c["segments"].append((ts, tcp.seq, bytes(tcp.data)))
            else:
                if tcp.flags & dpkt.tcp.TH_SYN:
                    c["client_isn"] = tcp.seq
                elif tcp.data and c["client_isn"] is not None:
                    off = (tcp.seq - c["client_isn"] - 1) % (1 << 32)
                    if off == len(c["hello"]) and len(c["hello"]) < 65536:
                        c["hello"] += bytes(tcp.data)
    return conns


def rebuild(conn):
    """The server's byte stream and each byte's first arrival (s)."""
    if conn["isn"] is None:
        raise TraceError("the capture has no SYN-ACK: it started after the connection did")
    segs = []
    end = 0
    for ts, seq, data in conn["segments"]:
        off = (seq - conn["isn"] - 1) % (1 << 32)
        if off > 1 << 30:  # a keep-alive probe's seq - 1 or the like
            continue
        segs.append((ts, off, data))
        end = max(end, off + len(data))
    stream = bytearray(end)
    arrival = np.full(end, np.inf)
    for ts, off, data in segs:  # capture order: the first copy of a byte wins
        fresh = np.isinf(arrival[off:off + len(data)])
        if fresh.any():
            arrival[off:off + len(data)][fresh] = ts
            chunk = np.frombuffer(data, dtype=np.uint8)
            view = np.frombuffer(stream, dtype=np.uint8)
            view[off:off + len(data)][fresh] = chunk[fresh]
    if np.isinf(arrival).any():
        first = int(np.argmax(np.isinf(arrival)))
        raise TraceError(f"the capture misses server bytes from offset {first} (dropped by the capture?)")
    return bytes(stream), arrival


def client_random(hello):
    # TLS record (5) + handshake header (4) + legacy_version (2), then 32 bytes.
    if len(hello) < 43 or hello[0] != 22 or hello[5] != 1:
        raise TraceError("the client's first bytes are not a TLS ClientHello")
    return hello[11:43].hex()


def h2_frames(conn, keylog):
    """HTTP/2 frames of the server's side: (stream id, type, flags, payload,
    first TCP byte, end TCP byte of the records carrying it)."""
    stream, arrival = rebuild(conn)
    cr = client_random(conn["hello"])
    hs_secret = keylog.get(("SERVER_HANDSHAKE_TRAFFIC_SECRET", cr))
    app_secret = keylog.get(("SERVER_TRAFFIC_SECRET_0", cr))
    if hs_secret is None or app_secret is None:
        raise TraceError(f"the key log has no server secrets for client random {cr[:16]}...")
    suite = None
    hs_key = app_key = None
    plain = bytearray()
    spans = []  # (plaintext start, tcp start, tcp end) per application record
    pos = 0
    while pos + 5 <= len(stream):
        rtype, length = stream[pos], struct.unpack("!H", stream[pos + 3:pos + 5])[0]
        header, body = stream[pos:pos + 5], stream[pos + 5:pos + 5 + length]
        if len(body) < length:
            break  # a record the capture ended inside of
        if rtype == 22 and suite is None:
            if body[0] != 2:
                raise TraceError("the server's first record is not a ServerHello")
            sid_len = body[38]
            suite = struct.unpack("!H", body[39 + sid_len:41 + sid_len])[0]
            if suite not in SUITES:
                raise TraceError(f"cipher suite 0x{suite:04x} is not TLS 1.3's")
            hs_key, app_key = RecordKey(hs_secret, suite), RecordKey(app_secret, suite)
        elif rtype == 23:
            if suite is None:
                raise TraceError("encrypted records before the ServerHello")
            if hs_key is not None:
                try:
                    inner, data = hs_key.open(header, body)
                except Exception:
                    hs_key = None  # the handshake is over: application keys from here
            if hs_key is None:
                try:
                    inner, data = app_key.open(header, body)
                except Exception:
                    raise TraceError(f"a record at offset {pos} does not decrypt (a key update?)")
                if inner == 23:
                    spans.append((len(plain), pos, pos + 5 + length))
                    plain += data
        elif rtype != 20:
            raise TraceError(f"TLS record type {rtype} at offset {pos}")
        pos += 5 + length
    starts = np.array([s[0] for s in spans] + [len(plain)])
    frames = []
    p = 0
    while p + 9 <= len(plain):
        length = int.from_bytes(plain[p:p + 3], "big")
        ftype, flags = plain[p + 3], plain[p + 4]
        sid = struct.unpack("!I", plain[p + 5:p + 9])[0] & 0x7FFFFFFF
        if p + 9 + length > len(plain):
            break
        first = int(np.searchsorted(starts, p, side="right")) - 1
        last = int(np.searchsorted(starts, p + 9 + length - 1, side="right")) - 1
        frames.append((sid, ftype, flags, bytes(plain[p + 9:p + 9 + length]), spans[first][1], spans[last][2]))
        p += 9 + length
    return frames, arrival


def h2_stalls(records, pcap, keylog_path, port):
    conns = {k: c for k, c in tcp_streams(pcap, port).items() if c["segments"]}
    if len(conns) != 1:
        raise TraceError(f"{len(conns)} TCP connections with server data in the capture, expected one")
    frames, arrival = h2_frames(next(iter(conns.values())), read_keylog(keylog_path))
    inorder = np.maximum.accumulate(arrival)
    per_stream = {}
    for sid, ftype, flags, payload, t0, t1 in frames:
        if sid == 0 or ftype not in (0, 1, 9):  # DATA, HEADERS, CONTINUATION
            continue
        s = per_stream.setdefault(sid, {"own": 0.0, "deliver": 0.0, "body": 0})
        s["own"] = max(s["own"], float(arrival[t0:t1].max()))
        s["deliver"] = max(s["deliver"], float(inorder[t1 - 1]))
        if ftype == 0:
            pad = payload[0] + 1 if flags & 0x8 and payload else 0
            s["body"] += len(payload) - pad
    out = []
    for i, r in enumerate(records):
        s = per_stream.get(2 * i + 1)
        if s is None:
            raise TraceError(f"no response frames on stream {2 * i + 1} for {r.get('url')}")
        if s["body"] != r.get("bytes"):
            raise TraceError(f"stream {2 * i + 1} carried {s['body']} body bytes, {r.get('url')} {r.get('bytes')}")
        out.append((s["own"], s["deliver"] - s["own"]))
    return out


def qlog_events(path):
    with open(path, "rb") as f:
        text = f.read().decode()
    header, events = None, []
    for chunk in text.split("\x1e"):
        if not chunk.strip():
            continue
        try:
            j = json.loads(chunk)
        except ValueError:
            raise TraceError(f"{path}: a record that is not JSON")
        if header is None and "qlog_version" in j:
            header = j
        else:
            events.append(j)
    if header is None:
        raise TraceError(f"{path}: no qlog header")
    ref = header.get("trace", {}).get("common_fields", {}).get("reference_time", 0)
    if not ref:
        raise TraceError(f"{path}: reference_time is 0 (not written by a quiclab client on the wall clock)")
    return ref / 1000.0, events


def h3_stalls(records, qlog_dir):
    paths = glob.glob(f"{qlog_dir}/*.sqlog")
    if len(paths) != 1:
        raise TraceError(f"{len(paths)} qlog traces in {qlog_dir}, expected one connection's")
    ref, events = qlog_events(paths[0])
    received = []
    ends = {}
    for e in events:
        if e.get("name") != "transport:packet_received":
            continue
        t = ref + e["time"] / 1000.0
        for fr in e.get("data", {}).get("frames", []):
            if fr.get("frame_type") == "stream":
                sid, off, n = fr["stream_id"], fr["offset"], fr["length"]
                received.append((t, sid, off, n))
                ends[sid] = max(ends.get(sid, 0), off + n)
    arrivals = {sid: np.full(end, np.inf) for sid, end in ends.items()}
    for t, sid, off, n in received:
        a = arrivals[sid][off:off + n]
        a[np.isinf(a)] = t
    out = []
    for i, r in enumerate(records):
        sid = 4 * i
        a = arrivals.get(sid)
        if a is None or np.isinf(a).any():
            raise TraceError(f"stream {sid} ({r.get('url')}) is not complete in the qlog")
        # HTTP/3 framing (HEADERS, DATA frame headers) around the body: a few dozen bytes.
        if not 0 <= len(a) - r.get("bytes", 0) <= 512:
            raise TraceError(f"stream {sid} carried {len(a)} bytes for {r.get('url')}'s {r.get('bytes')}")
        out.append((float(a.max()) if len(a) else ref, None))
    return out


def main():
    ap = argparse.ArgumentParser(description="per-object stall times from the client's traces")
    ap.add_argument("protocol", choices=["h2", "h3"])
    ap.add_argument("--pcap")
    ap.add_argument("--keylog")
    ap.add_argument("--port", type=int, default=4433)
    ap.add_argument("--qlog-dir")
    a = ap.parse_args()
    lines = [l for l in sys.stdin.read().splitlines() if l.strip()]
    records = [json.loads(l) for l in lines]
    try:
        if any(r.get("error") or r.get("status") != 200 for r in records):
            raise TraceError("a request failed: no stall times for a run that did not complete")
        if a.protocol == "h2":
            if not a.pcap or not a.keylog:
                raise TraceError("h2 needs --pcap and --keylog")
            got = h2_stalls(records, a.pcap, a.keylog, a.port)
        else:
            if not a.qlog_dir:
                raise TraceError("h3 needs --qlog-dir")
            got = h3_stalls(records, a.qlog_dir)
    except (TraceError, OSError, ValueError, KeyError, dpkt.dpkt.UnpackError) as e:
        print(f"stall: {e}", file=sys.stderr)
        print("\n".join(lines))
        return 1
    out = []
    for r, (own, wait) in zip(records, got):
        start = r["start_unix_us"] / 1e6
        # HTTP/2: the capture's wall-clock stamps against the wall clock read
        # at completion. HTTP/3: the qlog's monotonic offsets from its
        # reference against the run's monotonic total: each side in one clock.
        done = r["complete_unix_us"] / 1e6 if a.protocol == "h2" else start + r["total"] / 1000
        stall = (done - own) * 1000
        # The clocks meet to the µs (start_unix_us, reference_time and the
        # capture's stamps are whole µs): a few µs below zero is none; more
        # means the trace is not this run's.
        if stall < -0.05:
            print(f"stall: {r.get('url')} completed {-stall:.3f} ms before its last byte arrived: "
                  "the trace and the run disagree", file=sys.stderr)
            print("\n".join(lines))
            return 1
        r["own_arrival_ms"] = round((own - start) * 1000, 3)
        r["stall_ms"] = round(max(stall, 0.0), 3)
        if wait is not None:
            r["inorder_wait_ms"] = round(wait * 1000, 3)
        out.append(json.dumps(r, sort_keys=True))
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
