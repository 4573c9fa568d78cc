#!/usr/bin/env bash
# Audit-trail and storage-scanner scenario.
#
#   tests/scenarios/audit.sh build/release/cardvault
#   tests/lib/with-postgres.sh tests/scenarios/audit.sh build/release/cardvault
#
# Uses the PostgreSQL named by PGHOST/PGPORT/PGUSER (pg_virtualenv exports
# them), or starts a private throw-away cluster when they are unset. On a fresh
# database it creates merchants and keys, starts `cardvault serve`, tokenizes
# AUDIT_TOKENS cards (default 2000) and detokenizes, reads and deletes some,
# then checks:
#   - every audited action left its event, with actor, merchant, token,
#     request id and outcome, and no event holds a PAN;
#   - `cardvault audit verify` accepts the chain (also after concurrent
#     detokenizes), and reports the first broken link, exit 1, after a row is
#     edited, deleted or the tail truncated directly in SQL; UPDATE, DELETE
#     and TRUNCATE are refused while the triggers are enabled; a full rewrite
#     of the SHA-256 chain fails verify (the MACs under K_audit) and a
#     comparison with an exported anchor;
#   - `cardvault audit export --since T` prints JSON lines jq can parse;
#   - the database URL can come from an owner-only file
#     (CARDVAULT_DATABASE_URL_FILE, --database-url-file); --database-url
#     still works but warns (it is visible in /proc/PID/cmdline);
#   - `cardvault audit storage` exits 0 on the clean vault, 1 with a masked
#     sample when a PAN is planted in a new text, bytea, jsonb or UTF-16
#     column or a new table, and 0 again once they are gone;
#   - every tokenize answered 201 has exactly one token.tokenize event (key
#     prefix, merchant, token, request id, outcome success);
#   - detokenize fails closed: with audit appends failing it answers 503 and
#     no PAN, while read still works; tokenize and delete are atomic with
#     their event (5xx, nothing committed).
# Prints one line per check, ends with "audit: N passed, N failed", appends
# "P F" to build/test-results, exits non-zero on any failure.
set -u
umask 077

