# shellcheck shell=bash
# lablib.sh: pieces shared by the namespace labs (netlab.sh, natlab.sh).
# Sourced, not run. The caller defines log() and die() and sets -Eeuo pipefail.
#
#   ns_exists NS, in_ns NS CMD..., offloads_off NS DEV
#   ns_remove NS                  kill every process in NS (TERM, then KILL), delete NS
#   linkem_tuns NS TUN_C2S TUN_S2C IIF_S2C IIF_C2S...
#                                 two TUNs in router NS and policy routing: what arrives
#                                 on an IIF_C2S goes into TUN_C2S, what arrives on
#                                 IIF_S2C into TUN_S2C; the emulator's writes come back
#                                 in on the TUN and are routed by the main table
#   linkem_start NS DIR TUN_C2S TUN_S2C SPEC SEED [extra quiclab link args]
#                                 starts `quiclab link` (setsid) in NS; its pid in
#                                 DIR/link.pid, output in DIR/link.out and link.err
#   linkem_stop DIR               stops it (TERM, then KILL) and logs its counters

lablib_here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

ns_exists() { [[ -e /run/netns/$1 ]]; }

in_ns() {
  local ns=$1
  shift
  ip netns exec "$ns" "$@"
}

quiclab_bin() {
  local b=${QUICLAB_BIN:-$lablib_here/build/app/quiclab}
  [[ -x $b ]] || die "quiclab binary not found at $b (build it, or set QUICLAB_BIN)"
  echo "$b"
}

offloads_off() {
  local ns=$1 dev=$2
  if command -v ethtool >/dev/null; then
    # Real-sized packets: no segmentation or receive coalescing on the lab's links.
    in_ns "$ns" ethtool -K "$dev" gso off gro off tso off >/dev/null 2>&1 ||
      log "warning: ethtool could not turn offloads off on $dev"
  else
    log "warning: ethtool missing; GSO/GRO/TSO stay on"
  fi
}

# Every process in a lab's namespace is the lab's (servers, probes, the emulator).
ns_remove() {
  local ns=$1 pids i
  ns_exists "$ns" || return 0
  pids=$(ip netns pids "$ns" 2>/dev/null || true)
  if [[ -n $pids ]]; then
    kill -TERM $pids 2>/dev/null || true
    for i in $(seq 20); do
      pids=$(ip netns pids "$ns" 2>/dev/null || true)
      [[ -z $pids ]] && break
      sleep 0.05
    done
    [[ -n $pids ]] && kill -KILL $pids 2>/dev/null || true
  fi
  ip netns del "$ns" 2>/dev/null || true
}

linkem_tuns() {
  local ns=$1 tc=$2 ts=$3 iif_s2c=$4
  shift 4
  ip -n "$ns" tuntap add dev "$tc" mode tun
  ip -n "$ns" tuntap add dev "$ts" mode tun
  local t
  for t in "$tc" "$ts"; do
    # A long TUN queue: bursts wait for the emulator instead of being lost
    # where its counters cannot see them.
    ip -n "$ns" link set "$t" mtu 1500 txqueuelen 10000 up
    in_ns "$ns" sysctl -qw "net.ipv4.conf.$t.rp_filter=0"
  done
  ip -n "$ns" route add default dev "$tc" table 101
  ip -n "$ns" route add default dev "$ts" table 102
  local pref=100 iif
  for iif in "$@"; do
    ip -n "$ns" rule add iif "$iif" lookup 101 pref "$pref"
    pref=$((pref + 1))
  done
  ip -n "$ns" rule add iif "$iif_s2c" lookup 102 pref "$pref"
}

linkem_start() {
  local ns=$1 dir=$2 tc=$3 ts=$4 spec=$5 seed=$6
  shift 6
  local q
  q=$(quiclab_bin)
  local cmd=("$q" link --tun-c2s "$tc" --tun-s2c "$ts" --link "$spec" --seed "$seed"
    --realtime 20 --ready-file "$dir/link.ready" --epoch-file "$dir/epoch" "$@")
  # setsid: the emulator outlives the script and ignores the terminal's Ctrl-C.
  setsid ip netns exec "$ns" "${cmd[@]}" >"$dir/link.out" 2>"$dir/link.err" </dev/null &
  local i pid=$!
  for i in $(seq 100); do
    [[ -s $dir/link.ready ]] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  if [[ ! -s $dir/link.ready ]]; then
    cat "$dir/link.err" >&2 || true
    die "quiclab link did not start"
  fi
  cp "$dir/link.ready" "$dir/link.pid"
  echo "$seed" >"$dir/seed"
}

linkem_stop() {
  local dir=$1 pid i
  [[ -f $dir/link.pid ]] || return 0
  pid=$(cat "$dir/link.pid" 2>/dev/null || true)
  if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.05
    done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  if [[ -s $dir/link.out ]]; then
    log "$(basename "$dir"): emulator counters: $(tail -n 1 "$dir/link.out")"
  fi
}
