#!/usr/bin/env bash
# Interop tests of `quiclab get --h2` against real servers over loopback:
# Debian's nghttpd (their server, our client) and `quiclab serve` (ours).
#
#   run.sh QUICLAB_BINARY CASE
#
# Each case starts its own server on a free loopback port in a private temp dir
# and stops it on exit, also on failure (trap).
set -euo pipefail
# shellcheck source=../sanitizer_report.sh
source "$(dirname "$0")/../sanitizer_report.sh"

QUICLAB=${1:?usage: run.sh QUICLAB_BINARY CASE}
CASE=${2:?usage: run.sh QUICLAB_BINARY CASE}

# shellcheck source=../client_test_lib.sh
source "$(dirname "$0")/../client_test_lib.sh"
client_test_init "h2client-$CASE" "$CASE"

# Runs quiclab get; records the exit code in $rc without tripping set -e.
get() {
  set +e
  "$QUICLAB" get "$@" >"$work/out.txt" 2>"$work/err.log"
  rc=$?
  set -e
}

# nghttpd serving $work/htdocs on 127.0.0.1; sets $port. nghttpd cannot bind
# port 0 and report it, so try random free ports until one binds.
launch_nghttpd() {
  nghttpd --address=127.0.0.1 -d "$work/htdocs" "$port" "$work/key.pem" "$work/cert.pem" >"$work/nghttpd.log" 2>&1 &
  server_pid=$!
}
start_nghttpd() {
  make_cert
  start_on_free_port tcp nghttpd launch_nghttpd
}

check_json() { check_get_json h2 "$@"; }

