#!/usr/bin/env bash
# The first README command: the main job. Installs and builds what is missing,
# then runs quiclab's demonstrations on this machine:
#   1. `quiclab serve` (HTTP/2 over TCP+TLS and HTTP/3 over QUIC on one loop), and
#      a set of resources fetched with `quiclab get` over each protocol, with
#      the per-request timing table;
#   2. the side-by-side H2 vs H3 comparison under emulated delay and loss, when
#      the lab is available (scripts/compare.sh; needs root for namespaces);
#   3. the P2P side: the STUN/rendezvous server and RFC 5780 NAT behaviour
#      discovery on loopback, and as root hole punching between peers behind NATs
#      in the NAT lab, with HTTP/3 over the punched path (scripts/p2p-demo.sh).
# Everything runs on loopback or in namespaces this script creates, and is
# cleaned up on exit, error or Ctrl-C.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/scripts/setup.sh" >&2
echo "demo: building (first run takes a few minutes)..." >&2
"$here/scripts/build.sh" "$here/build" >/dev/null
bin="$here/build/app/quiclab"

work=$(mktemp -d /tmp/quiclab-demo.XXXXXX)
server_pid=""
cleanup() {
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

# A small static site: a page and its assets, so the table shows mixed sizes.
mkdir -p "$work/root/assets"
printf '<!doctype html><title>quiclab</title><p>hello from quiclab</p>\n' >"$work/root/index.html"
head -c 20000 /dev/urandom >"$work/root/assets/app.js"
head -c 150000 /dev/urandom >"$work/root/assets/photo.jpg"

echo
echo "== 1. quiclab serve + quiclab get (loopback)"
"$bin" serve --listen 127.0.0.1:0 --root "$work/root" >"$work/serve.out" 2>"$work/serve.log" &
server_pid=$!
port=""
for _ in $(seq 1 100); do
  port=$(sed -n 's/^listening h2 tcp 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/serve.out" | head -1)
  [[ -n "$port" ]] && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/serve.log" >&2; exit 1; }
  sleep 0.1
done
[[ -n "$port" ]] || { echo "demo: server did not start" >&2; cat "$work/serve.log" >&2; exit 1; }
base="https://127.0.0.1:$port"
urls=("$base/" "$base/assets/app.js" "$base/assets/photo.jpg" "$base/bytes/1k" "$base/bytes/1m" "$base/health")

for proto in h2 h3; do
  if grep -q "^listening $proto " "$work/serve.out"; then
    echo
    echo "-- $proto: quiclab get --$proto --insecure ${urls[*]}"
    "$bin" get "--$proto" --insecure "${urls[@]}" || echo "demo: get --$proto failed (exit $?)"
  fi
done
echo
echo "-- server metrics (/metrics, excerpt)"
"$bin" get --h2 --insecure -o "$work/metrics.txt" "$base/metrics" >/dev/null && grep -E '^quiclab_(connections|requests)_total' "$work/metrics.txt" || true
kill -TERM "$server_pid"
wait "$server_pid" && echo "server drained and exited cleanly" || echo "server exit code $?"
server_pid=""

if [[ -x "$here/scripts/compare.sh" ]]; then
  echo
  echo "== 2. HTTP/2 vs HTTP/3 under emulated delay and loss"
  if [[ $(id -u) -eq 0 ]]; then
    "$here/scripts/compare.sh" --demo --out "$here/out/demo-compare"
    echo "(full report with plots: $here/out/demo-compare/report.md; in one file: $here/out/demo-compare/report.html)"
  else
    echo "demo: the comparison builds network namespaces and needs root; run: sudo $0"
  fi
fi

if [[ -x "$here/scripts/p2p-demo.sh" ]]; then
  echo
  echo "== 3. P2P: STUN/rendezvous server, NAT behaviour discovery (RFC 5780), hole punching"
  "$here/scripts/p2p-demo.sh"
fi
