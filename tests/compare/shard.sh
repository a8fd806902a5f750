#!/usr/bin/env bash
# compare.sh --shard I/N and compare.sh merge through real labs: a 3-cell grid
# run whole and as two parts gives the same cells, the same run plan (cell,
# cell seed, run, protocol, workload) and the same record schema; the merged
# summary is exactly the summary of the merged records; parts that do not fit
# together are refused with the reason. Needs root.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
out=$(mktemp -d /tmp/quiclab-compare-shard.XXXXXX)
trap 'rm -rf "$out"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
grid=(--rtt-ms 10,20,30 --loss-pct 0 --workloads handshake --protocols h2,h3 --runs 2 --seed 3 --no-fidelity)
"$here/scripts/compare.sh" "${grid[@]}" --out "$out/whole" </dev/null 2>/dev/null
"$here/scripts/compare.sh" "${grid[@]}" --shard 0/2 --out "$out/p0" </dev/null 2>/dev/null
"$here/scripts/compare.sh" "${grid[@]}" --shard 1/2 --out "$out/p1" </dev/null 2>/dev/null
[[ $(jq -c .cells "$out/p0/meta.json") == "[1,3]" && $(jq -c .cells "$out/p1/meta.json") == "[2]" ]] ||
  fail "shard cells: $(jq -c .cells "$out/p0/meta.json") and $(jq -c .cells "$out/p1/meta.json")"
"$here/scripts/compare.sh" merge --out "$out/merged" "$out/p1" "$out/p0" </dev/null
plan() { jq -c '[.cell, .cell_seed, .run, .protocol, .workload, .rtt_ms, .ok]' "$1/runs.jsonl" | sort; }
[[ $(plan "$out/merged") == "$(plan "$out/whole")" ]] || fail "the merged run plan differs from the whole run's:
$(diff <(plan "$out/merged") <(plan "$out/whole"))"
cells() { jq -c '[.cells[] | [.protocol, .workload, .rtt_ms, .loss_pct, .runs, .failed]] | sort' "$1/summary.json"; }
[[ $(cells "$out/merged") == "$(cells "$out/whole")" ]] || fail "summary cells differ"
keys() { jq -c '[.[] | keys] | unique' -s "$1/runs.jsonl"; }
[[ $(keys "$out/merged") == "$(keys "$out/whole")" ]] || fail "run record fields differ"
# The merged summary is the summary of the merged records, exactly.
mkdir "$out/again"
"${QUICLAB_SUMMARIZE:-$here/build/bench/compare/quiclab-summarize}" summary --in "$out/merged/runs.jsonl" \
  --out "$out/again" --seed 3
cmp "$out/again/summary.json" "$out/merged/summary.json" || fail "merged summary is not the merged records' summary"
[[ -f $out/merged/report.md && $(jq -r .shard "$out/merged/meta.json") == merged ]] || fail "no merged report/meta"
# Parts that do not fit: one missing, one twice.
rc=0
"$here/scripts/compare.sh" merge --out "$out/bad" "$out/p0" 2>"$out/err" || rc=$?
((rc == 1)) && grep -q "shards missing: \[1\]" "$out/err" || fail "a missing part was not refused: $(cat "$out/err")"
rc=0
"$here/scripts/compare.sh" merge --out "$out/bad" "$out/p0" "$out/p0" "$out/p1" 2>"$out/err" || rc=$?
((rc == 1)) && grep -q "shard 0 twice" "$out/err" || fail "a doubled part was not refused: $(cat "$out/err")"
rc=0
"$here/scripts/compare.sh" --shard 2/2 --out "$out/bad" 2>"$out/err" || rc=$?
((rc == 2)) && grep -q "0 <= I < N" "$out/err" || fail "--shard 2/2 accepted: $(cat "$out/err")"
echo "ok: --shard parts merge into the whole run's plan and summary"
