#!/usr/bin/env bash
# h3_lost_first_flight.sh: the server's first datagram is lost (drop list,
# server -> client only). The handshake recovers after a PTO, but the 0.5-RTT
# packet that opened the server's control and QPACK streams is gone, so the
# response's header block can refer to QPACK encoder instructions the client
# has not seen yet. The transport may receive the whole response and close the
# stream before those instructions arrive; the client must wait for them and
# deliver the response, not report the stream as closed by the server (it did
# so until 2026-12-01: "stream 0 closed by the server (error 0x100)").
# Deterministic: no random loss, one dropped datagram per connection.
source "$(dirname "$0")/lib.sh"

cd "$TEST_TMP"
name=$(new_name)
lab_up "$name" --rtt-ms 20 --emulator userspace --seed 1 --s2c "drop=1 drop-flow=udp"
server=$("$NETLAB" addr "$name" server)
"$NETLAB" exec "$name" server -- "$QUICLAB_BIN" serve --listen "$server:4433" >server.log 2>&1 &
for _ in $(seq 1 100); do grep -q "^listening h3" server.log && break; sleep 0.1; done
grep -q "^listening h3" server.log || fail "quiclab serve did not start: $(tail -5 server.log)"

# Three connections, each with its own first datagram lost; the last one asks
# for several objects at once, so several header blocks wait on QPACK.
for url in "/bytes/1000" "/bytes/5000"; do
  "$NETLAB" exec "$name" client -- timeout 60 "$QUICLAB_BIN" get --h3 -k --json --verify-bytes \
    "https://$server:4433$url" >client.out 2>client.log ||
    fail "GET $url after a lost first server datagram failed: $(tail -3 client.log)"
  grep -q '"status":200' client.out || fail "GET $url: $(cat client.out)"
done
"$NETLAB" exec "$name" client -- timeout 60 "$QUICLAB_BIN" get --h3 -k --json --verify-bytes -m 8 \
  "https://$server:4433/bytes/1000" "https://$server:4433/bytes/2000" "https://$server:4433/bytes/3000" \
  "https://$server:4433/bytes/4000" >client.out 2>client.log ||
  fail "four concurrent GETs after a lost first server datagram failed: $(tail -3 client.log)"
[[ $(grep -c '"status":200' client.out) == 4 ]] || fail "not four 200s: $(cat client.out)"

"$NETLAB" down "$name" 2>down.log
assert_gone "$name"
grep -q '"dropped_droplist":[1-9]' down.log || fail "the emulator dropped nothing from its drop list: $(cat down.log)"
echo "h3: responses complete after the server's first datagram was lost (3 connections)"
