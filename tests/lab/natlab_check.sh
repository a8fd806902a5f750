#!/usr/bin/env bash
# natlab.sh up, check, down for one NAT type (both peers behind a NAT of that
# type; extra arguments go to `up`): the RFC 5780 discovery run from a and b by
# `natlab.sh check` must report the type's mapping and filtering, and after
# `down` nothing of the lab is left.
source "$(dirname "$0")/lib.sh"
source "$HERE/natlab_lib.sh"
type=$1
shift
name=$(new_name)
natlab_up "$name" --nat-a "$type" --nat-b "$type" "$@"
pids=$(natlab_pids "$name")
[[ -n $pids ]] || fail "no rendezvous server running in the lab"
rc=0
"$NATLAB" check --name "$name" >"$TEST_TMP/table" 2>"$TEST_TMP/check.err" || rc=$?
cat "$TEST_TMP/table"
((rc == 0)) || fail "natlab.sh check exited $rc: $(cat "$TEST_TMP/check.err")"
passes=$(grep -c " $type .* PASS\$" "$TEST_TMP/table" || true)
[[ $passes == 2 ]] || fail "want 2 PASS rows for $type, got $passes"
"$NATLAB" down "$name" 2>/dev/null
# shellcheck disable=SC2086
natlab_assert_gone "$name" $pids
echo "ok: $type checks out from a and b; nothing left after down"
