#!/usr/bin/env bash
# The card fields' server side (docs/elements.md), over HTTP with curl:
#
#   tests/scenarios/elements.sh build/release/cardvault
#
# On a private PostgreSQL cluster (tests/lib/scenario.sh):
#   1. CLI: `key create --allowed-origin` normalizes and stores origins, and
#      refuses them on a key with more than tokenize, for a non-loopback http
#      origin and for an origin with a path; `key origins` reads and replaces
#      the list and refuses a secret key; `elements-sri` prints the sha384 of
#      the /elements.js the service serves.
#   2. Static files: /elements.js, /elements/frame.js, /elements/frame.css:
#      status, content type and every web header (CORS * and CORP
#      cross-origin on the loader only).
#   3. Frame pages: /elements/card and /elements/cvc answer 200 with the
#      exact CSP (frame-ancestors = the origin), no-store, no-referrer,
#      nosniff, the DOM ids and autocomplete tokens, the title escaped; and
#      HTML 403/400 refusals (with their own CSP) for Sec-Fetch-Dest:
#      document, an unknown, revoked, secret or unbound key, an origin not on
#      the list, a non-canonical origin, missing, repeated or unknown
#      parameters; a change of origins applies within one key refresh.
#   4. /v1 and browsers: OPTIONS /v1/tokens is 405 cors_not_supported with
#      no Access-Control-* header; a tokenize with a foreign Origin (or
#      Origin: null) is 403 cross_origin_refused, with the vault's own Origin
#      or none it is 201; CARDVAULT_PUBLIC_ORIGIN replaces the Host-derived
#      origin; no /v1 answer carries Access-Control-Allow-Origin.
#   5. The service log never holds a key that travelled in a frame URL.
# Ends with "elements: N passed, N failed" and appends "P F" to
# build/test-results.
SUITE=elements
. "$(dirname "$0")/../lib/scenario.sh"
cd "$SC_ROOT" || exit 2
sc_pin_binary
require_tools jq curl psql openssl base64
export CARDVAULT_AUTH_REFRESH_MS=200

SHOP=http://127.0.0.1:18081
NONCE=n0nce-0123456789abcdef
CSP_HEAD="default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors"
REFUSAL_CSP="default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors *"

# hdr NAME: the value of a response header of the last req (empty if absent)
hdr() { tr -d '\r' <"$SC_DIR/r.h" | awk -v k="$(tr 'A-Z' 'a-z' <<<"$1")" \
  'BEGIN { FS = ": " } tolower($1) == k { sub(/^[^:]*: /, ""); print; exit }'; }
has_hdr() { tr -d '\r' <"$SC_DIR/r.h" | grep -qi "^$1:"; }
code_of_page() { sed -n 's/.*id="cv-refusal-code">\([a-z_]*\)<.*/\1/p' "$SC_DIR/r.body"; }
code_of_json() { jq -r '.error.code // "-"' "$SC_DIR/r.body" 2>/dev/null; }
# frame PATH QUERY [DEST]: GET a frame page as an iframe would (Sec-Fetch-Dest: DEST)
frame() { req GET "$1?$2" "" "" -H "Sec-Fetch-Dest: ${3:-iframe}"; }
# refused NAME STATUS CODE: the last answer is an HTML refusal with that code
refused() {
  if [ "$R_STATUS" = "$2" ] && [ "$(code_of_page)" = "$3" ] &&
     [ "$(hdr Content-Type)" = "text/html; charset=utf-8" ] &&
     [ "$(hdr Content-Security-Policy)" = "$REFUSAL_CSP" ] &&
     [ "$(hdr Cache-Control)" = no-store ] && ! grep -q '"error"' "$SC_DIR/r.body"; then
    ok "$1"
  else
    not_ok "$1 (status $R_STATUS, code $(code_of_page))"
  fi
}
pk_random() { echo "pk_$(LC_ALL=C tr -dc 'A-Za-z0-9' </dev/urandom | head -c 43)"; }

sc_setup
sc_merchant "elements shop" || { not_ok "merchant"; sc_finish; }

# ------------------------------------------------------------------ 1. CLI
out=$("$SC_BIN" key create --merchant "$M_ID" --scopes tokenize \
      --allowed-origin "$SHOP" --allowed-origin 'https://Shop.Example:443,https://shop.example')
PK=$(jq -r .key <<<"$out")
check "key create --allowed-origin: a pk_ key with the normalized, deduplicated origins" \
  test "${PK:0:3}/$(jq -c .allowed_origins <<<"$out")" = "pk_/[\"$SHOP\",\"https://shop.example\"]"
