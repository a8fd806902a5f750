#!/usr/bin/env bash
# netlab.sh: client <-> router <-> server in network namespaces, with an
# impaired link in the router (tc netem where the kernel has it, the userspace
# emulator `quiclab link` otherwise), and a fidelity check of that link.
# See `netlab.sh --help` and docs/lab.md.
set -Eeuo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE_ROOT=${NETLAB_STATE:-/run/quiclab-netlab}
# shellcheck source=lablib.sh
source "$here/scripts/lablib.sh"

# Lab addresses (documentation ranges, DESIGN.md). Every lab lives in its own
# namespaces, so every lab can use the same addresses.
CLIENT_ADDR=192.0.2.2
ROUTER_CLIENT_ADDR=192.0.2.1
SERVER_ADDR=198.51.100.2
ROUTER_SERVER_ADDR=198.51.100.1
PROBE_PORT=9000

usage() {
  cat <<'EOF'
Usage:
  netlab.sh up    [--name NAME] [--owner PID|none] [link options]
  netlab.sh exec  NAME client|server|router -- CMD [ARGS...]
  netlab.sh addr  NAME client|server|router
  netlab.sh check [--name NAME] [link options] [--count N] [--interval-ms MS] [--seconds S]
  netlab.sh down  NAME | --all [--force]
  netlab.sh epoch NAME N                (--draws flow: the flows that start from now on are run N's)
  netlab.sh list
  netlab.sh plan  [link options]        (dry run: prints the netem arguments and the link spec)
  netlab.sh --help

Topology: client (192.0.2.2) <-> router (192.0.2.1 | 198.51.100.1) <-> server (198.51.100.2),
namespaces NAME-client, NAME-router, NAME-server, veth pairs with GSO/GRO/TSO off.
The impairment sits in the router, applied to each direction separately
(client->server = c2s, server->client = s2c), with the same settings both ways
unless --c2s/--s2c add to one of them.

Link options:
  --rtt-ms MS            round-trip propagation delay; each direction gets MS/2 (default 0)
  --jitter-ms MS         per direction: each packet gets delay +- U[0, MS] (default 0; never
                         reorders in the userspace emulator unless --reorder)
  --loss-pct P           per-direction loss in percent (default 0)
  --loss-model M         bernoulli (default) or gilbert (Gilbert-Elliott, bursty)
  --burst-pkts B         gilbert: mean loss burst length in packets (default 3); with --loss-pct
                         this sets p and r so the long-run loss is P
  --ge-p P --ge-r R --ge-bad B --ge-good G
                         gilbert: explicit chain parameters in percent (netem's gemodel p r 1-h 1-k)
  --rate-mbit R          link rate in Mbit/s (default: unlimited)
  --queue-pkts N         drop-tail queue bound in packets (default: BDP, at least 16; 1000 without rate)
  --queue-bytes N        drop-tail queue bound in bytes (userspace only; default: none)
  --emulator E           auto (default: netem when the kernel has sch_netem, else userspace),
                         netem, or userspace
  --seed N               seed for the userspace emulator (default: random; always printed)
 userspace emulator only:
  --reorder              let jitter reorder packets
  --outage DOWN/UP[@FIRST]  periodic outage in ms: down DOWN ms every DOWN+UP ms, first at FIRST
  --drop K-M[+K-M...]    drop packets K..M of each flow (with --drop-flow udp|tcp|any[:PORT])
  --drop-flow F          which flows --drop applies to (default any)
  --c2s SPEC, --s2c SPEC extra `quiclab link` spec items for one direction (see quiclab link --help)
  --event-log FILE       the emulator's per-packet event log (TSV)
  --draws flow|arrival   flow: common random numbers, the loss and jitter draw of the k-th
                         packet of a flow is a function of (seed, epoch, the flow's number in
                         its epoch, k), so two protocols' run N meet the same losses
                         (netlab.sh epoch NAME N before each); arrival (default): one
                         sequence per direction in arrival order

check options:
  --count N              probes (default 2000)     --interval-ms MS  gap (default max(1, 2*jitter+0.5))
  --seconds S            goodput blast length (default 3; only with --rate-mbit)
  check prints ONE JSON object: {"emulator", "name", "configured", "measured", "verdict"}.

Binaries: $QUICLAB_BIN (default build/app/quiclab) and $QUICLAB_LINKPROBE (default: next to
quiclab's build tree, bench/linkem/linkprobe). Needs root (namespaces).
State: $NETLAB_STATE (default /run/quiclab-netlab)/NAME. `up` ties the lab to an owner process
(default: the caller, $PPID; --owner none for a lab that lives until `down NAME`); `down --all`
removes every lab whose owner is gone (leftovers of killed runs), `down --all --force` every lab.
EOF
}

log() { echo "netlab: $*" >&2; }
die() {
  echo "netlab: error: $*" >&2
  exit 1
}

need_root() { [[ $(id -u) -eq 0 ]] || die "needs root (network namespaces)"; }

is_num() { [[ $1 =~ ^[0-9]+(\.[0-9]+)?$ ]]; }
# Float arithmetic through awk: calc 'a/2' a=3
calc() {
  local expr=$1
  shift
  awk "$@" "BEGIN { printf \"%.10g\", ($expr) }"
}

linkprobe_bin() {
  local b=${QUICLAB_LINKPROBE:-}
  if [[ -z $b ]]; then
    local q
    q=$(quiclab_bin)
    b=$(cd "$(dirname "$q")/.." && pwd)/bench/linkem/linkprobe
  fi
  [[ -x $b ]] || die "linkprobe not found at $b (build target linkprobe, or set QUICLAB_LINKPROBE)"
  echo "$b"
}

# ---- link options ----------------------------------------------------------

O_RTT=0 O_JITTER=0 O_LOSS=0 O_MODEL=bernoulli O_BURST=3 O_RATE=0 O_QPKTS= O_QBYTES=0
O_EMU=auto O_SEED= O_REORDER=0 O_OUTAGE= O_DROP= O_DROPFLOW= O_C2S= O_S2C= O_EVLOG= O_DRAWS=arrival
O_GE_P= O_GE_R= O_GE_BAD= O_GE_GOOD=
O_NAME= O_OWNER= O_COUNT=2000 O_INTERVAL= O_SECONDS=3
ARGS_REST=()

parse_opts() {
  while (($#)); do
    local opt=$1
    case $opt in
      --rtt-ms | --jitter-ms | --loss-pct | --burst-pkts | --rate-mbit | --ge-p | --ge-r | --ge-bad | --ge-good | --interval-ms | --seconds)
        (($# >= 2)) || die "$opt needs a value"
        is_num "$2" || die "$opt: '$2' is not a non-negative number"
        case $opt in
          --rtt-ms) O_RTT=$2 ;;
          --jitter-ms) O_JITTER=$2 ;;
          --loss-pct) O_LOSS=$2 ;;
          --burst-pkts) O_BURST=$2 ;;
          --rate-mbit) O_RATE=$2 ;;
          --ge-p) O_GE_P=$2 ;;
          --ge-r) O_GE_R=$2 ;;
          --ge-bad) O_GE_BAD=$2 ;;
          --ge-good) O_GE_GOOD=$2 ;;
          --interval-ms) O_INTERVAL=$2 ;;
          --seconds) O_SECONDS=$2 ;;
        esac
        shift 2
        ;;
      --queue-pkts | --queue-bytes | --seed | --count)
        (($# >= 2)) || die "$opt needs a value"
        [[ $2 =~ ^[0-9]+$ ]] || die "$opt: '$2' is not a non-negative integer"
        case $opt in
          --queue-pkts) O_QPKTS=$2 ;;
          --queue-bytes) O_QBYTES=$2 ;;
          --seed) O_SEED=$2 ;;
          --count) O_COUNT=$2 ;;
        esac
        shift 2
        ;;
      --loss-model)
        (($# >= 2)) || die "$opt needs a value"
        [[ $2 == bernoulli || $2 == gilbert ]] || die "--loss-model must be bernoulli or gilbert"
        O_MODEL=$2
        shift 2
        ;;
      --emulator)
        (($# >= 2)) || die "$opt needs a value"
        [[ $2 == auto || $2 == netem || $2 == userspace ]] || die "--emulator must be auto, netem or userspace"
        O_EMU=$2
        shift 2
        ;;
      --name)
        (($# >= 2)) || die "$opt needs a value"
        O_NAME=$2
        shift 2
        ;;
      --owner)
        (($# >= 2)) || die "$opt needs a value"
        [[ $2 == none || $2 =~ ^[0-9]+$ ]] || die "--owner must be a pid or none"
        O_OWNER=$2
        shift 2
        ;;
      --outage)
        (($# >= 2)) || die "$opt needs a value"
        [[ $2 =~ ^[0-9.]+/[0-9.]+(@[0-9.]+)?$ ]] || die "--outage must be DOWN/UP[@FIRST] in ms"
        O_OUTAGE=$2
        shift 2
        ;;
      --drop)
        (($# >= 2)) || die "$opt needs a value"
        [[ $2 =~ ^[0-9]+(-[0-9]+)?(\+[0-9]+(-[0-9]+)?)*$ ]] || die "--drop must be K-M[+K-M...]"
        O_DROP=$2
        shift 2
        ;;
      --drop-flow)
        (($# >= 2)) || die "$opt needs a value"
        [[ $2 =~ ^(udp|tcp|any)(:[0-9]+)?$ ]] || die "--drop-flow must be udp|tcp|any[:PORT]"
        O_DROPFLOW=$2
        shift 2
        ;;
      --c2s | --s2c | --event-log)
        (($# >= 2)) || die "$opt needs a value"
        case $opt in
          --c2s) O_C2S=$2 ;;
          --s2c) O_S2C=$2 ;;
          --event-log) O_EVLOG=$2 ;;
        esac
        shift 2
        ;;
      --draws)
        (($# >= 2)) || die "$opt needs a value"
        [[ $2 == flow || $2 == arrival ]] || die "--draws must be flow or arrival"
        O_DRAWS=$2
        shift 2
        ;;
      --reorder)
        O_REORDER=1
        shift
        ;;
      -h | --help)
        usage
        exit 0
        ;;
      *)
        ARGS_REST+=("$1")
        shift
        ;;
    esac
  done
  if [[ $O_MODEL == bernoulli && -n $O_GE_P$O_GE_R$O_GE_BAD$O_GE_GOOD ]]; then
    O_MODEL=gilbert
  fi
  (($(calc 'l <= 100' -v l="$O_LOSS"))) || die "--loss-pct must be at most 100"
  return 0
}

needs_userspace() { [[ -n $O_OUTAGE$O_DROP$O_C2S$O_S2C$O_EVLOG || $O_REORDER == 1 || $O_QBYTES != 0 || $O_DRAWS == flow ]]; }

one_way_ms() { calc 'r/2' -v r="$O_RTT"; }

# Gilbert-Elliott parameters in percent: explicit ones win; otherwise derived
# from --loss-pct and --burst-pkts (r = 1/B, p = L r / (1 - L), 1-h = 100 %, 1-k = 0).
ge_params() {
  local r p bad good
  r=${O_GE_R:-$(calc '100/b' -v b="$O_BURST")}
  p=${O_GE_P:-$(calc 'l >= 100 ? 100 : (l/100)*(r/100)/(1-l/100)*100' -v l="$O_LOSS" -v r="$r")}
  bad=${O_GE_BAD:-100}
  good=${O_GE_GOOD:-0}
  echo "$p $r $bad $good"
}

# Long-run per-direction loss in percent of the configured model.
expected_loss_pct() {
  if [[ $O_MODEL == gilbert ]]; then
    local p r bad good
    read -r p r bad good < <(ge_params)
    calc '(p + r) > 0 ? (p/(p+r))*bad + (r/(p+r))*good : good' -v p="$p" -v r="$r" -v bad="$bad" -v good="$good"
  else
    echo "$O_LOSS"
  fi
}

# Lag-1 correlation of the loss process: 0 for Bernoulli; 1 - p - r for a
# Gilbert-Elliott chain (exact when the bad state always loses and the good
# state never does; an approximation otherwise).
loss_autocorr() {
  if [[ $O_MODEL == gilbert ]]; then
    local p r bad good
    read -r p r bad good < <(ge_params)
    calc 'x < 0 ? 0 : x' -v x="$(calc '1 - (p + r)/100' -v p="$p" -v r="$r")"
  else
    echo 0
  fi
}

# Queue bound in packets: explicit, else one bandwidth-delay product of
# 1500-byte packets (at least 16), else 1000 (netem's default) without a rate.
queue_pkts() {
  if [[ -n $O_QPKTS ]]; then
    echo "$O_QPKTS"
  elif [[ $O_RATE != 0 ]]; then
    calc 'q < 16 ? 16 : q' -v q="$(calc 'int(m*1e6*(r/1000)/(8*1500) + 0.999)' -v m="$O_RATE" -v r="$O_RTT")"
  else
    echo 1000
  fi
}

# netem arguments for one direction (both directions are alike). netem's
# `limit` covers every packet it holds, the delayed ones too, so it is the
# queue plus one bandwidth-delay product (at 1 Gbit/s when no rate is set).
netem_args() {
  local one_way q bw bdp limit args
  one_way=$(one_way_ms)
  q=$(queue_pkts)
  bw=$O_RATE
  [[ $bw == 0 ]] && bw=1000
  bdp=$(calc 'int(m*1e6*((d + j)/1000)/(8*1500) + 0.999)' -v m="$bw" -v d="$one_way" -v j="$O_JITTER")
  limit=$((q + bdp))
  args="limit $limit"
  if [[ $O_RTT != 0 || $O_JITTER != 0 ]]; then
    args+=" delay ${one_way}ms"
    [[ $O_JITTER != 0 ]] && args+=" ${O_JITTER}ms"
  fi
  if [[ $O_MODEL == gilbert ]]; then
    local p r bad good
    read -r p r bad good < <(ge_params)
    args+=" loss gemodel ${p}% ${r}% ${bad}% ${good}%"
  elif [[ $O_LOSS != 0 ]]; then
    args+=" loss random ${O_LOSS}%"
  fi
  [[ $O_RATE != 0 ]] && args+=" rate ${O_RATE}mbit"
  echo "$args"
}

# `quiclab link` spec for both directions.
link_spec() {
  local spec
  spec="delay=$(one_way_ms)ms jitter=${O_JITTER}ms reorder=$O_REORDER queue-pkts=$(queue_pkts) queue-bytes=$O_QBYTES"
  if [[ $O_MODEL == gilbert ]]; then
    local p r bad good
    read -r p r bad good < <(ge_params)
    spec+=" ge-p=${p}% ge-r=${r}% ge-bad=${bad}% ge-good=${good}%"
  elif [[ $O_LOSS != 0 ]]; then
    spec+=" loss=${O_LOSS}%"
  fi
  [[ $O_RATE != 0 ]] && spec+=" rate=${O_RATE}mbit"
  [[ $O_DRAWS == flow ]] && spec+=" draws=flow"
  if [[ -n $O_OUTAGE ]]; then
    local down up first
    down=${O_OUTAGE%%/*}
    up=${O_OUTAGE#*/}
    first=
    if [[ $up == *@* ]]; then
      first=${up#*@}
      up=${up%@*}
    fi
    spec+=" outage=${down}ms/${up}ms${first:+@${first}ms}"
  fi
  [[ -n $O_DROP ]] && spec+=" drop=$O_DROP drop-flow=${O_DROPFLOW:-any}"
  echo "$spec"
}

configured_json() {
  local loss_model=$O_MODEL
  [[ $O_MODEL == bernoulli && $O_LOSS == 0 ]] && loss_model=none
  printf '{"rtt_ms":%s,"expected_rtt_ms":%s,"jitter_ms":%s,"loss_pct":%s,"loss_model":"%s","expected_loss_pct":%s,"rate_mbit":%s,"queue_pkts":%s,"queue_bytes":%s,"seed":%s}' \
    "$O_RTT" "${EXPECT_RTT:-$O_RTT}" "$O_JITTER" "$O_LOSS" "$loss_model" "$(expected_loss_pct)" "$O_RATE" "$(queue_pkts)" "$O_QBYTES" "${O_SEED:-null}"
}

# ---- lab lifecycle -----------------------------------------------------------

check_name() {
  [[ $1 =~ ^[a-z][a-z0-9]{0,9}$ ]] || die "lab name '$1' must be 1-10 characters [a-z0-9], starting with a letter"
}

# Is sch_netem usable? Tries it on the router's veth and removes it again.
netem_available() {
  local ns=$1 dev=$2 err
  if err=$(ip netns exec "$ns" tc qdisc add dev "$dev" root netem delay 1ms 2>&1); then
    ip netns exec "$ns" tc qdisc del dev "$dev" root 2>/dev/null || true
    return 0
  fi
  NETEM_REASON=$err
  return 1
}

# Stops everything of lab $1 and removes it. Idempotent; never fails.
teardown() {
  local name=$1 dir=$STATE_ROOT/$1 role
  linkem_stop "$dir"
  for role in client router server; do
    ns_remove "$name-$role"
  done
  rm -rf "$dir"
}

lab_up() {
  local name=$1 owner=$2
  local dir=$STATE_ROOT/$name
  local c=$name-client r=$name-router s=$name-server
  ns_exists "$c" || ns_exists "$r" || ns_exists "$s" || [[ -d $dir ]] && die "lab '$name' exists (netlab.sh down $name)"
  if needs_userspace && [[ $O_EMU == netem ]]; then
    die "--outage, --drop, --reorder, --queue-bytes, --c2s/--s2c, --event-log and --draws flow need --emulator userspace"
  fi

  mkdir -p "$dir"
  echo "$owner" >"$dir/owner"
  # From here on, any failure, exit or interrupt removes what was built (on_exit).
  SETUP_NAME=$name

  local ns
  for ns in "$c" "$r" "$s"; do
    ip netns add "$ns"
    in_ns "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    # No TCP metrics cache (ssthresh, RTT from earlier connections to the same
    # address): every run of a cell starts from the same state, as QUIC does.
    in_ns "$ns" sysctl -qw net.ipv4.tcp_no_metrics_save=1
    ip -n "$ns" link set lo up
  done
  # Veth pairs are created directly inside the namespaces: nothing touches the host's.
  ip link add "$name-c" netns "$c" type veth peer name "$name-rc" netns "$r"
  ip link add "$name-s" netns "$s" type veth peer name "$name-rs" netns "$r"
  ip -n "$c" addr add "$CLIENT_ADDR/24" dev "$name-c"
  ip -n "$r" addr add "$ROUTER_CLIENT_ADDR/24" dev "$name-rc"
  ip -n "$r" addr add "$ROUTER_SERVER_ADDR/24" dev "$name-rs"
  ip -n "$s" addr add "$SERVER_ADDR/24" dev "$name-s"
  offloads_off "$c" "$name-c"
  offloads_off "$r" "$name-rc"
  offloads_off "$r" "$name-rs"
  offloads_off "$s" "$name-s"
  ip -n "$c" link set "$name-c" up
  ip -n "$r" link set "$name-rc" up
  ip -n "$r" link set "$name-rs" up
  ip -n "$s" link set "$name-s" up
  ip -n "$c" route add default via "$ROUTER_CLIENT_ADDR"
  ip -n "$s" route add default via "$ROUTER_SERVER_ADDR"
  in_ns "$r" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0

  local emu=$O_EMU
  NETEM_REASON=
  if [[ $emu == auto ]]; then
    if needs_userspace; then
      emu=userspace
      log "emulator: userspace (asked for a feature netem lacks)"
    elif netem_available "$r" "$name-rs"; then
      emu=netem
      log "emulator: netem (the kernel has sch_netem)"
    else
      emu=userspace
      log "emulator: userspace (no sch_netem here: ${NETEM_REASON//$'\n'/ })"
    fi
  elif [[ $emu == netem ]]; then
    netem_available "$r" "$name-rs" || die "--emulator netem, but the kernel refuses netem: $NETEM_REASON"
    log "emulator: netem (as asked)"
  else
    log "emulator: userspace (as asked)"
  fi
  echo "$emu" >"$dir/emulator"

  if [[ $emu == netem ]]; then
    local args
    args=$(netem_args)
    # Egress toward the server carries c2s, egress toward the client s2c.
    in_ns "$r" tc qdisc add dev "$name-rs" root netem $args
    in_ns "$r" tc qdisc add dev "$name-rc" root netem $args
    echo "$args" >"$dir/netem"
    log "netem on both directions: $args"
    [[ -n $O_SEED ]] && log "note: this tc has no netem seed option; --seed applies to the userspace emulator only"
  else
    local seed=${O_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
    # One TUN per direction. Policy routing sends what arrives from the
    # client into tc (c2s) and what arrives from the server into ts (s2c);
    # what the emulator writes back comes in on the TUN and is routed by the
    # main table, out of the other veth.
    linkem_tuns "$r" "$name-tc" "$name-ts" "$name-rs" "$name-rc"
    local spec extra=()
    spec=$(link_spec)
    [[ -n $O_C2S ]] && extra+=(--c2s "$O_C2S")
    [[ -n $O_S2C ]] && extra+=(--s2c "$O_S2C")
    [[ -n $O_EVLOG ]] && extra+=(--event-log "$O_EVLOG")
    linkem_start "$r" "$dir" "$name-tc" "$name-ts" "$spec" "$seed" "${extra[@]}"
    log "userspace emulator pid $(cat "$dir/link.pid"), seed $seed, both directions: $spec"
  fi
  SETUP_NAME=
  log "lab $name up: client $CLIENT_ADDR, router $ROUTER_CLIENT_ADDR/$ROUTER_SERVER_ADDR, server $SERVER_ADDR"
}

owner_alive() {
  local owner
  owner=$(cat "$1/owner" 2>/dev/null || echo none)
  [[ $owner == none ]] && return 0
  kill -0 "$owner" 2>/dev/null
}

# ---- verbs -------------------------------------------------------------------

cmd_up() {
  parse_opts "$@"
  ((${#ARGS_REST[@]} == 0)) || die "up: unexpected argument '${ARGS_REST[0]}'"
  need_root
  local name=${O_NAME:-nl$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')}
  check_name "$name"
  lab_up "$name" "${O_OWNER:-$PPID}"
  echo "$name"
}

cmd_exec() {
  (($# >= 2)) || die "usage: netlab.sh exec NAME client|server|router -- CMD"
  local name=$1 role=$2
  shift 2
  [[ ${1:-} == -- ]] && shift
  (($#)) || die "exec: no command"
  [[ $role == client || $role == server || $role == router ]] || die "role must be client, server or router"
  ns_exists "$name-$role" || die "no lab '$name'"
  exec ip netns exec "$name-$role" "$@"
}

cmd_addr() {
  (($# == 2)) || die "usage: netlab.sh addr NAME client|server|router"
  ns_exists "$1-client" || die "no lab '$1'"
  case $2 in
    client) echo "$CLIENT_ADDR" ;;
    server) echo "$SERVER_ADDR" ;;
    router) echo "$ROUTER_CLIENT_ADDR" ;;
    *) die "role must be client, server or router" ;;
  esac
}

cmd_down() {
  need_root
  (($#)) || die "usage: netlab.sh down NAME | --all [--force]"
  if [[ $1 == --all ]]; then
    local force=0 dir name n=0
    [[ ${2:-} == --force ]] && force=1
    [[ -d $STATE_ROOT ]] || return 0
    for dir in "$STATE_ROOT"/*/; do
      [[ -d $dir ]] || continue
      name=$(basename "$dir")
      if ((force)) || ! owner_alive "$dir"; then
        log "removing lab $name"
        teardown "$name"
        n=$((n + 1))
      fi
    done
    log "removed $n lab(s)"
    return 0
  fi
  check_name "$1"
  [[ -d $STATE_ROOT/$1 ]] || ns_exists "$1-router" || die "no lab '$1'"
  teardown "$1"
  log "lab $1 down"
}

# epoch NAME N: tells the lab's userspace emulator that run N starts (its
# flows from now on are numbered within epoch N) and waits, a bounded while,
# until it confirms.
cmd_epoch() {
  (($# == 2)) || die "usage: netlab.sh epoch NAME N"
  check_name "$1"
  [[ $2 =~ ^[0-9]+$ ]] || die "epoch: '$2' is not a non-negative integer"
  local dir=$STATE_ROOT/$1 pid before i
  [[ -s $dir/link.pid ]] || die "epoch: lab '$1' has no userspace emulator"
  pid=$(cat "$dir/link.pid")
  before=$(grep -c '"event":"epoch"' "$dir/link.out" 2>/dev/null || true)
  echo "$2" >"$dir/epoch"
  kill -HUP "$pid" 2>/dev/null || die "epoch: the emulator (pid $pid) is gone"
  for i in $(seq 200); do
    (($(grep -c '"event":"epoch"' "$dir/link.out" 2>/dev/null || true) > before)) && return 0
    sleep 0.01
  done
  die "epoch: the emulator did not confirm epoch $2 within 2 s"
}

cmd_list() {
  [[ -d $STATE_ROOT ]] || return 0
  local dir
  for dir in "$STATE_ROOT"/*/; do
    [[ -d $dir ]] || continue
    local state=live
    owner_alive "$dir" || state=stale
    echo "$(basename "$dir") $(cat "$dir/emulator" 2>/dev/null || echo starting) owner=$(cat "$dir/owner" 2>/dev/null) $state"
  done
}

cmd_plan() {
  parse_opts "$@"
  ((${#ARGS_REST[@]} == 0)) || die "plan: unexpected argument '${ARGS_REST[0]}'"
  echo "netem c2s $(netem_args)"
  echo "netem s2c $(netem_args)"
  echo "userspace $(link_spec)"
}

cmd_check() {
  parse_opts "$@"
  ((${#ARGS_REST[@]} == 0)) || die "check: unexpected argument '${ARGS_REST[0]}'"
  need_root
  local probe
  probe=$(linkprobe_bin)
  quiclab_bin >/dev/null
  local name=${O_NAME:-nk$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')}
  check_name "$name"
  [[ -z $O_SEED ]] && O_SEED=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')
  CHECK_NAME=$name
  lab_up "$name" $$

  local interval=${O_INTERVAL:-$(calc 'v < 1 ? 1 : v' -v v="$(calc '2*j + 0.5' -v j="$O_JITTER")")}
  # Probes are 92-byte IP packets: keep them under 10 % of a rate cap, and
  # expect their own serialization (both ways) on top of the propagation RTT.
  local expect_rtt=$O_RTT
  if [[ $O_RATE != 0 ]]; then
    [[ -z $O_INTERVAL ]] && interval=$(calc 'i < m ? m : i' -v i="$interval" -v m="$(calc '7.36/r' -v r="$O_RATE")")
    expect_rtt=$(calc 'rtt + 1.472/r' -v rtt="$O_RTT" -v r="$O_RATE")
  fi
  EXPECT_RTT=$expect_rtt
  # Bounded: the probe phase lasts at most ~20 s whatever the options say.
  local count
  count=$(calc 'c*i > 20000 ? int(20000/i) : c' -v c="$O_COUNT" -v i="$interval")
  in_ns "$name-server" "$probe" serve --port "$PROBE_PORT" --duration 120 --realtime 20 >/dev/null 2>&1 &
  sleep 0.2
  local measured
  measured=$(in_ns "$name-client" "$probe" measure --to "$SERVER_ADDR:$PROBE_PORT" --count "$count" \
    --interval-ms "$interval" --rate-mbit "$O_RATE" --seconds "$O_SECONDS" --realtime 20 \
    --expect-rtt-ms "$expect_rtt" --expect-loss-pct "$(expected_loss_pct)" --loss-model "$O_MODEL" \
    --loss-autocorr "$(loss_autocorr)")
  # The userspace emulator's own timer error over the probe phase (SIGUSR1
  # dumps its counters): how late it delivered packets on this machine, so a
  # reader (and the lab test) can tell the emulator's fidelity from the
  # machine's scheduling. netem reports nothing of the kind: null.
  local timer_error=null
  if [[ $(cat "$STATE_ROOT/$name/emulator") == userspace ]]; then
    timer_error=$(emulator_timer_error "$STATE_ROOT/$name")
  fi
  printf '{"emulator":"%s","name":"%s","configured":%s,"emulator_timer_error_us":%s,%s\n' \
    "$(cat "$STATE_ROOT/$name/emulator")" "$name" "$(configured_json)" "$timer_error" "${measured#\{}"
}

# emulator_timer_error STATE_DIR: {"c2s":{samples,median,p99,max},"s2c":{...}}
# in microseconds, from a fresh SIGUSR1 counter dump; null when none comes.
emulator_timer_error() {
  local dir=$1 pid before i
  pid=$(cat "$dir/link.pid" 2>/dev/null) || { echo null; return; }
  before=$(grep -c '"why":"SIGUSR1"' "$dir/link.out" 2>/dev/null || true)
  kill -USR1 "$pid" 2>/dev/null || { echo null; return; }
  for i in $(seq 40); do
    (($(grep -c '"why":"SIGUSR1"' "$dir/link.out" 2>/dev/null || true) > before)) && break
    sleep 0.05
  done
  python3 - "$dir/link.out" <<'PY' 2>/dev/null || echo null
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if '"why":"SIGUSR1"' in l]
last = lines[-1]
print(json.dumps({d: last[d]["timer_error_us"] for d in ("c2s", "s2c")}, separators=(",", ":")))
PY
}

# Teardown on exit, error (set -e) and Ctrl-C/SIGTERM: a lab half set up, or
# the lab of a check, never outlives this script.
SETUP_NAME=
CHECK_NAME=
on_exit() {
  local rc=$?
  if [[ -n $SETUP_NAME ]]; then
    log "setting up $SETUP_NAME failed (exit $rc); tearing it down"
    teardown "$SETUP_NAME"
  fi
  [[ -n $CHECK_NAME ]] && teardown "$CHECK_NAME"
  return $rc
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

main() {
  (($#)) || {
    usage
    exit 2
  }
  local verb=$1
  shift
  case $verb in
    up) cmd_up "$@" ;;
    exec) cmd_exec "$@" ;;
    addr) cmd_addr "$@" ;;
    down) cmd_down "$@" ;;
    epoch) cmd_epoch "$@" ;;
    list) cmd_list "$@" ;;
    plan) cmd_plan "$@" ;;
    check) cmd_check "$@" ;;
    -h | --help | help) usage ;;
    *)
      echo "netlab: unknown verb '$verb'" >&2
      usage >&2
      exit 2
      ;;
  esac
}

main "$@"
