#!/usr/bin/env bash
# make test-cluster: faults under load against the cluster of make cluster.
#
#   tests/cluster/test-cluster.sh build/release/cardvault
#
# A small load client (two workers; every request its own card and
# Idempotency-Key; every answer recorded, every 201 with its token and card)
# runs for CL_PHASE_S seconds (default 15; 4 phases ~ 60 s of load) while, in
# turn:
#   a. one cardvault instance is killed (SIGKILL): HAProxy routes around it;
#   b. the PostgreSQL primary's whole process group (pg_autoctl and its
#      postgres) is killed: pg_auto_failover promotes the standby;
#   c. the primary's process group is stopped (SIGSTOP) past the failover
#      timeout, then continued (SIGCONT): the old primary must not take writes;
#   d. the standby is stopped and a backend waiting for it in SyncRep is
#      cancelled (pg_cancel_backend): the client must not get a 201 for it.
# After each phase: every acknowledged token detokenizes to its exact card on
# the current primary (no 201 without its row), `cardvault audit verify`
# passes, and a report prints the outage window (first and last failed
# request) and the errors clients saw. Timings on a loaded machine are
# reported, never judged.
SUITE=cluster
SC_ROOT_DIR=$(cd "$(dirname "$0")/../.." && pwd)
. "$SC_ROOT_DIR/tests/lib/scenario.sh"
. "$(dirname "$0")/lib.sh"
BIN=$(realpath "${1:-build/release/cardvault}")
cd "$SC_ROOT_DIR" || exit 2
require_tools jq curl psql haproxy pg_autoctl setsid
PHASE_S=${CL_PHASE_S:-15}
LOAD_PIDS=()
WR_PID=""
cleanup() {
    [ ${#LOAD_PIDS[@]} -gt 0 ] && kill "${LOAD_PIDS[@]}" 2>/dev/null
    [ -n "$WR_PID" ] && kill -CONT "$WR_PID" 2>/dev/null
    cl_down
    rm -rf "$CL_DIR"
    sc_cleanup
}
trap cleanup EXIT
trap 'exit 143' TERM INT

need "cluster up (monitor, primary + synchronous standby, two vaults, HAProxy)" cl_up "$BIN"
json=$(CARDVAULT_DATABASE_URL="$CL_DB_URL" "$BIN" merchant create "Cluster load shop") || exit 1
SK=$(jq -r .secret_key <<<"$json")
DK=$(jq -r .detokenize_key <<<"$json")
YEAR=$(($(date -u +%Y) + 2))

# worker PHASE N: tokenize until killed; lines "epoch_ms status token pan code"
worker() {
    local out="$CL_DIR/$1.load.$2" i=0 pan r code tok
    while :; do
        i=$((i + 1))
        pan=$(luhn_pan "4$((RANDOM % 90 + 10))$2" "$((i * 7919 + RANDOM))")
        r=$(curl -s --max-time 10 -w '\n%{http_code}' -X POST "$CL_URL/v1/tokens" \
            -H "Authorization: Bearer $SK" -H 'Content-Type: application/json' \
            -H "Idempotency-Key: $1-$2-$i-$RANDOM" \
            --data-binary "{\"pan\":\"$pan\",\"exp_month\":12,\"exp_year\":$YEAR}")
        code=${r##*$'\n'}
        tok=$(jq -r '.token // .id // empty' <<<"${r%$'\n'*}" 2>/dev/null)
        err=$(jq -r '.error.code // empty' <<<"${r%$'\n'*}" 2>/dev/null)
        echo "$(date +%s%3N) $code ${tok:--} $pan ${err:--}" >>"$out"
    done
}
load_start() {
    LOAD_PIDS=()
    worker "$1" 1 & LOAD_PIDS+=($!)
    worker "$1" 2 & LOAD_PIDS+=($!)
}
load_stop() {
    kill "${LOAD_PIDS[@]}" 2>/dev/null
    wait "${LOAD_PIDS[@]}" 2>/dev/null
    LOAD_PIDS=()
}
group_of_primary() { # the node directory of the current primary, empty when none
    local port
    port=$(cl_primary_port)
    case "$port" in
    "$CL_PG1_PORT") echo node1 ;;
    "$CL_PG2_PORT") echo node2 ;;
    esac
}
other_node() { [ "$1" = node1 ] && echo node2 || echo node1; }
node_port() { [ "$1" = node1 ] && echo "$CL_PG1_PORT" || echo "$CL_PG2_PORT"; }

# verify PHASE: the checks after a phase, and its report
verify() {
    local f="$CL_DIR/$1.load" acked lost=0 unsure=0 t p got r code
    cat "$CL_DIR/$1".load.* 2>/dev/null | sort -n >"$f"
    acked=$(awk '$2 == 201' "$f" | wc -l)
    while read -r _ _ t p _; do
        # A 503 (a vault meeting a connection the failover broke) says
        # nothing about the row: ask again, up to 20 times. Lost means the
        # primary answers 404 or another card.
        got="" code=""
        for _ in $(seq 1 20); do
            r=$(curl -s --max-time 10 -w '\n%{http_code}' -X POST "$CL_URL/v1/tokens/$t/detokenize" -H "Authorization: Bearer $DK")
            code=${r##*$'\n'}
            [ "$code" = 200 ] && got=$(jq -r '.pan // empty' <<<"${r%$'\n'*}")
            case "$code" in 200 | 404) break ;; esac
            sleep 0.5
        done
        if [ "$code" != 200 ] && [ "$code" != 404 ]; then
            unsure=$((unsure + 1)); echo "#   $1: token $t: detokenize still answers $code"
        elif [ "$got" != "$p" ]; then
            lost=$((lost + 1)); echo "#   $1: token $t does not detokenize to its card (HTTP $code)"
        fi
    done < <(awk '$2 == 201' "$f")
    echo "# $1: requests $(wc -l <"$f"), acknowledged $acked, lost $lost, not verifiable $unsure"
    awk -v ph="$1" '$2 != 201 { n++; if (!first) first = $1; last = $1; c[$2 " " $5]++ }
        END { if (n) { printf "# %s: %d failed requests, outage window %.1f s (first %s, last %s)\n", ph, n, (last - first) / 1000, first, last
                       for (k in c) printf "#   %s: %d\n", k, c[k] }
              else printf "# %s: no failed request\n", ph }' "$f"
    check "$1: every acknowledged token ($acked) detokenizes to its exact card" test "$lost:$unsure" = 0:0
    check "$1: at least one token acknowledged" test "$acked" -gt 0
    check "$1: no answer other than 201 or 503 (and HAProxy's 502/504 while a vault dies, or a client timeout)" \
        test -z "$(awk '$2 != 201 && $2 != 503 && $2 != 502 && $2 != 504 && $2 != "000"' "$f")"
    check "$1: audit verify passes" env CARDVAULT_DATABASE_URL="$CL_DB_URL" "$BIN" audit verify
}
wait_ready() { cl_wait_healthy 180; }

# A key made a moment ago works on a vault once its key cache has refreshed
# (CARDVAULT_AUTH_REFRESH_MS, per instance: docs/scaling.md): wait for both.
for port in "$CL_VAULT_A_PORT" "$CL_VAULT_B_PORT"; do
    for _ in $(seq 1 100); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v1/tokens/tok_1111111111111111111111" \
            -H "Authorization: Bearer $SK")" = 404 ] && break
        sleep 0.1
    done
