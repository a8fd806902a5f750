#!/usr/bin/env bash
# The whole NAT matrix in the lab (scripts/p2p-matrix.sh): every ordered pair
# of full-cone, address-restricted, port-restricted and symmetric, plus the
# same-NAT case, 3 trials each, a 1 MB fetch checked byte for byte over every
# punched path. Every cell must give the expected outcome (docs/p2p.md); the
# "no direct path" cells must end in the failed verdict inside the timeout.
source "$(dirname "$0")/lib.sh"
out=$TEST_TMP/matrix
rc=0
"$HERE/../../scripts/p2p-matrix.sh" --trials 3 --get /bytes/1000000 --no-plots --out "$out" || rc=$?
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
echo "ok: 17 cells as expected"
