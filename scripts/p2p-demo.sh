#!/usr/bin/env bash
# The P2P part of the demo, as far as it is built: the STUN/rendezvous server
# with RFC 5780 behaviour discovery on loopback (127.0.0.1 + 127.0.0.2), asked by
# our own STUN client and, for comparison, by coturn's turnutils_stunclient.
# (Hole punching between NATed peers in namespaces is the next step.)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${QUICLAB_BIN:-$here/build/app/quiclab}
work=$(mktemp -d /tmp/quiclab-p2p-demo.XXXXXX)
pid=""
cleanup() {
  [[ -n "$pid" ]] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

"$bin" rendezvous --listen 127.0.0.1:0 --alt-address 127.0.0.2 >"$work/out" 2>"$work/log" &
pid=$!
addr=""
for _ in $(seq 1 100); do
  addr=$(sed -n 's/^listening primary=\([^ ]*\).*/\1/p' "$work/out" | head -1)
  [[ -n "$addr" ]] && break
  sleep 0.1
done
[[ -n "$addr" ]] || { echo "p2p-demo: rendezvous server did not start" >&2; cat "$work/log" >&2; exit 1; }
echo "rendezvous/STUN server on $addr (alternate address 127.0.0.2)"
echo
echo "-- quiclab stun --nat-behavior $addr"
"$bin" --log-level warn stun --nat-behavior "$addr"
if command -v turnutils_stunclient >/dev/null; then
  echo
  echo "-- coturn's turnutils_stunclient against the same server"
  turnutils_stunclient -p "${addr##*:}" "${addr%:*}" 2>&1 | grep -iE "mapped|addr" | head -4 || true
fi
