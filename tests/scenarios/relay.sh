#!/usr/bin/env bash
# The relay end to end (docs/relay.md): a shop charges a saved card through
# POST /v1/relay/{destination} with only a publishable key (tokenize, with a
# security-code hold) and a relay key, never a key that can read a card.
#
#   tests/scenarios/relay.sh build/release/cardvault
#
# Always:
#   - the relay key (rk_) is refused by read, detokenize, tokenize and delete;
#     the publishable, secret and detokenize keys are refused by the relay;
#   - without a destinations file every relay is 404 relay_destination_unknown,
#     and a placeholder in the path or a header is refused first;
#   - every relay is one relay.send audit event without the card, and the
#     relay metrics count it;
# With the fake processor (tests/relay/fake_processor.py, tests/relay/make-pki.sh)
# present, the relay against it over mutual TLS (relay_with_processor below):
#   - the processor receives the exact card number, expiry and security code;
#     the shop's answer holds neither, even when the processor echoes them;
#   - a second use of a one-use hold, a 2-second hold after 3 s, and a hold
#     after kill -9 and restart are 409 cvc_hold_gone;
#   - a destination not on the list is refused with no TCP connection to the
#     processor; a redirect is not followed; a wrong host name, an untrusted
#     CA and a missing client certificate fail before any body byte is sent;
#     timeout, a processor that never answers, a 10 MB answer and a reset give
#     their documented errors and leave no usable hold;
#   - an Idempotency-Key replay sends once;
# and last, the storage proof after the relays: the database dump, the
# cluster's files, the WAL (raw and pg_waldump), the PostgreSQL log (with
# log_statement=all), the service log and a core of the running service
# (gcore) hold neither the test card number nor the security code.
# Ends with "relay: N passed, N failed", appends "P F" to build/test-results.
SUITE=relay
. "$(dirname "$0")/../lib/scenario.sh"
cd "$SC_ROOT" || exit 2
sc_pin_binary
require_tools jq curl psql pg_dump gcore openssl python3

PAN=$(luhn_pan 4000772 $((RANDOM % 100000)))
PAN2=$(luhn_pan 5100334 $((RANDOM % 100000)))
CVC=$(printf '%03d' $((100 + RANDOM % 900)))
YEAR=$(($(date -u +%Y) + 3))

sc_setup -c log_statement=all -c log_min_duration_statement=0
sc_merchant "relay shop" || { not_ok "merchant"; sc_finish; }
check "merchant create prints a relay key (rk_)" test "${M_RK:0:3}" = rk_

# relay_json TOKEN [BODY-TEMPLATE [CONTENT-TYPE [PATH]]]: a relay request body.
relay_json() {
  jq -cn --arg t "$1" --arg b "${2:-}" --arg ct "${3:-application/json}" --arg p "${4:-/v1/charges}" \
    '{method:"POST", path:$p, headers:{"Content-Type":$ct}, tokens:{card:$t}}
     + (if $b == "" then {} else {body:$b} end)'
}
CHARGE_TEMPLATE='{"amount":1000,"number":"{{card.number}}","exp":"{{card.exp_month}}/{{card.exp_year2}}","year":"{{card.exp_year}}","cvc":"{{card.cvc}}"}'
NOCVC_TEMPLATE='{"amount":1000,"number":"{{card.number}}","exp":"{{card.exp_month}}/{{card.exp_year2}}"}'
error_code() { jq -r '.error.code // empty' <<<"$R_BODY"; }

DESTS_FILE=""
start_vault() { # [extra env]
  sc_start ${DESTS_FILE:+CARDVAULT_RELAY_DESTINATIONS=$DESTS_FILE} "$@"
}
need "service starts" start_vault

# ------------------------------------------------------------ keys
req POST /v1/tokens "$M_PK" "{\"pan\":\"$PAN\",\"exp_month\":4,\"exp_year\":$YEAR}"
need "tokenize with the publishable key" test "$R_STATUS" = 201
TOKEN=$(jq -r .token <<<"$R_BODY")
for call in "GET /v1/tokens/$TOKEN" "POST /v1/tokens/$TOKEN/detokenize" "DELETE /v1/tokens/$TOKEN"; do
  req ${call% *} "${call#* }" "$M_RK"
  check "the relay key is refused by ${call%% *} ${call#* }: 403 insufficient_scope" \
    test "$R_STATUS:$(error_code)" = 403:insufficient_scope
