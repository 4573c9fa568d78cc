#!/usr/bin/env bash
# `make install` into a throwaway DESTDIR, then the installed tree used as an
# operator would: --help and --version, `migrate` from a directory that has
# no migrations/ (the binary must find the installed ones), and the systemd
# unit checked by `systemd-analyze verify` (any warning fails) with its
# exposure score printed.
#
#   tests/lint/install.sh
#
# Prints ok/not ok lines and "install: N passed, N failed"; appends "P F" to
# build/test-results.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
pass=0; fail=0
ok() { echo "ok - $*"; pass=$((pass + 1)); }
not_ok() { echo "not ok - $*"; fail=$((fail + 1)); }
check() { local n=$1; shift; if "$@"; then ok "$n"; else not_ok "$n"; fi; }
dest=$(mktemp -d /tmp/cv-install.XXXXXX)
chmod 755 "$dest"
trap 'rm -rf "$dest"' EXIT

if make --no-print-directory install DESTDIR="$dest" PREFIX=/usr/local >"$dest.log" 2>&1; then
  ok "make install DESTDIR=... PREFIX=/usr/local"
else
  not_ok "make install"; sed 's/^/    | /' "$dest.log" | tail -20
fi
rm -f "$dest.log"
bin=$dest/usr/local/bin/cardvault
unit=$dest/usr/local/lib/systemd/system/cardvault.service
check "the binary is installed, executable" test -x "$bin"
n_src=$(ls migrations/*.sql | wc -l)
n_inst=$(ls "$dest"/usr/local/share/cardvault/migrations/*.sql 2>/dev/null | wc -l)
check "every migration is installed ($n_inst of $n_src)" test "$n_inst" = "$n_src"
check "the systemd unit is installed" test -f "$unit"
check "the operator docs are installed" test -f "$dest/usr/local/share/doc/cardvault/operations.md"
check "the installed binary answers --help" sh -c "cd / && '$bin' --help >/dev/null"
check "the installed binary answers --version" sh -c "cd / && '$bin' --version | grep -q '^cardvault '"

# migrate from / (no migrations/ there): the installed ones, found beside the binary.
out=$(cd / && "$ROOT/tests/lib/with-postgres.sh" sh -c \
  "CARDVAULT_DATABASE_URL=\"host=\$PGHOST port=\$PGPORT user=\$PGUSER password=\$PGPASSWORD dbname=postgres\" '$bin' migrate" 2>&1)
if grep -q "\"applied\":$n_src" <<<"$out"; then
  ok "the installed binary migrates a new database from / (applied $n_src)"
else
  not_ok "the installed binary migrates a new database from /"; sed 's/^/    | /' <<<"$out" | tail -5
fi

# The unit, with ExecStart pointed at the installed binary (verify checks it is executable).
sed "s|/usr/local/bin/cardvault|$bin|" "$unit" >"$dest/cardvault.service"
v=$(cd "$dest" && systemd-analyze verify "$dest/cardvault.service" 2>&1); rc=$?
if [ $rc -eq 0 ] && [ -z "$v" ]; then
  ok "systemd-analyze verify: no error, no warning"
else
  not_ok "systemd-analyze verify (rc $rc)"; sed 's/^/    | /' <<<"$v"
fi
for key in 'LoadCredential=kek:' 'NoNewPrivileges=yes' 'ProtectSystem=strict' 'MemoryDenyWriteExecute=yes' \
           'LimitCORE=0' 'CapabilityBoundingSet=$' 'SystemCallFilter=@system-service'; do
  check "the unit sets ${key%\$}" grep -q "^$key" "$unit"
done
score=$(systemd-analyze security --offline=yes "$dest/cardvault.service" 2>/dev/null | grep -o 'Overall exposure level.*')
echo "# systemd-analyze security: ${score:-not available here}"

results=${CV_TEST_RESULTS:-$ROOT/build/test-results}
mkdir -p "$(dirname "$results")"
echo "$pass $fail" >>"$results"
echo "install: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
