#!/usr/bin/env bash
# Interop tests of `quiclab get --h3` over loopback against Debian's
# gtlsserver (ngtcp2's GnuTLS example server: their server, our client) and
# against `quiclab serve` (ours).
#
#   run.sh QUICLAB_BINARY CASE
#
# Each case starts its own server on a free loopback port in a private temp
# dir and stops it on exit, also on failure (trap).
set -euo pipefail
# shellcheck source=../sanitizer_report.sh
source "$(dirname "$0")/../sanitizer_report.sh"

QUICLAB=${1:?usage: run.sh QUICLAB_BINARY CASE}
CASE=${2:?usage: run.sh QUICLAB_BINARY CASE}
GTLSSERVER=${GTLSSERVER:-$(command -v gtlsserver || echo /usr/sbin/gtlsserver)}

# shellcheck source=../client_test_lib.sh
source "$(dirname "$0")/../client_test_lib.sh"
client_test_init "h3client-$CASE" "$CASE"

# Runs quiclab get; records the exit code in $rc without tripping set -e.
# Every run is bounded in time, whatever happens to the server.
get() {
  set +e
  timeout 120 "$QUICLAB" get "$@" >"$work/out.txt" 2>"$work/err.log"
  rc=$?
  set -e
  # Under the sanitizer build a report must fail the case even when the exit
  # code happens to be the one expected (1 for a 404, 3 for a refused connection).
  sanitizer_reports "$work/err.log" || fail "sanitizer report"
}

# gtlsserver serving $work/htdocs on ADDR (default 127.0.0.1); sets $port.
# It cannot bind port 0 and report it, so try random free ports until one binds.
start_gtlsserver() {
  gtls_addr=${1:-127.0.0.1}
  shift || true
  gtls_args=("$@")
  [[ -x "$GTLSSERVER" ]] || fail "gtlsserver not found (Debian package ngtcp2-server)"
  [[ -f "$work/cert.pem" ]] || make_cert
  start_on_free_port udp gtlsserver launch_gtlsserver
}
launch_gtlsserver() {
  "$GTLSSERVER" --quiet "${gtls_args[@]}" -d "$work/htdocs" "$gtls_addr" "$port" "$work/key.pem" "$work/cert.pem" \
    >"$work/gtlsserver.log" 2>&1 &
  server_pid=$!
}

check_json() { check_get_json h3 "$@"; }

mkdir -p "$work/htdocs"
case "$CASE" in
  single_get)
    head -c 200000 /dev/urandom >"$work/htdocs/file.bin"
    start_gtlsserver
    get --h3 --cacert "$work/cert.pem" -o "$work/got.bin" "https://localhost:$port/file.bin"
    expect_rc 0 "GET with --cacert"
    cmp "$work/got.bin" "$work/htdocs/file.bin" || fail "body differs"
    grep -q "1 requests: 1 ok" "$work/out.txt" || fail "summary line missing"
    grep -q " h3 " "$work/out.txt" || fail "summary does not name h3"
    ;;
  concurrent_100)
    for i in $(seq 1 100); do head -c $((1000 + i)) /dev/urandom >"$work/htdocs/f$i"; done
    head -c 65536 /dev/urandom >"$work/htdocs/same.bin"
    start_gtlsserver
    get --h3 --insecure --json -n 100 -m 100 "https://127.0.0.1:$port/same.bin"
    expect_rc 0 "100 concurrent streams"
    check_json 100 200 65536 concurrent
    # 100 different files on one connection: sizes per URL, and byte-exact
    # through -o on the last.
    urls=()
    for i in $(seq 1 100); do urls+=("https://127.0.0.1:$port/f$i"); done
    get --h3 --insecure --json -m 100 -o "$work/last.bin" "${urls[@]}"
    expect_rc 0 "100 different files"
    python3 - "$work/out.txt" <<'EOF' || fail "per-file sizes wrong"
import json, sys
for l in open(sys.argv[1]):
    j = json.loads(l)
    n = int(j["url"].rsplit("/f", 1)[1])
    assert j["status"] == 200 and j["bytes"] == 1000 + n, j
