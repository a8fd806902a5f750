#!/usr/bin/env bash
# natlab.sh: two peers (a, b) behind NATs built with nftables, an "internet"
# router and a rendezvous/STUN server with two addresses, in network
# namespaces; and a check that each NAT behaves as its RFC 4787 type says.
# See `natlab.sh --help` and docs/lab.md.
set -Eeuo pipefail
shopt -s inherit_errexit

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE_ROOT=${NATLAB_STATE:-/run/quiclab-natlab}
# shellcheck source=lablib.sh
source "$here/scripts/lablib.sh"

# Addresses (documentation ranges for the internet, 10.x inside NATs; DESIGN.md).
SERVER_ADDR=198.51.100.2     # rendezvous primary (IP1:3478)
SERVER_ALT_ADDR=198.51.100.3 # rendezvous alternate (IP2, RFC 5780 OTHER-ADDRESS)
INET_SERVER_ADDR=198.51.100.1
INET_WAN_A=192.0.2.1 NAT_A_WAN=192.0.2.2          # 192.0.2.0/25
INET_WAN_B=203.0.113.1 NAT_B_WAN=203.0.113.2      # 203.0.113.0/25
STUN_PORT=3478
# coturn (--turn): on IP1 too, but 3478 and 3479 are the rendezvous server's
# (RFC 5780: IP1 and IP2, each on both ports), so it takes the next port.
TURN_PORT=3480
TURN_REALM=quiclab.lab
TURN_RELAY_PORTS=49152-49999
# Peers a TURN allocation may reach: the lab's public peer side only (each
# /24 holds a NAT's WAN /25 and the public peer network /25 of type none);
# everything else, the server's own 198.51.100.0/24 included, is denied.
TURN_ALLOWED_PEERS="192.0.2.0-192.0.2.255 203.0.113.0-203.0.113.255"
TYPES="none full-cone address-restricted port-restricted symmetric"

