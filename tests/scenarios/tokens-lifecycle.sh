#!/usr/bin/env bash
# Tokens with metadata and lifetimes, listed and updated.
#
#   tests/scenarios/tokens-lifecycle.sh build/release/cardvault
#
# 1. The integrator path of the README ("A saved card with metadata and an
#    expiry"), with the README's own requests: tokenize with metadata and
#    ttl_seconds, list by metadata, update the expiry, name and metadata
#    (PATCH, no card number sent), read, detokenize (same card number, new
#    name), delete; then it is listed no more.
# 2. Pagination: limit, has_more, next_cursor, every token once, newest first.
#    Strict query: unknown, repeated and malformed parameters and a bad cursor
#    are 400.
# 3. Merchant isolation: another merchant's tokens are never listed; its
#    token in a PATCH is a 404 identical to a never-issued token's.
# 4. Idempotency-Key on PATCH: same body replays, another body is 409.
# 5. Lifetime: a token past its ttl answers exactly like a missing one (read,
#    detokenize, delete, update: same 404 body), is never listed and never
#    reused (reuse_existing); its row is still there until the purge;
#    `cardvault tokens purge-expired` deletes it (row gone, one audit event
#    with the count) and `cardvault audit verify` passes; the housekeeping
#    thread purges at start and counts cardvault_tokens_purged_total.
# 6. Metadata never holds card data: a card number (spaced) or a security
#    code in a value, a key named cvv, are refused (400 metadata_card_data,
#    the value not echoed), and a pg_dump of the database does not contain
#    the number in any spelling.
# Ends with "tokens-lifecycle: N passed, N failed".
SUITE=tokens-lifecycle
. "$(dirname "$0")/../lib/scenario.sh"
cd "$SC_ROOT" || exit 2
sc_pin_binary
require_tools jq curl psql pg_dump

strip_id() { sed -E 's/"request_id":"req_[A-Za-z0-9]*"/"request_id":""/' <<<"$1"; }
code_of() { jq -r '.error.code // empty' <<<"$R_BODY"; }

sc_setup
sc_merchant "tokens lifecycle A" || { not_ok "merchant A"; sc_finish; }
A_ID=$M_ID A_SK=$M_SK A_DK=$M_DK A_PK=$M_PK
sc_merchant "tokens lifecycle B" || { not_ok "merchant B"; sc_finish; }
B_SK=$M_SK
need "service starts" sc_start

# ------------------------------------------------ 1. the README's path
SK=$A_SK DK=$A_DK
VAULT=$SC_URL
# README: save a card with metadata and a lifetime
R_BODY=$(curl -s "$VAULT/v1/tokens" \
  -H "Authorization: Bearer $SK" -H 'Content-Type: application/json' \
  -d '{"pan":"4242424242424242","exp_month":12,"exp_year":2030,"cardholder_name":"Ada Lovelace","metadata":{"customer_id":"cus_8812","plan":"gold"},"ttl_seconds":31536000}')
TOK=$(jq -r .token <<<"$R_BODY")
check "README: tokenize with metadata and ttl_seconds answers the token" \
  test "$(jq -r '.metadata.customer_id + "/" + .metadata.plan' <<<"$R_BODY")" = "cus_8812/gold"
check "README: expires_at is about a year ahead" \
  bash -c "[ \$(( \$(date -d '$(jq -r .expires_at <<<"$R_BODY")' +%s) - \$(date +%s) )) -gt 31535000 ]"
# README: list the customer's saved cards
R_BODY=$(curl -s -G "$VAULT/v1/tokens" -H "Authorization: Bearer $SK" \
  --data-urlencode 'metadata[customer_id]=cus_8812')
check "README: list by metadata finds it" \
  test "$(jq -r '[.data[].token] == ["'"$TOK"'"] and .has_more == false and .object == "list"' <<<"$R_BODY")" = true
check "README: a list answer has no card number" bash -c "! grep -q 4242424242424242 <<<'$R_BODY'"
# README: the card was renewed: new expiry, same number
R_BODY=$(curl -s -X PATCH "$VAULT/v1/tokens/$TOK" \
  -H "Authorization: Bearer $SK" -H 'Content-Type: application/json' \
  -d '{"exp_month":3,"exp_year":2032,"cardholder_name":"Ada King","metadata":{"plan":null,"note":"renewed"}}')