check "the origins are stored on the key" \
  test "$(q "SELECT array_to_string(allowed_origins, ' ') FROM api_keys WHERE key_prefix = '${PK:0:12}'")" = "$SHOP https://shop.example"
"$SC_BIN" key create --merchant "$M_ID" --scopes tokenize,read --allowed-origin https://shop.example >/dev/null 2>"$SC_DIR/e"
check "--allowed-origin on a key that can read is a usage error (exit 2)" test $? = 2
"$SC_BIN" key create --merchant "$M_ID" --scopes tokenize --allowed-origin http://shop.example >/dev/null 2>&1
check "a plain-http origin on a non-loopback host is refused" test $? = 2
"$SC_BIN" key create --merchant "$M_ID" --scopes tokenize --allowed-origin https://shop.example/pay >/dev/null 2>&1
check "an origin with a path is refused" test $? = 2
out=$("$SC_BIN" key origins "${PK:0:12}")
check "key origins prints the list" test "$(jq -c .allowed_origins <<<"$out")" = "[\"$SHOP\",\"https://shop.example\"]"
"$SC_BIN" key origins "${M_SK:0:12}" --set https://shop.example >/dev/null 2>&1
check "key origins refuses a secret key's prefix (usage)" test $? = 2
SK_AS_PK="pk_${M_SK:3:9}"
"$SC_BIN" key origins "$SK_AS_PK" --set https://shop.example >/dev/null 2>&1
check "key origins finds no publishable key for a made-up prefix" test $? = 1
PK2=$("$SC_BIN" key create --merchant "$M_ID" --scopes tokenize | jq -r .key)
out=$("$SC_BIN" key origins "${PK2:0:12}" --set "https://a.example, https://b.example:8443")
check "key origins --set replaces the list" \
  test "$(jq -c .allowed_origins <<<"$out")" = '["https://a.example","https://b.example:8443"]'
check "the change is an audit event" \
  test "$(q "SELECT count(*) FROM audit_events WHERE action = 'api_key.origins'")" = 1
out=$("$SC_BIN" key origins "${PK2:0:12}" --set '')
check "key origins --set '' empties it" test "$(jq -c .allowed_origins <<<"$out")" = '[]'
SRI=$("$SC_BIN" elements-sri)
check "elements-sri prints sha384-<base64 of 48 bytes>" \
  bash -c '[[ "$1" =~ ^sha384-[A-Za-z0-9+/]{64}$ ]]' _ "$SRI"

sc_start || { not_ok "service starts"; sc_finish; }
ok "service starts"

# ------------------------------------------------------------------ 2. static files
req GET /elements.js ""
sri_served="sha384-$(openssl dgst -sha384 -binary "$SC_DIR/r.body" | base64 -w0)"
check "GET /elements.js: 200, text/javascript" \
  test "$R_STATUS/$(hdr Content-Type)" = "200/text/javascript; charset=utf-8"
check "/elements.js: Access-Control-Allow-Origin *, CORP cross-origin, public max-age=300, nosniff" \
  test "$(hdr Access-Control-Allow-Origin)|$(hdr Cross-Origin-Resource-Policy)|$(hdr Cache-Control)|$(hdr X-Content-Type-Options)" = "*|cross-origin|public, max-age=300|nosniff"
check "elements-sri matches the bytes served" test "$sri_served" = "$SRI"
check "the loader defines window.CardVault" grep -q 'window.CardVault = CardVault' "$SC_DIR/r.body"
req GET /elements/frame.js ""
check "GET /elements/frame.js: 200 text/javascript, CORP same-origin, no CORS, nosniff" \
  test "$R_STATUS|$(hdr Content-Type)|$(hdr Cross-Origin-Resource-Policy)|$(hdr X-Content-Type-Options)|$(has_hdr Access-Control-Allow-Origin && echo cors)" = "200|text/javascript; charset=utf-8|same-origin|nosniff|"
req GET /elements/frame.css ""
check "GET /elements/frame.css: 200 text/css, CORP same-origin, no CORS" \
  test "$R_STATUS|$(hdr Content-Type)|$(hdr Cross-Origin-Resource-Policy)|$(has_hdr Access-Control-Allow-Origin && echo cors)" = "200|text/css; charset=utf-8|same-origin|"
req POST /elements.js "" '{}'
check "POST /elements.js is 405" test "$R_STATUS" = 405

