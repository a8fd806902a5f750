# shellcheck shell=bash
# Sourced by the shell tests of `quiclab get` (tests/h2client, tests/h3client,
# tests/happy_eyeballs): a private work dir, the one server a case starts, and
# their clean-up on exit, also on failure (EXIT trap).
#
#   client_test_init NAME LABEL   $work (a temp dir named after NAME) and the trap;
#                                 LABEL names the case in failure messages
#   fail MESSAGE                  prints the case's logs, exits 1
#   expect_rc CODE WHAT           $rc (set by the caller's get) must be CODE
#   make_cert                     $work/{key,cert}.pem by openssl, for
#                                 localhost, 127.0.0.1 and ::1
#   port_in_use tcp|udp PORT      something listens there
#   start_on_free_port tcp|udp NAME LAUNCH
#                                 for servers that cannot bind port 0 and say
#                                 which (nghttpd, gtlsserver): tries random free
#                                 ports until LAUNCH (a function that starts the
#                                 server on $port in the background and sets
#                                 $server_pid) binds one; sets $port
#   start_quiclab_serve LISTEN "h2 tcp"|"h3 udp" [SERVE_ARGS...]
#                                 `quiclab serve` on LISTEN (port 0: any); sets
#                                 $port from its "listening h2 tcp ADDR" line
#   stop_server                   SIGTERM, then wait, so a sanitizer build
#                                 prints its report
#   check_get_json PROTO COUNT STATUS SIZE [concurrent] [early]
#                                 the JSON lines in $work/out.txt: COUNT lines,
#                                 each STATUS with SIZE bytes, every timing
#                                 present and in order
#
# The caller sets QUICLAB and sources sanitizer_report.sh first.

client_test_init() {
  work=$(mktemp -d "${TMPDIR:-/tmp}/quiclab-$1.XXXXXX")
  client_test_label=$2
  server_pid=""
  trap client_test_cleanup EXIT
}

client_test_cleanup() {
  local rc=$?
  stop_server
  # Stopped with SIGTERM and waited for: a sanitizer build printed its report.
  sanitizer_reports "$work"/*.log "$work"/*.out || rc=1
  rm -rf "$work"
  exit $rc
}

stop_server() {
  if [[ -n "$server_pid" ]]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}

fail() {
  echo "FAIL [$client_test_label]: $*" >&2
  for f in "$work"/*.log "$work"/out.txt; do
    [[ -f "$f" ]] && { echo "--- $f"; tail -n 40 "$f"; } >&2
  done
  exit 1
}

expect_rc() {
  [[ "$rc" == "$1" ]] || { cat "$work/out.txt" >&2; fail "exit code $rc, expected $1 ($2)"; }
}

# A certificate the client did not generate itself (quiclab serve makes its own).
make_cert() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -keyout "$work/key.pem" -out "$work/cert.pem" -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1" >/dev/null 2>&1 || fail "openssl req failed"
}

port_in_use() {
  local flag=-t
  [[ $1 == udp ]] && flag=-u
  grep -q . <<<"$(ss -Hln "$flag" "sport = :$2")"
}

start_on_free_port() {
  local proto=$1 name=$2 launch=$3
  for _ in $(seq 1 30); do
    port=$((20000 + RANDOM % 40000))
    port_in_use "$proto" "$port" && continue
    "$launch"
    for _ in $(seq 1 100); do
      kill -0 "$server_pid" 2>/dev/null || break
      port_in_use "$proto" "$port" && return 0
      sleep 0.05
    done
    stop_server
  done
  fail "$name did not start"
}

start_quiclab_serve() {
  local listen=$1 kind=$2 addr
  shift 2
  "$QUICLAB" serve --listen "$listen" --state-dir "$work/state" "$@" >"$work/serve.out" 2>"$work/serve.log" &
  server_pid=$!
  for _ in $(seq 1 200); do
    if addr=$(grep -m1 -o "listening $kind [^ ]*" "$work/serve.out" 2>/dev/null); then
      port=${addr##*:}
      return 0
    fi
    kill -0 "$server_pid" 2>/dev/null || fail "quiclab serve exited"
    sleep 0.05
  done
  fail "quiclab serve did not start on $listen (no 'listening $kind' line)"
}

# With 0-RTT (early) the request is sent before the handshake completes, so
# that pair of timings is not ordered.
check_get_json() {
  python3 - "$work/out.txt" "$@" <<'EOF' || fail "JSON check failed: $(head -5 "$work/out.txt")"
import json, sys, time
path, proto = sys.argv[1], sys.argv[2]
count, status, size = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
flags = sys.argv[6:]
keys = ["url", "protocol", "status", "bytes", "connect", "handshake", "sent", "ttfb", "total", "start_unix_us", "complete_unix_us"]
if proto == "h3":
    keys += ["resumed", "early_data"]
lines = [json.loads(l) for l in open(path) if l.strip()]
assert len(lines) == count, f"{len(lines)} lines, expected {count}"
for j in lines:
    for key in keys:
        assert key in j, f"missing {key}: {j}"
    assert j["protocol"] == proto, j
    assert j["status"] == status, j
    assert j["bytes"] == size, j
    assert "error" not in j, j
    # The connection start on the wall clock (lines records up with traces): this minute.
    assert abs(j["start_unix_us"] / 1e6 - time.time()) < 60, j
    assert abs((j["complete_unix_us"] - j["start_unix_us"]) / 1000 - j["total"]) < 50, j
    t = [j[k] for k in ("connect", "handshake", "sent", "ttfb", "total")]
    assert all(isinstance(x, (int, float)) for x in t), j
    if "early" in flags:
        assert j["early_data"] is True and j["resumed"] is True, f"0-RTT not accepted: {j}"
        assert 0 <= t[0] <= t[2] <= t[3] <= t[4] and t[0] <= t[1], f"timings out of order: {j}"
    else:
        assert 0 <= t[0] <= t[1] <= t[2] <= t[3] <= t[4], f"timings out of order: {j}"
if "concurrent" in flags:
    # All requests were on the wire before the first response arrived: they
    # ran as concurrent streams, not one after another, on one connection.
    last_sent = max(j["sent"] for j in lines)
    first_ttfb = min(j["ttfb"] for j in lines)
    assert last_sent <= first_ttfb, f"last request sent at {last_sent} ms after first response at {first_ttfb} ms"
    assert len({j["connect"] for j in lines}) == 1, "requests used more than one connection"
EOF
}
