#!/usr/bin/env bash
# HTTP/2 vs HTTP/3 side by side under emulated delay and loss.
#
# Every cell of the grid (RTT x loss x rate) gets a fresh lab (scripts/netlab.sh):
# client <-> router (impairment) <-> server. `quiclab serve` runs in the server
# namespace; `quiclab get` runs in the client namespace with a fresh connection
# per run. Protocols and repetitions are interleaved (the protocol order rotates
# every run), never all H2 then all H3. Results: OUT/runs.jsonl, runs.csv,
# summary.json, meta.json, report.md and PNG plots.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)

usage() {
  cat <<'USAGE'
Usage: scripts/compare.sh [options]
       scripts/compare.sh merge --out DIR SHARD_DIR...   (one summary from the parts of a --shard run)
  --rtt-ms LIST        round-trip times in ms, comma-separated      (default 50)
  --loss-pct LIST      loss percentages, comma-separated            (default 0,1)
  --loss-model M       bernoulli | gilbert                          (default bernoulli)
  --rate-mbit LIST     rate caps in Mbit/s, 0 = none                (default 0)
  --queue-bdp LIST     with a rate cap: the drop-tail queue in bandwidth-delay products of
                       the cell (bytes: rate x RTT / 8 x Q; e.g. 1,4 for a shallow and a
                       bloated buffer)                                (default 1)
  --jitter-ms LIST     per-direction delay jitter, +- U[0, J] ms     (default 0)
  --reorder on|off     let jitter reorder packets (userspace emulator)  (default off)
  --cc-pairs LIST      congestion-controller pairs as an axis, HTTP/2's/HTTP/3's, e.g.
                       cubic/cubic,bbr/bbr (default: --h2-cc/--h3-cc)
  --cell SPEC          an explicit cell instead of the product of the lists above (repeat it;
                       in a --grid file one per line): space-separated key=value among rtt,
                       loss, model, rate, queue, jitter, reorder (on|off), cc (H2/H3),
                       workloads, protocols, runs; keys left out take the options' values,
                       e.g. --cell "rtt=50 loss=1 model=gilbert workloads=bulk,page"
  --workloads LIST     handshake, bulk, page                        (default handshake,bulk,page)
  --protocols LIST     h2, h2-resumed, h3, h3-0rtt                  (default h2,h3,h3-0rtt)
                       h2-resumed: TLS 1.3 session resumption from the previous run's ticket
                       (HTTP/2 sends no early data); h3-0rtt: the requests as 0-RTT early
                       data. A run of either whose server did not resume (or took no early
                       data) is flagged (shortcut_missed) and not counted as that protocol
  --runs N             runs per protocol per cell and seed (default, per cell in all and split
                       evenly over the seeds: 10 without randomness, 30 where loss, a rate
                       cap or jitter make runs differ, 50 once such a cell is bimodal)
  --bulk-size SIZE     object size of the bulk workload             (default 1m)
  --seed S             seed for the link emulator (default 1; each cell's is S x 1000 + its number)
  --seeds LIST         run every cell once per seed (e.g. 1,2,3): the summary pools them and
                       gives each seed's median and the between-seed spread (default: --seed)
  --emulator E         auto | netem | userspace                     (default auto)
  --h3-cc ALGO         HTTP/3 congestion control (ngtcp2): cubic | reno | bbr | bbr2
                       (default cubic, as Linux TCP under HTTP/2)
  --h2-cc ALGO         HTTP/2 congestion control (Linux TCP, set on the server's socket):
                       one of net.ipv4.tcp_available_congestion_control (default cubic;
                       explicit, because a machine's default may be another, e.g. bbr)
  --h3-ack-thresh N    HTTP/3 client: acknowledge at once after N ack-eliciting packets
                       (default 2: every second packet, as Linux TCP's delayed ACK does for
                       HTTP/2; quiclab get's own default is 8)
  --tls-cipher SUITE   the TLS 1.3 cipher suite both stacks must use (OpenSSL for HTTP/2,
                       GnuTLS for HTTP/3; default TLS_AES_128_GCM_SHA256; 'default': each
                       library's own choice, which differ: AES-256-GCM on both here)
  --tls-group GROUP    the key exchange both must use (default x25519; 'default': each
                       library's own, x25519 for OpenSSL and secp256r1 for GnuTLS here)
  --h2-records R       HTTP/2 TLS record sizes: dynamic (one TCP segment each for the first
                       1 MiB and after 1 s idle, then 16 KiB, as production servers do) | full
                       (always 16 KiB: a large response's first byte waits a round trip longer)
                       (default dynamic)
  --pacing P           matched (default): both paced at 1.25 x cwnd/srtt (ngtcp2 0.12.1's fixed
                       factor; Linux TCP's internal pacing switched on with tcp_pacing_ss_ratio and
                       ca_ratio set to 125) | native: each stack's own (ngtcp2 paces, Linux Cubic on
                       the lab's veths does not) | off: neither paces
  --tcp-metrics M      nosave (default: net.ipv4.tcp_no_metrics_save=1, so no run inherits an
                       earlier run's ssthresh and RTT) | save (the kernel's default)
  --crn on|off         common random numbers (default on): the emulator draws the loss of the
                       k-th packet of run r's connection from (seed, cell, r, direction, k), so
                       HTTP/2's and HTTP/3's run r meet the same losses and the ratio comes
                       from the pairs (userspace emulator; off: one draw per arriving packet)
  --h2-rto-min-ms N    HTTP/2: the server's TCP RTO floor (rto_min on its routes; default: the
                       kernel's 200 ms; QUIC's PTO has none beyond max_ack_delay)
  --hol on|off|keep    per-object stall times of the page workload from the client's traces
                       (default off): HTTP/2 a packet capture in the client's namespace and
                       its TLS key log, HTTP/3 its qlog (bench/compare/stall.py); each object
                       gets stall_ms, the time from its own last byte's arrival to its
                       completion at the application (head-of-line blocking, measured);
                       keep: the traces stay too, in OUT/traces/ (about 2 MB per HTTP/2 run)
  --ablate KNOB        run the first cell with KNOB flipped on each side in turn, beside the
                       baseline: records (h2 16 KiB records), ack (h3 ack-thresh 8), pacing (h2
                       unpaced; h3 unpaced), metrics (TCP metrics saved), tls (each library's own
                       cipher and group, both sides at once), timers (h2 RTO floor 25 ms), cc (h2
                       BBR; h3 BBR). Writes OUT/ablation.md and .json
  --shard I/N          run only part I (0-based) of N: the cells whose number c (1-based, grid
                       order) has (c - 1) mod N == I, with the seeds a whole run gives them;
                       'compare.sh merge' joins the parts (a Kubernetes Indexed Job: I =
                       $JOB_COMPLETION_INDEX)
  --grid FILE          read the options above from FILE (one "--flag value" per line; # comments;
                       a "--cell" line takes the rest of the line as its SPEC)
  --out DIR            output directory                             (default out/compare-<date>)
  --no-fidelity        skip the link fidelity check
  --plan               print the cells, their runs and an estimate of the time, and exit
  --demo               a short grid for the README demo (a few minutes)
  -h, --help           this text
Needs root (network namespaces). The lab is removed on exit, error or Ctrl-C;
cells finished before an interruption stay in OUT and are summarised.
USAGE
}

# merge: the parts of a --shard run into one directory, summary and report.
if [[ ${1:-} == merge ]]; then
  shift
  mout="" parts=()
  while (($#)); do
    case "$1" in
      --out) mout=$2; shift 2 ;;
      -h|--help) usage; exit 0 ;;
      -*) echo "compare merge: unknown option '$1'" >&2; exit 2 ;;
      *) parts+=("$1"); shift ;;
    esac
  done
  [[ -n $mout && ${#parts[@]} -gt 0 ]] || { echo "compare merge: usage: compare.sh merge --out DIR SHARD_DIR..." >&2; exit 2; }
  summarize=${QUICLAB_SUMMARIZE:-$here/build/bench/compare/quiclab-summarize}
  mkdir -p "$mout"
  /usr/bin/python3 "$here/bench/compare/merge.py" --out "$mout" "${parts[@]}" || exit 1
  seed=$(jq -r '.seed' "$mout/meta.json")
  "$summarize" summary --in "$mout/runs.jsonl" --out "$mout" --seed "$seed" || exit 1
  /usr/bin/python3 "$here/bench/compare/report.py" "$mout" || exit 1
  echo "compare: merged ${#parts[@]} parts into $mout" >&2
  exit 0
fi

rtts=50 losses=0,1 loss_model=bernoulli rates=0 workloads=handshake,bulk,page protocols=h2,h3,h3-0rtt
runs="" bulk_size=1m seed=1 emulator=auto out="" fidelity=1 h3_cc=cubic h2_cc=cubic h2_records=dynamic h3_ack_thresh=2 tls_cipher=TLS_AES_128_GCM_SHA256 tls_group=x25519
seeds="" shard="" crn=on pacing=matched tcp_metrics=nosave ablate="" h2_pacing="" h3_pacing="" h2_rto_min_ms=""
plan=0 hol=off queues=1 jitters=0 reorder=off cc_pairs="" cell_specs=() first_cell_only=0 override_h2_cc="" override_h3_cc=""
cmdline="$0 $*"
orig_args=("$@")

parse() {
  while (($#)); do
    case "$1" in
      --rtt-ms) rtts=$2; shift 2 ;;
      --loss-pct) losses=$2; shift 2 ;;
      --loss-model) loss_model=$2; shift 2 ;;
      --rate-mbit) rates=$2; shift 2 ;;
      --queue-bdp) queues=$2; shift 2 ;;
      --jitter-ms) jitters=$2; shift 2 ;;
      --reorder) reorder=$2; shift 2 ;;
      --cc-pairs) cc_pairs=$2; shift 2 ;;
      --cell) cell_specs+=("$2"); shift 2 ;;
      # (--ablate's runs: only the first cell of the grid.)
      --first-cell-only) first_cell_only=1; shift ;;
      --override-h2-cc) override_h2_cc=$2; shift 2 ;;
      --override-h3-cc) override_h3_cc=$2; shift 2 ;;
      --workloads) workloads=$2; shift 2 ;;
      --protocols) protocols=$2; shift 2 ;;
      --runs) runs=$2; shift 2 ;;
      --bulk-size) bulk_size=$2; shift 2 ;;
      --seed) seed=$2; shift 2 ;;
      --seeds) seeds=$2; shift 2 ;;
      --emulator) emulator=$2; shift 2 ;;
      --h3-cc) h3_cc=$2; shift 2 ;;
      --h2-cc) h2_cc=$2; shift 2 ;;
      --h2-records) h2_records=$2; shift 2 ;;
      --h3-ack-thresh) h3_ack_thresh=$2; shift 2 ;;
      --tls-cipher) tls_cipher=$2; shift 2 ;;
      --tls-group) tls_group=$2; shift 2 ;;
      --pacing) pacing=$2; shift 2 ;;
      --crn) crn=$2; shift 2 ;;
      --shard) shard=$2; shift 2 ;;
      --tcp-metrics) tcp_metrics=$2; shift 2 ;;
      --hol) hol=$2; shift 2 ;;
      --ablate) ablate=$2; shift 2 ;;
      --h2-rto-min-ms) h2_rto_min_ms=$2; shift 2 ;;
      # One side's pacing, for --ablate (on | off; overrides --pacing for that side).
      --h2-pacing) h2_pacing=$2; shift 2 ;;
      --h3-pacing) h3_pacing=$2; shift 2 ;;
      --out) out=$2; shift 2 ;;
      --no-fidelity) fidelity=0; shift ;;
      --plan) plan=1; shift ;;
      --grid)
        [[ -r "$2" ]] || { echo "compare: cannot read grid file '$2'" >&2; exit 2; }
        local args=()
        while read -r line; do
          line=${line%%#*}
          [[ -z "${line// }" ]] && continue
          read -ra words <<<"$line"
          if [[ ${words[0]} == --cell ]]; then
            args+=(--cell "${words[*]:1}")
          else
            args+=("${words[@]}")
          fi
        done <"$2"
        shift 2
        parse "${args[@]}"
        ;;
      --demo)
        rtts=50 losses=0,2 workloads=handshake,page runs=${runs:-5}; shift ;;
      -h|--help) usage; exit 0 ;;
      *) echo "compare: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
  done
}
parse "$@"

