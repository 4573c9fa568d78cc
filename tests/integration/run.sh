#!/usr/bin/env bash
# Integration and storage-policy tests for cardvault.
#
#   tests/integration/run.sh CARDVAULT_BIN ITEST_BIN
#
# Runs inside pg_virtualenv (PGHOST, PGPORT, PGUSER, PGPASSWORD exported; see
# tests/lib/with-postgres.sh). It checks the command line (help, exit codes,
# migrate under concurrency, serve refusing bad configuration), starts
# `cardvault serve`, runs the HTTP suite (ITEST_BIN), then stops the service
# and searches pg_dump, the service log and the cluster's files for every PAN
# and CVC the suite sent: none may appear. Prints one line per check and ends
# with "integration: N passed, N failed"; exits non-zero on any failure.
#
# Optional: CV_PRISM=1 runs the HTTP suite through Prism's validating proxy
# (tests/contract); CV_KEEP_TMP=1 keeps the temp dir (KEK, log, dump).
set -u
umask 077

if [ $# -ne 2 ]; then
    echo "usage: $0 CARDVAULT_BIN ITEST_BIN" >&2
    exit 2
fi
CARDVAULT_BIN=$(realpath "$1")
ITEST_BIN=$(realpath "$2")
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 2

for v in PGHOST PGPORT PGUSER; do
    if [ -z "${!v:-}" ]; then
        echo "run.sh: $v is not set; run me under pg_virtualenv (tests/lib/with-postgres.sh)" >&2
        exit 2
    fi
done
SUITE=integration
SC_CLUSTER=external # pg_virtualenv brings the cluster
# shellcheck source=tests/lib/scenario.sh
. "$ROOT/tests/lib/scenario.sh"
require_tools jq psql pg_dump createdb openssl curl timeout

TMP=$(mktemp -d -t cardvault-itest.XXXXXX)
LOG="$TMP/service.log"
SERVICE_PID=""
PRISM_PID=""

cleanup() {
    [ -n "$PRISM_PID" ] && stop_pid "$PRISM_PID"
    [ -n "$SERVICE_PID" ] && stop_pid "$SERVICE_PID"
    if [ "${CV_KEEP_TMP:-}" = 1 ]; then
        echo "# kept $TMP"
    else
        rm -rf "$TMP"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

DB=cardvault_test
DB_EMPTY=cardvault_unmigrated

dropdb --if-exists "$DB" 2>/dev/null
dropdb --if-exists "$DB_EMPTY" 2>/dev/null
if ! createdb "$DB" || ! createdb "$DB_EMPTY"; then
    echo "run.sh: createdb failed" >&2
    exit 1
fi

openssl rand -hex 32 >"$TMP/kek"
openssl rand -hex 32 >"$TMP/kek-other"
openssl rand -hex 16 >"$TMP/kek-short"
cp "$TMP/kek" "$TMP/kek-0644"
chmod 600 "$TMP/kek" "$TMP/kek-other" "$TMP/kek-short"
chmod 644 "$TMP/kek-0644"

PORT=$(free_port)
ALT_PORT=$((PORT + 1))
OPS_PORT=$((PORT + 2))     # the ops listener: /healthz, /readyz, /metrics
ALT_OPS_PORT=$((PORT + 3)) # the second instance's
export CARDVAULT_DATABASE_URL="host=$PGHOST port=$PGPORT user=$PGUSER dbname=$DB"
export CARDVAULT_KEK_FILE="$TMP/kek"
export CARDVAULT_LISTEN="127.0.0.1:$PORT"
# No load balancer in front: close the listener as soon as a stop signal arrives.
export CARDVAULT_DRAIN_GRACE_MS=${CARDVAULT_DRAIN_GRACE_MS:-0}
export CARDVAULT_OPS_LISTEN="127.0.0.1:$OPS_PORT"
EMPTY_DB_URL="host=$PGHOST port=$PGPORT user=$PGUSER dbname=$DB_EMPTY"
echo "# cardvault $CARDVAULT_BIN, listen 127.0.0.1:$PORT, database $DB, tmp $TMP"

# ---------------------------------------------------------------- command line

for args in "--help" "merchant --help" "key --help" "serve --help" "migrate --help"; do
    # shellcheck disable=SC2086
    out=$(env -u CARDVAULT_DATABASE_URL -u CARDVAULT_KEK_FILE "$CARDVAULT_BIN" $args 2>&1)
    rc=$?
    if [ $rc -eq 0 ] && [ -n "$out" ]; then
        ok "cardvault $args exits 0 and prints help"
    else
        not_ok "cardvault $args: exit $rc, ${#out} bytes of output"
    fi
done

"$CARDVAULT_BIN" --bogus >"$TMP/bogus.out" 2>&1
rc=$?
lines=$(grep -c . "$TMP/bogus.out")
if [ $rc -eq 2 ] && [ "$lines" -eq 1 ]; then
    ok "cardvault --bogus exits 2 with one line: $(head -c 160 "$TMP/bogus.out")"
else
    not_ok "cardvault --bogus: exit $rc (want 2), $lines lines (want 1)"
    indent <"$TMP/bogus.out"
fi
"$CARDVAULT_BIN" merchant --bogus >"$TMP/bogus.out" 2>&1
rc=$?
if [ $rc -eq 2 ]; then
    ok "cardvault merchant --bogus exits 2"
else
    not_ok "cardvault merchant --bogus: exit $rc (want 2)"
    indent <"$TMP/bogus.out"
fi

# expect_refusal DESC REGEX-or-empty [VAR=value ...]: `serve` must exit non-zero with one line.
expect_refusal() {
    local desc=$1 pat=$2 out="$TMP/refusal.out" rc lines
    shift 2
    env "$@" CARDVAULT_LISTEN="127.0.0.1:$ALT_PORT" CARDVAULT_OPS_LISTEN="127.0.0.1:$ALT_OPS_PORT" \
        timeout 10 "$CARDVAULT_BIN" serve >"$out" 2>&1
    rc=$?
    lines=$(grep -c . "$out")
    if [ $rc -eq 124 ]; then
        not_ok "$desc: still serving after 10 s"
    elif [ $rc -eq 0 ]; then
        not_ok "$desc: exit 0"
    elif [ "$lines" -ne 1 ]; then
        not_ok "$desc: exit $rc but $lines lines of output (want one line)"
        head -20 "$out" | indent
    elif [ -n "$pat" ] && ! grep -qiE "$pat" "$out"; then
        not_ok "$desc: message does not match /$pat/: $(cat "$out")"
    else
        ok "$desc (exit $rc: $(head -c 160 "$out"))"
    fi
}

expect_refusal "serve refuses an unmigrated database" "migrat" \
    CARDVAULT_DATABASE_URL="$EMPTY_DB_URL"

# ---------------------------------------------------------------------- migrate

"$CARDVAULT_BIN" migrate >"$TMP/migrate1.out" 2>&1 &
m1=$!
"$CARDVAULT_BIN" migrate >"$TMP/migrate2.out" 2>&1 &
m2=$!
wait $m1
rc1=$?
wait $m2
rc2=$?
if [ $rc1 -eq 0 ] && [ $rc2 -eq 0 ]; then
    ok "two concurrent 'cardvault migrate' runs both exit 0"
else
    not_ok "concurrent migrate: exit codes $rc1 and $rc2"
    indent <"$TMP/migrate1.out"
    indent <"$TMP/migrate2.out"
fi
if "$CARDVAULT_BIN" migrate >"$TMP/migrate3.out" 2>&1; then
    ok "migrate on a migrated database exits 0"
else
    not_ok "migrate on a migrated database failed"
    indent <"$TMP/migrate3.out"
fi
n_files=$(find migrations -maxdepth 1 -name '[0-9]*_*.sql' 2>/dev/null | wc -l)
vcol=$(q "SELECT column_name FROM information_schema.columns WHERE table_name = 'schema_migrations'
          ORDER BY (column_name = 'version') DESC, ordinal_position LIMIT 1" 2>/dev/null)
if [ -z "$vcol" ]; then
    not_ok "schema_migrations table not found"
else
    counts=$(q "SELECT count(*) || ' ' || count(DISTINCT \"$vcol\") FROM schema_migrations")
    total=${counts% *}
    distinct=${counts#* }
    if [ "$total" = "$distinct" ] && [ "$total" = "$n_files" ] && [ "$total" -gt 0 ]; then
        ok "schema_migrations lists each of the $n_files migrations once"
    else
        not_ok "schema_migrations: $total rows, $distinct distinct $vcol, $n_files migration files"
    fi
fi

# The login role serve runs as: a member of cardvault_service, the group role
# migrate created (docs/operations.md). Operator commands stay on the owner's
# CARDVAULT_DATABASE_URL; serve gets APP_DATABASE_URL (libpq: the last keyword wins).
APP_PW=$(openssl rand -hex 16)
if psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -c "DO \$\$ BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cardvault_app') THEN
          CREATE ROLE cardvault_app LOGIN IN ROLE cardvault_service;
        END IF;
        ALTER ROLE cardvault_app PASSWORD '$APP_PW'; END \$\$" >/dev/null; then
    ok "migrate created cardvault_service; login role cardvault_app is a member of it"
else
    not_ok "cannot create the login role cardvault_app in role cardvault_service"
fi
APP_DATABASE_URL="$CARDVAULT_DATABASE_URL user=cardvault_app password=$APP_PW"

# -------------------------------------------------------------- merchants, keys

key_re='^(pk|sk|dk|rk)_[0-9A-Za-z]{49}$'
# run_cli OUTFILE LABEL ARGS...: the CLI, stdout to OUTFILE, stderr to
# OUTFILE.err; on failure "LABEL failed" and its stderr.
run_cli() {
    local out=$1 label=$2
    shift 2
    "$CARDVAULT_BIN" "$@" >"$out" 2>"$out.err" && return 0
    not_ok "$label failed"
    indent <"$out.err"
    return 1
}
create_merchant() { # NAME OUTFILE
    run_cli "$2" "merchant create '$1'" merchant create "$1" || return 1
    local id pk sk dk rk name
    id=$(jq -er .merchant_id "$2" 2>/dev/null)
    pk=$(jq -er .publishable_key "$2" 2>/dev/null)
    sk=$(jq -er .secret_key "$2" 2>/dev/null)
    dk=$(jq -er .detokenize_key "$2" 2>/dev/null)
    rk=$(jq -er .relay_key "$2" 2>/dev/null)
    name=$(jq -er .name "$2" 2>/dev/null)
    if [[ $id =~ ^mer_[0-9A-Za-z]{20}$ && $pk =~ ^pk_ && $pk =~ $key_re && $sk =~ ^sk_ &&
        $sk =~ $key_re && $dk =~ ^dk_ && $dk =~ $key_re && $rk =~ ^rk_ && $rk =~ $key_re &&
        $name == "$1" ]]; then
        ok "merchant create '$1' prints merchant_id, name and pk_/sk_/dk_/rk_ keys"
    else
        not_ok "merchant create '$1' printed an unexpected object: $(jq -c '{merchant_id, name}' "$2" 2>/dev/null)"
        return 1
    fi
}
create_merchant "Shop A" "$TMP/m1.json"
create_merchant "Shop B" "$TMP/m2.json"
M1_ID=$(jq -r '.merchant_id // ""' "$TMP/m1.json" 2>/dev/null)

create_key() { # SCOPES EXPECTED-KIND OUTFILE
    run_cli "$3" "key create --scopes $1" key create --merchant "$M1_ID" --scopes "$1" || return 1
    local key prefix mer scopes want
    key=$(jq -er .key "$3" 2>/dev/null)
    prefix=$(jq -er .prefix "$3" 2>/dev/null)
    mer=$(jq -er .merchant_id "$3" 2>/dev/null)
    scopes=$(jq -cr '.scopes | sort | join(",")' "$3" 2>/dev/null)
    want=$(tr ',' '\n' <<<"$1" | sort | paste -sd, -)
    if [[ $key =~ $key_re && ${key:0:3} == "$2" && $prefix == "${key:0:12}" && $mer == "$M1_ID" &&
        $scopes == "$want" ]]; then
        ok "key create --scopes $1 gives a ${2%_} key with its 12-character prefix"
    else
        not_ok "key create --scopes $1: key kind ${key:0:3} (want $2), prefix '$prefix', scopes '$scopes'"
        return 1
    fi
}
create_key read sk_ "$TMP/key-read.json"
create_key tokenize,read sk_ "$TMP/key-revoke.json"
create_key tokenize pk_ "$TMP/key-pk.json"
create_key detokenize dk_ "$TMP/key-dk.json"
create_key relay rk_ "$TMP/key-rk.json"
if "$CARDVAULT_BIN" key create --merchant "$M1_ID" --scopes relay,read >"$TMP/k.out" 2>&1; then
    not_ok "key create --scopes relay,read succeeded (a relay key must relay and nothing else)"
else
    ok "key create --scopes relay,read exits non-zero: the relay scope stands alone"
fi

if "$CARDVAULT_BIN" key create --merchant "$M1_ID" --scopes bogus >"$TMP/k.out" 2>&1; then
    not_ok "key create --scopes bogus succeeded"
else
    ok "key create --scopes bogus exits non-zero"
fi
if "$CARDVAULT_BIN" key create --merchant mer_00000000000000000000 --scopes read >"$TMP/k.out" 2>&1; then
    not_ok "key create for an unknown merchant succeeded"
else
    ok "key create for an unknown merchant exits non-zero"
fi

# Configuration refusals, on the migrated database whose KEK check value now exists.
expect_refusal "serve refuses to start without CARDVAULT_DATABASE_URL" "" -u CARDVAULT_DATABASE_URL \
    -u PGHOST -u PGPORT -u PGUSER -u PGPASSWORD -u PGDATABASE
expect_refusal "serve refuses to start without CARDVAULT_KEK_FILE" "" -u CARDVAULT_KEK_FILE
expect_refusal "serve refuses a KEK file that does not exist" "" CARDVAULT_KEK_FILE="$TMP/no-such-kek"
expect_refusal "serve refuses a KEK file with mode 0644" "" CARDVAULT_KEK_FILE="$TMP/kek-0644"
expect_refusal "serve refuses a KEK of 16 bytes" "" CARDVAULT_KEK_FILE="$TMP/kek-short"
expect_refusal "serve refuses to run as a superuser or the schema owner" "superuser|owner"
expect_refusal "serve refuses an unreachable database" "" \
    CARDVAULT_DATABASE_URL="host=127.0.0.1 port=1 user=$PGUSER dbname=$DB connect_timeout=3"

# ---------------------------------------------------------------------- serve

# The suite sends ~20 bad keys on purpose from 127.0.0.1; lift the per-client
# auth-failure limit so the later tests are not answered 429.
CARDVAULT_DATABASE_URL="$APP_DATABASE_URL" CARDVAULT_AUTH_FAILURES_PER_MIN=100000 \
    "$CARDVAULT_BIN" serve >"$LOG" 2>&1 &
SERVICE_PID=$!
up=0
for _ in $(seq 1 100); do
    if curl -fsS --noproxy '*' -o /dev/null "http://127.0.0.1:$PORT/healthz" 2>/dev/null; then
        up=1
        break
    fi
    kill -0 "$SERVICE_PID" 2>/dev/null || break
    sleep 0.2
done
if [ $up -eq 1 ]; then
    ok "serve answers /healthz on 127.0.0.1:$PORT"
else
    not_ok "serve did not answer /healthz within 20 s"
    tail -30 "$LOG" | indent
fi

BASE_URL="http://127.0.0.1:$PORT"
if [ "${CV_PRISM:-}" = 1 ] && [ $up -eq 1 ]; then
    PRISM="$ROOT/tests/contract/node_modules/.bin/prism"
    PRISM_PORT=$(free_port)
    # Prism validates against a copy whose response objects are closed (closed-spec.mjs): an
    # undocumented member the service sends is a violation, though openapi.yaml stays open.
    (cd "$ROOT/tests/contract" && REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true \
        node_modules/.bin/redocly bundle ../../openapi.yaml --ext json -o "$TMP/openapi.json" &&
        node closed-spec.mjs "$TMP/openapi.json" "$TMP/openapi.closed.json") >"$TMP/closed.log" 2>&1 ||
        not_ok "closed copy of openapi.yaml for Prism: $(tail -3 "$TMP/closed.log")"
    "$PRISM" proxy "$TMP/openapi.closed.json" "$BASE_URL" --host 127.0.0.1 --port "$PRISM_PORT" \
        --errors=false >"$TMP/prism.log" 2>&1 &
    PRISM_PID=$!
    for _ in $(seq 1 150); do
        curl -sS --noproxy '*' -o /dev/null "http://127.0.0.1:$PRISM_PORT/healthz" 2>/dev/null && break
        sleep 0.2
    done
    BASE_URL="http://127.0.0.1:$PRISM_PORT"
    echo "# HTTP suite goes through Prism at $BASE_URL"
fi

PAN_LIST="$TMP/sent-card-data.txt"
: >"$PAN_LIST"
if [ $up -eq 1 ]; then
    CV_BASE_URL="$BASE_URL" \
        CV_OPS_URL="http://127.0.0.1:$OPS_PORT" \
        CV_M1_ID="$M1_ID" \
        CV_M1_PK=$(jq -r .publishable_key "$TMP/m1.json") \
        CV_M1_SK=$(jq -r .secret_key "$TMP/m1.json") \
        CV_M1_DK=$(jq -r .detokenize_key "$TMP/m1.json") \
        CV_M1_RK=$(jq -r '.relay_key // ""' "$TMP/m1.json") \
        CV_M2_PK=$(jq -r .publishable_key "$TMP/m2.json") \
        CV_M2_SK=$(jq -r .secret_key "$TMP/m2.json") \
        CV_M2_DK=$(jq -r .detokenize_key "$TMP/m2.json") \
        CV_READONLY_KEY=$(jq -r .key "$TMP/key-read.json") \
        CV_REVOKE_KEY=$(jq -r .key "$TMP/key-revoke.json") \
        CV_REVOKE_PREFIX=$(jq -r .prefix "$TMP/key-revoke.json") \
        CV_BIN="$CARDVAULT_BIN" \
        CV_PAN_LIST="$PAN_LIST" \
        "$ITEST_BIN" 2>&1 | tee "$TMP/itest.out"
    rc=${PIPESTATUS[0]}
    summary=$(grep -E '^itest: [0-9]+ passed, [0-9]+ failed$' "$TMP/itest.out" | tail -1)
    if [ -n "$summary" ]; then
        ip=$(sed -E 's/^itest: ([0-9]+) passed, ([0-9]+) failed$/\1/' <<<"$summary")
        if_=$(sed -E 's/^itest: ([0-9]+) passed, ([0-9]+) failed$/\2/' <<<"$summary")
        passed=$((passed + ip))
        failed=$((failed + if_))
        [ "$rc" -ne 0 ] && [ "$if_" -eq 0 ] && not_ok "itest exited $rc"
    else
        not_ok "itest did not finish (exit $rc)"
    fi
fi

# ------------------------------------------- checks that need SQL or the cluster

# http METHOD PATH KEY CONTENT-TYPE [BODY]: straight to the service; sets H_STATUS,
# H_BODY and leaves the response headers in $TMP/h.head.
http() {
    local args=(-sS --noproxy '*' -o "$TMP/h.body" -D "$TMP/h.head" -w '%{http_code}' -X "$1")
    [ -n "$3" ] && args+=(-H "Authorization: Bearer $3")
    [ -n "$4" ] && args+=(-H "Content-Type: $4")
    [ $# -ge 5 ] && args+=(--data-binary "$5")
    H_STATUS=$(curl "${args[@]}" "http://127.0.0.1:${H_PORT:-$PORT}$2" 2>/dev/null)
    H_BODY=$(cat "$TMP/h.body" 2>/dev/null)
}
header() { grep -i "^$1:" "$TMP/h.head" | head -1 | cut -d: -f2- | tr -d ' \r'; }
M1_PK=$(jq -r '.publishable_key // ""' "$TMP/m1.json" 2>/dev/null)
M1_DK=$(jq -r '.detokenize_key // ""' "$TMP/m1.json" 2>/dev/null)
EXP_YEAR=$(($(date -u +%Y) + 2))
card_json() { echo "{\"pan\":\"$1\",\"exp_month\":12,\"exp_year\":$EXP_YEAR}"; }

if [ $up -eq 1 ]; then
    # A ciphertext moved to another row must not open (AAD binds the token): 500, no detail.
    printf 'pan 4242424242424242\npan 5555555555554444\n' >>"$PAN_LIST"
    http POST /v1/tokens "$M1_PK" application/json "$(card_json 4242424242424242)"
    tok_a=$(jq -r '.token // ""' <<<"$H_BODY" 2>/dev/null)
    http POST /v1/tokens "$M1_PK" application/json "$(card_json 5555555555554444)"
    tok_b=$(jq -r '.token // ""' <<<"$H_BODY" 2>/dev/null)
    if [ -n "$tok_a" ] && [ -n "$tok_b" ] &&
        q "UPDATE tokens SET (nonce, ciphertext) = (SELECT t2.nonce, t2.ciphertext FROM tokens t2
             WHERE t2.token = CASE tokens.token WHEN '$tok_a' THEN '$tok_b' ELSE '$tok_a' END)
           WHERE token IN ('$tok_a', '$tok_b')" >/dev/null; then
        http POST "/v1/tokens/$tok_a/detokenize" "$M1_DK" ""  ""
        code=$(jq -r '.error.code // ""' <<<"$H_BODY" 2>/dev/null)
        msg=$(jq -r '.error.message // ""' <<<"$H_BODY" 2>/dev/null)
        if [ "$H_STATUS" = 500 ] && [ "$code" = internal_error ] &&
            ! grep -qiE 'decrypt|tag|gcm|aes|aad|cipher|openssl|nonce|dek' <<<"$msg" &&
            ! grep -q 4242424242424242 <<<"$H_BODY"; then
            ok "detokenize of a row holding another row's ciphertext is 500 internal_error without detail"
        else
            not_ok "swapped ciphertext: detokenize answered $H_STATUS $H_BODY (want 500 internal_error, no detail)"
        fi
    else
        not_ok "swapped ciphertext: could not tokenize two cards or swap their rows"
    fi

    # Audit trail: detokenize and delete are recorded, failed attempts too.
    n_ok=$(q "SELECT count(*) FROM audit_events WHERE action LIKE '%detokenize%' AND outcome = 'success'")
    n_bad=$(q "SELECT count(*) FROM audit_events WHERE action LIKE '%detokenize%' AND outcome <> 'success'")
    n_del=$(q "SELECT count(*) FROM audit_events WHERE action LIKE '%delete%' AND outcome = 'success'")
    n_rid=$(q "SELECT count(*) FROM audit_events WHERE action LIKE '%detokenize%' AND request_id ~ '^req_'")
    if [ "${n_ok:-0}" -gt 0 ] && [ "${n_bad:-0}" -gt 0 ] && [ "${n_del:-0}" -gt 0 ] && [ "${n_rid:-0}" -gt 0 ]; then
        ok "audit_events records detokenize ($n_ok ok, $n_bad failed) and delete ($n_del) with request ids"
    else
        not_ok "audit_events: detokenize ok ${n_ok:-?}, failed ${n_bad:-?}, delete ${n_del:-?}, with request id ${n_rid:-?}"
    fi

    # Database down: /readyz (ops listener) and the API answer 503 with
    # Retry-After, /healthz stays 200, and the service recovers when the
    # database returns.
    cluster=$(pg_lsclusters -h 2>/dev/null | awk -v p="$PGPORT" '$3 == p { print $1 " " $2; exit }')
    if [ -n "$cluster" ]; then
        # shellcheck disable=SC2086
        pg_ctlcluster $cluster stop -m fast >/dev/null 2>&1
        ready=""
        for _ in $(seq 1 75); do
            H_PORT=$OPS_PORT http GET /readyz "" ""
            [ "$H_STATUS" = 503 ] && { ready=503; break; }
            sleep 0.2
        done
        db_state=$(jq -r '.checks.database // ""' <<<"$H_BODY" 2>/dev/null)
        if [ "$ready" = 503 ] && [ "$db_state" = unavailable ] && [ -n "$(header Retry-After)" ]; then
            ok "database down: /readyz 503 with checks.database unavailable and Retry-After"
        else
            not_ok "database down: /readyz answered $H_STATUS $H_BODY (want 503, database unavailable, Retry-After)"
        fi
        http POST /v1/tokens "$M1_PK" application/json "$(card_json 4242424242424242)"
        code=$(jq -r '.error.code // ""' <<<"$H_BODY" 2>/dev/null)
        if [ "$H_STATUS" = 503 ] && [ "$code" = service_unavailable ] && [ -n "$(header Retry-After)" ]; then
            ok "database down: tokenize is 503 service_unavailable with Retry-After"
        else
            not_ok "database down: tokenize answered $H_STATUS $H_BODY (want 503 service_unavailable + Retry-After)"
        fi
        http GET /healthz "" ""
        if [ "$H_STATUS" = 200 ]; then
            ok "database down: /healthz still 200"
        else
            not_ok "database down: /healthz answered $H_STATUS"
        fi
        # shellcheck disable=SC2086
        pg_ctlcluster $cluster start >/dev/null 2>&1
        back=""
        for _ in $(seq 1 150); do
            H_PORT=$OPS_PORT http GET /readyz "" ""
            [ "$H_STATUS" = 200 ] && { back=1; break; }
            sleep 0.2
        done
        # Pooled connections may each fail once after the restart: allow a few 503s.
        first=""
        for _ in $(seq 1 10); do
            http POST /v1/tokens "$M1_PK" application/json "$(card_json 4242424242424242)"
            first=${first:-$H_STATUS}
            [ "$H_STATUS" = 201 ] && break
            sleep 0.3
        done
        if [ -n "$back" ] && [ "$H_STATUS" = 201 ]; then
            ok "database back: /readyz 200 and tokenize 201 again (first tokenize after /readyz 200: $first)"
        else
            not_ok "database back: readyz ${back:-not 200 in 30 s}, tokenize $H_STATUS $H_BODY"
        fi
    else
        echo "# cluster for port $PGPORT not found in pg_lsclusters; skipped the database-down checks"
    fi
fi

if [ -n "$PRISM_PID" ]; then
    stop_pid "$PRISM_PID"
    PRISM_PID=""
fi
if [ -n "$SERVICE_PID" ]; then
    stop_pid "$SERVICE_PID"
    rc=$STOP_RC
    SERVICE_PID=""
    if [ "$rc" -eq 0 ]; then
        ok "serve stops cleanly on SIGTERM (exit 0)"
    else
        not_ok "serve exit status $rc after SIGTERM (want 0)"
        tail -20 "$LOG" | indent
    fi
fi

# A different KEK must be refused now that the database holds the check value.
expect_refusal "serve refuses a KEK that differs from the database's" "" \
    CARDVAULT_KEK_FILE="$TMP/kek-other" CARDVAULT_DATABASE_URL="$APP_DATABASE_URL"

# Rate limits, on a second instance with tiny limits: per API key, and per client
# for failed authentications. Both answer 429 rate_limited with Retry-After.
CARDVAULT_RATE_LIMIT_RPS=1 CARDVAULT_RATE_LIMIT_BURST=2 CARDVAULT_AUTH_FAILURES_PER_MIN=5 \
    CARDVAULT_DATABASE_URL="$APP_DATABASE_URL" CARDVAULT_LISTEN="127.0.0.1:$ALT_PORT" \
    CARDVAULT_OPS_LISTEN="127.0.0.1:$ALT_OPS_PORT" "$CARDVAULT_BIN" serve >>"$LOG" 2>&1 &
SERVICE_PID=$!
H_PORT=$ALT_PORT
up2=0
for _ in $(seq 1 100); do
    http GET /healthz "" ""
    [ "$H_STATUS" = 200 ] && { up2=1; break; }
    kill -0 "$SERVICE_PID" 2>/dev/null || break
    sleep 0.2
done
if [ $up2 -eq 1 ]; then
    M1_SK=$(jq -r '.secret_key // ""' "$TMP/m1.json" 2>/dev/null)
    # limited_within N KEY OK-TEXT FAIL-TEXT: up to N quick reads with KEY
    # must reach 429 rate_limited with Retry-After.
    limited_within() {
        local limited="" code
        for _ in $(seq 1 "$1"); do
            http GET /v1/tokens/tok_0123456789abcdefABCDEF "$2" ""
            [ "$H_STATUS" = 429 ] && { limited=1; break; }
        done
        code=$(jq -r '.error.code // ""' <<<"$H_BODY" 2>/dev/null)
        if [ -n "$limited" ] && [ "$code" = rate_limited ] && [ -n "$(header Retry-After)" ]; then
            ok "$3"
        else
            not_ok "$4 (last: $H_STATUS $H_BODY)"
        fi
    }
    limited_within 8 "$M1_SK" "an API key over its rate limit gets 429 rate_limited with Retry-After" \
        "per-key rate limit (1 rps, burst 2): 8 quick requests never got 429 + Retry-After"
    limited_within 12 "sk_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG" \
        "repeated failed authentication gets 429 rate_limited with Retry-After" \
        "auth-failure limit (5/min): 12 bad keys never got 429 + Retry-After"
else
    not_ok "second instance (tiny rate limits) did not answer /healthz"
fi
stop_pid "$SERVICE_PID"
SERVICE_PID=""
H_PORT=$PORT

# ------------------------------------------ service code on this database

# tests/db binaries (the Makefile passes them in CV_DBTEST_BINS): the pipeline
# helper of pg.c and the group commit's row-by-row fallback, on the tokens
# and data keys the HTTP suite left (their own rows are removed again).
for bin in ${CV_DBTEST_BINS:-}; do
    out="$TMP/$(basename "$bin").out"
    CV_DB_URL="$CARDVAULT_DATABASE_URL" timeout 120 "$bin" >"$out" 2>&1
    rc=$?
    summary=$(grep -E '^[a-z_]+: [0-9]+ passed, [0-9]+ failed$' "$out" | tail -1)
    if [ $rc -eq 0 ] && [ -n "$summary" ]; then
        ok "$(basename "$bin"): $summary"
    else
        not_ok "$(basename "$bin") (exit $rc): ${summary:-no summary}"
        indent <"$out"
    fi
done

# -------------------------------------------------------------- storage policy

# Patterns for every PAN (digits, spaced and hyphenated every 4, amex 4-6-5, and
# the hex of its ASCII as bytea would dump it) and every CVC in JSON context.
PATTERNS="$TMP/patterns.txt"
PLAIN_PATTERNS="$TMP/patterns-plain.txt"
: >"$PATTERNS"
: >"$PLAIN_PATTERNS"
n_pans=0
n_cvcs=0
group4() { # DIGITS SEP: a separator every 4 digits
    local s=$1 out="" i
    for ((i = 0; i < ${#s}; i += 4)); do
        out+="${out:+$2}${s:i:4}"
    done
    echo "$out"
}
while read -r kind value; do
    case $kind in
    pan)
        n_pans=$((n_pans + 1))
        {
            echo "$value"
            group4 "$value" " "
            group4 "$value" "-"
            if [ ${#value} -eq 15 ]; then
                echo "${value:0:4} ${value:4:6} ${value:10:5}"
                echo "${value:0:4}-${value:4:6}-${value:10:5}"
            fi
        } | tee -a "$PLAIN_PATTERNS" >>"$PATTERNS"
        printf '%s' "$value" | od -An -tx1 | tr -d ' \n' >>"$PATTERNS"
        echo >>"$PATTERNS"
        ;;
    cvc)
        n_cvcs=$((n_cvcs + 1))
        printf '"cvc":"%s"\n"cvc": "%s"\n' "$value" "$value" | tee -a "$PLAIN_PATTERNS" >>"$PATTERNS"
        ;;
    esac
done < <(sort -u "$PAN_LIST")
n_patterns=$(wc -l <"$PATTERNS")

if [ "$n_pans" -ge 30 ] && [ "$n_cvcs" -ge 30 ]; then
    ok "the suite recorded $n_pans PANs and $n_cvcs CVCs it sent"
else
    not_ok "the suite recorded only $n_pans PANs and $n_cvcs CVCs (want 30 or more of each)"
fi

# search PATTERNFILE FILE...: prints the patterns found (masked), returns 0 when none
search() {
    local pf=$1 found
    shift
    found=$(grep -a -h -o -F -f "$pf" "$@" 2>/dev/null | sort -u)
    if [ -n "$found" ]; then
        sed -E 's/([0-9][0-9 -]{5})[0-9 -]+([0-9]{4})/\1...\2/' <<<"$found" | head -20 | indent
        return 1
    fi
    return 0
}

DUMP="$TMP/dump.sql"
if pg_dump -d "$DB" >"$DUMP" 2>"$TMP/pg_dump.err"; then
    ok "pg_dump $DB ($(wc -c <"$DUMP") bytes)"
else
    not_ok "pg_dump $DB failed"
    indent <"$TMP/pg_dump.err"
fi

# Positive control: the search must find each planted form.
first_pan=$(awk '$1 == "pan" && length($2) == 16 { print $2; exit }' "$PAN_LIST")
first_cvc=$(awk '$1 == "cvc" && $2 ~ /^[0-9]+$/ { print $2; exit }' "$PAN_LIST")
if [ -n "$first_pan" ] && [ -n "$first_cvc" ]; then
    planted="$TMP/planted.sql"
    cp "$DUMP" "$planted"
    {
        echo "-- $first_pan"
        echo "-- x$(group4 "$first_pan" " ")x"
        echo "-- $(group4 "$first_pan" "-")"
        echo "-- \\x$(printf '%s' "$first_pan" | od -An -tx1 | tr -d ' \n')"
        echo "-- {\"cvc\":\"$first_cvc\"}"
        echo "-- {\"cvc\": \"$first_cvc\"}"
    } >>"$planted"
    n_found=$(grep -a -h -o -F -f "$PATTERNS" "$planted" | sort -u | wc -l)
    n_before=$(grep -a -h -o -F -f "$PATTERNS" "$DUMP" | sort -u | wc -l)
    if [ $((n_found - n_before)) -eq 6 ]; then
        ok "positive control: the search finds all 6 forms planted in a copy of the dump"
    else
        not_ok "positive control: found $((n_found - n_before)) of 6 planted forms"
    fi
else
    not_ok "positive control: no PAN/CVC recorded to plant"
fi

if search "$PATTERNS" "$DUMP"; then
    ok "pg_dump holds none of $n_pans PANs / $n_cvcs CVCs ($n_patterns patterns)"
else
    not_ok "pg_dump contains card data (above, masked)"
fi
if [ -s "$LOG" ]; then
    if search "$PATTERNS" "$LOG"; then
        ok "service log ($(wc -l <"$LOG") lines) holds none of the PANs / CVCs"
    else
        not_ok "service log contains card data (above, masked)"
    fi
else
    ok "service log is empty: holds none of the PANs / CVCs"
fi

# The cluster's own files too (heap pages of deleted rows, WAL, server log).
q "CHECKPOINT" >/dev/null 2>&1
datadir=$(psql -X -At -d "$DB" -c "SHOW data_directory" 2>/dev/null)
if [ -n "$datadir" ] && [ -d "$datadir" ]; then
    if search "$PLAIN_PATTERNS" -r "$datadir"; then
        ok "cluster files ($datadir, WAL included) hold none of the PANs / CVCs in plain text"
    else
        not_ok "cluster files contain card data in plain text (above, masked)"
    fi
else
    echo "# cluster data directory not readable; skipped the raw file search"
fi

# PostgreSQL's own server log (statement errors could quote parameters).
for pglog in /var/log/postgresql/postgresql-*-regress.log; do
    [ -r "$pglog" ] || continue
    if search "$PATTERNS" "$pglog"; then
        ok "PostgreSQL server log $pglog holds none of the PANs / CVCs"
    else
        not_ok "PostgreSQL server log $pglog contains card data (above, masked)"
    fi
done

cols=$(q "SELECT table_schema || '.' || table_name || '.' || column_name
          FROM information_schema.columns
          WHERE table_schema NOT IN ('pg_catalog', 'information_schema')
            AND (column_name ~* '(cvc|cvv|cvn|csc|security_?code)'
                 OR column_name ~* '(^|_)cid($|_|[0-9])')")
if [ -z "$cols" ]; then
    ok "no column is named for a security code (cvc, cvv, cvn, csc, security_code, cid)"
else
    not_ok "columns named for security codes: $(tr '\n' ' ' <<<"$cols")"
fi

if [ "$failed" -ne 0 ] && [ -s "$LOG" ]; then
    echo "# last lines of the service log:"
    tail -15 "$LOG" | indent
fi
finish
