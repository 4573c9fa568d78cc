#!/usr/bin/env bash
# Runs each unit-test binary; each prints "<suite>: N passed, N failed".
# Appends the totals to build/test-results so `make test` can print one line.
set -uo pipefail
cd "$(dirname "$0")/../.."
mkdir -p build
failed_bins=0
for bin in "$@"; do
  out=$("$bin" 2>&1); rc=$?
  printf '%s\n' "$out" | tail -20
  line=$(printf '%s\n' "$out" | grep -E '[0-9]+ passed, [0-9]+ failed' | tail -1)
  if [ -n "$line" ]; then
    echo "$line" | sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed.*/\1 \2/' >> build/test-results
  else
    echo "0 1" >> build/test-results
  fi
  [ "$rc" -eq 0 ] || failed_bins=$((failed_bins + 1))
done
[ "$failed_bins" -eq 0 ]
