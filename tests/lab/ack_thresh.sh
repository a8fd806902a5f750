#!/usr/bin/env bash
# `quiclab get --h3 --ack-thresh N` reaches ngtcp2: through the lab (RTT 20 ms,
# a 20 Mbit/s bottleneck, so packets arrive one by one, not in GRO batches that
# would be acknowledged together), a 2 MB download sends about four times as
# many ACK-carrying packets with --ack-thresh 2 (every second packet, as Linux
# TCP's delayed ACK) as with 8 (quiclab get's default), counted in the
# client's qlog. (On loopback the receive batches decide, not the threshold.)
source "$(dirname "$0")/lib.sh"
name=$(new_name)
lab_up "$name" --rtt-ms 20 --rate-mbit 20
server=$("$NETLAB" addr "$name" server)
"$NETLAB" exec "$name" server -- "$QUICLAB_BIN" serve --listen "$server:8443" >"$TEST_TMP/serve.log" 2>&1 &
CLEANUP_CMDS+=("kill $!")
sleep 0.5
declare -A acks
for t in 2 8; do
  mkdir -p "$TEST_TMP/q$t"
  "$NETLAB" exec "$name" client -- timeout 60 "$QUICLAB_BIN" get --h3 -k --verify-bytes --json --ack-thresh "$t" \
    --qlog-dir "$TEST_TMP/q$t" "https://$server:8443/bytes/2m" >"$TEST_TMP/get$t.json" 2>"$TEST_TMP/get$t.log" ||
    fail "--ack-thresh $t: quiclab get failed: $(tail -3 "$TEST_TMP/get$t.log")"
  grep -q '"verified":true' "$TEST_TMP/get$t.json" || fail "--ack-thresh $t: $(cat "$TEST_TMP/get$t.json")"
  acks[$t]=$(cat "$TEST_TMP/q$t"/*.sqlog | grep '"transport:packet_sent"' | grep -c '"frame_type":"ack"' || true)
done
echo "ACK-carrying packets for 2 MB: --ack-thresh 2: ${acks[2]}, --ack-thresh 8: ${acks[8]}"
((acks[2] >= 2 * acks[8])) || fail "--ack-thresh 2 sent ${acks[2]} ACK packets, 8 sent ${acks[8]}: want twice or more"
((acks[2] >= 500)) || fail "--ack-thresh 2 sent only ${acks[2]} ACK packets for ~1450 data packets"
