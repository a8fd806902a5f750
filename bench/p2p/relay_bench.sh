#!/usr/bin/env bash
# The relay benchmark, in the NAT lab (root), one lab per part, every number
# of a part from the same run:
#   1. relayed against direct in one cell (port-restricted <-> port-restricted,
#      coturn in the lab): pairs of trials, the order alternating (relayed
#      then direct, direct then relayed, ...). Relayed: both peers with
#      --turn --relay-only (QUIC through coturn as ChannelData); direct: both
#      with --direct-only. Each trial fetches M MB over HTTP/3: its time to
#      first byte and its throughput. coturn's CPU time (utime +
#      stime of its process, /proc) is read around every trial: CPU seconds
#      per relayed GB, and its share of a core while it relays.
#   2. the move: port-restricted <-> symmetric with coturn and birthday
#      punching (--birthday --birthday-wait-ms 2000, so QUIC is on the relay
#      first): time from the relayed connection to the path change, and from
#      the path change to QUIC's validation of the new path.
#
#   sudo bench/p2p/relay_bench.sh [--pairs N] [--moves K] [--rtt-ms R] [--bulk-mb M] --out DIR
# Writes DIR/trials.jsonl, DIR/report.md and DIR/relay.png (bench/p2p/relay_report.py).
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
natlab=$here/scripts/natlab.sh
export QUICLAB_BIN=${QUICLAB_BIN:-$here/build/app/quiclab}
pairs=5 moves=5 rtt=20 bulk_mb=100 out=
while (($#)); do
  case $1 in
    --pairs) pairs=${2:?}; shift 2 ;;
    --moves) moves=${2:?}; shift 2 ;;
    --rtt-ms) rtt=${2:?}; shift 2 ;;
    --bulk-mb) bulk_mb=${2:?}; shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    -h | --help) sed -n 2,19p "$0"; exit 0 ;;
    *) echo "relay_bench: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ -n $out ]] || { echo "relay_bench: --out DIR is required" >&2; exit 2; }
for v in "$pairs" "$moves" "$rtt" "$bulk_mb"; do
  [[ $v =~ ^[0-9]+$ ]] || { echo "relay_bench: numbers only: $v" >&2; exit 2; }
done
((pairs >= 1 && pairs <= 50 && moves <= 50 && bulk_mb >= 1 && bulk_mb <= 4096)) ||
  { echo "relay_bench: --pairs 1..50, --moves 0..50, --bulk-mb 1..4096" >&2; exit 2; }
[[ $(id -u) == 0 ]] || { echo "relay_bench: needs root (the NAT lab)" >&2; exit 1; }
[[ -x $QUICLAB_BIN ]] || { echo "relay_bench: no quiclab binary at $QUICLAB_BIN" >&2; exit 1; }

mkdir -p "$out/trials"
: >"$out/trials.jsonl"
lab="rb$$"
lab=${lab:0:8}
bpid=""
cleanup() {
  [[ -n $bpid ]] && kill "$bpid" 2>/dev/null || true
  "$natlab" down "$lab" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# coturn's CPU seconds so far (utime + stime, clock ticks / CLK_TCK).
turn_cpu() {
  local pid
  pid=$(cat "${NATLAB_STATE:-/run/quiclab-natlab}/$lab/turn.pid")
  awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$pid/stat"
}

# trial KIND N ARGS_BOTH... -- ARGS_A...: b waits, a connects; both JSON outputs kept.
trial() {
  local kind=$1 n=$2 server
  shift 2
  local both=() a_args=()
  while (($#)) && [[ $1 != -- ]]; do both+=("$1"); shift; done
  (($#)) && shift
  a_args=("$@")
  server=$("$natlab" addr "$lab" server)
  local t=$out/trials/$kind-$n
  "$natlab" exec "$lab" b -- timeout 120 "$QUICLAB_BIN" peer --rendezvous "$server:3478" --name "b$n" \
    --key-file "$out/trials/b.key" --json "${both[@]}" >"$t.b.jsonl" 2>"$t.b.log" &
  bpid=$!
  for _ in $(seq 100); do grep -q '"event":"registered"' "$t.b.jsonl" && break; sleep 0.1; done
  local cpu0 cpu1 rc=0
  cpu0=$(turn_cpu)
  "$natlab" exec "$lab" a -- timeout 120 "$QUICLAB_BIN" peer --rendezvous "$server:3478" --name "a$n" \
    --key-file "$out/trials/a.key" --json "${both[@]}" "${a_args[@]}" >"$t.a.jsonl" 2>"$t.a.log" || rc=$?
  for _ in $(seq 200); do kill -0 "$bpid" 2>/dev/null || break; sleep 0.1; done
  kill "$bpid" 2>/dev/null || true
  wait "$bpid" 2>/dev/null || true
  bpid=""
  cpu1=$(turn_cpu)
  printf '{"kind":"%s","n":%d,"rc":%d,"turn_cpu_s":%s,"a":"%s","b":"%s"}\n' "$kind" "$n" "$rc" \
    "$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { print b - a }')" "$t.a.jsonl" "$t.b.jsonl" >>"$out/trials.jsonl"
  echo "relay_bench: $kind $n: exit $rc"
}

# ---- 1. relayed against direct ----
"$natlab" up --name "$lab" --nat-a port-restricted --nat-b port-restricted --rtt-ms "$rtt" --turn >"$out/lab1.log" 2>&1 ||
  { cat "$out/lab1.log" >&2; exit 1; }
turn=(--turn "$("$natlab" addr "$lab" turn)" --turn-secret-file "$("$natlab" turn-secret "$lab")")
gets=(--get "/bytes/${bulk_mb}m")
for n in $(seq 1 "$pairs"); do
  # The order alternates within each pair, so a trend in the machine's load
  # falls on both kinds alike.
  if ((n % 2)); then order=(relayed direct); else order=(direct relayed); fi
  for kind in "${order[@]}"; do
    if [[ $kind == relayed ]]; then
      trial relayed "$n" "${turn[@]}" --relay-only -- --connect "b$n" "${gets[@]}"
    else
      trial direct "$n" --direct-only -- --connect "b$n" "${gets[@]}"
    fi
  done
done
"$natlab" down "$lab" >/dev/null 2>&1

# ---- 2. the move from the relay to a birthday path ----
if ((moves > 0)); then
  "$natlab" up --name "$lab" --nat-a port-restricted --nat-b symmetric --rtt-ms "$rtt" --turn >"$out/lab2.log" 2>&1 ||
    { cat "$out/lab2.log" >&2; exit 1; }
  turn=(--turn "$("$natlab" addr "$lab" turn)" --turn-secret-file "$("$natlab" turn-secret "$lab")")
  for n in $(seq 1 "$moves"); do
    trial move "$n" "${turn[@]}" --birthday --birthday-wait-ms 2000 -- --connect "b$n" --get /bytes/1m \
      --wait-direct-ms 15000
  done
  "$natlab" down "$lab" >/dev/null 2>&1
fi

/usr/bin/python3 "$here/bench/p2p/relay_report.py" --out "$out" --rtt-ms "$rtt" --bulk-mb "$bulk_mb"
