#!/usr/bin/env bash
# The NAT matrix: `quiclab peer` pairs through the NAT lab (scripts/natlab.sh)
# for every ordered pair of NAT types and the same-NAT case, N trials each;
# writes matrix.json, matrix.md and pictures (bench/p2p/matrix_report.py) and
# exits 1 when a cell's outcome is not the expected one (docs/p2p.md).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
natlab=$here/scripts/natlab.sh
export QUICLAB_BIN=${QUICLAB_BIN:-$here/build/app/quiclab}

usage() {
  cat <<'EOF'
Usage: p2p-matrix.sh [--types LIST] [--trials N] [--rtt-ms R] [--loss-pct L] [--timeout-ms T]
                     [--get PATH] [--turn] [--birthday] [--cells LIST] [--no-same-nat] [--no-plots]
                     --out DIR

Runs `quiclab peer` pairs in the NAT lab: for every ordered pair (A, B) of the types, peer a
(behind NAT A, controlling, QUIC client, --connect) and peer b (behind NAT B, controlled, QUIC
server) meet through the lab's rendezvous server; plus the same-NAT case (both behind one
port-restricted NAT, no hairpin). Each trial fetches PATH over HTTP/3 on the punched path.

  --types LIST     comma-separated NAT types (default:
                   full-cone,address-restricted,port-restricted,symmetric; 'none' is allowed)
  --trials N       trials per cell (default 3)
  --rtt-ms R       internet round-trip time in the lab (default 0)
  --loss-pct L     per-crossing loss on the internet links (default 0)
  --timeout-ms T   the peers' verdict timeout (default 10000)
  --get PATH       fetched by a from b (default /bytes/100000, checked byte for byte)
  --turn           coturn in each cell's lab (natlab.sh --turn) and both peers use it
                   (quiclab peer --turn ... --turn-secret-file ...)
  --birthday       both peers punch birthday-style (quiclab peer --birthday, its defaults:
                   256 sockets, 1024 probes at 100/s); with --turn, peer a of a port-restricted
                   <-> symmetric cell stays connected after its fetch (--wait-direct-ms 15000)
                   until the birthday path takes over from the relay
  --cells LIST     only these cells, comma-separated A--B (e.g. port-restricted--symmetric);
                   the same-NAT cell is 'same-nat'
  --no-same-nat    leave the same-NAT cell out
  --no-plots       matrix.json and matrix.md only
  --out DIR        results: DIR/matrix.json, matrix.md, matrix.png, ttc_cdf.png, cells/*/

Expected: direct everywhere except port-restricted <-> symmetric (both ways) and symmetric <->
symmetric, which must end in the failed verdict "no direct path" within the timeout; with
--turn those cells must be relayed (through coturn, after the 2 s relay wait) and every other
cell must stay direct. With --birthday port-restricted <-> symmetric (both ways) must be direct
in at least half of the trials and otherwise end in the fallback (relayed with --turn, else the
failed verdict naming birthday punching); the report gives its rate and packet cost.
Needs root (namespaces). Exit codes: 0 every cell as expected, 1 a cell differs or a trial
could not run, 2 usage error.
EOF
}
die_usage() {
  echo "p2p-matrix: $*" >&2
  echo "try: p2p-matrix.sh --help" >&2
  exit 2
}

types=full-cone,address-restricted,port-restricted,symmetric
trials=3 rtt=0 loss=0 timeout_ms=10000 get=/bytes/100000 same_nat=1 plots=1 out= turn=0 birthday=0 cells=
while (($#)); do
  case $1 in
    --types) types=${2:?}; shift 2 ;;
    --trials) trials=${2:?}; shift 2 ;;
    --rtt-ms) rtt=${2:?}; shift 2 ;;
    --loss-pct) loss=${2:?}; shift 2 ;;
    --timeout-ms) timeout_ms=${2:?}; shift 2 ;;
    --get) get=${2:?}; shift 2 ;;
    --turn) turn=1; shift ;;
    --birthday) birthday=1; shift ;;
    --cells) cells=${2:?}; shift 2 ;;
    --no-same-nat) same_nat=0; shift ;;
    --no-plots) plots=0; shift ;;
    --out) out=${2:?}; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) die_usage "unknown argument '$1'" ;;
  esac
done
[[ -n $out ]] || die_usage "--out DIR is required"
[[ $trials =~ ^[0-9]+$ ]] && ((trials >= 1 && trials <= 100)) || die_usage "--trials: 1..100"
[[ $timeout_ms =~ ^[0-9]+$ ]] || die_usage "--timeout-ms: a number"
IFS=, read -r -a type_list <<<"$types"
for t in "${type_list[@]}"; do
  case $t in none | full-cone | address-restricted | port-restricted | symmetric) ;;
    *) die_usage "unknown NAT type '$t'" ;;
  esac
done
if [[ $(id -u) != 0 ]]; then
  echo "p2p-matrix: needs root (network namespaces)" >&2
  exit 1
fi
[[ -x $QUICLAB_BIN ]] || { echo "p2p-matrix: no quiclab binary at $QUICLAB_BIN" >&2; exit 1; }

mkdir -p "$out/cells" "$out/keys"
# shellcheck source=p2plib.sh
source "$here/scripts/p2plib.sh"

# Lab names must be short (namespace and interface names); one lab per cell.
lab_name() { printf 'pm%s' "$(printf '%s' "$1" | md5sum | cut -c1-6)"; }

# One trial: b registers and waits, a connects and fetches. Each side's JSON
# lines go to the cell's folder; the report reads them.
run_trial() {  # CELLDIR TRIAL
  local dir=$1 n=$2 server
  server=$("$natlab" addr "$lab" server)
  local common=(--rendezvous "$server:3478" --timeout-ms "$timeout_ms" --json)
  ((turn)) && common+=(--turn "$("$natlab" addr "$lab" turn)" --turn-secret-file "$("$natlab" turn-secret "$lab")")
  ((birthday)) && common+=(--birthday)
  "$natlab" exec "$lab" b -- "$QUICLAB_BIN" peer "${common[@]}" --name "b$n" --key-file "$out/keys/b$n" \
    >"$dir/b$n.jsonl" 2>"$dir/b$n.log" &
  local b=$!
  pids+=("$b")
  p2p_wait_for "$dir/b$n.jsonl" '"event":"registered"' || true
  set +e
  timeout $((timeout_ms / 1000 + 40)) "$natlab" exec "$lab" a -- "$QUICLAB_BIN" peer "${common[@]}" --name "a$n" \
    --key-file "$out/keys/a$n" --connect "b$n" --get "$get" "${a_extra[@]}" >"$dir/a$n.jsonl" 2>"$dir/a$n.log"
  echo $? >"$dir/a$n.rc"
  set -e
  # b ends by itself (session over, or its own verdict); bounded anyway.
  for _ in $(seq 1 $((timeout_ms / 100 + 100))); do kill -0 "$b" 2>/dev/null || break; sleep 0.1; done
  kill "$b" 2>/dev/null || true
  local rc=0
  wait "$b" 2>/dev/null || rc=$?
  echo "$rc" >"$dir/b$n.rc"
}

run_cell() {  # NAT_A NAT_B SAME_NAT
  local a=$1 b=$2 same=$3 cell dir
  cell=$([[ $same == 1 ]] && echo "same-nat" || echo "$a--$b")
  [[ -z $cells || ",$cells," == *",$cell,"* ]] || return 0
  dir=$out/cells/$cell
  mkdir -p "$dir"
  lab=$(lab_name "$cell")
  local up=(up --name "$lab" --nat-a "$a" --nat-b "$b" --rtt-ms "$rtt" --loss-pct "$loss")
  [[ $same == 1 ]] && up+=(--same-nat)
  ((turn)) && up+=(--turn)
  # A birthday cell with coturn: QUIC starts on the relay after 2 s and the
  # probe that lands moves it, usually after the fetch is done; a stays
  # connected until then (bounded), so the trial shows whether it would.
  a_extra=()
  if ((birthday && turn)) && [[ $same == 0 ]] && [[ "$a $b" == "port-restricted symmetric" || "$a $b" == "symmetric port-restricted" ]]; then
    a_extra=(--wait-direct-ms 15000)
  fi
  if ! "$natlab" "${up[@]}" >"$dir/lab.log" 2>&1; then
    echo "p2p-matrix: cannot build the lab for $cell:" >&2
    cat "$dir/lab.log" >&2
    exit 1
  fi
  printf '{"nat_a":"%s","nat_b":"%s","same_nat":%s,"rtt_ms":%s,"loss_pct":%s,"turn":%s,"birthday":%s}\n' "$a" "$b" \
    "$([[ $same == 1 ]] && echo true || echo false)" "$rtt" "$loss" "$( ((turn)) && echo true || echo false)" \
    "$( ((birthday)) && echo true || echo false)" >"$dir/cell.json"
  for n in $(seq 1 "$trials"); do run_trial "$dir" "$n"; done
  "$natlab" down "$lab" >/dev/null 2>&1
  lab=
  local ok relayed
  ok=$(cat "$dir"/a*.jsonl | grep '"event":"result"' | grep -c '"outcome":"direct"' || true)
  relayed=$(cat "$dir"/a*.jsonl | grep '"event":"result"' | grep -c '"outcome":"relayed"' || true)
  printf 'p2p-matrix: %-40s %d/%d direct%s\n' "$cell" "$ok" "$trials" "$( ((turn)) && echo ", $relayed/$trials relayed")"
}

for a in "${type_list[@]}"; do
  for b in "${type_list[@]}"; do run_cell "$a" "$b" 0; done
done
((same_nat)) && run_cell port-restricted port-restricted 1

# Debian's python (python3-matplotlib), whatever python3 is first on PATH.
report=(/usr/bin/python3 "$here/bench/p2p/matrix_report.py" --out "$out" --timeout-ms "$timeout_ms")
((plots)) || report+=(--no-plots)
"${report[@]}"