SUITE=audit
if [ $# -ne 1 ]; then
    echo "usage: $0 CARDVAULT_BIN" >&2
    exit 2
fi
CARDVAULT_BIN=$(realpath "$1")
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 2
SC_CLUSTER=external # pg_virtualenv brings the cluster
# shellcheck source=tests/lib/scenario.sh
. "$ROOT/tests/lib/scenario.sh"

# Under tests/lib/with-postgres.sh (pg_virtualenv) PGHOST/PGPORT/PGUSER are
# set; called directly (make scenarios), bring a private cluster of our own
# (pg_virtualenv -t: a temporary directory, so it never waits for the shared
# 15/regress cluster).
if [ -z "${PGHOST:-}" ] || [ -z "${PGPORT:-}" ] || [ -z "${PGUSER:-}" ]; then
    if [ "${CV_AUDIT_INSIDE:-}" = 1 ]; then
        echo "audit.sh: PGHOST, PGPORT or PGUSER missing inside pg_virtualenv" >&2
        exit 2
    fi
    command -v pg_virtualenv >/dev/null || { echo "audit.sh: pg_virtualenv is required" >&2; exit 2; }
    CV_AUDIT_INSIDE=1 PGPORT=$(free_port) exec pg_virtualenv -t "$ROOT/tests/scenarios/audit.sh" "$CARDVAULT_BIN"
fi
require_tools jq psql createdb openssl curl awk iconv xxd

N_TOKENS=${AUDIT_TOKENS:-2000}
N_DETOK=50
TMP=$(mktemp -d -t cardvault-audit.XXXXXX)
cleanup() {
    stop_service
    if [ "${CV_KEEP_TMP:-}" = 1 ]; then echo "# kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

DB=cardvault_audit
dropdb --if-exists "$DB" 2>/dev/null
createdb "$DB" || { echo "audit.sh: createdb failed" >&2; exit 1; }

external_service_env
export CARDVAULT_RATE_LIMIT_RPS=0 # the bulk load below is not an attack
LOG_OUT="$TMP/service.out"
LOG_ERR="$TMP/service.err"
echo "# cardvault $CARDVAULT_BIN, database $DB, listen $BASE, $N_TOKENS tokens, tmp $TMP"

# cv ARGS...: the CLI, stdout to $TMP/cv.out, stderr to $TMP/cv.err; returns its exit code.
cv() {
    "$CARDVAULT_BIN" "$@" >"$TMP/cv.out" 2>"$TMP/cv.err"
}
# The JSON object a CLI command printed last (log lines carry an "event" key).
cv_json() { grep -v '"event":' "$TMP/cv.out" | tail -1; }

# http METHOD PATH KEY [BODY]: body to $TMP/http.body, status on stdout.
http() {
    local args=(-sS --noproxy '*' -o "$TMP/http.body" -w '%{http_code}' -X "$1"
        -H "Authorization: Bearer $3")
    if [ $# -ge 4 ]; then
        args+=(-H 'Content-Type: application/json' --data-binary "$4")
    fi
    curl "${args[@]}" "$BASE$2"
}

# ------------------------------------------------------------- set-up

if cv migrate; then ok "migrate a fresh database"; else not_ok "migrate failed"; indent <"$TMP/cv.err"; fi
if make_app_role; then
    ok "login role cardvault_app (member of cardvault_service) for serve; operator commands run as $PGUSER"
else
    not_ok "cannot create the login role cardvault_app"
fi
if cv merchant create "Audit Shop A" && cp "$TMP/cv.out" "$TMP/m1.json" &&
    cv merchant create "Audit Shop B" && cp "$TMP/cv.out" "$TMP/m2.json"; then
    ok "merchant create (two merchants)"
else
    not_ok "merchant create failed"
    indent <"$TMP/cv.err"
fi
M1=$(jq -r .merchant_id "$TMP/m1.json" 2>/dev/null)
M1_PK=$(jq -r .publishable_key "$TMP/m1.json" 2>/dev/null)
M1_SK=$(jq -r .secret_key "$TMP/m1.json" 2>/dev/null)
M1_DK=$(jq -r .detokenize_key "$TMP/m1.json" 2>/dev/null)
M2_DK=$(jq -r .detokenize_key "$TMP/m2.json" 2>/dev/null)

if start_service "$LOG_OUT" "$LOG_ERR"; then
    ok "serve answers /healthz on $BASE"
else
    not_ok "serve did not start"
    tail -n 20 "$LOG_OUT" "$LOG_ERR" | indent
    finish
    exit 1
fi

# Event S is a failed detokenize (merchant and key creation came before it):
# the tamper test below rewrites its outcome, the cover-up an insider would
# want. S+1 and S+2 are later events the test deletes and renumbers.
MISSING_TOKEN=tok_0123456789abcdefABCDEF
code=$(http POST "/v1/tokens/$MISSING_TOKEN/detokenize" "$M1_DK")
S=$(q "SELECT max(seq) FROM audit_events WHERE action = 'token.detokenize'")
S1=$((S + 1)); S2=$((S + 2)); S1M=$((S + 1 + 1000000))
rowS=$(q "SELECT action || ' ' || outcome FROM audit_events WHERE seq = ${S:-0}")
if [ "$code" = 404 ] && [ "$rowS" = "token.detokenize not_found" ]; then
    ok "detokenize of an unknown token: 404, audited as seq $S (token.detokenize not_found)"
else
    not_ok "detokenize of an unknown token: HTTP $code, seq $S is '$rowS'"
fi

# ------------------------------------------------- bulk tokenize (HTTP)

EXP_YEAR=$(($(date -u +%Y) + 3))
gen_pans "$N_TOKENS" "$((RANDOM * 32768 + RANDOM))" >"$TMP/pans"
mkdir -p "$TMP/tok"
awk -v base="$BASE" -v key="$M1_PK" -v dir="$TMP/tok" -v y="$EXP_YEAR" '{
    printf "next\nnoproxy = \"*\"\nurl = \"%s/v1/tokens\"\nrequest = \"POST\"\n", base
    printf "header = \"Authorization: Bearer %s\"\nheader = \"Content-Type: application/json\"\n", key
    printf "data-binary = \"{\\\"pan\\\":\\\"%s\\\",\\\"exp_month\\\":12,\\\"exp_year\\\":%d}\"\n", $1, y
    printf "output = \"%s/%d\"\ndump-header = \"%s/%d.h\"\nsilent\n", dir, NR, dir, NR
}' "$TMP/pans" >"$TMP/tokenize.cfg"
run_tokenize_config "$TMP/tokenize.cfg" "$TMP/tok/" "$N_TOKENS" "$TMP/tokens"
if [ "$n201" -eq "$N_TOKENS" ]; then
    ok "tokenized $N_TOKENS distinct cards over HTTP in ${secs}s (all 201)"
else
    not_ok "tokenize: $n201 of $N_TOKENS answered 201"
fi
paste -d ' ' "$TMP/pans" "$TMP/tokens" >"$TMP/pan-token" 2>/dev/null

# ------------------------------------------- audited actions, concurrently

head -n "$N_DETOK" "$TMP/pan-token" >"$TMP/detok-set"
mkdir -p "$TMP/det"
i=0
while read -r _pan tok; do
    i=$((i + 1))
    curl_config_entry "$BASE/v1/tokens/$tok/detokenize" POST "$M1_DK" "" "$TMP/det/$i"
done <"$TMP/detok-set" >"$TMP/detok.cfg"
run_curl_config "$TMP/detok.cfg"
good=0
i=0
while read -r pan _tok; do
    i=$((i + 1))
    if [ "$(status_of "$TMP/det/$i")" = 200 ] && [ "$(jq -r .pan "$TMP/det/$i")" = "$pan" ]; then
        good=$((good + 1))
    fi
done <"$TMP/detok-set"
rm -rf "$TMP/det" # detokenize answers hold PANs: not kept on disk longer than needed
if [ "$good" -eq "$N_DETOK" ]; then
    ok "$N_DETOK concurrent detokenizes (16 at a time) return their PANs"
else
    not_ok "concurrent detokenize: $good of $N_DETOK returned the right PAN"
fi

T1=$(awk 'NR == 1 { print $2 }' "$TMP/pan-token")
T2=$(awk 'NR == 2 { print $2 }' "$TMP/pan-token")
code_read=$(http GET "/v1/tokens/$T1" "$M1_SK")
code_sk_detok=$(http POST "/v1/tokens/$T1/detokenize" "$M1_SK")
code_other=$(http POST "/v1/tokens/$T1/detokenize" "$M2_DK")
code_del=$(http DELETE "/v1/tokens/$T2" "$M1_SK")
code_del2=$(http DELETE "/v1/tokens/$T2" "$M1_SK")
if [ "$code_read" = 200 ] && [ "$code_sk_detok" = 403 ] && [ "$code_other" = 404 ] &&
    [ "$code_del" = 204 ] && [ "$code_del2" = 404 ]; then
    ok "read 200, detokenize with a secret key 403, other merchant's token 404, delete 204 then 404"
else
    not_ok "read $code_read, sk detokenize $code_sk_detok, other merchant $code_other, delete $code_del/$code_del2"
fi
if cv key create --merchant "$M1" --scopes read,detokenize && cp "$TMP/cv.out" "$TMP/key.json" &&
    KEY_PREFIX=$(jq -er .prefix "$TMP/key.json") && cv key revoke "$KEY_PREFIX"; then
    ok "key create and key revoke"
else
    KEY_PREFIX=none
    not_ok "key create/revoke failed: $(cat "$TMP/cv.err")"
fi

# expect_events DESC SQL-CONDITION MIN: at least MIN events match.
expect_events() {
    local n
    n=$(q "SELECT count(*) FROM audit_events WHERE $2")
    if [ "${n:-0}" -ge "$3" ]; then
        ok "audit: $1 ($n)"
    else
        not_ok "audit: $1: $n events, want at least $3"
    fi
}
M1_DK_PREFIX=${M1_DK:0:12}
M1_SK_PREFIX=${M1_SK:0:12}
M2_DK_PREFIX=${M2_DK:0:12}
expect_events "merchant.create by cli:merchant-create for each merchant" \
    "action = 'merchant.create' AND actor = 'cli:merchant-create' AND merchant_id IN ('$M1', '$(jq -r .merchant_id "$TMP/m2.json")')" 2
expect_events "every successful detokenize, with key prefix, merchant, token and request id" \
    "action = 'token.detokenize' AND outcome = 'success' AND actor = '$M1_DK_PREFIX' AND merchant_id = '$M1' AND token ~ '^tok_' AND request_id ~ '^req_'" "$N_DETOK"
expect_events "detokenize refused for lack of scope (403) as outcome denied" \
    "action = 'token.detokenize' AND outcome = 'denied' AND actor = '$M1_SK_PREFIX' AND token = '$T1'" 1
expect_events "detokenize of another merchant's token as not_found under the caller's merchant" \
    "action = 'token.detokenize' AND outcome = 'not_found' AND actor = '$M2_DK_PREFIX' AND token = '$T1'" 1
expect_events "delete success and delete of a missing token" \
    "action = 'token.delete' AND token = '$T2' AND actor = '$M1_SK_PREFIX' AND outcome IN ('success', 'not_found')" 2
expect_events "api_key.create and api_key.revoke name the key prefix" \
    "action IN ('api_key.create', 'api_key.revoke') AND detail = '$KEY_PREFIX' AND merchant_id = '$M1'" 2
n_read_events=$(q "SELECT count(*) FROM audit_events WHERE action LIKE '%read%'")
check "reads of masked metadata are not audited row by row (metrics count them): $n_read_events events" \
    [ "$n_read_events" = 0 ]
# Every tokenize answered 201 has exactly one token.tokenize event, written in
# the token's own transaction: the token, the key prefix, the merchant, the
# request id, outcome success. The answers' tokens are matched one by one.
M1_PK_PREFIX=${M1_PK:0:12}
tok_list=$(grep '^tok_' "$TMP/tokens" | sed "s/.*/'&'/" | paste -sd, -)
n_answered=$(grep -c '^tok_' "$TMP/tokens")
n_tok_events=$(q "SELECT count(DISTINCT token) FROM audit_events WHERE action = 'token.tokenize'
                  AND outcome = 'success' AND actor = '$M1_PK_PREFIX' AND merchant_id = '$M1'
                  AND request_id ~ '^req_' AND token IN (${tok_list:-NULL})")
n_dup=$(q "SELECT count(*) FROM (SELECT token FROM audit_events WHERE action = 'token.tokenize'
           GROUP BY token HAVING count(*) > 1) d")
n_unaudited=$(q "SELECT count(*) FROM tokens t WHERE NOT EXISTS (SELECT 1 FROM audit_events e
                 WHERE e.action = 'token.tokenize' AND e.token = t.token AND e.merchant_id = t.merchant_id)")
if [ "$n_answered" -eq "$N_TOKENS" ] && [ "$n_tok_events" -eq "$n_answered" ] &&
    [ "$n_dup" = 0 ] && [ "$n_unaudited" = 0 ]; then
    ok "every tokenize is audited: $n_tok_events token.tokenize events for $n_answered tokens answered 201, none twice, no stored token without one"
else
    not_ok "token.tokenize events: $n_tok_events for $n_answered answered tokens, $n_dup tokens with more than one, $n_unaudited stored tokens without one"
fi

# ---------------------------------------------------------------- verify

n_events=$(q "SELECT count(*) FROM audit_events")
if cv audit verify && [ "$(cv_json | jq -r '.ok')" = true ] &&
    [ "$(cv_json | jq -r '.events')" = "$n_events" ]; then
    ok "audit verify: intact chain of $n_events events (exit 0): $(cv_json | jq -c '{events, head_seq}')"
else
    not_ok "audit verify on an intact chain: $(cat "$TMP/cv.out" "$TMP/cv.err")"
fi
ANCHOR_SEQ=$(cv_json | jq -r .head_seq)
ANCHOR_HASH=$(cv_json | jq -r .head_hash)
n_verify=$(q "SELECT count(*) FROM audit_events WHERE action = 'audit.verify' AND actor = 'cli:audit-verify'")
check "audit verify records its own run (action audit.verify)" [ "$n_verify" -ge 1 ]

# The triggers refuse changes while enabled.
for stmt in "UPDATE audit_events SET outcome = 'success' WHERE seq = $S" \
    "DELETE FROM audit_events WHERE seq = $S" "TRUNCATE audit_events"; do
    if out=$(q "$stmt" 2>&1); then
        not_ok "'$stmt' was accepted"
    elif grep -q "append-only" <<<"$out"; then
        ok "refused while the trigger is enabled: $stmt"
    else
        not_ok "'$stmt' failed for another reason: $out"
    fi
done

# tamper SQL: runs SQL with the append-only trigger disabled (as a table owner could).
tamper() {
    q "ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only; $1;
       ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only" >/dev/null
}
# expect_broken DESC SEQ: verify exits 1 and names SEQ as the first broken link.
expect_broken() {
    local rc fb reason
    cv audit verify
    rc=$?
    fb=$(cv_json | jq -r '.first_broken_seq // empty' 2>/dev/null)
    reason=$(cv_json | jq -r '.reason // empty' 2>/dev/null)
    if [ "$rc" -eq 1 ] && [ "$fb" = "$2" ]; then
        ok "audit verify after $1: exit 1, first_broken_seq $fb ($reason)"
    else
        not_ok "audit verify after $1: exit $rc, first_broken_seq '$fb' (want $2): $(cat "$TMP/cv.out")"
    fi
}
expect_intact() {
    if cv audit verify; then ok "audit verify after $1: exit 0"; else not_ok "audit verify after $1: $(cat "$TMP/cv.out")"; fi
}

origS=$(q "SELECT outcome FROM audit_events WHERE seq = $S")
tamper "UPDATE audit_events SET outcome = 'success' WHERE seq = $S"
expect_broken "UPDATE audit_events SET outcome='success' WHERE seq=$S" $S
tamper "UPDATE audit_events SET outcome = '$origS' WHERE seq = $S"
expect_intact "restoring seq $S's outcome"

tamper "UPDATE audit_events SET token = NULL WHERE seq = $S"
expect_broken "setting seq $S's token to NULL" $S
tamper "UPDATE audit_events SET token = '$MISSING_TOKEN' WHERE seq = $S"
expect_intact "restoring seq $S's token"

q "CREATE TABLE saved AS SELECT * FROM audit_events WHERE seq = $S2"
tamper "DELETE FROM audit_events WHERE seq = $S2"
expect_broken "deleting seq $S2" $S2
tamper "INSERT INTO audit_events SELECT * FROM saved"
expect_intact "putting seq $S2 back"

last=$(q "SELECT max(seq) FROM audit_events")
q "DROP TABLE saved; CREATE TABLE saved AS SELECT * FROM audit_events WHERE seq = $last"
tamper "DELETE FROM audit_events WHERE seq = $last"
expect_broken "truncating the tail (seq $last deleted)" "$last"
tamper "INSERT INTO audit_events SELECT * FROM saved"
q "DROP TABLE saved"
expect_intact "putting the tail back"

tamper "UPDATE audit_events SET seq = seq + 1000000 WHERE seq = $S1"
expect_broken "renumbering seq $S1 to $S1M" $S1
tamper "UPDATE audit_events SET seq = seq - 1000000 WHERE seq = $S1M"
expect_intact "renumbering it back"

# -------------------------------------------------------------- export

SINCE=$(date -u +%Y-%m-%d)
want=$(q "SELECT count(*) FROM audit_events WHERE occurred_at >= '${SINCE}T00:00:00Z'::timestamptz")
if cv audit export --since "$SINCE"; then
    lines=$(grep -c . "$TMP/cv.out")
    bad=$(jq -c 'select(has("seq") and has("occurred_at") and has("actor") and has("merchant_id") and
                        has("token") and has("request_id") and has("action") and has("outcome") and
                        has("detail") and has("hash") and (.hash | test("^[0-9a-f]{64}$")) | not)' \
        "$TMP/cv.out" 2>&1 | wc -l)
    if [ "$lines" -eq "$want" ] && [ "$bad" -eq 0 ] && jq -e . "$TMP/cv.out" >/dev/null 2>&1; then
        ok "audit export --since $SINCE: $lines JSON lines, each parses with jq and has every field"
    else
        not_ok "audit export --since $SINCE: $lines lines (want $want), $bad malformed"
        head -3 "$TMP/cv.out" | indent
    fi
    cp "$TMP/cv.out" "$TMP/export.jsonl"
else
    not_ok "audit export --since $SINCE exited non-zero: $(cat "$TMP/cv.err")"
fi
db_hash=$(q "SELECT encode(hash, 'hex') FROM audit_events WHERE seq = $S")
ex_hash=$(jq -r --argjson s "$S" 'select(.seq == $s) | .hash' "$TMP/export.jsonl" 2>/dev/null)
check "export carries the stored hash (seq $S: ${db_hash:0:16}...)" [ -n "$db_hash" -a "$db_hash" = "$ex_hash" ]
if cv audit export --since "$(date -u -d '+1 day' +%Y-%m-%dT%H:%M:%S+09:00)" && [ ! -s "$TMP/cv.out" ]; then
    ok "audit export --since a future RFC 3339 time with offset: no lines, exit 0"
else
    not_ok "audit export --since future: exit $?, $(wc -l <"$TMP/cv.out") lines"
fi
cv audit export --since "yesterday"
rc=$?
check "audit export --since yesterday (not a date): exit 2 (got $rc)" [ "$rc" -eq 2 ]
n_export=$(q "SELECT count(*) FROM audit_events WHERE action = 'audit.export'")
check "audit export records its own run (action audit.export: $n_export)" [ "$n_export" -ge 2 ]

# No event carries card data: search the whole export for every PAN.
cv audit export
awk '{ print $1 }' "$TMP/pans" >"$TMP/pan-patterns"
hits=$(grep -c -F -f "$TMP/pan-patterns" "$TMP/cv.out")
lines=$(grep -c . "$TMP/cv.out")
plant=$(head -1 "$TMP/pan-patterns")
control=$( (cat "$TMP/cv.out"; echo "{\"detail\":\"$plant\"}") | grep -c -F -f "$TMP/pan-patterns")
if [ "$hits" -eq 0 ] && [ "$control" -eq 1 ]; then
    ok "none of the $N_TOKENS PANs appears in the $lines exported events (positive control found)"
else
    not_ok "PANs in the audit export: $hits lines (control: $control)"
fi

# ---------------------------------------------------------- storage scan

n_tokens_db=$(q "SELECT count(*) FROM tokens")
if cv audit storage; then
    ok "audit storage on a clean vault with $n_tokens_db tokens: exit 0 ($(cv_json | jq -c '{tables, columns_scanned, rows, bytes, findings}'))"
else
    not_ok "audit storage on a clean vault: exit $? ($(cv_json | jq -c 'del(.skipped)' 2>/dev/null))"
    grep '"finding"' "$TMP/cv.out" | head | indent
fi
skipped=$(cv_json | jq -r '[.skipped[].type] | unique | join(", ")' 2>/dev/null)
echo "# skipped column types (cannot hold a 12-digit run): $skipped"
scanned_tokens=$(cv_json | jq -r '.rows' 2>/dev/null)
check "the scan read every token row (rows $scanned_tokens >= $n_tokens_db)" [ "${scanned_tokens:-0}" -ge "$n_tokens_db" ]

u16=$(printf '6011000990139424' | iconv -f ASCII -t UTF-16LE | xxd -p | tr -d '\n')
q "ALTER TABLE merchants ADD COLUMN scratch text, ADD COLUMN scratch_b bytea, ADD COLUMN scratch_j jsonb,
     ADD COLUMN scratch_u bytea;
   UPDATE merchants SET scratch = 'card 4111-1111-1111-1111' WHERE merchant_id = '$M1';
   UPDATE merchants SET scratch_b = convert_to('pan=5555555555554444;', 'UTF8') WHERE merchant_id = '$M1';
   UPDATE merchants SET scratch_j = '{\"card\": {\"number\": \"3782 822463 10005\"}}' WHERE merchant_id = '$M1';
   UPDATE merchants SET scratch_u = decode('fffe$u16', 'hex') WHERE merchant_id = '$M1';
   CREATE TABLE \"Scratch Notes\" (id int, \"note text\" text);
   INSERT INTO \"Scratch Notes\" VALUES (1, 'call back re 4012888888881881')"
cv audit storage
rc=$?
cp "$TMP/cv.out" "$TMP/storage-found.out"
finding() { # COLUMN SAMPLE ENCODING
    jq -e -s --arg c "$1" --arg s "$2" --arg e "$3" \
        'map(select(.finding == true and .column == $c and .sample == $s and .encoding == $e and .rows == 1)) | length == 1' \
        "$TMP/storage-found.out" >/dev/null 2>&1
}
if [ "$rc" -eq 1 ] && finding scratch "411111******1111" utf8; then
    ok "planted 'card 4111-1111-1111-1111' in new column merchants.scratch: exit 1, sample 411111******1111"
else
    not_ok "planted PAN in merchants.scratch: exit $rc"
    indent <"$TMP/storage-found.out"
fi
check "bytea column merchants.scratch_b (PAN written as bytes) reported, sample 555555******4444" \
    finding scratch_b "555555******4444" utf8
check "jsonb column merchants.scratch_j (amex 4-6-5 inside a JSON string) reported, sample 37828******0005" \
    finding scratch_j "37828******0005" utf8
check "bytea column merchants.scratch_u (PAN as UTF-16LE) reported, sample 601100******9424" \
    finding scratch_u "601100******9424" utf16le
check "a table created after the build (\"Scratch Notes\".\"note text\") is scanned too" \
    finding "note text" "401288******1881" utf8
if grep -q -E '4111111111111111|4111-1111-1111-1111|5555555555554444|378282246310005|3782 822463 10005|6011000990139424|4012888888881881' \
    "$TMP/storage-found.out" "$TMP/cv.err"; then
    not_ok "the storage report prints a full PAN"
else
    ok "the storage report never prints a full PAN (masked samples only)"
fi
q "ALTER TABLE merchants DROP COLUMN scratch, DROP COLUMN scratch_b, DROP COLUMN scratch_j,
     DROP COLUMN scratch_u; DROP TABLE \"Scratch Notes\""
if cv audit storage; then
    ok "audit storage exits 0 again once the planted values are gone"
else
    not_ok "audit storage after clean-up: exit $?"
    grep '"finding"' "$TMP/cv.out" | indent
fi

# ------------------------------------------------------------ fail closed

T3=$(awk 'NR == 3 { print $2 }' "$TMP/pan-token")
T4=$(awk 'NR == 4 { print $2 }' "$TMP/pan-token")
P3=$(awk 'NR == 3 { print $1 }' "$TMP/pan-token")
q "CREATE FUNCTION cv_test_refuse_audit() RETURNS trigger LANGUAGE plpgsql AS
     \$\$ BEGIN RAISE EXCEPTION 'audit store unavailable (test)'; END \$\$;
   CREATE TRIGGER cv_test_refuse_audit BEFORE INSERT ON audit_events
     FOR EACH ROW EXECUTE FUNCTION cv_test_refuse_audit()"
events_before=$(q "SELECT count(*) FROM audit_events")
code=$(http POST "/v1/tokens/$T3/detokenize" "$M1_DK")
if [ "$code" = 503 ] && ! grep -q '"pan"' "$TMP/http.body" && ! grep -q -F "$P3" "$TMP/http.body"; then
    ok "audit append failing: detokenize answers 503 without a PAN ($(jq -c .error.code "$TMP/http.body"))"
else
    not_ok "audit append failing: detokenize answered $code: $(head -c 200 "$TMP/http.body" | sed -E 's/[0-9]{12,19}/<digits>/g')"
fi
code=$(http GET "/v1/tokens/$T3" "$M1_SK")
if [ "$code" = 200 ] && [ "$(jq -r .last4 "$TMP/http.body")" = "${P3: -4}" ]; then
    ok "audit append failing: read still answers 200 with masked data"
else
    not_ok "audit append failing: read answered $code"
fi
tokens_before=$(q "SELECT count(*) FROM tokens")
code=$(http POST /v1/tokens "$M1_PK" "{\"pan\":\"$(gen_pans 1 7 | head -1)\",\"exp_month\":1,\"exp_year\":$EXP_YEAR}")
tokens_after=$(q "SELECT count(*) FROM tokens")
if [[ $code == 5?? ]] && [ "$tokens_before" = "$tokens_after" ] && ! grep -q '"token"' "$TMP/http.body"; then
    ok "audit append failing: tokenize answers $code and commits no token (a token and its event are one transaction)"
else
    not_ok "audit append failing: tokenize answered $code, tokens $tokens_before -> $tokens_after"
fi
code=$(http DELETE "/v1/tokens/$T4" "$M1_SK")
still=$(q "SELECT count(*) FROM tokens WHERE token = '$T4'")
if [[ $code == 5?? ]] && [ "$still" = 1 ]; then
    ok "audit append failing: delete answers $code and the token is still there (delete and event are one transaction)"
else
    not_ok "audit append failing: delete answered $code, token rows left: $still"
fi
events_after=$(q "SELECT count(*) FROM audit_events")
check "no event was written while appends failed ($events_before -> $events_after)" [ "$events_before" = "$events_after" ]
q "DROP TRIGGER cv_test_refuse_audit ON audit_events; DROP FUNCTION cv_test_refuse_audit()"
code=$(http POST "/v1/tokens/$T3/detokenize" "$M1_DK")
if [ "$code" = 200 ] && [ "$(jq -r .pan "$TMP/http.body")" = "$P3" ]; then
    ok "appends restored: detokenize answers 200 with the PAN again"
else
    not_ok "appends restored: detokenize answered $code"
fi
: >"$TMP/http.body"
expect_intact "the fail-closed test"

# --------------------------------------------- a full rewrite of the SHA-256 chain

# Someone who can disable the triggers (the schema owner: the service's role
# cannot, tests/scenarios/audit-tail.sh) AND recompute every later hash (with
# audit_canonical() and sha256() in SQL) and move audit_head still cannot
# recompute the MACs (migration 0005: HMAC under K_audit, which the database
# never sees): verify names the rewritten event, and the kept anchor fails too.
q "CREATE TABLE rewrite_saved_events AS SELECT * FROM audit_events;
   CREATE TABLE rewrite_saved_head AS SELECT * FROM audit_head" >/dev/null
q "ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only;
   ALTER TABLE audit_head DISABLE TRIGGER audit_head_forward_only;
   DO \$\$ DECLARE r record; prev bytea := '\\x$(printf '0%.0s' $(seq 64))'; h bytea; BEGIN
     FOR r IN SELECT * FROM audit_events ORDER BY seq LOOP
       IF r.seq = $S THEN r.outcome := 'success'; END IF;
       h := sha256(prev || convert_to(audit_canonical(r.seq, r.occurred_at, r.actor, r.merchant_id,
              r.token, r.request_id, r.action, r.outcome, r.detail), 'UTF8'));
       UPDATE audit_events SET outcome = r.outcome, prev_hash = prev, hash = h WHERE seq = r.seq;
       prev := h;
     END LOOP;
     UPDATE audit_head SET hash = prev;
   END \$\$;
   ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only;
   ALTER TABLE audit_head ENABLE TRIGGER audit_head_forward_only"
cv audit verify
rc=$?
now_hash=$(q "SELECT encode(hash, 'hex') FROM audit_events WHERE seq = $ANCHOR_SEQ")
fb=$(cv_json | jq -r '.first_broken_seq // empty')
if [ "$rc" -eq 1 ] && [ "$fb" = "$S" ] && [ "$now_hash" != "$ANCHOR_HASH" ]; then
    ok "a full SHA-256 rewrite from seq $S fails verify (exit 1, first_broken_seq $fb: $(cv_json | jq -r .reason | cut -c1-60))"
else
    not_ok "chain rewrite: verify exit $rc, anchor ${ANCHOR_HASH:0:16} vs ${now_hash:0:16}"
fi
if cv audit verify --expect "$ANCHOR_SEQ:$ANCHOR_HASH"; then
    not_ok "audit verify --expect $ANCHOR_SEQ:${ANCHOR_HASH:0:16}... passed on the rewritten chain"
else
    ok "audit verify --expect $ANCHOR_SEQ:${ANCHOR_HASH:0:16}... (the kept anchor) fails on the rewritten chain: $(cv_json | jq -r .reason)"
fi
# Back to the chain as it was, for the checks below.
q "ALTER TABLE audit_events DISABLE TRIGGER USER; ALTER TABLE audit_head DISABLE TRIGGER USER;
   DELETE FROM audit_events; INSERT INTO audit_events SELECT * FROM rewrite_saved_events;
   DELETE FROM audit_head; INSERT INTO audit_head SELECT * FROM rewrite_saved_head;
   ALTER TABLE audit_events ENABLE TRIGGER USER; ALTER TABLE audit_head ENABLE TRIGGER USER;
   DROP TABLE rewrite_saved_events, rewrite_saved_head" >/dev/null

# ------------------------------------------- database URL off the command line

# --database-url puts the URL (and any password) in /proc/PID/cmdline for
# every local user: CARDVAULT_DATABASE_URL_FILE / --database-url-file read it
# from an owner-only file instead; the flag still works, with a warning.
DB_URL=$CARDVAULT_DATABASE_URL
printf '%s\n' "$DB_URL" >"$TMP/db-url"
chmod 600 "$TMP/db-url"
if env -u CARDVAULT_DATABASE_URL CARDVAULT_DATABASE_URL_FILE="$TMP/db-url" \
    "$CARDVAULT_BIN" audit verify >"$TMP/cv.out" 2>"$TMP/cv.err" &&
    [ "$(cv_json | jq -r '.ok')" = true ]; then
    ok "audit verify with CARDVAULT_DATABASE_URL_FILE (0600) instead of the URL"
else
    not_ok "audit verify with CARDVAULT_DATABASE_URL_FILE: $(cat "$TMP/cv.out" "$TMP/cv.err")"
fi
if env -u CARDVAULT_DATABASE_URL "$CARDVAULT_BIN" audit verify --database-url-file "$TMP/db-url" \
    >"$TMP/cv.out" 2>"$TMP/cv.err" && ! grep -q database_url_on_command_line "$TMP/cv.err"; then
    ok "audit verify --database-url-file PATH: exit 0, no warning"
else
    not_ok "audit verify --database-url-file: $(cat "$TMP/cv.out" "$TMP/cv.err")"
fi
if env -u CARDVAULT_DATABASE_URL "$CARDVAULT_BIN" audit verify --database-url "$DB_URL" \
    >"$TMP/cv.out" 2>"$TMP/cv.err" && grep -q '"event":"database_url_on_command_line"' "$TMP/cv.err"; then
    ok "audit verify --database-url URL still works, and warns (database_url_on_command_line)"
else
    not_ok "audit verify --database-url: $(cat "$TMP/cv.out" "$TMP/cv.err")"
fi
chmod 644 "$TMP/db-url"
env -u CARDVAULT_DATABASE_URL CARDVAULT_DATABASE_URL_FILE="$TMP/db-url" \
    "$CARDVAULT_BIN" audit verify >"$TMP/cv.out" 2>"$TMP/cv.err"
rc=$?
echoed=$(grep -c -F "$DB_URL" "$TMP/cv.err")
check "a group/world-readable database URL file is refused (exit $rc), its content not echoed" \
    [ "$rc" -eq 1 -a "$echoed" -eq 0 ]

# ----------------------------------------------------------- service log

stop_service
check "serve stops cleanly on SIGTERM (exit $STOP_RC)" [ "$STOP_RC" -eq 0 ]
hits=$(cat "$LOG_OUT" "$LOG_ERR" | grep -c -F -f "$TMP/pan-patterns")
check "the service's stdout/stderr ($(cat "$LOG_OUT" "$LOG_ERR" | wc -l) lines) hold none of the PANs" [ "$hits" -eq 0 ]

finish
