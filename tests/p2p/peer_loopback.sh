#!/usr/bin/env bash
# `quiclab peer` end to end on loopback, against the real `quiclab rendezvous`
# (no NAT here: the NAT matrix is scripts/p2p-matrix.sh in the lab). Host
# candidates are loopback only: nothing goes to this machine's own interfaces.
#
# Covers: JSON events and exit codes; HTTP/3 byte-exact over the punched path
# (1 MB, and 50 concurrent streams); a third party's QUIC refused by the
# controlled peer; an unknown peer (exit 4 with a reason); --wait-s before the
# target registers; a peer killed and restarted is introduced again; the
# rendezvous server restarted: peers re-register by themselves; manual
# signalling over pipes; --birthday against a server without an alternate
# address (punching off, the session goes on); bad flags and key files (exit 2).
# Usage: peer_loopback.sh QUICLAB_BINARY
set -euo pipefail
quiclab=$1
source "$(dirname "$0")/peer_lib.sh"
peer_lib_init peer-e2e

# NAME [flags...]: becomes quiclab peer with the common flags, JSON out. Run it
# in the background (`peer ... &`: $! is quiclab's pid) or in a subshell.
# Every run is bounded by the peer's own timeouts and ctest's.
peer() {
  local name=$1
  shift
  exec "$quiclab" peer --rendezvous "127.0.0.1:$rv_port" --name "$name" --key-file "$tmp/$name.key" \
    --host-candidates 127.0.0.1 --json "$@"
}

start_rendezvous --max-lifetime 4

echo "== two peers, 1 MB and a 404 over the punched path"
peer bob >"$tmp/bob.out" 2>"$tmp/bob.err" &
bob=$!
pids+=("$bob")
wait_for "$tmp/bob.out" '"event":"registered"'
set +e
(peer alice --connect bob --get /bytes/1000000 --get /nope)>"$tmp/alice.out" 2>"$tmp/alice.err"
rc=$?
set -e
[[ $rc == 1 ]] || fail "alice exited $rc, want 1 (a 404 among the fetches)"
wait "$bob" || fail "bob exited $?, want 0 once the session was over"
for e in registered introduced check connected quic fetch result; do
  [[ -n $(event "$tmp/alice.out" $e) ]] || fail "alice printed no '$e' event"
done
c=$(event "$tmp/alice.out" connected)
[[ $(field "$c" .path) == direct ]] || fail "path: $c"
[[ $(field "$c" .local.type) == host && $(field "$c" .remote.type) == host ]] || fail "pair types: $c"
[[ $(field "$c" .remote.address) == "127.0.0.1:"* ]] || fail "remote: $c"
[[ $(field "$c" '.ms_since_introduction >= 0') == true ]] || fail "ms_since_introduction: $c"
f=$(grep '"event":"fetch"' "$tmp/alice.out" | grep bytes/1000000)
[[ $(field "$f" .status) == 200 && $(field "$f" .bytes) == 1000000 && $(field "$f" .verified) == true ]] || fail "1 MB: $f"
for k in url protocol status bytes connect handshake sent ttfb total; do
  [[ $(field "$f" "has(\"$k\")") == true ]] || fail "fetch line lacks $k: $f"
done
[[ $(field "$(grep '"event":"fetch"' "$tmp/alice.out" | grep nope)" .status) == 404 ]] || fail "404 expected"
r=$(event "$tmp/alice.out" result)
[[ $(field "$r" .outcome) == direct && $(field "$r" .exit_code) == 1 ]] || fail "alice result: $r"
[[ $(field "$(event "$tmp/bob.out" introduced)" .role) == controlled ]] || fail "bob's role"
[[ $(field "$(event "$tmp/bob.out" quic)" .role) == server ]] || fail "bob: no QUIC server event"
[[ $(field "$(event "$tmp/bob.out" result)" .outcome) == direct ]] || fail "bob's result"
# Each pinned the other's certificate: the fingerprints the introduction carried.
[[ $(field "$(event "$tmp/alice.out" quic)" .peer_fingerprint) == $(field "$(event "$tmp/alice.out" introduced)" .fingerprint) ]] ||
  fail "alice pinned another fingerprint"