EOF
    cmp "$work/last.bin" "$work/htdocs/f100" || fail "f100 differs"
    ;;
  big_50mb)
    head -c 50000000 /dev/urandom >"$work/htdocs/big.bin"
    start_gtlsserver
    get --h3 --insecure -o "$work/got.bin" "https://127.0.0.1:$port/big.bin"
    expect_rc 0 "50 MB body"
    want=$(sha256sum <"$work/htdocs/big.bin" | cut -d' ' -f1)
    got=$(sha256sum <"$work/got.bin" | cut -d' ' -f1)
    [[ "$want" == "$got" ]] || fail "sha256 differs: $got != $want"
    ;;
  resumption_0rtt)
    echo "early bird" >"$work/htdocs/a.txt"
    start_gtlsserver
    get --h3 --insecure --json --session-file "$work/session" "https://127.0.0.1:$port/a.txt"
    expect_rc 0 "first connection"
    check_json 1 200 11
    grep -q '"resumed":false' "$work/out.txt" || fail "first connection claims resumption"
    [[ -s "$work/session" ]] || fail "no session file written"
    # Second run: resumes the session and sends the request as 0-RTT.
    get --h3 --insecure --json --session-file "$work/session" -o "$work/got.txt" "https://127.0.0.1:$port/a.txt"
    expect_rc 0 "resumed connection"
    check_json 1 200 11 early
    cmp "$work/got.txt" "$work/htdocs/a.txt" || fail "0-RTT body differs"
    # The table says it too.
    get --h3 --insecure --session-file "$work/session" "https://127.0.0.1:$port/a.txt"
    expect_rc 0 "resumed connection (table)"
    grep -q "resumed=yes early_data=accepted" "$work/out.txt" || fail "table does not report 0-RTT"
    # A new server process has new ticket keys: it cannot resume the session
    # and refuses the 0-RTT data; the client must send the requests again
    # over 1-RTT and still get every response.
    stop_server
    start_gtlsserver
    get --h3 --insecure --json -n 3 --session-file "$work/session" "https://127.0.0.1:$port/a.txt"
    expect_rc 0 "0-RTT refused by a new server"
    check_json 3 200 11
    grep -q '"early_data":false' "$work/out.txt" || fail "early data reported accepted by a server that cannot resume"
    grep -q "refused 0-RTT" "$work/err.log" || fail "the refusal is not logged"
    # A corrupt session file is ignored (full handshake), not fatal.
    echo "garbage" >"$work/bad-session"
    get --h3 --insecure --json --session-file "$work/bad-session" "https://127.0.0.1:$port/a.txt"
    expect_rc 0 "bad session file"
    check_json 1 200 11
    ;;
  ipv6)
    echo "over v6" >"$work/htdocs/a.txt"
    start_gtlsserver ::1
    get --h3 --cacert "$work/cert.pem" --json "https://[::1]:$port/a.txt"
    expect_rc 0 "GET over ::1"
    check_json 1 200 8
    ;;
  json_fields)
    echo hello >"$work/htdocs/a.txt"
    start_gtlsserver
    get --h3 --insecure --json -n 5 -m 2 "https://127.0.0.1:$port/a.txt"
    expect_rc 0 "json"
    check_json 5 200 6
    ;;
  http_404)
    start_gtlsserver
    get --h3 --insecure "https://127.0.0.1:$port/missing"
    expect_rc 1 "404 is an HTTP error"
    grep -q 404 "$work/out.txt" || fail "no 404 in the table"
    ;;
  no_server)
    # A UDP port nobody listens on: bind one with gtlsserver, stop it, then use it.
    start_gtlsserver
    stop_server
    for _ in $(seq 1 50); do port_in_use udp "$port" || break; sleep 0.1; done
    get --h3 --insecure --json "https://127.0.0.1:$port/"
    expect_rc 3 "no server"
    grep -q '"error"' "$work/out.txt" || fail "JSON line has no error field"
    ;;
  handshake_failure)
    echo hello >"$work/htdocs/a.txt"
    start_gtlsserver
    # Self-signed and not trusted: the QUIC handshake must fail.
    get --h3 "https://localhost:$port/a.txt"
    expect_rc 3 "untrusted certificate"
    grep -qi "TLS handshake failed\|certificate" "$work/err.log" || fail "stderr does not name the TLS failure"
    get --h3 --cacert "$work/cert.pem" "https://localhost:$port/a.txt"
    expect_rc 0 "--cacert"
    ;;
  usage_errors)
    get --h3 "http://127.0.0.1:1/"
    expect_rc 2 "http:// URL"
    get --h3 "https://127.0.0.1:99999/"
    expect_rc 2 "bad port"
    get --h3 "not a url"
    expect_rc 2 "not a URL"
    get --h2 --qlog-dir "$work/q" "https://127.0.0.1:1/"
    expect_rc 2 "--qlog-dir without --h3"
    get --h2 --ack-thresh 2 "https://127.0.0.1:1/"
    expect_rc 2 "--ack-thresh without --h3"
    ;;
  ours_bytes_50m)
    start_quiclab_serve 127.0.0.1:0 "h3 udp"
    get --h3 --insecure --verify-bytes --json "https://127.0.0.1:$port/bytes/50m"
    expect_rc 0 "/bytes/50m from quiclab serve"
    check_json 1 200 52428800
    grep -q '"verified":true' "$work/out.txt" || fail "body not verified"
    ;;
  ours_ack_thresh)
    # The flag's wiring through the lab: tests/lab/ack_thresh.sh (on loopback
    # the receive batches decide when ACKs go, not the threshold).
    start_quiclab_serve 127.0.0.1:0 "h3 udp"
    get --h3 --insecure --verify-bytes --json --ack-thresh 2 "https://127.0.0.1:$port/bytes/1m"
    expect_rc 0 "--ack-thresh 2"
    get --h2 --ack-thresh 2 "https://127.0.0.1:$port/"
    expect_rc 2 "--ack-thresh without --h3"
    get --h3 --ack-thresh 0 "https://127.0.0.1:$port/"
    expect_rc 2 "--ack-thresh 0"
    ;;
  ours_tls_suite)
    # --tls-cipher/--tls-group pin one suite and group on both stacks
    # (OpenSSL for HTTP/2, GnuTLS for HTTP/3); the JSON reports what each
    # connection negotiated; a client that offers neither fails at once with
    # the alert (HTTP/3: a CONNECTION_CLOSE with TLS alert 40, not a timeout).
    start_quiclab_serve 127.0.0.1:0 "h3 udp" --tls-cipher TLS_AES_256_GCM_SHA384 --tls-group secp384r1
    for p in h2 h3; do
      get --$p --insecure --json "https://127.0.0.1:$port/bytes/1000"
      expect_rc 0 "$p against a pinned server"
      want='{"cipher":"TLS_AES_256_GCM_SHA384","group":"secp384r1","version":"TLSv1.3"}'
      got=$(jq -c '.tls | {cipher, group, version}' "$work/out.txt")
      [[ $got == "$want" ]] || fail "$p negotiated $got, want $want"
      start=$(date +%s%N)
      get --$p --insecure --json --tls-cipher TLS_AES_128_GCM_SHA256 "https://127.0.0.1:$port/bytes/1000"
      expect_rc 3 "$p offering another cipher"
      grep -qi "handshake fail\|alert" "$work/err.log" || fail "$p: the error does not name the TLS failure: $(cat "$work/err.log")"
      (( ($(date +%s%N) - start) / 1000000 < 5000 )) || fail "$p: the refused handshake took more than 5 s"
    done
    # Their client (ngtcp2's gtlsclient, its own defaults) gets the pinned suite too.
    mkdir -p "$work/dl"
    timeout 60 gtlsclient -q --exit-on-all-streams-close --no-http-dump --download "$work/dl" 127.0.0.1 "$port" \
      "https://127.0.0.1:$port/bytes/1000" >"$work/gtls.log" 2>&1 || fail "gtlsclient: $(tail -3 "$work/gtls.log")"
    [[ $(stat -c %s "$work/dl/1000" 2>/dev/null) == 1000 ]] || fail "gtlsclient did not get 1000 bytes"
    get --h3 --tls-group x448 "https://127.0.0.1:$port/"
    expect_rc 2 "an unknown group"
    ;;
  ours_echo)
    start_quiclab_serve 127.0.0.1:0 "h3 udp"
    head -c 3000000 /dev/urandom >"$work/upload.bin"
    get --h3 --insecure --data-file "$work/upload.bin" -o "$work/echo.bin" -n 4 -m 4 "https://127.0.0.1:$port/echo"
    expect_rc 0 "POST /echo"
    cmp "$work/echo.bin" "$work/upload.bin" || fail "echoed body differs"
    get --h3 --insecure --verify-bytes --json -n 100 -m 100 "https://127.0.0.1:$port/bytes/10000"
    expect_rc 0 "100 streams of /bytes/10000"
    check_json 100 200 10000 concurrent
    ;;
  ours_0rtt)
    start_quiclab_serve 127.0.0.1:0 "h3 udp"
    get --h3 --insecure --json --session-file "$work/session" "https://127.0.0.1:$port/bytes/1000"
    expect_rc 0 "first connection"
    [[ -s "$work/session" ]] || fail "no session file written"
    get --h3 --insecure --json --verify-bytes --session-file "$work/session" "https://127.0.0.1:$port/bytes/1000"
    expect_rc 0 "resumed connection"
    check_json 1 200 1000 early
    ;;
  ours_alt_svc)
    # HTTP/2 first; quiclab serve answers with Alt-Svc h3=":PORT", so the
    # other requests go over HTTP/3 to the same port number.
    start_quiclab_serve 127.0.0.1:0 "h3 udp"
    get --alt-svc --insecure --verify-bytes --json -n 4 -m 2 "https://127.0.0.1:$port/bytes/1000"
    expect_rc 0 "--alt-svc"
    python3 - "$work/out.txt" <<'EOF' || fail "Alt-Svc was not followed: $(cat "$work/out.txt")"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
assert len(lines) == 4
assert [j["protocol"] for j in lines] == ["h2", "h3", "h3", "h3"], [j["protocol"] for j in lines]
assert all(j["status"] == 200 and j["bytes"] == 1000 and j["verified"] for j in lines)
EOF
    grep -q "switching to HTTP/3" "$work/err.log" || fail "no switch logged"
    ;;
  *)
    fail "unknown case"
    ;;
esac
echo "ok [$CASE]"
