# shellcheck shell=bash
# Shared by the natlab tests (sourced after lib.sh).
NATLAB=${NATLAB:-$HERE/../../scripts/natlab.sh}

# natlab_up NAME ARGS...: a lab owned by this test (removed at exit whatever
# happens); root that cannot build it is a failure, never a skip.
natlab_up() {
  local name=$1
  shift
  CLEANUP_CMDS+=("\"$NATLAB\" down $name")
  if ! "$NATLAB" up --name "$name" "$@" >/dev/null 2>"$TEST_TMP/up-$name.log"; then
    cat "$TEST_TMP/up-$name.log" >&2
    cannot_run "the NAT lab ($*)"
  fi
}

# natlab_pids NAME: every process inside the lab's namespaces, one line.
natlab_pids() {
  local ns
  for ns in /run/netns/"$1"-*; do
    [[ -e $ns ]] && ip netns pids "$(basename "$ns")"
  done | tr '\n' ' '
}

alive() { [[ -e /proc/$1 ]] && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }

# natlab_assert_gone NAME [PID...]: no namespace, state, veth/TUN left in the
# host namespace, and none of the given processes alive.
natlab_assert_gone() {
  local name=$1 p
  shift
  compgen -G "/run/netns/$name-*" >/dev/null && fail "namespaces of $name left behind: $(ls /run/netns | grep "^$name-" | tr '\n' ' ')"
  [[ ! -e /run/quiclab-natlab/$name ]] || fail "state dir of $name left behind"
  if grep -q -- " $name-" <<<"$(ip -o link show)"; then fail "interfaces of $name in the host namespace"; fi
  for p in "$@"; do
    # A killed process may take a moment to be reaped (init is its parent);
    # a zombie is gone for this purpose.
    for _ in $(seq 100); do
      alive "$p" || break
      sleep 0.05
    done
    alive "$p" && fail "process $p of lab $name survived ($(tr '\0' ' ' </proc/"$p"/cmdline 2>/dev/null))"
  done
  return 0
}
