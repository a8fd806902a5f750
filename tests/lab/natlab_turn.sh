#!/usr/bin/env bash
# natlab.sh up --turn: coturn in the server namespace, TURN REST API
# credentials only, relaying only inside the lab. With coturn's own client
# (turnutils_uclient in a, behind a port-restricted NAT) and echo peer
# (turnutils_peer in b, public): a valid time-limited credential gets an
# allocation and its messages come back through the relay; a wrong secret and
# an expired timestamp get no allocation; the server's own network and
# loopback are forbidden peers (403); the secret is in no log or output; down
# leaves nothing, coturn included.
source "$(dirname "$0")/lib.sh"
source "$HERE/natlab_lib.sh"
for t in turnserver turnutils_uclient turnutils_peer openssl; do
  command -v "$t" >/dev/null || cannot_run "$t is not installed (coturn, openssl)"
done

name=$(new_name)
# --turn first: any option order.
CLEANUP_CMDS+=("\"$NATLAB\" down $name")
"$NATLAB" up --turn --name "$name" --nat-a port-restricted --nat-b none >"$TEST_TMP/up.out" 2>"$TEST_TMP/up.err" || {
  cat "$TEST_TMP/up.err" >&2
  cannot_run "the NAT lab with --turn"
}
dir=/run/quiclab-natlab/$name
turn=$("$NATLAB" addr "$name" turn)
[[ $turn == 198.51.100.2:3480 ]] || fail "addr $name turn: '$turn', want 198.51.100.2:3480"
sfile=$("$NATLAB" turn-secret "$name")
[[ $sfile == "$dir/turn.secret" ]] || fail "turn-secret: '$sfile'"
[[ $(stat -c %a "$sfile") == 600 && $(stat -c %a "$dir/turnserver.conf") == 600 ]] ||
  fail "secret file / config not mode 0600: $(stat -c '%a %n' "$sfile" "$dir/turnserver.conf")"
secret=$(cat "$sfile")
[[ $secret =~ ^[0-9a-f]{64}$ ]] || fail "the secret is not 32 bytes of hex"
turn_pid=$(cat "$dir/turn.pid")
[[ $(tr '\0' ' ' </proc/"$turn_pid"/cmdline) == "turnserver -c $dir/turnserver.conf "* ]] ||
  fail "pid $turn_pid is not our turnserver"
ss=$("$NATLAB" exec "$name" server -- ss -Hlun)
grep -q '198\.51\.100\.2:3480 ' <<<"$ss" || fail "coturn does not listen on UDP 198.51.100.2:3480: $ss"
if grep -q . <<<"$("$NATLAB" exec "$name" server -- ss -Hltn)"; then fail "something listens on TCP in the server namespace"; fi
pids=$(natlab_pids "$name")

# The echo peer in b (public, 203.0.113.130).
peer=$("$NATLAB" addr "$name" b)
[[ $peer == 203.0.113.130 ]] || fail "b is $peer"
setsid ip netns exec "$name-b" turnutils_peer -L "$peer" -p 3480 >"$TEST_TMP/peer.log" 2>&1 </dev/null &
peer_pid=$!
CLEANUP_CMDS=("kill $peer_pid" "${CLEANUP_CMDS[@]}")
for _ in $(seq 100); do
  grep -q "$peer:3480 " <<<"$("$NATLAB" exec "$name" b -- ss -Hlun)" && break
  sleep 0.05
done

cred() { printf %s "$1" | openssl dgst -sha1 -hmac "$2" -binary | base64; }
# uclient TAG USER PASSWORD PEER: 10 messages through one allocation and a
# channel to PEER:3480; output in $TEST_TMP/TAG.log, exit code echoed.
uclient() {
  local rc=0
  timeout 30 "$NATLAB" exec "$name" a -- turnutils_uclient -p 3480 -u "$2" -w "$3" -e "$4" -r 3480 \
    -n 10 -m 1 -c -X 198.51.100.2 >"$TEST_TMP/$1.log" 2>&1 || rc=$?
  echo "$rc"
}
now=$(date +%s)

# 1. A valid credential (expires in 10 min): allocation, and all 10 messages
#    echoed back by the peer through the relay.
user="$((now + 600)):alice"
rc=$(uclient ok "$user" "$(cred "$user" "$secret")" "$peer")
((rc == 0)) || fail "valid credential: uclient exited $rc: $(tail -n 20 "$TEST_TMP/ok.log")"
grep -q 'tot_send_msgs=10, tot_recv_msgs=10$' "$TEST_TMP/ok.log" ||
  fail "valid credential: not all 10 messages came back through the relay: $(tail -n 20 "$TEST_TMP/ok.log")"
if grep -q 'ERROR' "$TEST_TMP/ok.log"; then fail "valid credential: errors: $(grep ERROR "$TEST_TMP/ok.log")"; fi
echo "ok: a valid REST API credential gets an allocation; 10/10 messages relayed to $peer and back"

