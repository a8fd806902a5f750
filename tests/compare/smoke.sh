#!/usr/bin/env bash
# Smoke run of the comparison: a tiny grid through a real lab (namespaces, the
# link emulator or netem), then the schema check and the handshake ordering
# h3-0rtt < h3 < h2 at 50 ms RTT. Needs root.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
out=$(mktemp -d /tmp/quiclab-compare-smoke.XXXXXX)
trap '[[ -n ${KEEP:-} ]] || rm -rf "$out"' EXIT
"$here/scripts/compare.sh" --rtt-ms 50 --loss-pct 0,2 --workloads handshake,page --runs 5 --seed 7 \
  --protocols h2,h2-resumed,h3,h3-0rtt --hol on --out "$out" </dev/null
# The schema, the handshake order h3-0rtt < h3 < h2 (and h3 < h2-resumed),
# no failed run, and no run of h3-0rtt without its early data accepted (or of
# h2-resumed without resumption) in a lossless cell.
/usr/bin/python3 "$here/bench/compare/check_summary.py" "$out" --handshake-order 50
# Without loss every h3-0rtt run had its early data taken and every h2-resumed
# run resumed; the plain protocols never resumed. Under loss a server may
# refuse a ticket's early data (its age judged off after a delayed ticket):
# every such run is flagged in the summary (shortcut_missed) and not counted.
jq -e -s '[.[] | select(.ok)] | (map(select(.protocol == "h3-0rtt" and .loss_pct == 0)) | length > 0 and all(.early_data == true)) and
  (map(select(.protocol == "h2-resumed" and .loss_pct == 0)) | length > 0 and all(.resumed == true)) and
  (map(select(.protocol == "h2" or .protocol == "h3")) | all(.resumed == false))' "$out/runs.jsonl" >/dev/null ||
  { echo "resumption facts wrong: $(jq -c '[.protocol, .loss_pct, .resumed, .early_data]' "$out/runs.jsonl" | tr '\n' ' ')" >&2; exit 1; }
missed_runs=$(jq -s '[.[] | select(.ok and ((.protocol == "h3-0rtt" and .early_data != true) or (.protocol == "h2-resumed" and .resumed != true)))] | length' "$out/runs.jsonl")
missed_flagged=$(jq '[.cells[] | select(.protocol == "h3-0rtt" or .protocol == "h2-resumed") | .shortcut_missed] | add' "$out/summary.json")
[[ $missed_runs == "$missed_flagged" ]] || { echo "$missed_runs runs missed their shortcut, the summary flags $missed_flagged" >&2; exit 1; }
jq -e -s '[.[] | select(.ok and .protocol == "h2-resumed") | .server_connections[0].resumed] | all' "$out/runs.jsonl" >/dev/null ||
  { echo "the server's records of h2-resumed runs do not say resumed" >&2; exit 1; }
