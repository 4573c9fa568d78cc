#!/usr/bin/env bash
# Shared helpers for scenario tests (tests/scenarios/*.sh). Source it:
#   . "$(dirname "$0")/../lib/scenario.sh"
# Each scenario gets its own private PostgreSQL cluster in a temp dir (run as
# the postgres user when we are root), on a unix socket and a free port, so
# scenarios can stop, crash and restart it and run beside other clusters.
# Results: `ok NAME` / `fail NAME` lines, then sc_finish prints
# "SUITE: N passed, N failed", appends "P F" to build/test-results and exits.
set -uo pipefail

SC_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SC_PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
SC_PASSED=0
SC_FAILED=0
SC_DIR=$(mktemp -d /tmp/cv-scenario.XXXXXX)
chmod 755 "$SC_DIR"
SC_SERVICE_PID=""
SC_SERVICE_LOG="$SC_DIR/service.log"
SC_PGPORT=$((20000 + RANDOM % 10000))
SC_PGDATA="$SC_DIR/pg"
SC_PGSOCK="$SC_DIR"
SC_PGLOG="$SC_DIR/postgres.log"

# sc_free_port BASE SPAN: a TCP port on 127.0.0.1 nobody listens on.
sc_free_port() {
  local p
  for _ in $(seq 1 50); do
    p=$(($1 + RANDOM % $2))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
  done
  echo "$(($1 + RANDOM % $2))"
}

sc_as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

ok() { SC_PASSED=$((SC_PASSED + 1)); echo "ok   $*"; }
fail() { SC_FAILED=$((SC_FAILED + 1)); echo "FAIL $*"; }
# check NAME COMMAND...: ok when the command succeeds
check() { local name=$1; shift; if "$@"; then ok "$name"; else fail "$name"; fi; }

# sc_pg_init [postgres -c options...]: initdb (fsync on by default) and start.
sc_pg_init() {
  [ "$(id -u)" -eq 0 ] && chown postgres "$SC_DIR"
  sc_as_pg "$SC_PGBIN/initdb" -D "$SC_PGDATA" -A trust -U postgres --no-instructions >/dev/null || return 1
  SC_PG_OPTS="-c listen_addresses='' -k $SC_PGSOCK -p $SC_PGPORT $*"
  sc_pg_start
  export PGHOST=$SC_PGSOCK PGPORT=$SC_PGPORT PGUSER=postgres PGDATABASE=postgres
  createdb cardvault || return 1
  export CARDVAULT_DATABASE_URL="host=$SC_PGSOCK port=$SC_PGPORT user=postgres dbname=cardvault"
}
sc_pg_start() { sc_as_pg "$SC_PGBIN/pg_ctl" -D "$SC_PGDATA" -l "$SC_PGLOG" -w -o "$SC_PG_OPTS" start >/dev/null; }
sc_pg_stop() { sc_as_pg "$SC_PGBIN/pg_ctl" -D "$SC_PGDATA" -m "${1:-fast}" -w stop >/dev/null 2>&1; }

# sc_kek: writes a fresh KEK and exports CARDVAULT_KEK_FILE.
sc_kek() {
  (umask 077 && openssl rand -hex 32 > "$SC_DIR/kek")
  export CARDVAULT_KEK_FILE="$SC_DIR/kek"
}

# sc_setup [postgres options]: cluster + KEK + migrate + listen port.
sc_setup() {
  sc_pg_init "$@" || { echo "cannot start PostgreSQL"; exit 1; }
  sc_kek
  export CARDVAULT_LISTEN="127.0.0.1:$(sc_free_port 30000 20000)"
  export SC_URL="http://$CARDVAULT_LISTEN"
  export CARDVAULT_RATE_LIMIT_RPS=${CARDVAULT_RATE_LIMIT_RPS:-0}
  "$SC_BIN" migrate >/dev/null || { echo "migrate failed"; exit 1; }
  sc_app_role || unset SC_APP_URL
}

