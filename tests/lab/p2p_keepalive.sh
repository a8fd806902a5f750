#!/usr/bin/env bash
# Keepalives keep the NAT mapping to the rendezvous server alive: behind a
# port-restricted NAT whose conntrack UDP timeout is 30 s, a peer with
# --keepalive-s 15 can still be introduced after 2 minutes of idling; one with
# --keepalive-s 0 has lost its mapping (its registration refresh is due only
# after 150 s), the server's introduction cannot reach it, and the asking peer
# says so (exit 4, "did not reach").
source "$(dirname "$0")/lib.sh"
source "$HERE/natlab_lib.sh"
name=$(new_name)
natlab_up "$name" --nat-a full-cone --nat-b port-restricted --udp-timeout-s 30
server=$("$NATLAB" addr "$name" server)
bin=${QUICLAB_BIN:?}
peer() {  # ROLE NAME [flags]: quiclab peer in the lab (exec: $! is its pid)
  local role=$1 n=$2
  shift 2
  exec "$NATLAB" exec "$name" "$role" -- "$bin" peer --rendezvous "$server:3478" --name "$n" \
    --key-file "$TEST_TMP/$n.key" --json "$@"
}
peer b kept --keepalive-s 15 >"$TEST_TMP/kept.out" 2>"$TEST_TMP/kept.err" &
kept=$!
CLEANUP_CMDS+=("kill $kept 2>/dev/null")
peer b idle --keepalive-s 0 >"$TEST_TMP/idle.out" 2>"$TEST_TMP/idle.err" &
idle=$!
CLEANUP_CMDS+=("kill $idle 2>/dev/null")
for f in kept idle; do
  for _ in $(seq 100); do grep -q '"event":"registered"' "$TEST_TMP/$f.out" && break; sleep 0.1; done
  grep -q '"event":"registered"' "$TEST_TMP/$f.out" || fail "$f did not register: $(cat "$TEST_TMP/$f.err")"
done
echo "both registered; idling 120 s (conntrack UDP timeout 30 s)"
sleep 120
rc=0
(peer a asker1 --connect kept --get /bytes/1000000) >"$TEST_TMP/a1.out" 2>"$TEST_TMP/a1.err" || rc=$?
((rc == 0)) || fail "introduction to the peer with keepalives: exit $rc: $(tail -3 "$TEST_TMP/a1.out")"
jq -s -e 'map(select(.event == "fetch")) | length == 1 and .[0].verified == true' "$TEST_TMP/a1.out" >/dev/null || fail "no verified fetch"
rc=0
(peer a asker2 --connect idle) >"$TEST_TMP/a2.out" 2>"$TEST_TMP/a2.err" || rc=$?
((rc == 4)) || fail "introduction to the peer without keepalives: exit $rc, want 4: $(tail -3 "$TEST_TMP/a2.out")"
reason=$(jq -r 'select(.event == "result") | .reason' "$TEST_TMP/a2.out")
[[ $reason == *"did not reach"* ]] || fail "reason: $reason"
grep -q '"event":"introduced"' "$TEST_TMP/idle.out" && fail "the idle peer was introduced after all"
echo "ok: with keepalives introduced after 2 min; without: '$reason'"
