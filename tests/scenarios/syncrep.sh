#!/usr/bin/env bash
# A cancelled wait for the synchronous standby is never a success.
#
#   tests/scenarios/syncrep.sh build/release/cardvault
#
# With synchronous replication PostgreSQL commits on the primary first, then
# waits for the standby. If that wait is cancelled (pg_cancel_backend, a
# client's cancel request, serve's own shutdown), the server only warns
# ("canceling wait for synchronous replication due to user request") and
# reports the COMMIT as done, though the standby may never get it: after a
# failover an acknowledged token would be gone.
#
# On a private PostgreSQL cluster (tests/lib/scenario.sh) whose
# synchronous_standby_names names a standby that does not exist, so every
# write's COMMIT waits (wait_event SyncRep) until it is cancelled:
#   1. a tokenize whose COMMIT wait is cancelled answers 503
#      commit_unconfirmed with Retry-After, never 201, and logs
#      db_commit_unconfirmed; the row is there on the primary (committed
#      locally);
#   1b. a new Idempotency-Key's claim commits without waiting for the
#      standby: while the token's own COMMIT waits, the claim is visible and
#      the row is not; cancelled, that COMMIT is 503 as well;
#   2. group commit: four concurrent tokenizes (one writer thread) whose
#      COMMITs are cancelled all answer 503 commit_unconfirmed, from fewer
#      unconfirmed COMMITs than requests (a batch shares its answer), and no
#      row is written twice;
#   3. an Idempotency-Key retry: a tokenize under key K whose claim commits
#      before the standby is named (the audit chain's tip held meanwhile) and
#      whose token COMMIT wait is then cancelled answers 503; once the standby
#      requirement is lifted, the retry under K replays the committed answer
#      (201, Idempotent-Replayed, the token on the primary), no second token;
#      a retry while the standby is still missing waits for it as well (its
#      claim locks the record) and answers 503 again when that wait is cancelled;
#   4. serve refuses to start with synchronous_commit=local (and remote_write)
#      while synchronous_standby_names is set, and says why;
#   5. the same rule on every new session: after a reconnect to settings that
#      fail it (the app role's synchronous_commit=local, a standby named),
#      tokenize answers 503 and logs db_settings_refused, writing nothing;
#      once fixed, 201 again without a restart.
# Ends with "syncrep: N passed, N failed" and appends "P F" to build/test-results.
SUITE=syncrep
. "$(dirname "$0")/../lib/scenario.sh"
cd "$SC_ROOT" || exit 2
sc_pin_binary
require_tools jq curl psql

export CARDVAULT_DB_POOL_SIZE=4 CARDVAULT_DB_WRITERS=1

qpg() { psql -X -qAt -d postgres -c "$1"; }
# set_standby NAMES: synchronous_standby_names, reloaded ('' for none).
set_standby() {
  psql -X -q -d postgres -c "ALTER SYSTEM SET synchronous_standby_names = '$1'" \
    -c "SELECT pg_reload_conf()" >/dev/null
  sleep 0.5 # the checkpointer publishes the new list to every backend
}
tokens() { q "SELECT count(*) FROM tokens"; }
syncrep_waiters() { qpg "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'"; }
# cancel_syncrep_until PIDS...: cancels every backend waiting for the standby
# until the given client processes have ended (15 s at most); prints how
# many cancels were sent.
cancel_syncrep_until() {
  local sent=0 n alive
  for _ in $(seq 1 150); do
    n=$(qpg "SELECT count(pg_cancel_backend(pid)) FROM pg_stat_activity WHERE wait_event = 'SyncRep'")
    sent=$((sent + n))
    alive=0
    for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  echo "$sent"
}
# post OUT [curl args...]: a tokenize (of $PAN, else a fresh card) in the background; "STATUS" in OUT.status,
# the body in OUT.body, the headers in OUT.h. Sets POST_PID.
post() {
  local out=$1 pan
  shift
  pan=${PAN:-$(luhn_pan 4 "$((RANDOM * 32768 + RANDOM))")}
  echo "$pan" >>"$SC_DIR/pans"
  curl -s -m 30 -o "$out.body" -D "$out.h" -w '%{http_code}' -X POST "$SC_URL/v1/tokens" \
    -H "Authorization: Bearer $M_SK" -H 'Content-Type: application/json' \
    --data-binary "{\"pan\":\"$pan\",\"exp_month\":12,\"exp_year\":2031}" "$@" >"$out.status" &
  POST_PID=$!
}
# renew_keys: a tokenize with no standby named, then the standby named
# again. The keyring renews its data key's use reservation (a write, whose
# COMMIT would wait for the standby too) every 5 s; right after this one the
# next tokenizes' only waiting COMMIT is their own.
renew_keys() {
  set_standby ''
  post "$SC_DIR/renew"
  wait "$POST_PID"
  set_standby nonexistent_standby
}
code_of() { jq -r '.error.code // empty' "$1.body" 2>/dev/null; }
unconfirmed_events() { grep -c '"event":"db_commit_unconfirmed"' "$SC_SERVICE_LOG"; }

