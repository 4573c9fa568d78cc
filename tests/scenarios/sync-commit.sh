#!/usr/bin/env bash
# Synchronous replication: a commit the standby may not have is never acknowledged.
#
#   tests/scenarios/sync-commit.sh build/release/cardvault
#
# PostgreSQL commits locally first and then waits for the synchronous standby.
# If that wait is cancelled (pg_cancel_backend, a client's cancel request, a
# statement timeout) the server warns "canceling wait for synchronous
# replication ... already committed locally" and reports success; after a
# failover to the standby the row is gone. On a private single-node cluster,
# synchronous_standby_names names a standby that never connects, so every
# commit waits forever in SyncRep, which stands in for a standby that is slow
# or gone:
#   1. serve refuses to start when synchronous_standby_names is set and the
#      role's synchronous_commit is local (says why, exit non-zero).
#   2. the same settings met on a reconnect (the service's backends are
#      terminated, as a failover does) are refused: tokenize answers 503 and
#      the log says db_settings_refused; once fixed, tokenize works again
#      without a restart.
#   3. pg_cancel_backend on a tokenize waiting for the standby: the answer is
#      503 write_outcome_unknown with Retry-After, never 201, though the row
#      is in the primary's WAL. With an Idempotency-Key the first commit is
#      the key's claim: cancelled, it answers the same, and a retry meanwhile
#      gets 409 idempotency_key_in_use (no second token).
#   4. SIGTERM while a tokenize waits for the standby: the shutdown's cancel
#      of busy statements leaves the COMMIT alone, so no 201 is sent while the
#      standby has not confirmed.
# Ends with "sync-commit: N passed, N failed" and appends "P F" to build/test-results.
SUITE=sync-commit
. "$(dirname "$0")/../lib/scenario.sh"
require_tools jq curl psql timeout
cd "$SC_ROOT" || exit 2
sc_pin_binary
trap sc_cleanup EXIT
trap "exit 143" TERM INT

sc_setup
sc_merchant "Sync Shop" || { echo "merchant create failed"; exit 1; }
YEAR=$(($(date -u +%Y) + 2))
export CARDVAULT_DRAIN_GRACE_MS=0

# The test's own statements must not wait for the absent standby either:
# this psql session commits locally (the service's sessions do not).
qa() { PGOPTIONS='-c synchronous_commit=local' q "$1"; }
set_standby() { # set_standby NAMES: synchronous_standby_names, reloaded
    qa "ALTER SYSTEM SET synchronous_standby_names = '$1'" && qa "SELECT pg_reload_conf()" >/dev/null
    sleep 0.3
}
syncrep_pids() { q "SELECT pid FROM pg_stat_activity WHERE wait_event = 'SyncRep'"; }
wait_syncrep() { # wait_syncrep: until some backend waits for the standby (10 s)
    for _ in $(seq 1 100); do
        [ -n "$(syncrep_pids)" ] && return 0
        sleep 0.1
    done
    return 1
}
body() { # body PAN: a tokenize request body
    printf '{"pan":"%s","exp_month":12,"exp_year":%s}' "$1" "$YEAR"
}
post_bg() { # post_bg PAN KEY OUT: tokenize in the background (KEY '': no Idempotency-Key)
    local idem=()
    [ -n "$2" ] && idem=(-H "Idempotency-Key: $2")
    curl -s --max-time 40 -o "$3" -D "$3.h" -w '%{http_code}' -X POST "$SC_URL/v1/tokens" \
        -H "Authorization: Bearer $M_SK" -H 'Content-Type: application/json' \
        "${idem[@]}" --data-binary "$(body "$1")" >"$3.code" &
    BG_PID=$!
}

# ---- 1. refuse to start ----------------------------------------------------
set_standby cardvault_absent_standby
qa "ALTER ROLE cardvault_app SET synchronous_commit = local"
out=$(timeout 20 env CARDVAULT_DATABASE_URL="$SC_APP_URL" "$SC_BIN" serve 2>&1)
rc=$?
check "serve refuses synchronous_commit=local with a synchronous standby (exit $rc)" test "$rc" -ne 0 -a "$rc" -ne 124
check "and says why" grep -q 'synchronous_standby_names set but synchronous_commit=local' <<<"$out"
grep -q 'synchronous_commit=local' <<<"$out" || sed 's/^/#   /' <<<"$out" | tail -n 3

# ---- 2. the same check on reconnect -----------------------------------------
qa "ALTER ROLE cardvault_app RESET synchronous_commit"
set_standby ''
need "service starts with synchronous_commit=on" sc_start
tokenize "$(luhn_pan 411111 1)" 12 "$YEAR" "$M_SK"
check "tokenize works (201)" test "$SC_STATUS" = 201
set_standby cardvault_absent_standby
qa "ALTER ROLE cardvault_app SET synchronous_commit = local"
qa "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = 'cardvault_app'" >/dev/null
sleep 0.5
# The first request may meet a terminated session (503 too) before any
# reconnect: three in a row, every one 503.
codes=""
for n in 2 8 9; do
    tokenize "$(luhn_pan 411111 $n)" 12 "$YEAR" "$M_SK"
    codes="$codes $SC_STATUS"
