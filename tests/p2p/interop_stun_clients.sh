#!/usr/bin/env bash
# Real STUN clients against `quiclab rendezvous` on 127.0.0.1 + 127.0.0.2:
# coturn's turnutils_stunclient and turnutils_natdiscovery -m -f, and Debian's
# classic (RFC 3489) stun client. Usage: interop_stun_clients.sh QUICLAB_BINARY
set -euo pipefail
quiclab=$1
tmp=$(mktemp -d /tmp/quiclab-stun-interop-XXXXXX)
pid=
cleanup() {
  if [[ -n $pid ]]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; echo "--- server log"; cat "$tmp/server.err" || true; exit 1; }

"$quiclab" rendezvous --listen 127.0.0.1:0 --alt-address 127.0.0.2 >"$tmp/server.out" 2>"$tmp/server.err" &
pid=$!
for _ in $(seq 1 300); do grep -q '^listening' "$tmp/server.out" 2>/dev/null && break; sleep 0.05; done
line=$(grep '^listening' "$tmp/server.out") || fail "server did not start"
port=$(sed -n 's/.*primary=127\.0\.0\.1:\([0-9]*\).*/\1/p' <<<"$line")
alt_port=$(sed -n 's/.*alt-both=127\.0\.0\.2:\([0-9]*\).*/\1/p' <<<"$line")
echo "server: $line"

echo "== turnutils_stunclient"
timeout 60 turnutils_stunclient -p "$port" 127.0.0.1 >"$tmp/stunclient" 2>&1 || fail "turnutils_stunclient exited $?"
cat "$tmp/stunclient"
grep -q "UDP reflexive addr: 127.0.0.1:" "$tmp/stunclient" || fail "no reflexive address"
grep -q "Other addr: : 127.0.0.2:$alt_port" "$tmp/stunclient" || fail "no OTHER-ADDRESS 127.0.0.2:$alt_port"
# Its CHANGE-REQUEST (ip+port) must be answered from the other address and port.
grep -q "Response origin: : 127.0.0.2:$alt_port" "$tmp/stunclient" || fail "CHANGE-REQUEST not answered from 127.0.0.2:$alt_port"

echo "== turnutils_natdiscovery -m -f"
timeout 120 turnutils_natdiscovery -m -f -p "$port" 127.0.0.1 >"$tmp/natdiscovery" 2>&1 || fail "turnutils_natdiscovery exited $?"
grep -E "NAT with|Not received|rror" "$tmp/natdiscovery" || true
grep -q "NAT with Endpoint Independent Mapping" "$tmp/natdiscovery" || fail "mapping not endpoint-independent on loopback"
grep -q "NAT with Endpoint Independent Filtering" "$tmp/natdiscovery" || fail "filtering not endpoint-independent on loopback"

echo "== stun (classic RFC 3489 client)"
set +e
timeout 60 stun "127.0.0.1:$port" -v >"$tmp/classic" 2>&1
rc=$?
set -e
grep -E "MappedAddress|ChangedAddress|Primary|Return value" "$tmp/classic" | sort -u || true
# The client's own verdict for an open (no NAT, no filtering) path is "Open", exit value 0x01... or 0.
grep -q "Primary: Open" "$tmp/classic" || fail "classic stun client did not conclude 'Open' (rc $rc)"
grep -q "ChangedAddress = 127.0.0.2:$alt_port" "$tmp/classic" || fail "no CHANGED-ADDRESS 127.0.0.2:$alt_port"

kill -USR1 "$pid"
sleep 0.3
grep -q "quiclab_rendezvous_change_requests_total [1-9]" "$tmp/server.out" || fail "server counted no CHANGE-REQUEST"
grep -q "quiclab_rendezvous_legacy_binding_requests_total [1-9]" "$tmp/server.out" || fail "server counted no RFC 3489 request"
kill -0 "$pid" || fail "server died"
echo "PASS"
