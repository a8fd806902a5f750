#!/usr/bin/env bash
# Birthday-paradox punching behind real NATs (natlab.sh: nftables masquerade,
# the symmetric one fully-random): port-restricted <-> symmetric has no
# direct path for plain checks; with --birthday the symmetric side opens
# extra sockets and the port-restricted side probes random ports until one
# lands, and HTTP/3 runs over the pair found.
#   1. port-restricted (controlling) <-> symmetric: direct through a birthday
#      socket, 1 MB byte-exact; the budget held.
#   2. symmetric (controlling) <-> port-restricted with coturn, birthday
#      starting after the relay wait: QUIC starts on the relay, the probe
#      that lands moves it to the birthday socket (QUIC path validated, relay
#      released), 20 MB byte-exact; a waits for the move after its fetch
#      (--wait-direct-ms), which may be over first.
#   3. a budget too small to find a mapping: exit 4, the reason says so.
#   4. full cone <-> symmetric: checks alone connect, no birthday starts.
# The odds: one trial misses with probability (1 - S/64512)^P for S sockets
# and P probes; cases 1 and 2 use P = 4096 at 400/s, so (1 - 256/64512)^4096
# = 1e-7: a miss is a bug, not bad luck. Defaults (256, 1024, 100/s, 1.7 %
# misses) are measured by scripts/p2p-matrix.sh --birthday.
source "$(dirname "$0")/lib.sh"
source "$HERE/natlab_lib.sh"
bin=${QUICLAB_BIN:?}

