#!/usr/bin/env bash
# No namespace, veth, state or process outlives a lab: after `down`, after a
# failed `up`, after a check is interrupted, after a test fails half-way, and
# (via `down --all`) after the run that owned a lab was killed with SIGKILL.
source "$(dirname "$0")/lib.sh"

# 1. up, a server process inside, down: everything goes.
a=$(new_name)
lab_up "$a" --rtt-ms 10
"$NETLAB" exec "$a" server -- sleep 300 &
sleeper=$!
sleep 0.2
[[ $("$NETLAB" addr "$a" server) == 198.51.100.2 ]] || fail "addr server"
grep -q 192.0.2.2 <<<"$("$NETLAB" exec "$a" client -- ip -4 addr show)" || fail "client address missing"
"$NETLAB" down "$a" 2>/dev/null
assert_gone "$a"
wait "$sleeper" 2>/dev/null || true
kill -0 "$sleeper" 2>/dev/null && fail "process started in the lab survived down"
echo "ok: down removes namespaces, state and processes"

# 2. A failing up (the emulator cannot start) removes what it had built.
b=$(new_name)
if QUICLAB_BIN=/bin/false "$NETLAB" up --name "$b" --emulator userspace 2>/dev/null; then
  fail "up with a broken emulator succeeded"
fi
assert_gone "$b"
echo "ok: a failed up cleans up after itself"

# 3. SIGTERM and SIGINT during a check: the check's lab goes with it.
for sig in TERM INT; do
  c=$(new_name)
  TEST_LABS+=("$c")
  # Job control on, so the background check does not start with SIGINT ignored.
  set -m
  "$NETLAB" check --name "$c" --rtt-ms 10 --count 5000 >/dev/null 2>&1 &
  pid=$!
  set +m
  for _ in $(seq 600); do
    [[ -s /run/quiclab-netlab/$c/link.pid || -s /run/quiclab-netlab/$c/netem ]] && break
    sleep 0.1
  done
  sleep 0.5
  kill -s "$sig" "$pid"
  wait "$pid" 2>/dev/null || true
  assert_gone "$c"
  echo "ok: SIG$sig during check leaves nothing"
done

# 4. A test that fails half-way (set -e) still cleans its lab and processes.
d=$(new_name)
cat >"$TEST_TMP/failing_test.sh" <<EOS
source "$HERE/lib.sh"
lab_up $d --rtt-ms 4
"\$NETLAB" exec $d server -- sleep 300 &
false  # the forced failure
echo "not reached"
EOS
if bash "$TEST_TMP/failing_test.sh" >/dev/null 2>&1; then fail "the forced failure did not fail"; fi
assert_gone "$d"
echo "ok: a failing test leaves nothing"

# 5. The owner of a lab is SIGKILLed: `down --all` removes that lab and
#    leaves the lab of a live owner alone.
e=$(new_name)
f=$(new_name)
TEST_LABS+=("$e" "$f")
bash -c "\"$NETLAB\" up --name $e --rtt-ms 2 >/dev/null 2>&1; sleep 300" &
owner=$!
# Wait until the lab is fully up (its emulator is known), generously: a busy
# machine makes `up` slow, and killing the owner mid-setup is another test.
for _ in $(seq 600); do
  [[ -s /run/quiclab-netlab/$e/emulator && ( -s /run/quiclab-netlab/$e/link.pid || -s /run/quiclab-netlab/$e/netem ) ]] && break
  sleep 0.1
done
lab_up "$f" --rtt-ms 2
kill -KILL "$owner"
wait "$owner" 2>/dev/null || true
listing=$("$NETLAB" list)
grep -q "^$e .* stale" <<<"$listing" || fail "lab of a killed owner (pid $owner) not listed as stale: $listing"
"$NETLAB" down --all 2>/dev/null
assert_gone "$e"
[[ -e /run/netns/$f-router ]] || fail "down --all removed a lab whose owner is alive"
"$NETLAB" down "$f" 2>/dev/null
assert_gone "$f"
echo "ok: down --all removes leftovers of killed runs only"
