#!/usr/bin/env bash
# The netem commands netlab.sh would run, held to tc's own parser. This kernel
# has no sch_netem, but tc parses the netem arguments before the kernel
# refuses the kind: valid syntax ends in "Specified qdisc kind is unknown"
# (exit 2), bad syntax in tc's usage text (exit 1). On a kernel with netem the
# command succeeds (exit 0) and is removed again. All of it happens on the
# loopback of a throwaway namespace.
source "$(dirname "$0")/lib.sh"

ns=$(new_name)-tc
ip netns add "$ns"
CLEANUP_CMDS+=("ip netns del $ns")

# tc_netem ARGS...: prints "ok" (valid), or "bad <rc> <text>".
tc_netem() {
  local out rc=0
  out=$(ip netns exec "$ns" tc qdisc add dev lo root netem "$@" 2>&1) || rc=$?
  if ((rc == 0)); then
    ip netns exec "$ns" tc qdisc del dev lo root 2>/dev/null || true
    echo ok
  elif ((rc == 2)) && grep -q "Specified qdisc kind is unknown" <<<"$out"; then
    echo ok
  else
    echo "bad $rc ${out//$'\n'/ }"
  fi
}

# The control: the test must be able to fail.
[[ $(tc_netem delay 10ms bogus) == bad\ 1* ]] || fail "tc accepted a bogus netem argument; the check is blind"
[[ $(tc_netem loss gemodel) != ok ]] || fail "tc accepted an incomplete gemodel"

settings=(
  "--rtt-ms 20"
  "--rtt-ms 40 --loss-pct 1"
  "--rtt-ms 40 --jitter-ms 2 --loss-pct 1 --rate-mbit 20"
  "--rtt-ms 100 --jitter-ms 5 --rate-mbit 1.5 --queue-pkts 30"
  "--rtt-ms 10 --loss-pct 2 --loss-model gilbert --burst-pkts 4"
  "--rtt-ms 10 --loss-model gilbert --ge-p 1 --ge-r 30 --ge-bad 80 --ge-good 0.1"
  "--rtt-ms 0.5 --rate-mbit 1000"
  "--loss-pct 0.25"
)
checked=0
for s in "${settings[@]}"; do
  # shellcheck disable=SC2086
  plan=$("$NETLAB" plan $s)
  while read -r kind dir args; do
    [[ $kind == netem ]] || continue
    # shellcheck disable=SC2086
    verdict=$(tc_netem $args)
    [[ $verdict == ok ]] || fail "netlab.sh plan $s ($dir): 'netem $args' is not valid tc syntax: $verdict"
    checked=$((checked + 1))
  done <<<"$plan"
done
((checked == 2 * ${#settings[@]})) || fail "expected $((2 * ${#settings[@]})) netem commands, checked $checked"
echo "netem syntax: $checked commands accepted by tc's parser"
