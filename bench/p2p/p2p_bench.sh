#!/usr/bin/env bash
# The P2P benchmark, in the NAT lab (root). Per NAT cell and internet RTT,
# interleaved trial by trial (ours, libnice, ours, libnice ...):
#   - quiclab peer: time from the introduction to the nominated pair (peer a,
#     controlling: `connected`.ms_since_introduction) and to the first byte of
#     an HTTP/3 response over the punched path (+ the fetch's ttfb);
#   - libnice against libnice (tests/p2p/nice_peer, both with the lab's
#     rendezvous server as STUN server, offers over pipes): time from the
#     remote offer to the selected pair on the controlling side;
#   - the floor: one peer round trip plus one pacing interval (Ta = 50 ms).
# Then 100 MB over HTTP/3 on the punched path against the same binaries on a
# plain lab path of the same RTT (quiclab serve in the server namespace), and
# the peak memory (VmHWM) of a controlled peer of each kind.
#
#   sudo bench/p2p/p2p_bench.sh [--trials N] [--rtts "0 40"] [--bulk-mb M] [--nice-ta-ms 50] --out DIR
# Writes DIR/trials.jsonl and DIR/report.md (bench/p2p/bench_report.py).
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
natlab=$here/scripts/natlab.sh
export QUICLAB_BIN=${QUICLAB_BIN:-$here/build/app/quiclab}
nice=${NICE_PEER:-$here/build/tests/p2p/nice_peer}
trials=5 rtts="0 40" bulk_mb=100 out=
# libnice paces its checks every 20 ms by default; ours (RFC 8445's default)
# every 50 ms. The comparison runs libnice at our Ta, so it compares the
# agents and not the pacing; --nice-ta-ms 20 shows libnice's default.
nice_ta=50
cells=("port-restricted full-cone" "port-restricted port-restricted" "full-cone symmetric")
while (($#)); do
  case $1 in
    --trials) trials=$2; shift 2 ;;
    --rtts) rtts=$2; shift 2 ;;
    --bulk-mb) bulk_mb=$2; shift 2 ;;
    --nice-ta-ms) nice_ta=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h | --help) sed -n 2,19p "$0"; exit 0 ;;
    *) echo "p2p_bench: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ -n $out ]] || { echo "p2p_bench: --out DIR is required" >&2; exit 2; }
