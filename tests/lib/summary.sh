#!/usr/bin/env bash
# Prints the one summary line CI reads, from the per-suite totals the test
# runners appended to build/test-results, and exits non-zero on any failure.
cd "$(dirname "$0")/../.."
passed=0; failed=0
if [ -f build/test-results ]; then
  while read -r p f; do passed=$((passed + p)); failed=$((failed + f)); done < build/test-results
fi
echo "TOTAL: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