check "README: PATCH answers the same token with the new expiry and merged metadata" \
  test "$(jq -c '[.token, .exp_month, .exp_year, .metadata]' <<<"$R_BODY")" = "[\"$TOK\",3,2032,{\"customer_id\":\"cus_8812\",\"note\":\"renewed\"}]"
req GET "/v1/tokens/$TOK" "$A_SK"
check "read after PATCH shows the new expiry" test "$(jq -c '[.exp_month,.exp_year,.last4]' <<<"$R_BODY")" = '[3,2032,"4242"]'
R_BODY=$(curl -s -X POST "$VAULT/v1/tokens/$TOK/detokenize" -H "Authorization: Bearer $DK")
check "detokenize after PATCH: same card number, new name (re-sealed, row check passes)" \
  test "$(jq -c '[.pan,.cardholder_name,.exp_month]' <<<"$R_BODY")" = '["4242424242424242","Ada King",3]'
check "the PATCH is audited (token.update, field names only)" \
  test "$(q "SELECT detail FROM audit_events WHERE action = 'token.update' AND token = '$TOK'")" = "fields=expiry,cardholder_name,metadata"
# README: the customer removed the card
code=$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "$VAULT/v1/tokens/$TOK" -H "Authorization: Bearer $SK")
check "README: delete is 204" test "$code" = 204
R_BODY=$(curl -s -G "$VAULT/v1/tokens" -H "Authorization: Bearer $SK" --data-urlencode 'metadata[customer_id]=cus_8812')
check "README: a deleted token is listed no more" test "$(jq -r '.data | length' <<<"$R_BODY")" = 0

# ------------------------------------------------ 2. pagination and strict query
for i in 1 2 3 4 5; do
  req POST /v1/tokens "$A_SK" "{\"pan\":\"$(luhn_pan 411111 "$i")\",\"exp_month\":1,\"exp_year\":2031,\"metadata\":{\"batch\":\"p\"}}"
done
seen=() cursor="" pages=0
while :; do
  args=(--data-urlencode 'metadata[batch]=p' --data-urlencode 'limit=2')
  [ -n "$cursor" ] && args+=(--data-urlencode "cursor=$cursor")
  R_BODY=$(curl -s -G "$SC_URL/v1/tokens" -H "Authorization: Bearer $A_SK" "${args[@]}")
  pages=$((pages + 1))
  mapfile -t -O "${#seen[@]}" seen < <(jq -r '.data[].token' <<<"$R_BODY")
  [ "$(jq -r .has_more <<<"$R_BODY")" = true ] || break
  cursor=$(jq -r .next_cursor <<<"$R_BODY")
  [ $pages -lt 10 ] || break
done
check "five tokens in pages of two: 3 pages, each token once" \
  test "$pages/${#seen[@]}/$(printf '%s\n' "${seen[@]}" | sort -u | wc -l)" = "3/5/5"
newest_first=$(q "SELECT string_agg(token, ' ' ORDER BY created_at DESC, token DESC) FROM tokens WHERE merchant_id = '$A_ID' AND metadata->>'batch' = 'p'")
check "the pages follow created time, newest first" test "${seen[*]}" = "$newest_first"
req GET "/v1/tokens?limit=2&limit=3" "$A_SK"
check "repeated parameter: 400 invalid_query" test "$R_STATUS/$(code_of)" = "400/invalid_query"
req GET "/v1/tokens?fingerprnt=fp_x" "$A_SK"
check "unknown parameter: 400 invalid_query" test "$R_STATUS/$(code_of)" = "400/invalid_query"
req GET "/v1/tokens?limit=101" "$A_SK"
check "limit 101: 400 invalid_query" test "$R_STATUS/$(code_of)" = "400/invalid_query"
req GET "/v1/tokens?cursor=cur_0000000000000000AAAAAAAAAAAAAAAAAAAAA" "$A_SK"
check "bad cursor: 400 invalid_cursor" test "$R_STATUS/$(code_of)" = "400/invalid_cursor"
req GET "/v1/tokens" "$A_PK"
check "a publishable key may not list: 403" test "$R_STATUS" = 403
FP=$(q "SELECT fingerprint FROM tokens WHERE merchant_id = '$A_ID' LIMIT 1")
req GET "/v1/tokens?fingerprint=$FP" "$A_SK"
check "fingerprint filter" test "$(jq -r "[.data[].fingerprint] | unique == [\"$FP\"]" <<<"$R_BODY")" = true