for v in "$rtts" "$losses" "$rates" "$queues" "$jitters"; do
  [[ "$v" =~ ^[0-9.]+(,[0-9.]+)*$ ]] || { echo "compare: '$v' is not a comma-separated list of numbers" >&2; exit 2; }
done
[[ -z "$runs" || "$runs" =~ ^[1-9][0-9]*$ ]] || { echo "compare: --runs needs a positive integer" >&2; exit 2; }
check_lists() {  # workloads protocols: exit 2 on a name we do not know
  local w p
  for w in ${1//,/ }; do
    case "$w" in handshake|bulk|page) ;; *) echo "compare: unknown workload '$w'" >&2; exit 2 ;; esac
  done
  for p in ${2//,/ }; do
    case "$p" in h2|h2-resumed|h3|h3-0rtt) ;; *) echo "compare: unknown protocol '$p' (h2, h2-resumed, h3, h3-0rtt)" >&2; exit 2 ;; esac
  done
}
check_lists "$workloads" "$protocols"
case "$reorder" in on|off) ;; *) echo "compare: --reorder takes on or off" >&2; exit 2 ;; esac
case "$h3_cc" in cubic|reno|bbr|bbr2) ;; *) echo "compare: unknown --h3-cc '$h3_cc'" >&2; exit 2 ;; esac
[[ "$h3_ack_thresh" =~ ^[1-9][0-9]?$ ]] && ((h3_ack_thresh <= 64)) ||
  { echo "compare: --h3-ack-thresh needs 1..64" >&2; exit 2; }
