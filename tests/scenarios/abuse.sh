#!/usr/bin/env bash
# Tampering, brute force and injection.
#
#   tests/scenarios/abuse.sh build/release/cardvault
#
# 1. Tampering, straight in SQL on the tokens table: ciphertexts swapped
#    between two rows of one merchant (ciphertext alone, and nonce with
#    ciphertext), a sealed blob copied and swapped across merchants, a
#    ciphertext truncated (by one byte, below the tag, to nothing), extended,
#    its tag flipped, a nonce byte changed, a row moved to another merchant,
#    its dek_id pointed at another DEK, its format_version changed, two token
#    values swapped. Every read and detokenize of an affected row answers 500
#    internal_error with no card data (never 200, never another card's PAN),
#    is logged as integrity_error naming the token, counted in
#    cardvault_errors_total{code="integrity_error"}, and the detokenize is
#    audited with outcome integrity_error; untouched rows still open.
# 2. Brute force: with CARDVAULT_RATE_LIMIT_RPS=5, a valid key guessing
#    tokens (GET and detokenize) is throttled per key (429 rate_limited with
#    Retry-After) while another merchant's key is not; with
#    CARDVAULT_AUTH_FAILURES_PER_MIN=5, guessing keys is throttled per client
#    address (429 after 5 failures) while a valid key, from that address or
#    another, is served; every
#    401 is counted in cardvault_auth_failures_total; neither the service
#    log nor the PostgreSQL log ever holds an attempted key.
# 3. Injection: SQL and JSON metacharacters (' " ; -- \ %00 {} /* */ $1 $$ NUL
#    ...) in every string field of tokenize (pan, cvc, cardholder_name, a
#    field name), in Idempotency-Key, Authorization and in token path
#    segments of every route: no 500, no 503, no SQL error text in any
#    response, the service log or the PostgreSQL log, row counts change by
#    exactly the tokens that were accepted, and cardholder names with quotes
#    and backslashes come back byte for byte through detokenize.
# 4. Card testing: with CARDVAULT_TOKENIZE_QUOTA_PER_HOUR_PUBLISHABLE=5 a
#    publishable key's 6th tokenize is 429 tokenize_quota_exceeded with
#    Retry-After while the merchant's secret key still tokenizes, and an
#    Origin's quota spans keys; 30 cards with one BIN and last 4 and
#    different middle digits through a publishable key are flagged at the
#    10th (cardvault_card_testing_suspected_total, one WARN
#    card_testing_suspected line with key prefix, merchant, BIN, last 4,
#    count) and the rest refused; no PAN sent, nor its middle digits, is in
#    the log.
# Ends with "abuse: N passed, N failed", appends "P F" to build/test-results.
SUITE=abuse
. "$(dirname "$0")/../lib/scenario.sh"
cd "$SC_ROOT" || exit 2
sc_pin_binary
require_tools jq curl psql

