#!/usr/bin/env bash
# `quiclab peer` through the real coturn (Debian's turnserver) on loopback,
# with the real `quiclab rendezvous`: TURN allocations with coturn's
# use-auth-secret time-limited credentials, relay candidates in the
# introduction, HTTP/3 over the relay (1 MB byte-exact), ChannelData used for
# the data once the channel is bound, the relay not chosen when a direct pair
# works, a wrong secret refused (relay_failed, the session goes on without a
# relay), the secret never in the output, and the TURN flags' usage errors.
# The TURN client's own test against coturn is tests/p2p/turn_coturn_test.cpp.
# Usage: peer_relay_loopback.sh QUICLAB_BINARY
set -euo pipefail
quiclab=$1
source "$(dirname "$0")/peer_lib.sh"
peer_lib_init relay-e2e
free_udp_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

secret=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
printf '%s\n' "$secret" >"$tmp/secret"
printf 'not-the-secret\n' >"$tmp/wrong"

# coturn on 127.0.0.1 only, not an open relay beyond loopback, no TCP/TLS/DTLS.
turn_port=
for _ in 1 2 3 4 5; do
  port=$(free_udp_port)
  if start_coturn "$quiclab" "$port" "$secret"; then
    turn_port=$port
    break
  fi
done
[[ -n $turn_port ]] || fail "coturn did not start"

start_rendezvous

peer() {  # NAME [flags...]: quiclab peer with the common flags, JSON out
  local name=$1
  shift
  exec "$quiclab" peer --rendezvous "127.0.0.1:$rv_port" --name "$name" --key-file "$tmp/$name.key" \
    --host-candidates 127.0.0.1 --json --turn "127.0.0.1:$turn_port" "$@"
}

echo "== relayed: 1 MB byte-exact and 20 MB over coturn (--relay-only on both sides)"
start_peer "$tmp/bob" bob --turn-secret-file "$tmp/secret" --relay-only
bob=$peer_pid
(peer alice --turn-secret-file "$tmp/secret" --relay-only --connect bob --get /bytes/1000000 --get /bytes/20000000) \
  >"$tmp/alice.out" 2>"$tmp/alice.err" || fail "relayed: alice exited $?"
wait "$bob" || fail "relayed: bob exited $?"
for who in alice bob; do
  r=$(event "$tmp/$who.out" relay)
  [[ $(field "$r" .server) == "127.0.0.1:$turn_port" && $(field "$r" .relayed) == 127.0.0.1:* ]] || fail "$who relay: $r"
  [[ $(field "$r" '.lifetime_s > 0') == true ]] || fail "$who lifetime: $r"
  reg=$(event "$tmp/$who.out" introduced)
  [[ $(field "$reg" '[.candidates[] | select(.type == "relay")] | length') == 1 ]] || fail "$who: no relay candidate of the peer: $reg"
  r=$(event "$tmp/$who.out" result)
  [[ $(field "$r" .outcome) == relayed ]] || fail "$who result: $r"
done
c=$(event "$tmp/alice.out" connected)
[[ $(field "$c" .path) == relayed ]] || fail "alice connected: $c"
[[ $(field "$c" .local.type) == relay || $(field "$c" .remote.type) == relay ]] || fail "pair without relay: $c"
f=$(grep '"event":"fetch"' "$tmp/alice.out" | grep 'bytes/1000000"')
[[ $(field "$f" .status) == 200 && $(field "$f" .bytes) == 1000000 && $(field "$f" .verified) == true ]] || fail "1 MB: $f"
f=$(grep '"event":"fetch"' "$tmp/alice.out" | grep 'bytes/20000000"')
[[ $(field "$f" .status) == 200 && $(field "$f" .bytes) == 20000000 && $(field "$f" .verified) == true ]] || fail "20 MB: $f"
# The relayed packets went through coturn: as ChannelData once the channel
# was bound (the side whose relay carries the pair binds it).
total_cd=0
total_in=0
for who in alice bob; do
  r=$(event "$tmp/$who.out" result)
  total_cd=$((total_cd + $(field "$r" '.relay.channel_data_sent + .relay.channel_data_received')))
  total_in=$((total_in + $(field "$r" .relay.quic_in)))
