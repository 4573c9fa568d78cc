#!/usr/bin/env bash
# The one harness of the scenario tests (tests/scenarios/*.sh), the contract
# test and the integration suite. Source it:
#   . "$(dirname "$0")/../lib/scenario.sh"
# It defines, once: the result lines (`ok - NAME` / `not ok - NAME`) and the
# closing "SUITE: N passed, N failed" line with "P F" appended to
# build/test-results (or $CV_TEST_RESULTS) for tests/lib/summary.sh; `q` (psql
# that stops on SQL errors); `need`, `require_tools`, `free_port`; Luhn-valid
# test PANs; a throwaway service; and a bulk request runner (one curl process).
#
# By default the caller also gets a private PostgreSQL cluster in a temp dir
# (run as the postgres user when we are root), on a unix socket and a free
# port, so it can stop, crash and restart it beside other clusters: sc_setup,
# sc_start, sc_stop, cleaned up on exit. Callers that run inside pg_virtualenv
# and keep their own temp dir set SC_CLUSTER=external before sourcing.

SC_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# The suites tokenize thousands of cards through one publishable key: load,
# not card testing. The hourly tokenize quotas are off unless a script sets
# them (tests/scenarios/abuse.sh does); the card-testing detector keeps its
# defaults (the generated cards never share a BIN and last 4 ten times).
export CARDVAULT_TOKENIZE_QUOTA_PER_HOUR=${CARDVAULT_TOKENIZE_QUOTA_PER_HOUR:-0}
export CARDVAULT_TOKENIZE_QUOTA_PER_HOUR_PUBLISHABLE=${CARDVAULT_TOKENIZE_QUOTA_PER_HOUR_PUBLISHABLE:-0}
export CARDVAULT_TOKENIZE_QUOTA_PER_HOUR_ORIGIN=${CARDVAULT_TOKENIZE_QUOTA_PER_HOUR_ORIGIN:-0}
passed=0
failed=0
SUITE=${SUITE:-scenario}

# ------------------------------------------------------------------ results

ok() { echo "ok - $*"; passed=$((passed + 1)); }
not_ok() { echo "not ok - $*"; failed=$((failed + 1)); }
indent() { sed 's/^/    | /'; }
# check NAME COMMAND...: ok when the command succeeds
check() {
    local name=$1
    shift
    if "$@"; then ok "$name"; else not_ok "$name"; fi
}

# finish: the summary line, "P F" appended to build/test-results (or to
# $CV_TEST_RESULTS, for runs outside `make test`); returns non-zero on failure.
finish() {
    local results=${CV_TEST_RESULTS:-$SC_ROOT/build/test-results}
    mkdir -p "$(dirname "$results")"
    echo "$passed $failed" >>"$results"
    echo "$SUITE: $passed passed, $failed failed"
    [ "$failed" -eq 0 ]
}
# sc_finish [SUITE]: finish and exit with its status.
sc_finish() {
    SUITE=${1:-$SUITE}
    finish
    exit $?
}

# need NAME COMMAND...: like check, but the rest cannot run without it: on
# failure, show the end of the service log and finish.
need() {
    local name=$1
    shift
    if "$@"; then ok "$name"; return 0; fi
    not_ok "$name"
    [ -n "${SC_SERVICE_LOG:-}" ] && tail -n 5 "$SC_SERVICE_LOG" | sed 's/^/#   log: /'
    sc_finish
}

# require_tools TOOL...: exit 2 unless every tool is on PATH.
require_tools() {
    local t
    for t in "$@"; do
        command -v "$t" >/dev/null || { echo "$SUITE: $t is required" >&2; exit 2; }
    done
}

# ------------------------------------------------------------ plumbing

# q SQL: psql on $DB (default cardvault), unaligned, stops on an SQL error.
q() { psql -X -q -At -v ON_ERROR_STOP=1 -d "${DB:-cardvault}" -c "$1"; }