rand62() { LC_ALL=C tr -dc 'A-Za-z0-9' </dev/urandom | head -c "$1"; }
# err: the error code of the last answer (no subprocess: hundreds of calls)
err() { if [[ "$R_BODY" =~ \"code\":\"([a-z_]+)\" ]]; then echo "${BASH_REMATCH[1]}"; else echo -; fi; }
metric() { curl -s "$SC_OPS_URL/metrics" | awk -v k="$1" '$1 == k { print $2; f = 1 } END { if (!f) print 0 }'; }
retry_after() { tr -d '\r' <"$SC_DIR/r.h" | awk -F': ' 'tolower($1) == "retry-after" { print $2 }'; }
sanitizer_clean() { ! grep -qE "AddressSanitizer|LeakSanitizer|runtime error:" "$SC_SERVICE_LOG"; }

sc_setup
sc_merchant "abuse A" || { not_ok "merchant A"; sc_finish abuse; }
A_ID=$M_ID A_PK=$M_PK A_SK=$M_SK A_DK=$M_DK
sc_merchant "abuse B" || { not_ok "merchant B"; sc_finish abuse; }
B_ID=$M_ID B_PK=$M_PK B_SK=$M_SK B_DK=$M_DK
sc_start CARDVAULT_AUTH_FAILURES_PER_MIN=0 || { not_ok "service starts"; sc_finish abuse; }
ok "service starts"
echo "# cardvault $SC_BIN_ORIG, listen $SC_URL, tmp $SC_DIR"

# ------------------------------------------------------------ 1. tampering
declare -A PAN_OF NAME_OF
ALL_PANS=()
# mk KEY N: tokenizes card N (PAN, name), sets T
mk() {
  local pan name body
  pan=$(luhn_pan 4242 "$2")
  name="Card Holder $2"
  body=$(jq -cn --arg p "$pan" --arg n "$name" '{pan: $p, exp_month: 11, exp_year: 2032, cardholder_name: $n}')
  req POST /v1/tokens "$1" "$body"
  T=$(jq -r .token <<<"$R_BODY")
  PAN_OF[$T]=$pan
  NAME_OF[$T]=$name
  ALL_PANS+=("$pan")
  [ "$R_STATUS" = 201 ]
}
A_TOK=()
for i in $(seq 1 20); do mk "$A_PK" "$i" && A_TOK+=("$T") || not_ok "tokenize A card $i"; done
B_TOK=()
for i in $(seq 21 24); do mk "$B_PK" "$i" && B_TOK+=("$T") || not_ok "tokenize B card $i"; done
check "20 tokens for A, 4 for B" test "${#A_TOK[@]}/${#B_TOK[@]}" = 20/4
"$SC_BIN" keys rotate-dek >"$SC_DIR/rotate.out" 2>&1
check "a second DEK exists (keys rotate-dek)" test "$(q 'SELECT count(*) FROM data_keys')" -ge 2
OTHER_DEK=$(q "SELECT max(dek_id) FROM data_keys")

a() { echo "${A_TOK[$1]}"; }
b() { echo "${B_TOK[$1]}"; }
row() { echo "merchant_id = '$1' AND token = '$2'"; }
# swap COLUMNS between two rows (merchant, token) x 2, in one statement
swap() { # swap "col1,col2" M1 T1 M2 T2
  local set="" c
  for c in ${1//,/ }; do set+="${set:+, }$c = o.$c"; done
  q "UPDATE tokens t SET $set FROM tokens o
     WHERE (t.merchant_id, t.token, o.merchant_id, o.token) IN (('$2', '$3', '$4', '$5'), ('$4', '$5', '$2', '$3'))" >/dev/null
}
# Each case: a description, the SQL that tampers, then the (merchant key
# pairs, token) reads that must be refused.
declare -a VICTIMS=() # "SK DK TOKEN what"
tamper() { # tamper WHAT SK DK TOKEN...
  local what=$1 sk=$2 dk=$3 t
  shift 3
  for t in "$@"; do VICTIMS+=("$sk $dk $t $what"); done
}
swap ciphertext "$A_ID" "$(a 0)" "$A_ID" "$(a 1)"
tamper "ciphertexts swapped (same merchant)" "$A_SK" "$A_DK" "$(a 0)" "$(a 1)"
swap nonce,ciphertext "$A_ID" "$(a 2)" "$A_ID" "$(a 3)"
tamper "nonce+ciphertext swapped (same merchant)" "$A_SK" "$A_DK" "$(a 2)" "$(a 3)"
swap nonce,ciphertext,dek_id "$A_ID" "$(a 4)" "$B_ID" "$(b 0)"
tamper "sealed blobs swapped across merchants (A side)" "$A_SK" "$A_DK" "$(a 4)"
tamper "sealed blobs swapped across merchants (B side)" "$B_SK" "$B_DK" "$(b 0)"
q "UPDATE tokens t SET nonce = o.nonce, ciphertext = o.ciphertext, dek_id = o.dek_id FROM tokens o
   WHERE $(row "$A_ID" "$(a 5)" | sed 's/merchant_id/t.merchant_id/; s/token =/t.token =/') AND o.merchant_id = '$B_ID' AND o.token = '$(b 1)'" >/dev/null
tamper "B's sealed blob copied onto an A row" "$A_SK" "$A_DK" "$(a 5)"
q "UPDATE tokens SET ciphertext = substring(ciphertext FROM 1 FOR length(ciphertext) - 1) WHERE $(row "$A_ID" "$(a 6)")" >/dev/null
tamper "ciphertext truncated by one byte" "$A_SK" "$A_DK" "$(a 6)"
q "UPDATE tokens SET ciphertext = substring(ciphertext FROM 1 FOR 8) WHERE $(row "$A_ID" "$(a 7)")" >/dev/null
tamper "ciphertext truncated below the tag (8 bytes)" "$A_SK" "$A_DK" "$(a 7)"
q "UPDATE tokens SET ciphertext = ''::bytea WHERE $(row "$A_ID" "$(a 8)")" >/dev/null
tamper "ciphertext emptied" "$A_SK" "$A_DK" "$(a 8)"
q "UPDATE tokens SET ciphertext = ciphertext || '\\x00'::bytea WHERE $(row "$A_ID" "$(a 9)")" >/dev/null
tamper "ciphertext extended by a byte" "$A_SK" "$A_DK" "$(a 9)"
q "UPDATE tokens SET ciphertext = set_byte(ciphertext, length(ciphertext) - 1, get_byte(ciphertext, length(ciphertext) - 1) # 1) WHERE $(row "$A_ID" "$(a 10)")" >/dev/null
tamper "tag bit flipped" "$A_SK" "$A_DK" "$(a 10)"
q "UPDATE tokens SET ciphertext = set_byte(ciphertext, 0, get_byte(ciphertext, 0) # 128) WHERE $(row "$A_ID" "$(a 11)")" >/dev/null
tamper "first ciphertext bit flipped" "$A_SK" "$A_DK" "$(a 11)"
q "UPDATE tokens SET nonce = set_byte(nonce, 5, get_byte(nonce, 5) # 1) WHERE $(row "$A_ID" "$(a 12)")" >/dev/null
tamper "nonce byte modified" "$A_SK" "$A_DK" "$(a 12)"
q "UPDATE tokens SET merchant_id = '$B_ID' WHERE $(row "$A_ID" "$(a 13)")" >/dev/null
tamper "row moved to another merchant (read by the new owner)" "$B_SK" "$B_DK" "$(a 13)"
q "UPDATE tokens SET dek_id = $OTHER_DEK WHERE $(row "$A_ID" "$(a 14)")" >/dev/null
tamper "dek_id changed to another DEK" "$A_SK" "$A_DK" "$(a 14)"
q "UPDATE tokens SET format_version = format_version + 1 WHERE $(row "$A_ID" "$(a 15)")" >/dev/null
tamper "format_version changed" "$A_SK" "$A_DK" "$(a 15)"
tmp_tok="tok_$(rand62 22)" # unique keys are checked row by row: swap through a third value
q "BEGIN; UPDATE tokens SET token = '$tmp_tok' WHERE $(row "$A_ID" "$(a 16)");
   UPDATE tokens SET token = '$(a 16)' WHERE $(row "$A_ID" "$(a 17)");
   UPDATE tokens SET token = '$(a 17)' WHERE $(row "$A_ID" "$tmp_tok"); COMMIT" >/dev/null
tamper "token values swapped between rows" "$A_SK" "$A_DK" "$(a 16)" "$(a 17)"

integrity_before=$(metric 'cardvault_errors_total{code="integrity_error"}')
leaks=0
refused=0
n_reads=0
for v in "${VICTIMS[@]}"; do
  read -r sk dk tok what <<<"$v"
  res=""
  for route in read detokenize; do
    if [ "$route" = read ]; then req GET "/v1/tokens/$tok" "$sk"; else req POST "/v1/tokens/$tok/detokenize" "$dk" '{}'; fi
    n_reads=$((n_reads + 1))
    res+="$route $R_STATUS $(jq -r '.error.code // "DATA"' <<<"$R_BODY" 2>/dev/null); "
    [ "$R_STATUS:$(jq -r .error.code <<<"$R_BODY" 2>/dev/null)" = "500:internal_error" ] && refused=$((refused + 1))
    for p in "${ALL_PANS[@]}"; do
      if grep -qF "$p" "$SC_DIR/r.body"; then leaks=$((leaks + 1)); echo "#   LEAK: $what: $route answered a PAN"; fi
    done
    grep -q '"pan"\|"cardholder_name"\|Card Holder' "$SC_DIR/r.body" && leaks=$((leaks + 1))
  done
  logged=$(grep '"event":"integrity_error"' "$SC_SERVICE_LOG" | grep -c "\"token\":\"$tok\"")
  audited=$(q "SELECT count(*) FROM audit_events WHERE token = '$tok' AND action = 'token.detokenize' AND outcome = 'integrity_error'")
  check "tampered: $what: $res logged $logged, audited $audited" \
    eval 'grep -q "^read 500 internal_error; detokenize 500 internal_error; $" <<<"$res" && [ "$logged" -ge 2 ] && [ "$audited" -ge 1 ]'
done
check "no tampered row answered card data ($leaks leaks)" test "$leaks" -eq 0
check "all $n_reads reads of tampered rows refused with 500 internal_error" test "$refused" -eq "$n_reads"
integrity_after=$(metric 'cardvault_errors_total{code="integrity_error"}')
check "cardvault_errors_total{code=\"integrity_error\"} counted them ($integrity_before -> $integrity_after)" \
  test $((integrity_after - integrity_before)) -ge "$n_reads"
# The moved row is simply gone for its old merchant.
req GET "/v1/tokens/$(a 13)" "$A_SK"
check "moved row: 404 for its old merchant" test "$R_STATUS" = 404
# Untouched rows still open, to their own card.
for i in 18 19; do
  t=$(a $i)
  req POST "/v1/tokens/$t/detokenize" "$A_DK" '{}'
  check "untouched A row $i still detokenizes to its card" \
    test "$R_STATUS $(jq -r '.pan + "/" + .cardholder_name' <<<"$R_BODY")" = "200 ${PAN_OF[$t]}/${NAME_OF[$t]}"
done
t=$(b 2)
req POST "/v1/tokens/$t/detokenize" "$B_DK" '{}'
check "untouched B row still detokenizes to its card" test "$R_STATUS $(jq -r .pan <<<"$R_BODY")" = "200 ${PAN_OF[$t]}"
check "no sanitizer report after the tampered reads" sanitizer_clean

# ---------------------------------------------------------- 2. brute force
sc_stop
sc_start CARDVAULT_RATE_LIMIT_RPS=5 CARDVAULT_AUTH_FAILURES_PER_MIN=5 || { not_ok "service restarts with limits"; sc_finish abuse; }
ok "service restarts with CARDVAULT_RATE_LIMIT_RPS=5 CARDVAULT_AUTH_FAILURES_PER_MIN=5"
# guess KEY ROUTE N: N random-token guesses; counts in G_404 G_429 G_BAD_RA G_OTHER
guess() {
  local key=$1 route=$2 n=$3 i tok ra
  G_404=0 G_429=0 G_BAD_RA=0 G_OTHER=0
  local t0
  t0=$(date +%s%N)
  for i in $(seq 1 "$n"); do
    tok="tok_$(rand62 22)"
    if [ "$route" = read ]; then req GET "/v1/tokens/$tok" "$key"; else req POST "/v1/tokens/$tok/detokenize" "$key" '{}'; fi
    case $R_STATUS in
      404) G_404=$((G_404 + 1)) ;;
      429)
        G_429=$((G_429 + 1))
        ra=$(retry_after)
        { [[ "$ra" =~ ^[0-9]+$ ]] && [ "$ra" -ge 1 ] && [ "$(err)" = rate_limited ]; } ||
          G_BAD_RA=$((G_BAD_RA + 1))
        ;;
      *) G_OTHER=$((G_OTHER + 1)) ;;
    esac
  done
  # what the bucket may let through: its burst (2 x 5) plus 5 per second elapsed, plus one
  G_ALLOWED=$((10 + ($(date +%s%N) - t0) * 5 / 1000000000 + 1))
}
guess "$A_DK" detokenize 40
echo "# token guessing, A's detokenize key, 40 guesses: $G_404 x 404 (bucket allows $G_ALLOWED in that time), $G_429 x 429, $G_OTHER other"
check "token guessing with a valid key is throttled per key (429 beyond burst + 5/s)" \
  eval '[ "$G_429" -ge 10 ] && [ "$G_404" -le "$G_ALLOWED" ] && [ "$G_OTHER" -eq 0 ]'
check "each 429 is rate_limited with a Retry-After" test "$G_BAD_RA" -eq 0
guess "$B_DK" detokenize 5
check "another merchant's key is not throttled meanwhile (5 x 404)" test "$G_404" -eq 5
guess "$A_SK" read 40
echo "# token guessing, A's secret key (GET), 40 guesses: $G_404 x 404 (bucket allows $G_ALLOWED), $G_429 x 429, $G_OTHER other"
check "token guessing by GET is throttled per key too" \
  eval '[ "$G_429" -ge 10 ] && [ "$G_404" -le "$G_ALLOWED" ] && [ "$G_OTHER" -eq 0 ]'

sleep 1
fail_before=$(metric cardvault_auth_failures_total)
ATTEMPTS=()
k401=0
k429=0
bad_ra=0
for i in $(seq 1 15); do
  case $((i % 3)) in
    0) key="sk_$(rand62 43)" ;;
    1) key="dk_$(rand62 43)" ;;
    2) key="pk_$(rand62 43)" ;;
  esac
  ATTEMPTS+=("$key")
  req GET "/v1/tokens/$(a 18)" "$key"
  case $R_STATUS in
    401) k401=$((k401 + 1)) ;;
    429) k429=$((k429 + 1)); [[ "$(retry_after)" =~ ^[0-9]+$ ]] || bad_ra=$((bad_ra + 1)) ;;
  esac