# peers NAME NAT_A NAT_B [ARGS_BOTH...] -- [ARGS_A...]: b waits, a connects;
# sets $out, $rc (a's exit code); both outputs in $out/{a,b}.out.
peers() {
  local name=$1 nat_a=$2 nat_b=$3 server
  shift 3
  local both=() a_args=()
  while (($#)) && [[ $1 != -- ]]; do both+=("$1"); shift; done
  (($#)) && shift
  a_args=("$@")
  server=$("$NATLAB" addr "$name" server)
  out=$TEST_TMP/$name
  mkdir -p "$out"
  "$NATLAB" exec "$name" b -- timeout 60 "$bin" peer --rendezvous "$server:3478" --name b --key-file "$out/b.key" \
    --json "${both[@]}" >"$out/b.out" 2>"$out/b.err" &
  local b=$!
  CLEANUP_CMDS+=("kill $b")
  for _ in $(seq 100); do grep -q '"event":"registered"' "$out/b.out" && break; sleep 0.1; done
  grep -q '"event":"registered"' "$out/b.out" || fail "$nat_a/$nat_b: b did not register: $(cat "$out/b.out" "$out/b.err")"
  rc=0
  "$NATLAB" exec "$name" a -- timeout 60 "$bin" peer --rendezvous "$server:3478" --name a --key-file "$out/a.key" \
    --json "${both[@]}" "${a_args[@]}" >"$out/a.out" 2>"$out/a.err" || rc=$?
  for _ in $(seq 100); do grep -q '"event":"result"' "$out/b.out" && break; sleep 0.1; done
}
ev() { grep "\"event\":\"$2\"" "$out/$1.out" | tail -1; }

sure=(--birthday --birthday-probes 4096 --birthday-rate 400)

# ---- 1. port-restricted (controlling, prober) <-> symmetric (opener) ----
name=$(new_name)
natlab_up "$name" --nat-a port-restricted --nat-b symmetric --rtt-ms 20
peers "$name" port-restricted symmetric "${sure[@]}" -- --connect b --get /bytes/1000000
((rc == 0)) || fail "1: a exited $rc: $(tail -3 "$out/a.out") $(tail -3 "$out/a.err")"
[[ $(jq -r .mapping <<<"$(ev a nat_mapping)") == endpoint-independent ]] || fail "1: a's mapping: $(ev a nat_mapping)"
[[ $(jq -r .mapping <<<"$(ev b nat_mapping)") == address-and-port-dependent ]] || fail "1: b's mapping: $(ev b nat_mapping)"
[[ $(jq -r .birthday <<<"$(ev a introduced)") == probe && $(jq -r .birthday <<<"$(ev b introduced)") == open ]] ||
  fail "1: roles: a $(jq -r .birthday <<<"$(ev a introduced)"), b $(jq -r .birthday <<<"$(ev b introduced)")"
c=$(ev a connected) f=$(ev a fetch) ra=$(ev a result) rb=$(ev b result)
[[ $(jq -r .path <<<"$c") == direct ]] || fail "1: path: $c"
[[ $(jq .status <<<"$f") == 200 && $(jq .bytes <<<"$f") == 1000000 && $(jq .verified <<<"$f") == true ]] ||
  fail "1: the fetch: $f"
[[ $(jq -r .outcome <<<"$ra") == direct && $(jq -r .outcome <<<"$rb") == direct ]] || fail "1: outcomes: $ra / $rb"
[[ $(jq .birthday.hit <<<"$ra") == true && $(jq .birthday.on_birthday_socket <<<"$rb") == true ]] ||
  fail "1: not through a birthday socket: $ra / $rb"
probes=$(jq .birthday.probes <<<"$ra") sprays=$(jq .birthday.sprays <<<"$rb")
((probes >= 1 && probes <= 4096 && sprays == 256)) || fail "1: budget: $probes probes, $sprays sprays"
[[ $(jq .birthday.sockets <<<"$rb") == 256 ]] || fail "1: sockets: $rb"
echo "ok: port-restricted <-> symmetric direct by birthday punching: $probes probes, 256 sockets," \
  "connected $(jq .ms_since_introduction <<<"$c") ms after the introduction, 1 MB in $(jq .total <<<"$f") ms"
"$NATLAB" down "$name" >/dev/null

# ---- 2. symmetric (controlling, opener) <-> port-restricted, relay first ----
name=$(new_name)
natlab_up "$name" --nat-a symmetric --nat-b port-restricted --rtt-ms 20 --turn
turn=$("$NATLAB" addr "$name" turn)
secret=$("$NATLAB" turn-secret "$name")
# The fetch may be over before a probe lands: a stays connected for the move (--wait-direct-ms).
peers "$name" symmetric port-restricted "${sure[@]}" --birthday-wait-ms 2500 --turn "$turn" --turn-secret-file "$secret" \
  -- --connect b --get /bytes/20000000 --wait-direct-ms 20000
((rc == 0)) || fail "2: a exited $rc: $(tail -3 "$out/a.out") $(tail -3 "$out/a.err")"
c=$(ev a connected) pc=$(ev a path_changed) qp=$(ev a quic_path) f=$(ev a fetch) ra=$(ev a result) rb=$(ev b result)
[[ $(jq -r .path <<<"$c") == relayed ]] || fail "2: the first path: $c"
[[ -n $pc && $(jq -r .path <<<"$pc") == direct ]] || fail "2: no move to the direct path: $(grep -v '"check"' "$out/a.out")"
[[ $(jq .ok <<<"$qp") == true ]] || fail "2: QUIC path: $qp"
# The QUIC client moved to one of its birthday sockets: a local port other than its main socket's.
main_port=$(jq -r '.local | sub(".*:"; "")' <<<"$(ev a registered)")
qp_port=$(jq -r '.local | sub(".*:"; "")' <<<"$qp")
[[ $qp_port != "$main_port" ]] || fail "2: QUIC stayed on the main socket: $qp"
[[ -n $(ev a relay_released) ]] || fail "2: the relay was not released"
[[ $(jq .status <<<"$f") == 200 && $(jq .bytes <<<"$f") == 20000000 && $(jq .verified <<<"$f") == true ]] ||
  fail "2: the fetch: $f"
[[ $(jq -r .outcome <<<"$ra") == direct && $(jq -r .outcome <<<"$rb") == direct ]] || fail "2: outcomes: $ra / $rb"
[[ $(jq .birthday.on_birthday_socket <<<"$ra") == true && $(jq .birthday.hit <<<"$rb") == true ]] ||
  fail "2: birthday: $ra / $rb"
moved_after=$(jq -n --argjson p "$(jq .t_ms <<<"$pc")" --argjson f "$(jq .t_ms <<<"$f")" '$p > $f')
[[ $moved_after == false || -n $(ev a waiting_direct) ]] || fail "2: moved after the fetch without waiting_direct"
echo "ok: symmetric <-> port-restricted on coturn first, moved to birthday socket :$qp_port" \
  "$(jq .ms_since_connected <<<"$pc") ms later ($(jq .birthday.probes <<<"$rb") probes), 20 MB in $(jq .total <<<"$f") ms"
"$NATLAB" down "$name" >/dev/null

# ---- 3. a budget too small: no mapping found, the reason says so ----
name=$(new_name)
natlab_up "$name" --nat-a port-restricted --nat-b symmetric --rtt-ms 20
peers "$name" port-restricted symmetric --birthday --birthday-sockets 2 --birthday-probes 8 -- --connect b
((rc == 4)) || fail "3: a exited $rc, want 4: $(tail -3 "$out/a.out")"
ra=$(ev a result)
[[ $(jq -r .reason <<<"$ra") == *"birthday punching found no mapping (8 probes"* ]] || fail "3: reason: $ra"
[[ $(jq .birthday.probes <<<"$ra") == 8 && $(jq .birthday.sprays <<<"$(ev b result)") == 2 ]] ||
  fail "3: budget: $ra / $(ev b result)"
echo "ok: 2 sockets and 8 probes find nothing: $(jq -r .reason <<<"$ra" | sed 's/.*; birthday/birthday/')"
"$NATLAB" down "$name" >/dev/null

# ---- 4. full cone <-> symmetric: the checks connect, no birthday ----
name=$(new_name)
natlab_up "$name" --nat-a full-cone --nat-b symmetric --rtt-ms 20
peers "$name" full-cone symmetric --birthday -- --connect b --get /bytes/1000
((rc == 0)) || fail "4: a exited $rc: $(tail -3 "$out/a.out")"
[[ -z $(ev a birthday) && -z $(ev b birthday) ]] || fail "4: birthday punching started: $(ev a birthday) $(ev b birthday)"
[[ $(jq .birthday.probes <<<"$(ev a result)") == 0 && $(jq .birthday.sockets <<<"$(ev b result)") == 0 ]] ||
  fail "4: $(ev a result) / $(ev b result)"
echo "ok: full cone <-> symmetric direct without birthday punching ($(jq .ms_since_introduction <<<"$(ev a connected)") ms)"