mkdir -p "$work/htdocs"
case "$CASE" in
  single_get)
    head -c 200000 /dev/urandom >"$work/htdocs/file.bin"
    start_nghttpd
    get --h2 --cacert "$work/cert.pem" -o "$work/got.bin" "https://localhost:$port/file.bin"
    expect_rc 0 "GET with --cacert"
    cmp "$work/got.bin" "$work/htdocs/file.bin" || fail "body differs"
    grep -q "200" "$work/out.txt" || fail "no 200 in the table"
    grep -q "1 requests: 1 ok" "$work/out.txt" || fail "summary line missing"
    ;;
  concurrent_100)
    for i in $(seq 1 100); do head -c $((1000 + i)) /dev/urandom >"$work/htdocs/f$i"; done
    head -c 65536 /dev/urandom >"$work/htdocs/same.bin"
    start_nghttpd
    get --h2 --insecure --json -n 100 -m 100 "https://127.0.0.1:$port/same.bin"
    expect_rc 0 "100 concurrent streams"
    check_json 100 200 65536 concurrent
    # 100 different files on one connection, byte-exact through -o on the last.
    urls=()
    for i in $(seq 1 100); do urls+=("https://127.0.0.1:$port/f$i"); done
    get --h2 --insecure --json -m 100 -o "$work/last.bin" "${urls[@]}"
    expect_rc 0 "100 different files"
    [[ $(wc -l <"$work/out.txt") == 100 ]] || fail "expected 100 JSON lines"
    cmp "$work/last.bin" "$work/htdocs/f100" || fail "f100 differs"
    ;;
  big_100mb)
    head -c 100000000 /dev/urandom >"$work/htdocs/big.bin"
    start_nghttpd
    get --h2 --insecure -o "$work/got.bin" "https://127.0.0.1:$port/big.bin"
    expect_rc 0 "100 MB body"
    want=$(sha256sum <"$work/htdocs/big.bin" | cut -d' ' -f1)
    got=$(sha256sum <"$work/got.bin" | cut -d' ' -f1)
    [[ "$want" == "$got" ]] || fail "sha256 differs: $got != $want"
    rm -f "$work/got.bin" "$work/htdocs/big.bin"
    ;;
  post)
    echo "the resource" >"$work/htdocs/res.txt"
    head -c 1000000 /dev/urandom >"$work/upload.bin"
    start_nghttpd
    # 1 MB request body: more than the 64 KiB default window, so the upload
    # depends on WINDOW_UPDATEs from the server.
    get --h2 --insecure --json --data-file "$work/upload.bin" -o "$work/got.txt" "https://127.0.0.1:$port/res.txt"
    expect_rc 0 "POST"
    check_json 1 200 13
    cmp "$work/got.txt" "$work/htdocs/res.txt" || fail "POST response differs"
    get --h2 --insecure -X PUT -d small-body "https://127.0.0.1:$port/res.txt"
    expect_rc 0 "PUT with --data"
    ;;
  json_fields)
    echo hello >"$work/htdocs/a.txt"
    start_nghttpd
    get --h2 --insecure --json -n 5 -m 2 "https://127.0.0.1:$port/a.txt"
    expect_rc 0 "json"
    check_json 5 200 6
    ;;
  http_404)
    start_nghttpd
    get --h2 --insecure "https://127.0.0.1:$port/missing"
    expect_rc 1 "404 is an HTTP error"
    grep -q 404 "$work/out.txt" || fail "no 404 in the table"
    ;;
  connection_refused)
    # A port nobody listens on: bind one with nghttpd, stop it, then use it.
    start_nghttpd
    stop_server
    for _ in $(seq 1 50); do port_in_use tcp "$port" || break; sleep 0.1; done
    get --h2 --insecure --json "https://127.0.0.1:$port/"
    expect_rc 3 "connection refused"
    grep -q "ECONNREFUSED" "$work/err.log" || fail "stderr does not say connection refused"
    grep -q '"error"' "$work/out.txt" || fail "JSON line has no error field"
    ;;
  cert_verify_failure)
    echo hello >"$work/htdocs/a.txt"
    start_nghttpd
    get --h2 "https://localhost:$port/a.txt"
    expect_rc 3 "self-signed certificate without --insecure"
    grep -q "certificate verify failed" "$work/err.log" || fail "stderr does not name the verification failure"
    # The same certificate trusted through --cacert, and --insecure, both work.
    get --h2 --cacert "$work/cert.pem" "https://localhost:$port/a.txt"
    expect_rc 0 "--cacert"
    get --h2 --insecure "https://localhost:$port/a.txt"
    expect_rc 0 "--insecure"
    # A name the certificate does not cover fails verification too.
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
      -keyout "$work/other.key" -out "$work/other.pem" -subj /CN=other >/dev/null 2>&1
    get --h2 --cacert "$work/other.pem" "https://localhost:$port/a.txt"
    expect_rc 3 "wrong CA"
    ;;
  usage_errors)
    get --h2 "http://127.0.0.1:1/"
    expect_rc 2 "http:// URL"
    grep -q "bad URL" "$work/err.log" || fail "no 'bad URL' message"
    get --h2 "https://127.0.0.1:99999/"
    expect_rc 2 "bad port"
    get --h2 "not a url"
    expect_rc 2 "not a URL"
    get --h2 -n 0 "https://127.0.0.1:1/"
    expect_rc 2 "-n 0"
    get --h2 --no-such-flag "https://127.0.0.1:1/"
    expect_rc 2 "unknown flag"
    get --h2 --h3 "https://127.0.0.1:1/"
    expect_rc 2 "--h2 with --h3"
    get --h2
    expect_rc 2 "no URL"
    ;;
  ours_bytes_100m)
    start_quiclab_serve 127.0.0.1:0 "h2 tcp"
    get --h2 --insecure --verify-bytes --json "https://127.0.0.1:$port/bytes/100m"
    expect_rc 0 "/bytes/100m from quiclab serve"
    check_json 1 200 104857600
    grep -q '"verified":true' "$work/out.txt" || fail "body not verified"
    ;;
  ours_echo)
    start_quiclab_serve 127.0.0.1:0 "h2 tcp"
    head -c 3000000 /dev/urandom >"$work/upload.bin"
    get --h2 --insecure --data-file "$work/upload.bin" -o "$work/echo.bin" -n 4 -m 4 "https://127.0.0.1:$port/echo"
    expect_rc 0 "POST /echo"
    cmp "$work/echo.bin" "$work/upload.bin" || fail "echoed body differs"
    # 100 concurrent /bytes requests verified, and a 404 from our routes.
    get --h2 --insecure --verify-bytes --json -n 100 -m 100 "https://127.0.0.1:$port/bytes/10000"
    expect_rc 0 "100 streams of /bytes/10000"
    check_json 100 200 10000 concurrent
    get --h2 --insecure "https://127.0.0.1:$port/no/such/route"
    expect_rc 1 "404 from quiclab serve"
    ;;
  resumption)
    # TLS 1.3 session resumption with --session-file, against nghttpd (OpenSSL
    # server tickets) and our server (whose connection record says so too).
    resumed() { python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["resumed"])' "$work/out.txt"; }
    head -c 3000 /dev/urandom >"$work/htdocs/f.bin"
    start_nghttpd
    sess=$work/h2.session
    get --h2 --insecure --json --session-file "$sess" "https://127.0.0.1:$port/f.bin"
    expect_rc 0 "first GET with a session file"
    [[ $(resumed) == False ]] || fail "the first connection resumed: $(cat "$work/out.txt")"
    [[ -s $sess ]] || fail "no session stored"
    [[ $(stat -c %a "$sess") == 600 ]] || fail "session file mode $(stat -c %a "$sess"), want 600"
    jq -e '.format == "quiclab-h2-session" and .version == 1 and (.tls | test("^[0-9a-f]+$"))' "$sess" >/dev/null ||
      fail "session file: $(cat "$sess")"
    get --h2 --insecure --json --session-file "$sess" "https://127.0.0.1:$port/f.bin"
    expect_rc 0 "resumed GET"
    [[ $(resumed) == True ]] || fail "nghttpd did not resume: $(cat "$work/out.txt")"
    # A bad file (garbage, another format, a session that does not parse):
    # a warning, a full handshake, and a good file afterwards.
    for bad in 'not json' '{"format": "quiclab-h3-session", "version": 2, "tls": "00", "transport_params": "00"}' \
      '{"format": "quiclab-h2-session", "version": 1, "tls": "30820102"}'; do
      printf '%s' "$bad" >"$sess"
      get --h2 --insecure --json --session-file "$sess" "https://127.0.0.1:$port/f.bin"
      expect_rc 0 "GET with a bad session file ($bad)"
      [[ $(resumed) == False ]] || fail "resumed from a bad file"
      grep -q "ignoring session file" "$work/err.log" || fail "no warning about '$bad': $(cat "$work/err.log")"
      jq -e '.format == "quiclab-h2-session"' "$sess" >/dev/null || fail "the bad file was not replaced"
    done
    stop_server
    rm -f "$sess"
    start_quiclab_serve 127.0.0.1:0 "h2 tcp" --conn-log "$work/conn.jsonl"
    for i in 1 2; do
      get --h2 --insecure --json --session-file "$sess" "https://127.0.0.1:$port/bytes/1000"
      expect_rc 0 "GET $i from quiclab serve"
    done
    [[ $(resumed) == True ]] || fail "quiclab serve did not resume"
    stop_server
    [[ $(jq -s -c '[.[] | .resumed]' "$work/conn.jsonl") == '[false,true]' ]] ||
      fail "server records: $(cat "$work/conn.jsonl")"
    ;;
  ours_ipv6)
    start_quiclab_serve '[::1]:0' "h2 tcp"
    get --h2 --insecure --json --verify-bytes -n 3 "https://[::1]:$port/bytes/5000"
    expect_rc 0 "GET over IPv6"
    check_json 3 200 5000
    ;;
  bench)
    head -c 1024 /dev/urandom >"$work/htdocs/1k.bin"
    echo small >"$work/htdocs/s.txt"
    start_nghttpd
    set +e
    "$QUICLAB" bench --h2 --insecure --json -c 3 -m 7 -n 2000 \
      "https://127.0.0.1:$port/1k.bin" "https://127.0.0.1:$port/s.txt" >"$work/out.txt" 2>"$work/err.log"
    rc=$?
    set -e
    expect_rc 0 "bench -n 2000"
    python3 - "$work/out.txt" <<'EOF2' || fail "bench JSON: $(cat "$work/out.txt")"
