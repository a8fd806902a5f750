#!/usr/bin/env bash
# Happy Eyeballs (RFC 8305) of `quiclab get`, over both protocols, with the
# name "localhost" resolving as on a stock Debian 12 (::1 first, then
# 127.0.0.1) whatever this machine's own /etc/hosts says.
#
#   run.sh QUICLAB_BINARY CASE PROTO      (PROTO: h2 or h3)
#
# The case re-runs itself in a private mount and network namespace
# (unshare): a hosts file of the case's own is bind-mounted over /etc/hosts,
# and the namespace's loopback is the only network, so nothing here depends on
# the machine's /etc/hosts, its addresses or its other listeners. Root is
# needed; without it the case skips (77) on a developer's machine and fails
# under CI.
#
# Cases:
#   refused_v6   server on 127.0.0.1 only: ::1 answers "refused" (TCP RST,
#                ICMP port unreachable for QUIC) and 127.0.0.1 is tried at once
#   blackhole_v6 ::1 drops every packet to the port (nftables, no answer at
#                all): 127.0.0.1 starts after the attempt delay and wins
#   v6_only      server on ::1 only, hosts file lists 127.0.0.1 first: IPv6
#                is still tried first and wins
#   none         nothing listens on either: one clear error naming both addresses
set -euo pipefail
# shellcheck source=../sanitizer_report.sh
source "$(dirname "$0")/../sanitizer_report.sh"

QUICLAB=${1:?usage: run.sh QUICLAB_BINARY CASE PROTO}
CASE=${2:?usage: run.sh QUICLAB_BINARY CASE PROTO}
PROTO=${3:?usage: run.sh QUICLAB_BINARY CASE PROTO}

if [[ "${QUICLAB_HE_INSIDE:-}" != 1 ]]; then
  # shellcheck source=../require_root.sh
  source "$(dirname "$0")/../require_root.sh"
  require_root "happy eyeballs [$CASE $PROTO] (a private mount and network namespace)"
  QUICLAB_HE_INSIDE=1 exec unshare --mount --net --propagation private bash "$0" "$@"
fi

# shellcheck source=../client_test_lib.sh
source "$(dirname "$0")/../client_test_lib.sh"
client_test_init "he-${CASE}-${PROTO}" "$CASE $PROTO"

ip link set lo up || fail "cannot bring up the namespace's loopback"

hosts() {
  printf '%s\n' "$@" >"$work/hosts"
  mount --bind "$work/hosts" /etc/hosts || fail "cannot bind-mount a hosts file over /etc/hosts"
  getent ahosts localhost >"$work/resolved.log" || true
}

get() {
  set +e
  "$QUICLAB" --log-level debug get "--$PROTO" --insecure --json "$@" >"$work/out.txt" 2>"$work/get.log"
  rc=$?
  set -e
}

# check_json PEER_IP [MIN_CONNECT_MS]: one 200 response of 1000 bytes, from PEER_IP.
check_json() {
  python3 - "$work/out.txt" "$PROTO" "$@" <<'PY' || fail "JSON check failed"
import json, sys
path, proto, peer = sys.argv[1], sys.argv[2], sys.argv[3]
min_connect = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
lines = [json.loads(l) for l in open(path) if l.strip()]
assert len(lines) == 2, lines
for j in lines:
    assert j["status"] == 200 and j["bytes"] == 1000 and j["protocol"] == proto, j
    host = j["peer"].rsplit(":", 1)[0].strip("[]")
    assert host == peer, f"answered by {j['peer']}, expected {peer}"
    # The connection's clock starts with the first attempt, so time lost on
    # an address that never answered shows in "connect" (a lower bound only:
    # the schedule cannot start the next attempt early).
    assert j["connect"] >= min_connect, f"connect {j['connect']} ms < {min_connect} ms"
PY
}

case "$CASE" in
  refused_v6)
    hosts "::1 localhost ip6-localhost" "127.0.0.1 localhost"
    start_quiclab_serve 127.0.0.1:0 "h3 udp"
    get -n 2 "https://localhost:$port/bytes/1000"
    [[ $rc == 0 ]] || fail "exit code $rc"
    check_json 127.0.0.1
    grep -q "attempt 1 to \[::1\]:$port" "$work/get.log" || fail "IPv6 was not tried first"
    grep -q "\[::1\]:$port failed" "$work/get.log" || fail "the refused IPv6 attempt was not seen to fail"
    ;;
  blackhole_v6)
    hosts "::1 localhost ip6-localhost" "127.0.0.1 localhost"
    start_quiclab_serve 127.0.0.1:0 "h3 udp"
    nft -f - <<NFT || fail "nft failed"
table inet quiclab_he {
  chain input {
    type filter hook input priority 0; policy accept;
    ip6 daddr ::1 tcp dport $port drop
    ip6 daddr ::1 udp dport $port drop
  }
}
NFT
    get -n 2 --happy-eyeballs-timeout-ms 300 "https://localhost:$port/bytes/1000"
    [[ $rc == 0 ]] || fail "exit code $rc"
    check_json 127.0.0.1 300
    grep -q "attempt 2 to 127.0.0.1:$port" "$work/get.log" || fail "IPv4 was never tried"
    if grep -q "\[::1\]:$port failed" "$work/get.log"; then fail "the silent IPv6 attempt cannot have failed by itself"; fi
    ;;
  v6_only)
    hosts "127.0.0.1 localhost" "::1 localhost ip6-localhost"
    start_quiclab_serve "[::1]:0" "h3 udp"
    get -n 2 "https://localhost:$port/bytes/1000"
    [[ $rc == 0 ]] || fail "exit code $rc"
    check_json ::1
    grep -q "attempt 1 to \[::1\]:$port" "$work/get.log" || fail "IPv6 was not tried first"
    ;;
  none)
    hosts "::1 localhost ip6-localhost" "127.0.0.1 localhost"
    port=9  # the namespace is new: nothing listens anywhere
    get "https://localhost:$port/bytes/1000"
    [[ $rc == 3 ]] || fail "exit code $rc, expected 3 (transport failure)"
    python3 - "$work/out.txt" "$port" <<'PY' || fail "error does not name both addresses"
import json, sys
j = json.loads(open(sys.argv[1]).readline())
err = j["error"]
assert "[::1]:" + sys.argv[2] in err and "127.0.0.1:" + sys.argv[2] in err, err
PY
    ;;
  *)
    fail "unknown case"
    ;;
esac
echo "ok [$CASE $PROTO]"