done
check "after a reconnect to synchronous_commit=local, tokenize answers 503 (got$codes)" test "$codes" = " 503 503 503"
check "logged db_settings_refused" grep -q '"db_settings_refused"' "$SC_SERVICE_LOG"
check "no row was written for it" test "$(q "SELECT count(*) FROM tokens")" = 1
qa "ALTER ROLE cardvault_app RESET synchronous_commit"
set_standby ''
tokenize "$(luhn_pan 411111 3)" 12 "$YEAR" "$M_SK"
check "settings fixed: tokenize works again without a restart (got $SC_STATUS)" test "$SC_STATUS" = 201

# ---- 3. a cancelled wait for the standby is not a commit ----------------------
# 3a. Without an Idempotency-Key the one commit is the token's: cancelled, it
# stays in this server's WAL (as on a primary that is about to fail over).
# Fresh sessions first, so none keeps a setting from part 2.
qa "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = 'cardvault_app'" >/dev/null
sleep 0.5
tokenize "$(luhn_pan 411111 7)" 12 "$YEAR" "$M_SK"
set_standby cardvault_absent_standby
PAN_A=$(luhn_pan 411111 4)
curl -s --max-time 40 -o "$SC_DIR/c1" -D "$SC_DIR/c1.h" -w '%{http_code}' -X POST "$SC_URL/v1/tokens" \
    -H "Authorization: Bearer $M_SK" -H 'Content-Type: application/json' \
    --data-binary "$(body "$PAN_A")" >"$SC_DIR/c1.code" &
BG_PID=$!
need "the tokenize waits for the synchronous standby" wait_syncrep
qa "SELECT count(pg_cancel_backend(pid)) FROM pg_stat_activity WHERE wait_event = 'SyncRep'" >/dev/null
wait "$BG_PID"
code=$(cat "$SC_DIR/c1.code")
check "cancelled sync wait of the token's commit: 503, not 201 (got $code)" test "$code" = 503
check "its code is write_outcome_unknown" test "$(jq -r .error.code "$SC_DIR/c1")" = write_outcome_unknown
check "with Retry-After" grep -qi '^Retry-After: ' "$SC_DIR/c1.h"
check "logged db_sync_replication_abandoned" grep -q '"db_sync_replication_abandoned"' "$SC_SERVICE_LOG"
check "the row is in the primary's WAL all the same (what a 201 would have promised)" \
    test "$(q "SELECT count(*) FROM tokens WHERE last4 = '${PAN_A: -4}'")" = 1

# 3b. With an Idempotency-Key the first commit is the key's claim: its
# cancelled wait is an unknown outcome too, and the key stays claimed, so a
# retry cannot create a second token meanwhile.
PAN_B=$(luhn_pan 411111 6)
post_bg "$PAN_B" idem-sync-1 "$SC_DIR/c3"
need "the idempotent tokenize waits for the synchronous standby" wait_syncrep
qa "SELECT count(pg_cancel_backend(pid)) FROM pg_stat_activity WHERE wait_event = 'SyncRep'" >/dev/null
wait "$BG_PID"
code=$(cat "$SC_DIR/c3.code")
check "cancelled sync wait of the key's claim: 503 write_outcome_unknown (got $code)" \
    test "$code" = 503 -a "$(jq -r .error.code "$SC_DIR/c3")" = write_outcome_unknown
set_standby ''
req POST /v1/tokens "$M_SK" "$(body "$PAN_B")" -H 'Idempotency-Key: idem-sync-1'
check "a retry with the same key meanwhile: 409 idempotency_key_in_use (got $R_STATUS)" \
    test "$R_STATUS" = 409 -a "$(jq -r .error.code <<<"$R_BODY")" = idempotency_key_in_use
check "and no token for that card" test "$(q "SELECT count(*) FROM tokens WHERE last4 = '${PAN_B: -4}'")" = 0

# ---- 4. shutdown does not cancel a COMMIT -----------------------------------
set_standby cardvault_absent_standby
post_bg "$(luhn_pan 411111 5)" '' "$SC_DIR/c2"
need "the tokenize waits for the synchronous standby again" wait_syncrep
kill -TERM "$SC_SERVICE_PID"
# The drain gives up after 20 s and cancels busy statements; wait past it.
sleep 26
code=$(cat "$SC_DIR/c2.code" 2>/dev/null)
check "no 201 while the standby has not confirmed (got '${code:-still waiting}')" test "$code" != 201
check "the commit still waits (it was not cancelled)" test -n "$(syncrep_pids)"
set_standby ''
for _ in $(seq 1 100); do kill -0 "$SC_SERVICE_PID" 2>/dev/null || break; sleep 0.1; done
check "the service stops once the wait ends" sh -c "! kill -0 $SC_SERVICE_PID 2>/dev/null"
wait "$BG_PID"
SC_SERVICE_PID=""

check "no sanitizer report in the log" sh -c "! grep -q 'ERROR: AddressSanitizer\|runtime error:' '$SC_SERVICE_LOG'"
sc_finish
