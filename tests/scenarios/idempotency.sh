#!/usr/bin/env bash
# Idempotent tokenize scenario.
#
#   tests/scenarios/idempotency.sh [build/release/cardvault]
#
# On its own PostgreSQL cluster (tests/lib/scenario.sh) it checks that
# POST /v1/tokens with an Idempotency-Key:
#   - replays the original status and body, with `Idempotent-Replayed: true`,
#     for the same key and body, and answers 409 idempotency_key_reused for the
#     same key with another body; keys are scoped per merchant; a request
#     refused with 400 does not use up its key;
#   - refuses invalid keys (empty, 256 characters, control characters, DEL,
#     non-ASCII) with 400 invalid_idempotency_key and accepts 255 characters;
#   - creates exactly one token when 20 requests with one key arrive at once,
#     and when pairs of requests race, over many rounds (every answer is 201
#     with the winner's token, or the documented 409 idempotency_key_in_use);
#   - answers 409 idempotency_key_in_use when the first request is held in
#     flight for longer than the 5 s wait (its token INSERT is blocked by a
#     table lock taken from psql), and replays once the first finishes;
#   - remembers a key for CARDVAULT_IDEMPOTENCY_TTL_S (default 24 h; 60 here),
#     and after expiry (expires_at moved into the past with SQL) the same key
#     creates a new token;
#   - purges expired records (the housekeeping purge runs at start, so the
#     check restarts the service) and keeps the others;
#   - stores no PAN (plain, spaced, hyphenated, hex), no CVC, no cardholder
#     name and no raw or unkeyed-hashed Idempotency-Key: pg_dump of the table
#     and of the whole database are searched, with a planted positive control.
# Ends with "idempotency: N passed, N failed" (sc_finish).

# Bodies and keys are assigned with printf -v (mkbody, newkey):
# shellcheck disable=SC2154
SUITE=idempotency
# shellcheck source=tests/lib/scenario.sh
. "$(dirname "$0")/../lib/scenario.sh"

require_tools jq curl psql pg_dump openssl sha256sum xxd base64

cd "$SC_ROOT" || exit 2   # migrate reads ./migrations
sc_setup
sc_merchant "Idem Shop A" || { echo "merchant create failed"; exit 1; }
A_ID=$M_ID A_PK=$M_PK A_SK=$M_SK
sc_merchant "Idem Shop B" || { echo "merchant create failed"; exit 1; }
B_ID=$M_ID B_PK=$M_SK # replays need the read scope (sk_)
M_ID=$A_ID M_PK=$A_PK M_SK=$A_SK

ntokens() { q "SELECT count(*) FROM tokens WHERE merchant_id = '${1:-$A_ID}'"; }
YEAR=$(($(date -u +%Y) + 3))
RUN=$(openssl rand -hex 4)   # makes keys unique to this run