# ------------------------------------------------ 3. isolation
req GET "/v1/tokens?limit=100" "$B_SK"
check "merchant B lists none of A's tokens" test "$R_STATUS/$(jq -r '.data | length' <<<"$R_BODY")" = "200/0"
A_TOK=${seen[0]:-tok_0000000000000000000001}
req PATCH "/v1/tokens/$A_TOK" "$B_SK" '{"metadata":{"x":"y"}}'
b_patch=$(strip_id "$R_BODY") b_status=$R_STATUS
req PATCH "/v1/tokens/tok_0000000000000000000000" "$B_SK" '{"metadata":{"x":"y"}}'
check "B's PATCH of A's token: 404, the body of a never-issued token" \
  test "$b_status/$b_patch" = "404/$(strip_id "$R_BODY")"
check "A's token is unchanged" test "$(q "SELECT metadata::text FROM tokens WHERE token = '$A_TOK'")" = '{"batch": "p"}'

# ------------------------------------------------ 4. Idempotency-Key on PATCH
req PATCH "/v1/tokens/$A_TOK" "$A_SK" '{"metadata":{"step":"1"}}' -H 'Idempotency-Key: patch-1'
first=$R_BODY
req PATCH "/v1/tokens/$A_TOK" "$A_SK" '{"metadata":{"step":"1"}}' -H 'Idempotency-Key: patch-1'
check "PATCH replay: same answer, Idempotent-Replayed" \
  bash -c "[ '$R_STATUS' = 200 ] && [ '$R_BODY' = '$first' ] && grep -qi '^Idempotent-Replayed: true' '$SC_DIR/r.h'"
req PATCH "/v1/tokens/$A_TOK" "$A_SK" '{"metadata":{"step":"2"}}' -H 'Idempotency-Key: patch-1'
check "PATCH with the key of another request: 409" test "$R_STATUS/$(code_of)" = "409/idempotency_key_reused"

# ------------------------------------------------ 5. lifetime
EXP_PAN=$(luhn_pan 555555 77)
req POST /v1/tokens "$A_SK" "{\"pan\":\"$EXP_PAN\",\"exp_month\":5,\"exp_year\":2031,\"ttl_seconds\":1}"
EXP_TOK=$(jq -r .token <<<"$R_BODY")
check "tokenize with ttl_seconds 1: 201" test "$R_STATUS" = 201
sleep 2.2
missing="tok_1111111111111111111111"
for route in "GET /v1/tokens/TOK $A_SK" "DELETE /v1/tokens/TOK $A_SK" "POST /v1/tokens/TOK/detokenize $A_DK" "PATCH /v1/tokens/TOK $A_SK"; do
  read -r m p k <<<"$route"
  body=""; [ "$m" = PATCH ] && body='{"metadata":{"a":"b"}}'
  req "$m" "${p/TOK/$EXP_TOK}" "$k" "$body"; e="$R_STATUS $(strip_id "$R_BODY")"
  req "$m" "${p/TOK/$missing}" "$k" "$body"; g="$R_STATUS $(strip_id "$R_BODY")"
  check "expired token: $m ${p/TOK/\{token\}} answers like a missing one ($e)" test "$e" = "$g"
done
req GET "/v1/tokens?limit=100" "$A_SK"
check "an expired token is not listed" bash -c "! grep -q '$EXP_TOK' <<<'$R_BODY'"
req POST /v1/tokens "$A_SK" "{\"pan\":\"$EXP_PAN\",\"exp_month\":5,\"exp_year\":2031,\"reuse_existing\":true}"
check "reuse_existing never returns an expired token (201, a new token)" \
  bash -c "[ '$R_STATUS' = 201 ] && [ '$(jq -r .token <<<"$R_BODY")' != '$EXP_TOK' ]"