sc_setup
need "merchant created" sc_merchant syncrep
need "service starts" sc_start
echo "# cardvault $SC_BIN_ORIG, listen $SC_URL, tmp $SC_DIR"
# A first token with no standby named: the merchant's data key exists before
# any COMMIT has to wait.
post "$SC_DIR/warm"
wait "$POST_PID"
need "a tokenize without a synchronous standby answers 201" test "$(cat "$SC_DIR/warm.status")" = 201

# -- 1. one tokenize, its COMMIT wait cancelled
renew_keys
check "database names a synchronous standby" test "$(q 'SHOW synchronous_standby_names')" = nonexistent_standby
before=$(tokens)
post "$SC_DIR/one"
pid=$POST_PID
for _ in $(seq 1 100); do [ "$(syncrep_waiters)" -ge 1 ] && break; sleep 0.1; done
check "the tokenize's COMMIT waits for the standby (wait_event SyncRep)" test "$(syncrep_waiters)" -ge 1
check "the client has no answer while the COMMIT waits" kill -0 "$pid"
cancel_syncrep_until "$pid" >/dev/null
wait "$pid"
st=$(cat "$SC_DIR/one.status")
echo "# cancelled COMMIT: HTTP $st $(cat "$SC_DIR/one.body")"
check "a cancelled COMMIT wait answers 503, not 201 (got $st)" test "$st" = 503
check "its code is commit_unconfirmed" test "$(code_of "$SC_DIR/one")" = commit_unconfirmed
check "with Retry-After" grep -qi '^Retry-After: [0-9]' "$SC_DIR/one.h"
check "the row is on the primary all the same (committed locally)" test "$(tokens)" = $((before + 1))
check "the service logs db_commit_unconfirmed" grep -q '"event":"db_commit_unconfirmed"' "$SC_SERVICE_LOG"
check "no token in the body" eval '! jq -e .token "$SC_DIR/one.body" >/dev/null 2>&1'

# -- 1b. a new Idempotency-Key's claim does not wait for the standby: the
#       first COMMIT that waits is the token's own (which makes the claim
#       before it durable). A transaction waiting for the standby is not yet
#       visible to others, so while that COMMIT waits the key's in-progress
#       claim is (it committed without waiting) and the token row is not;
#       with a claim that waited, the claim itself would be invisible. (The
#       data key's use reservation from case 1 is let expire first, so
#       renew_keys takes a fresh one and no reservation waits instead.)
sleep 5
renew_keys
before=$(tokens)
KEY="syncrep-lazy-$RANDOM"
post "$SC_DIR/lazy" -H "Idempotency-Key: $KEY"
pid=$POST_PID
for _ in $(seq 1 100); do [ "$(syncrep_waiters)" -ge 1 ] && break; sleep 0.1; done
recent_keys() { q "SELECT coalesce(string_agg(state, ','), 'none') FROM idempotency_keys WHERE created_at > now() - interval '30 seconds'"; }
echo "# while it waits: $(($(tokens) - before)) new token rows, key records: $(recent_keys), waiting: $(qpg "SELECT string_agg(left(query, 40), ' | ') FROM pg_stat_activity WHERE wait_event = 'SyncRep'")"
check "a keyed tokenize waits for the standby once (SyncRep)" test "$(syncrep_waiters)" -ge 1
check "what waits is the token's COMMIT: the claim is visible (in_progress), the row not yet" \
  test "$(recent_keys):$(tokens)" = "in_progress:$before"
