#!/usr/bin/env bash
# Relay -> direct during a running transfer: two `quiclab peer`s, coturn and
# the rendezvous server on the loopback device of a private network namespace
# (unshare -n: nothing outside it sees the traffic or the nftables rule, and
# everything goes when the namespace does). An nftables rule drops UDP between
# the two peers' sockets, so only the relayed pairs work and the controlling
# side nominates its own relayed pair after --relay-wait-ms; once it has
# connected over the relay the rule is deleted, a direct check succeeds, the
# agent reports path_changed, the QUIC client migrates (ngtcp2 path
# validation) and the relay is released. Three 100 MB responses over that
# connection are byte-exact, and the move happened while they were running.
# Usage: p2p_relay_move.sh (QUICLAB_BIN in the environment), as root.
set -euo pipefail
source "$(dirname "$0")/../require_root.sh"
require_root "the relay -> direct move test (network namespace, nftables)"
quiclab=${QUICLAB_BIN:?QUICLAB_BIN}
command -v nft >/dev/null && command -v unshare >/dev/null && [[ -x /usr/bin/turnserver ]] || cannot_run "nft, unshare, turnserver"

if [[ ${1:-} != --inside ]]; then
  exec unshare -n bash "$0" --inside
fi

ip link set lo up || cannot_run "the namespace's loopback device"
source "$(dirname "$0")/../p2p/peer_lib.sh"
peer_lib_init relay-move

# The namespace is ours alone: fixed ports are free.
turn_port=3478 rv_port=3479 alice_port=40001 bob_port=40002
secret=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
printf '%s\n' "$secret" >"$tmp/secret"
start_coturn "$quiclab" $turn_port "$secret" || cannot_run "coturn in the namespace"
start_rendezvous

# No direct path between the two peers' sockets, either way.
nft -f - <<EOF || cannot_run "the nftables blocker"
table inet quiclab_move {
  chain out {
    type filter hook output priority 0; policy accept;
    udp sport $alice_port udp dport $bob_port drop
    udp sport $bob_port udp dport $alice_port drop
  }
}
EOF

peer() {
  local name=$1 port=$2
  shift 2
  exec "$quiclab" peer --rendezvous "127.0.0.1:$rv_port" --name "$name" --key-file "$tmp/$name.key" \
    --bind "127.0.0.1:$port" --host-candidates "127.0.0.1" --json --turn "127.0.0.1:$turn_port" \
    --turn-secret-file "$tmp/secret" "$@"
}
start_peer "$tmp/bob" bob $bob_port
bob=$peer_pid
peer alice $alice_port --relay-wait-ms 300 --timeout-ms 20000 --connect bob \
  --get /bytes/100000000 --get /bytes/100000001 --get /bytes/100000002 >"$tmp/alice.out" 2>"$tmp/alice.err" &
alice=$!
pids+=("$alice")
wait_for "$tmp/alice.out" '"event":"connected"' 100
c=$(event "$tmp/alice.out" connected)
[[ $(field "$c" .path) == relayed && $(field "$c" .local.type) == relay ]] ||
  fail "connected on $(field "$c" .path) with local $(field "$c" .local.type), want relayed through our own relay: $c"
wait_for "$tmp/alice.out" '"event":"quic"' 100
nft delete table inet quiclab_move
wait "$alice" || fail "alice exited $?"
wait "$bob" || fail "bob exited $?"

pc=$(event "$tmp/alice.out" path_changed)
[[ -n $pc && $(field "$pc" .path) == direct ]] || fail "no path_changed to direct"
[[ $(field "$pc" .local.type) == host && $(field "$pc" .remote.type) == host ]] || fail "path_changed: $pc"
qp=$(event "$tmp/alice.out" quic_path)
[[ $(field "$qp" .ok) == true && $(field "$qp" .remote) == "127.0.0.1:$bob_port" ]] || fail "QUIC did not move: $qp"
[[ -n $(event "$tmp/alice.out" relay_released) ]] || fail "the relay was not released after the move"
n=0
for size in 100000000 100000001 100000002; do
  f=$(grep '"event":"fetch"' "$tmp/alice.out" | grep "bytes/$size\"")
  [[ $(field "$f" .status) == 200 && $(field "$f" .bytes) == "$size" && $(field "$f" .verified) == true ]] ||
    fail "$size bytes: $f"
  n=$((n + 1))
done
# The move happened while the transfer ran: before the last response ended.
last=$(grep '"event":"fetch"' "$tmp/alice.out" | jq -s 'map(.t_ms) | max')
[[ $(jq -n "$(field "$qp" .t_ms) < $last") == true ]] || fail "the move ($(field "$qp" .t_ms) ms) came after the transfer ($last ms)"
r=$(event "$tmp/alice.out" result)
[[ $(field "$r" .exit_code) == 0 && $(field "$r" '.relay.quic_in > 0') == true ]] || fail "alice result: $r"
[[ $(field "$(event "$tmp/bob.out" path_changed)" .path) == direct ]] || fail "bob saw no path_changed"
echo "moved to direct $(field "$pc" .ms_since_connected) ms after connecting over the relay;" \
  "QUIC path validated at $(field "$qp" .t_ms) ms, last byte at $last ms; $n x 100 MB byte-exact"
echo "PASS"