usage() {
  cat <<'EOF'
Usage:
  natlab.sh up    --name NAME --nat-a TYPE --nat-b TYPE [--same-nat] [--rtt-ms R] [--loss-pct L]
                  [--udp-timeout-s T] [--seed N] [--turn]
  natlab.sh exec  NAME a|b|server|nat-a|nat-b|inet -- CMD [ARGS...]
  natlab.sh addr  NAME a|b|server|server-alt|nat-a|nat-b|turn
  natlab.sh turn-secret NAME           path of the lab's TURN secret file (labs up with --turn)
  natlab.sh check --name NAME          check the NATs of a running lab
  natlab.sh check [--types T1,T2...] [--rtt-ms R] [--loss-pct L]
                                       one lab per type (nat-a = nat-b = TYPE), checked, removed
  natlab.sh down  NAME | --all
  natlab.sh --help

TYPE (RFC 4787 mapping / filtering):
  none                no NAT: the peer has a public address, nothing is filtered
  full-cone           endpoint-independent mapping, endpoint-independent filtering
  address-restricted  endpoint-independent mapping, address-dependent filtering
  port-restricted     endpoint-independent mapping, address-and-port-dependent filtering
  symmetric           address-and-port-dependent mapping and filtering

Topology (namespaces NAME-a, NAME-b, NAME-nata, NAME-natb, NAME-inet, NAME-server):
  a 10.0.1.2 -- nat-a 192.0.2.2 ----+                 +---- server 198.51.100.2, 198.51.100.3
                                    inet (router) ----+     (quiclab rendezvous IP1:3478 --alt-address IP2)
  b 10.0.2.2 -- nat-b 203.0.113.2 --+
  With TYPE none the peer's network is public instead (a 192.0.2.130, b 203.0.113.130).
  --same-nat: b sits behind nat-a too (its own LAN link, 10.0.2.0/24, and its own public UDP
  port range: a 20000-29999, b 30000-39999); there is no nat-b.

Options:
  --rtt-ms R          round-trip delay across the internet (each crossing of the inet router
                      gets R/2: a<->server, b<->server and a<->b all see RTT R); default 0
  --loss-pct L        per-crossing loss in percent (default 0)
                      (either one puts the userspace link emulator, quiclab link, in inet)
  --udp-timeout-s T   conntrack UDP timeouts in the NAT namespaces (nf_conntrack_udp_timeout and
                      _stream; the NAT's mapping lifetime), default: the kernel's (30 s / 120 s)
  --seed N            the emulator's seed (default random, logged)
  --turn              also run coturn (turnserver) in the server namespace on UDP
                      198.51.100.2:3480 (`addr NAME turn`), TURN REST API credentials only
                      (use-auth-secret, realm quiclab.lab): username "EXPIRY:NAME",
                      password base64(HMAC-SHA1(secret, username)); the secret (hex) is in
                      the 0600 file `turn-secret NAME` prints. Relays only to the lab's peer
                      side (192.0.2.0/24, 203.0.113.0/24); UDP only, no TCP/TLS/DTLS, no CLI.
  --types LIST        check: comma-separated types (default: all five)

`up` starts the rendezvous server; `check` runs `quiclab stun --nat-behavior --json` from a and
from b against it, prints a table (expected vs measured mapping and filtering) and exits 1 on
any mismatch. Exit codes: 0 ok, 1 failure or mismatch, 2 usage error.
Binary: $QUICLAB_BIN (default build/app/quiclab). Needs root. State: $NATLAB_STATE
(default /run/quiclab-natlab)/NAME. A failed or interrupted `up` and a self-contained `check`
remove everything they built; `down --all` removes every natlab lab.
EOF
}

log() { echo "natlab: $*" >&2; }
die() {
  echo "natlab: error: $*" >&2
  exit 1
}
usage_error() {
  echo "natlab: usage error: $*" >&2
  echo "(natlab.sh --help for usage)" >&2
  exit 2
}
need_root() { [[ $(id -u) -eq 0 ]] || die "needs root (network namespaces)"; }

check_name() {
  [[ $1 =~ ^[a-z][a-z0-9]{0,9}$ ]] || usage_error "lab name '$1' must be 1-10 characters [a-z0-9], starting with a letter"
}
check_type() {
  local t
  for t in $TYPES; do [[ $1 == "$t" ]] && return 0; done
  usage_error "$2: unknown NAT type '$1' (one of: ${TYPES// /, })"
}

# ---- options -----------------------------------------------------------------

O_NAME= O_NAT_A= O_NAT_B= O_SAME=0 O_RTT=0 O_LOSS=0 O_TIMEOUT= O_SEED= O_TYPES= O_TURN=0
parse_opts() {
  while (($#)); do
    local opt=$1
    case $opt in
      --name | --nat-a | --nat-b | --rtt-ms | --loss-pct | --udp-timeout-s | --seed | --types)
        (($# >= 2)) || usage_error "$opt needs a value"
        case $opt in
          --name) check_name "$2"; O_NAME=$2 ;;
          --nat-a) check_type "$2" "$opt"; O_NAT_A=$2 ;;
          --nat-b) check_type "$2" "$opt"; O_NAT_B=$2 ;;
          --rtt-ms | --loss-pct)
            [[ $2 =~ ^[0-9]+(\.[0-9]+)?$ ]] || usage_error "$opt: '$2' is not a non-negative number"
            [[ $opt == --rtt-ms ]] && O_RTT=$2 || O_LOSS=$2
            ;;
          --udp-timeout-s)
            [[ $2 =~ ^[1-9][0-9]*$ ]] || usage_error "$opt: '$2' is not a positive integer"
            O_TIMEOUT=$2
            ;;
          --seed)
            [[ $2 =~ ^[0-9]+$ ]] || usage_error "$opt: '$2' is not a non-negative integer"
            O_SEED=$2
            ;;
          --types)
            local t
            for t in ${2//,/ }; do check_type "$t" "$opt"; done
            O_TYPES=${2//,/ }
            ;;
        esac
        shift 2
        ;;
      --same-nat)
        O_SAME=1
        shift
        ;;
      --turn)
        O_TURN=1
        shift
        ;;
      -h | --help)
        usage
        exit 0
        ;;
      *) usage_error "unexpected argument '$opt'" ;;
    esac
  done
  awk -v l="$O_LOSS" 'BEGIN { exit !(l <= 100) }' || usage_error "--loss-pct must be at most 100"
}