# 2. A wrong secret: no allocation.
wrong=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
rc=$(uclient wrong "$user" "$(cred "$user" "$wrong")" "$peer")
if ! { ((rc != 0)) && grep -q 'Cannot complete Allocation' "$TEST_TMP/wrong.log"; }; then
  fail "wrong secret: want no allocation, uclient exited $rc: $(tail -n 20 "$TEST_TMP/wrong.log")"
fi
if grep -q 'tot_recv_msgs=[1-9]' "$TEST_TMP/wrong.log"; then fail "wrong secret: messages were relayed"; fi
echo "ok: a wrong secret gets no allocation"

# 3. A correctly signed but expired timestamp: no allocation.
old="$((now - 60)):alice"
rc=$(uclient expired "$old" "$(cred "$old" "$secret")" "$peer")
if ! { ((rc != 0)) && grep -q 'Cannot complete Allocation' "$TEST_TMP/expired.log"; }; then
  fail "expired timestamp: want no allocation, uclient exited $rc: $(tail -n 20 "$TEST_TMP/expired.log")"
fi
if grep -q 'tot_recv_msgs=[1-9]' "$TEST_TMP/expired.log"; then fail "expired timestamp: messages were relayed"; fi
echo "ok: an expired timestamp gets no allocation"

# 4. Peers outside the lab's peer ranges: the allocation succeeds, the channel
#    (and its permission) to the peer is refused with 403 Forbidden IP. The
#    inet router's server side, loopback, a private address (b's would-be LAN),
#    and coturn's own relay address.
for bad in 198.51.100.1 127.0.0.1 10.0.2.2 198.51.100.2; do
  rc=$(uclient "bad-$bad" "$user" "$(cred "$user" "$secret")" "$bad")
  log=$TEST_TMP/bad-$bad.log
  if ! { ((rc != 0)) && grep -q 'error 403 (Forbidden IP)' "$log"; }; then
    fail "peer $bad: want 403 Forbidden IP, uclient exited $rc: $(tail -n 20 "$log")"
  fi
  if grep -q 'Cannot complete Allocation' "$log"; then fail "peer $bad: the allocation itself failed"; fi
  echo "ok: peer $bad refused (403 Forbidden IP)"
done

# 5. The secret appears nowhere but the secret file and the config: not in
#    coturn's log, not in anything natlab.sh printed.
for f in "$dir/turnserver.log" "$dir/turnserver.out" "$dir/turnserver.err" "$TEST_TMP/up.out" "$TEST_TMP/up.err" "$dir/config"; do
  if grep -qF "$secret" "$f"; then fail "the secret appears in $f"; fi
done
grep -q 'check_stun_auth' "$dir/turnserver.log" || fail "coturn's log does not record the refused credentials"
echo "ok: the secret is in no log or output"

# 6. down stops coturn with the rest of the lab.
kill "$peer_pid" 2>/dev/null || true
"$NATLAB" down "$name" 2>/dev/null
# shellcheck disable=SC2086
natlab_assert_gone "$name" $pids "$turn_pid" "$peer_pid"
echo "ok: nothing left after down (coturn pid $turn_pid gone)"

# 7. --turn last, and `down --all` (on a private state root, so no one else's
#    labs are touched) stops coturn too.
st=$TEST_TMP/state
name2=$(new_name)
CLEANUP_CMDS+=("NATLAB_STATE=$st \"$NATLAB\" down $name2")
NATLAB_STATE=$st "$NATLAB" up --nat-a none --nat-b symmetric --name "$name2" --turn >/dev/null 2>"$TEST_TMP/up2.err" || {
  cat "$TEST_TMP/up2.err" >&2
  cannot_run "the NAT lab with --turn last"
}
turn_pid2=$(cat "$st/$name2/turn.pid")
alive "$turn_pid2" || fail "coturn of $name2 is not running"
pids2=$(natlab_pids "$name2")
NATLAB_STATE=$st "$NATLAB" down --all 2>/dev/null
[[ -z $(ls -A "$st") ]] || fail "state left in $st after down --all"
# shellcheck disable=SC2086
natlab_assert_gone "$name2" $pids2 "$turn_pid2"
echo "ok: --turn in any position; down --all stops coturn (pid $turn_pid2 gone)"

# 8. A coturn that does not start: up fails saying so, and removes the lab.
fake=$TEST_TMP/fakebin
mkdir -p "$fake"
printf '#!/bin/sh\nexit 3\n' >"$fake/turnserver"
chmod +x "$fake/turnserver"
name3=$(new_name)
CLEANUP_CMDS+=("\"$NATLAB\" down $name3")
if PATH=$fake:$PATH "$NATLAB" up --name "$name3" --nat-a none --nat-b none --turn >/dev/null 2>"$TEST_TMP/up3.err"; then
  fail "up --turn succeeded with a turnserver that exits at once"
fi
grep -q 'coturn (turnserver) did not start' "$TEST_TMP/up3.err" || fail "up --turn failed without saying why: $(cat "$TEST_TMP/up3.err")"
natlab_assert_gone "$name3"
echo "ok: a coturn that does not start fails up with a clear message; nothing left"
