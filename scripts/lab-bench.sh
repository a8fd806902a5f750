#!/usr/bin/env bash
# lab-bench.sh: what the userspace link emulator costs and how precise it is.
#   1. the scheduler alone (bench/linkem/linkem_bench, sans-IO, 1500-byte packets);
#   2. the whole TUN path with no impairment: the most UDP (1500-byte IP packets)
#      that crosses a lab, and the CPU `quiclab link` spends on it;
#   3. the delay line's timer error (how late packets leave, median and p99) on a
#      20 ms RTT, 100 Mbit/s path under probes and a blast.
# With sch_netem present, step 2 also runs over netem for comparison.
# Prints one JSON object (machine, load, results). Needs root. Bounded: ~30 s.
#
# Usage: scripts/lab-bench.sh [--rate-mbit "OFFERED..."] [--seconds S]   (default: "1000 2000" Mbit/s, 3 s)
set -Eeuo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NETLAB=$here/scripts/netlab.sh
export QUICLAB_BIN=${QUICLAB_BIN:-$here/build/app/quiclab}
build=$(cd "$(dirname "$QUICLAB_BIN")/.." && pwd)
PROBE=${QUICLAB_LINKPROBE:-$build/bench/linkem/linkprobe}
CORE=${LINKEM_BENCH:-$build/bench/linkem/linkem_bench}
export QUICLAB_LINKPROBE=$PROBE
offered="1000 2000"
seconds=3
while (($#)); do
  case $1 in
    --rate-mbit) offered=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    -h | --help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "lab-bench: unknown option $1" >&2; exit 2 ;;
  esac
done
[[ $(id -u) -eq 0 ]] || { echo "lab-bench: needs root" >&2; exit 1; }
for b in "$QUICLAB_BIN" "$PROBE" "$CORE"; do [[ -x $b ]] || { echo "lab-bench: missing $b (build first)" >&2; exit 1; }; done

tmp=$(mktemp -d /tmp/quiclab-labbench.XXXXXX)
LABS=()
cleanup() {
  local n
  for n in "${LABS[@]}"; do "$NETLAB" down "$n" >/dev/null 2>&1 || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

name() { echo "qlb$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')"; }
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
load_start=$(load)

echo "lab-bench: 1/3 scheduler alone" >&2
"$CORE" --packets 2000000 >"$tmp/core.json"

# throughput EMULATOR MBIT -> writes $tmp/path-EMULATOR-MBIT.json
throughput() {
  local emu=$1 rate=$2 n pid=
  n=$(name)
  LABS+=("$n")
  "$NETLAB" up --name "$n" --owner $$ --emulator "$emu" >/dev/null 2>&1
  "$NETLAB" exec "$n" server -- "$PROBE" serve --realtime 20 --duration 60 >/dev/null 2>&1 &
  sleep 0.3
  [[ -s /run/quiclab-netlab/$n/link.pid ]] && pid=$(cat "/run/quiclab-netlab/$n/link.pid")
  local t0 c0=0 t1 c1=0
  # Counters before and after (SIGUSR1 appends a JSON line to link.out).
  counters() { [[ -n $pid ]] && kill -USR1 "$pid" && sleep 0.2 && tail -n 1 "/run/quiclab-netlab/$n/link.out" || echo '{}'; }
  counters >"$tmp/before.json"
  t0=$(date +%s.%N)
  [[ -n $pid ]] && c0=$(ticks "$pid")
  "$NETLAB" exec "$n" client -- "$PROBE" measure --realtime 20 --to 198.51.100.2:9000 --count 100 \
    --rate-mbit "$rate" --seconds "$seconds" >"$tmp/m.json"
  t1=$(date +%s.%N)
  [[ -n $pid ]] && c1=$(ticks "$pid")
  counters >"$tmp/after.json"
  # Packets the kernel dropped in front of the emulator (TUN queue full).
  local tun_drops=0
  [[ -n $pid ]] && tun_drops=$(ip -n "$n-router" -s -j link show "$n-tc" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["stats64"]["tx"]["dropped"])')
  python3 - "$tmp/m.json" "$emu" "$t0" "$t1" "$c0" "$c1" "$(getconf CLK_TCK)" "$tmp/before.json" "$tmp/after.json" "$tun_drops" \
    >"$tmp/path-$emu-$rate.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))["measured"]
emu, t0, t1, c0, c1, hz = sys.argv[2], *map(float, sys.argv[3:8])
before, after = json.load(open(sys.argv[8])), json.load(open(sys.argv[9]))
b = m["blast"]
out = {"emulator": emu, "offered_mbit": b["offered_mbit"], "sent_mbit": b["sent_mbit"],
       "received_ip_mbit": m["goodput_ip_mbit"], "received_pkts_per_s": b["received"] / max(b["span_seconds"], 1e-9),
       "lost_pkts": b["sent"] - b["received"]}
if emu == "userspace":
    out["emulator_cpu_pct_of_one_core"] = 100.0 * (c1 - c0) / hz / (t1 - t0)
    if "c2s" in before and "c2s" in after:
        d = {k: after["c2s"][k] - before["c2s"][k] for k in ("delivered_bytes", "delivered_packets", "packets_in")}
        out["emulator_delivered_pkts"] = d["delivered_packets"]
        out["emulator_dropped_pkts"] = d["packets_in"] - d["delivered_packets"]
        out["tun_queue_drops"] = int(sys.argv[10])
        # Everything the sender offered went through the emulator: its
        # throughput is at least the sending rate. Packets the receiver then
        # misses were lost in its own socket buffer, after the emulator.
        kept_up = out["emulator_dropped_pkts"] == 0 and out["tun_queue_drops"] == 0 \
            and d["delivered_packets"] >= b["sent"]
        out["emulator_kept_up"] = kept_up
        if kept_up:
            out["emulator_throughput_mbit_at_least"] = b["sent_mbit"]
print(json.dumps(out))
PY
  "$NETLAB" down "$n" >/dev/null 2>&1
}

netem=0
if ip netns add "qlbnetem$$" 2>/dev/null; then
  ip netns exec "qlbnetem$$" tc qdisc add dev lo root netem delay 1ms 2>/dev/null && netem=1
  ip netns del "qlbnetem$$"
fi
for rate in $offered; do
  echo "lab-bench: 2/3 TUN path, no impairment, offered 1.1 x ${rate} Mbit/s" >&2
  throughput userspace "$rate"
  if ((netem)); then throughput netem "$rate"; fi
done

echo "lab-bench: 3/3 delay-line timer error at 20 ms RTT, 100 Mbit/s" >&2
n=$(name)
LABS+=("$n")
"$NETLAB" up --name "$n" --owner $$ --emulator userspace --rtt-ms 20 --rate-mbit 100 >/dev/null 2>&1
"$NETLAB" exec "$n" server -- "$PROBE" serve --realtime 20 --duration 60 >/dev/null 2>&1 &
sleep 0.3
"$NETLAB" exec "$n" client -- "$PROBE" measure --realtime 20 --to 198.51.100.2:9000 --count 2000 --interval-ms 1 \
  --rate-mbit 100 --seconds "$seconds" >"$tmp/timer-probe.json"
pid=$(cat "/run/quiclab-netlab/$n/link.pid")
kill -USR1 "$pid"
sleep 0.3
tail -n 1 "/run/quiclab-netlab/$n/link.out" >"$tmp/timer.json"
"$NETLAB" down "$n" >/dev/null 2>&1

python3 - "$tmp" "$load_start" "$(load)" <<'PY'
import glob, json, os, platform, sys
tmp, load_start, load_end = sys.argv[1:4]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
timer = json.load(open(f"{tmp}/timer.json"))
probe = json.load(open(f"{tmp}/timer-probe.json"))["measured"]
print(json.dumps({
    "machine": {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
                "loadavg_start": load_start, "loadavg_end": load_end},
    "core": json.load(open(f"{tmp}/core.json"))["results"],
    "path": sorted((json.load(open(p)) for p in glob.glob(f"{tmp}/path-*.json")),
                   key=lambda r: (r["emulator"], r["offered_mbit"])),
    "timer_error_us": {d: timer[d]["timer_error_us"] for d in ("c2s", "s2c")},
    "timer_path": {"rtt_ms_median": probe["rtt_ms_median"], "rtt_ms_p99": probe["rtt_ms_p99"],
                   "goodput_mbit": probe.get("goodput_mbit")},
}, indent=2))
PY
