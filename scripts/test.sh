#!/usr/bin/env bash
# The second README command: installs what is missing, builds, and runs the
# whole suite through CTest (unit, loopback interop, namespace tests), then the
# sanitizer build of the suite. Non-zero exit on any failure.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
start=$(date +%s)

"$here/scripts/setup.sh"

# Early and on every file, but it does not stop the suite: the tests still run
# and the formatting failure is the exit code at the end.
echo "== format (clang-format 14, .clang-format)"
format_rc=0
"$here/scripts/check_format.sh" || format_rc=$?

echo "== build (RelWithDebInfo)"
# -Werror: the suite's builds carry no warning (QUICLAB_WERROR, CMakeLists.txt).
"$here/scripts/build.sh" "$here/build" -DQUICLAB_WERROR=ON
# ctest's own summary, plus how many tests skipped (exit 77): a skip is never
# counted as a pass, and under CI (CI=true) or as root no test may skip at all.
run_ctest() {
  local dir=$1 log
  shift
  log=$(mktemp)
  local rc=0
  (cd "$dir" && ctest --output-on-failure "$@" </dev/null) 2>&1 | tee "$log" || rc=$?
  local skipped
  # ctest lists them at the end: "The following tests did not run: ... (Skipped)".
  skipped=$(grep -cE '^[[:space:]]+[0-9]+ - .* \(Skipped\)$' "$log" || true)
  echo "$skipped tests skipped"
  rm -f "$log"
  if ((rc == 0 && skipped > 0)) && [[ "${CI:-}" == true || $(id -u) -eq 0 ]]; then
    echo "FAIL: $skipped tests skipped under CI or as root" >&2
    return 1
  fi
  return "$rc"
}

echo "== tests"
run_ctest "$here/build" --timeout 600

if [[ "${QUICLAB_SKIP_SANITIZE:-0}" != 1 ]]; then
  echo "== build (ASan+UBSan)"
  "$here/scripts/build.sh" "$here/build-asan" -DQUICLAB_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug -DQUICLAB_WERROR=ON
  echo "== tests under ASan+UBSan (label: sanitize)"
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  run_ctest "$here/build-asan" --timeout 900 -L sanitize
fi

if [[ "${QUICLAB_SKIP_FUZZ:-0}" != 1 ]]; then
  echo "== fuzz targets (clang, libFuzzer, bounded time; label: fuzz)"
  CC=clang CXX=clang++ cmake -S "$here" -B "$here/build-fuzz" -G Ninja -DQUICLAB_FUZZ=ON -DQUICLAB_WERROR=ON \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  ninja -C "$here/build-fuzz" -j "${QUICLAB_JOBS:-$(nproc)}" quiclab_fuzzers
  # Independent, bounded processes: two at a time on the 2-core machine.
  run_ctest "$here/build-fuzz" --timeout 600 -L fuzz -j 2
fi

echo "== done in $(( $(date +%s) - start )) s"
if ((format_rc != 0)); then
  echo "FAIL: C/C++ sources not formatted (see '== format' above; scripts/check_format.sh --fix)" >&2
  exit 1
fi