# sc_app_role: the service's login role, as in production: `migrate` (run as
# the schema owner, postgres here) created the group role cardvault_service;
# cardvault_app logs in (trust auth on the private socket) and is a member.
# Operator commands keep CARDVAULT_DATABASE_URL (the owner); sc_start runs
# serve with SC_APP_URL.
sc_app_role() {
  psql -X -q -v ON_ERROR_STOP=1 -d cardvault -c "DO \$\$ BEGIN
      IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cardvault_app') THEN
        CREATE ROLE cardvault_app LOGIN IN ROLE cardvault_service;
      END IF; END \$\$" >/dev/null || { echo "sc_app_role: cannot create the login role cardvault_app"; return 1; }
  export SC_APP_URL="host=$SC_PGSOCK port=$SC_PGPORT user=cardvault_app dbname=cardvault"
}

# sc_merchant NAME: creates a merchant; sets M_ID, M_PK, M_SK, M_DK.
sc_merchant() {
  local json
  json=$("$SC_BIN" merchant create "$1") || return 1
  M_ID=$(jq -r .merchant_id <<<"$json"); M_PK=$(jq -r .publishable_key <<<"$json")
  M_SK=$(jq -r .secret_key <<<"$json"); M_DK=$(jq -r .detokenize_key <<<"$json")
}

# sc_start [extra env assignments...]: starts `cardvault serve` (as the
# service's role, SC_APP_URL, unless the arguments set CARDVAULT_DATABASE_URL),
# waits for /healthz.
sc_start() {
  env CARDVAULT_DATABASE_URL="${SC_APP_URL:-$CARDVAULT_DATABASE_URL}" env "$@" "$SC_BIN" serve >>"$SC_SERVICE_LOG" 2>&1 &
  SC_SERVICE_PID=$!
  for _ in $(seq 1 100); do
    curl -sf "$SC_URL/healthz" >/dev/null 2>&1 && return 0
    kill -0 "$SC_SERVICE_PID" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}
sc_stop() {
  [ -n "$SC_SERVICE_PID" ] || return 0
  kill -TERM "$SC_SERVICE_PID" 2>/dev/null
  wait "$SC_SERVICE_PID" 2>/dev/null; local rc=$?
  SC_SERVICE_PID=""
  return $rc
}

# tokenize PAN MONTH YEAR [KEY]: sets SC_STATUS and SC_BODY (call it directly,
# not in $(...), or the variables stay in the subshell).
tokenize() {
  local out
  out=$(curl -s -w '\n%{http_code}' -X POST "$SC_URL/v1/tokens" -H "Authorization: Bearer ${4:-$M_PK}" \
        -H 'Content-Type: application/json' \
        -d "{\"pan\":\"$1\",\"exp_month\":$2,\"exp_year\":$3}")
  SC_STATUS=${out##*$'\n'}
  SC_BODY=${out%$'\n'*}
}

# luhn_pan PREFIX(15 digits or fewer) N: a 16-digit Luhn-valid PAN from prefix + counter.
luhn_pan() {
  local body
  body=$(printf '%s%0*d' "$1" $((15 - ${#1})) "$2")
  local sum=0 i d
  for ((i = 0; i < 15; i++)); do
    d=${body:14-i:1}
    if ((i % 2 == 0)); then d=$((d * 2)); ((d > 9)) && d=$((d - 9)); fi
    sum=$((sum + d))
  done
  echo "$body$(((10 - sum % 10) % 10))"
}

sc_cleanup() {
  [ -n "$SC_SERVICE_PID" ] && kill -9 "$SC_SERVICE_PID" 2>/dev/null
  sc_pg_stop immediate
  rm -rf "$SC_DIR"
}
trap sc_cleanup EXIT

sc_finish() {
  local suite=$1
  echo "$suite: $SC_PASSED passed, $SC_FAILED failed"
  mkdir -p "$SC_ROOT/build"
  echo "$SC_PASSED $SC_FAILED" >> "$SC_ROOT/build/test-results"
  [ "$SC_FAILED" -eq 0 ]
  exit $?
}

SC_BIN=${SC_BIN:-${1:-$SC_ROOT/build/release/cardvault}}
[[ "$SC_BIN" = /* ]] || SC_BIN="$SC_ROOT/$SC_BIN"
