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
for i in 1 2 3 4 5 6 7 8; do
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
h2 = cells[("h2", "handshake")]["complete_ms"]
assert h2["median"] == 304.5, cells
assert cells[("h3", "handshake")]["complete_ms"]["median"] == 154.5, cells
# Order-statistic interval of 8 samples: ranks 1 and 8, coverage 1 - 2/256.
assert h2["ci95"] == [301, 308] and abs(h2["ci_coverage"] - (1 - 2 / 256)) < 1e-9, h2
page = cells[("h3", "page")]
assert page["failed"] == 1 and page["complete_ms"]["median"] is None and page["failure_rate"] == 1.0, page
assert page["failure_reasons"] == {"timeout": 1}, page
r = [r for r in s["ratios"] if r["metric"] == "complete_ms"][0]
# The median of the 8 paired ratios (150 + i) / (300 + i), not the ratio of medians.
assert r["pairs"] == 8, r
assert abs(r["median_ratio"] - (154 / 304 + 155 / 305) / 2) < 1e-9, r
assert abs(r["ratio_of_medians"] - 154.5 / 304.5) < 1e-9, r
assert r["ci95"] == [151 / 301, 158 / 308], r
print("summarize: ok")
PY
# Server records: only those of the run's transport that began in --run-window.
printf '%s\n' '{"protocol":"h3","start_unix_ms":1000,"peer":"a"}' '{"protocol":"h3","start_unix_ms":2500,"peer":"b"}' \
  '{"protocol":"h2","start_unix_ms":2600,"peer":"c"}' 'junk' >"$out/server.jsonl"
got=$(printf '{"url":"u","status":200,"bytes":1,"ttfb":1,"total":2}\n' |
  "$S" run --protocol h3-0rtt --rtt-ms 1 --loss-pct 0 --workload handshake --run 1 --server-records "$out/server.jsonl" \
    --run-window 2000-3000 --cell 4 --commit abc 2>/dev/null | jq -c '[[.server_connections[].peer], .cell, .commit]')
[[ $got == '[["b"],4,"abc"]' ]] || { echo "server records by window: $got"; exit 1; }
echo "summarize: server records by run window ok"
# A run of h3-0rtt whose early data was refused (or of h2-resumed that did not
# resume) is a full handshake: flagged (shortcut_missed), not a sample. Cells
# that differ only in the link's shape or the controllers stay apart.
: >"$out/r2.jsonl"
for i in 1 2 3 4 5 6; do
  ed=$([[ $i == 3 ]] && echo false || echo true)
  printf '{"url":"u","status":200,"bytes":1,"ttfb":%d,"total":%d,"resumed":true,"early_data":%s}\n' $((50 + i)) $((50 + i)) "$ed" |
    "$S" run --protocol h3-0rtt --rtt-ms 50 --loss-pct 0 --workload handshake --run $i >>"$out/r2.jsonl"
  printf '{"url":"u","status":200,"bytes":1,"ttfb":%d,"total":%d,"resumed":%s}\n' $((150 + i)) $((150 + i)) \
    "$([[ $i == 5 ]] && echo false || echo true)" |
    "$S" run --protocol h2-resumed --rtt-ms 50 --loss-pct 0 --workload handshake --run $i >>"$out/r2.jsonl"
  printf '{"url":"u","status":200,"bytes":1,"ttfb":%d,"total":%d}\n' $((150 + i)) $((150 + i)) |
    "$S" run --protocol h2 --rtt-ms 50 --loss-pct 0 --workload handshake --run $i --queue-bdp 4 --rate-mbit 10 \
      --jitter-ms 2 --reorder --cc bbr/bbr --loss-model gilbert >>"$out/r2.jsonl"
done
mkdir -p "$out/s2"
"$S" summary --in "$out/r2.jsonl" --out "$out/s2"
/usr/bin/python3 - "$out/s2/summary.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
assert s["schema"] == "quiclab-compare-summary/2", s["schema"]
cells = {c["protocol"]: c for c in s["cells"]}
z = cells["h3-0rtt"]
assert z["runs"] == 6 and z["failed"] == 0 and z["shortcut_missed"] == 1 and z["ttfb_ms"]["n"] == 5, z
r = cells["h2-resumed"]
assert r["shortcut_missed"] == 1 and r["ttfb_ms"]["n"] == 5, r
h2 = cells["h2"]
assert (h2["queue_bdp"], h2["jitter_ms"], h2["reorder"], h2["cc"], h2["loss_model"], h2["rate_mbit"]) == \
    (4, 2, True, "bbr/bbr", "gilbert", 10), h2
assert z["cc"] == "" and z["loss_model"] == "bernoulli" and not z["reorder"], z
# h2 sits in another cell: no ratio against it; h3-0rtt against h2-resumed pairs 4 runs (3 and 5 left out).
pairs = {(x["protocol"], x["baseline"], x["metric"]): x for x in s["ratios"]}
assert ("h3-0rtt", "h2") not in {(a, b) for a, b, _ in pairs}, pairs
x = pairs[("h3-0rtt", "h2-resumed", "ttfb_ms")]
assert x["pairs"] == 4, x
print("summarize: shortcut_missed and cell keys ok")
PY
