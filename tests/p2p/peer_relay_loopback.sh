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
tmp=$(mktemp -d /tmp/quiclab-relay-e2e-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  for f in "$tmp"/*.out "$tmp"/*.err "$tmp"/turn.log; do [[ -s $f ]] && { echo "--- $f"; tail -n 40 "$f"; }; done
  exit 1
}
event() { grep "\"event\":\"$2\"" "$1" | tail -1; }  # FILE EVENT: its last line
field() { jq -r "$2" <<<"$1"; }
wait_for() {  # FILE PATTERN [tenths]
  for _ in $(seq 1 "${3:-100}"); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  fail "$1: no '$2'"
}
free_udp_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

secret=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
printf '%s\n' "$secret" >"$tmp/secret"
printf 'not-the-secret\n' >"$tmp/wrong"

# coturn on 127.0.0.1 only, not an open relay beyond loopback, no TCP/TLS/DTLS.
turn_port=
for _ in 1 2 3 4 5; do
  port=$(free_udp_port)
  /usr/bin/turnserver -n --listening-ip 127.0.0.1 --relay-ip 127.0.0.1 -p "$port" \
    --use-auth-secret --static-auth-secret "$secret" --realm quiclab.test \
    --allow-loopback-peers --no-tcp --no-tls --no-dtls --no-tcp-relay --no-cli --no-multicast-peers \
    --fingerprint --user-quota 10 --total-quota 100 --log-file "$tmp/turn.log" --simple-log \
    --pidfile "$tmp/turn.pid" --userdb "$tmp/turndb" --min-port 49152 --max-port 65535 \
    >"$tmp/turnserver.stdout" 2>&1 &
  turn_pid=$!
  pids+=("$turn_pid")
  # Ready when it answers a Binding request (quiclab stun prints the mapped address).
  for _ in $(seq 1 30); do
    kill -0 "$turn_pid" 2>/dev/null || break
    if timeout 2 "$quiclab" stun "127.0.0.1:$port" --rto-ms 100 --rc 2 >/dev/null 2>&1; then
      turn_port=$port
      break 2
    fi
    sleep 0.1
  done
done
[[ -n $turn_port ]] || fail "coturn did not start"

"$quiclab" rendezvous --listen 127.0.0.1:0 >"$tmp/rv.out" 2>"$tmp/rv.err" &
pids+=($!)
for _ in $(seq 1 200); do grep -q '^listening' "$tmp/rv.out" 2>/dev/null && break; sleep 0.05; done
rv_port=$(sed -n 's/.*primary=127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/rv.out" | head -1)
[[ -n $rv_port ]] || fail "rendezvous server did not start"

peer() {  # NAME [flags...]: quiclab peer with the common flags, JSON out
  local name=$1
  shift
  exec "$quiclab" peer --rendezvous "127.0.0.1:$rv_port" --name "$name" --key-file "$tmp/$name.key" \
    --host-candidates 127.0.0.1 --json --turn "127.0.0.1:$turn_port" "$@"
}

echo "== relayed: 1 MB byte-exact and 20 MB over coturn (--relay-only on both sides)"
peer bob --turn-secret-file "$tmp/secret" --relay-only >"$tmp/bob.out" 2>"$tmp/bob.err" &
bob=$!
pids+=("$bob")
wait_for "$tmp/bob.out" '"event":"registered"'
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
peer bob --turn-secret-file "$tmp/secret" >"$tmp/bob2.out" 2>"$tmp/bob2.err" &
bob=$!
pids+=("$bob")
wait_for "$tmp/bob2.out" '"event":"registered"'
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
peer bob --turn-secret-file "$tmp/secret" >"$tmp/bob3.out" 2>"$tmp/bob3.err" &
bob=$!
pids+=("$bob")
wait_for "$tmp/bob3.out" '"event":"registered"'
(peer carol --turn-secret-file "$tmp/wrong" --connect bob --get /bytes/100000) >"$tmp/carol2.out" 2>"$tmp/carol2.err" ||
  fail "wrong secret: carol exited $?"
wait "$bob" || fail "wrong secret: bob exited $?"
[[ $(field "$(event "$tmp/carol2.out" relay_failed)" .code) == 401 ]] || fail "no relay_failed: $(cat "$tmp/carol2.out")"
[[ $(field "$(event "$tmp/carol2.out" result)" .outcome) == direct ]] || fail "carol: $(event "$tmp/carol2.out" result)"

echo "== usage errors"
expect_usage() {
  set +e
  "$quiclab" peer "$@" >"$tmp/usage.out" 2>&1
  local rc=$?
  set -e
  [[ $rc == 2 ]] || fail "'peer $*' exited $rc, want 2: $(cat "$tmp/usage.out")"
  grep -q . "$tmp/usage.out" || fail "'peer $*' said nothing"
}
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
echo "PASS"
