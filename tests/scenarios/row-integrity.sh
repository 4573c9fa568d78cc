#!/usr/bin/env bash
# The clear columns of a token row against a database writer.
#
#   tests/scenarios/row-integrity.sh build/release/cardvault
#
# BIN, last 4, brand and fingerprint are stored in the clear beside the
# ciphertext (tokens.bin, .last4, .brand, .fingerprint). As the schema owner
# (what anyone who can write the vault database can do), this changes them
# row by row, straight in SQL: last4 alone, bin alone, brand alone, the
# fingerprint moved onto another token's card, all four copied from another
# card of the same merchant; and it swaps the sealed part (nonce, ciphertext,
# dek_id) of two rows of one merchant, which the associated data already
# refuses. For every affected row:
#   - GET /v1/tokens/{token} and detokenize answer 500 internal_error with no
#     card data (never 200, never a PAN, name, BIN or last 4 in the body);
#   - the service logs token_columns_mismatch naming the token and exactly
#     the changed columns (column names only: the line holds no PAN, BIN or
#     last 4) and integrity_error with the request id;
#   - detokenize is audited with outcome integrity_error;
#   - cardvault_errors_total{code="integrity_error"} counts every refusal.
# Then: tokenize with reuse_existing for a card whose row had its last 4
# changed gets a new token with the true last 4 (201), not the tampered row
# (the reuse lookup opens candidates through the same check); untampered
# rows (Visa 16 and 19 digits, Mastercard, Amex, an unknown brand, with and
# without a name) still read and detokenize to their own card; `keys
# reencrypt` moves the untampered rows of a retired DEK (they still open
# afterwards) and reports the tampered ones as unreadable instead of
# re-sealing them; no PAN of the run is in the service log, and (under
# BUILD=asan) no sanitizer report.
# Ends with "row-integrity: N passed, N failed", appends "P F" to build/test-results.
SUITE=row-integrity
. "$(dirname "$0")/../lib/scenario.sh"
cd "$SC_ROOT" || exit 2
sc_pin_binary
require_tools jq curl psql

metric() { curl -s "$SC_OPS_URL/metrics" | awk -v k="$1" '$1 == k { print $2; f = 1 } END { if (!f) print 0 }'; }
code() { jq -r '.error.code // "DATA"' <<<"$R_BODY" 2>/dev/null; }

sc_setup
sc_merchant "row integrity A" || { not_ok "merchant A"; sc_finish; }
A_ID=$M_ID A_SK=$M_SK A_DK=$M_DK
sc_start || { not_ok "service starts"; sc_finish; }
ok "service starts"
echo "# cardvault $SC_BIN_ORIG, listen $SC_URL, tmp $SC_DIR"

# mk PAN [NAME]: tokenizes with the secret key (fingerprint in the answer); sets T
declare -A PAN_OF NAME_OF
ALL_PANS=()
mk() {
  local body
  body=$(jq -cn --arg p "$1" --arg n "${2:-}" \
    '{pan: $p, exp_month: 11, exp_year: 2032} + (if $n == "" then {} else {cardholder_name: $n} end)')
  req POST /v1/tokens "$A_SK" "$body"
  T=$(jq -r .token <<<"$R_BODY")
  PAN_OF[$T]=$1
  NAME_OF[$T]=${2:-}
  ALL_PANS+=("$1")
  [ "$R_STATUS" = 201 ]
}
TOK=()
for i in $(seq 1 8); do
  mk "$(luhn_pan 4242 "$i")" "Card Holder $i" && TOK+=("$T") || not_ok "tokenize visa card $i"
done
mk "$(luhn_pan 5555 9)" "Card Holder 9" && MC=$T || not_ok "tokenize mastercard"
# untouched controls of other shapes: Amex (15), Visa (19), unknown brand, no name
mk 378282246310005 "Amex Holder" && C_AMEX=$T || not_ok "tokenize amex"
mk 4000000000000000006 && C_V19=$T || not_ok "tokenize 19-digit visa"
mk 9999999999999995 "Unknown Brand" && C_UNK=$T || not_ok "tokenize unknown brand"
check "8 Visa tokens and 4 others" test "${#TOK[@]}" = 8

t() { echo "${TOK[$1]}"; }
row() { echo "merchant_id = '$A_ID' AND token = '$1'"; }
col() { q "SELECT $1 FROM tokens WHERE $(row "$2")"; }
declare -a VICTIMS=() # "TOKEN expected-columns what"
victim() { VICTIMS+=("$1 $2 $3"); }