case "$tls_cipher" in TLS_AES_128_GCM_SHA256|TLS_AES_256_GCM_SHA384|TLS_CHACHA20_POLY1305_SHA256|default) ;;
  *) echo "compare: unknown --tls-cipher '$tls_cipher'" >&2; exit 2 ;; esac
case "$tls_group" in x25519|secp256r1|secp384r1|default) ;;
  *) echo "compare: unknown --tls-group '$tls_group'" >&2; exit 2 ;; esac
tls_pin=()
[[ $tls_cipher != default ]] && tls_pin+=(--tls-cipher "$tls_cipher")
[[ $tls_group != default ]] && tls_pin+=(--tls-group "$tls_group")
case "$h2_records" in dynamic|full) ;; *) echo "compare: unknown --h2-records '$h2_records' (dynamic, full)" >&2; exit 2 ;; esac
seeds=${seeds:-$seed}
[[ $seeds =~ ^[0-9]+(,[0-9]+)*$ ]] || { echo "compare: --seeds needs a comma-separated list of integers" >&2; exit 2; }
IFS=, read -ra seed_list <<<"$seeds"
seed=${seed_list[0]}
shard_i=0 shard_n=1
if [[ -n $shard ]]; then
  [[ $shard =~ ^([0-9]+)/([1-9][0-9]*)$ ]] && ((BASH_REMATCH[1] < BASH_REMATCH[2])) ||
    { echo "compare: --shard needs I/N with 0 <= I < N (e.g. 0/4)" >&2; exit 2; }
  shard_i=${BASH_REMATCH[1]} shard_n=${BASH_REMATCH[2]}
fi
case "$crn" in on|off) ;; *) echo "compare: --crn takes on or off" >&2; exit 2 ;; esac
[[ $crn == on && $emulator == netem ]] &&
  { echo "compare: --crn on needs the userspace emulator (netem draws per arriving packet): use --crn off with --emulator netem" >&2; exit 2; }
case "$pacing" in matched|native|off) ;; *) echo "compare: unknown --pacing '$pacing' (matched, native, off)" >&2; exit 2 ;; esac
case "$tcp_metrics" in nosave|save) ;; *) echo "compare: unknown --tcp-metrics '$tcp_metrics' (nosave, save)" >&2; exit 2 ;; esac
case "$hol" in on|off|keep) ;; *) echo "compare: --hol takes on, off or keep" >&2; exit 2 ;; esac
if [[ $hol != off ]] && ! { command -v tcpdump >/dev/null && /usr/bin/python3 -c 'import dpkt, cryptography' 2>/dev/null; }; then
  echo "compare: --hol needs tcpdump, python3-dpkt and python3-cryptography (scripts/setup.sh installs them)" >&2; exit 2
fi
case "$ablate" in ""|records|ack|pacing|metrics|tls|timers|cc) ;;
  *) echo "compare: unknown --ablate '$ablate' (records, ack, pacing, metrics, tls, timers, cc)" >&2; exit 2 ;; esac
[[ -z $h2_rto_min_ms || ( $h2_rto_min_ms =~ ^[1-9][0-9]*$ && $h2_rto_min_ms -le 1000 ) ]] ||
  { echo "compare: --h2-rto-min-ms needs 1..1000" >&2; exit 2; }
for v in "$h2_pacing" "$h3_pacing"; do
  case "$v" in ""|on|off) ;; *) echo "compare: --h2-pacing/--h3-pacing take on or off" >&2; exit 2 ;; esac
