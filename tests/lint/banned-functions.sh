#!/usr/bin/env bash
# Banned C library functions.
#
#   tests/lint/banned-functions.sh            scan the tree, then self-test
#   tests/lint/banned-functions.sh FILE...    scan only these files (no self-test)
#
# Each function below has a safer replacement the code base already uses:
#   strtok            hidden static state, not thread-safe (the service is
#                     multi-threaded) and it writes into its input: parse by
#                     hand or use strtok_r on a private copy.
#   sprintf vsprintf  no bound on the output: snprintf, or cv_buf_appendf.
#   strcpy strcat     no bound on the output: memcpy after a length check, or
#                     cv_buf_append.
#   gets              cannot be used safely at all; removed from C11.
#   atoi atol atof    no error reporting, undefined behaviour on overflow
#                     (CERT ERR34-C): strtol/strtoull/strtod with endptr and
#                     errno.
#   rand srand        predictable, not a CSPRNG: RAND_bytes (secbuf.c,
#                     envelope.c) for anything that must not be guessed.
#   system popen      run a shell: command injection, inherited environment
#                     and file descriptors; the service never needs a shell.
# How it reads C: comments, string and character literals and preprocessor
# lines are blanked first (so "rand" in <openssl/rand.h> or in a comment
# does not count); then an identifier from the list, as a whole word and not
# a member (".x", "->x"), followed by "(" is a call. snprintf, strtok_r or
# cv_rand are different words and pass.
# Self-test: tests/lint/fixtures/banned.c plants calls (each line marked
# /* BANNED-EXPECT-FAIL */) and look-alikes that must pass.
# Prints one line per finding and "banned: N passed, N failed"; appends
# "P F" to build/test-results. Exit 1 on any finding.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 2
command -v perl >/dev/null || { echo "banned: perl is required"; exit 2; }

BANNED='strtok sprintf vsprintf strcpy strcat gets atoi atol atof rand srand system popen'

scan() { # scan FILE...: prints "file:line: banned call NAME()" per finding
  perl -e '
    my %banned = map { $_ => 1 } split / /, shift @ARGV;
    for my $file (@ARGV) {
        open(my $fh, "<", $file) or do { print "$file:0: cannot read\n"; next; };
        local $/; my $src = <$fh>; close $fh;
        # Blank comments, literals and preprocessor lines, keeping newlines
        # so that line numbers stay right.
        my $blank = sub { my $s = shift; $s =~ s/[^\n]/ /g; $s };
        $src =~ s{(/\*.*?\*/|//[^\n]*|"(?:[^"\\\n]|\\.)*"|\x27(?:[^\x27\\\n]|\\.)*\x27|^[ \t]*#(?:[^\n\\]|\\.)*)}{$blank->($1)}gmse;
        my @lines = split /\n/, $src, -1;
        for my $i (0 .. $#lines) {
            while ($lines[$i] =~ /(?<![\w.>])([A-Za-z_]\w*)\s*\(/g) {
                print "$file:", $i + 1, ": banned call $1()\n" if $banned{$1};
            }
        }
    }' "$BANNED" "$@"
}

if [ $# -gt 0 ]; then
  out=$(scan "$@")
  [ -z "$out" ] || printf '%s\n' "$out"
  [ -z "$out" ]
  exit $?
fi

shopt -s nullglob globstar
files=(service/**/*.[ch] include/**/*.h tests/unit/**/*.[ch] tests/integration/**/*.[ch]
       tests/fuzz/**/*.[ch])
passed=0
failed=0
out=$(scan "${files[@]}")
if [ -n "$out" ]; then
  printf '%s\n' "$out" | sed 's/^/FAIL /'
  failed=$(printf '%s\n' "$out" | wc -l)
fi
echo "ok   ${#files[@]} files scanned for: $BANNED"
passed=$((passed + 1))

# Self-test: every planted call is caught, and nothing else in the fixture.
fixture=tests/lint/fixtures/banned.c
expect=$(grep -n '/\* BANNED-EXPECT-FAIL \*/' "$fixture" | cut -d: -f1 | sort -n | tr '\n' ' ')
got=$(scan "$fixture" | cut -d: -f2 | sort -n | tr '\n' ' ')
if [ -n "$expect" ] && [ "$expect" = "$got" ]; then
  echo "ok   self-test: the planted calls in $fixture are caught (lines $expect) and nothing else"
  passed=$((passed + 1))
else
  echo "FAIL self-test: $fixture plants calls on lines [$expect], the check reported lines [$got]"
  failed=$((failed + 1))
fi

echo "banned: $passed passed, $failed failed"
mkdir -p build
echo "$passed $failed" >>build/test-results
[ "$failed" -eq 0 ]
