#!/usr/bin/env bash
# Transport and runtime scenario.
#
#   tests/scenarios/runtime.sh [build/release/cardvault]
#
# On its own PostgreSQL cluster (tests/lib/scenario.sh) it starts
# `cardvault serve` several times and checks:
#   - TLS (EC P-256 and RSA 2048 self-signed certificates): TLS 1.0/1.1,
#     CBC suites and static-RSA key exchange refused; TLS 1.2 GCM/ChaCha20 and
#     TLS 1.3 accepted; curl verifies the certificate and gets /healthz; a local
#     `openssl s_server` proves the client really can speak what is refused;
#   - plain HTTP beyond loopback refused (exit 1, message names
#     CARDVAULT_ALLOW_PLAINTEXT) unless CARDVAULT_ALLOW_PLAINTEXT=1, which
#     starts and logs event "plaintext_http";
#   - an API key in the query string: 400 api_key_in_query, never logged;
#   - /metrics: Prometheus text 0.0.4 with the documented families, a syntax
#     and histogram-consistency check (and `promtool check metrics` when
#     promtool is installed), counters that match the traffic sent;
#   - logs: every stdout line is a JSON object; http_request lines carry
#     request_id, merchant_id, route, status, duration_ms; no PAN, CVC or
#     cardholder name sent during the run appears (positive control included);
#   - database outage: PostgreSQL stopped under the running service: 503 with
#     Retry-After within 6 s, /readyz 503, /healthz 200; restarted: /readyz 200
#     and tokenize 201 within ~10 s, without restarting the service;
#   - rate limit (5 rps, burst 5): 429 with an integer Retry-After, other keys
#     unaffected, the key recovers;
#   - connection limits: idle and half-sent connections closed after
#     CARDVAULT_CONNECTION_TIMEOUT_S=2; with CARDVAULT_MAX_CONNECTIONS_PER_IP=4
#     a 5th connection is refused while 4 are held, accepted once one closes;
#   - graceful shutdown under load (SIGTERM) and with requests held in flight
#     by a table lock (SIGTERM and SIGINT): in-flight requests complete, every
#     request whose connection was established before the signal gets a full
#     HTTP answer, /readyz answers 503 during the drain grace while API
#     requests are still served, new connections are then refused, exit 0
#     well within 20 s.
# Ends with "runtime: N passed, N failed" (sc_finish). RT_KEEP=DIR copies the
# scenario's temp dir (service logs, metrics, load records) to DIR.

# card_body assigns JSON with printf -v; shellcheck takes its quotes for shell quoting:
# shellcheck disable=SC2089,SC2090
SUITE=runtime
# shellcheck source=tests/lib/scenario.sh
. "$(dirname "$0")/../lib/scenario.sh"

require_tools jq curl psql openssl awk timeout

