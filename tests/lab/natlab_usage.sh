#!/usr/bin/env bash
# natlab.sh's usage errors: --help prints the usage (exit 0); a bad NAT type,
# a missing option, a bad verb or value are usage errors (exit 2) that say
# what is wrong, and touch nothing.
source "$(dirname "$0")/lib.sh"
source "$HERE/natlab_lib.sh"
out=$("$NATLAB" --help) || fail "--help exited $?"
for want in "natlab.sh up" "--nat-a TYPE" "full-cone" "address-restricted" "port-restricted" "symmetric" "--same-nat" "--udp-timeout-s" "--turn" "turn-secret NAME"; do
  grep -q -- "$want" <<<"$out" || fail "--help does not mention '$want'"
done
name=$(new_name)
expect_usage() {
  local want=$1 rc=0
  shift
  "$NATLAB" "$@" >/dev/null 2>"$TEST_TMP/err" || rc=$?
  ((rc == 2)) || fail "natlab.sh $* exited $rc, want 2"
  grep -q -- "$want" "$TEST_TMP/err" || fail "natlab.sh $*: error does not say '$want': $(cat "$TEST_TMP/err")"
}
expect_usage "unknown NAT type 'cone'" up --name "$name" --nat-a cone --nat-b none
expect_usage "unknown NAT type 'strict'" up --name "$name" --nat-a none --nat-b strict
expect_usage "unknown NAT type 'x'" check --types full-cone,x
expect_usage "--nat-b TYPE is required" up --name "$name" --nat-a none
expect_usage "--name NAME is required" up --nat-a none --nat-b none
expect_usage "--same-nat" up --name "$name" --nat-a symmetric --nat-b none --same-nat
expect_usage "not a positive integer" up --name "$name" --nat-a none --nat-b none --udp-timeout-s 0
expect_usage "not both" check --name "$name" --types none
expect_usage "unknown verb" frobnicate
expect_usage "unexpected argument" up --name "$name" --nat-a none --nat-b none --bogus
expect_usage "Usage" # no verb at all
natlab_assert_gone "$name"
echo "ok: --help and usage errors (exit 2), nothing built"