# ------------------------------------------------------------------ 3. frame pages
Q="key=$PK&origin=$(jq -rn --arg o "$SHOP" '$o|@uri')&nonce=$NONCE"
frame /elements/card "$Q&title=%3Cb%3EPay%20%26%20go%3C%2Fb%3E&lang=ja"
check "card frame: 200 text/html" test "$R_STATUS/$(hdr Content-Type)" = "200/text/html; charset=utf-8"
check "card frame: CSP exact, frame-ancestors = the origin" \
  test "$(hdr Content-Security-Policy)" = "$CSP_HEAD $SHOP"
check "card frame: no-store, no-referrer, nosniff, no CORS" \
  test "$(hdr Cache-Control)|$(hdr Referrer-Policy)|$(hdr X-Content-Type-Options)|$(has_hdr Access-Control-Allow-Origin && echo cors)" = "no-store|no-referrer|nosniff|"
ids_ok=true
for f in 'id="cv-name"[^>]*autocomplete="cc-name"' 'id="cv-number"[^>]*inputmode="numeric"[^>]*autocomplete="cc-number"' \
         'id="cv-exp"[^>]*autocomplete="cc-exp"' 'id="cv-cvc"[^>]*autocomplete="cc-csc"' \
         '<label for="cv-number">' 'id="cv-number-error"[^>]*role="alert"[^>]*aria-live="polite"' \
         'aria-describedby="cv-exp-error"' 'id="cv-brand"' 'id="cv-cvc-hint"' '<form id="cv-form"' \
         '<html lang="ja">' "data-origin=\"$SHOP\"" "data-nonce=\"$NONCE\"" 'src="/elements/frame.js"'; do
  grep -Eq "$f" "$SC_DIR/r.body" || { ids_ok=false; echo "# missing: $f"; }
done
check "card frame: fields, labels, error regions, ids, lang, data attributes" $ids_ok
check "card frame: the title is text only (escaped)" \
  grep -q '<title>&lt;b&gt;Pay &amp; go&lt;/b&gt;</title>' "$SC_DIR/r.body"
check "card frame: no inline script or style" \
  bash -c '! grep -Eq "<script>|<style|[[:space:]]style=|[[:space:]]on[a-z]+=" "$1"' _ "$SC_DIR/r.body"
req GET "/elements/card?$Q" ""
check "no Sec-Fetch-Dest (older browsers, curl): served" test "$R_STATUS" = 200
req GET "/elements/card?$Q" "" "" -H 'Sec-Fetch-Dest: iframe' -H 'Sec-Fetch-Dest: document'
refused "two Sec-Fetch-Dest headers, one of them document: 403" 403 frame_navigation_refused
frame /elements/card "$Q" document
refused "Sec-Fetch-Dest: document is 403 frame_navigation_refused" 403 frame_navigation_refused
frame /elements/card "$Q" embed
refused "Sec-Fetch-Dest: embed is 403" 403 frame_navigation_refused
frame /elements/card "key=$(pk_random)&origin=$SHOP&nonce=$NONCE"
refused "an unknown publishable key is 403 frame_key_refused" 403 frame_key_refused
frame /elements/card "key=$M_SK&origin=$SHOP&nonce=$NONCE"
refused "a secret key is 403 frame_key_not_publishable" 403 frame_key_not_publishable
frame /elements/card "key=$M_DK&origin=$SHOP&nonce=$NONCE"
refused "a detokenize key is 403 frame_key_not_publishable" 403 frame_key_not_publishable
frame /elements/card "key=$M_PK&origin=$SHOP&nonce=$NONCE"
refused "a publishable key bound to no origin is 403 frame_origin_not_allowed" 403 frame_origin_not_allowed
frame /elements/card "key=$PK&origin=https://evil.example&nonce=$NONCE"
refused "an origin not on the key's list is 403 frame_origin_not_allowed" 403 frame_origin_not_allowed
frame /elements/card "key=$PK&origin=https://Shop.Example&nonce=$NONCE"
refused "a non-canonical origin is 400 frame_bad_request" 400 frame_bad_request
frame /elements/card "key=$PK&origin=https://shop.example/&nonce=$NONCE"
refused "an origin with a path is 400" 400 frame_bad_request
frame /elements/card "key=$PK&origin=https://shop.example"
refused "a missing nonce is 400" 400 frame_bad_request
frame /elements/card "key=$PK&origin=https://shop.example&nonce=short"
refused "a short nonce is 400" 400 frame_bad_request
frame /elements/card "$Q&key=$PK"
refused "a repeated parameter is 400" 400 frame_bad_request
frame /elements/card "$Q&debug=1"
refused "an unknown parameter is 400" 400 frame_bad_request
frame /elements/card "$Q&title=a%FFb"
refused "a title that is not UTF-8 is 400" 400 frame_bad_request
frame /elements/card "$Q&title=$(printf 'x%.0s' $(seq 1 121))"
refused "a title over 120 bytes is 400" 400 frame_bad_request
frame /elements/card "$Q&token=tok_0123456789012345678901"
refused "token is not a card-frame parameter" 400 frame_bad_request
frame /elements/card "$Q&title=$M_SK"
refused "a secret key in another parameter is 400 api_key_in_query" 400 api_key_in_query
frame /elements/card "key=$PK&origin=https://shop.example&nonce=$NONCE"
check "the key's second origin gets its own frame-ancestors" \
  test "$R_STATUS|$(hdr Content-Security-Policy)" = "200|$CSP_HEAD https://shop.example"