done
# What each stack does under --pacing (the per-side options win).
case "$pacing" in
  matched) h2_pacing=${h2_pacing:-on} h3_pacing=${h3_pacing:-on} ;;
  native) h2_pacing=${h2_pacing:-off} h3_pacing=${h3_pacing:-on} ;;
  off) h2_pacing=${h2_pacing:-off} h3_pacing=${h3_pacing:-off} ;;
esac
cc_pairs=${cc_pairs:-$h2_cc/$h3_cc}

# The grid: explicit --cell specs, or the product of the lists (RTT, loss,
# rate, queue (with a rate only), jitter, controller pair), in that order.
# Each cell is one line of key=value words; every key is present.
cells=()
if ((${#cell_specs[@]})); then
  for spec in "${cell_specs[@]}"; do
    declare -A kv=([rtt]=${rtts%%,*} [loss]=${losses%%,*} [model]=$loss_model [rate]=${rates%%,*} [queue]=${queues%%,*}
      [jitter]=${jitters%%,*} [reorder]=$reorder [cc]=${cc_pairs%%,*} [workloads]=$workloads [protocols]=$protocols [runs]=${runs:-auto})
    for word in $spec; do
      [[ $word == *=* && -n ${kv[${word%%=*}]+x} ]] ||
        { echo "compare: --cell '$spec': '$word' is not key=value with a key among ${!kv[*]}" >&2; exit 2; }
      kv[${word%%=*}]=${word#*=}
    done
    [[ ${kv[rate]} == 0 ]] && kv[queue]=0  # no rate: no standing queue to size
    cells+=("rtt=${kv[rtt]} loss=${kv[loss]} model=${kv[model]} rate=${kv[rate]} queue=${kv[queue]} jitter=${kv[jitter]} reorder=${kv[reorder]} cc=${kv[cc]} workloads=${kv[workloads]} protocols=${kv[protocols]} runs=${kv[runs]}")
    unset kv
  done
else
  for rtt in ${rtts//,/ }; do
    for loss in ${losses//,/ }; do
      for rate in ${rates//,/ }; do
        qs=$queues
        [[ $rate == 0 ]] && qs=0  # no rate: no standing queue to size
        for q in ${qs//,/ }; do
          for j in ${jitters//,/ }; do
            for cc in ${cc_pairs//,/ }; do
              cells+=("rtt=$rtt loss=$loss model=$loss_model rate=$rate queue=$q jitter=$j reorder=$reorder cc=$cc workloads=$workloads protocols=$protocols runs=${runs:-auto}")
            done
          done
        done
      done
    done
  done
fi
((first_cell_only)) && cells=("${cells[0]}")
# (--ablate cc: one side's controller in every cell.)
for i in "${!cells[@]}"; do
  [[ ${cells[$i]} =~ cc=([a-z0-9]+)/([a-z0-9]+) ]] || continue
  cells[$i]=${cells[$i]/cc=${BASH_REMATCH[1]}\/${BASH_REMATCH[2]}/cc=${override_h2_cc:-${BASH_REMATCH[1]}}\/${override_h3_cc:-${BASH_REMATCH[2]}}}
done
# Check every cell before the first runs.
avail=" $(sysctl -n net.ipv4.tcp_available_congestion_control 2>/dev/null) "
for c in "${cells[@]}"; do
  declare -A kv=()
  for word in $c; do kv[${word%%=*}]=${word#*=}; done
  for k in rtt loss rate queue jitter; do
    [[ ${kv[$k]} =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "compare: cell '$c': $k '${kv[$k]}' is not a number" >&2; exit 2; }
  done
  case "${kv[model]}" in bernoulli|gilbert) ;; *) echo "compare: cell '$c': unknown loss model '${kv[model]}'" >&2; exit 2 ;; esac
  case "${kv[reorder]}" in on|off) ;; *) echo "compare: cell '$c': reorder takes on or off" >&2; exit 2 ;; esac
  [[ ${kv[runs]} == auto || ${kv[runs]} =~ ^[1-9][0-9]*$ ]] || { echo "compare: cell '$c': runs needs a positive integer" >&2; exit 2; }
  [[ ${kv[cc]} =~ ^([a-z0-9]+)/([a-z0-9]+)$ ]] ||
    { echo "compare: cell '$c': cc needs HTTP/2's/HTTP/3's controller, e.g. cubic/cubic" >&2; exit 2; }
  [[ $avail == *" ${BASH_REMATCH[1]} "* ]] || modprobe "tcp_${BASH_REMATCH[1]}" 2>/dev/null &&
    avail=" $(sysctl -n net.ipv4.tcp_available_congestion_control 2>/dev/null) "
  [[ $avail == *" ${BASH_REMATCH[1]} "* ]] || {
    echo "compare: HTTP/2 controller '${BASH_REMATCH[1]}' is not in this kernel's tcp_available_congestion_control" >&2; exit 2; }
  case "${BASH_REMATCH[2]}" in cubic|reno|bbr|bbr2) ;; *) echo "compare: cell '$c': unknown HTTP/3 controller '${BASH_REMATCH[2]}'" >&2; exit 2 ;; esac
  check_lists "${kv[workloads]}" "${kv[protocols]}"
  unset kv
done
if ((plan)); then
  bulk_bytes=$(numfmt --from=iec "${bulk_size^^}" 2>/dev/null) || { echo "compare: bad --bulk-size '$bulk_size'" >&2; exit 2; }
  exec /usr/bin/python3 "$here/bench/compare/plan.py" --seeds "${#seed_list[@]}" --bulk "$bulk_bytes" \
    --shard "$shard_i/$shard_n" "${cells[@]}"
fi
[[ $(id -u) -eq 0 ]] || { echo "compare: needs root for network namespaces" >&2; exit 2; }

bin=${QUICLAB_BIN:-$here/build/app/quiclab}
summarize=${QUICLAB_SUMMARIZE:-$here/build/bench/compare/quiclab-summarize}
netlab="$here/scripts/netlab.sh"
for f in "$bin" "$summarize"; do
  [[ -x "$f" ]] || { echo "compare: $f is missing; run scripts/build.sh" >&2; exit 2; }
done
out=${out:-$here/out/compare-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"

# --ablate KNOB: the first cell of the grid as a baseline and with KNOB
# flipped on one side at a time, each a full compare.sh run of its own (same
# seed, fresh lab), then one table (bench/compare/ablate.py).
if [[ -n $ablate ]]; then
  first=(--first-cell-only --ablate "")
  declare -A flip=()
  case "$ablate" in
    records) flip[h2]="--h2-records full" ;;
    ack) flip[h3]="--h3-ack-thresh 8" ;;
    pacing) flip[h2]="--h2-pacing off" flip[h3]="--h3-pacing off" ;;
    metrics) flip[h2]="--tcp-metrics save" ;;
    tls) flip[both]="--tls-cipher default --tls-group default" ;;
    timers) flip[h2]="--h2-rto-min-ms 25" ;;
    cc) flip[h2]="--override-h2-cc bbr" flip[h3]="--override-h3-cc bbr" ;;
  esac
  variants=(baseline "${!flip[@]}")
  for v in "${variants[@]}"; do
    extra=()
    [[ $v != baseline ]] && read -ra extra <<<"${flip[$v]}"
    echo "compare: ablation of $ablate: ${v}${extra:+ (${extra[*]})}" >&2
    "$0" "${orig_args[@]}" "${first[@]}" "${extra[@]}" --out "$out/ablate-$v" ||
      { echo "compare: the $v run of the ablation failed" >&2; exit 1; }
    [[ $v == baseline ]] || printf '%s\n' "${flip[$v]}" >"$out/ablate-$v/flip.txt"
  done
  /usr/bin/python3 "$here/bench/compare/ablate.py" --knob "$ablate" "$out" || exit 1
  exit 0
