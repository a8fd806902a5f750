#!/usr/bin/env bash
# The P2P part of the demo:
#   1. the STUN/rendezvous server with RFC 5780 behaviour discovery on
#      loopback (127.0.0.1 + 127.0.0.2), asked by our own STUN client and, for
#      comparison, by coturn's turnutils_stunclient;
#   2. as root: hole punching in the NAT lab (scripts/natlab.sh). Peer a behind
#      a port-restricted NAT meets peer b behind a full-cone NAT through the
#      lab's rendezvous server, they punch through with connectivity checks and
#      a fetches over HTTP/3 on the punched path; then a cell with no direct
#      path (symmetric <-> port-restricted) and the verdict's reason; last a
#      symmetric <-> symmetric pair that connects through the lab's coturn
#      (quiclab peer --turn) and fetches over the relay, and a port-restricted
#      <-> symmetric pair with coturn and birthday-paradox punching (--birthday)
#      that starts on the relay and moves to the direct path the probes find
#      (or says why it did not).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${QUICLAB_BIN:-$here/build/app/quiclab}
work=$(mktemp -d /tmp/quiclab-p2p-demo.XXXXXX)
pid=""
lab=""
cleanup() {
  [[ -n "$pid" ]] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  [[ -n "$lab" ]] && "$here/scripts/natlab.sh" down "$lab" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

"$bin" rendezvous --listen 127.0.0.1:0 --alt-address 127.0.0.2 >"$work/out" 2>"$work/log" &
pid=$!
addr=""
for _ in $(seq 1 100); do
  addr=$(sed -n 's/^listening primary=\([^ ]*\).*/\1/p' "$work/out" | head -1)
  [[ -n "$addr" ]] && break
  sleep 0.1
done
[[ -n "$addr" ]] || { echo "p2p-demo: rendezvous server did not start" >&2; cat "$work/log" >&2; exit 1; }
echo "rendezvous/STUN server on $addr (alternate address 127.0.0.2)"
echo
echo "-- quiclab stun --nat-behavior $addr"
"$bin" --log-level warn stun --nat-behavior "$addr"
if command -v turnutils_stunclient >/dev/null; then
  echo
  echo "-- coturn's turnutils_stunclient against the same server"
  turnutils_stunclient -p "${addr##*:}" "${addr%:*}" 2>&1 | grep -iE "mapped|addr" | head -4 || true
fi

# ---- 2. hole punching through the NAT lab (root: network namespaces) ----
if [[ $(id -u) != 0 ]]; then
  echo
  echo "p2p-demo: hole punching through the NAT lab needs root (network namespaces); run: sudo $0"
  exit 0
fi
natlab=$here/scripts/natlab.sh
export QUICLAB_BIN=$bin
punch() {  # NAT_A NAT_B [turn [birthday]]: one pair of peers, both logs; "turn": coturn in the lab, both peers
  # use it; "birthday": both punch birthday-style, starting once QUIC runs on the relay, and a waits for the move
  local nat_a=$1 nat_b=$2 with_turn=${3:-} with_birthday=${4:-} server b relay=() lab_turn=() shown="" a_extra=()
  lab=p2pdemo$$
  lab=${lab:0:9}
  [[ -n $with_turn ]] && lab_turn=(--turn)
  "$natlab" up --name "$lab" --nat-a "$nat_a" --nat-b "$nat_b" --rtt-ms 20 "${lab_turn[@]}" >"$work/lab.log" 2>&1 || {
    cat "$work/lab.log" >&2
    return 1
  }
  server=$("$natlab" addr "$lab" server)
  if [[ -n $with_turn ]]; then
    relay=(--turn "$("$natlab" addr "$lab" turn)" --turn-secret-file "$("$natlab" turn-secret "$lab")")
    shown=" --turn $("$natlab" addr "$lab" turn) --turn-secret-file SECRET"
    echo
    echo "-- with coturn in the lab (natlab.sh --turn, time-limited credentials from the lab's secret):"
  fi
  if [[ -n $with_birthday ]]; then
    relay+=(--birthday --birthday-wait-ms 2000)
    a_extra=(--wait-direct-ms 15000)
    shown+=" --birthday --birthday-wait-ms 2000"
    echo "   and birthday-paradox punching: the symmetric side opens 256 sockets, the port-restricted side"
    echo "   probes random ports of its public IP (at most 1024, 100/s); QUIC runs on the relay meanwhile"
    echo "   and moves to the pair a probe finds (a waits up to 15 s for it: --wait-direct-ms 15000)."
  fi
  echo
  echo "-- peer a (10.0.1.2) behind a $nat_a NAT, peer b (10.0.2.2) behind a $nat_b NAT, rendezvous server"
  echo "   $server:3478, 20 ms internet RTT. b waits to be introduced; a asks for b and fetches over HTTP/3:"
  echo "   quiclab peer --rendezvous $server:3478 --name b --key-file b.key$shown"
  echo "   quiclab peer --rendezvous $server:3478 --name a --key-file a.key$shown${a_extra[*]:+ ${a_extra[*]}} --connect b --get /bytes/1m --get /health"
  "$natlab" exec "$lab" b -- "$bin" --log-level warn peer --rendezvous "$server:3478" --name b \
    --key-file "$work/b.key" "${relay[@]}" >"$work/b.out" 2>&1 &
  b=$!
  for _ in $(seq 1 100); do grep -q registered "$work/b.out" && break; sleep 0.05; done
  local rc=0
  "$natlab" exec "$lab" a -- "$bin" --log-level warn peer --rendezvous "$server:3478" --name a \
    --key-file "$work/a.key" "${relay[@]}" "${a_extra[@]}" --connect b --get /bytes/1m --get /health >"$work/a.out" 2>&1 || rc=$?
  for _ in $(seq 1 150); do kill -0 "$b" 2>/dev/null || break; sleep 0.1; done
  kill "$b" 2>/dev/null || true
  wait "$b" 2>/dev/null || true
  echo
  echo "   peer a (exit $rc):"
  sed 's/^/     /' "$work/a.out"
  echo "   peer b:"
  sed 's/^/     /' "$work/b.out"
  "$natlab" down "$lab" >/dev/null 2>&1 || true
  lab=""
  rm -f "$work/a.key" "$work/b.key"
}
echo
echo "-- hole punching in the NAT lab (scripts/natlab.sh; the whole matrix: scripts/p2p-matrix.sh)"
punch port-restricted full-cone
punch symmetric port-restricted
punch symmetric symmetric turn
punch port-restricted symmetric turn birthday