impaired() { [[ $O_RTT != 0 || $O_LOSS != 0 ]]; }

# ---- addresses ---------------------------------------------------------------

# lan_of PEER TYPE -> "ROUTER_ADDR PEER_ADDR PREFIX": 10.x behind a NAT, public without one.
lan_of() {
  case $1:$2 in
    a:none) echo "192.0.2.129 192.0.2.130 25" ;;
    b:none) echo "203.0.113.129 203.0.113.130 25" ;;
    a:*) echo "10.0.1.1 10.0.1.2 24" ;;
    b:*) echo "10.0.2.1 10.0.2.2 24" ;;
  esac
}
lan_net() {
  case $1:$2 in
    a:none) echo 192.0.2.128/25 ;;
    b:none) echo 203.0.113.128/25 ;;
    a:*) echo 10.0.1.0/24 ;;
    b:*) echo 10.0.2.0/24 ;;
  esac
}

# ---- the NAT recipes (docs/lab.md explains each) -------------------------------

# nat_ruleset TYPE WAN_IF TIMEOUT_S [LAN_CIDR:PORT_RANGE...]: the NAT namespace's
# whole nftables ruleset. With port ranges (--same-nat), UDP from each LAN gets
# public ports from its own range.
nat_ruleset() {
  local type=$1 wan=$2 timeout=$3
  shift 3
  cat <<EOF
table ip natlab {
  # full-cone, address-restricted: the NAT's mappings, public port -> inside address . port
  map mapping { type inet_service : ipv4_addr . inet_service; flags dynamic,timeout; timeout ${timeout}s; }
  # address-restricted: (remote address . public port) the inside host has sent to
  set contacted { type ipv4_addr . inet_service; flags dynamic,timeout; timeout ${timeout}s; }

  # Nothing is for the NAT itself. An accepting INPUT would let one unsolicited
  # packet to the public address create a conntrack entry that later takes an
  # inside host's port; dropped here, the entry is never confirmed.
  chain input { type filter hook input priority filter; policy drop; iif lo accept; }
EOF
  if [[ $type == none ]]; then
    cat <<EOF
  chain forward { type filter hook forward priority filter; policy accept; }
}
EOF
    return
  fi
  cat <<EOF
  chain forward {
    type filter hook forward priority filter; policy drop;
    iifname != "$wan" accept
    ct state established,related accept
    ct status dnat accept
  }
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
EOF
  case $type in
    full-cone)
      echo "    iifname \"$wan\" meta l4proto udp dnat ip to udp dport map @mapping" ;;
    address-restricted)
      echo "    iifname \"$wan\" meta l4proto udp ip saddr . udp dport @contacted dnat ip to udp dport map @mapping" ;;
  esac
  local random=
  [[ $type == symmetric ]] && random=" fully-random"
  cat <<EOF
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
EOF
  local lr
  for lr in "$@"; do
    echo "    oifname \"$wan\" ip saddr ${lr%%:*} meta l4proto udp masquerade to :${lr#*:}$random"
  done
  cat <<EOF
    oifname "$wan" masquerade$random
  }
EOF
  if [[ $type == full-cone || $type == address-restricted ]]; then
    cat <<EOF
  # After srcnat: the packet carries the public port. Remember the mapping
  # (refreshed by every outbound packet, RFC 4787 REQ-6), for flows the inside
  # host opened (snat) and for flows let in through the mapping (dnat).
  chain track {
    type filter hook postrouting priority srcnat + 10; policy accept;
    oifname "$wan" meta l4proto udp ct direction original ct status snat update @mapping { ct reply proto-dst : ct original ip saddr . ct original proto-src }
    oifname "$wan" meta l4proto udp ct direction reply ct status dnat update @mapping { ct original proto-dst : ct reply ip saddr . ct reply proto-src }
EOF
    [[ $type == address-restricted ]] &&
      echo "    oifname \"$wan\" meta l4proto udp update @contacted { ip daddr . udp sport }"
    echo "  }"
  fi
  echo "}"
}

# ---- coturn (--turn) ------------------------------------------------------------

