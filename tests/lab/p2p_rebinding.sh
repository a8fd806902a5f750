#!/usr/bin/env bash
# A NAT rebinds mid-session: peer a sits behind a symmetric NAT (a new random
# port per mapping), b behind a full-cone NAT. While a fetches 200 MB from b
# over HTTP/3 on the punched path, the conntrack table of a's NAT is flushed:
# a's next packets leave from a new public port. QUIC's path validation on
# b's server carries the connection on (b reports a validated path), and the
# body arrives complete and byte-exact.
#
# What it caught: after the flush the server's packets die at the NAT, the
# client (which only sends ACKs during a download) has nothing to send, and
# the server never learns the new port: the transfer stalled until QUIC's idle
# timeout. The peer's QUIC client now sends a PING after 1 s of silence
# (QuicTuning::keep_alive_ms), which reveals the new mapping.
source "$(dirname "$0")/lib.sh"
source "$HERE/natlab_lib.sh"
command -v conntrack >/dev/null || fail "conntrack (Debian's conntrack) is not installed: scripts/setup.sh installs it"
name=$(new_name)
natlab_up "$name" --nat-a symmetric --nat-b full-cone --rtt-ms 100
server=$("$NATLAB" addr "$name" server)
bin=${QUICLAB_BIN:?}
"$NATLAB" exec "$name" b -- "$bin" peer --rendezvous "$server:3478" --name b --key-file "$TEST_TMP/b.key" --json \
  >"$TEST_TMP/b.out" 2>"$TEST_TMP/b.err" &
b=$!
CLEANUP_CMDS+=("kill $b")
for _ in $(seq 100); do grep -q '"event":"registered"' "$TEST_TMP/b.out" && break; sleep 0.1; done
"$NATLAB" exec "$name" a -- "$bin" peer --rendezvous "$server:3478" --name a --key-file "$TEST_TMP/a.key" --json \
  --connect b --get /bytes/200000000 >"$TEST_TMP/a.out" 2>"$TEST_TMP/a.err" &
a=$!
CLEANUP_CMDS+=("kill $a")
for _ in $(seq 200); do grep -q '"event":"quic"' "$TEST_TMP/a.out" && break; sleep 0.05; done
grep -q '"event":"quic"' "$TEST_TMP/a.out" || fail "no QUIC connection: $(cat "$TEST_TMP/a.out")"
sleep 1
grep -q '"event":"fetch"' "$TEST_TMP/a.out" && fail "the fetch ended before the rebinding; make it longer"
"$NATLAB" exec "$name" nat-a -- conntrack -F 2>&1 | sed 's/^/nat-a: /'
echo "flushed nat-a's conntrack table mid-transfer"
rc=0
for _ in $(seq 600); do kill -0 "$a" 2>/dev/null || break; sleep 0.1; done
wait "$a" || rc=$?
((rc == 0)) || fail "a exited $rc: $(tail -2 "$TEST_TMP/a.out")"
f=$(grep '"event":"fetch"' "$TEST_TMP/a.out")
[[ $(jq .status <<<"$f") == 200 && $(jq .verified <<<"$f") == true && $(jq .bytes <<<"$f") == 200000000 ]] ||
  fail "the fetch: $f"
for _ in $(seq 100); do grep -q '"event":"result"' "$TEST_TMP/b.out" && break; sleep 0.1; done
r=$(grep '"event":"result"' "$TEST_TMP/b.out")
[[ $(jq .path_validations <<<"$r") -ge 1 ]] || fail "b's server validated no new path: $r"
echo "ok: 200 MB byte-exact across the rebinding; b validated $(jq .path_validations <<<"$r") new path(s)"