# The compact table and the report exist and name every protocol.
for p in h2 h2-resumed h3 h3-0rtt; do grep -q "| $p |" "$out/report.md" || { echo "report lacks $p" >&2; exit 1; }; done
ls "$out"/*.png >/dev/null
# Every run carries the server's record of its one connection, of its own
# transport (without loss always; at 2 % an HTTP/3 connection whose
# CONNECTION_CLOSE was lost ends at its idle timeout, after its run, and has
# none, but no run ever takes another's), and the parity table finds the
# stacks matched on every row compare.sh equalizes (the TLS libraries and the
# RTO/PTO floor differ by nature).
bad=$(jq -s '[.[] | select(.ok) | select((.server_connections | length) > 1
  or ((.server_connections | length) == 0 and .loss_pct == 0)
  or (.server_connections[0].protocol // (if (.protocol | startswith("h2")) then "h2" else "h3" end))
     != (if (.protocol | startswith("h2")) then "h2" else "h3" end))] | length' "$out/runs.jsonl")
[[ $bad == 0 ]] || { echo "$bad runs without their one server record: $(jq -c 'select(.ok) | [.protocol, .workload, .loss_pct, .run, (.server_connections | length)]' "$out/runs.jsonl" | tr '\n' ' ')" >&2; exit 1; }
missing=$(jq -s '[.[] | select(.ok and (.server_connections | length) == 0)] | length' "$out/runs.jsonl")
echo "runs without a server record (lossy cell, close lost): $missing"
for row in "congestion controller (observed)" "initial window, bytes" "initial window, packets" \
  "largest packet on the wire, IP bytes" "ACK policy (client)" "pacing (server)" "TLS cipher suite" \
  "TLS key exchange group" "TLS record sizing" "TCP metrics cache"; do
  same=$(jq --arg r "$row" '.rows[] | select(.row == $r) | .same' "$out/parity.json")
  [[ $same == true ]] || { echo "parity row '$row' differs: $(jq -c --arg r "$row" '.rows[] | select(.row == $r)' "$out/parity.json")" >&2; exit 1; }
done
# --hol: the page runs' objects carry stall times from the client's traces
# (a capture the machine could not keep up with leaves a run without: at
# most one in five); none is negative; HTTP/2's carry TCP's in-order part;
# under 2 % loss at 50 ms some HTTP/2 object sat behind another stream's
# repair for at least 10 ms (a repair takes a round trip).
jq -e -s '[.[] | select(.ok and .workload == "page")] as $p
  | ([$p[] | select(all(.objects[]; .stall_ms != null))] | length) as $t
  | $t * 5 >= ($p | length) * 4 and $t > 0
  and all($p[] | .objects[] | select(.stall_ms != null); .stall_ms >= 0)
  and all($p[] | select(.protocol | startswith("h2")) | .objects[] | select(.stall_ms != null); .inorder_wait_ms != null)
  and any($p[] | select(.loss_pct == 2 and (.protocol | startswith("h2"))) | .objects[]; (.stall_ms // 0) >= 10)' \
  "$out/runs.jsonl" >/dev/null ||
  { echo "stall times wrong: $(jq -c 'select(.workload == "page") | [.protocol, .loss_pct, .ok, ([.objects[].stall_ms] | max)]' "$out/runs.jsonl" | tr '\n' ' ')" >&2; exit 1; }
jq -e '.hol_traces == "on"' "$out/meta.json" >/dev/null || { echo "meta.json lacks hol_traces" >&2; exit 1; }
grep -q "## Head-of-line blocking, measured" "$out/report.md" && ls "$out"/stall-cdf-*.png >/dev/null ||
  { echo "report lacks the stall section" >&2; exit 1; }
grep -q "## Stack parity" "$out/report.md" || { echo "report lacks the parity table" >&2; exit 1; }
# --ablate: the baseline and the flipped side, one table.
"$here/scripts/compare.sh" --rtt-ms 50 --loss-pct 0 --workloads handshake --protocols h2,h3 --runs 2 --seed 7 \
  --no-fidelity --ablate records --out "$out/ablate" </dev/null
jq -e '[.rows[] | .variant] | unique == ["baseline", "h2"]' "$out/ablate/ablation.json" >/dev/null ||
  { echo "ablation variants: $(jq -c '[.rows[] | .variant] | unique' "$out/ablate/ablation.json")" >&2; exit 1; }
grep -q "| h2 | --h2-records full | handshake | h2 |" "$out/ablate/ablation.md" ||
  { cat "$out/ablate/ablation.md" >&2; exit 1; }
jq -e '.h2_tls_records == "full"' "$out/ablate/ablate-h2/meta.json" >/dev/null || { echo "the flip did not reach the run" >&2; exit 1; }
# The emulator's counters per cell beside the configured loss: none lost without loss, some at 2 %.
[[ $(jq -s 'length' "$out/emulator.jsonl") == 2 ]] || { echo "want one emulator record per cell" >&2; exit 1; }
jq -e -s '(.[] | select(.loss_pct == 0) | .c2s.dropped_loss + .s2c.dropped_loss) == 0 and
  (.[] | select(.loss_pct == 2) | .s2c.dropped_loss) > 0' "$out/emulator.jsonl" >/dev/null ||
  { echo "emulator counters do not match the cells: $(cat "$out/emulator.jsonl")" >&2; exit 1; }
grep -q "## The link as it was" "$out/report.md" || { echo "report lacks the emulator table" >&2; exit 1; }
# Explicit cells (--cell, here from a --grid file) with the other axes: a
# bottleneck with a 4 x BDP queue, jitter that reorders, BBR on both sides.
cat >"$out/grid.txt" <<'GRID'
--seed 7 --no-fidelity   # options as on the command line
--cell rtt=20 loss=0 rate=20 queue=4 jitter=2 reorder=on cc=bbr/bbr workloads=bulk protocols=h2,h3 runs=2
--cell rtt=20 loss=1 model=gilbert workloads=handshake protocols=h3-0rtt runs=2
GRID
"$here/scripts/compare.sh" --grid "$out/grid.txt" --out "$out/cells" </dev/null
jq -e -s 'length == 6 and (map(select(.cell == 1)) | all(.queue_bdp == 4 and .jitter_ms == 2 and .reorder == true and
    .cc == "bbr/bbr" and .rate_mbit == 20 and .server_connections[0].congestion_control == "bbr")) and
  (map(select(.cell == 2)) | all(.loss_model == "gilbert" and .protocol == "h3-0rtt" and .cc == "cubic/cubic"))' \
  "$out/cells/runs.jsonl" >/dev/null || { echo "explicit cells: $(cat "$out/cells/runs.jsonl")" >&2; exit 1; }
jq -e '.grid | length == 2' "$out/cells/meta.json" >/dev/null || { echo "meta.json lacks the grid" >&2; exit 1; }
jq -e -s 'map(select(.cell == 1)) | .[0].queue_bdp == 4 and .[0].s2c.dropped_queue >= 0' "$out/cells/emulator.jsonl" >/dev/null ||
  { echo "emulator record of the bottleneck cell: $(cat "$out/cells/emulator.jsonl")" >&2; exit 1; }
grep -q "20 Mbit/s, queue 4×BDP, jitter ±2 ms reordering, bbr/bbr" "$out/cells/report.md" ||
  { echo "the report does not name the cell's conditions" >&2; exit 1; }
# A bad cell is refused before any lab is made.
if "$here/scripts/compare.sh" --cell "rtt=20 lossy=1" --out "$out/bad" </dev/null 2>"$out/bad.err"; then
  echo "a cell with an unknown key was accepted" >&2; exit 1
fi
grep -q "'lossy=1' is not key=value" "$out/bad.err" || { cat "$out/bad.err" >&2; exit 1; }
