# Shared by the lab tests (sourced). Every test gets a unique lab name and a
# temp dir, and an EXIT trap that removes its lab, its processes and the temp
# dir whatever happens (failure, timeout kill by ctest's SIGTERM, Ctrl-C).
set -Eeuo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../require_root.sh
source "$HERE/../require_root.sh"
require_root "lab tests (network namespaces)"
NETLAB=${NETLAB:-$HERE/../../scripts/netlab.sh}
export QUICLAB_BIN QUICLAB_LINKPROBE
: "${QUICLAB_BIN:?set by CTest}"

# qlt + 6 random hex digits: unique across parallel tests, 9 characters, so
# interface names (NAME-rc etc.) stay under 15.
new_name() { echo "qlt$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')"; }

TEST_LABS=()
CLEANUP_CMDS=()  # extra shell commands run at exit, before the labs go
TEST_TMP=$(mktemp -d /tmp/quiclab-labtest.XXXXXX)
cleanup() {
  local rc=$? n c
  for c in "${CLEANUP_CMDS[@]}"; do
    eval "$c" >/dev/null 2>&1 || true
  done
  for n in "${TEST_LABS[@]}"; do
    "$NETLAB" down "$n" >/dev/null 2>&1 || true
  done
  rm -rf "$TEST_TMP"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# up NAME [link options]: a lab owned by this test.
lab_up() {
  local name=$1
  shift
  TEST_LABS+=("$name")
  "$NETLAB" up --name "$name" --owner $$ "$@" >/dev/null
}

# Nothing of lab NAME is left: namespaces, state, processes.
assert_gone() {
  local name=$1 ns
  for ns in client router server; do
    [[ ! -e /run/netns/$name-$ns ]] || fail "namespace $name-$ns left behind"
  done
  [[ ! -d /run/quiclab-netlab/$name ]] || fail "state dir of $name left behind"
  if pgrep -f -- "--tun-c2s $name-tc" >/dev/null; then fail "emulator of $name still running"; fi
}

# json_get FILE PYTHON-EXPR: evaluates EXPR with `j` bound to the JSON in FILE.
json_get() { python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print($2)" "$1"; }
