#!/usr/bin/env bash
# `quiclab stun --nat-behavior` against coturn's turnserver (no config file, no
# auth, STUN only, listening on 127.0.0.1 and 127.0.0.2, files in a temp dir),
# compared with coturn's own turnutils_natdiscovery -m -f. First on plain
# loopback; then, when we may create network namespaces (root), inside a fresh
# namespace whose nftables input filter drops new flows from the server's other
# ports (address-and-port-dependent filtering) or from its other IP
# (address-dependent filtering): both tools must reach the same verdicts, and
# those must be the ones the filter implements.
# Usage: interop_coturn_server.sh QUICLAB_BINARY
set -euo pipefail
quiclab=$1
tmp=$(mktemp -d /tmp/quiclab-coturn-XXXXXX)
ns=
turn_pid=
cleanup() {
  if [[ -n $turn_pid ]]; then kill "$turn_pid" 2>/dev/null || true; wait "$turn_pid" 2>/dev/null || true; fi
  if [[ -n $ns ]]; then ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true; ip netns del "$ns" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; echo "--- turnserver log"; tail -20 "$tmp"/turn*.log 2>/dev/null || true; exit 1; }

# A port P with P and P+1 free for UDP on both addresses (checked in the namespace
# when one is given). Random start so parallel tests rarely meet.
pick_port() {
  local run=("$@")
  "${run[@]}" python3 - <<'PY'
import random, socket
for _ in range(200):
    p = random.randrange(20000, 40000, 2)
    socks = []
    try:
        for ip in ("127.0.0.1", "127.0.0.2"):
            for port in (p, p + 1):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.bind((ip, port))
                socks.append(s)
        print(p)
        break
    except OSError:
        pass
    finally:
        for s in socks:
            s.close()
PY
}

start_turnserver() {  # $1 port, rest: command prefix (e.g. ip netns exec NS)
  local port=$1
  shift
  "$@" turnserver -n -z -S --listening-ip 127.0.0.1 --listening-ip 127.0.0.2 -p "$port" \
    --alt-listening-port $((port + 1)) --no-tcp --no-tls --no-dtls --no-cli --no-software-attribute \
    --log-file "$tmp/turn-$port.log" --simple-log --pidfile "$tmp/turn-$port.pid" --userdb "$tmp/turndb-$port" \
    >"$tmp/turn-$port.out" 2>&1 &
  turn_pid=$!
  # Ready when it answers a Binding request.
  for _ in $(seq 1 100); do
    if "$@" "$quiclab" --log-level off stun "127.0.0.1:$port" --rto-ms 100 --rc 2 --rm 2 >/dev/null 2>&1; then return 0; fi
    kill -0 "$turn_pid" 2>/dev/null || fail "turnserver exited"
    sleep 0.1
  done
  fail "turnserver on port $port never answered"
}

stop_turnserver() {
  kill "$turn_pid" 2>/dev/null || true
  wait "$turn_pid" 2>/dev/null || true
  turn_pid=
}

# coturn's words to RFC 4787 vocabulary.
coturn_verdict() {  # $1 file, $2 Mapping|Filtering
  local line
  line=$(grep -o "NAT with [A-Za-z ]* $2" "$1" | head -1) || true
  case "$line" in
    "NAT with Endpoint Independent $2") echo endpoint-independent ;;
    "NAT with Address Dependent $2") echo address-dependent ;;
    "NAT with Address and Port Dependent $2") echo address-and-port-dependent ;;
    *) echo "unknown:$line" ;;
  esac
}

compare() {  # $1 label, $2 expected mapping, $3 expected filtering, $4 port, rest: prefix
  local label=$1 want_map=$2 want_filter=$3 port=$4
  shift 4
  "$@" timeout 120 turnutils_natdiscovery -m -f -p "$port" 127.0.0.1 >"$tmp/nd-$label" 2>&1 || fail "$label: turnutils_natdiscovery exited $?"
  local their_map their_filter
  their_map=$(coturn_verdict "$tmp/nd-$label" Mapping)
  their_filter=$(coturn_verdict "$tmp/nd-$label" Filtering)
  "$@" timeout 120 "$quiclab" stun "127.0.0.1:$port" --nat-behavior --json >"$tmp/ours-$label" 2>"$tmp/ours-$label.err" ||
    fail "$label: quiclab stun exited $? ($(cat "$tmp/ours-$label" "$tmp/ours-$label.err"))"
  local our_map our_filter
  our_map=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["mapping"])' "$tmp/ours-$label")
  our_filter=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["filtering"])' "$tmp/ours-$label")
  echo "$label: coturn mapping=$their_map filtering=$their_filter | quiclab mapping=$our_map filtering=$our_filter | expected $want_map / $want_filter"
  [[ $our_map == "$their_map" ]] || fail "$label: mapping differs from coturn's tool"
  [[ $our_filter == "$their_filter" ]] || fail "$label: filtering differs from coturn's tool"
  [[ $our_map == "$want_map" ]] || fail "$label: mapping is not $want_map"
  [[ $our_filter == "$want_filter" ]] || fail "$label: filtering is not $want_filter"
}

echo "== plain loopback"
port=$(pick_port)
[[ -n $port ]] || fail "no free port pair"
start_turnserver "$port"
compare loopback endpoint-independent endpoint-independent "$port"
stop_turnserver

# shellcheck source=../require_root.sh
source "$(dirname "${BASH_SOURCE[0]}")/../require_root.sh"
require_root "the namespace scenarios of the coturn comparison"
ip netns add "quiclab-stun-$$" || cannot_run "network namespace quiclab-stun-$$"
ns="quiclab-stun-$$"
in_ns=(ip netns exec "$ns")
ip -n "$ns" link set lo up
ip -n "$ns" addr add 127.0.0.2/8 dev lo 2>/dev/null || true

for scenario in address-and-port-dependent address-dependent; do
  echo "== namespace, $scenario filtering"
  port=$(pick_port "${in_ns[@]}")
  "${in_ns[@]}" nft flush ruleset
  start_turnserver "$port" "${in_ns[@]}"
  # Only packets *to* the client (destination port outside the server's ports)
  # are filtered; new flows are what a filtering NAT would refuse.
  if [[ $scenario == address-and-port-dependent ]]; then
    match="udp sport { $port, $((port + 1)) }"
  else
    match="ip saddr 127.0.0.2 udp sport { $port, $((port + 1)) }"
  fi
  "${in_ns[@]}" nft -f - <<NFT
table inet quiclab_filter {
  chain input {
    type filter hook input priority 0; policy accept;
    $match udp dport != { $port, $((port + 1)) } ct state new drop
  }
}
NFT
  compare "$scenario" endpoint-independent "$scenario" "$port" "${in_ns[@]}"
  stop_turnserver
done
echo "PASS"