check "the expired row is still in the table before the purge" \
  test "$(q "SELECT count(*) FROM tokens WHERE token = '$EXP_TOK'")" = 1
out=$("$SC_BIN" tokens purge-expired)
check "cardvault tokens purge-expired purges it ($out)" test "$(jq -r '.purged >= 1' <<<"$out")" = true
check "the expired row is gone from the database" \
  test "$(q "SELECT count(*) FROM tokens WHERE token = '$EXP_TOK'")" = 0
check "one token.purge_expired audit event, with the count" \
  test "$(q "SELECT detail FROM audit_events WHERE action = 'token.purge_expired' ORDER BY seq DESC LIMIT 1")" = "tokens=$(jq -r .purged <<<"$out")"
check "the event names the merchant whose tokens went" \
  test "$(q "SELECT merchant_id FROM audit_events WHERE action = 'token.purge_expired' ORDER BY seq DESC LIMIT 1")" = "$A_ID"
check "cardvault audit verify passes" bash -c "'$SC_BIN' audit verify >/dev/null"
# The housekeeping thread purges at start.
req POST /v1/tokens "$A_SK" "{\"pan\":\"$(luhn_pan 555555 78)\",\"exp_month\":5,\"exp_year\":2031,\"ttl_seconds\":1}"
HK_TOK=$(jq -r .token <<<"$R_BODY")
sleep 2.2
sc_stop
need "service restarts" sc_start
for _ in $(seq 1 50); do
  [ "$(q "SELECT count(*) FROM tokens WHERE token = '$HK_TOK'")" = 0 ] && break
  sleep 0.1
done
check "housekeeping purged the expired row" test "$(q "SELECT count(*) FROM tokens WHERE token = '$HK_TOK'")" = 0
check "cardvault_tokens_purged_total counts it" \
  bash -c "curl -s '$SC_OPS_URL/metrics' | grep -qx 'cardvault_tokens_purged_total 1'"
check "cardvault audit verify still passes" bash -c "'$SC_BIN' audit verify >/dev/null"

# ------------------------------------------------ 6. metadata never holds a PAN
SECRET_PAN=4000056655665556
req POST /v1/tokens "$A_SK" "{\"pan\":\"4242424242424242\",\"exp_month\":1,\"exp_year\":2031,\"metadata\":{\"note\":\"card 4000 0566 5566 5556\"}}"
check "a card number in a metadata value: 400 metadata_card_data, param metadata" \
  test "$R_STATUS/$(code_of)/$(jq -r .error.param <<<"$R_BODY")" = "400/metadata_card_data/metadata"
check "the refusal does not echo the value" bash -c "! grep -qE '5556|0566' <<<'$R_BODY'"
req PATCH "/v1/tokens/$A_TOK" "$A_SK" "{\"metadata\":{\"pan\":\"$SECRET_PAN\"}}"
check "a card number in a PATCH's metadata: 400 metadata_card_data" test "$R_STATUS/$(code_of)" = "400/metadata_card_data"
req PATCH "/v1/tokens/$A_TOK" "$A_SK" '{"metadata":{"cvv":"123"}}'
check "a key named cvv: 400 metadata_card_data" test "$R_STATUS/$(code_of)" = "400/metadata_card_data"
req PATCH "/v1/tokens/$A_TOK" "$A_SK" '{"metadata":{"note":"cvc: 123"}}'
check "a security code in a value: 400 metadata_card_data" test "$R_STATUS/$(code_of)" = "400/metadata_card_data"
pg_dump -d cardvault >"$SC_DIR/dump.sql" 2>/dev/null
check "pg_dump succeeded" test -s "$SC_DIR/dump.sql"
check "the dump has no trace of the refused card number (plain, spaced, hyphenated)" \
  bash -c "! grep -qE '4000056655665556|4000 0566 5566 5556|4000-0566-5566-5556' '$SC_DIR/dump.sql'"
check "the dump holds the metadata that was accepted (control)" grep -q 'cus_8812\|"batch": "p"' "$SC_DIR/dump.sql"
check "no PAN-looking value in any metadata (pan scan of the column)" \
  test "$(q "SELECT count(*) FROM tokens WHERE metadata::text ~ '[0-9]{12}'")" = 0

sc_stop
sc_finish