fi
: >"$out/runs.jsonl"
lab="qlc$$"
port=4433
work=$(mktemp -d /tmp/quiclab-compare.XXXXXX)
server_pid=""

stop_server() {
  if [[ -n "$server_pid" ]]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}
cleanup() {
  stop_server
  [[ -n ${capture_pid:-} ]] && { kill -INT "$capture_pid" 2>/dev/null || true; wait "$capture_pid" 2>/dev/null || true; }
  "$netlab" down "$lab" >/dev/null 2>&1 || true
  rm -rf "$work"
}
finish() {
  cleanup
  if [[ -s "$out/runs.jsonl" ]]; then
    "$summarize" summary --in "$out/runs.jsonl" --out "$out" --seed "$seed" || true
    /usr/bin/python3 "$here/bench/compare/report.py" "$out" || echo "compare: report failed" >&2
  fi
}
trap finish EXIT
trap 'echo "compare: interrupted; finished cells are kept in $out" >&2; exit 130' INT TERM

# The page workload: 50 objects of mixed sizes (one HTML page, scripts and
# styles, images), fetched concurrently on one connection.
page_paths() {
  local sizes=(30k 12k 48k 7k 22k 64k 5k 3k 90k 16k
               2k 8k 120k 35k 4k 11k 27k 6k 150k 9k
               14k 3k 40k 18k 75k 2k 33k 10k 5k 60k
               21k 7k 44k 13k 100k 4k 26k 8k 52k 15k
               3k 38k 12k 70k 6k 19k 9k 29k 2k 85k)
  for s in "${sizes[@]}"; do printf '/bytes/%s\n' "$s"; done
}

run_get() {  # proto workload [traced] -> get's JSON lines on stdout
  local proto=$1 wl=$2 traced=${3:-} base="https://$server_addr:$port" flags=() env=()
  case "$proto" in
    h2) flags=(--h2) ;;
    h3) flags=(--h3 --ack-thresh "$h3_ack_thresh") ;;
    h2-resumed) flags=(--h2 --session-file "$work/session-h2.json") ;;
    h3-0rtt) flags=(--h3 --ack-thresh "$h3_ack_thresh" --session-file "$work/session-h3.json") ;;
  esac
  if [[ -n $traced ]]; then  # --hol: the HTTP/2 client's TLS secrets, the HTTP/3 client's qlog
    case "$proto" in h2*) env=(env "SSLKEYLOGFILE=$work/trace/keys") ;; h3*) flags+=(--qlog-dir "$work/trace/qlog") ;; esac
  fi
  local urls=()
  case "$wl" in
    handshake) urls=("$base/bytes/1k") ;;
    bulk) urls=("$base/bytes/$bulk_size") ;;
    page) while read -r p; do urls+=("$base$p"); done < <(page_paths) ;;
  esac
  timeout 120 "$netlab" exec "$lab" client -- "${env[@]}" "$bin" --log-level error get "${flags[@]}" "${tls_pin[@]}" --insecure -m 100 \
    --json "${urls[@]}"
}

