#!/usr/bin/env bash
# run-valgrind.sh BIN...: runs each unit-test binary under valgrind memcheck:
# any memory error, or a definitely lost block, fails it. Each binary's own
# "N passed, N failed" line is kept, with one more failure when valgrind
# objected although the tests passed. Appends "P F" per binary to
# build/test-results, like tests/lib/run-unit.sh.
set -uo pipefail
cd "$(dirname "$0")/../.."
mkdir -p build/valgrind
failed_bins=0
for bin in "$@"; do
  name=$(basename "$bin")
  vlog="build/valgrind/$name.log"
  out=$(valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
        --show-leak-kinds=definite --num-callers=30 --log-file="$vlog" "$bin" 2>&1)
  rc=$?
  line=$(printf '%s\n' "$out" | grep -E '[0-9]+ passed, [0-9]+ failed' | tail -1)
  summary=$(grep -E 'ERROR SUMMARY' "$vlog" | tail -1 | sed 's/^==[0-9]*== //')
  if [ -n "$line" ]; then
    p=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed.*/\1/')
    f=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed.*/\2/')
  else
    p=0
    f=1
  fi
  if [ "$rc" -eq 99 ] && [ "$f" -eq 0 ]; then
    f=1 # valgrind found errors the tests themselves did not notice
  fi
  printf 'valgrind %-26s %s | %s\n' "$name" "${line:-no summary line}" "${summary:-no valgrind summary}"
  if [ "$rc" -ne 0 ]; then
    [ "$rc" -eq 99 ] && grep -E -m1 -B2 -A25 'Invalid|uninitialised|definitely lost|Mismatched' \
      "$vlog" | sed 's/^/    /' | head -40
    failed_bins=$((failed_bins + 1))
  fi
  echo "$p $f" >>build/test-results
done
[ "$failed_bins" -eq 0 ]
