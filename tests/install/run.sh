#!/usr/bin/env bash
# `make install` into a throwaway DESTDIR, then the installed binary alone,
# from a directory that holds no source tree: --help, --version, and
# `migrate` (the migrations compiled in) against the throwaway PostgreSQL
# that tests/lib/with-postgres.sh started; then the installed systemd units
# through `systemd-analyze verify` (no running manager needed) and their
# `systemd-analyze security` exposure score, printed, not asserted.
#   tests/lib/with-postgres.sh tests/install/run.sh build/release/cardvault
# Prints "install: N passed, N failed" and appends "P F" to build/test-results.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
OUT_DIR=$(dirname "$BIN")
pass=0; fail=0
ok() { pass=$((pass + 1)); echo "ok - $1"; }
not_ok() { fail=$((fail + 1)); echo "not ok - $1"; [ $# -gt 1 ] && printf '  %s\n' "$2"; }
check() { local what=$1; shift; if "$@"; then ok "$what"; else not_ok "$what"; fi; }

WORK=$(mktemp -d /tmp/cv-install-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
DEST=$WORK/dest
mkdir -p "$WORK/elsewhere"

# 1. The layout.
if make -C "$ROOT" --no-print-directory -s OUT="${OUT_DIR#"$ROOT"/}" DESTDIR="$DEST" PREFIX=/usr/local \
     install >"$WORK/install.log" 2>&1; then
  ok "make install DESTDIR=... PREFIX=/usr/local"
else
  not_ok "make install DESTDIR=... PREFIX=/usr/local" "$(tail -5 "$WORK/install.log")"
fi
IBIN=$DEST/usr/local/bin/cardvault
UNITS=$DEST/usr/local/lib/systemd/system
check "the binary is installed, mode 0755" test "$(stat -c %a "$IBIN" 2>/dev/null)" = 755
check "the service unit is installed" test -f "$UNITS/cardvault.service"
check "the migrate unit is installed" test -f "$UNITS/cardvault-migrate.service"
check "the units name the installed binary" \
  grep -q '^ExecStart=/usr/local/bin/cardvault serve$' "$UNITS/cardvault.service"
check "operations.md is installed" test -f "$DEST/usr/local/share/doc/cardvault/operations.md"
check "nothing is installed beside the binary for migrations" \
  test ! -e "$DEST/usr/local/share/cardvault"

# 2. The installed binary, away from the source tree.
cd "$WORK/elsewhere" || exit 2
unset CARDVAULT_MIGRATIONS_DIR
help=$("$IBIN" --help 2>&1); rc=$?
check "--help exits 0 and lists migrate" test "$rc" -eq 0 -a -n "$(grep -w migrate <<<"$help")"
ver=$("$IBIN" --version 2>&1); rc=$?
check "--version exits 0 and names cardvault" test "$rc" -eq 0 -a -n "$(grep -i cardvault <<<"$ver")"

n_files=$(ls "$ROOT"/migrations/*.sql | wc -l)
newest=$(ls "$ROOT"/migrations/*.sql | sed -n 's|.*/0*\([0-9][0-9]*\)_.*|\1|p' | sort -n | tail -1)
createdb cv_install_test
URL="host=$PGHOST port=$PGPORT user=$PGUSER dbname=cv_install_test"
out=$(CARDVAULT_DATABASE_URL=$URL "$IBIN" migrate 2>&1); rc=$?
if [ "$rc" -eq 0 ] && grep -q "\"applied\": *$n_files" <<<"$out" &&
   grep -q "\"schema_version\": *$newest" <<<"$out"; then
  ok "migrate from $PWD applies the $n_files compiled-in migrations"
else
  not_ok "migrate from $PWD applies the $n_files compiled-in migrations" "rc=$rc $(tail -2 <<<"$out")"
fi
rows=$(psql -XAtq -d cv_install_test -c 'SELECT count(*) FROM schema_migrations')
check "schema_migrations holds $n_files rows" test "$rows" = "$n_files"
out=$(CARDVAULT_DATABASE_URL=$URL "$IBIN" migrate 2>&1); rc=$?
check "a second migrate applies nothing" test "$rc" -eq 0 -a -n "$(grep '"applied": *0' <<<"$out")"
dropdb cv_install_test

# 3. The systemd units. verify needs no running manager; the units name
# /usr/local/bin/cardvault, which exists only under DESTDIR, so verify sees
# copies whose binary path points there (--root would also hide the host's
# own units that these depend on).
cd "$ROOT" || exit 2
mkdir -p "$WORK/verify"
if command -v systemd-analyze >/dev/null; then
  for u in cardvault.service cardvault-migrate.service; do
    sed "s|/usr/local/bin/cardvault|$IBIN|" "$UNITS/$u" > "$WORK/verify/$u"
    if v=$(systemd-analyze verify --man=no "$WORK/verify/$u" 2>&1) && [ -z "$v" ]; then
      ok "systemd-analyze verify $u"
    else
      not_ok "systemd-analyze verify $u" "$v"
    fi
  done
  for u in cardvault.service cardvault-migrate.service; do
    score=$(systemd-analyze security --offline=yes --root="$DEST" \
              "/usr/local/lib/systemd/system/$u" 2>&1 | grep -i 'overall exposure' || true)
    echo "# $u: ${score:-systemd-analyze security gave no score here}"
  done
else
  not_ok "systemd-analyze is installed (package systemd; make deps)"
fi

echo "install: $pass passed, $fail failed"
mkdir -p "$ROOT/build"
echo "$pass $fail" >> "${CV_TEST_RESULTS:-$ROOT/build/test-results}"
[ "$fail" -eq 0 ]