done
req POST /v1/tokens "$M_RK" "{\"pan\":\"$PAN2\",\"exp_month\":4,\"exp_year\":$YEAR}"
check "the relay key is refused by tokenize" test "$R_STATUS:$(error_code)" = 403:insufficient_scope
for k in M_PK M_SK M_DK; do
  req POST /v1/relay/acme "${!k}" "$(relay_json "$TOKEN" "$NOCVC_TEMPLATE")"
  check "the ${k#M_} key is refused by the relay: 403" test "$R_STATUS:$(error_code)" = 403:insufficient_scope
done

# ------------------------------------------------ refusals without a list
req POST /v1/relay/acme "$M_RK" "$(relay_json "$TOKEN" "$NOCVC_TEMPLATE")"
check "without a destinations file a relay is 404 relay_destination_unknown" \
  test "$R_STATUS:$(error_code)" = 404:relay_destination_unknown
req POST /v1/relay/acme "$M_RK" "$(relay_json "$TOKEN" "" application/json '/v1/{{card.number}}')"
check "a placeholder in the path is 400 relay_placeholder_not_allowed (param path)" \
  test "$R_STATUS:$(error_code):$(jq -r .error.param <<<"$R_BODY")" = 400:relay_placeholder_not_allowed:path
req POST /v1/relay/acme "$M_RK" "$(relay_json "$TOKEN" x '{{card.number}}')"
check "a placeholder in a header is 400 relay_placeholder_not_allowed (param headers)" \
  test "$R_STATUS:$(error_code):$(jq -r .error.param <<<"$R_BODY")" = 400:relay_placeholder_not_allowed:headers
req POST /v1/relay/acme "$M_RK" "$(jq -c '.headers.Host = "internal"' <<<"$(relay_json "$TOKEN")")"
check "a Host header is 400 relay_header_not_allowed" \
  test "$R_STATUS:$(error_code)" = 400:relay_header_not_allowed
req POST /v1/relay/acme "$M_RK" "$(jq -c '.extra = 1' <<<"$(relay_json "$TOKEN")")"
check "an unknown field is 400 unknown_field" test "$R_STATUS:$(error_code)" = 400:unknown_field