cd "$SC_ROOT" || exit 2   # migrate reads ./migrations
sc_setup
PORT=${CARDVAULT_LISTEN##*:}
RT_ERR="$SC_DIR/service.stderr"   # stdout (the JSON log) goes to $SC_SERVICE_LOG
sc_merchant "Runtime Shop B" || { echo "merchant create failed"; exit 1; }
B_PK=$M_PK
sc_merchant "Runtime Shop C" || { echo "merchant create failed"; exit 1; }
C_ID=$M_ID C_PK=$M_PK
sc_merchant "Runtime Shop" || { echo "merchant create failed"; exit 1; }
YEAR=$(($(date -u +%Y) + 2))
now_ms() { echo $(($(date +%s%N) / 1000000)); }
section() { echo "# [${SECONDS}s] $*"; }

# rt_start URL [VAR=value ...]: `cardvault serve` with stdout to the log and
# stderr apart; 0 once URL/healthz answers.
RT_URL=$SC_URL
rt_start() {
  RT_URL=$1; shift
  env CARDVAULT_DATABASE_URL="${SC_APP_URL:-$CARDVAULT_DATABASE_URL}" env "$@" "$SC_BIN" serve >>"$SC_SERVICE_LOG" 2>>"$RT_ERR" &
  SC_SERVICE_PID=$!
  for _ in $(seq 1 200); do
    curl -sf --cacert "$SC_DIR/ca.pem" "$RT_URL/healthz" >/dev/null 2>&1 && return 0
    kill -0 "$SC_SERVICE_PID" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}
# log_event_since LINE EVENT: the service log has EVENT after line LINE. The
# listener answers a moment before its start-up line is written, so this waits
# up to 2 s for it.
log_event_since() {
  local i
  for ((i = 0; i < 40; i++)); do
    tail -n +$(($1 + 1)) "$SC_SERVICE_LOG" | jq -R -c "fromjson? | select(.event == \"$2\")" | grep -q . && return 0
    sleep 0.05
  done
  return 1
}
# rt_signal SIG: sends it, records the time in SIG_MS.
rt_signal() { SIG_MS=$(now_ms); kill -"$1" "$SC_SERVICE_PID"; }
# rt_wait_exit [SECONDS]: waits for the service (SIGKILL after SECONDS, default 25);
# STOP_RC = exit status, STOP_MS = ms since SIG_MS.
rt_wait_exit() {
  local i
  for ((i = 0; i < ${1:-25} * 20; i++)); do
    kill -0 "$SC_SERVICE_PID" 2>/dev/null || break
    sleep 0.05
  done
  kill -0 "$SC_SERVICE_PID" 2>/dev/null && kill -KILL "$SC_SERVICE_PID"
  wait "$SC_SERVICE_PID" 2>/dev/null
  STOP_RC=$?
  STOP_MS=$(($(now_ms) - SIG_MS))
  SC_SERVICE_PID=""
}
rt_stop() { rt_signal TERM; rt_wait_exit 25; }

# Every PAN, CVC and name sent, for the log search at the end.
SENT_PANS=() SENT_CVCS=() SENT_NAMES=()
# card_body VAR PAN CVC NAME
card_body() {
  SENT_PANS+=("$2"); SENT_CVCS+=("$3"); SENT_NAMES+=("$4")
  printf -v "$1" '{"pan":"%s","exp_month":9,"exp_year":%d,"cvc":"%s","cardholder_name":"%s"}' \
    "$2" "$YEAR" "$3" "$4"
}
# rt_req METHOD URL [curl args...]: R_STATUS, R_BODY, headers in $SC_DIR/h, R_MS.
rt_req() {
  local m=$1 u=$2 t0; shift 2
  t0=$(now_ms)
  R_STATUS=$(curl -s -o "$SC_DIR/b" -D "$SC_DIR/h" -w '%{http_code}' --max-time 20 \
    --cacert "$SC_DIR/ca.pem" -X "$m" "$u" "$@" 2>/dev/null)
  R_MS=$(($(now_ms) - t0))
  R_BODY=$(cat "$SC_DIR/b" 2>/dev/null)
  R_CODE=$(jq -r '.error.code // empty' <<<"$R_BODY" 2>/dev/null)
}
hdr() { tr -d '\r' <"$SC_DIR/h" | awk -F': ' -v n="$(tr 'A-Z' 'a-z' <<<"$1")" 'tolower($1) == n { print $2 }'; }
tok_post() { # BODY [KEY]
  rt_req POST "$RT_URL/v1/tokens" -H "Authorization: Bearer ${2:-$M_PK}" \
    -H 'Content-Type: application/json' --data-binary "$1"
}

# ============================================================== TLS
section TLS
cd "$SC_DIR" || exit 1
san="subjectAltName=IP:127.0.0.1,DNS:localhost"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
  -addext "$san" -keyout ec.key -out ec.crt 2>/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
  -addext "$san" -keyout rsa.key -out rsa.crt 2>/dev/null
chmod 600 ec.key rsa.key
cat ec.crt rsa.crt >ca.pem
cd "$SC_ROOT" || exit 1
check "generated EC P-256 and RSA 2048 certificates" test -s "$SC_DIR/ec.crt" -a -s "$SC_DIR/rsa.crt"

# handshake PORT ARGS...: 0 when a TLS session was established; prints "protocol cipher".
handshake() {
  local port=$1 out; shift
  out=$(echo | timeout 5 openssl s_client -connect "127.0.0.1:$port" -servername localhost "$@" 2>&1)
  local rc=$?
  local line
  line=$(grep -m1 -E '^New, ' <<<"$out")
  echo "${line:-no session}" | sed 's/^New, //; s/, Cipher is / /'
  [ $rc = 0 ] && grep -q '^New, TLS' <<<"$out" && ! grep -q 'Cipher is (NONE)' <<<"$out"
}
# tls_expect NAME yes|no PORT ARGS...
tls_expect() {
  local name=$1 want=$2 port=$3 got r; shift 3
  if got=$(handshake "$port" "$@"); then r=yes; else r=no; fi
  if [ "$r" = "$want" ]; then ok "$name ($got)"; else not_ok "$name (handshake: $r, $got)"; fi
}
LEGACY=(-cipher 'ALL:@SECLEVEL=0')

# Positive control: the same client, against openssl s_server allowing
# everything, does negotiate TLS 1.0, 1.1 and the CBC suites we expect refused.
CTRL_PORT=$(free_port)
openssl s_server -quiet -accept "$CTRL_PORT" -cert "$SC_DIR/ec.crt" -key "$SC_DIR/ec.key" \
  -dcert "$SC_DIR/rsa.crt" -dkey "$SC_DIR/rsa.key" -min_protocol TLSv1 -cipher 'ALL:@SECLEVEL=0' \
  -naccept 6 </dev/null >/dev/null 2>&1 &
ctrl_pid=$!
for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/127.0.0.1/$CTRL_PORT") 2>/dev/null && break; sleep 0.05; done
ctrl_ok=0
handshake "$CTRL_PORT" -tls1 "${LEGACY[@]}" >/dev/null && ctrl_ok=$((ctrl_ok + 1))
handshake "$CTRL_PORT" -tls1_1 "${LEGACY[@]}" >/dev/null && ctrl_ok=$((ctrl_ok + 1))
handshake "$CTRL_PORT" -tls1_2 -cipher ECDHE-ECDSA-AES128-SHA256 >/dev/null && ctrl_ok=$((ctrl_ok + 1))
handshake "$CTRL_PORT" -tls1_2 -cipher ECDHE-RSA-AES128-SHA >/dev/null && ctrl_ok=$((ctrl_ok + 1))
kill "$ctrl_pid" 2>/dev/null; wait "$ctrl_pid" 2>/dev/null
check "control: this openssl client negotiates TLS 1.0, 1.1 and CBC suites with a permissive server ($ctrl_ok/4)" \
  test "$ctrl_ok" = 4

for kind in ec rsa; do
  if ! rt_start "https://127.0.0.1:$PORT" CARDVAULT_TLS_CERT="$SC_DIR/$kind.crt" \
    CARDVAULT_TLS_KEY="$SC_DIR/$kind.key"; then
    not_ok "[$kind] HTTPS service starts"; tail -3 "$RT_ERR"; continue
  fi
  ok "[$kind] HTTPS service starts with CARDVAULT_TLS_CERT/KEY"
  if [ $kind = ec ]; then au=ECDSA; else au=RSA; fi
  tls_expect "[$kind] TLS 1.0 refused" no "$PORT" -tls1 "${LEGACY[@]}"
  tls_expect "[$kind] TLS 1.1 refused" no "$PORT" -tls1_1 "${LEGACY[@]}"
  if [ $kind = ec ]; then
    tls_expect "[ec] TLS 1.2 CBC ECDHE-ECDSA-AES128-SHA256 refused" no "$PORT" -tls1_2 -cipher ECDHE-ECDSA-AES128-SHA256
    tls_expect "[ec] TLS 1.2 CBC ECDHE-ECDSA-AES256-SHA refused" no "$PORT" -tls1_2 -cipher ECDHE-ECDSA-AES256-SHA
    tls_expect "[ec] TLS 1.2 ECDHE-ECDSA-CHACHA20-POLY1305 accepted" yes "$PORT" -tls1_2 -cipher ECDHE-ECDSA-CHACHA20-POLY1305
  else
    tls_expect "[rsa] TLS 1.2 CBC ECDHE-RSA-AES128-SHA refused" no "$PORT" -tls1_2 -cipher ECDHE-RSA-AES128-SHA
    tls_expect "[rsa] TLS 1.2 CBC ECDHE-RSA-AES256-SHA384 refused" no "$PORT" -tls1_2 -cipher ECDHE-RSA-AES256-SHA384
    tls_expect "[rsa] TLS 1.2 static RSA AES128-GCM-SHA256 (no forward secrecy) refused" no "$PORT" -tls1_2 -cipher AES128-GCM-SHA256
  fi
  tls_expect "[$kind] TLS 1.2 ECDHE-$au-AES128-GCM-SHA256 accepted" yes "$PORT" -tls1_2 -cipher "ECDHE-$au-AES128-GCM-SHA256"
  tls_expect "[$kind] TLS 1.2 ECDHE-$au-AES256-GCM-SHA384 accepted" yes "$PORT" -tls1_2 -cipher "ECDHE-$au-AES256-GCM-SHA384"
  tls_expect "[$kind] TLS 1.3 accepted" yes "$PORT" -tls1_3
  tls_expect "[$kind] TLS 1.3 TLS_CHACHA20_POLY1305_SHA256 accepted" yes "$PORT" -tls1_3 -ciphersuites TLS_CHACHA20_POLY1305_SHA256
  # Key exchange: elliptic-curve groups only (X25519, P-256, P-384); a client
  # offering only finite-field DH must not get it.
  tls_expect "[$kind] TLS 1.3 with only FFDHE2048 offered refused" no "$PORT" -tls1_3 -groups ffdhe2048
  tls_expect "[$kind] TLS 1.2 with only FFDHE2048 offered refused" no "$PORT" -tls1_2 -groups ffdhe2048
  tls_expect "[$kind] TLS 1.3 X25519 accepted" yes "$PORT" -tls1_3 -groups X25519
  tls_expect "[$kind] TLS 1.3 P-384 accepted" yes "$PORT" -tls1_3 -groups P-384
  rt_req GET "https://127.0.0.1:$PORT/healthz"
  check "[$kind] curl https /healthz with the certificate verified: 200" test "$R_STATUS" = 200
  if [ $kind = ec ]; then
    card_body B "$(luhn_pan 4000 11)" 314 "TLS HOLDER"
    tok_post "$B"
    check "[ec] tokenize over HTTPS: 201" test "$R_STATUS" = 201
    st=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$PORT/healthz" 2>/dev/null)
    check "[ec] plain HTTP to the HTTPS port gets no HTTP answer (got ${st:-none})" test "${st:-000}" != 200
  fi
  rt_stop
  check "[$kind] HTTPS service stops with exit 0" test "$STOP_RC" = 0
done
check "log: event tls_enabled" grep -q '"event":"tls_enabled"' "$SC_SERVICE_LOG"

# ============================================================== plaintext policy
section plaintext policy
out=$(CARDVAULT_DATABASE_URL="${SC_APP_URL:-$CARDVAULT_DATABASE_URL}" CARDVAULT_LISTEN="0.0.0.0:$PORT" timeout 20 "$SC_BIN" serve 2>&1 >/dev/null); rc=$?
check "plain HTTP on 0.0.0.0 without TLS refused: exit 1 (got $rc)" test "$rc" = 1
check "the refusal names CARDVAULT_ALLOW_PLAINTEXT ($out)" grep -q CARDVAULT_ALLOW_PLAINTEXT <<<"$out"
out=$(CARDVAULT_DATABASE_URL="${SC_APP_URL:-$CARDVAULT_DATABASE_URL}" CARDVAULT_LISTEN="0.0.0.0:$PORT" CARDVAULT_ALLOW_PLAINTEXT=yes timeout 20 "$SC_BIN" serve 2>&1 >/dev/null); rc=$?
check "CARDVAULT_ALLOW_PLAINTEXT=yes (not exactly 1) still refused: exit 1 (got $rc)" test "$rc" = 1
mark=$(wc -l <"$SC_SERVICE_LOG")
if rt_start "http://127.0.0.1:$PORT" CARDVAULT_LISTEN="0.0.0.0:$PORT" CARDVAULT_ALLOW_PLAINTEXT=1; then
  ok "plain HTTP on 0.0.0.0 with CARDVAULT_ALLOW_PLAINTEXT=1 starts"
  check "it logs event plaintext_http" log_event_since "$mark" plaintext_http
  rt_stop
  check "it stops with exit 0" test "$STOP_RC" = 0
else
  not_ok "plain HTTP on 0.0.0.0 with CARDVAULT_ALLOW_PLAINTEXT=1 starts"; tail -3 "$RT_ERR"
fi

# ============================================================== drain bound (background)
section "drain bound: a request stuck in the database (runs in the background)"
# A second instance on its own port and log. A psql session locks merchant
# C's row (FOR UPDATE) for 30 s, so a tokenize of C with an Idempotency-Key
# blocks in the foreign-key check of its idempotency claim; nothing else in
# this script touches that row. SIGTERM then has to give up on that request
# after the 20 s drain and still exit promptly.
S_PORT=$(free_port) S_LOG="$SC_DIR/stuck.log"
S_OPS_PORT=$(free_port)
CARDVAULT_DATABASE_URL="${SC_APP_URL:-$CARDVAULT_DATABASE_URL}" CARDVAULT_LISTEN="127.0.0.1:$S_PORT" \
  CARDVAULT_OPS_LISTEN="127.0.0.1:$S_OPS_PORT" "$SC_BIN" serve >>"$S_LOG" 2>>"$RT_ERR" &
S_PID=$!
trap 'kill -9 "$S_PID" 2>/dev/null; sc_cleanup' EXIT
for _ in $(seq 1 200); do curl -sf "http://127.0.0.1:$S_PORT/healthz" >/dev/null 2>&1 && break; sleep 0.05; done
psql -X -q -d cardvault >/dev/null 2>&1 <<SQL &
BEGIN;
SELECT 1 FROM merchants WHERE merchant_id = '$C_ID' FOR UPDATE;
SELECT pg_sleep(30);
COMMIT;
SQL
S_LOCK_PID=$!
for _ in $(seq 1 50); do
  [ "$(q "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(30)%' AND state = 'active' AND pid <> pg_backend_pid()")" -ge 1 ] && break
  sleep 0.1
done
card_body B "$(luhn_pan 3528 5000)" 135 "STUCK HOLDER"
curl -s -o /dev/null -w '%{http_code}' --max-time 45 -X POST "http://127.0.0.1:$S_PORT/v1/tokens" \
  -H "Authorization: Bearer $C_PK" -H 'Content-Type: application/json' -H 'Idempotency-Key: stuck-1' \
  --data-binary "$B" >"$SC_DIR/stuck.status" 2>/dev/null &
S_CURL_PID=$!
# Signal only once the request is inside the service, waiting in PostgreSQL.
for _ in $(seq 1 100); do
  [ "$(q "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query ILIKE 'INSERT INTO idempotency_keys%'")" -ge 1 ] && break
  sleep 0.05
done
S_SIG_MS=$(now_ms)
kill -TERM "$S_PID"
# The exit time, seen from a watcher (a zombie still answers kill -0, so read /proc).
( while [ -e "/proc/$S_PID" ] && [ "$(awk '{ print $3 }' "/proc/$S_PID/stat" 2>/dev/null)" != Z ]; do
    sleep 0.1
  done
  now_ms >"$SC_DIR/stuck.exit_ms" ) &
S_WATCH_PID=$!

# ============================================================== main service
section main service: key in query, metrics
mark=$(wc -l <"$SC_SERVICE_LOG")
rt_start "$SC_URL" CARDVAULT_DRAIN_GRACE_MS=5000 || { echo "service did not start"; tail "$RT_ERR"; exit 1; }
check "loopback without TLS also logs plaintext_http" log_event_since "$mark" plaintext_http

TOKS=()
n_tok=0
for i in 1 2 3 4 5; do
  card_body B "$(luhn_pan 4532 $((1000 + i)))" "$((600 + i))" "LOG HOLDER $i"
  tok_post "$B"
  [ "$R_STATUS" = 201 ] && { n_tok=$((n_tok + 1)); TOKS+=("$(jq -r .token <<<"$R_BODY")"); }
  [ $i = 1 ] && RID1=$(hdr X-Request-Id)
done
SENT_PANS+=("378282246310005"); SENT_CVCS+=("4821"); SENT_NAMES+=("AMEX HOLDER")
tok_post "{\"pan\":\"3782 8224 6310 005\",\"exp_month\":1,\"exp_year\":$YEAR,\"cvc\":\"4821\",\"cardholder_name\":\"AMEX HOLDER\"}"
[ "$R_STATUS" = 201 ] && { n_tok=$((n_tok + 1)); TOKS+=("$(jq -r .token <<<"$R_BODY")"); }
check "6 cards tokenized (201)" test "$n_tok" = 6
T0=${TOKS[0]}
# errors on purpose: an invalid PAN, an unknown key, a missing token
card_body B "4532000000001235" 999 "BAD PAN HOLDER"
tok_post "$B"
check "invalid PAN: 400 invalid_pan" test "$R_STATUS:$R_CODE" = 400:invalid_pan
rt_req GET "$SC_URL/v1/tokens/${TOKS[0]}" -H "Authorization: Bearer sk_$(printf 'A%.0s' $(seq 43))"
check "unknown key: 401" test "$R_STATUS" = 401
rt_req POST "$SC_URL/v1/tokens/${TOKS[0]}/detokenize" -H "Authorization: Bearer $M_DK"
check "detokenize: 200" test "$R_STATUS" = 200
rt_req GET "$SC_URL/v1/tokens/${TOKS[1]}" -H "Authorization: Bearer $M_SK"
check "read: 200" test "$R_STATUS" = 200

# --- API key in the query string
ok_q=1
for qs in "api_key=$M_SK" "key=$M_SK" "access_token=$M_DK" "foo=$M_PK" "apikey=whatever"; do
  rt_req GET "$SC_URL/v1/tokens/${TOKS[1]}?$qs" -H "Authorization: Bearer $M_SK"
  [ "$R_STATUS:$R_CODE" = 400:api_key_in_query ] || { ok_q=0; echo "# ?${qs%%=*}=...: $R_STATUS $R_CODE"; }
done
rt_req POST "$SC_URL/v1/tokens?api_key=$M_PK" -H 'Content-Type: application/json' --data-binary '{}'
[ "$R_STATUS:$R_CODE" = 400:api_key_in_query ] || { ok_q=0; echo "# POST ?api_key=: $R_STATUS $R_CODE"; }
rt_req GET "$SC_URL/v1/tokens/${TOKS[1]}?api_key=$M_SK"
[ "$R_STATUS:$R_CODE" = 400:api_key_in_query ] || { ok_q=0; echo "# without header: $R_STATUS $R_CODE"; }
check "API key in the query string (api_key, key, access_token, any pk_/sk_/dk_ value; with or without a header): 400 api_key_in_query" \
  test "$ok_q" = 1
check "api_key_in_query is logged as an event" grep -q '"event":"api_key_in_query"' "$SC_SERVICE_LOG"

# --- /metrics
rt_req GET "$SC_OPS_URL/metrics"
cp "$SC_DIR/b" "$SC_DIR/metrics.txt"
check "/metrics: 200" test "$R_STATUS" = 200
ct=$(hdr Content-Type)
check "/metrics Content-Type is text/plain; version=0.0.4 ($ct)" eval '[[ "$ct" == text/plain*version=0.0.4* ]]'
M="$SC_DIR/metrics.txt"
mval() { awk -v k="$1" '$1 == k { print $2 }' "$M"; }
check "cardvault_http_requests_total{route=\"/v1/tokens\",method=\"POST\",status=\"201\"} = 6" \
  test "$(mval 'cardvault_http_requests_total{route="/v1/tokens",method="POST",status="201"}')" = 6
check "http_requests_total has route and status labels for 400 and 401 too" \
  eval "grep -q '^cardvault_http_requests_total{route=\"/v1/tokens\",method=\"POST\",status=\"400\"}' '$M' && grep -q '^cardvault_http_requests_total{route=\"[^\"]*\",method=\"[A-Z]*\",status=\"401\"}' '$M'"
check "# TYPE cardvault_http_request_duration_seconds histogram" grep -q '^# TYPE cardvault_http_request_duration_seconds histogram$' "$M"
check "duration histogram for /v1/tokens: _bucket, +Inf, _sum, _count (count >= 7)" \
  eval "grep -q '^cardvault_http_request_duration_seconds_bucket{route=\"/v1/tokens\",method=\"POST\",le=\"+Inf\"}' '$M' &&
        grep -q '^cardvault_http_request_duration_seconds_sum{route=\"/v1/tokens\",method=\"POST\"}' '$M' &&
        [ \"\$(mval 'cardvault_http_request_duration_seconds_count{route=\"/v1/tokens\",method=\"POST\"}')\" -ge 7 ]"
check "cardvault_tokenize_total = 6 ($(mval cardvault_tokenize_total))" test "$(mval cardvault_tokenize_total)" = 6
check "cardvault_detokenize_total = 1 ($(mval cardvault_detokenize_total))" test "$(mval cardvault_detokenize_total)" = 1
check "cardvault_db_pool_connections_in_use is a gauge with a value" \
  eval "grep -q '^# TYPE cardvault_db_pool_connections_in_use gauge$' '$M' && [ -n \"\$(mval cardvault_db_pool_connections_in_use)\" ]"
check "cardvault_dek_rotations_total is a counter with a value" \
  eval "grep -q '^# TYPE cardvault_dek_rotations_total counter$' '$M' && [ -n \"\$(mval cardvault_dek_rotations_total)\" ]"
check "cardvault_errors_total by code: invalid_pan, invalid_api_key, api_key_in_query" \
  eval "[ \"\$(mval 'cardvault_errors_total{code=\"invalid_pan\"}')\" = 1 ] &&
        [ \"\$(mval 'cardvault_errors_total{code=\"invalid_api_key\"}')\" -ge 1 ] &&
        [ \"\$(mval 'cardvault_errors_total{code=\"api_key_in_query\"}')\" -ge 7 ]"
check "no token value or key in /metrics" eval "! grep -qE 'tok_|sk_|pk_|dk_' '$M'"

# A text-format check that needs no Prometheus: every sample line is
# name{labels} value, every family has one HELP and one TYPE before its
# samples, no series (name and label set) appears twice, histogram buckets
# are cumulative and end with +Inf = _count.
prom_lint() {
  awk '
    function fail(msg) { print "line " NR ": " msg ": " $0; bad = 1 }
    /^# HELP / { if (help[$3]++) fail("second HELP"); next }
    /^# TYPE / { if ($3 in type) fail("second TYPE"); type[$3] = $4
                 if ($4 !~ /^(counter|gauge|histogram|summary|untyped)$/) fail("bad type"); next }
    /^#/ || /^$/ { next }
    {
      if ($0 !~ /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="[^"]*"(,[a-zA-Z_][a-zA-Z0-9_]*="[^"]*")*\})? [^ ]+$/) { fail("syntax"); next }
      if (seen[$1]++) { fail("duplicate series"); dup[$1] = 1; next }
      v = $NF
      if (v !~ /^[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$/ && v !~ /^([-+]?Inf|NaN)$/) fail("value")
      name = $1; sub(/\{.*/, "", name); fam = name
      if (!(fam in type)) { fam = name; sub(/_(bucket|sum|count)$/, "", fam) }
      if (!(fam in type)) { fail("sample before its TYPE"); next }
      if (type[fam] == "counter" && v + 0 < 0) fail("negative counter")
      if (type[fam] == "histogram" && name ~ /_bucket$/) {
        key = $1; le = key; sub(/.*le="/, "", le); sub(/".*/, "", le)
        sub(/,?le="[^"]*"/, "", key)
        if (key in last && v + 0 < last[key]) fail("bucket not cumulative")
        if (key in lastle && le != "+Inf" && le + 0 <= lastle[key]) fail("le not increasing")
        last[key] = v + 0; lastle[key] = le + 0; if (le == "+Inf") inf[key] = v + 0
      }
      if (type[fam] == "histogram" && name ~ /_count$/) {
        key = $1; sub(/_count/, "_bucket", key); cnt[key] = v + 0
      }
    }
    END {
      for (k in cnt) if (!(k in inf) || inf[k] != cnt[k]) { print "histogram " k ": +Inf bucket != _count"; bad = 1 }
      exit bad
    }' "$1"
}
lint=$(prom_lint "$M"); rc=$?
[ "$(wc -l <<<"$lint")" -gt 3 ] && lint="$(head -3 <<<"$lint") ... ($(wc -l <<<"$lint") problems)"
check "/metrics passes the text-format and histogram check${lint:+: $lint}" test "$rc" = 0
printf 'cardvault_broken{route="x" 1\n' >"$SC_DIR/metrics.bad"; cat "$M" >>"$SC_DIR/metrics.bad"
check "control: the format check rejects a broken line" eval '! prom_lint "$SC_DIR/metrics.bad" >/dev/null'
if command -v promtool >/dev/null; then
  out=$(promtool check metrics <"$M" 2>&1); rc=$?
  check "promtool check metrics${out:+: $out}" test "$rc" = 0
else
  echo "# promtool not installed (Debian package prometheus): promtool check metrics skipped"
fi

# ============================================================== graceful shutdown (SIGTERM)
section graceful shutdown under load, SIGTERM
# Requests held in flight: a psql session locks the tokens table, so these
# tokenize requests block on their INSERT until the lock goes (2.5 s).
hold_tokens_table() { # SECONDS
  psql -X -q -d cardvault >/dev/null 2>&1 <<SQL &
BEGIN;
LOCK TABLE tokens IN EXCLUSIVE MODE;
SELECT pg_sleep($1);
COMMIT;
SQL
  LOCK_PID=$!
  for _ in $(seq 1 50); do
    [ "$(q "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = 'tokens' AND l.mode = 'ExclusiveLock' AND l.granted")" -ge 1 ] && return 0
    sleep 0.1
  done
  return 1
}
# held_requests N PREFIX KEY: N tokenize requests in the background (pids in HELD_PIDS).
held_requests() {
  local i b; HELD_PIDS=()
  for ((i = 0; i < $1; i++)); do
    card_body b "$(luhn_pan 6011 $((3000 + RANDOM)))" "$((100 + i))" "HELD HOLDER $i"
    curl -s -o "$SC_DIR/$2.$i" -w '%{http_code}' --max-time 25 -X POST "$SC_URL/v1/tokens" \
      -H "Authorization: Bearer ${3:-$M_PK}" -H 'Content-Type: application/json' --data-binary "$b" \
      >"$SC_DIR/$2.$i.s" 2>/dev/null &
    HELD_PIDS+=($!)
  done
}
held_result() { # PREFIX N: "status..." of each
  local i out=""
  for ((i = 0; i < $2; i++)); do out+="$(cat "$SC_DIR/$1.$i.s" 2>/dev/null || echo none) "; done
  echo "${out% }"
}

# Load: 4 workers, each a loop of fresh-connection reads. A line per request:
# start_ns end_ns status time_connect time_total exitcode.
rm -f "$SC_DIR/load.stop"
load_worker() {
  local s r rc
  while [ ! -e "$SC_DIR/load.stop" ]; do
    s=$(date +%s%N)
    r=$(curl -s -o /dev/null -w '%{http_code} %{time_connect} %{time_total}' --max-time 25 \
      "$SC_URL/v1/tokens/$T0" -H "Authorization: Bearer $M_SK" 2>/dev/null)
    rc=$?
    echo "$s $(date +%s%N) $r $rc"
  done >"$SC_DIR/load.$1"
}
hold_tokens_table 3 || not_ok "could not lock the tokens table"
held_requests 3 held
for _ in $(seq 1 60); do  # until their INSERT waits for the lock
  [ "$(q "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query ILIKE '%INSERT INTO tokens%'")" -ge 1 ] && break
  sleep 0.05
done
LOAD_PIDS=()
for w in 1 2 3 4; do load_worker $w & LOAD_PIDS+=($!); done
sleep 1
rt_signal TERM
sig_ns=$((SIG_MS * 1000000))
sleep 0.3
rt_req GET "$SC_OPS_URL/readyz"
check "during the drain grace /readyz: 503 with Retry-After (draining)" \
  eval '[ "$R_STATUS" = 503 ] && [ -n "$(hdr Retry-After)" ]'
echo "# /readyz while draining: $R_BODY"
rt_req GET "$SC_URL/v1/tokens/$T0" -H "Authorization: Bearer $M_SK"
echo "# API request while draining: status $R_STATUS, code ${R_CODE:-none}, $R_MS ms after $(( $(now_ms) - SIG_MS - R_MS )) ms"
check "during the drain grace an API request is still served: 200" test "$R_STATUS" = 200
refused_at=""
while [ $(($(now_ms) - SIG_MS)) -lt 9000 ]; do
  curl -s -o /dev/null --max-time 2 "$SC_URL/healthz" 2>/dev/null
  [ $? = 7 ] && { refused_at=$(($(now_ms) - SIG_MS)); break; }
  sleep 0.05
done
check "after the grace new connections are refused (at ${refused_at:-never} ms; grace 5000 ms)" \
  eval '[ -n "$refused_at" ] && [ "$refused_at" -ge 4900 ] && [ "$refused_at" -le 8000 ]'
rt_wait_exit 25
touch "$SC_DIR/load.stop"; wait "${HELD_PIDS[@]}" 2>/dev/null
wait "$LOCK_PID" 2>/dev/null
sleep 0.3
check "SIGTERM: exit 0 (rc $STOP_RC)" test "$STOP_RC" = 0
check "SIGTERM: exited within 20 s (${STOP_MS} ms; lock held 3 s)" test "$STOP_MS" -lt 20000
check "SIGTERM: the 3 requests held in flight completed with 201 ($(held_result held 3))" \
  test "$(held_result held 3)" = "201 201 201"
n_held=$(q "SELECT count(*) FROM tokens t WHERE t.created_at > now() - interval '60 seconds' AND t.bin = '601100'")
check "SIGTERM: their tokens are committed ($n_held)" test "$n_held" -ge 3
wait "${LOAD_PIDS[@]}" 2>/dev/null
cat "$SC_DIR"/load.? >"$SC_DIR/load.all"
# A request's connection was surely established before the signal when
# end - (total - connect) < signal time.
read -r pre bad post_refused post_other < <(awk -v T="$sig_ns" '
  { conn = $2 - ($5 - $4) * 1e9
    if ($6 == 0 && $4 > 0 && conn < T) { pre++; if (!($3 == 200 || $3 == 503)) bad++ ; next }
    if ($4 > 0 && conn < T) { pre++; bad++; print "in-flight failure: " $0 > "/dev/stderr"; next }
    if ($6 == 7) pr++; else if ($6 != 0) po++ }
  END { print pre + 0, bad + 0, pr + 0, po + 0 }' "$SC_DIR/load.all")
echo "# load: $(wc -l <"$SC_DIR/load.all") requests; $pre connected before SIGTERM, $post_refused refused after, $post_other other failures after"
check "SIGTERM under load: all $pre requests connected before the signal got a full answer (200 or 503), $bad failed" \
  test "$pre" -ge 4 -a "$bad" = 0
check "log: service_stopping (SIGTERM) and service_stopped" \
  eval "grep -q '\"event\":\"service_stopping\",\"signal\":\"SIGTERM\"' '$SC_SERVICE_LOG' && grep -q '\"event\":\"service_stopped\"' '$SC_SERVICE_LOG'"

# ============================================================== rate limit, connection limits, SIGINT
section rate limit and connection limits
rt_start "$SC_URL" CARDVAULT_RATE_LIMIT_RPS=5 CARDVAULT_RATE_LIMIT_BURST=5 \
  CARDVAULT_CONNECTION_TIMEOUT_S=2 CARDVAULT_MAX_CONNECTIONS_PER_IP=4 ||
  { echo "service did not start"; tail "$RT_ERR"; exit 1; }

# Burst of 20 reads with the secret key, as fast as one connection allows.
urls=()
for i in $(seq 1 20); do urls+=(-o /dev/null "$SC_URL/v1/tokens/$T0"); done
curl -s --max-time 20 -H "Authorization: Bearer $M_SK" \
  -w '%{http_code} %header{retry-after}\n' "${urls[@]}" >"$SC_DIR/burst" 2>/dev/null
n200=$(grep -c '^200' "$SC_DIR/burst"); n429=$(grep -c '^429' "$SC_DIR/burst")
echo "# burst of 20: $n200 x 200, $n429 x 429"
check "burst of 20 at 5 rps / burst 5: 5-7 served, the rest 429" \
  eval '[ "$n200" -ge 5 ] && [ "$n200" -le 7 ] && [ $((n200 + n429)) = 20 ]'
check "every 429 has an integer Retry-After >= 1" \
  eval "awk '\$1 == 429 && !(\$2 ~ /^[0-9]+\$/ && \$2 >= 1) { bad = 1 } END { exit bad }' '$SC_DIR/burst'"
# Empty the bucket again first: on a busy machine the burst above can take
# long enough for the 5 rps refill to hand this request a token. This check
# is about the 429's body, not the rate: up to 5 tries to meet one.
for _ in 1 2 3 4 5; do
  curl -s --max-time 20 -H "Authorization: Bearer $M_SK" "${urls[@]:0:20}" >/dev/null 2>&1
  rt_req GET "$SC_URL/v1/tokens/$T0" -H "Authorization: Bearer $M_SK"
  [ "$R_STATUS" = 429 ] && break
done
ra=$(hdr Retry-After)
check "429 body: rate_limit_error / rate_limited, Retry-After $ra" \
  eval '[ "$R_STATUS:$R_CODE" = 429:rate_limited ] && [ "$(jq -r .error.type <<<"$R_BODY")" = rate_limit_error ]'
card_body B "$(luhn_pan 4716 4000)" 246 "OTHER KEY HOLDER"
tok_post "$B" "$M_PK"
check "another key of the same merchant is unaffected (tokenize with pk: 201)" test "$R_STATUS" = 201
tok_post "$B" "$B_PK"
check "another merchant's key is unaffected (201)" test "$R_STATUS" = 201
rt_req GET "$SC_URL/healthz"
check "/healthz is not rate limited" test "$R_STATUS" = 200
sleep "${ra:-1}"; sleep 0.3
rt_req GET "$SC_URL/v1/tokens/$T0" -H "Authorization: Bearer $M_SK"
check "after Retry-After the key is served again (200)" test "$R_STATUS" = 200

# --- per-IP connection limit (done first: held connections time out after 2 s)
exec 5<>"/dev/tcp/127.0.0.1/$PORT" 6<>"/dev/tcp/127.0.0.1/$PORT" 7<>"/dev/tcp/127.0.0.1/$PORT" 8<>"/dev/tcp/127.0.0.1/$PORT"
sleep 0.2
r5=$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 "$SC_URL/healthz" 2>/dev/null); rc5=$?
exec 5<&- 5>&-
sleep 0.3
r4=$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 "$SC_URL/healthz" 2>/dev/null)
exec 6<&- 7<&- 8<&- 6>&- 7>&- 8>&-
check "MAX_CONNECTIONS_PER_IP=4: a 5th connection while 4 are held gets no answer (curl exit $rc5, status ${r5:-none})" \
  test "${r5:-000}" = 000 -a "$rc5" != 0
check "once one of the 4 closes, a new connection is served (${r4:-none})" test "$r4" = 200
check "per-IP refusal logged by the HTTP library" grep -q '"event":"http_library"' "$SC_SERVICE_LOG"

# --- connection timeout: an idle connection and a half-sent request
# closed_after FD-LESS: opens a connection, optionally sends $1, prints ms until EOF.
closed_after() {
  local t0 t1
  exec 3<>"/dev/tcp/127.0.0.1/$PORT" || { echo -1; return; }
  [ -n "$1" ] && printf '%b' "$1" >&3
  t0=$(now_ms)
  timeout 10 cat <&3 >/dev/null 2>&1
  t1=$(now_ms)
  exec 3<&- 3>&-
  echo $((t1 - t0))
}
closed_after "" >"$SC_DIR/idle.ms" &
p1=$!
closed_after 'GET /healthz HTTP/1.1\r\nHost: x\r\n' >"$SC_DIR/half.ms" &
p2=$!
wait $p1 $p2
idle=$(cat "$SC_DIR/idle.ms"); half=$(cat "$SC_DIR/half.ms")
check "CONNECTION_TIMEOUT_S=2: an idle connection is closed after ~2 s (${idle} ms)" \
  test "$idle" -ge 1500 -a "$idle" -le 4500
check "CONNECTION_TIMEOUT_S=2: a half-sent request is closed after ~2 s (${half} ms)" \
  test "$half" -ge 1500 -a "$half" -le 4500
# A keep-alive connection between two requests: the second, sent after the
# timeout, finds the connection closed (curl reconnects; count new connects).
n=$(curl -s -o /dev/null -o /dev/null -w '%{num_connects}\n' "$SC_URL/healthz" --next -s -o /dev/null \
  -w '%{num_connects}\n' "$SC_URL/healthz" | paste -sd' ')
check "a keep-alive connection serves a second request (connects: $n)" test "$n" = "1 0"

section SIGINT
hold_tokens_table 2 || not_ok "could not lock the tokens table"
held_requests 2 heldint "$B_PK"
for _ in $(seq 1 60); do
  [ "$(q "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query ILIKE '%INSERT INTO tokens%'")" -ge 1 ] && break
  sleep 0.05
done
sleep 0.3
rt_signal INT
rt_wait_exit 25
wait "${HELD_PIDS[@]}" 2>/dev/null; wait "$LOCK_PID" 2>/dev/null
check "SIGINT: exit 0 (rc $STOP_RC) within 20 s (${STOP_MS} ms)" test "$STOP_RC" = 0 -a "$STOP_MS" -lt 20000
check "SIGINT: the 2 requests held in flight completed with 201 ($(held_result heldint 2))" \
  test "$(held_result heldint 2)" = "201 201"
check "log: service_stopping (SIGINT)" grep -q '"event":"service_stopping","signal":"SIGINT"' "$SC_SERVICE_LOG"
curl -s -o /dev/null --max-time 2 "$SC_URL/healthz" 2>/dev/null
check "after exit nothing listens (connection refused)" test $? = 7

# ============================================================== drain bound: results
section "drain bound: results"
wait "$S_WATCH_PID"
wait "$S_PID"; s_rc=$?
s_ms=$(($(cat "$SC_DIR/stuck.exit_ms") - S_SIG_MS))
wait "$S_CURL_PID"
echo "# stuck request: status $(cat "$SC_DIR/stuck.status"); service exit $s_rc after $s_ms ms (database lock held ~29 s after the signal)"
check "drain bound: shutdown_drain_timeout logged with the request still in flight" \
  eval "grep -q '\"event\":\"shutdown_drain_timeout\",\"requests_in_flight\":1' '$S_LOG'"
check "drain bound: SIGTERM with a request stuck in the database exits within 24 s, before the lock ends ($s_ms ms)" \
  test "$s_ms" -le 24000
check "drain bound: exit 0 (rc $s_rc)" test "$s_rc" = 0
wait "$S_LOCK_PID" 2>/dev/null

# ============================================================== database outage
section database outage
rt_start "$SC_URL" || { echo "service did not start"; tail "$RT_ERR"; exit 1; }
sc_pg_stop fast
check "PostgreSQL stopped" eval '! psql -X -Atc "SELECT 1" -d cardvault >/dev/null 2>&1'
outage_ok=1 slow=0
for i in 1 2 3; do
  card_body B "$(luhn_pan 4916 $((2000 + i)))" "$((700 + i))" "OUTAGE HOLDER $i"
  tok_post "$B"
  ra=$(hdr Retry-After)
  [ "$R_MS" -lt 6000 ] || slow=1
  [[ "$R_STATUS:$R_CODE" == 503:service_unavailable && "$ra" =~ ^[0-9]+$ ]] ||
    { outage_ok=0; echo "# tokenize during outage: $R_STATUS $R_CODE Retry-After=$ra in ${R_MS} ms"; }
  rt_req GET "$SC_URL/v1/tokens/$T0" -H "Authorization: Bearer $M_SK"
  ra=$(hdr Retry-After)
  [ "$R_MS" -lt 6000 ] || slow=1
  [[ "$R_STATUS:$R_CODE" == 503:service_unavailable && "$ra" =~ ^[0-9]+$ ]] ||
    { outage_ok=0; echo "# read during outage: $R_STATUS $R_CODE Retry-After=$ra in ${R_MS} ms"; }
done
echo "# last request during the outage took ${R_MS} ms"
check "during the outage tokenize and read answer 503 service_unavailable with Retry-After" test "$outage_ok" = 1
check "during the outage every answer came in < 6 s" test "$slow" = 0
rt_req POST "$SC_URL/v1/tokens/$T0/detokenize" -H "Authorization: Bearer $M_DK"
check "during the outage detokenize: 503 (${R_MS} ms)" test "$R_STATUS" = 503 -a "$R_MS" -lt 6000
rt_req GET "$SC_OPS_URL/readyz"
check "during the outage /readyz: 503, database unavailable, Retry-After (${R_MS} ms)" \
  eval '[ "$R_STATUS" = 503 ] && [ "$(jq -r .checks.database <<<"$R_BODY")" = unavailable ] && [ -n "$(hdr Retry-After)" ] && [ "$R_MS" -lt 6000 ]'
rt_req GET "$SC_URL/healthz"
check "during the outage /healthz: 200 (liveness does not touch the database)" test "$R_STATUS" = 200
rt_req GET "$SC_URL/v1/tokens/$T0" -H "Authorization: Bearer sk_$(printf 'Z%.0s' $(seq 43))"
check "during the outage an unknown key still gets 401 (keys checked from memory)" test "$R_STATUS" = 401
sc_pg_start || not_ok "PostgreSQL restarted"
t0=$(now_ms) ready=""
while [ $(($(now_ms) - t0)) -lt 15000 ]; do
  rt_req GET "$SC_OPS_URL/readyz"
  [ "$R_STATUS" = 200 ] && { ready=$(($(now_ms) - t0)); break; }
  sleep 0.2
done
check "after PostgreSQL returns /readyz is 200 within 10 s, no restart (${ready:-never} ms)" \
  eval '[ -n "$ready" ] && [ "$ready" -le 10000 ]'
card_body B "$(luhn_pan 4916 2100)" 808 "RECOVERED HOLDER"
tok_post "$B"
check "after recovery tokenize: 201" test "$R_STATUS" = 201
rt_req GET "$SC_URL/v1/tokens/$T0" -H "Authorization: Bearer $M_SK"
check "after recovery read of an earlier token: 200" test "$R_STATUS" = 200
rt_req POST "$SC_URL/v1/tokens/$T0/detokenize" -H "Authorization: Bearer $M_DK"
check "after recovery detokenize: 200" test "$R_STATUS" = 200
check "the service kept running through the outage (same pid)" kill -0 "$SC_SERVICE_PID"
rt_req GET "$SC_OPS_URL/metrics"
su=$(awk '$1 == "cardvault_errors_total{code=\"service_unavailable\"}" { print $2 }' "$SC_DIR/b")
check "metrics count the outage: errors_total{code=\"service_unavailable\"} >= 7 (${su:-none})" \
  eval '[ -n "$su" ] && [ "$su" -ge 7 ]'

rt_stop
check "service stops with exit 0 after the outage" test "$STOP_RC" = 0

# ============================================================== logs
section logs
cat "$SC_SERVICE_LOG" "$S_LOG" >"$SC_DIR/all.log"
L="$SC_DIR/all.log"
nl=$(wc -l <"$L")
nonobj=$(jq -R -r 'try (fromjson | if type == "object" then empty else "not an object" end) catch "not JSON"' "$L" | wc -l)
check "every one of the $nl stdout lines is a JSON object ($nonobj are not)" test "$nonobj" = 0 -a "$nl" -gt 50
nobase=$(jq -R -c 'fromjson? | select((has("ts") and has("level") and has("event")) | not)' "$L" | wc -l)
check "every log line has ts, level and event ($nobase lack one)" test "$nobase" = 0
nreq=$(jq -R -c 'fromjson? | select(.event == "http_request")' "$L" | wc -l)
badreq=$(jq -R -c 'fromjson? | select(.event == "http_request")
  | select((has("request_id") and has("merchant_id") and has("route") and has("status") and has("duration_ms")
            and (.request_id | type == "string" and test("^req_[0-9A-Za-z]{20}$"))
            and (.status | type == "number") and (.duration_ms | type == "number")
            and (.route | type == "string" and (test("tok_") | not)))
           | not)' "$L")
check "all $nreq http_request lines have request_id, merchant_id, route (a pattern), status, duration_ms${badreq:+: $(head -c 300 <<<"$badreq")}" \
  test -z "$badreq" -a "$nreq" -gt 20
nomer=$(jq -R -c 'fromjson? | select(.event == "http_request" and .status < 300 and (.route | startswith("/v1/")) and .merchant_id == null)' "$L" | wc -l)
check "every successful API request line names its merchant ($nomer do not)" test "$nomer" = 0
line=$(jq -R -c --arg r "$RID1" 'fromjson? | select(.event == "http_request" and .request_id == $r)' "$L")
check "the first tokenize's X-Request-Id is in the log with merchant, route and status 201" \
  eval '[ "$(jq -r "[.merchant_id, .route, .status] | @tsv" <<<"$line")" = "$M_ID	/v1/tokens	201" ]'
check "the stderr of every service run is empty ($(wc -c <"$RT_ERR") bytes)" test ! -s "$RT_ERR"

# No PAN (beyond BIN and last 4), CVC or cardholder name sent during the run.
# log_search FILE: "pans cvcs names keys" found.
log_search() {
  local pf="$SC_DIR/lp" cf="$SC_DIR/lc" nf="$SC_DIR/ln" kf="$SC_DIR/lk" v
  : >"$pf"; : >"$cf"; : >"$nf"
  for v in "${SENT_PANS[@]}"; do
    echo "$v"; echo "$v" | sed -E 's/(....)/\1 /g; s/ $//'; echo "$v" | sed -E 's/(....)/\1-/g; s/-$//'
  done >"$pf"
  for v in "${SENT_CVCS[@]}"; do printf '"cvc":"%s"\n"cvc": "%s"\n' "$v" "$v"; done >"$cf"
  echo '"cvc"' >>"$cf"
  printf '%s\n' "${SENT_NAMES[@]}" >"$nf"
  printf '%s\n' "$M_PK" "$M_SK" "$M_DK" "$B_PK" "${M_SK:3}" >"$kf"
  echo "$(grep -Fo -f "$pf" "$1" | wc -l) $(grep -Fo -f "$cf" "$1" | wc -l) $(grep -Fio -f "$nf" "$1" | wc -l) $(grep -Fo -f "$kf" "$1" | wc -l)"
}
r=$(log_search "$L")
check "log: no PAN (plain, spaced, hyphenated), CVC, name or full API key (found: $r)" test "$r" = "0 0 0 0"
r=$(log_search "$RT_ERR")
check "stderr: none either (found: $r)" test "$r" = "0 0 0 0"
# More than BIN + last 4 of any card is a run of 11 or more digits.
long_digits() { grep -Eo '[0-9]{11,}' "$1" | head -3 | tr '\n' ' '; }
long=$(long_digits "$L")
check "log: no run of 11 or more digits${long:+ ($long)}" test -z "$long"
cp "$L" "$SC_DIR/planted.log"
p=${SENT_PANS[2]}
printf '{"x":"%s"}\n{"cvc":"%s"}\n{"n":"%s"}\n{"k":"%s"}\n' "$(echo "$p" | sed -E 's/(....)/\1-/g; s/-$//')" \
  "${SENT_CVCS[1]}" "${SENT_NAMES[3]}" "$M_SK" >>"$SC_DIR/planted.log"
r=$(log_search "$SC_DIR/planted.log")
check "control: planted PAN (hyphenated), CVC, name and key are found (found: $r)" \
  eval '[ "$(cut -d" " -f1,3,4 <<<"$r")" = "1 1 1" ] && [ "$(cut -d" " -f2 <<<"$r")" -ge 1 ]'
printf '{"pan_digits":"%s"}\n' "${p:0:11}" >>"$SC_DIR/planted.log"
check "control: the digit-run search finds 11 planted digits" test -n "$(long_digits "$SC_DIR/planted.log")"

cd "$SC_ROOT" || true
[ -n "${RT_KEEP:-}" ] && { cp -r "$SC_DIR" "$RT_KEEP"; }
sc_finish runtime
