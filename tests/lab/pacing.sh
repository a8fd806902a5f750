#!/usr/bin/env bash
# `quiclab serve --tcp-pacing` and `--quic-pacing` reach the wire: through the
# lab (RTT 40 ms, the userspace emulator's event log of every packet's
# arrival), a 2 MB download's data packets from the server arrive in long
# trains when the stack does not pace (a slow-start round's whole window at
# once) and in short ones when it does. The server's connection record says which it did.
source "$(dirname "$0")/lib.sh"
name=$(new_name)
lab_up "$name" --rtt-ms 40 --event-log "$TEST_TMP/events.tsv"
server=$("$NETLAB" addr "$name" server)

# Trains of the server's full-size packets: packets that arrived less than
# 200 us apart, between two marks of the event log. Unpaced, a slow-start
# round leaves as one train of the whole window; paced, a train is what one
# TSO/GSO send holds (Linux and ngtcp2 size them to ~1 ms at the pacing
# rate). Prints the length of the train the median packet rode in (a train
# the emulator made by reading late barely moves it), or "few".
train_length() {
  python3 - "$TEST_TMP/events.tsv" "$1" "$2" <<'PY'
import sys
path, lo, hi = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
trains, prev = [], None
with open(path) as f:
    for i, line in enumerate(f, 1):
        if i <= lo or i > hi:
            continue
        p = line.rstrip("\n").split("\t")
        if len(p) < 5 or p[1] != "s2c" or p[2] != "arrive" or int(p[4]) < 1200:
            continue
        t = int(p[0])
        if prev is not None and t - prev < 200_000:
            trains[-1] += 1
        else:
            trains.append(1)
        prev = t
n = sum(trains)
if n < 200:
    print("few")
else:
    acc = 0
    for length in sorted(trains):
        acc += length
        if 2 * acc >= n:
            print(length)
            break
PY
}

declare -A share
for proto in h2 h3; do
  for p in on off; do
    flags=(--tcp-pacing "$p" --quic-pacing "$p" --tcp-cc cubic --cc cubic)
    : >"$TEST_TMP/conn.jsonl"
    "$NETLAB" exec "$name" server -- "$QUICLAB_BIN" serve --listen "$server:8443" "${flags[@]}" \
      --conn-log "$TEST_TMP/conn.jsonl" >"$TEST_TMP/serve.log" 2>&1 &
    spid=$!
    CLEANUP_CMDS+=("kill $spid")
    for _ in $(seq 50); do grep -q "^listening h2" "$TEST_TMP/serve.log" && break; sleep 0.1; done
    from=$(wc -l <"$TEST_TMP/events.tsv")
    "$NETLAB" exec "$name" client -- timeout 60 "$QUICLAB_BIN" get "--$proto" -k --verify-bytes --json \
      "https://$server:8443/bytes/2m" >"$TEST_TMP/get.json" 2>"$TEST_TMP/get.log" ||
      fail "$proto, pacing $p: quiclab get failed: $(tail -3 "$TEST_TMP/get.log")"
    grep -q '"verified":true' "$TEST_TMP/get.json" || fail "$proto, pacing $p: $(cat "$TEST_TMP/get.json")"
    for _ in $(seq 50); do [[ -s $TEST_TMP/conn.jsonl ]] && break; sleep 0.1; done
    paced=$(jq -r "select(.protocol == \"$proto\") | .paced" "$TEST_TMP/conn.jsonl")
    want=$([[ $p == on ]] && echo true || echo false)
    [[ $paced == "$want" ]] || fail "$proto, pacing $p: the connection record says paced=$paced: $(cat "$TEST_TMP/conn.jsonl")"
    kill "$spid"
    wait "$spid" 2>/dev/null || true
    to=$(wc -l <"$TEST_TMP/events.tsv")
    share[$proto-$p]=$(train_length "$from" "$to")
    echo "$proto pacing $p: the median full-size packet arrived in a train of ${share[$proto-$p]} (under 200 us apart)"
  done
done
for proto in h2 h3; do
  on=${share[$proto-on]} off=${share[$proto-off]}
  [[ $on != few && $off != few ]] || fail "$proto: too few data packets in the event log"
  ((on * 3 <= off)) || fail "$proto: paced trains of $on packets against $off unpaced, want a third or less"
done
echo "ok: pacing on/off shows on the wire for both stacks"
