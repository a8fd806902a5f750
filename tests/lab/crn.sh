#!/usr/bin/env bash
# Common random numbers through the real emulator (netlab.sh --draws flow and
# netlab.sh epoch): two probe flows from different source ports in the same
# epoch lose exactly the same probes, in both directions; the next epoch draws
# anew; without --draws flow two flows in a row meet different losses.
source "$(dirname "$0")/lib.sh"
probe=${QUICLAB_LINKPROBE:?set by CTest}

# measure LAB: 300 probes, 2 ms apart; prints "lost at the server, echoes lost".
measure() {
  "$NETLAB" exec "$1" client -- "$probe" measure --to 198.51.100.2:9000 --count 300 --interval-ms 2 >"$TEST_TMP/m.json"
  python3 -c 'import json,sys; m=json.load(open(sys.argv[1]))["measured"]["probes"]; print(m["sent"]-m["at_server"], m["at_server"]-m["echoed"])' "$TEST_TMP/m.json"
}

a=$(new_name)
lab_up "$a" --rtt-ms 2 --loss-pct 20 --draws flow --seed 5
grep -q "draws=flow" <<<"$(cat /run/quiclab-netlab/"$a"/link.err)" || fail "the emulator does not draw per flow"
"$NETLAB" exec "$a" server -- "$probe" serve --duration 120 >/dev/null 2>&1 &
CLEANUP_CMDS+=("kill $!")
sleep 0.2
"$NETLAB" epoch "$a" 1
first=$(measure "$a")
"$NETLAB" epoch "$a" 1
second=$(measure "$a")
"$NETLAB" epoch "$a" 2
third=$(measure "$a")
echo "epoch 1: $first; epoch 1 again (another source port): $second; epoch 2: $third (lost c2s, lost s2c)"
[[ $first == "$second" ]] || fail "two flows of epoch 1 met different losses: $first vs $second"
[[ $first != "$third" ]] || fail "epoch 2 drew the same losses as epoch 1: $first"
read -r c2s s2c <<<"$first"
((c2s >= 30 && c2s <= 90 && s2c >= 20 && s2c <= 80)) || fail "20 % loss gave $c2s and $s2c of 300"
rc=0
"$NETLAB" epoch "$a" x 2>"$TEST_TMP/bad.err" || rc=$?
((rc != 0)) && grep -q "not a non-negative integer" "$TEST_TMP/bad.err" || fail "epoch x accepted: $(cat "$TEST_TMP/bad.err")"
"$NETLAB" down "$a" >/dev/null 2>&1

b=$(new_name)
lab_up "$b" --rtt-ms 2 --loss-pct 20 --emulator userspace --seed 5
"$NETLAB" exec "$b" server -- "$probe" serve --duration 120 >/dev/null 2>&1 &
CLEANUP_CMDS+=("kill $!")
sleep 0.2
x=$(measure "$b")
y=$(measure "$b")
echo "draws in arrival order: $x, then $y"
[[ $x != "$y" ]] || fail "without --draws flow two flows in a row met the same losses: $x"
echo "ok: one draw per (epoch, flow, packet) with --draws flow"