cancel_syncrep_until "$pid" >/dev/null
wait "$pid"
check "its cancelled wait answers 503 commit_unconfirmed (got $(cat "$SC_DIR/lazy.status"))" \
  test "$(cat "$SC_DIR/lazy.status"):$(code_of "$SC_DIR/lazy")" = 503:commit_unconfirmed
check "and then the row and the key's answer are there (committed locally)" \
  test "$(recent_keys):$(tokens)" = "done:$((before + 1))"

# -- 2. group commit: a batch's cancelled COMMIT answers every request of it
renew_keys
before=$(tokens)
events_before=$(unconfirmed_events)
pids=()
for i in 1 2 3 4; do
  post "$SC_DIR/batch$i"
  pids+=("$POST_PID")
done
sleep 1 # the first write waits for the standby; the others queue behind it
sent=$(cancel_syncrep_until "${pids[@]}")
for p in "${pids[@]}"; do wait "$p"; done
statuses=$(for i in 1 2 3 4; do cat "$SC_DIR/batch$i.status"; echo; done | sort | uniq -c | tr -s ' \n' ' ')
codes=$(for i in 1 2 3 4; do code_of "$SC_DIR/batch$i"; done | sort -u | tr '\n' ' ')
events=$(($(unconfirmed_events) - events_before))
echo "# 4 concurrent tokenizes: statuses {$statuses}, codes {$codes}, $sent cancels, $events unconfirmed COMMITs"
check "every request of the cancelled commits answers 503 commit_unconfirmed" \
  test "$statuses:$codes" = " 4 503 :commit_unconfirmed "
check "a batch shares one COMMIT: fewer unconfirmed COMMITs ($events) than requests (4)" \
  test "$events" -ge 1 -a "$events" -lt 4
check "each row written once, on the primary ($(($(tokens) - before)) new rows)" test "$(tokens)" = $((before + 4))

# -- 3. Idempotency-Key: the claim commits, the token's COMMIT wait is cancelled, a retry replays
set_standby ''
before=$(tokens)
KEY="syncrep-retry-$RANDOM"
PAN=$(luhn_pan 4 "$((RANDOM * 32768 + RANDOM))")
# hold the audit chain's tip: the token's transaction stops before its COMMIT
psql -X -q -d cardvault -c "BEGIN" -c "LOCK TABLE audit_head IN EXCLUSIVE MODE" \
  -c "SELECT pg_sleep(3)" -c "ROLLBACK" >/dev/null &
lock_pid=$!
sleep 0.5
post "$SC_DIR/idem1" -H "Idempotency-Key: $KEY"
pid=$POST_PID
sleep 1 # the claim has committed; the token waits for the audit tip
check "the key's claim committed before the standby was named" \
  test "$(q "SELECT count(*) FROM idempotency_keys WHERE state = 'in_progress'")" -ge 1
set_standby nonexistent_standby
wait "$lock_pid"
for _ in $(seq 1 100); do [ "$(syncrep_waiters)" -ge 1 ] && break; sleep 0.1; done
check "the token's COMMIT waits for the standby" test "$(syncrep_waiters)" -ge 1
cancel_syncrep_until "$pid" >/dev/null
wait "$pid"
st=$(cat "$SC_DIR/idem1.status")
echo "# under Idempotency-Key, cancelled COMMIT: HTTP $st $(code_of "$SC_DIR/idem1")"
check "the first request answers 503 commit_unconfirmed (got $st)" \
  test "$st:$(code_of "$SC_DIR/idem1")" = 503:commit_unconfirmed
local_token=$(q "SELECT token FROM tokens ORDER BY created_at DESC, token LIMIT 1")
check "its row and its answer are on the primary" \
  test "$(tokens):$(q "SELECT count(*) FROM idempotency_keys WHERE state = 'done' AND status_code = 201 AND response_body LIKE '%$local_token%'")" = "$((before + 1)):1"
# a retry while the standby is still missing: its claim locks the record, so
# it waits for the standby as well, and a cancel there is no success either
post "$SC_DIR/idem-wait" -H "Idempotency-Key: $KEY"
pid=$POST_PID
for _ in $(seq 1 100); do [ "$(syncrep_waiters)" -ge 1 ] && break; sleep 0.1; done
check "a retry while the standby is missing waits for it too (SyncRep)" test "$(syncrep_waiters)" -ge 1
cancel_syncrep_until "$pid" >/dev/null
wait "$pid"
st=$(cat "$SC_DIR/idem-wait.status")
check "and answers 503 commit_unconfirmed when that wait is cancelled (got $st)" \
  test "$st:$(code_of "$SC_DIR/idem-wait")" = 503:commit_unconfirmed
