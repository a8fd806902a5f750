#!/usr/bin/env bash
# The second README command: installs what is missing, builds, and runs the
# whole suite through CTest (unit, loopback interop, namespace tests), then the
# sanitizer build of the suite. Non-zero exit on any failure.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
start=$(date +%s)

"$here/scripts/setup.sh"

echo "== build (RelWithDebInfo)"
"$here/scripts/build.sh" "$here/build"
echo "== tests"
(cd "$here/build" && ctest --output-on-failure --timeout 600 </dev/null)

if [[ "${QUICLAB_SKIP_SANITIZE:-0}" != 1 ]]; then
  echo "== build (ASan+UBSan)"
  "$here/scripts/build.sh" "$here/build-asan" -DQUICLAB_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
  echo "== tests under ASan+UBSan (label: sanitize)"
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  (cd "$here/build-asan" && ctest --output-on-failure --timeout 900 -L sanitize </dev/null)
fi

if [[ "${QUICLAB_SKIP_FUZZ:-0}" != 1 ]]; then
  echo "== fuzz targets (clang, libFuzzer, bounded time; label: fuzz)"
  CC=clang CXX=clang++ cmake -S "$here" -B "$here/build-fuzz" -G Ninja -DQUICLAB_FUZZ=ON \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  ninja -C "$here/build-fuzz" -j "${QUICLAB_JOBS:-$(nproc)}" quiclab_fuzzers
  (cd "$here/build-fuzz" && ctest --output-on-failure --timeout 600 -L fuzz </dev/null)
fi

echo "== done in $(( $(date +%s) - start )) s"
