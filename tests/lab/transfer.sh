#!/usr/bin/env bash
# transfer.sh h2|h3|quiclab-h2|quiclab-h3: a 2 MB file crosses an impaired
# lab path (40 ms RTT, 1 % loss each way) byte-exact.
#   h2: nghttpd (server) and nghttp (client), HTTP/2 over TCP+TLS
#   h3: gtlsserver and gtlsclient (ngtcp2's examples), HTTP/3 over QUIC
#   quiclab-h2, quiclab-h3: `quiclab serve` and `quiclab get --h2/--h3`
source "$(dirname "$0")/lib.sh"
proto=${1:?h2 or h3}

cd "$TEST_TMP"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout key.pem -out cert.pem \
  -days 2 -subj /CN=quiclab-lab >/dev/null 2>&1
mkdir www dl
head -c 2000000 /dev/urandom >www/blob

name=$(new_name)
lab_up "$name" --rtt-ms 40 --loss-pct 1 --seed 7
server=$("$NETLAB" addr "$name" server)

case $proto in
  h2)
    command -v nghttpd >/dev/null || fail "nghttpd missing (apt-get install nghttp2-server)"
    "$NETLAB" exec "$name" server -- nghttpd -d www 8443 key.pem cert.pem >server.log 2>&1 &
    sleep 0.5
    "$NETLAB" exec "$name" client -- timeout 60 nghttp "https://$server:8443/blob" >dl/blob 2>client.log ||
      fail "nghttp failed: $(tail -5 client.log)"
    ;;
  h3)
    command -v gtlsserver >/dev/null || fail "gtlsserver missing (apt-get install ngtcp2-server)"
    "$NETLAB" exec "$name" server -- gtlsserver -q -d www "$server" 4433 key.pem cert.pem >server.log 2>&1 &
    sleep 0.5
    "$NETLAB" exec "$name" client -- timeout 60 gtlsclient -q --exit-on-all-streams-close --download dl \
      "$server" 4433 "https://$server:4433/blob" >client.log 2>&1 || fail "gtlsclient failed: $(tail -5 client.log)"
    ;;
  quiclab-h2 | quiclab-h3)
    "$NETLAB" exec "$name" server -- "$QUICLAB_BIN" serve --listen "$server:8443" --root www \
      --cert cert.pem --key key.pem >server.log 2>&1 &
    sleep 0.5
    "$NETLAB" exec "$name" client -- timeout 60 "$QUICLAB_BIN" get "--${proto#quiclab-}" -k -o dl/blob \
      "https://$server:8443/blob" >client.log 2>&1 || fail "quiclab get failed: $(tail -5 client.log)"
    ;;
  *) fail "protocol must be h2, h3, quiclab-h2 or quiclab-h3" ;;
esac

cmp www/blob dl/blob || fail "$proto: downloaded file differs ($(stat -c %s dl/blob 2>/dev/null || echo 0) bytes)"
# The path really was impaired: the emulator (or netem) dropped packets.
"$NETLAB" down "$name" 2>down.log
assert_gone "$name"
if grep -q '"dropped_loss"' down.log; then
  lost=$(grep -o '"dropped_loss":[0-9]*' down.log | awk -F: '{ s += $2 } END { print s + 0 }')
  ((lost > 0)) || fail "no packet was lost on a 1 % loss path"
  echo "$proto: 2000000 bytes byte-exact through 40 ms RTT, 1 % loss ($lost packets dropped by the emulator)"
else
  echo "$proto: 2000000 bytes byte-exact through 40 ms RTT, 1 % loss (netem)"
fi