# Every PAN, CVC, cardholder name and Idempotency-Key sent, for the storage search.
SENT_PANS=() SENT_CVCS=() SENT_NAMES=() SENT_KEYS=()
# mkbody VAR PAN CVC [NAME]: a tokenize body in VAR; remembers the values.
mkbody() {
  local name=${4:-}
  SENT_PANS+=("$2"); SENT_CVCS+=("$3")
  if [ -n "$name" ]; then
    SENT_NAMES+=("$name")
    printf -v "$1" '{"pan":"%s","exp_month":7,"exp_year":%d,"cvc":"%s","cardholder_name":"%s"}' \
      "$2" "$YEAR" "$3" "$name"
  else
    printf -v "$1" '{"pan":"%s","exp_month":7,"exp_year":%d,"cvc":"%s"}' "$2" "$YEAR" "$3"
  fi
}
# luhn_complete DIGITS: DIGITS plus its Luhn check digit.
luhn_complete() {
  local b=$1 n=${#1} s=0 i d
  for ((i = 0; i < n; i++)); do
    d=${b:n-1-i:1}
    if ((i % 2 == 0)); then d=$((d * 2)); ((d > 9)) && d=$((d - 9)); fi
    s=$((s + d))
  done
  echo "$b$(((10 - s % 10) % 10))"
}
# bad_luhn PAN: the same PAN with a wrong check digit.
bad_luhn() { echo "${1%?}$(((${1: -1} + 1) % 10))"; }
newkey() { local k="idem-$RUN-$1"; SENT_KEYS+=("$k"); printf -v "$2" '%s' "$k"; }

# post OUT BODY [curl args...]: POST /v1/tokens with merchant A's sk (replays need the read scope) (unless an
# Authorization header is given); body in OUT, headers in OUT.h, status in OUT.s.
post() {
  local out=$1 body=$2; shift 2
  local auth=(-H "Authorization: Bearer $M_SK")
  case " $* " in *"Authorization:"*) auth=() ;; esac
  curl -s -o "$out" -D "$out.h" -w '%{http_code}' --max-time 30 -X POST "$SC_URL/v1/tokens" \
    "${auth[@]}" -H 'Content-Type: application/json' "$@" --data-binary "$body" >"$out.s" 2>/dev/null
  [ -s "$out.s" ] || echo 000 >"$out.s"
}
# tok KEY BODY [curl args...]: post with that Idempotency-Key; sets R_STATUS R_BODY R_REPLAYED R_CODE R_TOKEN
tok() {
  local key=$1 body=$2; shift 2
  post "$SC_DIR/r" "$body" -H "Idempotency-Key: $key" "$@"
  R_STATUS=$(cat "$SC_DIR/r.s"); R_BODY=$(cat "$SC_DIR/r")
  R_REPLAYED=$(tr -d '\r' <"$SC_DIR/r.h" | awk -F': ' 'tolower($1) == "idempotent-replayed" { print $2 }')
  R_CODE=$(jq -r '.error.code // empty' <<<"$R_BODY" 2>/dev/null)
  R_TOKEN=$(jq -r '.token // empty' <<<"$R_BODY" 2>/dev/null)
}

sc_start || { echo "service did not start"; cat "$SC_SERVICE_LOG"; exit 1; }
echo "# service $SC_BIN on $SC_URL, cluster $SC_DIR"

# ---------------------------------------------------------------- replay / reuse
echo "# [${SECONDS}s] replay / reuse"
newkey basic K1
mkbody B1 "$(luhn_pan 4111 101)" 123 "ADA LOVELACE"
before=$(ntokens)
tok "$K1" "$B1"; s1=$R_STATUS b1=$R_BODY t1=$R_TOKEN r1=$R_REPLAYED
check "first request with a key: 201 with a token" test "$s1" = 201 -a -n "$t1"
check "first request is not marked Idempotent-Replayed" test -z "$r1"
tok "$K1" "$B1"
check "same key, same body: same status (201)" test "$R_STATUS" = 201
check "same key, same body: byte-identical body" test "$R_BODY" = "$b1"
check "same key, same body: Idempotent-Replayed: true" test "$R_REPLAYED" = true
check "replays created no second token" test "$(ntokens)" = $((before + 1))
tok "$K1" "$B1"
check "third identical request replays again" test "$R_STATUS:$R_TOKEN:$R_REPLAYED" = "201:$t1:true"

mkbody B1b "$(luhn_pan 4111 102)" 456
tok "$K1" "$B1b"
check "same key, different PAN: 409 idempotency_key_reused" test "$R_STATUS:$R_CODE" = 409:idempotency_key_reused
check "409 reused has type idempotency_error" test "$(jq -r .error.type <<<"$R_BODY")" = idempotency_error
mkbody B1c "$(luhn_pan 4111 101)" 124 "ADA LOVELACE"
tok "$K1" "$B1c"
# The CVC is not part of the request's identity: a hash covering it would be
# CVC-derived data kept for 24 h (PCI DSS 3.3.1.2). The replay holds no CVC.
check "same key, same card but different CVC: replays the original token (CVC never hashed)" \
  test "$R_STATUS:$R_TOKEN:$R_REPLAYED" = "201:$t1:true"
check "no token created by the refused bodies" test "$(ntokens)" = $((before + 1))
tok "$K1" "$B1"
check "original body still replays after a 409" test "$R_STATUS:$R_TOKEN:$R_REPLAYED" = "201:$t1:true"

