#!/usr/bin/env bash
# Interop with a real ICE agent: libnice (tests/p2p/nice_peer.cpp) against
# `quiclab peer --signal stdio --checks-only`, offers exchanged over pipes,
# quiclab controlling and controlled, on loopback and (as root) in the NAT
# lab: quiclab on a public address (NAT type none), libnice behind a
# port-restricted NAT with the lab's rendezvous server as its STUN server, so
# the pair is found through a server-reflexive and a peer-reflexive candidate.
# Both sides must report the same nominated pair, quiclab must have answered
# and sent authenticated checks (no credential failures), libnice must reach
# READY.
# Usage: nice_interop.sh QUICLAB_BINARY NICE_PEER_BINARY
set -euo pipefail
quiclab=$1
nice=$2
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d /tmp/quiclab-nice-XXXXXX)
pids=()
lab=
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  [[ -n $lab ]] && "$here/../../scripts/natlab.sh" down "$lab" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  for f in "$tmp"/*.out "$tmp"/*.err; do [[ -s $f ]] && { echo "--- $f"; tail -n 30 "$f"; }; done
  exit 1
}
wait_for() {  # FILE PATTERN
  for _ in $(seq 1 150); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  fail "$1: no '$2'"
}
wait_pid() {  # PID: sets rc to its exit code (bounded wait; not in a $(...): it must be our child)
  rc=0
  for _ in $(seq 1 300); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  wait "$1" 2>/dev/null || rc=$?
}

# run_pair TAG ROLE QUICLAB_PREFIX QUICLAB_HOST NICE_PREFIX NICE_ARGS...
# ROLE: quiclab's (controlling|controlled). *_PREFIX: how to start each side
# (empty, or `natlab.sh exec LAB a --`).
run_pair() {
  local tag=$1 role=$2 qprefix=$3 qhost=$4 nprefix=$5
  shift 5
  local qflags=() nflags=()
  if [[ $role == controlling ]]; then qflags=(--connect libnice); else nflags=(--controlling); fi
  rm -f "$tmp/q.in" "$tmp/n.in"
  mkfifo "$tmp/q.in" "$tmp/n.in"
  # shellcheck disable=SC2086
  $qprefix "$quiclab" peer --signal stdio --name quiclab --host-candidates "$qhost" --checks-only --json \
    "${qflags[@]}" 0<>"$tmp/q.in" >"$tmp/$tag.q.out" 2>"$tmp/$tag.q.err" &
  local q=$!
  pids+=("$q")
  # shellcheck disable=SC2086
  $nprefix "$nice" "${nflags[@]}" "$@" 0<>"$tmp/n.in" >"$tmp/$tag.n.out" 2>"$tmp/$tag.n.err" &
  local n=$!
  pids+=("$n")
  wait_for "$tmp/$tag.q.out" '"fingerprint"'
  wait_for "$tmp/$tag.n.out" '"ufrag"'
  grep -m 1 '"ufrag"' "$tmp/$tag.q.out" 1<>"$tmp/n.in"
  grep -m 1 '"ufrag"' "$tmp/$tag.n.out" 1<>"$tmp/q.in"
  local qrc nrc
  wait_pid "$q"
  qrc=$rc
  wait_pid "$n"
  nrc=$rc
  [[ $qrc == 0 ]] || fail "$tag: quiclab exited $qrc"
  [[ $nrc == 0 ]] || fail "$tag: libnice exited $nrc"
  local qc nsel qr
  qc=$(grep '"event":"connected"' "$tmp/$tag.q.out" | tail -1)
  nsel=$(grep '"event":"selected"' "$tmp/$tag.n.out" | tail -1)
  qr=$(grep '"event":"result"' "$tmp/$tag.q.out" | tail -1)
  [[ -n $qc ]] || fail "$tag: quiclab never connected"
  [[ -n $nsel ]] || fail "$tag: libnice selected no pair"
  grep -q '"state":"ready"' "$tmp/$tag.n.out" || fail "$tag: libnice never reached READY"
  # The same pair, seen from both ends.
  local q_local q_remote n_local n_remote
  q_local=$(jq -r .local.address <<<"$qc")
  q_remote=$(jq -r .remote.address <<<"$qc")
  n_local=$(jq -r .local.address <<<"$nsel")
  n_remote=$(jq -r .remote.address <<<"$nsel")
  [[ $q_remote == "$n_local" || $(jq -r .remote.type <<<"$qc") == prflx ]] ||
    fail "$tag: quiclab's remote $q_remote is not libnice's local $n_local"
  [[ $n_remote == "$q_local" || $(jq -r .remote.type <<<"$nsel") == prflx ]] ||
    fail "$tag: libnice's remote $n_remote is not quiclab's local $q_local"
  [[ $(jq .checks_received <<<"$qr") -ge 1 && $(jq .checks_sent <<<"$qr") -ge 1 ]] || fail "$tag: check counters: $qr"
  [[ $(jq .bad_credentials <<<"$qr") == 0 ]] || fail "$tag: quiclab refused libnice's credentials: $qr"
  echo "ok $tag: quiclab $role, pair quiclab $(jq -r '.local.type + " " + .local.address' <<<"$qc") <->" \
    "libnice $(jq -r '.local.type + " " + .local.address' <<<"$nsel") (libnice sees quiclab as" \
    "$(jq -r '.remote.type + " " + .remote.address' <<<"$nsel"))"
}

echo "== loopback"
run_pair loop-controlling controlling "" 127.0.0.1 "" --host 127.0.0.1
run_pair loop-controlled controlled "" 127.0.0.1 "" --host 127.0.0.1

if [[ $(id -u) != 0 ]]; then
  if [[ ${CI:-} == true ]]; then
    fail "the NAT-lab half needs root, and CI must run it"
  fi
  echo "SKIP: the NAT-lab half needs root (a developer's non-root run)"
  exit 77
fi
echo "== NAT lab: quiclab public (no NAT), libnice behind a port-restricted NAT with STUN"
natlab=$here/../../scripts/natlab.sh
lab=nice$$
lab=${lab:0:9}
QUICLAB_BIN=$quiclab "$natlab" up --name "$lab" --nat-a none --nat-b port-restricted >"$tmp/lab.log" 2>&1 ||
  fail "cannot build the NAT lab: $(cat "$tmp/lab.log")"
server=$("$natlab" addr "$lab" server)
a_ip=$("$natlab" addr "$lab" a)
run_pair lab-controlling controlling "$natlab exec $lab a --" "$a_ip" "$natlab exec $lab b --" \
  --host 10.0.2.2 --stun "$server:3478"
run_pair lab-controlled controlled "$natlab exec $lab a --" "$a_ip" "$natlab exec $lab b --" \
  --host 10.0.2.2 --stun "$server:3478"
echo "PASS"