set_standby ''
post "$SC_DIR/idem2" -H "Idempotency-Key: $KEY"
wait "$POST_PID"
PAN=""
st=$(cat "$SC_DIR/idem2.status")
echo "# retry under the same key: HTTP $st $(jq -c '{token}' "$SC_DIR/idem2.body" 2>/dev/null)"
check "the retry under the same key replays 201 (got $st)" test "$st" = 201
check "marked Idempotent-Replayed" grep -qi '^Idempotent-Replayed: true' "$SC_DIR/idem2.h"
check "with the token committed on the primary" test "$(jq -r .token "$SC_DIR/idem2.body")" = "$local_token"
check "and no second token" test "$(tokens)" = $((before + 1))

# -- 4. serve refuses a synchronous_commit that does not wait for the standby
need "service stops" sc_stop
set_standby nonexistent_standby
for mode in local remote_write; do
  psql -X -q -d postgres -c "ALTER SYSTEM SET synchronous_commit = $mode" -c "SELECT pg_reload_conf()" >/dev/null
  sleep 0.3
  CARDVAULT_DATABASE_URL="$SC_APP_URL" timeout 20 "$SC_BIN" serve >"$SC_DIR/serve-$mode.out" 2>&1
  rc=$?
  echo "# serve with synchronous_commit=$mode and a synchronous standby: exit $rc: $(grep -i synchronous "$SC_DIR/serve-$mode.out" | head -1)"
  check "serve refuses synchronous_commit=$mode with a synchronous standby named (exit $rc)" \
    eval 'test "$rc" -ne 0 && test "$rc" -ne 124'
  check "the refusal names synchronous_standby_names and synchronous_commit=$mode" \
    grep -q "synchronous_standby_names.*synchronous_commit=$mode" "$SC_DIR/serve-$mode.out"
done
psql -X -q -d postgres -c "ALTER SYSTEM SET synchronous_commit = remote_apply" -c "SELECT pg_reload_conf()" >/dev/null
sleep 0.3
check "serve starts with synchronous_commit=remote_apply" sc_start
sc_stop
psql -X -q -d postgres -c "ALTER SYSTEM RESET synchronous_commit" >/dev/null
set_standby ''

# -- 5. the same rule on every reconnect (a failover may put a server with
#       weaker settings behind the same URI): refused without a restart, and
#       served again once fixed
need "service starts" sc_start
tokenize "$(luhn_pan 411111 11)" 12 2031 "$M_SK"
check "tokenize works before (got $SC_STATUS)" test "$SC_STATUS" = 201
before=$(tokens)
qpg "ALTER ROLE cardvault_app SET synchronous_commit = local"
set_standby nonexistent_standby
qpg "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = 'cardvault_app'" >/dev/null
sleep 0.3
# The first request may meet a terminated session (503 as well) before any
# reconnect: three in a row, every one 503.
codes=""
for n in 12 13 14; do
  tokenize "$(luhn_pan 411111 $n)" 12 2031 "$M_SK"
  codes="$codes $SC_STATUS"
done
check "after reconnecting to synchronous_commit=local with a standby named, tokenize answers 503 (got$codes)" \
  test "$codes" = " 503 503 503"
check "logged db_settings_refused" grep -q '"db_settings_refused"' "$SC_SERVICE_LOG"
check "no row was written for them" test "$(tokens)" = "$before"
# the role's reset is itself a commit: it must not wait for the absent standby
PGOPTIONS='-c synchronous_commit=local' qpg "ALTER ROLE cardvault_app RESET synchronous_commit"
set_standby ''
tokenize "$(luhn_pan 411111 15)" 12 2031 "$M_SK"
check "settings fixed: tokenize works again without a restart (got $SC_STATUS)" test "$SC_STATUS" = 201
sc_stop

check "no card number sent appears in the service log" eval '! grep -qFf "$SC_DIR/pans" "$SC_SERVICE_LOG"'
sc_finish