echo "== 50 concurrent streams, byte-exact; a third party's QUIC is refused"
peer bob --stay >"$tmp/bob2.out" 2>"$tmp/bob2.err" &
bob=$!
pids+=("$bob")
wait_for "$tmp/bob2.out" '"event":"registered"'
gets=()
for i in $(seq 1 50); do gets+=(--get "/bytes/$((20000 + i))"); done
(peer alice --connect bob "${gets[@]}")>"$tmp/alice2.out" 2>"$tmp/alice2.err" || fail "50 streams: alice exited $?"
n=$(grep '"event":"fetch"' "$tmp/alice2.out" | jq -s '[.[] | select(.status == 200 and .verified == true)] | length')
[[ $n == 50 ]] || fail "$n of 50 fetches verified"
bob_port=$(field "$(event "$tmp/bob2.out" registered)" .mapped | sed 's/.*://')
# bob stays for the next introduction; a QUIC client that was never introduced
# gets nothing (accept_initial: only validated candidates), and fails by timeout.
set +e
timeout 20 "$quiclab" get --h3 -k --timeout 1500 "https://127.0.0.1:$bob_port/health" >"$tmp/third.out" 2>&1
rc=$?
set -e
[[ $rc == 3 ]] || fail "a third party got an answer from bob (rc $rc): $(cat "$tmp/third.out")"
grep -q "QUIC from 127.0.0.1:.* refused" "$tmp/bob2.err" || fail "bob did not log the refused connection"

echo "== a peer killed and restarted is introduced again"
kill -9 "$bob"
wait "$bob" 2>/dev/null || true
peer bob >"$tmp/bob3.out" 2>"$tmp/bob3.err" &
bob=$!
pids+=("$bob")
wait_for "$tmp/bob3.out" '"event":"registered"'
(peer alice --connect bob --get /health)>"$tmp/alice3.out" 2>"$tmp/alice3.err" || fail "after restart: alice exited $?"
wait "$bob" || fail "restarted bob exited $?"

echo "== an unknown peer: exit 4 with the reason"
set +e
(peer alice --connect nobody)>"$tmp/alice4.out" 2>"$tmp/alice4.err"
rc=$?
set -e
[[ $rc == 4 ]] || fail "unknown peer: exit $rc, want 4"
r=$(event "$tmp/alice4.out" result)
[[ $(field "$r" .outcome) == failed && $(field "$r" .reason) == *"not registered"* ]] || fail "unknown peer: $r"

echo "== --wait-s: the introduction waits for a peer that registers later"
(peer alice --connect carol --wait-s 20 --get /health)>"$tmp/alice5.out" 2>"$tmp/alice5.err" &
alice=$!
pids+=("$alice")
wait_for "$tmp/alice5.out" '"event":"introduction_pending"'
sleep 1
peer carol >"$tmp/carol.out" 2>"$tmp/carol.err" &
carol=$!
pids+=("$carol")
wait "$alice" || fail "--wait-s: alice exited $?"
wait "$carol" || fail "--wait-s: carol exited $?"

echo "== the rendezvous server restarted: peers re-register by themselves"
peer dave --stay >"$tmp/dave.out" 2>"$tmp/dave.err" &
dave=$!
pids+=("$dave")
wait_for "$tmp/dave.out" '"event":"registered"'
kill "$rv_pid"
wait "$rv_pid" 2>/dev/null || true
start_rendezvous --max-lifetime 4  # same port, empty table
# dave refreshes every 2 s (half of the 4 s lifetime), gets 404 and registers again.
sleep 5
(peer alice --connect dave --get /health)>"$tmp/alice6.out" 2>"$tmp/alice6.err" || fail "after the server restart: alice exited $?"
kill "$dave"
wait "$dave" 2>/dev/null || true

echo "== manual signalling (--signal stdio) over pipes"
mkfifo "$tmp/to_a" "$tmp/to_b"
# Each side's first stdout line is its offer; a copier hands it to the other
# side's stdin. The fifos are opened read-write so that neither open blocks.
"$quiclab" peer --signal stdio --name ma --host-candidates 127.0.0.1 --connect mb --get /bytes/1000 --json \
  0<>"$tmp/to_a" >"$tmp/ma.out" 2>"$tmp/ma.err" &
ma=$!
pids+=("$ma")
"$quiclab" peer --signal stdio --name mb --host-candidates 127.0.0.1 --json \
  0<>"$tmp/to_b" >"$tmp/mb.out" 2>"$tmp/mb.err" &
