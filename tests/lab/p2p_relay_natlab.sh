#!/usr/bin/env bash
# The relay behind real NATs: symmetric <-> symmetric has no direct path (both
# NATs pick a new port per destination and filter by address and port), so
# with coturn in the lab (natlab.sh --turn) the peers connect through it after
# the relay wait and fetch 1 MB byte-exact over HTTP/3, the packets going as
# ChannelData; a cell that punches (full-cone <-> port-restricted) with the
# relay offered stays direct. RTT 20 ms across the lab's internet.
source "$(dirname "$0")/lib.sh"
source "$HERE/natlab_lib.sh"
bin=${QUICLAB_BIN:?}

run_cell() {  # NAT_A NAT_B WANT_PATH
  local nat_a=$1 nat_b=$2 want=$3 name
  name=$(new_name)
  natlab_up "$name" --nat-a "$nat_a" --nat-b "$nat_b" --rtt-ms 20 --turn
  local server turn secret
  server=$("$NATLAB" addr "$name" server)
  turn=$("$NATLAB" addr "$name" turn)
  secret=$("$NATLAB" turn-secret "$name")
  local out=$TEST_TMP/$name
  mkdir -p "$out"
  "$NATLAB" exec "$name" b -- "$bin" peer --rendezvous "$server:3478" --name b --key-file "$out/b.key" --json \
    --turn "$turn" --turn-secret-file "$secret" >"$out/b.out" 2>"$out/b.err" &
  local b=$!
  CLEANUP_CMDS+=("kill $b")
  for _ in $(seq 100); do grep -q '"event":"registered"' "$out/b.out" && break; sleep 0.1; done
  grep -q '"event":"registered"' "$out/b.out" || fail "$nat_a/$nat_b: b did not register: $(cat "$out/b.out" "$out/b.err")"
  local rc=0
  "$NATLAB" exec "$name" a -- timeout 60 "$bin" peer --rendezvous "$server:3478" --name a --key-file "$out/a.key" \
    --json --turn "$turn" --turn-secret-file "$secret" --connect b --get /bytes/1000000 \
    >"$out/a.out" 2>"$out/a.err" || rc=$?
  ((rc == 0)) || fail "$nat_a/$nat_b: a exited $rc: $(tail -3 "$out/a.out") $(tail -3 "$out/a.err")"
  for _ in $(seq 100); do grep -q '"event":"result"' "$out/b.out" && break; sleep 0.1; done
  local c f r rb
  c=$(grep '"event":"connected"' "$out/a.out" | tail -1)
  f=$(grep '"event":"fetch"' "$out/a.out" | tail -1)
  r=$(grep '"event":"result"' "$out/a.out" | tail -1)
  rb=$(grep '"event":"result"' "$out/b.out" | tail -1)
  [[ $(jq -r .path <<<"$c") == "$want" ]] || fail "$nat_a/$nat_b: path $(jq -r .path <<<"$c"), want $want: $c"
  [[ $(jq .status <<<"$f") == 200 && $(jq .bytes <<<"$f") == 1000000 && $(jq .verified <<<"$f") == true ]] ||
    fail "$nat_a/$nat_b: the fetch: $f"
  [[ $(jq -r .outcome <<<"$r") == "$want" && $(jq -r .outcome <<<"$rb") == "$want" ]] ||
    fail "$nat_a/$nat_b: outcomes a $(jq -r .outcome <<<"$r"), b $(jq -r .outcome <<<"$rb"), want $want"
  if [[ $want == relayed ]]; then
    local cd
    cd=$(jq -s 'map(.relay.channel_data_sent + .relay.channel_data_received) | add' <<<"$r$rb")
    ((cd > 500)) || fail "$nat_a/$nat_b: only $cd ChannelData messages through coturn: $r $rb"
    echo "ok: $nat_a <-> $nat_b relayed ($(jq -r '.local.type + " -> " + .remote.type' <<<"$c")," \
      "$(jq .ms_since_introduction <<<"$c") ms after the introduction), 1 MB in $(jq .total <<<"$f") ms," \
      "ttfb $(jq .ttfb <<<"$f") ms, $cd ChannelData messages"
  else
    echo "ok: $nat_a <-> $nat_b direct with the relay offered, 1 MB in $(jq .total <<<"$f") ms"
  fi
}

run_cell symmetric symmetric relayed
run_cell full-cone port-restricted direct