# The same key string belongs to each merchant separately.
tok "$K1" "$B1" -H "Authorization: Bearer $B_PK"
check "same key from another merchant: its own new token (201, not replayed)" \
  test "$R_STATUS" = 201 -a -n "$R_TOKEN" -a "$R_TOKEN" != "$t1" -a -z "$R_REPLAYED"
check "merchant B got exactly one token" test "$(ntokens "$B_ID")" = 1

# Reading the token with merchant A's secret key shows the replayed token is real.
st=$(curl -s -o /dev/null -w '%{http_code}' "$SC_URL/v1/tokens/$t1" -H "Authorization: Bearer $A_SK")
check "the replayed token exists (GET 200)" test "$st" = 200

# A request refused by validation does not use up the key.
newkey fail-first K2
mkbody Bbad "$(bad_luhn "$(luhn_pan 4111 103)")" 111
tok "$K2" "$Bbad"
check "invalid PAN with a key: 400 invalid_pan" test "$R_STATUS:$R_CODE" = 400:invalid_pan
mkbody B2 "$(luhn_pan 4111 104)" 222
tok "$K2" "$B2"
check "same key then used with a valid body: 201 (a 400 does not use up the key)" \
  test "$R_STATUS" = 201 -a -z "$R_REPLAYED"

# Without a key there is no idempotency: two tokens.
mkbody B3 "$(luhn_pan 4111 105)" 333
before=$(ntokens)
post "$SC_DIR/n1" "$B3"; post "$SC_DIR/n2" "$B3"
check "no Idempotency-Key: two identical requests make two tokens" \
  test "$(cat "$SC_DIR/n1.s")$(cat "$SC_DIR/n2.s")" = 201201 -a "$(ntokens)" = $((before + 2))

# ---------------------------------------------------------------- invalid keys
echo "# [${SECONDS}s] invalid keys"
mkbody B4 "$(luhn_pan 4111 106)" 444
before=$(ntokens)
badkey() { # NAME CURL-HEADER-ARG
  post "$SC_DIR/bk" "$B4" -H "$2"
  local s c
  s=$(cat "$SC_DIR/bk.s"); c=$(jq -r '.error.code // empty' "$SC_DIR/bk" 2>/dev/null)
  if [ "$s:$c" = 400:invalid_idempotency_key ]; then ok "invalid key ($1): 400 invalid_idempotency_key"
  else not_ok "invalid key ($1): 400 invalid_idempotency_key (got $s $c)"; fi
}
badkey "empty" "Idempotency-Key;"
badkey "256 characters" "Idempotency-Key: $(printf 'k%.0s' $(seq 256))"
badkey "control character 0x01" $'Idempotency-Key: abc\x01def'
badkey "control character 0x1f" $'Idempotency-Key: abc\x1fdef'
badkey "DEL 0x7f" $'Idempotency-Key: abc\x7fdef'
badkey "non-ASCII UTF-8" $'Idempotency-Key: caf\xc3\xa9'
check "invalid keys created no token" test "$(ntokens)" = "$before"
K255=$(printf 'K%.0s' $(seq 254))-; SENT_KEYS+=("$K255")
tok "$K255" "$B4"
check "255-character key accepted (201)" test "$R_STATUS" = 201
t255=$R_TOKEN
tok "$K255" "$B4"
check "255-character key replays" test "$R_STATUS:$R_TOKEN:$R_REPLAYED" = "201:$t255:true"
K1C="!~ ()<>{}\"'@#\$%^&*=+|\\;:,./?1"; SENT_KEYS+=("$K1C")
tok "$K1C" "$B4"
check "key of printable punctuation and spaces accepted (201, new key)" \
  test "$R_STATUS" = 201 -a -z "$R_REPLAYED" -a "$R_TOKEN" != "$t255"

