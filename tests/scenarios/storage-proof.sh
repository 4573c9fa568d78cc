#!/usr/bin/env bash
# No plaintext anywhere: a scenario proof that no card number,
# security code or cardholder name cardvault handled is stored in the clear,
# anywhere a forensic examiner would look.
#
#   tests/scenarios/storage-proof.sh build/release/cardvault
#   PROOF_CARDS=200 tests/scenarios/storage-proof.sh build/release/cardvault   (make test size)
#
# It starts its own throw-away PostgreSQL (pg_virtualenv -t: a private
# cluster directory, so it does not wait for the shared 15/regress) with
# fsync on and maximum logging (log_statement=all, log_min_duration_statement=0,
# log_error_verbosity=verbose: bind parameters and offending values end up in
# the server log), runs `cardvault serve` under strace to learn every file it
# opens for writing, and then:
#   1. tokenizes PROOF_CARDS (default 1000) distinct cards with distinct CVCs
#      and cardholder names (PANs plain, spaced and hyphenated; some with
#      Idempotency-Key, replayed), detokenizes, reads and deletes some;
#   2. provokes error paths with card data in them: malformed JSON, duplicate
#      and unknown fields, bad PAN/CVC/expiry/name, a PAN as a JSON number, a
#      PAN in the URL, oversize bodies (9 KB and 1 MiB), wrong content type,
#      bad API key, a unique violation (a test-only unique index), and a
#      database outage in the middle of a request stream (pg_ctlcluster stop
#      and start);
#   3. searches for every PAN (plain, spaced, hyphenated, Amex 4-6-5), every
#      CVC in its JSON context and every name, each in every encoding (as is,
#      JSON \u00NN escapes, hex lower/upper, base64 at the three alignments,
#      UTF-16LE/BE), in: the data directory, the WAL raw and through
#      pg_waldump, the server log, the service's stdout and stderr, pg_dump
#      (plain and custom uncompressed), every file the service opened for
#      writing, every HTTP response body and header, and the CLI's output.
#      Detokenize responses legitimately carry the PAN and name: they are
#      checked in memory (piped from curl) and never written to disk, so no
#      place needs an exception. Every place type also gets a planted
#      positive control per encoding that must be found (built with xxd,
#      base64 and iconv, independently of the pattern generator);
#   4. core dumps and ptrace: the service, run as an unprivileged user in
#      production mode, shows RLIMIT_CORE 0, is non-dumpable (its /proc files
#      turn root-owned), leaves no core file after SIGABRT, and refuses a
#      same-user ptrace attach; the same binary with CARDVAULT_DEV=1 is the
#      control (it must dump core and accept the attach), so the check can
#      tell the difference on this machine.
# Prints one line per check, the places and bytes searched, ends with
# "storage-proof: N passed, N failed", appends "P F" to build/test-results and
# exits non-zero if anything is found or any check fails.
set -u
umask 077