[[ $(id -u) == 0 ]] || { echo "p2p_bench: needs root (the NAT lab)" >&2; exit 1; }
[[ -x $nice ]] || { echo "p2p_bench: no $nice (ninja -C build nice_peer)" >&2; exit 1; }
mkdir -p "$out/runs"
: >"$out/trials.jsonl"
# shellcheck source=../../scripts/p2plib.sh
source "$here/scripts/p2plib.sh"
wait_for() { p2p_wait_for "$1" "$2" 100; }
bounded_wait() {  # PID
  for _ in $(seq 1 300); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
hwm() { awk '/VmHWM/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

ours() {  # CELL RTT N
  local d=$out/runs/$1-$2-ours-$3 server b
  mkdir -p "$d"
  server=$("$natlab" addr "$lab" server)
  "$natlab" exec "$lab" b -- "$QUICLAB_BIN" --log-level warn peer --rendezvous "$server:3478" --name "b$3" \
    --key-file "$d/b.key" --json --stay >"$d/b.jsonl" 2>"$d/b.log" &
  b=$!
  pids+=("$b")
  wait_for "$d/b.jsonl" registered || true
  "$natlab" exec "$lab" a -- "$QUICLAB_BIN" --log-level warn peer --rendezvous "$server:3478" --name "a$3" \
    --key-file "$d/a.key" --json --connect "b$3" --get /bytes/1000 >"$d/a.jsonl" 2>"$d/a.log" || true
  wait_for "$d/b.jsonl" '"event":"result"' || true
  local mem
  mem=$(hwm "$b")
  # --stay: b waits for the next introduction; its session is over.
  kill "$b" 2>/dev/null || true
  wait "$b" 2>/dev/null || true
  /usr/bin/python3 - "$d" "$1" "$2" "$mem" >>"$out/trials.jsonl" <<'EOF'
import json, sys
d, cell, rtt, mem = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
ev = [json.loads(l) for l in open(d + "/a.jsonl") if l.strip().startswith("{")]
get = lambda n: next((e for e in reversed(ev) if e.get("event") == n), None)
c, f, r = get("connected"), get("fetch"), get("result")
row = {"kind": "quiclab", "cell": cell, "rtt_ms": rtt, "outcome": r and r["outcome"], "rss_kib": mem}
if c:
    row["nominated_ms"] = c["ms_since_introduction"]
    row["pair"] = c["local"]["type"] + "-" + c["remote"]["type"]
if c and f and f.get("ttfb") is not None:
    row["first_byte_ms"] = c["ms_since_introduction"] + f["ttfb"]
print(json.dumps(row))
EOF
}

libnice() {  # CELL RTT N
  local d=$out/runs/$1-$2-nice-$3 server a b
  mkdir -p "$d"
  server=$("$natlab" addr "$lab" server)
  rm -f "$d/a.in" "$d/b.in"
  mkfifo "$d/a.in" "$d/b.in"
  "$natlab" exec "$lab" a -- "$nice" --controlling --host 10.0.1.2 --stun "$server:3478" --ta-ms "$nice_ta" \
    0<>"$d/a.in" >"$d/a.jsonl" 2>"$d/a.log" &
  a=$!
  "$natlab" exec "$lab" b -- "$nice" --host 10.0.2.2 --stun "$server:3478" --ta-ms "$nice_ta" 0<>"$d/b.in" >"$d/b.jsonl" 2>"$d/b.log" &
  b=$!
  pids+=("$a" "$b")
  wait_for "$d/a.jsonl" '"ufrag"' && wait_for "$d/b.jsonl" '"ufrag"' || true
  grep -m 1 '"ufrag"' "$d/a.jsonl" 1<>"$d/b.in" || true
  grep -m 1 '"ufrag"' "$d/b.jsonl" 1<>"$d/a.in" || true
  wait_for "$d/b.jsonl" '"event":"selected"' || true
  local mem
  mem=$(hwm "$b")
  bounded_wait "$a"
  bounded_wait "$b"
  /usr/bin/python3 - "$d" "$1" "$2" "$mem" >>"$out/trials.jsonl" <<'EOF'
import json, sys
d, cell, rtt, mem = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
ev = [json.loads(l) for l in open(d + "/a.jsonl") if l.strip().startswith("{")]
get = lambda n: next((e for e in ev if e.get("event") == n), None)
rs, sel, r = get("remote_set"), get("selected"), next((e for e in reversed(ev) if e.get("event") == "result"), None)
row = {"kind": "libnice", "cell": cell, "rtt_ms": rtt, "outcome": r and r["outcome"], "rss_kib": mem}
if rs and sel:
    row["nominated_ms"] = sel["wall_ms"] - rs["wall_ms"]
    row["pair"] = sel["local"]["type"] + "-" + sel["remote"]["type"]
print(json.dumps(row))
EOF
}

bulk() {  # RTT: 100 MB punched (peer) vs plain (serve in the server namespace, get from a)
  local rtt=$1 d=$out/runs/bulk-$1 server b s
  mkdir -p "$d"
  lab=p2pb$$
  lab=${lab:0:9}
  "$natlab" up --name "$lab" --nat-a port-restricted --nat-b full-cone --rtt-ms "$rtt" >"$d/lab.log" 2>&1
  server=$("$natlab" addr "$lab" server)
  local n
  for n in 1 2 3; do
    "$natlab" exec "$lab" b -- "$QUICLAB_BIN" --log-level warn peer --rendezvous "$server:3478" --name "bulk$n" \
      --key-file "$d/b$n.key" --json >"$d/b$n.jsonl" 2>"$d/b$n.log" &
    b=$!
    pids+=("$b")
    wait_for "$d/b$n.jsonl" registered || true
    "$natlab" exec "$lab" a -- "$QUICLAB_BIN" --log-level warn peer --rendezvous "$server:3478" --name "bulka$n" \
      --key-file "$d/a$n.key" --json --connect "bulk$n" --get "/bytes/$((bulk_mb * 1000000))" >"$d/a$n.jsonl" 2>"$d/a$n.log" || true
    bounded_wait "$b"
    # The plain path: the same HTTP/3 server code in the server namespace, the same RTT.
    "$natlab" exec "$lab" server -- "$QUICLAB_BIN" --log-level warn serve --listen "$server:4433" \
      >"$d/serve$n.out" 2>"$d/serve$n.log" &
    s=$!
    pids+=("$s")
    wait_for "$d/serve$n.out" listening || true
    "$natlab" exec "$lab" a -- "$QUICLAB_BIN" --log-level warn get --h3 -k --json \
      "https://$server:4433/bytes/$((bulk_mb * 1000000))" >"$d/plain$n.jsonl" 2>"$d/plain$n.log" || true
    kill "$s" 2>/dev/null || true
    wait "$s" 2>/dev/null || true
    /usr/bin/python3 - "$d" "$n" "$rtt" "$bulk_mb" >>"$out/trials.jsonl" <<'EOF'
import json, sys
d, n, rtt, mb = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
def fetch(path):
    for l in open(path):
        l = l.strip()
        if l.startswith("{"):
            j = json.loads(l)
            if j.get("event", "fetch") == "fetch" and "total" in j:
                return j
f1, f2 = fetch(f"{d}/a{n}.jsonl"), fetch(f"{d}/plain{n}.jsonl")
row = {"kind": "bulk", "rtt_ms": rtt, "mb": mb}
for k, f in (("punched", f1), ("plain", f2)):
    if f and f.get("status") == 200 and f.get("total"):
        row[k + "_mbit_s"] = f["bytes"] * 8 / 1e6 / ((f["total"] - (f.get("sent") or 0)) / 1000)
print(json.dumps(row))
EOF
  done
  "$natlab" down "$lab" >/dev/null 2>&1
  lab=
}

for rtt in $rtts; do
  for cell in "${cells[@]}"; do
    set -- $cell
    name="$1--$2"
    lab=p2pb$$
    lab=${lab:0:9}
    "$natlab" up --name "$lab" --nat-a "$1" --nat-b "$2" --rtt-ms "$rtt" >/dev/null 2>&1
    for n in $(seq 1 "$trials"); do
      ours "$name" "$rtt" "$n"
      libnice "$name" "$rtt" "$n"
    done
    "$natlab" down "$lab" >/dev/null 2>&1
    lab=
    echo "p2p_bench: $name at $rtt ms done" >&2
  done
done
bulk 20
echo "{\"kind\": \"meta\", \"nice_ta_ms\": $nice_ta, \"commit\": \"$(git -C "$here" rev-parse --short HEAD)\"}" >>"$out/trials.jsonl"
/usr/bin/python3 "$here/bench/p2p/bench_report.py" "$out"