# ---------------------------------------------------------------- concurrency
echo "# [${SECONDS}s] concurrency"
# conc_round N KEY BODY PREFIX: N requests with one key started together;
# prints one "status code token" line per request.
conc_round() {
  local n=$1 key=$2 body=$3 p=$4 i pids=()
  for ((i = 0; i < n; i++)); do
    post "$SC_DIR/$p.$i" "$body" -H "Idempotency-Key: $key" &
    pids+=($!)
  done
  wait "${pids[@]}"
  for ((i = 0; i < n; i++)); do
    # grep, not jq: 200 jq processes would dominate the run time.
    local body code token
    body=$(cat "$SC_DIR/$p.$i" 2>/dev/null)
    code=$(grep -o '"code":"[a-z_]*"' <<<"$body" | cut -d'"' -f4)
    token=$(grep -o '"token":"tok_[0-9A-Za-z]*"' <<<"$body" | cut -d'"' -f4)
    echo "$(cat "$SC_DIR/$p.$i.s") ${code:--} ${token:--}"
  done
}
# judge LINES: every line "201 - TOKEN" with one token, or "409 idempotency_key_in_use -";
# at least one 201. Prints the token.
judge() {
  awk '$1 == 201 && $2 == "-" { t[$3] = 1; n201++; next }
       $1 == 409 && $2 == "idempotency_key_in_use" { next }
       { bad = 1 }
       END { k = 0; for (x in t) { k++; tok = x }
             if (bad || k != 1 || n201 < 1) exit 1; print tok }' <<<"$1"
}

conc_ok=1 conc_detail=""
for round in 1 2 3 4 5; do
  newkey "conc-$round" K
  mkbody B "$(luhn_pan 4000 $((200 + round)))" "5$round$round"
  before=$(ntokens)
  res=$(conc_round 20 "$K" "$B" "c$round")
  after=$(ntokens)
  if ! judge "$res" >/dev/null || [ "$after" != $((before + 1)) ]; then
    conc_ok=0
    conc_detail="round $round: $((after - before)) tokens; answers: $(sort <<<"$res" | uniq -c | tr '\n' ';')"
  fi
  [ "$round" = 1 ] && echo "# round 1: $(sort <<<"$res" | awk '{print $1, $2}' | uniq -c | tr '\n' ';')"
done
if [ "$conc_ok" = 1 ]; then
  ok "20 concurrent requests with one key x5 rounds: one token each, all 201 same token (or 409 in_use)"
else
  not_ok "20 concurrent requests with one key: $conc_detail"
fi
replays=0
for i in $(seq 0 19); do grep -qi '^Idempotent-Replayed: true' "$SC_DIR/c5.$i.h" && replays=$((replays + 1)); done
check "last round: 19 of 20 answers marked Idempotent-Replayed ($replays)" test "$replays" = 19

# Pairs of requests racing, many times.
race_ok=1 race_detail=""
before=$(ntokens)
for i in $(seq 1 30); do
  newkey "race-$i" K
  mkbody B "$(luhn_pan 5100 $((300 + i)))" "$((100 + i))"
  res=$(conc_round 2 "$K" "$B" "race")
  judge "$res" >/dev/null || { race_ok=0; race_detail="pair $i: $(tr '\n' ';' <<<"$res")"; }
done
after=$(ntokens)
check "30 racing pairs (A and B with one key): valid answers${race_detail:+ ($race_detail)}" test "$race_ok" = 1
check "30 racing pairs created exactly 30 tokens ($((after - before)))" test "$after" = $((before + 30))

# ---------------------------------------------------------------- in use
echo "# [${SECONDS}s] in use"
# Hold the first request in flight: a psql session locks the tokens table,
# so A claims its key and then blocks on its INSERT. B with the same key
# waits 5 s for A, then answers 409 idempotency_key_in_use.
newkey inuse K
amex=$(luhn_complete "37$(printf "%012d" $((RANDOM * 7)))")   # 15-digit Amex, 4-digit CVC
mkbody B "$amex" 7777 "GRACE HOPPER"
before=$(ntokens)
psql -X -q -d cardvault >/dev/null 2>&1 <<'SQL' &
BEGIN;
LOCK TABLE tokens IN EXCLUSIVE MODE;
SELECT pg_sleep(8);
COMMIT;
SQL
lockpid=$!
for _ in $(seq 1 50); do
  [ "$(q "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = 'tokens' AND l.mode = 'ExclusiveLock' AND l.granted")" -ge 1 ] && break
  sleep 0.1