# turn_config DIR: coturn's whole configuration (it reads no other: -c FILE).
# Not an open relay: REST API secret only, peers only in the lab's ranges.
turn_config() {
  local dir=$1 r
  cat <<EOF
# Generated by natlab.sh up --turn; docs/lab.md "coturn (--turn)".
listening-ip=$SERVER_ADDR
listening-port=$TURN_PORT
relay-ip=$SERVER_ADDR
min-port=${TURN_RELAY_PORTS%-*}
max-port=${TURN_RELAY_PORTS#*-}
realm=$TURN_REALM
use-auth-secret
static-auth-secret=$(cat "$dir/turn.secret")
fingerprint
no-tcp
no-tls
no-dtls
no-tcp-relay
no-cli
no-rfc5780
no-multicast-peers
no-software-attribute
user-quota=10
total-quota=100
max-allocate-lifetime=3600
denied-peer-ip=0.0.0.0-255.255.255.255
denied-peer-ip=::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff
EOF
  for r in $TURN_ALLOWED_PEERS; do echo "allowed-peer-ip=$r"; done
  cat <<EOF
userdb=$dir/turndb
pidfile=$dir/turnserver.pid
log-file=$dir/turnserver.log
simple-log
no-stdout-log
EOF
}

# turn_start NS DIR: a fresh secret, the config, coturn in the foreground
# (setsid, like the rendezvous server; its pid in DIR/turn.pid), and a wait
# until it listens.
turn_start() {
  local ns=$1 dir=$2 pid n
  command -v turnserver >/dev/null || die "--turn: turnserver (Debian package coturn) not found"
  (
    umask 077
    od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$dir/turn.secret"
    turn_config "$dir" >"$dir/turnserver.conf"
  )
  setsid ip netns exec "$ns" turnserver -c "$dir/turnserver.conf" \
    >"$dir/turnserver.out" 2>"$dir/turnserver.err" </dev/null &
  pid=$!
  echo "$pid" >"$dir/turn.pid"
  for n in $(seq 100); do
    [[ $(in_ns "$ns" ss -Hlun "sport = :$TURN_PORT") == *"$SERVER_ADDR:$TURN_PORT"* ]] && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  {
    cat "$dir/turnserver.err"
    tail -n 20 "$dir/turnserver.log"
  } >&2 2>/dev/null || true
  die "coturn (turnserver) did not start listening on $SERVER_ADDR:$TURN_PORT"
}

# turn_stop DIR: TERM, then KILL (down removes the namespace's processes anyway).
turn_stop() {
  local dir=$1 pid i
  [[ -f $dir/turn.pid ]] || return 0
  pid=$(cat "$dir/turn.pid" 2>/dev/null || true)
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 40); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.05
  done
  kill -KILL "$pid" 2>/dev/null || true
}

# ---- lifecycle -----------------------------------------------------------------

namespaces_of() {
  local n=$1
  echo "$n-a $n-b $n-nata $n-natb $n-inet $n-server"
}

teardown() {
  local name=$1 dir=$STATE_ROOT/$1 ns
  linkem_stop "$dir"
  turn_stop "$dir"
  for ns in $(namespaces_of "$name"); do
    ns_remove "$ns"
  done
  rm -rf "$dir"
}

new_ns() {
  ip netns add "$1"
  in_ns "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  ip -n "$1" link set lo up
}

# veth NS1 DEV1 ADDR1/PFX NS2 DEV2 ADDR2/PFX: a link between two namespaces, created in them.
veth() {
  ip link add "$2" netns "$1" type veth peer name "$5" netns "$4"
  ip -n "$1" addr add "$3" dev "$2"
  ip -n "$4" addr add "$6" dev "$5"
  offloads_off "$1" "$2"
  offloads_off "$4" "$5"
  ip -n "$1" link set "$2" up
  ip -n "$4" link set "$5" up
}

router_ns() {
  in_ns "$1" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
}