# 0: last 4 changed (what the shop shows the cardholder)
q "UPDATE tokens SET last4 = '0000' WHERE $(row "$(t 0)")" >/dev/null
victim "$(t 0)" last4 "last4-changed"
# 1: BIN changed to the Mastercard's
q "UPDATE tokens SET bin = '$(col bin "$MC")' WHERE $(row "$(t 1)")" >/dev/null
victim "$(t 1)" bin "bin-changed"
# 2: brand changed
q "UPDATE tokens SET brand = 'mastercard' WHERE $(row "$(t 2)")" >/dev/null
victim "$(t 2)" brand "brand-changed"
# 3: fingerprint moved onto card 4's: the shop's dedup would call them one card
q "UPDATE tokens SET fingerprint = '$(col fingerprint "$(t 4)")' WHERE $(row "$(t 3)")" >/dev/null
victim "$(t 3)" fingerprint "fingerprint-moved"
# 5: all four copied from the Mastercard row (a consistent set, of another card)
q "UPDATE tokens t SET bin = o.bin, last4 = o.last4, brand = o.brand, fingerprint = o.fingerprint
   FROM tokens o WHERE t.merchant_id = '$A_ID' AND t.token = '$(t 5)'
   AND o.merchant_id = '$A_ID' AND o.token = '$MC'" >/dev/null
victim "$(t 5)" bin,last4,brand,fingerprint "all-four-relabelled"
# 6 <-> 7: sealed parts swapped (the associated data holds the token: refused before any check)
q "UPDATE tokens t SET nonce = o.nonce, ciphertext = o.ciphertext, dek_id = o.dek_id FROM tokens o
   WHERE (t.merchant_id, t.token, o.merchant_id, o.token) IN
   (('$A_ID', '$(t 6)', '$A_ID', '$(t 7)'), ('$A_ID', '$(t 7)', '$A_ID', '$(t 6)'))" >/dev/null
victim "$(t 6)" - "ciphertexts-swapped"
victim "$(t 7)" - "ciphertexts-swapped"

integrity_before=$(metric 'cardvault_errors_total{code="integrity_error"}')
n_reads=0
for v in "${VICTIMS[@]}"; do
  read -r tok cols what <<<"$v"
  res="" leak=0
  for route in read detokenize; do
    if [ "$route" = read ]; then req GET "/v1/tokens/$tok" "$A_SK"; else req POST "/v1/tokens/$tok/detokenize" "$A_DK" '{}'; fi
    n_reads=$((n_reads + 1))
    res+="$route $R_STATUS $(code); "
    for p in "${ALL_PANS[@]}"; do grep -qF "$p" "$SC_DIR/r.body" && leak=1; done
    grep -q '"pan"\|"cardholder_name"\|"last4"\|"bin"\|Card Holder' "$SC_DIR/r.body" && leak=1
  done
  check "$what: read and detokenize refused, no card data ($res)" \
    test "$res:$leak" = "read 500 internal_error; detokenize 500 internal_error; :0"
  audited=$(q "SELECT count(*) FROM audit_events WHERE token = '$tok' AND action = 'token.detokenize' AND outcome = 'integrity_error'")
  logged=$(grep '"event":"integrity_error"' "$SC_SERVICE_LOG" | grep -c "\"token\":\"$tok\"")
  check "$what: detokenize audited as integrity_error ($audited), logged integrity_error ($logged)" \
    eval '[ "$audited" -eq 1 ] && [ "$logged" -ge 2 ]'
  if [ "$cols" != - ]; then
    named=$(grep '"event":"token_columns_mismatch"' "$SC_SERVICE_LOG" | grep "\"token\":\"$tok\"" |
      jq -r .columns | sort -u | paste -sd' ')
    check "$what: token_columns_mismatch names the columns ($named)" test "$named" = "$cols"
  fi
done
integrity_after=$(metric 'cardvault_errors_total{code="integrity_error"}')
check "cardvault_errors_total{code=\"integrity_error\"} counted the $n_reads refusals ($integrity_before -> $integrity_after)" \
  test $((integrity_after - integrity_before)) -ge "$n_reads"
# The mismatch lines carry names, ids and the DEK id, nothing else: no value of any column.
keysets=$(grep '"event":"token_columns_mismatch"' "$SC_SERVICE_LOG" | jq -c 'keys' | sort -u | paste -sd' ')
check "token_columns_mismatch lines hold only columns, dek_id, merchant_id, token ($keysets)" \
  test "$keysets" = '["columns","dek_id","event","level","merchant_id","token","ts"]'