# ------------------------------------------------ the processor
relay_with_processor() {
  local pki="$SC_DIR/pki" p1 p2 p3 fp_pids=() fp
  local own_pk=$M_PK own_sk=$M_SK own_dk=$M_DK own_rk=$M_RK own_id=$M_ID
  sc_merchant "another shop" || not_ok "a second merchant"
  OTHER_PK=$M_PK
  M_PK=$own_pk M_SK=$own_sk M_DK=$own_dk M_RK=$own_rk M_ID=$own_id
  tests/relay/make-pki.sh "$pki" || { not_ok "test PKI"; return; }
  p1=$(free_port); p2=$(free_port); p3=$(free_port)
  # good: the test CA's processor.test, client certificates required;
  # wrongname: a certificate for other.test; rogue: processor.test from an
  # untrusted CA.
  for fp in "good $p1 server" "wrongname $p2 wrongname" "rogue $p3 rogue"; do
    set -- $fp
    python3 tests/relay/fake_processor.py --port "$2" --cert "$pki/$3.pem" --key "$pki/$3.key" \
      --client-ca "$pki/client-ca.pem" --record "$SC_DIR/fp-$1.rec" --count "$SC_DIR/fp-$1.cnt" \
      --slow 4 >"$SC_DIR/fp-$1.log" 2>&1 &
    fp_pids+=($!)
  done
  for _ in $(seq 1 50); do
    [ -s "$SC_DIR/fp-good.cnt" ] && [ -s "$SC_DIR/fp-wrongname.cnt" ] && [ -s "$SC_DIR/fp-rogue.cnt" ] && break
    sleep 0.1
  done
  sleep 0.3
  local paths='["/v1/charges", "/v1/echo", "/v1/redirect", "/v1/slow", "/v1/hang", "/v1/big", "/v1/reset"]'
  dest() { # NAME PORT [extra jq object]
    jq -cn --arg n "$1" --arg u "https://processor.test:$2" --arg ca "$pki/ca.pem" \
      --arg cc "$pki/client.pem" --arg ck "$pki/client.key" --argjson paths "$paths" --argjson x "${3:-{\}}" \
      '{name:$n, url:$u, methods:["POST"], paths:$paths, ca_file:$ca, client_cert:$cc, client_key:$ck,
        resolve:"127.0.0.1", timeout_ms:2000, max_answer_bytes:1048576} + $x'
  }
  DESTS_FILE="$SC_DIR/destinations.json"
  jq -n --argjson a "$(dest acme "$p1")" \
        --argjson b "$(dest wrongname "$p2")" \
        --argjson c "$(dest rogue "$p3")" \
        --argjson d "$(jq -c 'del(.client_cert, .client_key) | .name = "nocert"' <<<"$(dest x "$p1")")" \
        --argjson e "$(dest pinned "$p1" "{\"pin\": \"$(cat "$pki/server.pin")\"}")" \
        --argjson f "$(dest mispinned "$p1" "{\"pin\": \"sha256//$(openssl x509 -in "$pki/rogue.pem" -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64)\"}")" \
        '{destinations: [$a, $b, $c, $d, $e, $f]}' >"$DESTS_FILE"
  sc_stop
  need "service starts with the destinations file" start_vault
  recs() { wc -l <"$SC_DIR/fp-$1.rec"; }
  conns() { cat "$SC_DIR/fp-$1.cnt"; }
  hold_for() { # TOKEN [JSON extra]: sets HOLD
    req POST "/v1/tokens/$1/cvc-hold" "$M_PK" "$(jq -cn --arg c "$CVC" --argjson x "${2:-{\}}" '{cvc:$c} + $x')"
    HOLD=$(jq -r '.id // empty' <<<"$R_BODY")
  }
  relay() { # DEST PATH TEMPLATE [HOLD] [curl args...]
    local d=$1 p=$2 t=$3 h=${4:-}
    shift 4 2>/dev/null || shift $#
    req POST "/v1/relay/$d" "$M_RK" "$(relay_json "$TOKEN" "$t" application/json "$p")" \
      ${h:+-H "CardVault-Hold: $h"} "$@"
  }

  # ---- the card goes out, and only to the processor
  hold_for "$TOKEN"
  check "a security-code hold on the saved card with the publishable key: 201 hold_a_..." \
    test "$R_STATUS:${HOLD:0:7}" = 201:hold_a_
  check "the hold's answer holds no security code" test "$(grep -c -F "\"$CVC\"" <<<"$R_BODY")" = 0
  hold_for "$TOKEN" '{"uses": 99}'
  check "uses above the operator's cap: 400" test "$R_STATUS" = 400
  req POST "/v1/tokens/$TOKEN/cvc-hold" "$M_PK" "{\"cvc\":\"12345\"}"
  check "a 5-digit code: 400 invalid_cvc" test "$R_STATUS:$(error_code)" = 400:invalid_cvc
  hold_for "$TOKEN"
  before=$(recs good)
  relay acme /v1/charges "$CHARGE_TEMPLATE" "$HOLD"
  check "relay through the processor: 200" test "$R_STATUS:$(jq -r .status <<<"$R_BODY")" = 200:200
  last=$(tail -n 1 "$SC_DIR/fp-good.rec" | jq -r .body)
  check "the processor received the exact card number" grep -q -F "\"number\":\"$PAN\"" <<<"$last"
  check "the processor received the expiry (MM/YY and YYYY)" \
    grep -q -F "\"exp\":\"04/${YEAR:2:2}\",\"year\":\"$YEAR\"" <<<"$last"
  check "the processor received the exact security code" grep -q -F "\"cvc\":\"$CVC\"" <<<"$last"
  check "the processor received one request" test "$(recs good)" = $((before + 1))
  check "the shop's answer holds neither the card number nor the code" \
    test "$(grep -c -F -e "$PAN" -e "\"$CVC\"" <<<"$R_BODY")" = 0
  relay acme /v1/charges "$CHARGE_TEMPLATE" "$HOLD"
  check "a second use of a one-use hold: 409 cvc_hold_gone" test "$R_STATUS:$(error_code)" = 409:cvc_hold_gone
  hold_for "$TOKEN"
  relay acme /v1/echo "$CHARGE_TEMPLATE" "$HOLD"
  check "an echoing processor: 200" test "$R_STATUS" = 200
  check "the echoed answer is redacted: no card number, no code" \
    test "$(grep -c -F -e "$PAN" -e "\"cvc\":\"$CVC\"" <<<"$R_BODY")" = 0
  hold_for "$TOKEN" '{"ttl_seconds": 2}'
  sleep 3
  relay acme /v1/charges "$CHARGE_TEMPLATE" "$HOLD"
  check "a 2-second hold after 3 s: 409 cvc_hold_gone" test "$R_STATUS:$(error_code)" = 409:cvc_hold_gone
  req POST "/v1/tokens/$TOKEN/cvc-hold" "$OTHER_PK" "{\"cvc\":\"$CVC\"}"
  check "another merchant's token cannot be held: 404" test "$R_STATUS" = 404

  # ---- refusals that never reach the processor
  c0=$(conns good)
  relay nowhere /v1/charges "$NOCVC_TEMPLATE"
  check "a destination not on the list: 404 relay_destination_unknown" \
    test "$R_STATUS:$(error_code)" = 404:relay_destination_unknown
  relay acme /v1/refunds "$NOCVC_TEMPLATE"
  check "a path not on the destination's list: 403 relay_not_allowed" \
    test "$R_STATUS:$(error_code)" = 403:relay_not_allowed
  relay acme /v1/charges/../refunds "$NOCVC_TEMPLATE"
  check "a path climbing out with ..: 403 relay_not_allowed" test "$R_STATUS" = 403
  check "no TCP connection to the processor for any of them" test "$(conns good)" = "$c0"
  before=$(recs good)
  relay acme /v1/redirect "$NOCVC_TEMPLATE"
  check "a redirect: 502 relay_redirect_refused" test "$R_STATUS:$(error_code)" = 502:relay_redirect_refused
  check "the redirect was not followed (one request recorded, to /v1/redirect)" \
    test "$(recs good):$(tail -n 1 "$SC_DIR/fp-good.rec" | jq -r .path)" = "$((before + 1)):/v1/redirect"
  for d in wrongname rogue; do
    relay "$d" /v1/charges "$NOCVC_TEMPLATE"
    check "$d certificate: 502 relay_tls_failed" test "$R_STATUS:$(error_code)" = 502:relay_tls_failed
    check "$d: the processor received no request" test "$(recs "$d")" = 0
  done
  before=$(recs good)
  relay nocert /v1/charges "$NOCVC_TEMPLATE"
  # Under TLS 1.3 the server refuses a missing client certificate after the
  # client's handshake is done: the client sees the alert (relay_tls_failed)
  # or, when the server's close overtakes it, a reset (relay_upstream_failed).
  check "no client certificate: 502 ($(error_code))" \
    grep -Eq '^502:relay_(tls|upstream)_failed$' <<<"$R_STATUS:$(error_code)"
  relay mispinned /v1/charges "$NOCVC_TEMPLATE"
  check "a public-key pin that does not match: 502 relay_tls_failed" \
    test "$R_STATUS:$(error_code)" = 502:relay_tls_failed
  check "neither reached the processor's application" test "$(recs good)" = "$before"
  relay pinned /v1/charges "$NOCVC_TEMPLATE"
  check "the matching pin: 200" test "$R_STATUS" = 200

  # ---- a processor that fails
  hold_for "$TOKEN"
  relay acme /v1/slow "$CHARGE_TEMPLATE" "$HOLD"
  check "a processor slower than the timeout: 504 relay_timeout" test "$R_STATUS:$(error_code)" = 504:relay_timeout
  relay acme /v1/charges "$CHARGE_TEMPLATE" "$HOLD"
  check "the hold used by the timed-out relay is gone: 409" test "$R_STATUS" = 409
  relay acme /v1/hang "$NOCVC_TEMPLATE"
  check "a processor that never answers: 504 relay_timeout" test "$R_STATUS:$(error_code)" = 504:relay_timeout
  relay acme /v1/big "$NOCVC_TEMPLATE"
  check "a 10 MB answer: 502 relay_answer_too_large" \
    test "$R_STATUS:$(error_code)" = 502:relay_answer_too_large
  hold_for "$TOKEN"
  relay acme /v1/reset "$CHARGE_TEMPLATE" "$HOLD"
  check "a connection reset: 502 relay_upstream_failed" test "$R_STATUS:$(error_code)" = 502:relay_upstream_failed
  relay acme /v1/charges "$CHARGE_TEMPLATE" "$HOLD"
  check "the hold used by the reset relay is gone: 409" test "$R_STATUS" = 409

  # ---- Idempotency-Key: one outbound request per key
  before=$(recs good)
  relay acme /v1/charges "$NOCVC_TEMPLATE" "" -H "Idempotency-Key: relay-once-$RANDOM"
  first=$R_STATUS
  idem="relay-twice-$RANDOM"
  relay acme /v1/charges "$NOCVC_TEMPLATE" "" -H "Idempotency-Key: $idem"
  relay acme /v1/charges "$NOCVC_TEMPLATE" "" -H "Idempotency-Key: $idem"
  check "an Idempotency-Key replay answers 200 again ($first, $R_STATUS)" test "$R_STATUS" = 200
  check "and the processor received two requests for the two keys, not three" \
    test "$(recs good)" = $((before + 2))

  # ---- a restart loses every hold
  hold_for "$TOKEN"
  kill -9 "$SC_SERVICE_PID"; wait "$SC_SERVICE_PID" 2>/dev/null; SC_SERVICE_PID=""
  need "service restarts after kill -9" start_vault
  relay acme /v1/charges "$CHARGE_TEMPLATE" "$HOLD"
  check "a hold made before kill -9 is gone after the restart: 409 cvc_hold_gone" \
    test "$R_STATUS:$(error_code)" = 409:cvc_hold_gone

  kill "${fp_pids[@]}" 2>/dev/null
  wait "${fp_pids[@]}" 2>/dev/null
  # The processor's own records hold the card by design; they go now.
  rm -f "$SC_DIR"/fp-*.rec
}
if [ -x tests/relay/make-pki.sh ] && [ -f tests/relay/fake_processor.py ]; then
  relay_with_processor