# nat_up NS WAN_IF TYPE [LAN_CIDR:PORT_RANGE...]: the NAT's ruleset and its conntrack timeouts.
nat_up() {
  local ns=$1 wan=$2 type=$3 timeout
  shift 3
  # Load the ruleset first: it pulls in nf_conntrack, whose sysctls are per namespace.
  nat_ruleset "$type" "$wan" 120 "$@" | in_ns "$ns" nft -f -
  if [[ -n $O_TIMEOUT ]]; then
    in_ns "$ns" sysctl -qw "net.netfilter.nf_conntrack_udp_timeout=$O_TIMEOUT" \
      "net.netfilter.nf_conntrack_udp_timeout_stream=$O_TIMEOUT"
  fi
  # The explicit mappings live as long as an established conntrack entry.
  timeout=$(in_ns "$ns" sysctl -n net.netfilter.nf_conntrack_udp_timeout_stream)
  if [[ $timeout != 120 ]]; then
    in_ns "$ns" nft flush ruleset
    nat_ruleset "$type" "$wan" "$timeout" "$@" | in_ns "$ns" nft -f -
  fi
  echo "$timeout"
}

lab_up() {
  local name=$1 dir=$STATE_ROOT/$1
  local ta=$O_NAT_A tb=$O_NAT_B ns
  for ns in $(namespaces_of "$name"); do
    ns_exists "$ns" && die "lab '$name' exists (natlab.sh down $name)"
  done
  [[ -d $dir ]] && die "lab '$name' exists (natlab.sh down $name)"
  local q
  q=$(quiclab_bin)
  command -v nft >/dev/null || die "nft (nftables) not found"

  mkdir -p "$dir"
  # From here on, any failure, exit or interrupt removes what was built (on_exit).
  SETUP_NAME=$name
  local a=$name-a b=$name-b na=$name-nata nb=$name-natb i=$name-inet s=$name-server
  ((O_SAME)) && nb=$na
  for ns in "$a" "$b" "$na" "$i" "$s"; do new_ns "$ns"; done
  ((O_SAME)) || new_ns "$nb"

  # The internet: the inet router, the server with two addresses, the NATs' WAN links.
  veth "$s" "$name-s" "$SERVER_ADDR/24" "$i" "$name-is" "$INET_SERVER_ADDR/24"
  ip -n "$s" addr add "$SERVER_ALT_ADDR/24" dev "$name-s"
  ip -n "$s" route add default via "$INET_SERVER_ADDR"
  veth "$na" "$name-wa" "$NAT_A_WAN/25" "$i" "$name-ia" "$INET_WAN_A/25"
  ip -n "$na" route add default via "$INET_WAN_A"
  if ((!O_SAME)); then
    veth "$nb" "$name-wb" "$NAT_B_WAN/25" "$i" "$name-ib" "$INET_WAN_B/25"
    ip -n "$nb" route add default via "$INET_WAN_B"
  fi
  router_ns "$i"
  # Public peer networks (type none) are routed to their router's WAN address;
  # private ones are not routed at all (a NAT that leaks 10.x is caught).
  [[ $ta == none ]] && ip -n "$i" route add "$(lan_net a "$ta")" via "$NAT_A_WAN"
  if [[ $tb == none ]]; then
    if ((O_SAME)); then
      ip -n "$i" route add "$(lan_net b "$tb")" via "$NAT_A_WAN"
    else
      ip -n "$i" route add "$(lan_net b "$tb")" via "$NAT_B_WAN"
    fi
  fi

  # The private networks.
  local ra pa pfx rb pb
  read -r ra pa pfx < <(lan_of a "$ta")
  veth "$a" "$name-a" "$pa/$pfx" "$na" "$name-la" "$ra/$pfx"
  ip -n "$a" route add default via "$ra"
  read -r rb pb pfx < <(lan_of b "$tb")
  veth "$b" "$name-b" "$pb/$pfx" "$nb" "$name-lb" "$rb/$pfx"
  ip -n "$b" route add default via "$rb"

  # The NATs.
  local timeout_a timeout_b
  router_ns "$na"
  if ((O_SAME)); then
    # One NAT, two inside hosts: each LAN gets its own public UDP port range.
    # Then the kernel keeps one mapping per inside endpoint (a new flow reuses
    # the source's existing mapping), even when a and b use the same port;
    # sharing one range, the second host's port would depend on the destination.
    local ranges=()
    [[ $ta != none ]] && ranges=("$(lan_net a "$ta"):20000-29999" "$(lan_net b "$tb"):30000-39999")
    timeout_a=$(nat_up "$na" "$name-wa" "$ta" "${ranges[@]}")
  else
    timeout_a=$(nat_up "$na" "$name-wa" "$ta")
  fi
  if ((!O_SAME)); then
    router_ns "$nb"
    timeout_b=$(nat_up "$nb" "$name-wb" "$tb")
  else
    timeout_b=$timeout_a
  fi

  # Impairment: every crossing of the inet router goes through the emulator,
  # from the NATs' side through c2s, from the server's side through s2c.
  local emu=none
  if impaired; then
    local seed=${O_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
    local spec iifs=("$name-ia")
    ((O_SAME)) || iifs+=("$name-ib")
    spec="delay=$(awk -v r="$O_RTT" 'BEGIN { printf "%.10g", r / 2 }')ms"
    [[ $O_LOSS != 0 ]] && spec+=" loss=${O_LOSS}%"
    linkem_tuns "$i" "$name-tc" "$name-ts" "$name-is" "${iifs[@]}"
    linkem_start "$i" "$dir" "$name-tc" "$name-ts" "$spec" "$seed"
    emu="userspace ($spec, seed $seed, pid $(cat "$dir/link.pid"))"
    log "impairment: userspace emulator (no sch_netem here), each crossing of inet: $spec, seed $seed"
  fi

  # The rendezvous/STUN server, RFC 5780 with its alternate address.
  setsid ip netns exec "$s" "$q" rendezvous --listen "$SERVER_ADDR:$STUN_PORT" --alt-address "$SERVER_ALT_ADDR" \
    >"$dir/rendezvous.out" 2>"$dir/rendezvous.err" </dev/null &
  echo $! >"$dir/rendezvous.pid"
  local n
  for n in $(seq 100); do
    grep -q '^listening' "$dir/rendezvous.out" 2>/dev/null && break
    kill -0 "$(cat "$dir/rendezvous.pid")" 2>/dev/null || break
    sleep 0.05
  done
  grep -q '^listening' "$dir/rendezvous.out" 2>/dev/null || {
    cat "$dir/rendezvous.err" >&2 || true
    die "quiclab rendezvous did not start"
  }
  local turn=none
  if ((O_TURN)); then
    turn_start "$s" "$dir"
    turn="coturn $SERVER_ADDR:$TURN_PORT (pid $(cat "$dir/turn.pid"), secret in $dir/turn.secret)"
  fi

  {
    echo "nat_a=$ta"
    echo "nat_b=$tb"
    echo "same_nat=$O_SAME"
    echo "addr_a=$pa"
    echo "addr_b=$pb"
    echo "rtt_ms=$O_RTT"
    echo "loss_pct=$O_LOSS"
    echo "udp_timeout_a=$timeout_a"
    echo "udp_timeout_b=$timeout_b"
    echo "turn=$O_TURN"
  } >"$dir/config"
  SETUP_NAME=
  log "lab $name up: a $pa behind $ta ($NAT_A_WAN), b $pb behind $tb ($( ((O_SAME)) && echo "the same NAT" || echo "$NAT_B_WAN")), server $SERVER_ADDR + $SERVER_ALT_ADDR, rendezvous :$STUN_PORT, UDP timeout ${timeout_a}s/${timeout_b}s, impairment: $emu, TURN: $turn"
}

config_get() { sed -n "s/^$2=//p" "$STATE_ROOT/$1/config"; }

# ---- check ---------------------------------------------------------------------

# expected TYPE -> "BEHIND_NAT MAPPING FILTERING"
expected() {
  case $1 in
    none) echo "false endpoint-independent endpoint-independent" ;;
    full-cone) echo "true endpoint-independent endpoint-independent" ;;
    address-restricted) echo "true endpoint-independent address-dependent" ;;
    port-restricted) echo "true endpoint-independent address-and-port-dependent" ;;
    symmetric) echo "true address-and-port-dependent address-and-port-dependent" ;;
  esac
}

