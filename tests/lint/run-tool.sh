#!/usr/bin/env bash
# Runs one lint tool and turns its output into the suite line every test
# runner prints, so `make test` counts lint findings like failed tests.
#
#   tests/lint/run-tool.sh NAME COMMAND [ARG...]
#
# A finding is an output line "path:line[:col]: error|warning|<severity>:"
# (clang-tidy, clang-format, and cppcheck with the Makefile's --template);
# notes and source excerpts under it do not count. Prints the tool's
# output, then "NAME: P passed, F failed" (P is 1 on a clean run, F the number
# of findings, at least 1 if the tool failed without one), and appends "P F"
# to build/test-results. Exit 1 on any finding or tool failure.
set -uo pipefail
name=$1
shift
out=$("$@" 2>&1)
rc=$?
# clang-tidy's per-file tallies are noise; paths are shown relative to the top.
out=$(printf '%s\n' "$out" | grep -vE '^[0-9]+ warnings? (and [0-9]+ errors? )?generated\.$' |
      sed "s|^$PWD/||")
[ -z "$out" ] || printf '%s\n' "$out"
# A header's finding shows once per file that includes it: count it once.
findings=$(printf '%s\n' "$out" | grep -E '^[^ :]+:[0-9]+:([0-9]+:)? (error|warning|style|performance|portability):' |
           sort -u | wc -l)
if [ "$rc" -eq 0 ] && [ "$findings" -eq 0 ]; then
  passed=1 failed=0
else
  passed=0 failed=$((findings > 0 ? findings : 1))
fi
echo "$name: $passed passed, $failed failed"
mkdir -p build
echo "$passed $failed" >>build/test-results
[ "$failed" -eq 0 ]