TOK=tok_AbCdEfGhIjKlMnOpQrStUv
frame /elements/cvc "$Q&token=$TOK&brand=amex"
check "cvc frame: 200 with the exact CSP, one cc-csc field, the token and brand as data" \
  bash -c '[ "$1" = 200 ] && [ "$2" = "$3" ] && grep -q "autocomplete=\"cc-csc\"" "$4" &&
           ! grep -q "cv-number" "$4" && grep -q "data-token=\"$5\" data-brand=\"amex\"" "$4"' \
  _ "$R_STATUS" "$(hdr Content-Security-Policy)" "$CSP_HEAD $SHOP" "$SC_DIR/r.body" "$TOK"
frame /elements/cvc "$Q"
refused "cvc frame without a token is 400" 400 frame_bad_request
frame /elements/cvc "$Q&token=$TOK&brand=maestro"
refused "cvc frame with an unknown brand is 400" 400 frame_bad_request

"$SC_BIN" key origins "${PK:0:12}" --set https://shop.example >/dev/null
sleep 1
frame /elements/card "$Q"
refused "an origin removed with key origins --set is refused within a key refresh" 403 frame_origin_not_allowed
"$SC_BIN" key revoke "${PK:0:12}" >/dev/null
sleep 1
frame /elements/card "key=$PK&origin=https://shop.example&nonce=$NONCE"
refused "a revoked key is 403 frame_key_refused" 403 frame_key_refused

# ------------------------------------------------------------------ 4. /v1 and browsers
CARD='{"pan":"4242424242424242","exp_month":12,"exp_year":2031}'
req OPTIONS /v1/tokens "" "" -H "Origin: $SHOP" -H 'Access-Control-Request-Method: POST' \
  -H 'Access-Control-Request-Headers: authorization, content-type'
check "OPTIONS /v1/tokens (a preflight) is 405 cors_not_supported, JSON, Allow: GET, POST" \
  test "$R_STATUS|$(code_of_json)|$(hdr Allow)|$(hdr Content-Type)" = "405|cors_not_supported|GET, POST|application/json"
check "the preflight answer has no Access-Control-* header" \
  bash -c '! tr -d "\r" <"$1" | grep -qi "^access-control-"' _ "$SC_DIR/r.h"
req OPTIONS /v1/tokens/tok_AbCdEfGhIjKlMnOpQrStUv "" "" -H "Origin: $SHOP"
check "OPTIONS on a token path is 405 cors_not_supported too" test "$R_STATUS/$(code_of_json)" = "405/cors_not_supported"
req POST /v1/tokens "$M_PK" "$CARD" -H "Origin: $SHOP"
check "pk_ tokenize with a foreign Origin is 403 cross_origin_refused, no CORS header" \
  test "$R_STATUS|$(code_of_json)|$(has_hdr Access-Control-Allow-Origin && echo cors)" = "403|cross_origin_refused|"