# free_port [BASE SPAN]: a TCP port on 127.0.0.1 nobody listens on.
free_port() {
    # Below the kernel's ephemeral range (ip_local_port_range, 32768-60999
    # by default): a port in it can be taken as the source port of any
    # outgoing connection, or by a client's self-connect while the service is
    # down, and a restarted service then cannot bind it again.
    local base=${1:-15000} span=${2:-15000} p lo
    lo=$(awk '{ print $1 }' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
    [ $((base + span)) -le "$lo" ] || span=$((lo - base))
    for _ in $(seq 1 50); do
        p=$((base + RANDOM % span))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    echo "$((base + RANDOM % span))"
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

# gen_pans COUNT SALT: COUNT distinct Luhn-valid PANs, one per line. Lengths
# cycle through 16 (Visa 4, Mastercard 51-55), 15 (Amex 37) and 19 (Visa),
# with a random middle; never a published test number.
gen_pans() {
    awk -v n="$1" -v salt="$2" '
    function complete(p,   s, i, d, dbl) {
        s = 0; dbl = 1
        for (i = length(p); i >= 1; i--) {
            d = substr(p, i, 1) + 0
            if (dbl) { d *= 2; if (d > 9) d -= 9 }
            s += d; dbl = !dbl
        }
        return p ((10 - s % 10) % 10)
    }
    BEGIN {
        srand(salt)
        for (i = 0; i < n; i++) {
            k = i % 4
            mid = sprintf("%06d%06d", int(rand() * 1000000), i)
            if (k == 0) p = "4" sprintf("%03d", salt % 1000) substr(mid, 1, 11)        # 15 + check = 16
            else if (k == 1) p = "5" (1 + i % 5) sprintf("%02d", salt % 100) substr(mid, 1, 11)
            else if (k == 2) p = "37" sprintf("%02d", salt % 100) substr(mid, 3, 10)   # 14 + check = 15
            else p = "4" sprintf("%03d", salt % 1000) sprintf("%02d", int(rand() * 100)) mid # 18 + 1 = 19
            print complete(p)
        }
    }'
}

# curl_config_entry URL METHOD AUTH BODY OUTFILE: one operation of a curl -K
# file. The body goes to OUTFILE and the response headers to OUTFILE.h (the
# status line is read back by status_of).
curl_config_entry() {
    local body=${4//\\/\\\\}
    body=${body//\"/\\\"}
    printf 'next\nnoproxy = "*"\nurl = "%s"\nrequest = "%s"\nheader = "Authorization: Bearer %s"\n' \
        "$1" "$2" "$3"
    if [ -n "$4" ]; then
        printf 'header = "Content-Type: application/json"\ndata-binary = "%s"\n' "$body"
    fi
    printf 'output = "%s"\ndump-header = "%s.h"\nsilent\n' "$5" "$5"
}

# run_curl_config FILE: runs every operation, 16 at a time, in one process.
run_curl_config() {
    curl --noproxy '*' --parallel --parallel-max 16 -K "$1" 2>/dev/null
}

# run_tokenize_config FILE PATH-PREFIX N TOKENS: runs a curl -K file whose
# operation i wrote PATH-PREFIXi (and its .h) and reads the answers back: sets
# secs (wall time, 0.1 s) and n201 (how many answered 201), and writes each
# answer's token, or "-", to TOKENS, one a line in request order.
run_tokenize_config() {
    local t0 answers
    t0=$(date +%s.%N)
    run_curl_config "$1"
    secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    # One awk and one jq over all answers, in request order.
    mapfile -t answers < <(seq 1 "$3" | sed "s|^|$2|")
    n201=$(awk 'FNR == 1 && $2 == 201' "${answers[@]/%/.h}" | wc -l)
    jq -r '.token // "-"' "${answers[@]}" >"$4" 2>/dev/null
}

# status_of OUTFILE: the HTTP status recorded in its header dump.
status_of() {
    awk 'NR == 1 { print $2 }' "$1.h" 2>/dev/null
}

# stop_pid PID: SIGTERM, up to 10 s, then SIGKILL; exit status in STOP_RC.
STOP_RC=0
stop_pid() {
    local pid=$1
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    STOP_RC=$?
}

# free_port_pair: sets PORT and OPS_PORT to two different free ports (the
# API and the ops listener of one service).
free_port_pair() {
    PORT=$(free_port "$@")
    OPS_PORT=$(free_port "$@")
    while [ "$OPS_PORT" = "$PORT" ]; do OPS_PORT=$(free_port "$@"); done
}

# external_service_env: for a service on the pg_virtualenv cluster, database
# $DB: a fresh KEK in $TMP/kek, free PORT and OPS_PORT with their BASE and
# OPS_BASE URLs, and the service's CARDVAULT_DATABASE_URL and
# CARDVAULT_KEK_FILE exported.
external_service_env() {
    openssl rand -hex 32 >"$TMP/kek"
    chmod 600 "$TMP/kek"
    free_port_pair
    BASE="http://127.0.0.1:$PORT"
    OPS_BASE="http://127.0.0.1:$OPS_PORT"
    export CARDVAULT_DATABASE_URL="host=$PGHOST port=$PGPORT user=$PGUSER dbname=$DB"
    export CARDVAULT_KEK_FILE="$TMP/kek"
}

# make_app_role: after `cardvault migrate` (run as the schema owner, which
# created the group role cardvault_service), the login role serve runs as:
# cardvault_app, a member of cardvault_service, with a fresh password (the
# cluster may ask for one over TCP). Sets APP_DATABASE_URL:
# CARDVAULT_DATABASE_URL with user and password replaced (libpq: the last
# keyword wins). Operator commands keep CARDVAULT_DATABASE_URL.
APP_DATABASE_URL=""
make_app_role() {
    local pw
    pw=$(openssl rand -hex 16)
    psql -X -q -v ON_ERROR_STOP=1 -d "$CARDVAULT_DATABASE_URL" -c "DO \$\$ BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cardvault_app') THEN
          CREATE ROLE cardvault_app LOGIN IN ROLE cardvault_service;
        END IF;
        ALTER ROLE cardvault_app PASSWORD '$pw'; END \$\$" >/dev/null || return 1
    APP_DATABASE_URL="$CARDVAULT_DATABASE_URL user=cardvault_app password=$pw"
}

# A service on $PORT, its ops listener on $OPS_PORT (external clusters; the
# private one uses sc_start).
SERVICE_PID=""
# start_service STDOUT STDERR [VAR=value ...]: serve on $PORT and $OPS_PORT
# (as the service's role, APP_DATABASE_URL, once make_app_role ran); 0 once
# /healthz answers.
start_service() {
    local out=$1 err=$2
    shift 2
    env CARDVAULT_DATABASE_URL="${APP_DATABASE_URL:-$CARDVAULT_DATABASE_URL}" \
        env "$@" CARDVAULT_LISTEN="127.0.0.1:$PORT" CARDVAULT_OPS_LISTEN="127.0.0.1:${OPS_PORT:?}" \
        "$CARDVAULT_BIN" serve >>"$out" 2>>"$err" &
    SERVICE_PID=$!
    for _ in $(seq 1 150); do
        if curl -fsS --noproxy '*' -o /dev/null "http://127.0.0.1:$PORT/healthz" 2>/dev/null; then
            return 0
        fi
        kill -0 "$SERVICE_PID" 2>/dev/null || break
        sleep 0.1
    done
    return 1
}
stop_service() { # stop_pid on the service, if one runs
    [ -n "$SERVICE_PID" ] || return 0
    stop_pid "$SERVICE_PID"
    SERVICE_PID=""
}

[ "${SC_CLUSTER:-private}" = external ] && return 0

# req METHOD PATH KEY [BODY [curl args...]]: one request to $SC_URL. KEY (if
# not empty) as Bearer, BODY (if not empty) as JSON. Status in R_STATUS, body
# in R_BODY and $SC_DIR/r.body, response headers in $SC_DIR/r.h.
req() {
    local m=$1 p=$2 k=$3 args
    shift 3
    args=(-s -o "$SC_DIR/r.body" -D "$SC_DIR/r.h" -w '%{http_code}' -X "$m" "$SC_URL$p")
    [ -n "$k" ] && args+=(-H "Authorization: Bearer $k")
    if [ $# -ge 1 ]; then
        [ -n "$1" ] && args+=(-H 'Content-Type: application/json' --data-binary "$1")
        shift
    fi
    R_STATUS=$(curl "${args[@]}" "$@")
    R_BODY=$(cat "$SC_DIR/r.body")
}

# ------------------------------------------------ a private cluster

set -uo pipefail
SC_PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
SC_DIR=$(mktemp -d /tmp/cv-scenario.XXXXXX)
chmod 755 "$SC_DIR"
SC_SERVICE_PID=""
SC_SERVICE_LOG="$SC_DIR/service.log"
SC_PGPORT=$((20000 + RANDOM % 10000))
SC_PGDATA="$SC_DIR/pg"
SC_PGSOCK="$SC_DIR"
SC_PGLOG="$SC_DIR/postgres.log"

sc_as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

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

# sc_setup [postgres options]: cluster + KEK + migrate + listen ports: the
# API on SC_URL, the ops listener (/healthz, /readyz, /metrics) on SC_OPS_URL.
sc_setup() {
  sc_pg_init "$@" || { echo "cannot start PostgreSQL"; exit 1; }
  sc_kek
  free_port_pair 30000 20000
  export CARDVAULT_LISTEN="127.0.0.1:$PORT"
  export SC_URL="http://$CARDVAULT_LISTEN"
  export CARDVAULT_OPS_LISTEN="127.0.0.1:$OPS_PORT"
  export SC_OPS_URL="http://$CARDVAULT_OPS_LISTEN"
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

# sc_merchant NAME: creates a merchant; sets M_ID, M_PK, M_SK, M_DK and M_RK
# (the relay key).
sc_merchant() {
  local json
  json=$("$SC_BIN" merchant create "$1") || return 1
  M_ID=$(jq -r .merchant_id <<<"$json"); M_PK=$(jq -r .publishable_key <<<"$json")
  M_SK=$(jq -r .secret_key <<<"$json"); M_DK=$(jq -r .detokenize_key <<<"$json")
  M_RK=$(jq -r '.relay_key // ""' <<<"$json")
}

# sc_start [extra env assignments...]: starts `cardvault serve` (as the
# service's role, SC_APP_URL, unless the arguments set CARDVAULT_DATABASE_URL),
# waits for /healthz.
sc_start() {
  local try from
  # A port freed by kill -9 can refuse a new bind for a moment (sockets of the
  # killed process are still being torn down): retry a failed bind, never a
  # service that exits for another reason.
  for try in 1 2 3 4 5 6 7 8 9 10; do
    from=$(($(stat -c %s "$SC_SERVICE_LOG" 2>/dev/null || echo 0) + 1))
    env CARDVAULT_DATABASE_URL="${SC_APP_URL:-$CARDVAULT_DATABASE_URL}" env "$@" "$SC_BIN" serve >>"$SC_SERVICE_LOG" 2>&1 &
    SC_SERVICE_PID=$!
    for _ in $(seq 1 100); do
      curl -sf "$SC_URL/healthz" >/dev/null 2>&1 && return 0
      kill -0 "$SC_SERVICE_PID" 2>/dev/null || break
      sleep 0.05
    done
    if kill -0 "$SC_SERVICE_PID" 2>/dev/null; then
      echo "# sc_start: service did not answer /healthz within 5 s" >&2
      return 1
    fi
    wait "$SC_SERVICE_PID" 2>/dev/null
    SC_SERVICE_PID=""
    if ! tail -c "+$from" "$SC_SERVICE_LOG" | grep -q 'cannot listen on'; then
      echo "# sc_start: service exited; its last log lines:" >&2
      tail -c "+$from" "$SC_SERVICE_LOG" | tail -n 5 | sed 's/^/#   /' >&2
      return 1
    fi
    echo "# sc_start: bind failed (try $try), retrying in 0.5 s" >&2
    sleep 0.5
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

# sc_pin_binary: run one binary from start to end even if the build is redone
# meanwhile (a scenario that restarts the service would otherwise mix builds
# after a relink). The original stays in SC_BIN_ORIG.
sc_pin_binary() {
  SC_BIN_ORIG=$SC_BIN
  cp "$SC_BIN" "$SC_DIR/cardvault" && SC_BIN=$SC_DIR/cardvault
}

sc_cleanup() {
  [ -n "$SC_SERVICE_PID" ] && kill -9 "$SC_SERVICE_PID" 2>/dev/null
  sc_pg_stop immediate
  rm -rf "$SC_DIR"
}
trap sc_cleanup EXIT

# No load balancer in front: close the listener as soon as a stop signal arrives.
export CARDVAULT_DRAIN_GRACE_MS=${CARDVAULT_DRAIN_GRACE_MS:-0}
SC_BIN=${SC_BIN:-${1:-$SC_ROOT/build/release/cardvault}}
[[ "$SC_BIN" = /* ]] || SC_BIN="$SC_ROOT/$SC_BIN"
