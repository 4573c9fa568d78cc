#!/usr/bin/env bash
# run-fuzz.sh SECONDS TARGET...: runs each libFuzzer binary in build/fuzz/ for
# SECONDS on a fresh copy of tests/fuzz/corpus/<target>/ (new inputs go to
# build/fuzz/corpus-work/, never into the committed corpus), with its
# dictionary when there is one. A target fails on a non-zero exit, or on any
# sanitizer, leak or invariant report in its log. Prints executions and
# coverage per target, then "fuzz: N passed, N failed", and appends "P F" to
# build/test-results like tests/lib/run-unit.sh.
set -uo pipefail
cd "$(dirname "$0")/../.."
seconds=$1
shift
out=build/fuzz
mkdir -p "$out/logs" build
passed=0
failed=0
for t in "$@"; do
  work="$out/corpus-work/$t"
  artifacts="$out/artifacts/$t"
  log="$out/logs/$t.log"
  rm -rf "$work" "$artifacts"
  mkdir -p "$work" "$artifacts"
  cp tests/fuzz/corpus/"$t"/* "$work"/ 2>/dev/null
  args=(-max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048
        -artifact_prefix="$artifacts/")
  [ -f "tests/fuzz/$t.dict" ] && args+=(-dict="tests/fuzz/$t.dict")
  case "$t" in
    fuzz_json_tokenize) args+=(-max_len=9000) ;; # past the 8 KiB body cap
    *) args+=(-max_len=4096) ;;
  esac
  ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:abort_on_error=1:symbolize=1 \
  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    "$out/$t" "${args[@]}" "$work" >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -1)
  cov=$(grep -Eo 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1)
  files=$(find "$work" -type f | wc -l)
  if [ "$rc" -eq 0 ] && ! grep -Eq \
      'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|SUMMARY: [A-Za-z]+Sanitizer|invariant broken' \
      "$log"; then
    passed=$((passed + 1))
    printf '%-20s ok    %12s execs in %ss, %s, corpus %s files\n' "$t" "${execs:-?}" \
      "$seconds" "${cov:-cov: ?}" "$files"
  else
    failed=$((failed + 1))
    printf '%-20s FAIL  exit %s after %s execs; log %s; crashing input in %s/\n' "$t" "$rc" \
      "${execs:-?}" "$log" "$artifacts"
    grep -E -m1 -A30 'ERROR: |runtime error:|invariant broken' "$log" | head -40 | sed 's/^/    /'
  fi
done
echo "fuzz: $passed passed, $failed failed"
echo "$passed $failed" >>build/test-results
[ "$failed" -eq 0 ]