else
  echo "# skipped: tests/relay/fake_processor.py and make-pki.sh are not in this tree;"
  echo "#          the relay against a processor (card out, echo redacted, holds, TLS, failures)"
  echo "#          is not checked by this run"
fi

# ------------------------------------------------ audit and metrics
n_events=$(q "SELECT count(*) FROM audit_events WHERE action = 'relay.send'" 2>/dev/null || echo 0)
check "every relay that passed authentication is one relay.send audit event ($n_events)" \
  test "$n_events" -ge 3
# Read back, then searched here: the card number never goes into a query (the
# PostgreSQL log below must not hold it either).
q "SELECT coalesce(token,'') || ' ' || coalesce(detail,'') FROM audit_events
   WHERE action = 'relay.send'" >"$SC_DIR/relay-events.txt" 2>/dev/null
check "no relay.send event holds the card number, a hold id or the path" \
  test "$(grep -c -E -e "$PAN" -e 'hold_[a-z0-9]{1,16}_[0-9A-Za-z]{24}' -e /v1/charges "$SC_DIR/relay-events.txt")" = 0
metrics=$(curl -s "$SC_OPS_URL/metrics")
check "cardvault_relay_total counts the refused relays" \
  grep -Eq '^cardvault_relay_total\{destination="[^"]+",outcome="refused"\} [1-9]' <<<"$metrics"