SUITE=storage-proof
if [ $# -ne 1 ]; then
    echo "usage: $0 CARDVAULT_BIN" >&2
    exit 2
fi
CARDVAULT_BIN=$(realpath "$1")
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SELF="$ROOT/tests/scenarios/storage-proof.sh"
cd "$ROOT" || exit 2
SC_CLUSTER=external # pg_virtualenv brings the cluster
# shellcheck source=tests/lib/scenario.sh
. "$ROOT/tests/lib/scenario.sh"

# ------------------------------------------------- outer: our own cluster

if [ "${CV_PROOF_INSIDE:-}" != 1 ]; then
    require_tools pg_virtualenv
    for attempt in 1 2 3 4 5 6; do
        marker=$(mktemp -t cardvault-proof-marker.XXXXXX)
        port=$(free_port)
        CV_PROOF_INSIDE=1 CV_PROOF_MARKER="$marker" PGPORT="$port" \
            pg_virtualenv -t -o fsync=on -o log_statement=all -o log_min_duration_statement=0 \
            -o log_error_verbosity=verbose "$SELF" "$CARDVAULT_BIN"
        rc=$?
        if [ -s "$marker" ]; then
            rm -f "$marker"
            exit "$rc"
        fi
        rm -f "$marker"
        echo "# pg_virtualenv could not set up a cluster (attempt $attempt, exit $rc); retrying in 10 s" >&2
        sleep 10
    done
    echo "$SUITE: no PostgreSQL cluster after 6 attempts" >&2
    results=${CV_TEST_RESULTS:-$ROOT/build/test-results}
    mkdir -p "$(dirname "$results")" && echo "0 1" >>"$results"
    exit 1
fi
echo started >"$CV_PROOF_MARKER"

# ------------------------------------------------------------ inside

require_tools jq psql pg_dump createdb openssl curl awk perl xxd base64 iconv od setpriv
N_CARDS=${PROOF_CARDS:-1000}
TMP=$(mktemp -d -t cardvault-proof.XXXXXX)
HTTP="$TMP/http"     # every response body and header dump, searched
SVC="$TMP/svc"       # the service's working directory
mkdir -p "$HTTP" "$SVC/tmp" "$TMP/plant"
SERVICE_PID=""
STRACE_PID=""
NOBODY_DIR=""
cleanup() {
    if [ -n "$STRACE_PID" ] && [ -z "$SERVICE_PID" ]; then
        SERVICE_PID=$(pgrep -P "$STRACE_PID" | head -1)
    fi
    [ -n "$SERVICE_PID" ] && kill -KILL "$SERVICE_PID" 2>/dev/null
    [ -n "$STRACE_PID" ] && { kill -TERM "$STRACE_PID" 2>/dev/null; wait "$STRACE_PID" 2>/dev/null; }
    [ -n "$NOBODY_DIR" ] && rm -rf "$NOBODY_DIR"
    if [ "${CV_KEEP_TMP:-}" = 1 ]; then echo "# kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

DB=cardvault_proof
createdb "$DB" || { echo "$SUITE: createdb failed" >&2; exit 1; }
read -r PG_VER PG_NAME DATADIR PGLOG < <(pg_lsclusters -h | awk -v p="$PGPORT" '$3 == p { print $1, $2, $6, $7 }')
DATADIR_SQL=$(q "SHOW data_directory")
echo "# cluster $PG_VER/$PG_NAME port $PGPORT, data $DATADIR_SQL, server log $PGLOG, $N_CARDS cards, tmp $TMP"
for s in "fsync on" "log_statement all" "log_min_duration_statement 0" "log_error_verbosity verbose"; do
    set -- $s
    got=$(q "SHOW $1")
    check "cluster runs with $1 = $2 (SHOW: $got)" [ "$got" = "$2" ]
done
check "pg_lsclusters and SHOW data_directory agree ($DATADIR)" [ "$DATADIR" = "$DATADIR_SQL" ]

external_service_env
export CARDVAULT_RATE_LIMIT_RPS=0 CARDVAULT_AUTH_FAILURES_PER_MIN=0

cli() { # ARGS...: output kept in $TMP/cli (searched like everything else)
    "$CARDVAULT_BIN" "$@" >>"$TMP/cli.out" 2>>"$TMP/cli.err"
}
cli migrate || not_ok "migrate failed"
make_app_role || not_ok "cannot create the login role cardvault_app"
"$CARDVAULT_BIN" merchant create "Proof Shop" >"$TMP/m1.json" 2>>"$TMP/cli.err" &&
    "$CARDVAULT_BIN" merchant create "Proof Shop Two" >"$TMP/m2.json" 2>>"$TMP/cli.err" ||
    not_ok "merchant create failed"
M1_PK=$(jq -r .publishable_key "$TMP/m1.json")
M1_SK=$(jq -r .secret_key "$TMP/m1.json")
M1_DK=$(jq -r .detokenize_key "$TMP/m1.json")
M2=$(jq -r .merchant_id "$TMP/m2.json")
M2_PK=$(jq -r .publishable_key "$TMP/m2.json")

# The service runs under strace (only file-creating calls are traced, through
# seccomp-bpf, so it barely slows down) to list every file it opens for writing.
STRACE_LOG="$TMP/strace.log"
start_traced_service() {
    # An ASan build's leak checker cannot run under ptrace: switch it off for this run only.
    (cd "$SVC" && exec env TMPDIR="$SVC/tmp" HOME="$SVC" CARDVAULT_LISTEN="127.0.0.1:$PORT" \
        CARDVAULT_OPS_LISTEN="127.0.0.1:$OPS_PORT" \
        CARDVAULT_DATABASE_URL="${APP_DATABASE_URL:-$CARDVAULT_DATABASE_URL}" \
        ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
        strace -f -qq --seccomp-bpf -e trace=open,openat,openat2,creat,rename,renameat,renameat2,link,linkat,truncate,ftruncate \
        -o "$STRACE_LOG" "$CARDVAULT_BIN" serve >>"$TMP/service.stdout" 2>>"$TMP/service.stderr") &
    STRACE_PID=$!
    for _ in $(seq 1 150); do
        SERVICE_PID=$(pgrep -P "$STRACE_PID" | head -1) # strace's only child: the service
        if [ -n "$SERVICE_PID" ] &&
            curl -fsS --noproxy '*' -o /dev/null "$BASE/healthz" 2>/dev/null; then
            return 0
        fi
        kill -0 "$STRACE_PID" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}
if start_traced_service; then
    ok "serve (pid $SERVICE_PID, traced by strace) answers on $BASE"
else
    not_ok "serve did not start under strace"
    tail -n 20 "$TMP/service.stdout" "$TMP/service.stderr" | indent
    finish
    exit 1
fi

# ------------------------------------------------------------ canaries

# values: "kind<TAB>index<TAB>value"; every one is searched for at the end.
VALUES="$TMP/values.tsv"
: >"$VALUES"
SALT=$((RANDOM * 32768 + RANDOM))
EXP_YEAR=$(($(date -u +%Y) + 2))
gen_pans "$N_CARDS" "$SALT" >"$TMP/pans"
# Distinct CVCs: a shuffled 000-999 for 3-digit brands, 0000-9999 for Amex
# (15 digits, 37...); only past 1000 three-digit cards would values repeat.
awk -v salt="$SALT" '
BEGIN { srand(salt + 1); for (i = 0; i < 1000; i++) t[i] = i; for (i = 999; i > 0; i--) { j = int(rand() * (i + 1)); x = t[i]; t[i] = t[j]; t[j] = x }
        for (i = 0; i < 10000; i++) f[i] = i; for (i = 9999; i > 0; i--) { j = int(rand() * (i + 1)); x = f[i]; f[i] = f[j]; f[j] = x } }
{ if (length($1) == 15) printf "%04d\n", f[n4++ % 10000]; else printf "%03d\n", t[n3++ % 1000] }' "$TMP/pans" >"$TMP/cvcs"
# Distinct names: two random 7-letter words (26^14 choices).
awk -v n="$N_CARDS" -v salt="$SALT" 'BEGIN { srand(salt + 2); for (i = 0; i < n; i++) {
    s = ""; for (k = 0; k < 15; k++) s = s (k == 7 ? " " : sprintf("%c", 65 + int(rand() * 26))); print s } }' >"$TMP/names"
paste "$TMP/pans" "$TMP/cvcs" "$TMP/names" >"$TMP/cards"
awk -F '\t' '{ printf "pan\t%d\t%s\ncvc\t%d\t%s\nname\t%d\t%s\n", NR, $1, NR, $2, NR, $3 }' "$TMP/cards" >>"$VALUES"
echo "# $(wc -l <"$TMP/cards") cards: $(sort -u "$TMP/pans" | wc -l) distinct PANs, $(sort -u "$TMP/cvcs" | wc -l) distinct CVCs, $(sort -u "$TMP/names" | wc -l) distinct names"