# --hol: the traces of one page run. HTTP/2's packet capture is taken on the
# client's veth (kernel arrival times), started before the run and stopped
# after it; HTTP/3's qlog is the client's own.
capture_pid=""
trace_start() {  # proto
  rm -rf "$work/trace"
  mkdir -p "$work/trace/qlog"
  [[ $1 == h2* ]] || return 0
  "$netlab" exec "$lab" client -- tcpdump -i "$lab-c" --immediate-mode -U -B 8192 -w "$work/trace/c.pcap" "tcp port $port" \
    2>"$work/trace/tcpdump.err" &
  capture_pid=$!
  for _ in $(seq 1 100); do grep -q "listening on" "$work/trace/tcpdump.err" 2>/dev/null && return 0; sleep 0.05; done
  echo "compare: tcpdump did not start: $(head -3 "$work/trace/tcpdump.err")" >&2
}
trace_stop() {  # proto: get.out gains stall_ms per object when the traces allow
  local proto=$1
  if [[ -n $capture_pid ]]; then
    # tcpdump drops what it has not read from its buffer yet when it is
    # interrupted: first let the file stop growing (bounded, 3 s).
    local size=-1 now
    for _ in $(seq 1 30); do
      now=$(stat -c %s "$work/trace/c.pcap" 2>/dev/null || echo 0)
      [[ $now == "$size" ]] && break
      size=$now
      sleep 0.1
    done
    kill -INT "$capture_pid" 2>/dev/null || true
    wait "$capture_pid" 2>/dev/null || true
    capture_pid=""
    # Complete: nothing dropped, and every packet the filter took was written.
    local got took
    got=$(sed -n 's/^\([0-9]*\) packets\? captured$/\1/p' "$work/trace/tcpdump.err")
    took=$(sed -n 's/^\([0-9]*\) packets\? received by filter$/\1/p' "$work/trace/tcpdump.err")
    if ! grep -q "^0 packets dropped by kernel" "$work/trace/tcpdump.err" || [[ -z $got || $got != "$took" ]]; then
      echo "compare: $proto run $r: no stall times: the capture is not complete ($got of ${took:-?} packets written; $(tail -1 "$work/trace/tcpdump.err"))" >&2
      return 0
    fi
  fi
  local args=(h3 --qlog-dir "$work/trace/qlog")
  [[ $proto == h2* ]] && args=(h2 --pcap "$work/trace/c.pcap" --keylog "$work/trace/keys" --port "$port")
  if /usr/bin/python3 "$here/bench/compare/stall.py" "${args[@]}" <"$work/get.out" >"$work/get.stall" 2>"$work/trace/stall.err"; then
    mv "$work/get.stall" "$work/get.out"
  else
    echo "compare: $proto run $r: no stall times: $(tail -1 "$work/trace/stall.err")" >&2
  fi
  if [[ $hol == keep ]]; then
    local keep="$out/traces/cell$cell-seed$sd-pass$pass-run$r-$proto"
    mkdir -p "$keep"
    cp -r "$work/trace/." "$keep/"
    cp "$work/get.out" "$keep/get.jsonl"
  fi
}

# The session file of a protocol that resumes (h2-resumed, h3-0rtt).
session_of() { case "$1" in h2-resumed) echo "$work/session-h2.json" ;; h3-0rtt) echo "$work/session-h3.json" ;; esac; }
declare -A used_ticket=()
# A fresh ticket for a resuming protocol's next run: one the runs have not
# used yet (a ticket is good for one 0-RTT: the server's anti-replay refuses
# it again), from a handshake-workload connection that is not recorded. A
# run whose ticket did not arrive (its connection ended first, e.g. under
# loss) would otherwise leave the next run a used one.
fresh_ticket() {
  local proto=$1 file hash attempt
  file=$(session_of "$proto")
  for attempt in 1 2 3; do
    hash=$(sha256sum "$file" 2>/dev/null | cut -c1-64 || true)
    [[ -n $hash && $hash != "${used_ticket[$proto]:-}" ]] && break
    run_get "$proto" handshake >/dev/null 2>&1 || true
  done
  used_ticket[$proto]=$(sha256sum "$file" 2>/dev/null | cut -c1-64 || true)
}

