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

work=$(mktemp -d "${TMPDIR:-/tmp}/quiclab-h2client-${CASE}.XXXXXX")
server_pid=""
cleanup() {
  local rc=$?
  if [[ -n "$server_pid" ]]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  # Stopped with SIGTERM and waited for: a sanitizer build printed its report.
  sanitizer_reports "$work"/*.log "$work"/*.out || rc=1
  rm -rf "$work"
  exit $rc
}
trap cleanup EXIT

fail() {
  echo "FAIL [$CASE]: $*" >&2
  for f in "$work"/*.log; do
    [[ -f "$f" ]] && { echo "--- $f"; tail -n 30 "$f"; } >&2
  done
  exit 1
}

# Runs quiclab get; records the exit code in $rc without tripping set -e.
get() {
  set +e
  "$QUICLAB" get "$@" >"$work/out.txt" 2>"$work/err.log"
  rc=$?
  set -e
}

expect_rc() {
  [[ "$rc" == "$1" ]] || { cat "$work/out.txt" >&2; fail "exit code $rc, expected $1 ($2)"; }
}

# A self-signed certificate for localhost and 127.0.0.1 made by openssl, so the
# client is also tested against a certificate it did not generate itself.
make_cert() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -keyout "$work/key.pem" -out "$work/cert.pem" -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" >/dev/null 2>&1 || fail "openssl req failed"
}

port_in_use() { ss -Htln "sport = :$1" | grep -q .; }

# nghttpd serving $work/htdocs on 127.0.0.1; sets $port. nghttpd cannot bind
# port 0 and report it, so try random free ports until one binds.
start_nghttpd() {
  make_cert
  for _ in $(seq 1 30); do
    port=$((20000 + RANDOM % 40000))
    port_in_use "$port" && continue
    nghttpd --address=127.0.0.1 -d "$work/htdocs" "$@" "$port" "$work/key.pem" "$work/cert.pem" \
      >"$work/nghttpd.log" 2>&1 &
    server_pid=$!
    for _ in $(seq 1 100); do
      kill -0 "$server_pid" 2>/dev/null || break
      port_in_use "$port" && return 0
      sleep 0.05
    done
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  done
  fail "nghttpd did not start"
}

# Our own server on an ephemeral port (it prints "listening h2 tcp ADDR").
start_quiclab_serve() {
  "$QUICLAB" serve --listen 127.0.0.1:0 --state-dir "$work/state" "$@" >"$work/serve.out" 2>"$work/serve.log" &
  server_pid=$!
  for _ in $(seq 1 200); do
    if addr=$(grep -m1 -o 'listening h2 tcp [^ ]*' "$work/serve.out" 2>/dev/null); then
      port=${addr##*:}
      return 0
    fi
    kill -0 "$server_pid" 2>/dev/null || fail "quiclab serve exited"
    sleep 0.05
  done
  fail "quiclab serve did not start"
}

# JSON-lines checks with Python's json module (python3 is in scripts/setup.sh).
check_json() {
  python3 - "$work/out.txt" "$@" <<'EOF' || fail "JSON check failed: $(cat "$work/out.txt" | head -5)"
import json, sys
path, count, status, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
concurrent = len(sys.argv) > 5 and sys.argv[5] == "concurrent"
lines = [json.loads(l) for l in open(path) if l.strip()]
assert len(lines) == count, f"{len(lines)} lines, expected {count}"
for j in lines:
    for key in ("url", "protocol", "status", "bytes", "connect", "handshake", "sent", "ttfb", "total"):
        assert key in j, f"missing {key}: {j}"
    assert j["protocol"] == "h2", j
    assert j["status"] == status, j
    assert j["bytes"] == size, j
    assert "error" not in j, j
    t = [j[k] for k in ("connect", "handshake", "sent", "ttfb", "total")]
    assert all(isinstance(x, (int, float)) for x in t), j
    assert 0 <= t[0] <= t[1] <= t[2] <= t[3] <= t[4], f"timings out of order: {j}"
if concurrent:
    # All requests were on the wire before the first response arrived: they
    # ran as concurrent streams, not one after another.
    last_sent = max(j["sent"] for j in lines)
    first_ttfb = min(j["ttfb"] for j in lines)
    assert last_sent <= first_ttfb, f"last request sent at {last_sent} ms after first response at {first_ttfb} ms"
    assert len({j["connect"] for j in lines}) == 1, "requests used more than one connection"
EOF
}

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
    kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""
    for _ in $(seq 1 50); do port_in_use "$port" || break; sleep 0.1; done
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
    start_quiclab_serve
    get --h2 --insecure --verify-bytes --json "https://127.0.0.1:$port/bytes/100m"
    expect_rc 0 "/bytes/100m from quiclab serve"
    check_json 1 200 104857600
    grep -q '"verified":true' "$work/out.txt" || fail "body not verified"
    ;;
  ours_echo)
    start_quiclab_serve
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
  ours_ipv6)
    "$QUICLAB" serve --listen '[::1]:0' --state-dir "$work/state" >"$work/serve.out" 2>"$work/serve.log" &
    server_pid=$!
    for _ in $(seq 1 200); do
      grep -q 'listening h2 tcp' "$work/serve.out" 2>/dev/null && break
      kill -0 "$server_pid" 2>/dev/null || fail "quiclab serve on ::1 exited"
      sleep 0.05
    done
    port=$(grep -m1 -o 'listening h2 tcp [^ ]*' "$work/serve.out" | sed 's/.*://')
    [[ -n "$port" ]] || fail "quiclab serve on ::1 did not start"
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
    kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""
    for _ in $(seq 1 50); do port_in_use "$port" || break; sleep 0.1; done
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
