#!/usr/bin/env bash
# quiclab-summarize on known input: failed requests (null milestones), junk
# lines, and a summary whose medians and ratio are known.
set -euo pipefail
S=$1
out=$(mktemp -d /tmp/quiclab-summarize-test.XXXXXX)
trap 'rm -rf "$out"' EXIT
rec=$(printf '%s\n' '{"url":"https://x/","status":0,"bytes":0,"handshake":null,"ttfb":null,"total":null,"error":"timeout"}' 'not json' |
  "$S" run --protocol h3 --rtt-ms 100 --loss-pct 5 --workload page --run 1) && { echo "a failed run must exit 1"; exit 1; }
echo "$rec" | grep -q '"ok":false' || { echo "failed run not marked ok:false: $rec"; exit 1; }
for i in 1 2 3 4 5; do
  for p in h2 h3; do
    t=$([[ $p == h2 ]] && echo $((300 + i)) || echo $((150 + i)))
    printf '{"url":"u","status":200,"bytes":10,"handshake":1,"ttfb":%d,"total":%d}\n' "$t" "$t" |
      "$S" run --protocol $p --rtt-ms 50 --loss-pct 0 --workload handshake --run $i >>"$out/runs.jsonl"
  done
done
echo "$rec" >>"$out/runs.jsonl"
"$S" summary --in "$out/runs.jsonl" --out "$out"
/usr/bin/python3 - "$out/summary.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
cells = {(c["protocol"], c["workload"]): c for c in s["cells"]}
assert cells[("h2", "handshake")]["complete_ms"]["median"] == 303, cells
assert cells[("h3", "handshake")]["complete_ms"]["median"] == 153, cells
assert cells[("h3", "page")]["failed"] == 1 and cells[("h3", "page")]["complete_ms"]["median"] is None
r = [r for r in s["ratios"] if r["metric"] == "complete_ms"][0]
assert abs(r["median_ratio"] - 153 / 303) < 1e-9, r
assert r["ci95"][0] <= r["median_ratio"] <= r["ci95"][1], r
print("summarize: ok")
PY
