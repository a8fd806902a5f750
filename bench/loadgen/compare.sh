#!/usr/bin/env bash
# Checks `quiclab bench --h2` against h2load: both load generators against the
# same nghttpd, in the same run, alternating (h2load, ours, h2load, ours, ...),
# so drift in machine load hits both. Prints every round, the medians and the
# ratio ours/h2load for:
#   1 KB objects, -c 10 -m 10 (h2load -t 1), N requests   -> requests/s
#   five 100 MB objects, one after another on one connection -> MB/s (10^6 bytes/s of body)
#     (one object lasts 0.1 s at today's rates, shorter than this VM's bursts
#     of interference: single-object rounds ranged 680-1190 MB/s)
#
#   bench/loadgen/compare.sh [QUICLAB_BINARY] [ROUNDS] [REQUESTS]
#
# Loopback only; nghttpd is stopped on exit (also on failure or Ctrl-C).
set -euo pipefail

here=$(cd "$(dirname "$0")/../.." && pwd)
QUICLAB=${1:-$here/build/app/quiclab}
ROUNDS=${2:-5}
REQUESTS=${3:-100000}
[[ -x "$QUICLAB" ]] || { echo "compare.sh: no quiclab binary at $QUICLAB (build first)" >&2; exit 2; }
command -v h2load >/dev/null || { echo "compare.sh: h2load missing (Debian: nghttp2-client)" >&2; exit 2; }
command -v nghttpd >/dev/null || [[ -x /usr/sbin/nghttpd ]] || { echo "compare.sh: nghttpd missing (nghttp2-server)" >&2; exit 2; }
export PATH=$PATH:/usr/sbin

work=$(mktemp -d "${TMPDIR:-/tmp}/quiclab-loadgen.XXXXXX")
server_pid=""
cleanup() {
  [[ -n "$server_pid" ]] && { kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; }
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

mkdir -p "$work/htdocs"
head -c 1024 /dev/urandom >"$work/htdocs/1k.bin"
head -c 100000000 /dev/urandom >"$work/htdocs/100m.bin"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -keyout "$work/key.pem" \
  -out "$work/cert.pem" -subj /CN=localhost -addext "subjectAltName=IP:127.0.0.1" >/dev/null 2>&1

# PIN=1: pin the server to CPU 0 and the load generators to CPU 1 (the same for
# both). Off by default: on a machine shared with other work, pinned processes
# cannot move away from a busy core, which made results worse, not steadier.
pin_server=(); pin_client=()
if [[ "${PIN:-0}" == 1 ]] && command -v taskset >/dev/null && (($(nproc) >= 2)); then
  pin_server=(taskset -c 0); pin_client=(taskset -c 1)
fi

for _ in $(seq 1 30); do
  port=$((20000 + RANDOM % 40000))
  ss -Htln "sport = :$port" | grep -q . && continue
  "${pin_server[@]}" nghttpd --address=127.0.0.1 -d "$work/htdocs" "$port" "$work/key.pem" "$work/cert.pem" >"$work/nghttpd.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 100); do
    ss -Htln "sport = :$port" | grep -q . && break 2
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.05
  done
  kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; server_pid=""
done
[[ -n "$server_pid" ]] || { echo "compare.sh: nghttpd did not start" >&2; exit 1; }
base="https://127.0.0.1:$port"

# h2load prints "finished in 2.16s, 46371.05 req/s, 46.61MB/s" and
# "traffic: ... (100000000) data"; body MB/s is computed from the exact byte count.
h2load_run() {  # args: h2load flags...; prints "req_per_s mb_per_s"
  local out secs data
  out=$("${pin_client[@]}" h2load "$@")
  grep -q "succeeded, 0 failed, 0 errored" <<<"$out" || { echo "$out" >&2; echo "h2load had failures" >&2; exit 1; }
  secs=$(sed -n 's/^finished in \([0-9.]*\)\(m\?s\),.*/\1 \2/p' <<<"$out" | awk '{ print ($2 == "ms") ? $1 / 1000 : $1 }')
  data=$(sed -n 's/^traffic:.* (\([0-9]*\)) data.*/\1/p' <<<"$out")
  rps=$(sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p' <<<"$out")
  awk -v r="$rps" -v d="$data" -v s="$secs" 'BEGIN { printf "%.1f %.2f\n", r, d / 1e6 / s }'
}

ours_run() {  # args: quiclab bench flags...; prints "req_per_s mb_per_s"
  local out
  out=$("${pin_client[@]}" "$QUICLAB" bench --h2 --insecure --json "$@")
  python3 -c 'import json,sys; j=json.loads(sys.argv[1]); assert j["failed"]==0 and j["not_issued"]==0, j; print("%.1f %.2f" % (j["req_per_s"], j["mb_per_s"]))' "$out"
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo "machine: $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1); load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "server: nghttpd $(nghttpd --version 2>&1 | awk '{print $2}') on $base; $ROUNDS rounds, alternating"
((${#pin_server[@]})) && echo "pinned: nghttpd on CPU 0, h2load and quiclab bench on CPU 1"
echo
printf "%-34s %6s %14s %14s\n" "workload" "round" "h2load" "quiclab bench"
: >"$work/small_theirs"; : >"$work/small_ours"; : >"$work/bulk_theirs"; : >"$work/bulk_ours"
for r in $(seq 1 "$ROUNDS"); do
  read -r t_rps _ < <(h2load_run -c 10 -m 10 -t 1 -n "$REQUESTS" "$base/1k.bin")
  read -r o_rps _ < <(ours_run -c 10 -m 10 -n "$REQUESTS" "$base/1k.bin")
  echo "$t_rps" >>"$work/small_theirs"; echo "$o_rps" >>"$work/small_ours"
  printf "%-34s %6s %10s r/s %10s r/s\n" "1 KB, -c 10 -m 10, -n $REQUESTS" "$r" "$t_rps" "$o_rps"
  read -r _ t_mbps < <(h2load_run -c 1 -m 1 -t 1 -n 5 "$base/100m.bin")
  read -r _ o_mbps < <(ours_run -c 1 -m 1 -n 5 "$base/100m.bin")
  echo "$t_mbps" >>"$work/bulk_theirs"; echo "$o_mbps" >>"$work/bulk_ours"
  printf "%-34s %6s %9s MB/s %9s MB/s\n" "5 x 100 MB, one connection" "$r" "$t_mbps" "$o_mbps"
done

st=$(median <"$work/small_theirs"); so=$(median <"$work/small_ours")
bt=$(median <"$work/bulk_theirs"); bo=$(median <"$work/bulk_ours")
echo
echo "medians:"
awk -v t="$st" -v o="$so" 'BEGIN { printf "  1 KB req/s:   h2load %10.1f   quiclab bench %10.1f   ratio ours/h2load %.3f\n", t, o, o / t }'
awk -v t="$bt" -v o="$bo" 'BEGIN { printf "  100 MB MB/s:  h2load %10.2f   quiclab bench %10.2f   ratio ours/h2load %.3f\n", t, o, o / t }'
