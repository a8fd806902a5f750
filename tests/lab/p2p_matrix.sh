#!/usr/bin/env bash
# The whole NAT matrix in the lab (scripts/p2p-matrix.sh): every ordered pair
# of full-cone, address-restricted, port-restricted and symmetric, plus the
# same-NAT case, 3 trials each, a 1 MB fetch checked byte for byte over every
# punched path. Every cell must give the expected outcome (docs/p2p.md); the
# "no direct path" cells must end in the failed verdict inside the timeout.
# With --turn (coturn in every cell's lab, both peers use it): those three
# cells are relayed, every other cell stays direct, and the matrix has no
# failing cell.
# Usage: p2p_matrix.sh [--turn]
source "$(dirname "$0")/lib.sh"
out=$TEST_TMP/matrix
turn=()
[[ ${1:-} == --turn ]] && turn=(--turn)
rc=0
"$HERE/../../scripts/p2p-matrix.sh" --trials 3 --get /bytes/1000000 --no-plots "${turn[@]}" --out "$out" || rc=$?
[[ -f $out/matrix.md ]] && cat "$out/matrix.md"
((rc == 0)) || fail "p2p-matrix.sh exited $rc"
cells=$(jq '.cells | length' "$out/matrix.json")
[[ $cells == 17 ]] || fail "want 17 cells, got $cells"
short=$(jq '[.cells[] | select(.trials < 3)] | length' "$out/matrix.json")
[[ $short == 0 ]] || fail "$short cells ran fewer than 3 trials"
# The symmetric cells that connect do so over a peer-reflexive candidate.
prflx=$(jq -r '[.cells[] | select(.expected == "direct" and (.nat_a == "symmetric" or .nat_b == "symmetric")
  and (.same_nat | not)) | .winning_pairs | keys[] | select(test("prflx") | not)] | length' "$out/matrix.json")
[[ $prflx == 0 ]] || fail "a symmetric cell connected without a peer-reflexive candidate"
if ((${#turn[@]})); then
  failed=$(jq '[.cells[] | .outcomes.failed + .outcomes["no verdict"]] | add' "$out/matrix.json")
  [[ $failed == 0 ]] || fail "$failed trials failed with a relay"
  relayed=$(jq -r '[.cells[] | select(.expected == "relayed") | .cell] | sort | join(" ")' "$out/matrix.json")
  [[ $relayed == "port-restricted--symmetric symmetric--port-restricted symmetric--symmetric" ]] ||
    fail "relayed cells: $relayed"
  # A relayed cell's connection runs through a relay candidate of one side.
  norelay=$(jq '[.cells[] | select(.expected == "relayed") | .winning_pairs | keys[] | select(test("relay") | not)]
    | length' "$out/matrix.json")
  [[ $norelay == 0 ]] || fail "a relayed cell's pair has no relay candidate"
fi
echo "ok: 17 cells as expected${turn:+ (with coturn: no failing cell)}"
