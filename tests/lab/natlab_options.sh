#!/usr/bin/env bash
# natlab.sh's options and lifetime: --same-nat (b behind nat-a, nat-b implied),
# --udp-timeout-s (the NAT namespace's conntrack timeouts and the explicit
# mapping's lifetime), --rtt-ms/--loss-pct through the userspace emulator in
# inet (it carries the check's packets), and no leftovers after down, after a
# failed up and after SIGINT/SIGTERM during a self-contained check.
source "$(dirname "$0")/lib.sh"
source "$HERE/natlab_lib.sh"

# 1. Both peers behind one full-cone NAT, 20 ms RTT, 7 s UDP timeout.
a=$(new_name)
natlab_up "$a" --nat-a full-cone --same-nat --rtt-ms 20 --udp-timeout-s 7 --seed 42
[[ ! -e /run/netns/$a-natb ]] || fail "--same-nat built a second NAT"
[[ $("$NATLAB" addr "$a" b) == 10.0.2.2 && $("$NATLAB" addr "$a" nat-b) == 192.0.2.2 ]] || fail "addr b / nat-b with --same-nat"
[[ $("$NATLAB" addr "$a" server) == 198.51.100.2 && $("$NATLAB" addr "$a" server-alt) == 198.51.100.3 ]] || fail "addr server"
for key in nf_conntrack_udp_timeout nf_conntrack_udp_timeout_stream; do
  v=$("$NATLAB" exec "$a" nat-a -- sysctl -n "net.netfilter.$key")
  [[ $v == 7 ]] || fail "$key in the NAT is $v, want 7"
done
grep -q "timeout 7s" <<<"$("$NATLAB" exec "$a" nat-a -- nft list map ip natlab mapping)" || fail "the full-cone mapping does not live 7 s"

pids=$(natlab_pids "$a")
grep -q -- "--link delay=10ms" <<<"$(for p in $pids; do tr '\0' ' ' </proc/"$p"/cmdline; echo; done)" ||
  fail "no emulator with delay=10ms per crossing running"
"$NATLAB" check --name "$a" >"$TEST_TMP/table" 2>/dev/null || { cat "$TEST_TMP/table"; fail "check with --same-nat"; }
cat "$TEST_TMP/table"
[[ $(grep -c ' 192\.0\.2\.2:[0-9]* .*PASS$' "$TEST_TMP/table") == 2 ]] || fail "a and b must both be mapped to nat-a's address"
# a and b on the same inside port, to both server addresses, in the order that
# would make the second host's port depend on the destination if they shared
# one port range: each keeps one public port, and they differ.
mapped() {
  local ip=10.0.1.2
  [[ $1 == b ]] && ip=10.0.2.2
  "$NATLAB" exec "$a" "$1" -- "$QUICLAB_BIN" stun --json --bind "$ip:40000" "$2:3478" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["mapped"])'
}
a1=$(mapped a 198.51.100.2)
b2=$(mapped b 198.51.100.3)
b1=$(mapped b 198.51.100.2)
a2=$(mapped a 198.51.100.3)
[[ $a1 == "$a2" && $b1 == "$b2" && $a1 != "$b1" ]] ||
  fail "same inside port behind one NAT: a -> $a1 / $a2, b -> $b1 / $b2 (want one port each, different)"
"$NATLAB" down "$a" 2>"$TEST_TMP/down.log"
# The emulator carried the check's packets, both ways.
python3 - "$TEST_TMP/down.log" <<'PY' || fail "the emulator did not carry the check's packets: $(cat "$TEST_TMP/down.log")"
import json, re, sys
line = [l for l in open(sys.argv[1]) if "emulator counters" in l][-1]
j = json.loads(line[line.index("{"):])
assert j["c2s"]["delivered_packets"] > 0 and j["s2c"]["delivered_packets"] > 0, j
PY
# shellcheck disable=SC2086
natlab_assert_gone "$a" $pids
echo "ok: --same-nat, --udp-timeout-s and --rtt-ms; nothing left after down"

# 1b. The mapping's lifetime is the NAT namespace's conntrack UDP timeout: right
#     after a Binding from a fixed port, the NAT's entry for it has at most T s
#     left, and it goes away on its own (no assertion on how fast).
k=$(new_name)
natlab_up "$k" --nat-a port-restricted --nat-b none --udp-timeout-s 2
"$NATLAB" exec "$k" a -- "$QUICLAB_BIN" stun --json --bind 10.0.1.2:40000 198.51.100.2:3478 >"$TEST_TMP/k.json" ||
  fail "stun from a: $(cat "$TEST_TMP/k.json")"
grep -q '"mapped":"192.0.2.2:40000"' "$TEST_TMP/k.json" || fail "a was not mapped to 192.0.2.2:40000: $(cat "$TEST_TMP/k.json")"
entry=$("$NATLAB" exec "$k" nat-a -- cat /proc/net/nf_conntrack | grep 'udp .*src=10.0.1.2 .*sport=40000 ' || true)
[[ -n $entry ]] || fail "no conntrack entry for a's mapping in the NAT"
left=$(awk '{ print $5 }' <<<"$entry")
((left <= 2)) || fail "the mapping has $left s left, want <= 2 (--udp-timeout-s 2): $entry"
gone=0
for _ in $(seq 300); do
  if ! grep -q 'sport=40000 ' <<<"$("$NATLAB" exec "$k" nat-a -- cat /proc/net/nf_conntrack)"; then gone=1; break; fi
  sleep 0.1
done
((gone)) || fail "the mapping did not expire"
"$NATLAB" down "$k" 2>/dev/null
natlab_assert_gone "$k"
echo "ok: the NAT's mapping lives --udp-timeout-s ($left s left after the Binding), then expires"

# 2. A failed up (the rendezvous server cannot start) removes what it built.
b=$(new_name)
if QUICLAB_BIN=/bin/false "$NATLAB" up --name "$b" --nat-a symmetric --nat-b port-restricted 2>/dev/null; then
  fail "up with a broken quiclab succeeded"
fi
natlab_assert_gone "$b"
echo "ok: a failed up cleans up after itself"

# 3. SIGINT and SIGTERM during a self-contained check: its lab goes with it.
#    (A private state root tells us the check's random lab name.)
for sig in INT TERM; do
  st=$TEST_TMP/state-$sig
  set -m
  NATLAB_STATE=$st "$NATLAB" check --types port-restricted --rtt-ms 200 >/dev/null 2>&1 &
  pid=$!
  set +m
  for _ in $(seq 600); do
    compgen -G "$st/*/config" >/dev/null && break
    sleep 0.1
  done
  compgen -G "$st/*/config" >/dev/null || fail "the check's lab never came up"
  c=$(basename "$(dirname "$(compgen -G "$st/*/config" | head -n 1)")")
  lpids=$(natlab_pids "$c")
  sleep 0.3
  kill -s "$sig" "$pid"
  wait "$pid" 2>/dev/null || true
  # shellcheck disable=SC2086
  natlab_assert_gone "$c" $lpids
  [[ -z $(ls -A "$st" 2>/dev/null) ]] || fail "state of $c left in $st"
  echo "ok: SIG$sig during check leaves nothing"
done
