#!/usr/bin/env bash
# One real `quiclab peer` run in the NAT lab, drawn as a ladder diagram
# (bench/p2p/ladder.py). Usage (root):
#   bench/p2p/ladder_run.sh OUT.png [NAT_A NAT_B [RTT_MS]]
# Defaults: port-restricted full-cone 20. The JSON lines stay beside OUT.png
# (OUT.a.jsonl, OUT.b.jsonl).
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:?usage: ladder_run.sh OUT.png [NAT_A NAT_B [RTT_MS]]}
nat_a=${2:-port-restricted} nat_b=${3:-full-cone} rtt=${4:-20}
export QUICLAB_BIN=${QUICLAB_BIN:-$here/build/app/quiclab}
natlab=$here/scripts/natlab.sh
lab=ladder$$
lab=${lab:0:9}
work=$(mktemp -d /tmp/quiclab-ladder.XXXXXX)
b=
cleanup() {
  [[ -n $b ]] && kill "$b" 2>/dev/null || true
  "$natlab" down "$lab" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
"$natlab" up --name "$lab" --nat-a "$nat_a" --nat-b "$nat_b" --rtt-ms "$rtt" >/dev/null
server=$("$natlab" addr "$lab" server)
base=${out%.png}
"$natlab" exec "$lab" b -- "$QUICLAB_BIN" peer --rendezvous "$server:3478" --name b --key-file "$work/b" --json \
  >"$base.b.jsonl" 2>"$work/b.log" &
b=$!
for _ in $(seq 1 100); do grep -q registered "$base.b.jsonl" && break; sleep 0.05; done
"$natlab" exec "$lab" a -- "$QUICLAB_BIN" peer --rendezvous "$server:3478" --name a --key-file "$work/a" --json \
  --connect b --get /bytes/100000 >"$base.a.jsonl" 2>"$work/a.log"
for _ in $(seq 1 100); do kill -0 "$b" 2>/dev/null || break; sleep 0.1; done
/usr/bin/python3 "$here/bench/p2p/ladder.py" "$base.a.jsonl" "$base.b.jsonl" "$out" \
  --title "quiclab peer: a behind $nat_a, b behind $nat_b, ${rtt} ms internet RTT (from both sides' --json events)"
echo "ladder: $out"
