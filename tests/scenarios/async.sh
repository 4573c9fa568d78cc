#!/usr/bin/env bash
# The request path that waits for its batch without holding a thread.
#
#   tests/scenarios/async.sh [build/release/cardvault]
#
# On its own PostgreSQL cluster (tests/lib/scenario.sh), with the API on an
# epoll pool of only 2 threads (CARDVAULT_HTTP_THREADS=2), it holds the tokens
# table locked from a psql session, so every batch of token writes waits, and
# checks:
#   - 64 concurrent tokenizes are all taken in while the lock is held, and
#     the pool keeps serving: a read of an existing token (its batched read
#     is not blocked by the lock) and a malformed-token read answer within
#     2 s each; a pool whose threads waited for their batch would have both
#     threads stuck and answer neither;
#   - once the lock is released, all 64 answer 201, each token is in the
#     database, and the answers carry 64 distinct tokens;
#   - detokenize and read answer 200 with the card's data through the same path;
#   - a shutdown (SIGTERM) while 16 tokenizes are suspended on the held lock:
#     each of them still gets its answer (201, committed) once the lock is
#     released, and the service exits 0;
#   - the same two checks with a thread per connection (CARDVAULT_HTTP_THREADS=0).
# Ends with "async: N passed, N failed" (sc_finish).
SUITE=async
# shellcheck source=tests/lib/scenario.sh
. "$(dirname "$0")/../lib/scenario.sh"

require_tools jq curl psql openssl timeout

cd "$SC_ROOT" || exit 2 # migrate reads ./migrations
sc_setup
sc_merchant "Async Shop" || {
  echo "merchant create failed"
  exit 1
}
YEAR=$(($(date -u +%Y) + 2))
section() { echo "# [${SECONDS}s] $*"; }

LOCK_PID=""
# hold_tokens_table SECONDS: a psql session holds the tokens table in
# EXCLUSIVE mode (writes wait, reads do not) for SECONDS; 0 once granted.
hold_tokens_table() {
  psql -X -q -d cardvault >/dev/null 2>&1 <<SQL &
BEGIN;
LOCK TABLE tokens IN EXCLUSIVE MODE;
SELECT pg_sleep($1);
COMMIT;
SQL
  LOCK_PID=$!
  for _ in $(seq 1 50); do
    [ "$(q "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
            WHERE c.relname = 'tokens' AND l.mode = 'ExclusiveLock' AND l.granted")" -ge 1 ] && return 0
    sleep 0.1
  done
  return 1
}
release_tokens_table() {
  q "SELECT pg_cancel_backend(pid) FROM pg_stat_activity
     WHERE query LIKE 'SELECT pg_sleep%' AND pid <> pg_backend_pid()" >/dev/null
  wait "$LOCK_PID" 2>/dev/null
  LOCK_PID=""
}
# waiting_inserts: token writes now waiting for the lock.
waiting_inserts() {
  q "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND usename = 'cardvault_app'"
}

# background_tokenizes N PREFIX: N tokenizes in the background (pids in PIDS).
background_tokenizes() {
  local i pan
  PIDS=()
  for ((i = 0; i < $1; i++)); do
    pan=$(luhn_pan 4000$((RANDOM % 10))$((RANDOM % 10)) $((10000 + i)))
    curl -s -o "$SC_DIR/$2.$i" -w '%{http_code}' --max-time 40 -X POST "$SC_URL/v1/tokens" \
      -H "Authorization: Bearer $M_PK" -H 'Content-Type: application/json' \
      --data-binary "{\"pan\":\"$pan\",\"exp_month\":9,\"exp_year\":$YEAR,\"cvc\":\"123\"}" \
      >"$SC_DIR/$2.$i.s" 2>/dev/null &
    PIDS+=($!)
  done
}
# count_status PREFIX N STATUS: how many of the N answered STATUS.
count_status() {
  local i n=0
  for ((i = 0; i < $2; i++)); do
    [ "$(cat "$SC_DIR/$1.$i.s" 2>/dev/null)" = "$3" ] && n=$((n + 1))
  done
  echo "$n"
}
# tokens_recorded PREFIX N: how many distinct tokens the answers carry that are in the database.
tokens_recorded() {
  local i list="" n t
  for ((i = 0; i < $2; i++)); do
    t=$(jq -r '.token // empty' "$SC_DIR/$1.$i" 2>/dev/null)
    [ -n "$t" ] && list+="'$t',"
  done
  [ -n "$list" ] || {
    echo 0
    return
  }
  n=$(q "SELECT count(DISTINCT token) FROM tokens WHERE merchant_id = '$M_ID' AND token IN (${list%,})")
  echo "$n"
}

