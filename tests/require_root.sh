# Sourced by every test that needs root (namespaces, TUN, nftables, mounts).
#
#   require_root WHAT
#
# A skip is not a pass: under CI (CI=true) a test that cannot run as root
# fails, and so does a root run that then cannot build its namespace (the
# callers check that themselves and call `cannot_run`). Only a developer's
# non-root run may skip, with exit code 77 (CTest's SKIP_RETURN_CODE), and
# scripts/test.sh counts the skips.
require_root() {
  [[ $(id -u) -eq 0 ]] && return 0
  if [[ "${CI:-}" == true ]]; then
    echo "FAIL: $1 needs root, and CI must run it (CI=true, uid $(id -u))" >&2
    exit 1
  fi
  echo "SKIP: $1 needs root (a developer's non-root run; CI runs it as root)"
  exit 77
}

# cannot_run WHAT: root, yet the set-up failed (no netns, TUN or nft): a failure.
cannot_run() {
  echo "FAIL: cannot set up $1 (uid $(id -u), CI=${CI:-unset}): a test that cannot run does not pass" >&2
  exit 1
}
