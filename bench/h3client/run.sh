#!/usr/bin/env bash
# HTTP/3 client benchmark, all on loopback, all in one run:
#
#   1. 100 MB over one QUIC connection: our client + our server
#      (quiclab get --h3 -> quiclab serve /bytes/100m) against Debian's
#      gtlsclient + gtlsserver (ngtcp2's GnuTLS examples) serving a 100 MB
#      file, alternating round by round; MB/s of each and the ratio.
#   2. Our H3 against our H2, same server process (quiclab serve):
#      100 MB bulk (quiclab get --h2/--h3 /bytes/100m) and 1 KB requests/s
#      (quiclab bench -c 1 -m 16 -d SECONDS /bytes/1k).
#
#   run.sh QUICLAB_BINARY [ROUNDS=5] [BENCH_SECONDS=5]
#
# MB/s = 10^6 bytes per second of wall-clock time of the client process (start
# to exit: handshake, transfer and close), measured the same way for every
# client, so process start-up is in every figure. Each transfer is bounded by a
# timeout; every server started here is stopped on exit (trap).
set -euo pipefail

QUICLAB=${1:?usage: run.sh QUICLAB_BINARY [ROUNDS] [BENCH_SECONDS]}
ROUNDS=${2:-5}
BENCH_SECONDS=${3:-5}
GTLSSERVER=${GTLSSERVER:-$(command -v gtlsserver || echo /usr/sbin/gtlsserver)}
GTLSCLIENT=${GTLSCLIENT:-$(command -v gtlsclient || echo /usr/bin/gtlsclient)}
SIZE=100000000    # gtlsserver file
OURS_SIZE=104857600  # /bytes/100m (100 MiB)

work=$(mktemp -d "${TMPDIR:-/tmp}/quiclab-bench-h3client.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
die() { echo "bench h3client: $*" >&2; exit 1; }

[[ -x "$GTLSSERVER" && -x "$GTLSCLIENT" ]] || die "needs gtlsserver and gtlsclient (ngtcp2-server, ngtcp2-client)"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -keyout "$work/key.pem" \
  -out "$work/cert.pem" -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" >/dev/null 2>&1
mkdir -p "$work/htdocs" "$work/dl"
head -c "$SIZE" /dev/urandom >"$work/htdocs/100m.bin"

# gtlsserver on a random free UDP port.
gport=""
for _ in $(seq 1 30); do
  p=$((20000 + RANDOM % 40000))
  ss -Huln "sport = :$p" | grep -q . && continue
  "$GTLSSERVER" --quiet -d "$work/htdocs" 127.0.0.1 "$p" "$work/key.pem" "$work/cert.pem" >"$work/gtlsserver.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do ss -Huln "sport = :$p" | grep -q . && { gport=$p; break; }; sleep 0.05; done
  [[ -n "$gport" ]] && break
done
[[ -n "$gport" ]] || die "gtlsserver did not start"

# quiclab serve (H2 on TCP and H3 on UDP, same port number).
"$QUICLAB" serve --listen 127.0.0.1:0 --state-dir "$work/state" >"$work/serve.out" 2>"$work/serve.log" &
pids+=($!)
qport=""
for _ in $(seq 1 200); do
  if a=$(grep -m1 -o 'listening h3 udp [^ ]*' "$work/serve.out" 2>/dev/null); then qport=${a##*:}; break; fi
  sleep 0.05
done
[[ -n "$qport" ]] || die "quiclab serve did not start"

now_ns() { date +%s%N; }
# Runs a command, prints MB/s for BYTES over its wall-clock time; "fail" when it
# exits non-zero.
timed() {
  local bytes=$1; shift
  local t0 t1
  t0=$(now_ns)
  if timeout 120 "$@" >"$work/run.out" 2>"$work/run.err"; then
    t1=$(now_ns)
    python3 -c "print(f'{$bytes / (($t1 - $t0) / 1e9) / 1e6:.1f}')"
  else
    echo fail
  fi
}

ours_h3() { timed "$OURS_SIZE" "$QUICLAB" get --h3 -k --verify-bytes "https://127.0.0.1:$qport/bytes/100m"; }
ours_h2() { timed "$OURS_SIZE" "$QUICLAB" get --h2 -k --verify-bytes "https://127.0.0.1:$qport/bytes/100m"; }
theirs() {
  rm -f "$work/dl/"*
  local r
  r=$(timed "$SIZE" "$GTLSCLIENT" --quiet --exit-on-all-streams-close --download="$work/dl" \
        127.0.0.1 "$gport" "https://127.0.0.1:$gport/100m.bin")
  # Count it only when the whole file arrived.
  [[ $(stat -c %s "$work/dl/100m.bin" 2>/dev/null || echo 0) == "$SIZE" ]] || r=fail
  echo "$r"
}

echo "# quiclab bench h3client: $ROUNDS rounds, $(nproc) cores, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# round  ours_h3+ours_srv  gtlsclient+gtlsserver  ours_h2  (MB/s, 100 MB over one connection)"
ours=() gtls=() h2=()
for r in $(seq 1 "$ROUNDS"); do
  # Alternate the order so neither side always runs first.
  if (( r % 2 )); then a=$(ours_h3); b=$(theirs); else b=$(theirs); a=$(ours_h3); fi
  c=$(ours_h2)
  printf "%6d  %16s  %21s  %7s\n" "$r" "$a" "$b" "$c"
  ours+=("$a") gtls+=("$b") h2+=("$c")
done

# Requests/s of 1 KB responses, one connection, 16 streams.
rps() {
  "$QUICLAB" bench "$1" -k -c 1 -m 16 -d "$BENCH_SECONDS" --json "https://127.0.0.1:$qport/bytes/1k" 2>/dev/null |
    python3 -c 'import json, sys; j = json.load(sys.stdin); print(round(j["req_per_s"]) if j["failed"] == 0 else "fail")' ||
    echo fail
}
rps_h3_a=$(rps --h3); rps_h2=$(rps --h2); rps_h3_b=$(rps --h3)

python3 - "${ours[*]}" "${gtls[*]}" "${h2[*]}" "$rps_h3_a" "$rps_h3_b" "$rps_h2" <<'EOF'
import statistics, sys
def nums(s): return [float(x) for x in s.split() if x != "fail"]
ours, gtls, h2 = nums(sys.argv[1]), nums(sys.argv[2]), nums(sys.argv[3])
rps = [x for x in sys.argv[4:7]]
def med(v): return statistics.median(v) if v else float("nan")
print(f"median MB/s: ours H3 {med(ours):.1f} | gtlsclient+gtlsserver {med(gtls):.1f} | ours H2 {med(h2):.1f}")
print(f"ratio ours/gtls (H3, 100 MB): {med(ours)/med(gtls):.2f}x   (target >= 2.5x)")
print(f"ratio ours H3/H2 (100 MB):    {med(ours)/med(h2):.2f}x   (target >= 0.6x)")
try:
    h3 = (float(rps[0]) + float(rps[1])) / 2
    print(f"1 KB requests/s (1 conn, 16 streams): H3 {h3:.0f} | H2 {float(rps[2]):.0f} | H3/H2 {h3/float(rps[2]):.2f}x")
except ValueError:
    print(f"1 KB requests/s: H3 {rps[0]}/{rps[1]} H2 {rps[2]} (a run failed)")
fails = sum(x == "fail" for s in sys.argv[1:4] for x in s.split())
if fails: print(f"{fails} transfer(s) failed and are left out of the medians")
EOF
