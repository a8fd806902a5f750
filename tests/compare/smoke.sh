#!/usr/bin/env bash
# Smoke run of the comparison: a tiny grid through a real lab (namespaces, the
# link emulator or netem), then the schema check and the handshake ordering
# h3-0rtt < h3 < h2 at 50 ms RTT. Needs root.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
out=$(mktemp -d /tmp/quiclab-compare-smoke.XXXXXX)
trap 'rm -rf "$out"' EXIT
"$here/scripts/compare.sh" --rtt-ms 50 --loss-pct 0,2 --workloads handshake,page --runs 5 --seed 7 \
  --out "$out" </dev/null
/usr/bin/python3 "$here/bench/compare/check_summary.py" "$out" --handshake-order 50
# The compact table and the report exist and name every protocol.
for p in h2 h3 h3-0rtt; do grep -q "| $p |" "$out/report.md" || { echo "report lacks $p" >&2; exit 1; }; done
ls "$out"/*.png >/dev/null
