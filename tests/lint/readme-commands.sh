#!/usr/bin/env bash
# Every command `cardvault --help` lists is in the README's command list.
#
#   tests/lint/readme-commands.sh [BINARY]     (default build/release/cardvault)
#
# The help text is the source of truth (it is printed by the binary); the
# README's "Command line" block is written by hand and drifts. A command is
# the first word of a line indented by two spaces under "commands:" in the
# help; the README must have a line starting "cardvault WORD".
# Prints ok/not ok lines and "readme-commands: N passed, N failed"; appends
# "P F" to build/test-results.
set -uo pipefail
cd "$(dirname "$0")/../.."
bin=${1:-build/release/cardvault}
pass=0; fail=0
[ -x "$bin" ] || { echo "readme-commands: $bin not built" >&2; echo "0 1" >>build/test-results; exit 1; }
commands=$("$bin" --help 2>&1 | awk '/^commands:/ { on = 1; next } on && /^[^ ]/ { on = 0 }
  on && /^  [a-z]/ { print $1 }' | sort -u)
for c in $commands; do
  if grep -qE "^cardvault $c( |$)" README.md; then
    echo "ok - README lists cardvault $c"; pass=$((pass + 1))
  else
    echo "not ok - README's command list lacks cardvault $c"; fail=$((fail + 1))
  fi
done
echo "readme-commands: $pass passed, $fail failed"
mkdir -p build && echo "$pass $fail" >>build/test-results
[ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]