done
((total_in > 1000)) || fail "only $total_in QUIC packets came through the relay"
((total_cd > 1000)) || fail "only $total_cd ChannelData messages: the channel was not used for the data"
grep -q "TURN channel 0x4[0-9a-f]* bound" "$tmp/alice.err" "$tmp/bob.err" || fail "no channel bound"
# The secret is in no output of ours.
! grep -q -- "$secret" "$tmp"/*.out "$tmp"/*.err || fail "the TURN secret appears in the output"

echo "== both can relay, a direct pair works: the relay is not chosen"
start_peer "$tmp/bob2" bob --turn-secret-file "$tmp/secret"
bob=$peer_pid
(peer alice --turn-secret-file "$tmp/secret" --connect bob --get /bytes/100000) >"$tmp/alice2.out" 2>"$tmp/alice2.err" ||
  fail "direct: alice exited $?"
wait "$bob" || fail "direct: bob exited $?"
[[ $(field "$(event "$tmp/alice2.out" connected)" .path) == direct ]] || fail "direct: $(event "$tmp/alice2.out" connected)"
for who in alice2 bob2; do
  [[ $(field "$(event "$tmp/$who.out" result)" .outcome) == direct ]] || fail "$who: $(event "$tmp/$who.out" result)"
done

echo "== a wrong secret: no allocation; with --relay-only that is the end (exit 4), else it goes on direct"
set +e
(peer carol --turn-secret-file "$tmp/wrong" --relay-only --connect nobody) >"$tmp/carol.out" 2>"$tmp/carol.err"
rc=$?
set -e
[[ $rc == 4 ]] || fail "wrong secret with --relay-only: exit $rc, want 4"
rf=$(event "$tmp/carol.out" relay_failed)
[[ -n $rf && $(field "$rf" .code) == 401 ]] || fail "wrong secret: $rf"
[[ -z $(event "$tmp/carol.out" relay) ]] || fail "wrong secret got an allocation"
r=$(event "$tmp/carol.out" result)
[[ $(field "$r" .outcome) == failed && $(field "$r" .reason) == *"no relay"*"401"* ]] || fail "wrong secret: $r"
start_peer "$tmp/bob3" bob --turn-secret-file "$tmp/secret"
bob=$peer_pid
(peer carol --turn-secret-file "$tmp/wrong" --connect bob --get /bytes/100000) >"$tmp/carol2.out" 2>"$tmp/carol2.err" ||
  fail "wrong secret: carol exited $?"
wait "$bob" || fail "wrong secret: bob exited $?"
[[ $(field "$(event "$tmp/carol2.out" relay_failed)" .code) == 401 ]] || fail "no relay_failed: $(cat "$tmp/carol2.out")"
[[ $(field "$(event "$tmp/carol2.out" result)" .outcome) == direct ]] || fail "carol: $(event "$tmp/carol2.out" result)"

echo "== usage errors"
base=(--rendezvous 127.0.0.1:1 --name x --key-file "$tmp/x.key")
expect_usage "${base[@]}" --turn 127.0.0.1:3478
expect_usage "${base[@]}" --turn 127.0.0.1:3478 --turn-secret-file "$tmp/missing"
grep -q "missing" "$tmp/usage.out" || fail "the missing secret file is not named"
expect_usage "${base[@]}" --turn 127.0.0.1:3478 --turn-user u
expect_usage "${base[@]}" --turn nowhere:99999 --turn-secret-file "$tmp/secret"
expect_usage "${base[@]}" --relay-only
expect_usage "${base[@]}" --turn 127.0.0.1:3478 --turn-secret-file "$tmp/secret" --relay-only --direct-only
expect_usage "${base[@]}" --turn 127.0.0.1:3478 --turn-secret-file "$tmp/secret" --relay-wait-ms 70000
! grep -q -- "$secret" "$tmp/usage.out" || fail "a usage error printed the secret"
kill -0 "$turn_pid" || fail "coturn died"

echo "== coturn killed during a relayed transfer: the peers say the path is lost within the consent timeout (30 s)"
start_peer "$tmp/bob4" bob --turn-secret-file "$tmp/secret" --relay-only
bob=$peer_pid
(peer alice --turn-secret-file "$tmp/secret" --relay-only --connect bob --get /bytes/4g) \
  >"$tmp/alice4.out" 2>"$tmp/alice4.err" &
alice=$!
pids+=("$alice")
wait_for "$tmp/alice4.out" '"event":"quic"'
sleep 0.5
kill "$turn_pid"
killed=$(date +%s)
rc=0
wait "$alice" || rc=$?
took=$(($(date +%s) - killed))
((rc == 3)) || fail "alice exited $rc after coturn was killed, want 3"
((took <= 40)) || fail "alice took $took s to notice, the consent timeout is 30 s"
r=$(event "$tmp/alice4.out" result)
[[ $(field "$r" .outcome) == failed && $(field "$r" .reason) == *"through the relay"*"lost"*"consent"* ]] ||
  fail "alice's result after coturn was killed: $r"
for _ in $(seq 1 150); do kill -0 "$bob" 2>/dev/null || break; sleep 0.1; done
grep -q "consent lost" "$tmp/bob4.err" || fail "bob did not notice the lost path"
echo "alice said the path was lost $took s after coturn was killed: $(field "$r" .reason)"
echo "PASS"