mb=$!
pids+=("$mb")
wait_for "$tmp/ma.out" '"fingerprint"'
wait_for "$tmp/mb.out" '"fingerprint"'
head -n 1 "$tmp/ma.out" 1<>"$tmp/to_b"
head -n 1 "$tmp/mb.out" 1<>"$tmp/to_a"
for _ in $(seq 1 300); do kill -0 "$ma" 2>/dev/null || break; sleep 0.1; done
wait "$ma" || fail "manual signalling: ma exited $?"
for _ in $(seq 1 100); do kill -0 "$mb" 2>/dev/null || break; sleep 0.1; done
wait "$mb" || fail "manual signalling: mb exited $?"
f=$(event "$tmp/ma.out" fetch)
[[ $(field "$f" .status) == 200 && $(field "$f" .verified) == true ]] || fail "manual signalling fetch: $f"
[[ $(field "$(event "$tmp/ma.out" result)" .outcome) == direct ]] || fail "ma: no direct result"

echo "== --birthday against a server without an alternate address: the mapping is unknown, punching is off, the session goes on"
peer bob --birthday >"$tmp/bbob.out" 2>"$tmp/bbob.err" &
bob=$!
pids+=("$bob")
wait_for "$tmp/bbob.out" '"event":"registered"'
(peer alice --birthday --connect bob --get /bytes/1000) >"$tmp/balice.out" 2>"$tmp/balice.err" ||
  fail "--birthday without alternate: alice exited $?"
wait "$bob" || fail "--birthday without alternate: bob exited $?"
m=$(event "$tmp/balice.out" nat_mapping)
[[ $(field "$m" .birthday) == false && $(field "$m" .error) == *OTHER-ADDRESS* ]] || fail "nat_mapping: $m"
[[ $(field "$(event "$tmp/balice.out" introduced)" .birthday) == none ]] || fail "role: $(event "$tmp/balice.out" introduced)"
[[ $(field "$(event "$tmp/balice.out" result)" .birthday.mapping) == unknown ]] || fail "result: $(event "$tmp/balice.out" result)"
[[ $(field "$(event "$tmp/balice.out" fetch)" .verified) == true ]] || fail "fetch: $(event "$tmp/balice.out" fetch)"

echo "== usage errors: exit 2 with a message"
expect_usage --name x --key-file "$tmp/x.key"
expect_usage --rendezvous 127.0.0.1:1 --name x
expect_usage --rendezvous 127.0.0.1:1 --name x --key-file "$tmp/x.key" --wait-s 5
expect_usage --rendezvous 127.0.0.1:1 --name x --key-file "$tmp/x.key" --host-candidates 1.2.3
expect_usage --rendezvous nowhere:99999 --name x --key-file "$tmp/x.key"
printf 'short' >"$tmp/bad.key"
expect_usage --rendezvous 127.0.0.1:1 --name x --key-file "$tmp/bad.key"
grep -q "bad.key" "$tmp/usage.out" || fail "the bad key file is not named"
base=(--rendezvous 127.0.0.1:1 --name x --key-file "$tmp/x.key")
expect_usage --signal stdio --name x --birthday
grep -q -- "--birthday needs --rendezvous" "$tmp/usage.out" || fail "--birthday with stdio: $(cat "$tmp/usage.out")"
expect_usage "${base[@]}" --birthday-probes 10
grep -q -- "need --birthday" "$tmp/usage.out" || fail "--birthday-probes alone: $(cat "$tmp/usage.out")"
expect_usage "${base[@]}" --birthday --birthday-probes 5000
expect_usage "${base[@]}" --birthday --birthday-rate 0
expect_usage "${base[@]}" --birthday --birthday-sockets 0
expect_usage "${base[@]}" --wait-direct-ms 100
grep -q -- "--wait-direct-ms needs --connect" "$tmp/usage.out" || fail "--wait-direct-ms alone: $(cat "$tmp/usage.out")"
# The key file is created with mode 0600.
[[ $(stat -c %a "$tmp/alice.key") == 600 ]] || fail "key file mode $(stat -c %a "$tmp/alice.key")"
kill -0 "$rv_pid" || fail "the rendezvous server died"
echo "PASS"