# Extra canaries for the error paths, the outage and the unique violation:
# never tokenized (or only some of them), searched all the same.
gen_pans 120 "$((SALT + 7))" >"$TMP/xpans"
xpan() { sed -n "${1}p" "$TMP/xpans"; }
XI=0
XP="" XC="" XN=""
xcanary() { # sets XP XC XN to the next extra canary (in this shell) and records it
    XI=$((XI + 1))
    XP=$(xpan "$XI")
    XC=$(printf '%04d' $(((SALT + XI * 7919) % 10000)))
    [ ${#XP} -ne 15 ] && XC=${XC:1}
    local letters=ABCDEFGHIJKLMNOPQRSTUVWXYZ
    XN="XTRA${letters:$((XI % 26)):1}${letters:$((XI / 26 % 26)):1}Q CANARY"
    printf 'pan\tx%d\t%s\ncvc\tx%d\t%s\nname\tx%d\t%s\n' "$XI" "$XP" "$XI" "$XC" "$XI" "$XN" >>"$VALUES"
}
body_of() { # PAN CVC NAME [PAN-FORM]: the tokenize JSON
    printf '{"pan":"%s","exp_month":%d,"exp_year":%d,"cvc":"%s","cardholder_name":"%s"}' \
        "${4:-$1}" $((1 + ${#1} % 12)) "$EXP_YEAR" "$2" "$3"
}
spaced() { sed -E 's/(....)/\1 /g; s/ $//' <<<"$1"; }
hyphenated() { sed -E 's/(....)/\1-/g; s/-$//' <<<"$1"; }

# ------------------------------------------------------------- traffic

NRESP=0
# kept_req NAME METHOD PATH KEY [BODY [CONTENT-TYPE [EXTRA-HEADER]]]: response in $HTTP/NAME(.h); prints status.
kept_req() {
    local name=$1 method=$2 path=$3 key=$4
    local args=(-sS --noproxy '*' -o "$HTTP/$name" -D "$HTTP/$name.h" -w '%{http_code}' -X "$method")
    [ -n "$key" ] && args+=(-H "Authorization: Bearer $key")
    if [ $# -ge 5 ]; then
        args+=(-H "Content-Type: ${6:-application/json}" --data-binary "$5")
    fi
    [ $# -ge 7 ] && args+=(-H "$7")
    NRESP=$((NRESP + 1))
    curl "${args[@]}" "$BASE$path" 2>/dev/null
}

# 1. Tokenize every card, 16 at a time; PANs in three formats; every 10th with an Idempotency-Key.
awk -F '\t' -v base="$BASE" -v key="$M1_PK" -v dir="$HTTP" -v y="$EXP_YEAR" '
function grp(s, sep,   o, i) { o = ""; for (i = 1; i <= length(s); i += 4) o = o (i > 1 ? sep : "") substr(s, i, 4); return o }
{
    pan = NR % 3 == 1 ? $1 : NR % 3 == 2 ? grp($1, " ") : grp($1, "-")
    printf "next\nnoproxy = \"*\"\nurl = \"%s/v1/tokens\"\nrequest = \"POST\"\n", base
    printf "header = \"Authorization: Bearer %s\"\nheader = \"Content-Type: application/json\"\n", key
    if (NR % 10 == 0) printf "header = \"Idempotency-Key: proof-%d\"\n", NR
    printf "data-binary = \"{\\\"pan\\\":\\\"%s\\\",\\\"exp_month\\\":%d,\\\"exp_year\\\":%d,\\\"cvc\\\":\\\"%s\\\",\\\"cardholder_name\\\":\\\"%s\\\"}\"\n", pan, 1 + NR % 12, y, $2, $3
    printf "output = \"%s/tok-%d\"\ndump-header = \"%s/tok-%d.h\"\nsilent\n", dir, NR, dir, NR
}' "$TMP/cards" >"$TMP/tokenize.cfg"
run_tokenize_config "$TMP/tokenize.cfg" "$HTTP/tok-" "$N_CARDS" "$TMP/tokens"
paste "$TMP/cards" "$TMP/tokens" >"$TMP/cards-tokens"
check "tokenized $N_CARDS cards with CVC and name in ${secs}s ($n201 answered 201)" [ "$n201" -eq "$N_CARDS" ]

# Replays of the Idempotency-Key requests answer from the stored record (sent
# with the secret key: a key without read scope never gets a replay).
replayed=0
for i in 10 20 30; do
    [ "$i" -le "$N_CARDS" ] || continue
    IFS=$'\t' read -r p c n t < <(sed -n "${i}p" "$TMP/cards-tokens")
    form=$p
    [ $((i % 3)) -eq 2 ] && form=$(spaced "$p")
    [ $((i % 3)) -eq 0 ] && form=$(hyphenated "$p")
    body=$(printf '{"pan":"%s","exp_month":%d,"exp_year":%d,"cvc":"%s","cardholder_name":"%s"}' "$form" $((1 + i % 12)) "$EXP_YEAR" "$c" "$n")
    code=$(kept_req "replay-$i" POST /v1/tokens "$M1_SK" "$body" application/json "Idempotency-Key: proof-$i")
    [[ $code == 20? ]] && [ "$(jq -r .token "$HTTP/replay-$i")" = "$t" ] && replayed=$((replayed + 1))
done
check "Idempotency-Key replays answer with the original token ($replayed of 3)" [ "$replayed" -ge 1 ]

# Self-test of the real places (not copies): PROOF_SELFTEST_LEAK=1 writes one
# canary PAN and CVC into a scratch table through SQL, as a careless
# component would; the run must then FAIL in the data directory, the WAL,
# the server log, both dumps and `audit storage`.
if [ "${PROOF_SELFTEST_LEAK:-}" = 1 ]; then
    IFS=$'\t' read -r lp lc _ < <(sed -n 2p "$TMP/cards")
    q "CREATE TABLE leak_selftest (note text); INSERT INTO leak_selftest VALUES ('card $lp {\"cvc\":\"$lc\"}')"
    echo "# PROOF_SELFTEST_LEAK=1: planted card #2 in table leak_selftest; this run must fail"
fi

# 2. Detokenize every 10th: the body is checked in memory, never written to disk.
detok_ok=0
detok_n=0
while IFS=$'\t' read -r p c n t; do
    detok_n=$((detok_n + 1))
    body=$(curl -sS --noproxy '*' -X POST -H "Authorization: Bearer $M1_DK" "$BASE/v1/tokens/$t/detokenize" 2>/dev/null)
    # printf | jq: pipes only (a here-string may be backed by a temporary file)
    if [ "$(printf '%s' "$body" | jq -r .pan)" = "$p" ] &&
        [ "$(printf '%s' "$body" | jq -r .cardholder_name)" = "$n" ] &&
        ! printf '%s' "$body" | grep -q '"cvc"'; then
        detok_ok=$((detok_ok + 1))
    fi
done < <(awk 'NR % 10 == 5' "$TMP/cards-tokens")
body=""
check "detokenized $detok_n tokens: PAN and name match, no CVC ($detok_ok ok; bodies kept in memory only)" [ "$detok_ok" -eq "$detok_n" ]

# 3. Read every 5th, delete every 7th.
reads=0
dels=0
while IFS=$'\t' read -r _ _ _ t; do
    [ "$(kept_req "read-$t" GET "/v1/tokens/$t" "$M1_SK")" = 200 ] && reads=$((reads + 1))
done < <(awk 'NR % 5 == 1' "$TMP/cards-tokens")
while IFS=$'\t' read -r _ _ _ t; do
    [ "$(kept_req "delete-$t" DELETE "/v1/tokens/$t" "$M1_SK")" = 204 ] && dels=$((dels + 1))
done < <(awk 'NR % 7 == 3' "$TMP/cards-tokens")
check "read $reads tokens (200) and deleted $dels (204)" [ "$reads" -gt 0 -a "$dels" -gt 0 ]

# 4. Error paths, each carrying card data the service must not echo, log or store.
expect_code() { # NAME WANT-REGEX GOT
    if [[ $3 =~ ^($2)$ ]]; then ok "error path $1: HTTP $3"; else not_ok "error path $1: HTTP $3 (want $2)"; fi
}
xcanary; p=$XP c=$XC n=$XN
expect_code "malformed JSON carrying a PAN" 400 "$(kept_req err-malformed POST /v1/tokens "$M1_PK" "$(body_of "$p" "$c" "$n" | sed 's/}$//')")"
xcanary; p=$XP c=$XC n=$XN
xcanary; p2=$XP
expect_code "duplicate pan key" 400 "$(kept_req err-dup POST /v1/tokens "$M1_PK" "{\"pan\":\"$p\",\"pan\":\"$p2\",\"exp_month\":1,\"exp_year\":$EXP_YEAR,\"cvc\":\"$c\"}")"
xcanary; p=$XP c=$XC n=$XN
expect_code "unknown field holding a PAN" 400 "$(kept_req err-unknown POST /v1/tokens "$M1_PK" "$(body_of "$p" "$c" "$n" | sed "s/}\$/,\"note\":\"$p\"}/")")"
xcanary; p=$XP c=$XC n=$XN
bad=${p:0:${#p}-1}$(((${p: -1} + 1) % 10)) # Luhn broken
printf 'pan\tx%d-luhn\t%s\n' "$XI" "$bad" >>"$VALUES"
expect_code "PAN failing Luhn" 400 "$(kept_req err-luhn POST /v1/tokens "$M1_PK" "$(body_of "$bad" "$c" "$n")")"
xcanary; p=$XP c=$XC n=$XN
long=$p; while [ ${#long} -lt 20 ]; do long=${long}7; done # 20 digits whatever the canary's length
expect_code "20-digit PAN" 400 "$(kept_req err-20 POST /v1/tokens "$M1_PK" "$(body_of "$long" "$c" "$n")")"
xcanary; p=$XP c=$XC n=$XN
printf 'cvc\tx%d-5\t%s\n' "$XI" "${c}9" >>"$VALUES"
expect_code "5-digit CVC" 400 "$(kept_req err-cvc POST /v1/tokens "$M1_PK" "$(body_of "$p" "${c}9" "$n")")"
xcanary; p=$XP c=$XC n=$XN
expect_code "expiry in the past" 400 "$(kept_req err-expiry POST /v1/tokens "$M1_PK" "{\"pan\":\"$p\",\"exp_month\":1,\"exp_year\":2001,\"cvc\":\"$c\",\"cardholder_name\":\"$n\"}")"
xcanary; p=$XP c=$XC n=$XN
xcanary; p2=$XP
expect_code "cardholder name containing a PAN" 400 "$(kept_req err-name POST /v1/tokens "$M1_PK" "$(body_of "$p" "$c" "PAY $p2")")"
xcanary; p=$XP c=$XC n=$XN
expect_code "PAN as a JSON number" 400 "$(kept_req err-number POST /v1/tokens "$M1_PK" "{\"pan\":$p,\"exp_month\":1,\"exp_year\":$EXP_YEAR,\"cvc\":\"$c\"}")"
xcanary; p=$XP c=$XC n=$XN
expect_code "invalid UTF-8 around a PAN" 400 "$(kept_req err-utf8 POST /v1/tokens "$M1_PK" "$(body_of "$p" "$c" "$n" | sed 's/CANARY/CAN\xff\xfeARY/')")"
xcanary; p=$XP c=$XC n=$XN
expect_code "PAN in the URL path" 404 "$(kept_req err-url GET "/v1/tokens/$p" "$M1_SK")"
xcanary; p=$XP c=$XC n=$XN
expect_code "PAN in the query string" '4[0-9][0-9]|201' "$(kept_req err-query POST "/v1/tokens?pan=$p&cvc=$c" "$M1_PK" "$(body_of "$(xpan 1)" 123 "Q")")"
xcanary; p=$XP c=$XC n=$XN
filler=$(head -c 9000 /dev/zero | tr '\0' 'A')
expect_code "9 KB body with a PAN" 413 "$(kept_req err-9k POST /v1/tokens "$M1_PK" "$(body_of "$p" "$c" "$filler")")"
xcanary; p=$XP c=$XC n=$XN
big="$TMP/big.json"
{ printf '{"pan":"%s","cvc":"%s","x":"' "$p" "$c"; head -c 1048576 /dev/zero | tr '\0' 'B'; printf '"}'; } >"$big"
code=$(curl -sS --noproxy '*' -o "$HTTP/err-1m" -D "$HTTP/err-1m.h" -w '%{http_code}' -X POST \
    -H "Authorization: Bearer $M1_PK" -H 'Content-Type: application/json' --data-binary @"$big" "$BASE/v1/tokens" 2>/dev/null)
rm -f "$big"
expect_code "1 MiB body with a PAN" '413|000' "$code"
xcanary; p=$XP c=$XC n=$XN
expect_code "text/plain body with a PAN" 415 "$(kept_req err-ctype POST /v1/tokens "$M1_PK" "$(body_of "$p" "$c" "$n")" text/plain)"
xcanary; p=$XP c=$XC n=$XN
expect_code "unknown API key with a card body" 401 "$(kept_req err-key POST /v1/tokens sk_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG "$(body_of "$p" "$c" "$n")")"
xcanary; p=$XP c=$XC n=$XN
expect_code "detokenize-only key posting a card" 403 "$(kept_req err-scope POST /v1/tokens "$M1_DK" "$(body_of "$p" "$c" "$n")")"

# A unique violation inside PostgreSQL: a test-only unique index on
# (merchant, BIN, last 4) for merchant 2 makes its second tokenization of
# the same card fail in the INSERT, so the server logs the error, its DETAIL
# (the key values) and the statement with all its parameters.
q "CREATE UNIQUE INDEX cv_proof_unique ON tokens (merchant_id, bin, last4) WHERE merchant_id = '$M2'"
xcanary; p=$XP c=$XC n=$XN
c1=$(kept_req uniq-1 POST /v1/tokens "$M2_PK" "$(body_of "$p" "$c" "$n")")
c2=$(kept_req uniq-2 POST /v1/tokens "$M2_PK" "$(body_of "$p" "$c" "$n" "$(spaced "$p")")")
q "DROP INDEX cv_proof_unique"
nviol=$(grep -c 'duplicate key value violates unique constraint "cv_proof_unique"' "$PGLOG")
nparams=$(grep -c 'DETAIL:  parameters: \$1 = ' "$PGLOG")
ninsert=$(grep -c 'INSERT INTO tokens' "$PGLOG")
check "the server log records statements with their bind parameters ($nparams parameter lists, $ninsert token INSERTs logged)" \
    [ "$nparams" -gt 100 -a "$ninsert" -gt 0 ]
if [ "$c1" = 201 ] && [[ $c2 =~ ^(409|5[0-9][0-9])$ ]] && [ "$nviol" -ge 1 ]; then
    ok "unique violation provoked: first 201, second $c2, server log has $nviol 'duplicate key' error(s)"
else
    not_ok "unique violation: HTTP $c1 then $c2, $nviol 'duplicate key' errors in the server log"
fi

# Database outage in the middle of a request stream.
: >"$TMP/outage-codes"
OUT_BASE=$XI
(
    for i in $(seq 1 40); do
        xcanary
        kept_req "outage-$i" POST /v1/tokens "$M1_PK" "$(body_of "$XP" "$XC" "$XN")" >>"$TMP/outage-codes"
        echo >>"$TMP/outage-codes"
        sleep 0.1
    done
) &
stream=$!
XI=$((OUT_BASE + 40)) # the stream's canaries (recorded by the subshell)
sleep 0.8
pg_ctlcluster "$PG_VER" "$PG_NAME" stop -m fast
xcanary
down_code=$(kept_req outage-down POST /v1/tokens "$M1_PK" "$(body_of "$XP" "$XC" "$XN")")
down_detok=$(curl -sS --noproxy '*' -o "$HTTP/outage-detok" -D "$HTTP/outage-detok.h" -w '%{http_code}' -X POST \
    -H "Authorization: Bearer $M1_DK" "$BASE/v1/tokens/$(awk -F '\t' 'NR == 5 { print $4 }' "$TMP/cards-tokens")/detokenize" 2>/dev/null)
sleep 1.5
pg_ctlcluster "$PG_VER" "$PG_NAME" start
wait "$stream"
ready=0
for _ in $(seq 1 100); do
    [ "$(curl -s --noproxy '*' -o /dev/null -w '%{http_code}' "$OPS_BASE/readyz")" = 200 ] && { ready=1; break; }
    sleep 0.1
done
n503=$(grep -c '^503$' "$TMP/outage-codes")
n201o=$(grep -c '^201$' "$TMP/outage-codes")
if [ "$down_code" = 503 ] && [ "$down_detok" = 503 ] && [ "$n503" -ge 1 ] && [ "$ready" -eq 1 ]; then
    ok "database outage mid-stream: tokenize and detokenize 503 while down, stream $n201o x 201 / $n503 x 503, ready again after restart"
else
    not_ok "database outage: down tokenize $down_code, detokenize $down_detok, stream 201x$n201o 503x$n503, ready $ready"
fi
if grep -q '"pan"' "$HTTP/outage-detok"; then
    not_ok "detokenize while the database was down returned a PAN"
else
    ok "detokenize while the database was down returned no PAN"
fi

# An audit storage scan, whose output is searched too.
if "$CARDVAULT_BIN" audit storage >"$TMP/cli-storage.out" 2>>"$TMP/cli.err"; then
    ok "cardvault audit storage: clean ($(grep -v '"event"' "$TMP/cli-storage.out" | tail -1 | jq -c '{rows, bytes, findings}'))"
else
    not_ok "cardvault audit storage found something or failed"
    grep '"finding"' "$TMP/cli-storage.out" | indent
fi

# Stop the service: its logs are complete, strace exits with it.
kill -TERM "$SERVICE_PID"
wait "$STRACE_PID"
svc_rc=$?
SERVICE_PID=""
STRACE_PID=""
check "serve stopped on SIGTERM (exit $svc_rc)" [ "$svc_rc" -eq 0 ]

# ------------------------------------------------------ the places

q "CHECKPOINT" >/dev/null
pg_dump -d "$DB" >"$TMP/dump.sql" 2>>"$TMP/pg_dump.err" || not_ok "pg_dump (plain) failed"
pg_dump -d "$DB" -Fc -Z0 >"$TMP/dump.custom" 2>>"$TMP/pg_dump.err" || not_ok "pg_dump (custom) failed"
WALDUMP=/usr/lib/postgresql/$PG_VER/bin/pg_waldump
: >"$TMP/waldump.txt"
nwal=0
for seg in $(find "$DATADIR/pg_wal" -maxdepth 1 -type f -name '????????????????????????' | sort); do
    "$WALDUMP" "$seg" >>"$TMP/waldump.txt" 2>/dev/null
    nwal=$((nwal + 1))
done
check "pg_waldump decoded $nwal WAL segment(s) into $(wc -l <"$TMP/waldump.txt") records" [ "$(wc -l <"$TMP/waldump.txt")" -gt 100 ]

# Files the service opened for writing, from strace (O_WRONLY, O_RDWR, O_CREAT, O_TRUNC, renames).
awk '
/(open|openat|openat2|creat)\(/ && /(O_WRONLY|O_RDWR|O_CREAT|O_TRUNC|creat\()/ && !/= -1 / {
    if (match($0, /"[^"]*"/)) print substr($0, RSTART + 1, RLENGTH - 2)
}
/rename|link\(|linkat\(/ && !/= -1 / {
    n = split($0, a, "\""); if (n >= 4) print a[4]
}' "$STRACE_LOG" | sort -u >"$TMP/written.raw"
: >"$TMP/written.list"
while read -r f; do
    case $f in /dev/* | /proc/* | /sys/*) continue ;; esac
    [ "${f:0:1}" = / ] || f="$SVC/$f"
    [ -f "$f" ] && echo "$f" >>"$TMP/written.list"
done <"$TMP/written.raw"
traced=$(grep -c . "$STRACE_LOG")
echo "# strace saw $traced file calls; files opened for writing: $(wc -l <"$TMP/written.raw") ($(tr '\n' ' ' <"$TMP/written.raw"))"
find "$SVC" -type f >>"$TMP/written.list"
sort -u -o "$TMP/written.list" "$TMP/written.list"

# Place lists: name|listfile
: >"$TMP/places"
place() { # NAME then file paths on stdin
    local f="$TMP/place-$(echo "$1" | tr -c 'a-zA-Z0-9' '_').list"
    cat >"$f"
    printf '%s|%s\n' "$1" "$f" >>"$TMP/places"
}
find "$DATADIR" -type f ! -path '*/pg_wal/*' | place "data directory (heap, indexes, FSM/VM, xact, stats; pg_wal apart)"
find "$DATADIR/pg_wal" -type f | place "WAL segments (raw)"
echo "$TMP/waldump.txt" | place "pg_waldump output"
echo "$PGLOG" | place "PostgreSQL server log"
echo "$TMP/service.stdout" | place "service stdout"
echo "$TMP/service.stderr" | place "service stderr"
printf '%s\n' "$TMP/dump.sql" | place "pg_dump (plain)"
printf '%s\n' "$TMP/dump.custom" | place "pg_dump (custom, uncompressed)"
place "files the service wrote (strace, and its working directory)" <"$TMP/written.list"
find "$HTTP" -type f | place "HTTP response bodies and headers (detokenize answers never written)"
printf '%s\n' "$TMP/cli.out" "$TMP/cli.err" "$TMP/m1.json" "$TMP/m2.json" "$TMP/cli-storage.out" | place "CLI output"

# ---------------------------------------------------------- patterns

PATTERNS="$TMP/patterns"
IDS="$TMP/pattern-ids"
PL="$ROOT/tests/scenarios/proof-patterns.pl"
sort -u -o "$VALUES" "$VALUES"
perl "$PL" gen "$VALUES" "$PATTERNS" "$IDS" || not_ok "pattern generation failed"
n_pat=$(wc -l <"$IDS")
n_pan=$(grep -c '^pan' "$VALUES")
n_cvc=$(grep -c '^cvc' "$VALUES")
n_name=$(grep -c '^name' "$VALUES")
n_enc=$(awk '{ sub(/^[^\/ ]* [^\/]*\/?/, ""); print ($0 == "" ? "as-is" : $0) }' "$IDS" | sort -u | wc -l)
echo "# $n_pat patterns: $n_pan PANs, $n_cvc CVCs, $n_name names; forms x $n_enc encodings"

# search LISTFILE: ids of every match, one per line
search() {
    tr '\n' '\0' <"$1" | xargs -0 -r env LC_ALL=C grep -a -h -o -F -f "$PATTERNS" -- 2>/dev/null |
        perl "$PL" map "$PATTERNS" "$IDS"
}

# --------------------------------------------------- positive controls

# One sample per place type, with one planted value per encoding, each on a
# different canary so the match tells which encoding was found. The plants
# are made with xxd, base64 and iconv, not with the pattern generator.
P1=$(awk -F '\t' 'NR == 1 { print $1 }' "$TMP/cards")      # 16 digits
A1=$(awk -F '\t' 'length($1) == 15 { print NR; exit }' "$TMP/cards")
plant_set() {
    local i=0 pan c n
    next_card() { i=$((i + 1)); IFS=$'\t' read -r pan c n < <(sed -n "${1}p" "$TMP/cards"); }
    next_card 1
    printf 'x%sx\n' "$pan"; echo "pan#1 digits" >>"$EXPECT"
    next_card 2; printf 'card %s ok\n' "$(spaced "$pan")"; echo "pan#2 spaces" >>"$EXPECT"
    next_card 3; printf 'card:%s;\n' "$(hyphenated "$pan")"; echo "pan#3 hyphens" >>"$EXPECT"
    IFS=$'\t' read -r pan c n < <(sed -n "${A1}p" "$TMP/cards")
    printf '%s %s %s\n' "${pan:0:4}" "${pan:4:6}" "${pan:10:5}"; echo "pan#$A1 amex-spaces" >>"$EXPECT"
    next_card 4; printf '{"pan":"%s"}\n' "$(printf '%s' "$pan" | od -An -tx1 -v | awk '{ for (i = 1; i <= NF; i++) printf "\\u00%s", $i }')"
    echo "pan#4 digits/json-escape" >>"$EXPECT"
    next_card 5; printf 'hex %s\n' "$(printf '%s' "$pan" | xxd -p | tr -d '\n')"; echo "pan#5 digits/hex" >>"$EXPECT"
    next_card 6; printf 'HEX %s\n' "$(printf '%s' "$(hyphenated "$pan")" | xxd -p | tr -d '\n' | tr a-f A-F)"
    echo "pan#6 hyphens/HEX" >>"$EXPECT"
    for k in 0 1 2; do
        next_card $((7 + k))
        printf 'b64 %s\n' "$({ head -c "$k" /dev/urandom; printf '%s' "$pan"; head -c 2 /dev/urandom; } | base64 -w0)"
        echo "pan#$((7 + k)) digits/base64+$k" >>"$EXPECT"
    done
    next_card 10; printf 'u16 '; printf '%s' "$pan" | iconv -f ASCII -t UTF-16LE; echo; echo "pan#10 digits/utf16le" >>"$EXPECT"
    next_card 11; printf 'u16 '; printf '%s' "$pan" | iconv -f ASCII -t UTF-16BE; echo; echo "pan#11 digits/utf16be" >>"$EXPECT"
    next_card 12; printf '{"pan":"x","cvc":"%s"}\n' "$c"; echo "cvc#12 json" >>"$EXPECT"
    next_card 13; printf '{"msg":"{\\"cvc\\":\\"%s\\"}"}\n' "$c"; echo "cvc#13 json-in-string" >>"$EXPECT"
    next_card 14; printf 'b64 %s\n' "$({ head -c 1 /dev/urandom; printf '"cvc": "%s"' "$c"; } | base64 -w0)"
    echo "cvc#14 json-space/base64+1" >>"$EXPECT"
    next_card 15; printf 'name %s.\n' "$n"; echo "name#15 text" >>"$EXPECT"
    next_card 16; printf 'u16 '; printf '%s' "$n" | iconv -f ASCII -t UTF-16BE; echo; echo "name#16 text/utf16be" >>"$EXPECT"
}
EXPECT="$TMP/plant/expected"
: >"$EXPECT"
plant_set >"$TMP/plant/plants.bin"
n_plants=$(grep -c . "$EXPECT")
controls_ok=0
controls_n=0
while IFS='|' read -r name list; do
    sample=$(head -1 "$list")
    ctl="$TMP/plant/control"
    { [ -n "$sample" ] && [ -f "$sample" ] && head -c 1048576 "$sample"; printf '\n'
      cat "$TMP/plant/plants.bin"
      [ -n "$sample" ] && [ -f "$sample" ] && tail -c 65536 "$sample"; } >"$ctl"
    echo "$ctl" >"$TMP/plant/list"
    # Compared on kind and encoding ("pan digits/hex"): a short value's base64
    # pattern can be shared by two canaries (see proof-patterns.pl), and then
    # the match names the first of them; each encoding is planted only once.
    search "$TMP/plant/list" | sed 's/#[^ ]*//' | sort -u >"$TMP/plant/found"
    missing=$(sed 's/#[^ ]*//' "$EXPECT" | grep -v -x -F -f "$TMP/plant/found")
    controls_n=$((controls_n + 1))
    if [ -z "$missing" ]; then
        controls_ok=$((controls_ok + 1))
    else
        not_ok "positive control for '$name': not found: $(tr '\n' ';' <<<"$missing")"
    fi
done <"$TMP/places"
check "positive controls: all $n_plants planted encodings found in a sample of each of the $controls_n place types" \
    [ "$controls_ok" -eq "$controls_n" ]

# -------------------------------------------------------------- search

total_files=0
total_bytes=0
total_hits=0
while IFS='|' read -r name list; do
    nf=$(grep -c . "$list")
    nb=0
    [ "$nf" -gt 0 ] && nb=$(tr '\n' '\0' <"$list" | xargs -0 -r stat -c %s -- 2>/dev/null | awk '{ s += $1 } END { print s + 0 }')
    search "$list" >"$TMP/hits"
    nh=$(grep -c . "$TMP/hits")
    total_files=$((total_files + nf))
    total_bytes=$((total_bytes + nb))
    total_hits=$((total_hits + nh))
    if [ "$nh" -eq 0 ]; then
        ok "$name: $nf file(s), $nb bytes, no PAN/CVC/name in any encoding"
    else
        not_ok "$name: $nh match(es) in $nf file(s), $nb bytes: $(sort "$TMP/hits" | uniq -c | sort -rn | head -8 | awk '{ printf "%s x%s; ", $2 " " $3, $1 }')"
        tr '\n' '\0' <"$list" | xargs -0 -r env LC_ALL=C grep -a -l -F -f "$PATTERNS" -- 2>/dev/null | head -5 | indent
    fi
done <"$TMP/places"
echo "# searched $(grep -c . "$TMP/places") places, $total_files files, $total_bytes bytes for $n_pat patterns: $total_hits matches"

# ------------------------------------------------ core dumps and ptrace

# Run as an unprivileged user: root may ptrace anything (CAP_SYS_PTRACE) and
# owns every /proc file anyway, so only a non-root service shows what
# PR_SET_DUMPABLE=0 changes. The control is the same binary with
# CARDVAULT_DEV=1 (no hardening) and an unlimited core size.
NOBODY_DIR=$(mktemp -d -t cardvault-proof-core.XXXXXX)
chmod 755 "$NOBODY_DIR"
cp "$CARDVAULT_BIN" "$NOBODY_DIR/cardvault"
cp "$TMP/kek" "$NOBODY_DIR/kek"
chown nobody "$NOBODY_DIR/kek"
chmod 755 "$NOBODY_DIR/cardvault"
mkdir "$NOBODY_DIR/prod" "$NOBODY_DIR/dev"
chown nobody "$NOBODY_DIR/prod" "$NOBODY_DIR/dev"
core_pattern=$(cat /proc/sys/kernel/core_pattern)
as_nobody() { setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"; }
NOBODY_PID=""
start_nobody() { # MODE(prod|dev) PORT: sets NOBODY_PID
    local mode=$1 port=$2 devenv=() ops_port
    ops_port=$(free_port)
    [ "$ops_port" = "$port" ] && ops_port=$((port + 2))
    [ "$mode" = dev ] && devenv=(CARDVAULT_DEV=1)
    (cd "$NOBODY_DIR/$mode" && exec setpriv --reuid=nobody --regid=nogroup --clear-groups \
        bash -c 'ulimit -c unlimited 2>/dev/null; exec "$@"' _ env "${devenv[@]}" \
        CARDVAULT_KEK_FILE="$NOBODY_DIR/kek" CARDVAULT_LISTEN="127.0.0.1:$port" \
        CARDVAULT_OPS_LISTEN="127.0.0.1:$ops_port" \
        CARDVAULT_DATABASE_URL="${APP_DATABASE_URL:-$CARDVAULT_DATABASE_URL}" \
        "$NOBODY_DIR/cardvault" serve >"$NOBODY_DIR/$mode.log" 2>&1) &
    NOBODY_PID=$!
    for _ in $(seq 1 100); do
        curl -fsS --noproxy '*' -o /dev/null "http://127.0.0.1:$port/healthz" 2>/dev/null && break
        sleep 0.1
    done
}
PPORT=$(free_port)
start_nobody prod "$PPORT"
prod=$NOBODY_PID
DPORT=$(free_port)
[ "$DPORT" = "$PPORT" ] && DPORT=$((PPORT + 1))
start_nobody dev "$DPORT"
dev=$NOBODY_PID
if kill -0 "$prod" 2>/dev/null && kill -0 "$dev" 2>/dev/null; then
    ok "service started as user nobody: production (pid $prod) and CARDVAULT_DEV=1 control (pid $dev)"
    core_prod=$(awk '/^Max core file size/ { print $5, $6 }' "/proc/$prod/limits")
    core_dev=$(awk '/^Max core file size/ { print $5, $6 }' "/proc/$dev/limits")
    check "production: RLIMIT_CORE is 0 (/proc/PID/limits: $core_prod; control: $core_dev)" [ "$core_prod" = "0 0" ]
    own_prod=$(stat -c %U "/proc/$prod/environ")
    own_dev=$(stat -c %U "/proc/$dev/environ")
    check "production: non-dumpable, /proc/PID files owned by $own_prod (control: $own_dev; proc(5))" \
        [ "$own_prod" = root -a "$own_dev" = nobody ]
    if as_nobody cat "/proc/$prod/environ" >/dev/null 2>&1; then
        not_ok "production: another process of user nobody can read /proc/PID/environ"
    else
        ok "production: another process of user nobody cannot read its /proc/PID/environ"
    fi
    as_nobody timeout 3 strace -p "$dev" -e trace=none >"$NOBODY_DIR/strace-dev" 2>&1
    as_nobody timeout 3 strace -p "$prod" -e trace=none >"$NOBODY_DIR/strace-prod" 2>&1
    if grep -q 'attached' "$NOBODY_DIR/strace-dev"; then
        if grep -q 'Operation not permitted' "$NOBODY_DIR/strace-prod" && ! grep -q 'attached' "$NOBODY_DIR/strace-prod"; then
            ok "ptrace: same-user strace -p is refused on the production service ($(grep -o 'ptrace([A-Z_]*.*' "$NOBODY_DIR/strace-prod" | head -1)), accepted on the control"
        else
            not_ok "ptrace: same-user attach to the production service: $(head -2 "$NOBODY_DIR/strace-prod")"
        fi
    else
        echo "# ptrace: the control could not be attached either ($(head -1 "$NOBODY_DIR/strace-dev")): not provable on this machine"
    fi
    marker="$NOBODY_DIR/marker"
    touch "$marker"
    kill -ABRT "$prod" "$dev"
    wait "$prod" 2>/dev/null
    rc_prod=$?
    wait "$dev" 2>/dev/null
    rc_dev=$?
    sleep 0.5
    case $core_pattern in
    '|'*) core_dirs=() ;;
    /*) core_dirs=("$(dirname "$core_pattern")") ;;
    *) core_dirs=() ;;
    esac
    cores_prod=$(find "$NOBODY_DIR/prod" "${core_dirs[@]}" -maxdepth 1 -type f -name 'core*' -newer "$marker" 2>/dev/null | grep -v "$NOBODY_DIR/dev" | wc -l)
    cores_dev=$(find "$NOBODY_DIR/dev" -maxdepth 1 -type f -name 'core*' 2>/dev/null | wc -l)
    if [ "$cores_dev" -ge 1 ]; then
        check "SIGABRT: production left no core file (exit $rc_prod; core_pattern '$core_pattern'), the control did ($cores_dev, exit $rc_dev)" \
            [ "$cores_prod" -eq 0 ]
    elif [ "${core_pattern:0:1}" = '|' ]; then
        echo "# SIGABRT: core_pattern pipes cores to '${core_pattern:1}'; no file to look for here (prod exit $rc_prod)"
        check "SIGABRT: production left no core file in its working directory" [ "$cores_prod" -eq 0 ]
    else
        echo "# SIGABRT: the control did not dump core either (core_pattern '$core_pattern'): the RLIMIT_CORE and dumpable checks above are the evidence"
        check "SIGABRT: production left no core file in its working directory" [ "$cores_prod" -eq 0 ]
    fi
    rm -f "$NOBODY_DIR"/dev/core* # the control's memory image: gone at once
else
    not_ok "service did not start as user nobody: $(tail -q -n 3 "$NOBODY_DIR/prod.log" "$NOBODY_DIR/dev.log" 2>/dev/null | tr '\n' ' ')"
    kill "$prod" "$dev" 2>/dev/null
fi

finish