done
# variants: a revoked-looking prefix, a key in another header form, a key in the query string
ATTEMPTS+=("sk_$(rand62 43)")
req GET "/v1/tokens/$(a 18)?api_key=${ATTEMPTS[-1]}" "" "" --interface 127.0.0.3
check "a key in the query string is refused (400 api_key_in_query)" \
  test "$R_STATUS:$(err)" = "400:api_key_in_query"
echo "# key guessing from 127.0.0.1, 15 random keys: $k401 x 401, then $k429 x 429"
check "key guessing is throttled per client address (5 x 401, then 429)" test "$k401:$k429" = "5:10"
check "each key-guessing 429 carries Retry-After" test "$bad_ra" -eq 0
req GET "/v1/tokens/$(a 18)" "$A_SK"
echo "# a valid key from the throttled address now: $R_STATUS"
check "a valid key from the throttled address is still served (failures only are throttled)" \
  test "$R_STATUS" = 200
req GET "/v1/tokens/$(a 18)" "$A_SK" "" --interface 127.0.0.2
check "a valid key from another address is served (200)" test "$R_STATUS" = 200
fail_after=$(metric cardvault_auth_failures_total)
check "cardvault_auth_failures_total counted the $k401 failures ($fail_before -> $fail_after)" \
  test $((fail_after - fail_before)) -eq "$k401"