# check_lab NAME: prints one table row per peer; returns 1 on any mismatch.
CHECK_HEADER_DONE=0
check_lab() {
  local name=$1 dir=$STATE_ROOT/$1 q
  q=$(quiclab_bin)
  [[ -f $dir/config ]] || die "no lab '$name'"
  local rtt rto
  rtt=$(config_get "$name" rtt_ms)
  # Retransmit well above the RTT; a filtered answer costs rc+rm RTOs.
  rto=$(awk -v r="$rtt" 'BEGIN { v = 2 * r + 50; if (v < 100) v = 100; printf "%d", v }')
  local peer pids=()
  for peer in a b; do
    in_ns "$name-$peer" "$q" stun --nat-behavior --json --rto-ms "$rto" --rc 3 --rm 4 "$SERVER_ADDR:$STUN_PORT" \
      >"$dir/stun-$peer.json" 2>"$dir/stun-$peer.err" &
    pids+=($!)
  done
  local p
  for p in "${pids[@]}"; do wait "$p" || true; done
  if ((!CHECK_HEADER_DONE)); then
    printf '%-10s %-4s %-19s %-21s %-21s %-5s %-28s %-28s %s\n' lab peer type local mapped nat mapping filtering result
    CHECK_HEADER_DONE=1
  fi
  local bad=0
  for peer in a b; do
    local type got want
    type=$(config_get "$name" "nat_$peer")
    want=$(expected "$type")
    got=$(python3 - "$dir/stun-$peer.json" <<'PY'
import json, sys
try:
    j = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
except Exception:
    print("? ? ? ? ? no-json")
    sys.exit(0)
print(j.get("local", "?"), j.get("mapped", "?"), str(j.get("behind_nat", "?")).lower(),
      j.get("mapping", "?"), j.get("filtering", "?"), "ok" if j.get("ok") else "error:" + j.get("error", "?").replace(" ", "_"))
PY
)
    local local_ mapped nat mapping filtering status wnat wmap wfilt result
    read -r local_ mapped nat mapping filtering status <<<"$got"
    read -r wnat wmap wfilt <<<"$want"
    result=PASS
    if [[ $status != ok || $nat != "$wnat" || $mapping != "$wmap" || $filtering != "$wfilt" ]]; then
      result="FAIL (want nat=$wnat mapping=$wmap filtering=$wfilt${status:+; stun: $status})"
      bad=1
    fi
    printf '%-10s %-4s %-19s %-21s %-21s %-5s %-28s %-28s %s\n' "$name" "$peer" "$type" "$local_" "$mapped" "$nat" "$mapping" "$filtering" "$result"
  done
  return $bad
}

