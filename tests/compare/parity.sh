#!/usr/bin/env bash
# bench/compare/parity.py on hand-made run records: rows whose sides match are
# "same", and each difference we plant (controller, initial window, ACK
# policy, pacing, cipher, record sizing, missing records) is flagged.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
out=$(mktemp -d /tmp/quiclab-parity-test.XXXXXX)
trap 'rm -rf "$out"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# write H3_CC H3_IW H3_PACED H3_CIPHER ACK_THRESH RECORDS: one h2 and one h3 run record and meta.json.
write() {
  cat >"$out/runs.jsonl" <<JSON
{"protocol":"h2","workload":"bulk","rtt_ms":50,"loss_pct":0,"rate_mbit":0,"tls":{"library":"OpenSSL","cipher":"TLS_AES_128_GCM_SHA256","group":"x25519"},"server_connections":[{"protocol":"h2","congestion_control":"cubic","segment_bytes":1448,"initial_cwnd_bytes":14480,"initial_cwnd_packets":10,"paced":true,"pacing_ss_pct":125,"pacing_ca_pct":125,"timer_ms":254,"tls_records_small":700,"retransmitted_packets":0,"timeouts":0,"bytes_sent":1050000,"min_rtt_ms":50}]}
{"protocol":"h3","workload":"bulk","rtt_ms":50,"loss_pct":0,"rate_mbit":0,"tls":{"library":"GnuTLS","cipher":"$4","group":"x25519"},"server_connections":[{"protocol":"h3","congestion_control":"$1","segment_bytes":1452,"initial_cwnd_bytes":$2,"initial_cwnd_packets":$(($2 / 1452)),"paced":$3,"pacing_ss_pct":125,"pacing_ca_pct":125,"timer_ms":240,"congestion_events":0,"timeouts":0,"bytes_sent":1070000,"min_rtt_ms":50}]}
JSON
  printf '{"h3_ack_thresh": %s, "h2_tls_records": "%s", "tcp_metrics": "nosave"}\n' "$5" "$6" >"$out/meta.json"
  /usr/bin/python3 "$here/bench/compare/parity.py" "$out" >"$out/table.md" || fail "parity.py failed"
  jq -r '.differs | join(",")' "$out/parity.json"
}

got=$(write cubic 14520 true TLS_AES_128_GCM_SHA256 2 dynamic)
[[ $got == "TLS library" ]] || fail "matched stacks: differs=$got, want only the TLS library"
grep -q '| initial window, bytes | 14480 | 14520 | same |' "$out/table.md" || fail "table: $(cat "$out/table.md")"

got=$(write bbr 12000 false TLS_AES_256_GCM_SHA384 8 full)
for row in "congestion controller (observed)" "initial window, bytes" "initial window, packets" "ACK policy (client)" \
  "pacing (server)" "TLS cipher suite" "TLS record sizing"; do
  [[ ",$got," == *",$row,"* ]] || fail "planted difference '$row' not flagged: $got"
done
[[ ",$got," != *",TLS key exchange group,"* ]] || fail "the same group flagged: $got"

# Runs without server records (an older compare.sh): unknown, and flagged.
printf '%s\n' '{"protocol":"h2","workload":"bulk","rtt_ms":50,"loss_pct":0}' '{"protocol":"h3","workload":"bulk","rtt_ms":50,"loss_pct":0}' \
  >"$out/runs.jsonl"
/usr/bin/python3 "$here/bench/compare/parity.py" "$out" >"$out/table.md"
grep -q '| congestion controller (observed) | unknown | unknown | \*\*differs\*\*' "$out/table.md" ||
  fail "missing records not flagged: $(cat "$out/table.md")"
echo "ok: parity rows same where the sides match, flagged where they differ"