done
post "$SC_DIR/ia" "$B" -H "Idempotency-Key: $K" &
apid=$!
# A has claimed the key once its token INSERT waits for the lock.
for _ in $(seq 1 60); do
  [ "$(q "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query ILIKE '%INSERT INTO tokens%'")" -ge 1 ] && break
  sleep 0.05
done
sleep 0.2
t0=$(date +%s%N)
post "$SC_DIR/ib" "$B" -H "Idempotency-Key: $K"
tb=$((($(date +%s%N) - t0) / 1000000))
wait "$apid"; wait "$lockpid"
sb=$(cat "$SC_DIR/ib.s"); cb=$(jq -r '.error.code // empty' "$SC_DIR/ib" 2>/dev/null)
sa=$(cat "$SC_DIR/ia.s"); ta=$(jq -r '.token // empty' "$SC_DIR/ia" 2>/dev/null)
echo "# in-use: B answered $sb $cb after ${tb} ms; A answered $sa"
check "second request while the first is held in flight: 409 idempotency_key_in_use" \
  test "$sb:$cb" = 409:idempotency_key_in_use
check "409 in_use has type idempotency_error" test "$(jq -r .error.type "$SC_DIR/ib" 2>/dev/null)" = idempotency_error
check "the held first request completes: 201" test "$sa" = 201 -a -n "$ta"
tok "$K" "$B"
check "after the first finished, the same key replays its token" test "$R_STATUS:$R_TOKEN:$R_REPLAYED" = "201:$ta:true"
check "held-in-flight scenario created exactly one token" test "$(ntokens)" = $((before + 1))

# ---------------------------------------------------------------- TTL and expiry
echo "# [${SECONDS}s] TTL and expiry"
ttl=$(q "SELECT round(extract(epoch FROM expires_at - created_at)) FROM idempotency_keys WHERE merchant_id = '$A_ID' ORDER BY created_at DESC LIMIT 1")
check "default record lifetime is 24 h (expires_at - created_at = $ttl s)" test "$ttl" = 86400

sc_stop; rc=$?
check "service stops with exit 0" test "$rc" = 0
out=$(CARDVAULT_IDEMPOTENCY_TTL_S=59 "$SC_BIN" serve 2>&1 >/dev/null); rc=$?
check "CARDVAULT_IDEMPOTENCY_TTL_S=59 refused (exit 1, names the variable)" \
  eval '[ "$rc" = 1 ] && grep -q CARDVAULT_IDEMPOTENCY_TTL_S <<<"$out"'
sc_start CARDVAULT_IDEMPOTENCY_TTL_S=60 || { echo "service did not restart"; tail -5 "$SC_SERVICE_LOG"; exit 1; }

newkey ttl K
mkbody B "$(luhn_pan 6011 7)" 808
tok "$K" "$B"; t_old=$R_TOKEN
check "TTL=60: first request 201" test "$R_STATUS" = 201
ttl=$(q "SELECT round(extract(epoch FROM expires_at - created_at)) FROM idempotency_keys WHERE merchant_id = '$A_ID' ORDER BY created_at DESC LIMIT 1")
check "CARDVAULT_IDEMPOTENCY_TTL_S=60: expires_at - created_at = 60 s (got $ttl)" test "$ttl" = 60
tok "$K" "$B"
check "TTL=60: replay before expiry" test "$R_STATUS:$R_TOKEN:$R_REPLAYED" = "201:$t_old:true"
q "UPDATE idempotency_keys SET expires_at = now() - interval '1 second'" >/dev/null
before=$(ntokens)
tok "$K" "$B"; t_new=$R_TOKEN
check "after expiry the same key and body create a new token (201, not replayed)" \
  test "$R_STATUS" = 201 -a -n "$t_new" -a "$t_new" != "$t_old" -a -z "$R_REPLAYED"
check "after expiry exactly one new token" test "$(ntokens)" = $((before + 1))
tok "$K" "$B"
check "the renewed key replays the new token" test "$R_STATUS:$R_TOKEN:$R_REPLAYED" = "201:$t_new:true"
mkbody Bx "$(luhn_pan 6011 8)" 809
tok "$K" "$Bx"
check "the renewed key refuses another body (409 reused)" test "$R_STATUS:$R_CODE" = 409:idempotency_key_reused

