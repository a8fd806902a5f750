#!/usr/bin/env bash
# Checks the project's C/C++ sources against .clang-format (Google based, 120
# columns) with Debian 12's clang-format 14: other versions format differently,
# so another one is refused rather than trusted.
#
#   scripts/check_format.sh          lists the files clang-format would change;
#                                    exit 1 when there is one
#   scripts/check_format.sh --fix    formats those files in place
#
# The files: every *.cpp *.hpp *.h *.cc git tracks (nothing in the tree is
# vendored or generated; list such paths in `exclude` below when there is).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

fix=0
case "${1:-}" in
  "") ;;
  --fix) fix=1 ;;
  -h | --help)
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  *)
    echo "usage: scripts/check_format.sh [--fix]" >&2
    exit 2
    ;;
esac

clang_format=${CLANG_FORMAT:-clang-format}
if ! version=$("$clang_format" --version 2>/dev/null); then
  echo "check_format: $clang_format not found (Debian package clang-format; scripts/setup.sh installs it)" >&2
  exit 2
fi
if [[ ! $version =~ version\ 14\. ]]; then
  echo "check_format: need clang-format 14 (Debian 12), found: $version" >&2
  exit 2
fi

exclude=()  # pathspecs, e.g. ':(exclude)third_party/**'
mapfile -d '' files < <(git ls-files -z -- '*.cpp' '*.hpp' '*.h' '*.cc' "${exclude[@]}")

unformatted=()
for f in "${files[@]}"; do
  "$clang_format" --dry-run -Werror "$f" >/dev/null 2>&1 || unformatted+=("$f")
done

if ((${#unformatted[@]} == 0)); then
  echo "format: all ${#files[@]} C/C++ files formatted"
  exit 0
fi
if ((fix)); then
  "$clang_format" -i "${unformatted[@]}"
  printf 'formatted: %s\n' "${unformatted[@]}"
  echo "format: formatted ${#unformatted[@]} of ${#files[@]} C/C++ files"
  exit 0
fi
printf 'unformatted: %s\n' "${unformatted[@]}"
echo "format: ${#unformatted[@]} of ${#files[@]} C/C++ files are not formatted (scripts/check_format.sh --fix)" >&2
exit 1