import json, sys
j = json.loads(open(sys.argv[1]).read())
assert j["protocol"] == "h2" and j["connections"] == 3 and j["streams"] == 7, j
assert j["requests"] == 2000 and j["succeeded"] == 2000 and j["failed"] == 0, j
assert j["status"]["2xx"] == 2000, j
assert j["bytes"] == 1000 * 1024 + 1000 * 6, j   # round-robin over the two URLs
assert j["req_per_s"] > 0 and j["mb_per_s"] > 0 and j["duration_s"] > 0, j
l = j["latency_ms"]
assert 0 < l["min"] <= l["p50"] <= l["p90"] <= l["p99"] <= l["max"], l
assert j["timed_out"] is False, j
EOF2
    # Duration mode stops by itself; the text report has the headline fields.
    set +e
    "$QUICLAB" bench --h2 --insecure -c 2 -m 4 -d 0.5 "https://127.0.0.1:$port/s.txt" >"$work/out.txt" 2>"$work/err.log"
    rc=$?
    set -e
    expect_rc 0 "bench -d 0.5"
    grep -q "req/s" "$work/out.txt" && grep -q "p99" "$work/out.txt" || fail "text report incomplete"
    # 404s are HTTP errors (exit 1); a refused connection is a transport failure (exit 3).
    set +e
    "$QUICLAB" bench --h2 --insecure -n 20 "https://127.0.0.1:$port/missing" >"$work/out.txt" 2>"$work/err.log"
    rc=$?
    set -e
    expect_rc 1 "bench on a 404"
    stop_server
    for _ in $(seq 1 50); do port_in_use tcp "$port" || break; sleep 0.1; done
    set +e
    "$QUICLAB" bench --h2 --insecure --json -c 2 -d 30 "https://127.0.0.1:$port/s.txt" >"$work/out.txt" 2>"$work/err.log"
    rc=$?
    "$QUICLAB" bench --h2 -n 5 -d 1 "https://127.0.0.1:$port/s.txt" >/dev/null 2>&1
    rc_usage=$?
    set -e
    expect_rc 3 "bench against a closed port"
    grep -q '"connect_failures":2' "$work/out.txt" || fail "connect failures not counted: $(cat "$work/out.txt")"
    [[ $rc_usage == 2 ]] || fail "-n with -d: exit $rc_usage, expected 2"
    ;;
  *)
    fail "unknown case"
    ;;
esac
echo "ok [$CASE]"