# Reuse: the card of a row whose last 4 was changed gets a fresh, true answer.
pan0=${PAN_OF[$(t 0)]}
req POST /v1/tokens "$A_SK" "$(jq -cn --arg p "$pan0" '{pan: $p, exp_month: 11, exp_year: 2032, cardholder_name: "Card Holder 1", reuse_existing: true}')"
reused=$(jq -r '"\(.token) \(.last4)"' <<<"$R_BODY")
check "reuse_existing skips the tampered row: 201, the true last 4, not the tampered token ($R_STATUS $reused)" \
  eval '[ "$R_STATUS" = 201 ] && [ "${reused#* }" = "${pan0: -4}" ] && [ "${reused%% *}" != "$(t 0)" ]'
check "reuse_existing: the lookup logged the tampered candidate" \
  test "$(grep '"event":"token_columns_mismatch"' "$SC_SERVICE_LOG" | grep -c "\"token\":\"$(t 0)\"")" -ge 3

# Untouched rows still open, each to its own card.
for tok in "$(t 4)" "$MC" "$C_AMEX" "$C_V19" "$C_UNK"; do
  req POST "/v1/tokens/$tok/detokenize" "$A_DK" '{}'
  got=$(jq -r '"\(.pan)/\(.cardholder_name // "")/\(.last4)"' <<<"$R_BODY")
  check "untouched $tok detokenizes to its card ($R_STATUS, $(jq -r .brand <<<"$R_BODY"))" \
    test "$R_STATUS $got" = "200 ${PAN_OF[$tok]}/${NAME_OF[$tok]}/${PAN_OF[$tok]: -4}"
  req GET "/v1/tokens/$tok" "$A_SK"
  check "untouched $tok reads" test "$R_STATUS" = 200
done

# keys reencrypt: opens through the same check.
"$SC_BIN" keys rotate-dek >"$SC_DIR/rotate.out" 2>&1
OLD_DEK=$(q "SELECT min(dek_id) FROM data_keys")
# reencrypt waits 10 s after a retirement (no instance still seals under it); nothing seals here.
q "UPDATE data_keys SET retired_at = now() - interval '1 minute' WHERE dek_id = $OLD_DEK" >/dev/null
old_rows=$(q "SELECT count(*) FROM tokens WHERE dek_id = $OLD_DEK")
"$SC_BIN" keys reencrypt --from-dek "$OLD_DEK" >"$SC_DIR/reencrypt.out" 2>"$SC_DIR/reencrypt.err"
rc=$?
summary=$(jq -r 'select(.moved != null) | "\(.moved) \(.unreadable)"' "$SC_DIR/reencrypt.out" 2>/dev/null)
echo "# keys reencrypt (exit $rc): $summary; $(wc -l <"$SC_DIR/reencrypt.err") lines on stderr"
moved=${summary%% *}
check "reencrypt moved the $((old_rows - ${#VICTIMS[@]})) sound rows ($summary)" \
  test "$moved" = "$((old_rows - ${#VICTIMS[@]}))"
named=$(sed -n 's/.*row \(tok_[0-9A-Za-z]*\) cannot be re-encrypted (integrity_error).*/\1/p' "$SC_DIR/reencrypt.err" | sort -u | paste -sd' ')
victims=$(for v in "${VICTIMS[@]}"; do echo "${v%% *}"; done | sort -u | paste -sd' ')
check "reencrypt refused exactly the tampered rows, as integrity_error" test "$named" = "$victims"
left=$(q "SELECT count(*) FROM tokens WHERE dek_id = $OLD_DEK")
check "the tampered rows stay under the old DEK ($left), unsealed again" test "$left" -eq "${#VICTIMS[@]}"
for tok in "$(t 4)" "$C_AMEX"; do
  req POST "/v1/tokens/$tok/detokenize" "$A_DK" '{}'
  check "re-encrypted $tok still detokenizes to its card" \
    test "$R_STATUS $(jq -r .pan <<<"$R_BODY")" = "200 ${PAN_OF[$tok]}"
done

pans_logged=0
for p in "${ALL_PANS[@]}"; do grep -qF "$p" "$SC_SERVICE_LOG" "$SC_DIR/reencrypt.out" "$SC_DIR/reencrypt.err" && pans_logged=$((pans_logged + 1)); done
check "no PAN in the service log or the reencrypt output ($pans_logged)" test "$pans_logged" -eq 0
check "no sanitizer report in the service log or the reencrypt output" \
  eval '! grep -qE "AddressSanitizer|LeakSanitizer|runtime error:" "$SC_SERVICE_LOG" "$SC_DIR/reencrypt.err"'
sc_finish