# ---- verbs ---------------------------------------------------------------------

cmd_up() {
  parse_opts "$@"
  [[ -n $O_NAME ]] || usage_error "up: --name NAME is required"
  [[ -n $O_NAT_A ]] || usage_error "up: --nat-a TYPE is required"
  if ((O_SAME)); then
    [[ -z $O_NAT_B || $O_NAT_B == "$O_NAT_A" ]] || usage_error "--same-nat: --nat-b must be the same type as --nat-a"
    O_NAT_B=$O_NAT_A
  fi
  [[ -n $O_NAT_B ]] || usage_error "up: --nat-b TYPE is required"
  need_root
  lab_up "$O_NAME"
  echo "$O_NAME"
}

role_ns() {
  local name=$1 role=$2
  case $role in
    a | b | server | inet) echo "$name-$role" ;;
    nat-a) echo "$name-nata" ;;
    nat-b)
      if [[ $(config_get "$name" same_nat 2>/dev/null) == 1 ]]; then echo "$name-nata"; else echo "$name-natb"; fi
      ;;
    *) usage_error "role must be a, b, server, nat-a, nat-b or inet" ;;
  esac
}

cmd_exec() {
  (($# >= 2)) || usage_error "exec NAME a|b|server -- CMD"
  local name=$1 role=$2 ns
  shift 2
  [[ ${1:-} == -- ]] && shift
  (($#)) || usage_error "exec: no command"
  check_name "$name"
  ns=$(role_ns "$name" "$role")
  ns_exists "$ns" || die "no lab '$name'"
  exec ip netns exec "$ns" "$@"
}

cmd_addr() {
  (($# == 2)) || usage_error "addr NAME a|b|server"
  check_name "$1"
  [[ -f $STATE_ROOT/$1/config ]] || die "no lab '$1'"
  case $2 in
    a | b) config_get "$1" "addr_$2" ;;
    server) echo "$SERVER_ADDR" ;;
    server-alt) echo "$SERVER_ALT_ADDR" ;;
    nat-a) echo "$NAT_A_WAN" ;;
    nat-b) if [[ $(config_get "$1" same_nat) == 1 ]]; then echo "$NAT_A_WAN"; else echo "$NAT_B_WAN"; fi ;;
    turn)
      has_turn "$1"
      echo "$SERVER_ADDR:$TURN_PORT"
      ;;
    *) usage_error "role must be a, b, server, server-alt, nat-a, nat-b or turn" ;;
  esac
}