done

# ---- security-code holds live in one vault: HAProxy sends their requests there
r=$(curl -s -X POST "$CL_URL/v1/tokens" -H "Authorization: Bearer $SK" -H 'Content-Type: application/json' \
    --data-binary "{\"pan\":\"$(luhn_pan 4242 1)\",\"exp_month\":12,\"exp_year\":$YEAR}")
HOLD_TOKEN=$(jq -r .token <<<"$r")
routed=0 holds=0 seen=""
for i in $(seq 1 10); do
    h=$(curl -s -X POST "$CL_URL/v1/tokens/$HOLD_TOKEN/cvc-hold" -H "Authorization: Bearer $SK" \
        -H 'Content-Type: application/json' --data-binary "{\"cvc\":\"$((100 + i))\"}" | jq -r '.id // empty')
    [ -n "$h" ] || continue
    holds=$((holds + 1))
    inst=${h#hold_}; inst=${inst%%_*}
    seen="$seen $inst"
    # Any request carrying the hold goes to its vault: find which one logged it.
    rid=$(curl -s -o /dev/null -D - "$CL_URL/v1/tokens/$HOLD_TOKEN" -H "Authorization: Bearer $SK" \
        -H "CardVault-Hold: $h" | tr -d '\r' | awk -F': ' 'tolower($1) == "x-request-id" {print $2}')
    sleep 0.2
    grep -q "\"request_id\":\"$rid\"" "$CL_DIR/vault-$inst.log" 2>/dev/null && routed=$((routed + 1))
done
echo "# holds made by vaults:$seen"
check "holds: each of $holds requests carrying a hold reached the vault that holds it ($routed)" \
    test "$holds" -eq 10 -a "$routed" -eq 10
check "holds: both vaults made some (HAProxy balances the hold requests)" \
    bash -c "grep -q ' a' <<<'$seen' && grep -q ' b' <<<'$seen'"

# ---- a. kill one vault ------------------------------------------------------
load_start a
sleep 3
kill -KILL "$CL_VAULT_A_PID"
sleep $((PHASE_S - 3))
load_stop
verify a
cl_start_vault a "$CL_VAULT_A_PORT" "$CL_OPS_A_PORT"

# ---- b. kill the primary's whole process group --------------------------------
P=$(group_of_primary)
load_start b
sleep 3
kill -KILL -- "-$(cl_pgid "$P")"
sleep $((PHASE_S - 3))
for _ in $(seq 1 90); do G=$(group_of_primary); [ -n "$G" ] && [ "$G" != "$P" ] && break; sleep 1; done
load_stop
check "b: the standby was promoted ($(group_of_primary) is primary)" test "$(group_of_primary)" != "$P"
verify b
# The new primary runs alone until the old one rejoins: both vaults say so.
repl_of() { curl -s "http://127.0.0.1:$1/readyz" | jq -r '.checks.replication // "absent"'; }
sync_gauge() { curl -s "http://127.0.0.1:$1/metrics" | awk '$1 == "cardvault_db_sync_standby" {print $2}'; }
for _ in $(seq 1 30); do [ "$(repl_of "$CL_OPS_A_PORT")" = "degraded: no synchronous standby" ] && break; sleep 1; done
check "b: alone, /readyz says degraded: no synchronous standby ($(repl_of "$CL_OPS_A_PORT"), $(repl_of "$CL_OPS_B_PORT"))" \
    test "$(repl_of "$CL_OPS_A_PORT") $(repl_of "$CL_OPS_B_PORT")" = "degraded: no synchronous standby degraded: no synchronous standby"
check "b: alone, cardvault_db_sync_standby 0" test "$(sync_gauge "$CL_OPS_A_PORT")" = 0
cl_spawn "$P" pg_autoctl run --pgdata "$CL_DIR/$P"
check "b: the old primary rejoins as standby" wait_ready
for _ in $(seq 1 60); do [ "$(repl_of "$CL_OPS_A_PORT")" = ok ] && break; sleep 1; done
check "b: rejoined, /readyz replication ok and cardvault_db_sync_standby 1" \
    test "$(repl_of "$CL_OPS_A_PORT") $(sync_gauge "$CL_OPS_A_PORT")" = "ok 1"

# ---- c. SIGSTOP the primary past the failover timeout ---------------------------
P=$(group_of_primary)
load_start c
sleep 3
kill -STOP -- "-$(cl_pgid "$P")"
# Past the failover: until the monitor has handed the primary role to the
# other node (the unhealthy timeout plus the promotion, which takes tens of
# seconds on a loaded machine), at most 120 s.
PP=$(node_port "$P")
for _ in $(seq 1 120); do
    [ -n "$(cl_state | jq -r --argjson p "$PP" '.[] | select(.nodeport != $p and
        (.assigned_group_state == "primary" or .assigned_group_state == "wait_primary")) | .nodeport')" ] && break
    sleep 1
done
kill -CONT -- "-$(cl_pgid "$P")"
for _ in $(seq 1 90); do G=$(group_of_primary); [ -n "$G" ] && [ "$G" != "$P" ] && break; sleep 1; done
load_stop
check "c: the standby was promoted while the primary was stopped" test "$(group_of_primary)" != "$P"
verify c
check "c: the old primary rejoins as standby" wait_ready
# Phase d needs commits that wait for the standby: not before it is the
# synchronous one again (pg_auto_failover names it only once it caught up).
for _ in $(seq 1 120); do [ "$(repl_of "$CL_OPS_A_PORT")" = ok ] && break; sleep 1; done
check "c: the synchronous standby is back (replication $(repl_of "$CL_OPS_A_PORT"))" \
    test "$(repl_of "$CL_OPS_A_PORT")" = ok

# ---- d. a cancelled wait for the synchronous standby ---------------------------
P=$(group_of_primary)
S=$(other_node "$P")
load_start d
sleep 2
# Stop the standby: its WAL receiver (a session and process group of its own,
# so it is stopped by its pid, read from the standby itself), and pg_autoctl's
# group with the postmaster, so nothing notices and restarts it. Commits on the
# primary then wait for the standby's acknowledgement (wait event SyncRep).
pm_group() { ps -o pgid= -p "$(head -1 "$CL_DIR/$1/postmaster.pid")" | tr -d ' '; }
WR_PID=$(psql -X -q -At "host=127.0.0.1 port=$(node_port "$S") user=postgres dbname=postgres" \
    -c "SELECT pid FROM pg_stat_wal_receiver" 2>/dev/null)
check "d: the standby's WAL receiver found (pid ${WR_PID:-none})" test -n "$WR_PID"
S_GROUPS=$(printf '%s\n' "$(cl_pgid "$S")" "$(pm_group "$S")" | sort -u)
[ -n "$WR_PID" ] && kill -STOP "$WR_PID"
for g in $S_GROUPS; do kill -STOP -- "-$g"; done
cancelled=0
# Every commit waiting for the stopped standby is cancelled, for 3 s: some are
# the vaults' own (a data-key reservation, the audit anchor), so one cancel
# alone may never reach a client's tokenize.
for _ in $(seq 1 30); do
    n=$(psql -X -q -At "host=127.0.0.1 port=$(node_port "$P") user=postgres dbname=postgres" \
        -c "SELECT count(pg_cancel_backend(pid)) FROM pg_stat_activity WHERE wait_event = 'SyncRep'" 2>/dev/null)
    [ "${n:-0}" -gt 0 ] && cancelled=$((cancelled + n))
    sleep 0.1
done
for g in $S_GROUPS; do kill -CONT -- "-$g"; done
[ -n "$WR_PID" ] && kill -CONT "$WR_PID"
sleep 4
load_stop
check "d: a backend waiting for the standby was cancelled ($cancelled)" test "$cancelled" -gt 0
check "d: clients saw commit_unconfirmed for it" grep -q ' commit_unconfirmed$' "$CL_DIR/d.load".*
verify d

sc_finish
