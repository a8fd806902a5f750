# Sourced by shell tests that start quiclab processes (see sanitizer_report.hpp).
#
#   sanitizer_reports FILE...   prints any sanitizer report found in FILEs;
#                               returns 1 when there is one.
# Callers stop their children with SIGTERM and wait for them first, so a
# sanitizer build had the chance to print its leak report.
sanitizer_reports() {
  local f found=0
  for f in "$@"; do
    [[ -f $f ]] || continue
    if grep -qE 'ERROR: (Address|Leak|UndefinedBehavior)Sanitizer|: runtime error: |WARNING: ThreadSanitizer' "$f"; then
      echo "sanitizer report in $f:" >&2
      grep -m1 -A30 -E 'ERROR: (Address|Leak|UndefinedBehavior)Sanitizer|: runtime error: |WARNING: ThreadSanitizer' "$f" >&2
      found=1
    fi
  done
  return $((found))
}