# ---------------------------------------------------------------- storage
echo "# [${SECONDS}s] storage"
# Distinct cards, CVCs, names and keys, including the 409 and 400 paths.
i=0
for prefix in 4929 5312 6011 3530 4485 5555; do
  i=$((i + 1))
  newkey "store-$i-$(openssl rand -hex 6)" K
  cvc=$(printf '%03d' $((RANDOM % 900 + 100)))
  mkbody B "$(luhn_pan $prefix $((90000 + RANDOM)))" "$cvc" "STORE HOLDER $i"
  tok "$K" "$B"
  [ "$R_STATUS" = 201 ] || not_ok "storage setup: tokenize $i answered $R_STATUS"
  mkbody B2 "$(luhn_pan $prefix $((80000 + RANDOM)))" "$(printf '%03d' $((RANDOM % 900 + 100)))"
  tok "$K" "$B2"   # 409 reused: its PAN and CVC must not be stored either
done
# One left in_progress-free path: a key whose first request failed validation.
newkey "store-bad" K
mkbody B "$(bad_luhn "$(luhn_pan 4532 777)")" 919
tok "$K" "$B"

dump_dir="$SC_DIR/dump"; mkdir -p "$dump_dir"
pg_dump -d cardvault --data-only -t idempotency_keys >"$dump_dir/idem.sql" 2>"$dump_dir/err"
pg_dump -d cardvault >"$dump_dir/all.sql" 2>>"$dump_dir/err"
psql -X -At -d cardvault -c "COPY (SELECT encode(key_hash, 'base64'), encode(request_hash, 'base64'), response_body FROM idempotency_keys) TO STDOUT" \
  >"$dump_dir/idem.b64" 2>>"$dump_dir/err"
nrows=$(q "SELECT count(*) FROM idempotency_keys")
check "pg_dump of idempotency_keys ($nrows rows) and of the database succeeded" \
  test -s "$dump_dir/idem.sql" -a -s "$dump_dir/all.sql" -a "$nrows" -ge 40 -a ! -s "$dump_dir/err"

hex() { printf '%s' "$1" | xxd -p | tr -d '\n'; echo; }
# patterns_for_pan PAN: plain, spaced and hyphenated in groups of 4, hex of the digits.
pan_forms() {
  local p=$1
  echo "$p"
  echo "$p" | sed -E 's/(....)/\1 /g; s/ $//'
  echo "$p" | sed -E 's/(....)/\1-/g; s/-$//'
  hex "$p"
}
cvc_forms() { printf '"cvc":"%s"\n"cvc": "%s"\n"cvc":%s\n' "$1" "$1" "$1"; hex "\"cvc\":\"$1\""; }
key_forms() {
  printf '%s\n' "$1"
  hex "$1"
  printf '%s' "$1" | base64 -w0; echo
  printf '%s' "$1" | sha256sum | cut -c1-64     # an unkeyed hash would be guessable
  printf '%s' "$1" | openssl dgst -sha256 -binary | base64 -w0; echo
}
# search FILE...: every form of every sent value, counted per kind; prints "pans cvcs names keys".
pf="$SC_DIR/pat.p" cf="$SC_DIR/pat.c" nf="$SC_DIR/pat.n" kf="$SC_DIR/pat.k"
build_patterns() { # once: the forms of every value sent so far
  local v
  for v in "${SENT_PANS[@]}"; do pan_forms "$v"; done >"$pf"
  for v in "${SENT_CVCS[@]}"; do cvc_forms "$v"; done >"$cf"
  printf '%s\n' "${SENT_NAMES[@]}" >"$nf"
  for v in "${SENT_KEYS[@]}"; do key_forms "$v"; done >"$kf"
}
search() {
  local np nc nn nk
  np=$(cat "$@" | grep -Fio -f "$pf" | sort -u | wc -l)
  nc=$(cat "$@" | grep -Fio -f "$cf" | sort -u | wc -l)
  nn=$(cat "$@" | grep -Fio -f "$nf" | sort -u | wc -l)
  nk=$(cat "$@" | grep -Fo -f "$kf" | sort -u | wc -l)
  echo "$np $nc $nn $nk"
}
build_patterns
echo "# searching ${#SENT_PANS[@]} PANs, ${#SENT_CVCS[@]} CVCs, ${#SENT_NAMES[@]} names, ${#SENT_KEYS[@]} keys"
r=$(search "$dump_dir/idem.sql" "$dump_dir/idem.b64")
check "idempotency_keys dump: no PAN, CVC, name or key (found: pans cvcs names keys = $r)" test "$r" = "0 0 0 0"
r=$(search "$dump_dir/all.sql")
check "whole-database dump: no PAN, CVC, name or key (found: $r)" test "$r" = "0 0 0 0"
bad=$(q "SELECT count(*) FROM idempotency_keys WHERE response_body ~ '\"(pan|cvc|cardholder_name)\"'")
check "no stored response body carries pan, cvc or cardholder_name" test "$bad" = 0
bad=$(q "SELECT count(*) FROM idempotency_keys WHERE length(key_hash) <> 32 OR length(request_hash) <> 32")
check "key_hash and request_hash are 32-byte digests" test "$bad" = 0

