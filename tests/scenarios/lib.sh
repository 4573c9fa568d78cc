# Shared pieces of the scenario tests (sourced, not run): result counting,
# a throwaway service on a free loopback port, Luhn-valid test PANs, and a
# bulk request runner (one curl process, --parallel, a generated config).
# Callers set: CARDVAULT_BIN, TMP, SUITE (name for the summary line).
# shellcheck shell=bash

passed=0
failed=0
ok() { echo "ok - $*"; passed=$((passed + 1)); }
not_ok() { echo "not ok - $*"; failed=$((failed + 1)); }
indent() { sed 's/^/    | /'; }
# check DESC CMD...: ok when the command succeeds
check() {
    local desc=$1
    shift
    if "$@"; then ok "$desc"; else not_ok "$desc"; fi
}

# Ends the run: summary line, "P F" appended to build/test-results (or to
# $CV_TEST_RESULTS, for runs outside `make test`).
finish() {
    local root results
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
    results=${CV_TEST_RESULTS:-$root/build/test-results}
    mkdir -p "$(dirname "$results")"
    echo "$passed $failed" >>"$results"
    echo "$SUITE: $passed passed, $failed failed"
    [ "$failed" -eq 0 ]
}

require_tools() {
    local t
    for t in "$@"; do
        command -v "$t" >/dev/null || { echo "$SUITE: $t is required" >&2; exit 2; }
    done
}

free_port() { # a loopback port nothing listens on
    local p
    for _ in $(seq 1 50); do
        p=$((20000 + RANDOM % 20000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return
        fi
    done
    echo 28080
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

SERVICE_PID=""
# start_service STDOUT STDERR [VAR=value ...]: serve on $PORT (as the service's
# role, APP_DATABASE_URL, once make_app_role ran); 0 once /healthz answers.
start_service() {
    local out=$1 err=$2
    shift 2
    env CARDVAULT_DATABASE_URL="${APP_DATABASE_URL:-$CARDVAULT_DATABASE_URL}" \
        env "$@" CARDVAULT_LISTEN="127.0.0.1:$PORT" "$CARDVAULT_BIN" serve >>"$out" 2>>"$err" &
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

STOP_RC=0
stop_service() { # SIGTERM, up to 10 s, then SIGKILL; exit status in STOP_RC
    local i
    [ -n "$SERVICE_PID" ] || return 0
    kill -TERM "$SERVICE_PID" 2>/dev/null
    for i in $(seq 1 100); do
        kill -0 "$SERVICE_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$SERVICE_PID" 2>/dev/null && kill -KILL "$SERVICE_PID" 2>/dev/null
    wait "$SERVICE_PID" 2>/dev/null
    STOP_RC=$?
    SERVICE_PID=""
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

# status_of OUTFILE: the HTTP status recorded in its header dump.
status_of() {
    awk 'NR == 1 { print $2 }' "$1.h" 2>/dev/null
}