req POST /v1/tokens "$M_PK" "$CARD" -H "Origin: null"
check "Origin: null is refused" test "$R_STATUS/$(code_of_json)" = "403/cross_origin_refused"
# A live publishable key bound to https://shop.example, as a frame's fetch uses it.
FPK=$("$SC_BIN" key create --merchant "$M_ID" --scopes tokenize --allowed-origin https://shop.example | jq -r .key)
sleep 1.5 # running services load new keys within CARDVAULT_AUTH_REFRESH_MS
req POST /v1/tokens "$FPK" "$CARD" -H "Origin: $SC_URL" -H "CardVault-Frame-Origin: https://shop.example"
check "pk_ tokenize with the vault's own Origin naming its page's origin (the frame's fetch) is 201" \
  test "$R_STATUS" = 201
req POST /v1/tokens "$FPK" "$CARD" -H "Origin: $SC_URL" -H "CardVault-Frame-Origin: https://elsewhere.example"
check "... naming an origin off the key's list is 403 frame_origin_not_allowed" \
  test "$R_STATUS/$(code_of_json)" = "403/frame_origin_not_allowed"
req POST /v1/tokens "$FPK" "$CARD" -H "Origin: $SC_URL"
check "... naming none is 403 frame_origin_not_allowed" test "$R_STATUS/$(code_of_json)" = "403/frame_origin_not_allowed"
check "... and carries no CORS header" bash -c '! tr -d "\r" <"$1" | grep -qi "^access-control-"' _ "$SC_DIR/r.h"
req POST /v1/tokens "$M_PK" "$CARD"
check "tokenize without Origin (a server) is 201" test "$R_STATUS" = 201
TOKEN=$(jq -r .token <<<"$R_BODY")
# The security-code frame's hold (POST /v1/tokens/{token}/cvc-hold) is held to tokenize's rules.
HOLD='{"cvc":"123"}'
req POST "/v1/tokens/$TOKEN/cvc-hold" "$FPK" "$HOLD" -H "Origin: $SC_URL" -H "CardVault-Frame-Origin: https://shop.example"
check "pk_ cvc-hold with the vault's own Origin naming its page's origin (the cvc frame's fetch) is 201" \
  test "$R_STATUS/$(jq -r .object <<<"$R_BODY")" = "201/cvc_hold"
req POST "/v1/tokens/$TOKEN/cvc-hold" "$FPK" "$HOLD" -H "Origin: $SC_URL"
check "... naming none is 403 frame_origin_not_allowed" test "$R_STATUS/$(code_of_json)" = "403/frame_origin_not_allowed"
req POST "/v1/tokens/$TOKEN/cvc-hold" "$FPK" "$HOLD" -H "Origin: $SC_URL" -H "CardVault-Frame-Origin: https://elsewhere.example"
check "... naming an origin off the key's list is 403 frame_origin_not_allowed" \
  test "$R_STATUS/$(code_of_json)" = "403/frame_origin_not_allowed"
req POST "/v1/tokens/$TOKEN/cvc-hold" "$FPK" "$HOLD" -H "Origin: $SHOP" -H "CardVault-Frame-Origin: https://shop.example"
check "... with a foreign Origin is 403 cross_origin_refused" test "$R_STATUS/$(code_of_json)" = "403/cross_origin_refused"
req POST "/v1/tokens/$TOKEN/cvc-hold" "$M_PK" "$HOLD"
check "cvc-hold without Origin (a server) is 201" test "$R_STATUS" = 201
req GET "/v1/tokens/$TOKEN" "$M_SK" "" -H "Origin: $SHOP"
check "a secret-key read with a foreign Origin is refused too" test "$R_STATUS/$(code_of_json)" = "403/cross_origin_refused"
req POST /v1/tokens "bad" "$CARD" -H "Origin: $SHOP"
check "the Origin is checked before the key (403, not 401)" test "$R_STATUS/$(code_of_json)" = "403/cross_origin_refused"
req GET /healthz "" "" -H "Origin: $SHOP"
check "/healthz ignores Origin" test "$R_STATUS" = 200
sc_stop
sc_start CARDVAULT_PUBLIC_ORIGIN=https://Vault.Example:443 || not_ok "service restarts with CARDVAULT_PUBLIC_ORIGIN"
req POST /v1/tokens "$FPK" "$CARD" -H "Origin: https://vault.example" -H "CardVault-Frame-Origin: https://shop.example"
check "CARDVAULT_PUBLIC_ORIGIN: its origin is the vault's own (201)" test "$R_STATUS" = 201
req POST /v1/tokens "$M_PK" "$CARD" -H "Origin: $SC_URL"
check "CARDVAULT_PUBLIC_ORIGIN: the Host-derived origin no longer is (403)" test "$R_STATUS" = 403
sc_stop
env CARDVAULT_PUBLIC_ORIGIN=https://vault.example/x "$SC_BIN" serve >"$SC_DIR/bad.out" 2>&1
check "a CARDVAULT_PUBLIC_ORIGIN with a path stops serve with a clear line" \
  grep -q 'CARDVAULT_PUBLIC_ORIGIN must be an origin' "$SC_DIR/bad.out"

# ------------------------------------------------------------------ 5. logs
check "the service log never holds a key that was in a frame URL" \
  bash -c '! grep -qF -e "$1" -e "$2" -e "$3" "$4"' _ "$PK" "$M_SK" "$M_DK" "$SC_SERVICE_LOG"
check "frame pages are logged by route pattern" grep -q '"route":"/elements/card"' "$SC_SERVICE_LOG"

sc_finish
