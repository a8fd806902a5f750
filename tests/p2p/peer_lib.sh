# shellcheck shell=bash
# Shared by the `quiclab peer` end-to-end scripts (tests/p2p/peer_*.sh and
# tests/lab/p2p_relay_move.sh): a temp dir, processes killed at exit by pid,
# failure output, JSON event helpers, and coturn on 127.0.0.1.
#   source tests/p2p/peer_lib.sh; peer_lib_init NAME
pids=()
peer_lib_init() {  # NAME: $tmp=/tmp/quiclab-NAME-XXXXXX, removed at exit with every pid in $pids
  tmp=$(mktemp -d "/tmp/quiclab-$1-XXXXXX")
  trap peer_lib_cleanup EXIT
}
peer_lib_cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
fail() {
  echo "FAIL: $*"
  for f in "$tmp"/*.out "$tmp"/*.err "$tmp"/*.log; do [[ -s $f ]] && { echo "--- $f"; tail -n 40 "$f" | cut -c1-800; }; done
  exit 1
}
wait_for() {  # FILE PATTERN [tenths]
  for _ in $(seq 1 "${3:-100}"); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  fail "$1: no '$2'"
}
event() { grep "\"event\":\"$2\"" "$1" | tail -1; }  # FILE EVENT: its last line
field() { jq -r "$2" <<<"$1"; }

# start_coturn QUICLAB PORT SECRET: coturn (Debian's turnserver) on 127.0.0.1:PORT,
# use-auth-secret with SECRET, loopback peers allowed (coturn refuses them by
# default), UDP only, no CLI, logs in $tmp/turn.log; its pid in $turn_pid and
# $pids. Returns 1 when it does not answer a Binding request within 3 s (a
# taken port).
start_coturn() {
  local quiclab=$1 port=$2 secret=$3
  /usr/bin/turnserver -n --listening-ip 127.0.0.1 --relay-ip 127.0.0.1 -p "$port" \
    --use-auth-secret --static-auth-secret "$secret" --realm quiclab.test \
    --allow-loopback-peers --no-tcp --no-tls --no-dtls --no-tcp-relay --no-cli --no-multicast-peers \
    --fingerprint --user-quota 10 --total-quota 100 --log-file "$tmp/turn.log" --simple-log \
    --pidfile "$tmp/turn.pid" --userdb "$tmp/turndb" --min-port 49152 --max-port 65535 \
    >"$tmp/turnserver.stdout" 2>&1 &
  turn_pid=$!
  pids+=("$turn_pid")
  for _ in $(seq 1 30); do
    kill -0 "$turn_pid" 2>/dev/null || return 1
    timeout 2 "$quiclab" stun "127.0.0.1:$port" --rto-ms 100 --rc 2 >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  kill "$turn_pid" 2>/dev/null || true
  return 1
}

# start_rendezvous [extra flags]: `$quiclab rendezvous` on 127.0.0.1:$rv_port
# (empty or 0: a free port, then set in $rv_port); its pid in $rv_pid and $pids.
rv_port=
start_rendezvous() {
  "$quiclab" rendezvous --listen "127.0.0.1:${rv_port:-0}" "$@" >"$tmp/rv.out" 2>"$tmp/rv.err" &
  rv_pid=$!
  pids+=("$rv_pid")
  for _ in $(seq 1 200); do grep -q '^listening' "$tmp/rv.out" 2>/dev/null && break; sleep 0.05; done
  rv_port=$(sed -n 's/.*primary=127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/rv.out" | head -1)
  [[ -n $rv_port ]] || fail "rendezvous server did not start"
}

# start_peer OUT_PREFIX PEER_ARGS...: `peer PEER_ARGS` (the script's own peer
# function) in the background, output in OUT_PREFIX.out/.err; returns once it
# registered. Its pid in $peer_pid and $pids.
start_peer() {
  local out=$1
  shift
  (peer "$@") >"$out.out" 2>"$out.err" &
  peer_pid=$!
  pids+=("$peer_pid")
  wait_for "$out.out" '"event":"registered"'
}

# expect_usage ARGS...: `$quiclab peer ARGS` exits 2 and says why (in $tmp/usage.out).
expect_usage() {
  set +e
  "$quiclab" peer "$@" >"$tmp/usage.out" 2>&1
  local rc=$?
  set -e
  [[ $rc == 2 ]] || fail "'peer $*' exited $rc, want 2: $(cat "$tmp/usage.out")"
  grep -q . "$tmp/usage.out" || fail "'peer $*' said nothing"
}