has_turn() {
  [[ $(config_get "$1" turn) == 1 ]] || die "lab '$1' runs no TURN server (natlab.sh up ... --turn)"
}

cmd_turn_secret() {
  (($# == 1)) || usage_error "turn-secret NAME"
  check_name "$1"
  [[ -f $STATE_ROOT/$1/config ]] || die "no lab '$1'"
  has_turn "$1"
  echo "$STATE_ROOT/$1/turn.secret"
}

cmd_down() {
  (($#)) || usage_error "down NAME | --all"
  need_root
  if [[ $1 == --all ]]; then
    local dir n=0 ns
    if [[ -d $STATE_ROOT ]]; then
      for dir in "$STATE_ROOT"/*/; do
        [[ -d $dir ]] || continue
        log "removing lab $(basename "$dir")"
        teardown "$(basename "$dir")"
        n=$((n + 1))
      done
    fi
    log "removed $n lab(s)"
    return 0
  fi
  check_name "$1"
  local found=0 ns
  [[ -d $STATE_ROOT/$1 ]] && found=1
  for ns in $(namespaces_of "$1"); do ns_exists "$ns" && found=1; done
  ((found)) || die "no lab '$1'"
  teardown "$1"
  log "lab $1 down"
}

cmd_check() {
  parse_opts "$@"
  [[ -z $O_NAME || -z $O_TYPES ]] || usage_error "check: --name checks a running lab, --types builds its own; not both"
  need_root
  if [[ -n $O_NAME ]]; then
    [[ -d $STATE_ROOT/$O_NAME ]] || die "no lab '$O_NAME' (natlab.sh up --name $O_NAME ..., or check without --name)"
    check_lab "$O_NAME"
    return
  fi
  quiclab_bin >/dev/null
  local t bad=0 name
  for t in ${O_TYPES:-$TYPES}; do
    name=nc$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
    CHECK_NAME=$name
    O_NAT_A=$t O_NAT_B=$t
    lab_up "$name"
    check_lab "$name" || bad=1
    teardown "$name"
    CHECK_NAME=
  done
  return $bad
}

# Teardown on exit, error (set -e) and Ctrl-C/SIGTERM: a lab half set up, or
# the lab of a self-contained check, never outlives this script.
SETUP_NAME=
CHECK_NAME=
on_exit() {
  local rc=$?
  if [[ -n $SETUP_NAME ]]; then
    log "setting up $SETUP_NAME failed (exit $rc); tearing it down"
    teardown "$SETUP_NAME"
  fi
  [[ -n $CHECK_NAME && $CHECK_NAME != "$SETUP_NAME" ]] && teardown "$CHECK_NAME"
  return $rc
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

main() {
  (($#)) || {
    usage >&2
    exit 2
  }
  local verb=$1
  shift
  case $verb in
    up) cmd_up "$@" ;;
    exec) cmd_exec "$@" ;;
    addr) cmd_addr "$@" ;;
    turn-secret) cmd_turn_secret "$@" ;;
    down) cmd_down "$@" ;;
    check) cmd_check "$@" ;;
    -h | --help | help) usage ;;
    *) usage_error "unknown verb '$verb'" ;;
  esac
}

main "$@"
