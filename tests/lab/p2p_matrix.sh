#!/usr/bin/env bash
# The whole NAT matrix in the lab (scripts/p2p-matrix.sh): every ordered pair
# of full-cone, address-restricted, port-restricted and symmetric, plus the
# same-NAT case, 3 trials each, a 1 MB fetch checked byte for byte over every
# punched path. Every cell must give the expected outcome (docs/p2p.md); the
# "no direct path" cells must end in the failed verdict inside the timeout.
# With --turn (coturn in every cell's lab, both peers use it): those three
# cells are relayed, every other cell stays direct, and the matrix has no
# failing cell. With --birthday as well: port-restricted <-> symmetric (both
# ways) is direct by birthday punching in most trials (relayed otherwise), only
# symmetric <-> symmetric is relayed.
# Usage: p2p_matrix.sh [--turn] [--birthday]
source "$(dirname "$0")/lib.sh"
out=$TEST_TMP/matrix
turn=() birthday=()
for arg in "$@"; do
  case $arg in
    --turn) turn=(--turn) ;;
    --birthday) birthday=(--birthday) ;;
    *) fail "unknown argument $arg" ;;
  esac
done
# CI keeps only the head of a failing test's output: the reason and the
# unexpected cells' problems come first, the matrix and the run's log after.
fail() {
  echo "FAIL: $*" >&2
  [[ -f $out/matrix.json ]] && jq -r '.cells[] | select(.problems | length > 0) | "\(.cell): \(.problems | join("; "))"' \
    "$out/matrix.json" >&2
  [[ -f $out/matrix.md ]] && cat "$out/matrix.md" >&2
  cat "$TEST_TMP/matrix.log" >&2
  exit 1
}
rc=0
"$HERE/../../scripts/p2p-matrix.sh" --trials 3 --get /bytes/1000000 --no-plots "${turn[@]}" "${birthday[@]}" \
  --out "$out" >"$TEST_TMP/matrix.log" 2>&1 || rc=$?
((rc == 0)) || fail "p2p-matrix.sh exited $rc"
cat "$out/matrix.md"
cells=$(jq '.cells | length' "$out/matrix.json")
[[ $cells == 17 ]] || fail "want 17 cells, got $cells"
short=$(jq '[.cells[] | select(.trials < 3)] | length' "$out/matrix.json")
[[ $short == 0 ]] || fail "$short cells ran fewer than 3 trials"
# The symmetric cells that connect do so over a peer-reflexive candidate.
prflx=$(jq -r '[.cells[] | select(.expected == "direct" and (.nat_a == "symmetric" or .nat_b == "symmetric")
  and (.same_nat | not) and (.birthday_cell | not)) | .winning_pairs | keys[] | select(test("prflx") | not)]
  | length' "$out/matrix.json")
[[ $prflx == 0 ]] || fail "a symmetric cell connected without a peer-reflexive candidate"
if ((${#turn[@]})); then
  failed=$(jq '[.cells[] | .outcomes.failed + .outcomes["no verdict"]] | add' "$out/matrix.json")
  [[ $failed == 0 ]] || fail "$failed trials failed with a relay"
  relayed=$(jq -r '[.cells[] | select(.expected == "relayed") | .cell] | sort | join(" ")' "$out/matrix.json")
  want="port-restricted--symmetric symmetric--port-restricted symmetric--symmetric"
  ((${#birthday[@]})) && want="symmetric--symmetric"
  [[ $relayed == "$want" ]] || fail "relayed cells: $relayed, want $want"
  # A relayed cell's connection runs through a relay candidate of one side.
  norelay=$(jq '[.cells[] | select(.expected == "relayed") | .winning_pairs | keys[] | select(test("relay") | not)]
    | length' "$out/matrix.json")
  [[ $norelay == 0 ]] || fail "a relayed cell's pair has no relay candidate"
fi
if ((${#birthday[@]})); then
  bcells=$(jq -r '[.cells[] | select(.birthday_cell) | .cell] | sort | join(" ")' "$out/matrix.json")
  [[ $bcells == "port-restricted--symmetric symmetric--port-restricted" ]] || fail "birthday cells: $bcells"
  # Every attempt stayed inside the default budget: 1024 probes plus 256 first checks.
  over=$(jq '[.cells[] | select(.birthday_cell) | .birthday.packets_per_attempt.samples[] | select(. > 1280)]
    | length' "$out/matrix.json")
  [[ $over == 0 ]] || fail "$over birthday attempts over the budget"
  jq -r '.cells[] | select(.birthday_cell) | "birthday: \(.cell): \(.birthday.hits)/\(.trials) direct, "
    + "\(.birthday.packets_per_attempt.samples) packets per attempt"' "$out/matrix.json"
fi
echo "ok: 17 cells as expected${turn:+ (with coturn: no failing cell)}${birthday:+ (birthday punching)}"