total_cells=${#cells[@]}
cell=0
cells_run=() extended=()
start=$(date +%s)
started_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
# Provenance: the commit the binaries were built from, and whether the tree had changes.
commit=$(git -C "$here" rev-parse HEAD 2>/dev/null || echo unknown)
dirty=$( [[ -n $(git -C "$here" status --porcelain --untracked-files=no 2>/dev/null) ]] && echo true || echo false)
fidelity_json=null
mkdir -p "$work/root"

for spec in "${cells[@]}"; do
      cell=$((cell + 1))
      # --shard I/N: another part runs this cell (its seed stays the cell's).
      (((cell - 1) % shard_n == shard_i)) || continue
      declare -A kv=()
      for word in $spec; do kv[${word%%=*}]=${word#*=}; done
      rtt=${kv[rtt]} loss=${kv[loss]} cell_model=${kv[model]} rate=${kv[rate]} queue=${kv[queue]}
      jitter=${kv[jitter]} cell_reorder=${kv[reorder]} cc=${kv[cc]}
      cell_h2_cc=${cc%/*} cell_h3_cc=${cc#*/}
      IFS=, read -ra wl_list <<<"${kv[workloads]}"
      IFS=, read -ra proto_list <<<"${kv[protocols]}"
      cell_runs=${kv[runs]}
      [[ $cell_runs == auto ]] && cell_runs=""
      unset kv
      [[ $rate == 0 ]] && queue=0
      cells_run+=("$cell")
      # Runs: a cell's default count (10 without randomness; 30 where loss, a
      # bottleneck's queue or jitter make runs differ; 50 once such a cell's
      # runs are bimodal) is its total, split evenly over the seeds.
      noisy=0
      [[ $loss != 0 || $rate != 0 || $jitter != 0 ]] && noisy=1
      per_seed() { echo $((($1 + ${#seed_list[@]} - 1) / ${#seed_list[@]})); }
      n=${cell_runs:-$(per_seed $((noisy ? 30 : 10)))}
      # Pass 1 runs 1..n of every seed; a noisy cell found bimodal then gets
      # pass 2 over the seeds again (fresh labs, the same cell seeds, new
      # epochs), runs n+1..per_seed(50).
      pass=1 first_run=1 last_run=$n
      while :; do
      for sd in "${seed_list[@]}"; do
        # One seed per cell and --seeds entry, from the cell's place in the grid.
        cell_seed=$((sd * 1000 + cell))
        link=(--rtt-ms "$rtt" --loss-pct "$loss" --loss-model "$cell_model" --seed "$cell_seed" --emulator "$emulator")
        [[ $crn == on ]] && link+=(--draws flow)
        [[ "$rate" != 0 ]] && link+=(--rate-mbit "$rate")
        if [[ $queue != 0 ]]; then
          # The queue in bytes (fair to QUIC's smaller datagrams), Q x the cell's BDP;
          # the packet bound only as a backstop.
          qbytes=$(awk -v q="$queue" -v m="$rate" -v r="$rtt" 'BEGIN{b = q*m*1e6*(r/1000)/8; printf "%d", (b < 3000 ? 3000 : b + 0.5)}')
          link+=(--queue-bytes "$qbytes" --queue-pkts $((qbytes / 64 + 16)))
        fi
        [[ $jitter != 0 ]] && link+=(--jitter-ms "$jitter")
        [[ $cell_reorder == on ]] && link+=(--reorder)
        echo "compare: cell $cell/$total_cells, seed $sd: rtt ${rtt} ms, loss ${loss} % ($cell_model), rate ${rate} Mbit/s, queue ${queue} BDP, jitter ${jitter} ms, reorder $cell_reorder, cc $cc, $n runs x ${#proto_list[@]} protocols x ${#wl_list[@]} workloads" >&2
        "$netlab" up --name "$lab" "${link[@]}" >"$work/lab.log" 2>&1 || { cat "$work/lab.log" >&2; exit 1; }
        server_addr=$("$netlab" addr "$lab" server)
        # Pacing at ngtcp2's 1.25 x cwnd/srtt in slow start and congestion
        # avoidance alike (Linux: 200 % and 120 %), and the TCP metrics cache.
        if [[ $pacing == matched ]]; then
          "$netlab" exec "$lab" server -- sysctl -qw net.ipv4.tcp_pacing_ss_ratio=125 net.ipv4.tcp_pacing_ca_ratio=125
        fi
        if [[ $tcp_metrics == save ]]; then
          for ns in server client; do "$netlab" exec "$lab" "$ns" -- sysctl -qw net.ipv4.tcp_no_metrics_save=0; done
        fi
        if [[ -n $h2_rto_min_ms ]]; then
          # rto_min on every route of the server namespace: TCP's RTO floor for its sends.
          while read -r route; do
            [[ -n $route ]] || continue
            read -ra words <<<"$route"
            "$netlab" exec "$lab" server -- ip route change "${words[@]}" rto_min "${h2_rto_min_ms}ms"
          done < <("$netlab" exec "$lab" server -- ip -4 route show)
        fi
        : >"$work/conn.jsonl"
        "$netlab" exec "$lab" server -- "$bin" --log-level warn serve --listen "$server_addr:$port" --root "$work/root" --cc "$cell_h3_cc" --tcp-cc "$cell_h2_cc" --tls-records "$h2_records" "${tls_pin[@]}" \
          --tcp-pacing "$h2_pacing" --quic-pacing "$h3_pacing" --conn-log "$work/conn.jsonl" \
          >"$work/serve.out" 2>"$work/serve.log" &
        server_pid=$!
        for _ in $(seq 1 100); do grep -q "^listening h3" "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
        # A new server: the sessions of the last cell are no good.
        rm -f "$work/session-h2.json" "$work/session-h3.json"
        used_ticket=()
        target=$last_run
        for ((r = first_run; r <= last_run; r++)); do
          # Rotate the protocol order every run so no protocol always goes first.
          for ((k = 0; k < ${#proto_list[@]}; k++)); do
            proto=${proto_list[$(((k + r) % ${#proto_list[@]}))]}
            for wl in "${wl_list[@]}"; do
              # Run r of every protocol is epoch r of the emulator: their
              # connections' k-th packets meet the same loss draw.
              case "$proto" in h2-resumed|h3-0rtt) fresh_ticket "$proto" ;; esac
              [[ $crn == on ]] && "$netlab" epoch "$lab" "$r"
              traced=""
              [[ $hol != off && $wl == page ]] && traced=1 && trace_start "$proto"
              t0=$(date +%s%3N)
              run_get "$proto" "$wl" $traced >"$work/get.out" 2>>"$work/get.log" || true
              t1=$(date +%s%3N)
              [[ -n $traced ]] && trace_stop "$proto"
              # The server's record of the run's connection (serve --conn-log),
              # written when the connection ends: wait for one that began
              # within the run, a bounded while (an HTTP/3 connection whose
              # CONNECTION_CLOSE was lost ends only at its idle timeout).
              for _ in $(seq 1 50); do
                (($(jq -s --argjson a "$t0" --argjson b "$t1" \
                  '[.[] | select(.start_unix_ms >= $a and .start_unix_ms <= $b)] | length' "$work/conn.jsonl") > 0)) && break
                sleep 0.1
              done
              cp "$work/conn.jsonl" "$work/server.jsonl"
              "$summarize" run --protocol "$proto" --rtt-ms "$rtt" --loss-pct "$loss" --rate-mbit "$rate" \
                --workload "$wl" --run "$r" --seed "$sd" --server-records "$work/server.jsonl" \
                --cell "$cell" --cell-seed "$cell_seed" --commit "$commit" --loss-model "$cell_model" \
                --queue-bdp "$queue" --jitter-ms "$jitter" $([[ $cell_reorder == on ]] && echo --reorder) --cc "$cc" \
                --run-window "$t0-$t1" \
                <"$work/get.out" >>"$out/runs.jsonl" || true
            done
          done
          elapsed=$(( $(date +%s) - start ))
          done_frac=$(awk -v c=$((cell - 1)) -v r="$r" -v n="$n" -v t="$total_cells" 'BEGIN{print (c + r/n)/t}')
          eta=$(awk -v e="$elapsed" -v f="$done_frac" 'BEGIN{ if (f>0) printf "%d", e/f - e; else print "?"}')
          printf '\rcompare: cell %d/%d run %d/%d, elapsed %ds, about %ss left   ' "$cell" "$total_cells" "$r" "$target" "$elapsed" "$eta" >&2
        done
        echo >&2
        stop_server
        "$netlab" down "$lab" >"$work/down.log" 2>&1 || true
        # What the emulator really did in this cell (its exit counters), beside what was asked.
        sed -n 's/^netlab: [^ ]*: emulator counters: //p' "$work/down.log" | tail -n 1 |
          jq -c --argjson cell "$cell" --argjson seed "$sd" --argjson rtt "$rtt" --argjson loss "$loss" \
            --argjson rate "$rate" --arg model "$cell_model" --argjson queue "$queue" --argjson jitter "$jitter" \
            --arg reorder "$cell_reorder" --arg cc "$cc" \
            --argjson pass "$pass" \
            '{cell: $cell, seed: $seed, pass: $pass, rtt_ms: $rtt, loss_pct: $loss, rate_mbit: $rate, loss_model: $model,
              queue_bdp: $queue, jitter_ms: $jitter, reorder: ($reorder == "on"), cc: $cc,
              c2s: .c2s, s2c: .s2c}' >>"$out/emulator.jsonl" 2>/dev/null || true
      done
      # A noisy cell whose runs fall into two modes (an RTO in some runs, not
      # in others), judged on all its seeds' runs, gets 50 runs in all, unless
      # --runs (or the cell's runs=) fixed the count.
      if ((pass == 1 && noisy)) && [[ -z $cell_runs ]] && (($(per_seed 50) > n)) &&
        "$summarize" bimodal --in "$out/runs.jsonl" --cell "$cell" >/dev/null 2>&1; then
        extended+=("$cell")
        pass=2 first_run=$((n + 1)) last_run=$(per_seed 50)
        printf 'compare: cell %d is bimodal after %d runs per seed: runs %d..%d of each seed follow (50 in all)\n' \
          "$cell" "$n" "$first_run" "$last_run" >&2
        continue
      fi
      break
      done
      if [[ $fidelity == 1 && "$fidelity_json" == null && "$loss" != 0 ]]; then
        fidelity_json=$("$netlab" check "${link[@]}" 2>/dev/null | grep "^{\"emulator\"" | tail -1) || fidelity_json=null
        [[ -z "$fidelity_json" ]] && fidelity_json=null
      fi
done

emul=$(grep -o 'emulator[^,]*' "$work/lab.log" 2>/dev/null | head -1 || true)
# The sysctls that shape TCP here (the host's; the lab's namespaces set their
# own tcp_no_metrics_save and, with --pacing matched, the pacing ratios).
sysctls=$(for k in net.ipv4.tcp_congestion_control net.ipv4.tcp_available_congestion_control net.core.default_qdisc \
  net.ipv4.tcp_slow_start_after_idle net.ipv4.tcp_no_metrics_save net.ipv4.tcp_pacing_ss_ratio \
  net.ipv4.tcp_pacing_ca_ratio net.ipv4.tcp_ecn net.ipv4.tcp_rmem net.ipv4.tcp_wmem net.core.rmem_max net.core.wmem_max; do
  printf '%s\t%s\n' "$k" "$(sysctl -n "$k" 2>/dev/null)"
done | /usr/bin/python3 -c 'import json,sys; print(json.dumps(dict(l.rstrip("\n").split("\t", 1) for l in sys.stdin)))')
# The controllers the servers really used, from their connection records.
observed_cc=$(jq -sc '[.[] | .server_connections[]? | {p: .protocol, c: .congestion_control}] | group_by(.p)
  | map({(.[0].p): (map(.c) | unique)}) | add // {}' "$out/runs.jsonl" 2>/dev/null || echo '{}')
libs=$(dpkg-query -W -f='${Package} ${Version}\n' libnghttp2-14 libngtcp2-9 libnghttp3-3 libuv1 libssl3 libgnutls30 2>/dev/null | tr '\n' ';')
cat >"$out/meta.json" <<META
{"command": $(printf '%s' "$cmdline" | /usr/bin/python3 -c 'import json,sys;print(json.dumps(sys.stdin.read()))'),
 "machine": "$(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo)",
 "cpu": "$(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)",
 "kernel": "$(uname -r)",
 "commit": "$commit",
 "dirty": $dirty,
 "sysctls": $sysctls,
 "congestion_control_observed": $observed_cc,
 "start": "$started_at",
 "end": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
 "load_before": "$load_before",
 "load_after": "$(cut -d' ' -f1-3 /proc/loadavg)",
 "libraries": "$libs",
 "emulator": "$emul",
 "h3_congestion_control": "$h3_cc",
 "h2_congestion_control": "$h2_cc",
 "cc_pairs": "$cc_pairs",
 "grid": $(printf '%s\n' "${cells[@]}" | jq -R . | jq -sc .),
 "h2_tls_records": "$h2_records",
 "h3_ack_thresh": $h3_ack_thresh,
 "tls_cipher": "$tls_cipher",
 "tls_group": "$tls_group",
 "pacing": "$pacing",
 "h2_pacing": "$h2_pacing",
 "h3_pacing": "$h3_pacing",
 "tcp_metrics": "$tcp_metrics",
 "hol_traces": "$hol",
 "h2_rto_min_ms": ${h2_rto_min_ms:-null},
 "seed": $seed,
 "cell_seeds": "S x 1000 + the cell number (1-based, grid order), for each S of seeds",
 "crn": "$crn",
 "shard": "$shard_i/$shard_n",
 "cells_total": $total_cells,
 "cells": [$(IFS=,; echo "${cells_run[*]}")],
 "seeds": [$seeds],
 "runs_per_cell": "${runs:-10 without randomness / 30 with loss, a rate cap or jitter / 50 when bimodal, in all over the seeds}",
 "extended_to_50": [$(IFS=,; echo "${extended[*]}")],
 "date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
 "fidelity": $fidelity_json}
META
echo "compare: done in $(( $(date +%s) - start )) s; results in $out" >&2