# run_mode NAME [VAR=value...]: the checks on one threading mode.
run_mode() {
  local mode=$1 t0 ms
  shift
  section "$mode: start"
  need "$mode: service starts" sc_start "$@"
  tokenize 4111111111111111 9 "$YEAR"
  need "$mode: a first tokenize answers 201" [ "$SC_STATUS" = 201 ]
  local first
  first=$(jq -r .token <<<"$SC_BODY")

  section "$mode: 64 tokenizes against a held lock"
  need "$mode: the tokens table is locked" hold_tokens_table 30
  background_tokenizes 64 "$mode.load"
  for _ in $(seq 1 100); do
    [ "$(waiting_inserts)" -ge 1 ] && break
    sleep 0.1
  done
  sleep 1
  t0=$(date +%s%N)
  req GET "/v1/tokens/$first" "$M_SK" "" --max-time 2
  ms=$((($(date +%s%N) - t0) / 1000000))
  check "$mode: a read answers 200 while 64 writes wait ($R_STATUS in $ms ms)" [ "$R_STATUS" = 200 ]
  req GET "/v1/tokens/tok_malformed" "$M_SK" "" --max-time 2
  check "$mode: a malformed-token read answers 404 while 64 writes wait ($R_STATUS)" [ "$R_STATUS" = 404 ]
  check "$mode: no tokenize answered while the lock is held" [ "$(count_status "$mode.load" 64 201)" = 0 ]
  release_tokens_table
  wait "${PIDS[@]}" 2>/dev/null
  check "$mode: all 64 tokenizes answered 201 after the lock ($(count_status "$mode.load" 64 201))" \
    [ "$(count_status "$mode.load" 64 201)" = 64 ]
  check "$mode: 64 distinct tokens, each in the database" [ "$(tokens_recorded "$mode.load" 64)" = 64 ]

  local tok
  tok=$(jq -r .token "$SC_DIR/$mode.load.0")
  req GET "/v1/tokens/$tok" "$M_SK" ""
  check "$mode: read 200 with last4 ($R_STATUS)" [ "$R_STATUS $(jq -r '.last4 | length' <<<"$R_BODY")" = "200 4" ]
  req POST "/v1/tokens/$tok/detokenize" "$M_DK" ""
  check "$mode: detokenize 200 with the PAN ($R_STATUS)" [ "$R_STATUS $(jq -r '.pan | length' <<<"$R_BODY")" = "200 16" ]
  check "$mode: detokenize is in the audit trail" \
    [ "$(q "SELECT count(*) FROM audit_events WHERE action = 'token.detokenize' AND token = '$tok'")" -ge 1 ]
  req POST "/v1/tokens/tok_0000000000000000000000/detokenize" "$M_DK" ""
  check "$mode: detokenize of an unknown token 404" [ "$R_STATUS" = 404 ]

  section "$mode: SIGTERM with 16 tokenizes waiting"
  need "$mode: the tokens table is locked again" hold_tokens_table 4
  background_tokenizes 16 "$mode.stop"
  for _ in $(seq 1 100); do
    [ "$(waiting_inserts)" -ge 1 ] && break
    sleep 0.1
  done
  sleep 0.5
  kill -TERM "$SC_SERVICE_PID"
  wait "${PIDS[@]}" 2>/dev/null
  wait "$LOCK_PID" 2>/dev/null
  timeout 30 tail --pid="$SC_SERVICE_PID" -f /dev/null
  wait "$SC_SERVICE_PID"
  local rc=$?
  SC_SERVICE_PID=""
  check "$mode: every waiting tokenize answered 201 through the shutdown ($(count_status "$mode.stop" 16 201))" \
    [ "$(count_status "$mode.stop" 16 201)" = 16 ]
  check "$mode: their 16 tokens are in the database" [ "$(tokens_recorded "$mode.stop" 16)" = 16 ]
  check "$mode: the service exited 0 ($rc)" [ "$rc" = 0 ]
}

run_mode pool CARDVAULT_HTTP_THREADS=2 CARDVAULT_DRAIN_GRACE_MS=0
run_mode per-connection CARDVAULT_HTTP_THREADS=0 CARDVAULT_DRAIN_GRACE_MS=0
check "no card number in the service log" bash -c "! grep -Eq '4111111111111111|\"pan\"' '$SC_SERVICE_LOG'"
sc_finish
