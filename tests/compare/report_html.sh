#!/usr/bin/env bash
# report.html on known input, opened in headless Chromium (Debian's chromium):
# every figure decodes, the tables are there, and a screenshot of the page
# goes to the test log folder ($QUICLAB_TEST_LOGS, default: the work dir).
#   report_html.sh QUICLAB_SUMMARIZE
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
S=${1:?usage: report_html.sh QUICLAB_SUMMARIZE}
out=$(mktemp -d /tmp/quiclab-report-html.XXXXXX)
trap 'rm -rf "$out"' EXIT
logs=${QUICLAB_TEST_LOGS:-$out}
mkdir -p "$logs"
# Two cells (no loss, 2 % Gilbert-Elliott loss) x three workloads x two protocols x 8 runs,
# the page's objects with their completion times.
/usr/bin/python3 - "$out/get" <<'PY'
import json, os, random, sys
rnd = random.Random(5)
os.makedirs(sys.argv[1])
for loss in (0, 2):
    for wl in ("handshake", "bulk", "page"):
        for proto in ("h2", "h3"):
            for run in range(1, 9):
                k = 3 if proto == "h2" else 2
                base = 50 * k + (0 if wl == "handshake" else 350) + (400 * loss * rnd.random())
                n = 50 if wl == "page" else 1
                lines = [{"url": f"https://x/bytes/{i}", "protocol": proto, "status": 200,
                          "bytes": 1048576 // n, "handshake": 50.0 * (k - 1), "ttfb": 50.0 * k,
                          "total": base * (i + 1) / n} for i in range(n)]
                with open(os.path.join(sys.argv[1], f"{loss}-{wl}-{proto}-{run}"), "w") as f:
                    f.write("".join(json.dumps(l) + "\n" for l in lines))
PY
for f in "$out"/get/*; do
  IFS=- read -r loss wl proto run <<<"$(basename "$f")"
  model=$([[ $loss == 0 ]] && echo bernoulli || echo gilbert)
  "$S" run --protocol "$proto" --rtt-ms 50 --loss-pct "$loss" --workload "$wl" --run "$run" --loss-model "$model" \
    --cc cubic/cubic <"$f" >>"$out/runs.jsonl"
done
echo '{"command": "report_html.sh", "pacing": "matched", "seed": 1}' >"$out/meta.json"
"$S" summary --in "$out/runs.jsonl" --out "$out"
/usr/bin/python3 "$here/bench/compare/report.py" "$out" >/dev/null
[[ -s $out/report.html ]] || { echo "FAIL: no report.html" >&2; exit 1; }
# Self-contained: no figure by reference, nothing fetched from elsewhere.
if grep -qE '<img[^>]*src="[^d]|https?://[^"]*\.(js|css|png)' "$out/report.html"; then
  echo "FAIL: report.html refers to files outside itself" >&2; exit 1
fi
want=$(grep -c '^!\[' "$out/report.md")
((want >= 6)) || { echo "FAIL: only $want figures in report.md" >&2; exit 1; }
browser=$(command -v chromium || true)
[[ -n $browser ]] || { echo "FAIL: chromium is not installed (scripts/setup.sh installs it)" >&2; exit 1; }
# Root needs --no-sandbox; a private profile; bounded in time.
flags=(--headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run --hide-scrollbars
  --user-data-dir="$out/profile" --virtual-time-budget=5000)
timeout 120 "$browser" "${flags[@]}" --dump-dom "file://$out/report.html" >"$out/dom.html" 2>"$out/chromium.log" ||
  { echo "FAIL: chromium --dump-dom: $(tail -5 "$out/chromium.log")" >&2; exit 1; }
loaded=$(grep -o 'data-figures-loaded="[0-9]*"' "$out/dom.html" | grep -o '[0-9]*' || true)
total=$(grep -o 'data-figures="[0-9]*"' "$out/dom.html" | grep -o '[0-9]*' || true)
[[ -n $loaded && $loaded == "$total" && $total == "$want" ]] ||
  { echo "FAIL: figures loaded in Chromium: ${loaded:-?} of ${total:-?} (report.md has $want)" >&2; exit 1; }
for h in "Stack parity" "Medians per cell" "Ratios" "forest plots" "Per-object completion" "round-trip arithmetic"; do
  grep -q "<h2>[^<]*$h" "$out/dom.html" || { echo "FAIL: the rendered report lacks the section '$h'" >&2; exit 1; }
done
grep -q "<table>" "$out/dom.html" || { echo "FAIL: no table rendered" >&2; exit 1; }
timeout 120 "$browser" "${flags[@]}" --window-size=1280,6000 --screenshot="$logs/report.png" \
  "file://$out/report.html" >>"$out/chromium.log" 2>&1 || { echo "FAIL: chromium --screenshot: $(tail -5 "$out/chromium.log")" >&2; exit 1; }
[[ -s $logs/report.png ]] || { echo "FAIL: no screenshot" >&2; exit 1; }
echo "ok: report.html renders in Chromium with $loaded/$total figures; screenshot $logs/report.png"