# ------------------------------------------------ storage proof
# The card number as digits, the security code in every context the relay's
# templates and answers put it in.
patterns="$SC_DIR/patterns"
printf '%s\n' "$PAN" "\"cvc\":\"$CVC\"" "\"cvc\": \"$CVC\"" "cvc=$CVC" >"$patterns"
found_in() { # FILE...: how many pattern hits in the files
  grep -a -o -F -f "$patterns" "$@" 2>/dev/null | wc -l
}
core="$SC_DIR/core"
if gcore -o "$core" "$SC_SERVICE_PID" >"$SC_DIR/gcore.out" 2>&1 && [ -s "$core.$SC_SERVICE_PID" ]; then
  ok "gcore wrote a core of the running service ($(du -h "$core.$SC_SERVICE_PID" | cut -f1))"
  check "the core of the running service holds neither the card number nor the code" \
    test "$(found_in "$core.$SC_SERVICE_PID")" = 0
  rm -f "$core.$SC_SERVICE_PID"
else
  not_ok "gcore of the running service"; indent <"$SC_DIR/gcore.out"
fi
sc_stop
pg_dump -d cardvault >"$SC_DIR/dump.sql" 2>/dev/null
check "pg_dump holds neither the card number nor the code" test "$(found_in "$SC_DIR/dump.sql")" = 0
psql -X -q -d cardvault -c CHECKPOINT >/dev/null 2>&1
check "the cluster's files (WAL included) hold neither" \
  test "$(sc_as_pg grep -r -a -o -F -f "$patterns" "$SC_PGDATA" 2>/dev/null | wc -l)" = 0
: >"$SC_DIR/waldump.txt"
for seg in "$SC_PGDATA"/pg_wal/0*; do
  sc_as_pg "$SC_PGBIN/pg_waldump" "$seg" >>"$SC_DIR/waldump.txt" 2>/dev/null
done
check "pg_waldump of the WAL decodes records and holds neither" \
  test "$(wc -l <"$SC_DIR/waldump.txt")" -gt 0 -a "$(found_in "$SC_DIR/waldump.txt")" = 0
check "the PostgreSQL log (log_statement=all) logged statements and holds neither" \
  test "$(grep -c 'statement:\|execute' "$SC_PGLOG")" -gt 0 -a "$(found_in "$SC_PGLOG")" = 0
check "the service log holds neither" test "$(found_in "$SC_SERVICE_LOG")" = 0
sc_finish
