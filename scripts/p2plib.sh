# shellcheck shell=bash
# Shared by the scripts that run `quiclab peer` pairs in the NAT lab
# (scripts/p2p-matrix.sh, bench/p2p/p2p_bench.sh). Needs $natlab set.
# Processes go into pids, the current lab's name into lab; both are cleaned
# up on exit, whatever happens.
lab=
pids=()
p2p_cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  [[ -n $lab ]] && "$natlab" down "$lab" >/dev/null 2>&1 || true
}
trap p2p_cleanup EXIT
trap 'exit 130' INT TERM

# p2p_wait_for FILE PATTERN [TENTHS]: true once FILE has a line matching PATTERN.
p2p_wait_for() {
  for _ in $(seq 1 "${3:-100}"); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  return 1
}
