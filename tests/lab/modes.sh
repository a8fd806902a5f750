#!/usr/bin/env bash
# The userspace emulator's drop-list and outage modes and its event log, end
# to end through `quiclab link` (netlab.sh --drop/--outage/--event-log).
source "$(dirname "$0")/lib.sh"
probe=${QUICLAB_LINKPROBE:?set by CTest}

# Bad link specs are usage errors (exit 2) that name the item, before any TUN is touched.
rc=0
"$QUICLAB_BIN" link --tun-c2s qltnone0 --tun-s2c qltnone1 --link 'delay=5' 2>"$TEST_TMP/bad.err" || rc=$?
((rc == 2)) || fail "quiclab link with a bad spec exited $rc, want 2"
grep -q "delay=5" "$TEST_TMP/bad.err" || fail "error does not name the bad item: $(cat "$TEST_TMP/bad.err")"

# Drop list: packets 3..5 of every UDP flow on port 9000. The probes are one
# flow (client -> server:9000), the echoes another (server:9000 -> client):
# probes 3, 4, 5 never arrive, and of the 17 echoes sent the 3rd..5th (those
# of probes 6, 7, 8) are dropped too. Deterministic: no randomness, no timing.
a=$(new_name)
lab_up "$a" --rtt-ms 2 --drop 3-5 --drop-flow udp:9000 --event-log "$TEST_TMP/events.tsv"
# TCP keeps no metrics between connections in the lab (each run of a cell starts cold, as QUIC's do).
for ns in client server; do
  v=$("$NETLAB" exec "$a" "$ns" -- sysctl -n net.ipv4.tcp_no_metrics_save)
  [[ $v == 1 ]] || fail "tcp_no_metrics_save in $ns is '$v', want 1"
done
"$NETLAB" exec "$a" server -- "$probe" serve --duration 60 >/dev/null 2>&1 &
sleep 0.2
"$NETLAB" exec "$a" client -- "$probe" measure --to 198.51.100.2:9000 --count 20 --interval-ms 5 >"$TEST_TMP/m.json"
at_server=$(json_get "$TEST_TMP/m.json" 'j["measured"]["probes"]["at_server"]')
echoed=$(json_get "$TEST_TMP/m.json" 'j["measured"]["probes"]["echoed"]')
[[ $at_server == 17 && $echoed == 14 ]] || fail "drop list: at_server=$at_server echoed=$echoed, want 17 and 14"
# SIGUSR1 dumps the counters without stopping the emulator.
pid=$(cat "/run/quiclab-netlab/$a/link.pid")
kill -USR1 "$pid"
for _ in $(seq 50); do grep -q '"why":"SIGUSR1"' "/run/quiclab-netlab/$a/link.out" && break; sleep 0.1; done
grep -q '"why":"SIGUSR1"' "/run/quiclab-netlab/$a/link.out" || fail "no counters after SIGUSR1"
kill -0 "$pid" || fail "the emulator exited on SIGUSR1"
"$NETLAB" down "$a" 2>"$TEST_TMP/down.log"
assert_gone "$a"
# The event log has every arrival with its fate; six were drop-list drops.
drops=$(awk -F'\t' '$3 == "arrive" && $6 == "droplist"' "$TEST_TMP/events.tsv" | wc -l)
[[ $drops == 6 ]] || fail "event log shows $drops drop-list drops, want 6"
arrivals=$(awk -F'\t' '$3 == "arrive"' "$TEST_TMP/events.tsv" | wc -l)
deliveries=$(awk -F'\t' '$3 == "deliver"' "$TEST_TMP/events.tsv" | wc -l)
((arrivals == deliveries + drops)) || fail "event log: $arrivals arrivals != $deliveries deliveries + $drops drops"
grep -q '"dropped_droplist":3' "$TEST_TMP/down.log" || fail "counters do not show 3 drop-list drops per direction"
echo "ok: drop list drops packets 3..5 of each flow; event log and counters agree"

# Outage: down 100 ms out of every 200 ms. Every probe lost on the way out was
# an outage drop (there is no other impairment), and there were some.
b=$(new_name)
lab_up "$b" --rtt-ms 2 --outage 100/100
"$NETLAB" exec "$b" server -- "$probe" serve --duration 60 >/dev/null 2>&1 &
sleep 0.2
"$NETLAB" exec "$b" client -- "$probe" measure --to 198.51.100.2:9000 --count 200 --interval-ms 2 >"$TEST_TMP/o.json"
lost=$(json_get "$TEST_TMP/o.json" 'j["measured"]["loss_c2s"]["lost"]')
"$NETLAB" down "$b" 2>"$TEST_TMP/down2.log"
assert_gone "$b"
outage=$(grep -o '"c2s":{[^}]*' "$TEST_TMP/down2.log" | grep -o '"dropped_outage":[0-9]*' | cut -d: -f2)
((lost > 0)) || fail "outage: no probe was lost"
((lost <= outage)) || fail "outage: $lost probes lost but only $outage outage drops counted"
echo "ok: outage drops $lost of 200 probes ($outage outage drops c2s)"