check "auth failures are logged (auth_failed events)" \
  test "$(grep -c '"event":"auth_failed"' "$SC_SERVICE_LOG")" -ge "$k401"
found=0
for k in "${ATTEMPTS[@]}"; do
  grep -qF -e "$k" -e "${k:3}" "$SC_SERVICE_LOG" "$SC_PGLOG" && found=$((found + 1))
  grep -qF -e "${k:0:12}" "$SC_SERVICE_LOG" && found=$((found + 1))
done
check "no attempted key (nor its secret part, nor its prefix) in the service or PostgreSQL log" test "$found" -eq 0

# ----------------------------------------------------------- 3. injection
sc_stop
sc_start CARDVAULT_AUTH_FAILURES_PER_MIN=0 || { not_ok "service restarts"; sc_finish abuse; }
ok "service restarts without limits"
pglog_lines=$(wc -l <"$SC_PGLOG")
svclog_lines=$(wc -l <"$SC_SERVICE_LOG")
counts() { q "SELECT (SELECT count(*) FROM tokens) || ' ' || (SELECT count(*) FROM merchants) || ' ' ||
                     (SELECT count(*) FROM api_keys) || ' ' || (SELECT count(*) FROM idempotency_keys) || ' ' ||
                     (SELECT count(*) FROM data_keys)"; }
read -r tok0 mer0 keys0 idem0 dek0 < <(counts)
PAYLOADS=(
  "'" '"' ';' '--' '\' '%00' '{}' '}{' '/*' '*/' '$1' '$$' '`' '%27%22'
  "' OR '1'='1" "'; DROP TABLE tokens; --" '"); DELETE FROM tokens; --' "\\'; SELECT pg_sleep(5); --"
  '{"$gt":""}' '\u0000' '\x00' "O'Brien; --" 'a%00b' '${jndi:x}' "')) OR 1=1 /*"
)
BAD=() # every response that was a 5xx or carried database error text
SQLERR_RE='syntax error|error:|sqlstate|postgres|relation "|pq_|libpq'
record() { # record LABEL: after a req
  local lower=${R_BODY,,}
  if [[ "$R_STATUS" =~ ^5 ]] || [[ "$lower" =~ $SQLERR_RE ]]; then
    BAD+=("$1 -> $R_STATUS $(head -c 160 "$SC_DIR/r.body")")
  fi
}
n_req=0
# String fields of tokenize that must be rejected: pan and cvc; field names.
for p in "${PAYLOADS[@]}"; do
  for field in pan cvc; do
    if [ "$field" = pan ]; then
      body=$(jq -cn --arg v "$p" '{pan: $v, exp_month: 11, exp_year: 2032}')
      want=invalid_pan
    else
      body=$(jq -cn --arg v "$p" --arg pan "$(luhn_pan 4242 100)" '{pan: $pan, exp_month: 11, exp_year: 2032, cvc: $v}')
      want=invalid_cvc
    fi
    req POST /v1/tokens "$A_PK" "$body"
    n_req=$((n_req + 1))
    record "$field=$p"
    [ "$R_STATUS:$(err)" = "400:$want" ] || BAD+=("$field=$p -> $R_STATUS $R_BODY (want 400 $want)")
    # the same value spliced raw into the JSON text (may make it invalid JSON)
    body="{\"$field\":\"$p\",\"exp_month\":11,\"exp_year\":2032}"
    req POST /v1/tokens "$A_PK" "$body"
    n_req=$((n_req + 1))
    record "raw $field=$p"
    [[ "$R_STATUS" =~ ^4 ]] || BAD+=("raw $field=$p -> $R_STATUS (want 4xx)")
  done
  body=$(jq -cn --arg k "$p" --arg pan "$(luhn_pan 4242 101)" '{pan: $pan, exp_month: 11, exp_year: 2032} + {($k): "x"}')
  req POST /v1/tokens "$A_PK" "$body"
  n_req=$((n_req + 1))
  record "field name $p"
  [ "$R_STATUS" = 400 ] || BAD+=("field name $p -> $R_STATUS (want 400)")
  body=$(jq -cn --arg v "$p" --arg pan "$(luhn_pan 4242 102)" '{pan: $pan, exp_month: $v, exp_year: 2032}')
  req POST /v1/tokens "$A_PK" "$body"
  n_req=$((n_req + 1))
  record "exp_month=$p"
  [ "$R_STATUS:$(err)" = "400:invalid_type" ] || BAD+=("exp_month=$p -> $R_STATUS (want 400 invalid_type)")
done
check "rejected string fields: no token row added" test "$(q 'SELECT count(*) FROM tokens')" = "$tok0"

# Names with metacharacters are valid names: stored, and back byte for byte.
NAMES=(
  "O'Brien" "Robert'); DROP TABLE tokens;--" '"Quoted" Name' 'Back\slash \\ Name' 'semi;colon -- dash'
  '100% {json} [x]' "x' OR '1'='1" '$1 $$ dollar' '/* not a comment */' 'Zoë «Ünïcödé» 测试' 'a%00b %27'
  'tab	inside' "it's \"both\"" '\u0000 literal backslash-u' '{"pan":"4111111111111111"}'
)
accepted=0
roundtrip_bad=()
for i in "${!NAMES[@]}"; do
  name=${NAMES[$i]}
  body=$(jq -cn --arg n "$name" --arg pan "$(luhn_pan 4243 "$i")" '{pan: $pan, exp_month: 11, exp_year: 2032, cardholder_name: $n}')
  req POST /v1/tokens "$A_PK" "$body"
  n_req=$((n_req + 1))
  record "cardholder_name=$name"
  if [ "$R_STATUS" = 201 ]; then
    accepted=$((accepted + 1))
    t=$(jq -r .token <<<"$R_BODY")
    req POST "/v1/tokens/$t/detokenize" "$A_DK" '{}'
    n_req=$((n_req + 1))
    record "detokenize name $name"
    [ "$(jq -j .cardholder_name <<<"$R_BODY")" = "$name" ] || roundtrip_bad+=("$name -> $(jq -c .cardholder_name <<<"$R_BODY")")
  else
    echo "#   cardholder_name $(jq -cn --arg n "$name" '$n') refused: $R_STATUS $(err)"
  fi
done
echo "# cardholder names with metacharacters: $accepted of ${#NAMES[@]} accepted"
check "names with quotes, backslashes and SQL are accepted" test "$accepted" -ge 12
check "every accepted name round-trips byte for byte through detokenize" test "${#roundtrip_bad[@]}" -eq 0
for x in "${roundtrip_bad[@]:0:5}"; do echo "#   $x"; done
# A real control character in a name (JSON \u0000, \u001b) is refused, not stored.
for esc in '\u0000' '\u001b[31m' '\n'; do
  req POST /v1/tokens "$A_PK" "{\"pan\":\"$(luhn_pan 4243 90)\",\"exp_month\":11,\"exp_year\":2032,\"cardholder_name\":\"A${esc}B\"}"
  n_req=$((n_req + 1))
  record "name with $esc"
  # (jansson refuses \u0000 in any string: invalid_json is as good a refusal)
  [[ "$R_STATUS:$(err)" =~ ^400:(invalid_name|invalid_json)$ ]] ||
    BAD+=("name with $esc -> $R_STATUS $R_BODY (want 400 invalid_name)")
done

# Idempotency-Key: printable metacharacters are a valid key (201, then the
# same answer replayed); the rest is refused with 400.
idem_ok=0
idem_replay_bad=0
for i in "${!PAYLOADS[@]}"; do
  p=${PAYLOADS[$i]}
  body=$(jq -cn --arg pan "$(luhn_pan 4244 "$i")" '{pan: $pan, exp_month: 11, exp_year: 2032}')
  req POST /v1/tokens "$A_SK" "$body" -H "Idempotency-Key: $p"
  n_req=$((n_req + 1))
  record "Idempotency-Key $p"
  if [ "$R_STATUS" = 201 ]; then
    idem_ok=$((idem_ok + 1))
    first=$(jq -r .token <<<"$R_BODY")
    req POST /v1/tokens "$A_SK" "$body" -H "Idempotency-Key: $p"
    n_req=$((n_req + 1))
    record "Idempotency-Key replay $p"
    [ "$R_STATUS $(jq -r .token <<<"$R_BODY")" = "201 $first" ] || idem_replay_bad=$((idem_replay_bad + 1))
  elif [ "$R_STATUS:$(err)" != "400:invalid_idempotency_key" ]; then
    BAD+=("Idempotency-Key $p -> $R_STATUS $R_BODY")
  fi
done
echo "# Idempotency-Key with metacharacters: $idem_ok of ${#PAYLOADS[@]} used as keys, the rest refused with 400"
check "metacharacter Idempotency-Keys work as keys and replay the same token" \
  eval '[ "$idem_ok" -ge 20 ] && [ "$idem_replay_bad" -eq 0 ]'

# Authorization: metacharacters in the scheme and the key: 401, never more.
auth_bad=0
for p in "${PAYLOADS[@]}"; do
  for h in "Bearer $p" "Bearer sk_$p" "$p" "Bearer ${A_SK}$p" "Bearer $p${A_SK}"; do
    req GET "/v1/tokens/$(a 18)" "" "" -H "Authorization: $h"
    n_req=$((n_req + 1))
    record "Authorization: $h"
    [ "$R_STATUS" = 401 ] || { auth_bad=$((auth_bad + 1)); echo "#   Authorization: $h -> $R_STATUS"; }
  done
done
check "metacharacter Authorization headers all answer 401" test "$auth_bad" -eq 0

# Path segments: every token route with metacharacters in the token.
path_bad=0
for p in "${PAYLOADS[@]}" "tok_'%20OR%20'1'='1" "tok_%27%3B%20DROP%20TABLE%20tokens%3B--" "tok_%00" \
  "..%2F..%2Fmetrics" "tok_$(rand62 22)%27" "%2e%2e" "tok_$(rand62 22);" "tok_$(rand62 21)%C0%AE"; do
  enc=$(jq -rn --arg v "$p" '$v | @uri')
  raw=${p// /%20} # as raw as a request line can be: only space, # and ? escaped
  raw=${raw//#/%23}
  raw=${raw//\?/%3F}
  for seg in "$enc" "$raw"; do
    for route in read delete detokenize; do
      case $route in
        read) req GET "/v1/tokens/$seg" "$A_SK" "" --path-as-is -g ;;
        delete) req DELETE "/v1/tokens/$seg" "$A_SK" "" --path-as-is -g ;;
        detokenize) req POST "/v1/tokens/$seg/detokenize" "$A_DK" '{}' --path-as-is -g ;;
      esac
      n_req=$((n_req + 1))
      record "$route /v1/tokens/$seg"
      [[ "$R_STATUS" =~ ^(400|404|405)$ ]] || { path_bad=$((path_bad + 1)); echo "#   $route /v1/tokens/$seg -> $R_STATUS"; }
    done
  done
done
check "metacharacter path segments answer 400/404/405 on every route" test "$path_bad" -eq 0

read -r tok1 mer1 keys1 idem1 dek1 < <(counts)
echo "# $n_req injection requests; rows before: tokens $tok0, merchants $mer0, api_keys $keys0, idempotency_keys $idem0, data_keys $dek0; after: $tok1 $mer1 $keys1 $idem1 $dek1"
check "no 5xx and no database error text in any of the $n_req responses" test "${#BAD[@]}" -eq 0
for x in "${BAD[@]:0:8}"; do echo "#   $x"; done
check "tokens grew by exactly the accepted names and idempotent requests ($tok0 + $accepted + $idem_ok)" \
  test "$tok1" -eq $((tok0 + accepted + idem_ok))
check "idempotency records grew by exactly the keys used ($idem0 + $idem_ok)" test "$idem1" -eq $((idem0 + idem_ok))
check "merchants, api_keys and data_keys unchanged" test "$mer1 $keys1 $dek1" = "$mer0 $keys0 $dek0"
new_svc=$(tail -n +"$((svclog_lines + 1))" "$SC_SERVICE_LOG")
new_pg=$(tail -n +"$((pglog_lines + 1))" "$SC_PGLOG")
check "no SQL error text in the service log (syntax error, ERROR:, db_error)" \
  eval '! grep -qiE "syntax error|ERROR:|\"event\":\"db_error\"" <<<"$new_svc"'
check "no error in the PostgreSQL log during the injection phase" eval '! grep -qE "ERROR:|syntax error" <<<"$new_pg"'
grep -E "ERROR:|syntax error" <<<"$new_pg" | head -3 | sed 's/^/#   /'

# ------------------------------------------------------- 4. card testing
# A publishable key sits in a public checkout page: its tokenize quota is
# small and separate from the secret key's, and an Origin has one of its own.
sc_stop
sc_start CARDVAULT_AUTH_FAILURES_PER_MIN=0 CARDVAULT_TOKENIZE_QUOTA_PER_HOUR=1000 \
  CARDVAULT_TOKENIZE_QUOTA_PER_HOUR_PUBLISHABLE=5 CARDVAULT_TOKENIZE_QUOTA_PER_HOUR_ORIGIN=3 ||
  { not_ok "service restarts with tokenize quotas"; sc_finish abuse; }
ok "service restarts with tokenize quotas: 5/h per publishable key, 1000/h per secret key, 3/h per Origin"
q_201=0
for i in $(seq 1 5); do
  req POST /v1/tokens "$A_PK" "{\"pan\":\"$(luhn_pan 4245 "$i")\",\"exp_month\":11,\"exp_year\":2032}"
  [ "$R_STATUS" = 201 ] && q_201=$((q_201 + 1))
done
req POST /v1/tokens "$A_PK" "{\"pan\":\"$(luhn_pan 4245 6)\",\"exp_month\":11,\"exp_year\":2032}"
ra=$(retry_after)
echo "# publishable key: $q_201 x 201, then $R_STATUS $(err), Retry-After $ra"
check "a publishable key's 6th tokenize within the hour: 429 tokenize_quota_exceeded with Retry-After (after 5 x 201)" \
  eval '[ "$q_201" = 5 ] && [ "$R_STATUS:$(err)" = "429:tokenize_quota_exceeded" ] && [[ "$ra" =~ ^[0-9]+$ ]] && [ "$ra" -ge 60 ]'
req POST /v1/tokens "$A_SK" "{\"pan\":\"$(luhn_pan 4245 7)\",\"exp_month\":11,\"exp_year\":2032}"
check "the secret key of the same merchant still tokenizes (201)" test "$R_STATUS" = 201
# The origin quota counts a shop's checkout pages: a browser tokenizes only
# from the card frame (Origin: the vault's own), which names the page it is
# mounted in (CardVault-Frame-Origin), an origin on its key's list.
OWN_ORIGIN=${SC_URL%/}
pk_for_shop() { "$SC_BIN" key create --merchant "$1" --scopes tokenize --allowed-origin https://shop-b.example | jq -r .key; }
B_PK2=$(pk_for_shop "$B_ID") A_PK2=$(pk_for_shop "$A_ID")
# Running services load new keys within CARDVAULT_AUTH_REFRESH_MS: wait until
# both are known (a pk_ key's read is 403, not 401, once it is).
for _ in $(seq 1 100); do
  req GET /v1/tokens/tok_AAAAAAAAAAAAAAAAAAAAAA "$B_PK2"; s1=$R_STATUS
  req GET /v1/tokens/tok_AAAAAAAAAAAAAAAAAAAAAA "$A_PK2"
  [ "$s1" != 401 ] && [ "$R_STATUS" != 401 ] && break
  sleep 0.1
done
frame_tokenize() { # KEY FRAME_ORIGIN N
  req POST /v1/tokens "$1" "{\"pan\":\"$(luhn_pan 4246 "$3")\",\"exp_month\":11,\"exp_year\":2032}" \
    -H "Origin: $OWN_ORIGIN" -H "CardVault-Frame-Origin: $2"
}
o_codes=""
n=0
for key in "$B_PK2" "$B_PK2" "$A_PK2" "$A_PK2"; do
  n=$((n + 1)); frame_tokenize "$key" https://shop-b.example "$n"
  o_codes+="$R_STATUS "
done
req POST /v1/tokens "$B_SK" "{\"pan\":\"$(luhn_pan 4246 99)\",\"exp_month\":11,\"exp_year\":2032}"
echo "# frames on https://shop-b.example, 3/h: $o_codes; B's secret key without an Origin: $R_STATUS"
check "a shop origin's quota spans keys and merchants (201 201 201 429), a request without Origin is not held to it" \
  eval '[ "$o_codes" = "201 201 201 429 " ] && [ "$R_STATUS" = 201 ]'
frame_tokenize "$A_PK2" https://other-shop.example 20
f1="$R_STATUS:$(err)"
req POST /v1/tokens "$A_PK2" "{\"pan\":\"$(luhn_pan 4246 21)\",\"exp_month\":11,\"exp_year\":2032}" -H "Origin: $OWN_ORIGIN"
f2="$R_STATUS:$(err)"
req POST /v1/tokens "$A_PK2" "{\"pan\":\"$(luhn_pan 4246 22)\",\"exp_month\":11,\"exp_year\":2032}" -H 'Origin: https://shop-b.example'
f3="$R_STATUS:$(err)"
echo "# frame naming an origin off the key's list: $f1; own Origin without the frame's origin: $f2; a shop page's own call: $f3"
check "a frame's tokenize naming an origin off its key's list, or none, is 403 frame_origin_not_allowed; a shop page's direct call 403 cross_origin_refused" \
  eval '[ "$f1" = 403:frame_origin_not_allowed ] && [ "$f2" = 403:frame_origin_not_allowed ] && [ "$f3" = 403:cross_origin_refused ]'
check "cardvault_tokenize_refused_total counts both quotas" \
  eval '[ "$(metric "cardvault_tokenize_refused_total{reason=\"key_quota\"}")" = 1 ] &&
        [ "$(metric "cardvault_tokenize_refused_total{reason=\"origin_quota\"}")" = 1 ]'

# 30 cards with one BIN and last 4 and different middle digits: someone
# walking the 6 hidden digits of a card seen on a receipt.
sc_stop
sc_start CARDVAULT_AUTH_FAILURES_PER_MIN=0 || { not_ok "service restarts"; sc_finish abuse; }
ok "service restarts with the default card-testing detector (10 distinct cards per key and BIN + last 4, 1 h)"
# walk_pan MIDDLE5: 491761 + MIDDLE5 + one digit chosen for Luhn + 0147 (16 digits)
walk_pan() {
  local x p sum i d
  for x in 0 1 2 3 4 5 6 7 8 9; do
    p="491761$1${x}0147"
    sum=0
    for ((i = 0; i < 16; i++)); do
      d=${p:15-i:1}
      if ((i % 2 == 1)); then d=$((d * 2)); ((d > 9)) && d=$((d - 9)); fi
      sum=$((sum + d))
    done
    ((sum % 10 == 0)) && { echo "$p"; return; }
  done
}
log_lines=$(wc -l <"$SC_SERVICE_LOG")
WALK=()
w201=0 w429=0 w_bad_ra=0
for i in $(seq 1 30); do
  pan=$(walk_pan "$(printf '%05d' $((i * 3217 % 100000)))")
  WALK+=("$pan")
  req POST /v1/tokens "$B_PK" "{\"pan\":\"$pan\",\"exp_month\":3,\"exp_year\":2031}"
  case $R_STATUS in
    201) w201=$((w201 + 1)) ;;
    429) w429=$((w429 + 1)); { [ "$(err)" = tokenize_quota_exceeded ] && [[ "$(retry_after)" =~ ^[0-9]+$ ]]; } || w_bad_ra=$((w_bad_ra + 1)) ;;
  esac
done
n_distinct=$(printf '%s\n' "${WALK[@]}" | sort -u | wc -l)
echo "# 30 cards 491761******0147 ($n_distinct distinct) through B's publishable key: $w201 x 201, $w429 x 429"
check "the walk is flagged at the 10th distinct card and blocked after it (10 x 201, 20 x 429 with Retry-After)" \
  eval '[ "$n_distinct" = 30 ] && [ "$w201" = 10 ] && [ "$w429" = 20 ] && [ "$w_bad_ra" = 0 ]'
check "cardvault_card_testing_suspected_total{signal=\"bin_last4\"} is 1" \
  test "$(metric 'cardvault_card_testing_suspected_total{signal="bin_last4"}')" = 1
check "cardvault_tokenize_refused_total{reason=\"card_testing\"} is 20" \
  test "$(metric 'cardvault_tokenize_refused_total{reason="card_testing"}')" = 20
new_log=$(tail -n +"$((log_lines + 1))" "$SC_SERVICE_LOG")
ct_line=$(grep '"event":"card_testing_suspected"' <<<"$new_log" | grep '"signal":"bin_last4"')
echo "# $(head -1 <<<"$ct_line")"
check "one WARN card_testing_suspected line: key prefix, merchant, BIN, last 4, count" \
  eval '[ "$(grep -c . <<<"$ct_line")" = 1 ] &&
        jq -e --arg k "${B_PK:0:12}" --arg m "$B_ID" ".level == \"warn\" and .key_prefix == \$k and .merchant_id == \$m and .bin == \"491761\" and .last4 == \"0147\" and .distinct_cards == 10 and .blocked == true" <<<"$ct_line" >/dev/null'
leaked=0
for pan in "${WALK[@]}"; do
  grep -qF -e "$pan" -e "${pan:6:6}" <<<"$new_log" && { leaked=$((leaked + 1)); echo "#   in the log: ${pan:0:6}******${pan:12}"; }
done
check "none of the 30 PANs, nor any one's 6 middle digits, is in the service log" test "$leaked" -eq 0
check "no run of 12 or more digits in the card_testing_suspected line" eval '! grep -qE "[0-9]{12}" <<<"$ct_line"'
req POST /v1/tokens "$B_SK" "{\"pan\":\"${WALK[29]}\",\"exp_month\":3,\"exp_year\":2031}"
check "the merchant's secret key is not blocked by its publishable key's flag (201)" test "$R_STATUS" = 201
req POST /v1/tokens "$B_PK" "{\"pan\":\"$(luhn_pan 4247 1)\",\"exp_month\":3,\"exp_year\":2031}"
check "the flagged publishable key still tokenizes cards of another BIN and last 4 (201)" test "$R_STATUS" = 201

sc_stop
rc=$?
check "service stops cleanly (exit $rc)" test "$rc" -eq 0
check "no sanitizer report in the service log" sanitizer_clean
sc_finish abuse
