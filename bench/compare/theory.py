"""Round-trip arithmetic for a lossless, unlimited-rate path: when should the
first and the last response byte arrive, for each protocol, if both stacks did
nothing but the textbook?

  first byte  = handshake round trips x RTT: TCP + TLS 1.3 + request = 3
                (resumed TLS 1.3 too: HTTP/2 sends no early data), QUIC + TLS
                1.3 + request = 2, QUIC 0-RTT = 1.
  last byte   = first byte + the data phase: slow start from the window the
                server has when the response starts, ACKed every second
                packet (Linux's delayed ACK; `quiclab get --ack-thresh 2`),
                the window growing by every byte ACKed, paced at a factor x
                cwnd / RTT or not paced.

The data phase is a small packet-level simulation rather than a closed form
(ceil(log2(S / W0 + 1)) rounds) because pacing spreads each round over
1 / factor of the round trip and lets the window grow within it, which the
closed form cannot say. It is our own arithmetic, written for the report;
nothing here is measured. The initial windows it starts from are: TCP 10
segments (Linux does not grow cwnd while not cwnd-limited, so the TLS
handshake's few packets leave it at 10), QUIC ngtcp2 0.12.1's initial window
plus the bytes of the server's handshake packets the client acknowledged
before the request (its Cubic grows cwnd by every acknowledged packet,
handshake ones included, lib/ngtcp2_cc.c ngtcp2_cc_cubic_cc_on_pkt_acked):
the server's qlog at 100 ms showed cwnd 15 453 at the first response packet,
933 bytes above 14 520. With 0-RTT the response leaves with the first flight,
before any ACK: 14 520, and not capped at three times the client's bytes
because the session file's NEW_TOKEN token validated the address (qlog: a
full window of 1200-byte packets at once).
"""
import heapq
import math

HANDSHAKE_RTTS = {"h2": 3, "h2-resumed": 3, "h3": 2, "h3-0rtt": 1}
# Application bytes per full packet: TCP's 1448-byte MSS less a 22-byte TLS
# 1.3 record per segment (dynamic record sizing); QUIC's 1444-byte datagrams
# (the server's qlog in the lab) less the short header (1 + 18-byte CID +
# 2-byte packet number + 16-byte tag) and the STREAM frame's header (about 8).
PAYLOAD = {"h2": 1426, "h3": 1399}
INITIAL_WINDOW = {"h2": 10 * 1448, "h3": 14520}
# What the server's acknowledged handshake packets add to QUIC's window before
# a 1-RTT response (measured, above); a 0-RTT response adds nothing.
QUIC_HANDSHAKE_ACKED = 933


def family(proto):
    return "h2" if proto.startswith("h2") else "h3"


def data_phase_ms(size, rtt_ms, window, payload, pacing=1.25, ack_every=2):
    """ms from the first to the last response packet's arrival, for `size` bytes
    sent in packets of `payload` bytes from a window of `window` bytes in slow
    start (no loss, no rate limit, one-way delay rtt/2 each way). pacing: the
    sender's rate is pacing x cwnd / rtt (None: window-limited bursts)."""
    if size <= 0:
        return 0.0
    n = max(1, math.ceil(size / payload))
    one_way = rtt_ms / 2
    cwnd = float(window)
    inflight = 0
    t = 0.0            # the sender's clock
    next_send = 0.0    # pacing: the earliest time of the next packet
    acks = []          # (time the ACK reaches the sender, packets it covers)
    sent = 0
    first_arrival = last_arrival = None
    pending_ack = 0    # packets the receiver has not acknowledged yet
    while sent < n:
        # Take every ACK that has arrived by t.
        while acks and acks[0][0] <= t:
            _, k = heapq.heappop(acks)
            inflight -= k
            cwnd += k * payload
        if inflight + 1 <= cwnd / payload + 1e-9 and t >= next_send:
            arrival = t + one_way
            first_arrival = arrival if first_arrival is None else first_arrival
            last_arrival = arrival
            sent += 1
            inflight += 1
            pending_ack += 1
            if pending_ack >= ack_every or sent == n:
                heapq.heappush(acks, (arrival + one_way, pending_ack))
                pending_ack = 0
            if pacing:
                next_send = t + payload / (pacing * cwnd / rtt_ms)
            continue
        # Wait for the next event: an ACK or the pacing time.
        candidates = [next_send] if next_send > t else []
        if acks:
            candidates.append(acks[0][0])
        if not candidates:  # window full and no ACK due: cannot happen without loss
            raise RuntimeError("stalled")
        t = max(t, min(candidates))
    return last_arrival - first_arrival


def expected(proto, size, rtt_ms, pacing=1.25, iw=None):
    """(first byte ms, last byte ms) by the arithmetic above."""
    fam = family(proto)
    window = iw if iw is not None else INITIAL_WINDOW[fam]
    if proto == "h3":
        window += QUIC_HANDSHAKE_ACKED
    first = HANDSHAKE_RTTS[proto] * rtt_ms
    return first, first + data_phase_ms(size, rtt_ms, window, PAYLOAD[fam], pacing)


def rounds(size, window):
    """Slow-start rounds to send `size` bytes from `window` (the closed form, unpaced)."""
    return max(1, math.ceil(math.log2(size / window + 1)))