# Positive control: the same search finds planted values in a copy of the dump.
cp "$dump_dir/all.sql" "$dump_dir/planted.sql"
sp=${SENT_PANS[3]}
printf '%s\n' "x $(echo "$sp" | sed -E 's/(....)/\1 /g; s/ $//') x" \
  "{\"cvc\":\"${SENT_CVCS[3]}\"}" "${SENT_NAMES[0]}" "key=${SENT_KEYS[2]}" >>"$dump_dir/planted.sql"
r=$(search "$dump_dir/planted.sql")
check "positive control: planted PAN (spaced), CVC, name and key are found ($r)" test "$r" = "1 1 1 1"

# ---------------------------------------------------------------- purge
echo "# [${SECONDS}s] purge"
# Purge: expired records are deleted by the service's housekeeping thread,
# which runs at start and then once a minute; a restart makes it run now.
q "UPDATE idempotency_keys SET expires_at = now() - interval '1 second'" >/dev/null
expired0=$(q "SELECT count(*) FROM idempotency_keys WHERE expires_at < now()")
live=$(q "SELECT count(*) FROM idempotency_keys WHERE merchant_id = '$B_ID'")
q "UPDATE idempotency_keys SET expires_at = now() + interval '1 hour' WHERE merchant_id = '$B_ID'" >/dev/null
sc_stop; rc=$?
check "service stops with exit 0 (TTL=60 run)" test "$rc" = 0
sc_start CARDVAULT_IDEMPOTENCY_TTL_S=60 || { echo "service did not restart"; tail -5 "$SC_SERVICE_LOG"; exit 1; }
for _ in $(seq 1 50); do
  [ "$(q "SELECT count(*) FROM idempotency_keys WHERE expires_at < now()")" = 0 ] && break
  sleep 0.1
done
expired=$(q "SELECT count(*) FROM idempotency_keys WHERE expires_at < now()")
check "expired idempotency records are purged ($((expired0 - live)) expired -> $expired left)" test "$expired" = 0
check "unexpired records are kept by the purge ($live of merchant B)" \
  test "$(q "SELECT count(*) FROM idempotency_keys WHERE merchant_id = '$B_ID'")" = "$live" -a "$live" -ge 1
check "the purge is logged (idempotency_purged)" \
  eval "jq -R -c 'fromjson? | select(.event == \"idempotency_purged\")' '$SC_SERVICE_LOG' | grep -q ."

# The service log holds no PAN or CVC either.
r=$(search "$SC_SERVICE_LOG")
check "service log: no PAN, CVC or name (found: $r)" eval '[ "${r% *}" = "0 0 0" ]'
[ "${r##* }" = 0 ] || echo "# note: raw Idempotency-Key values appear in the service log (${r##* })"

sc_stop; rc=$?
check "service stops with exit 0 at the end" test "$rc" = 0
sc_finish idempotency
