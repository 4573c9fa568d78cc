#!/usr/bin/env bash
# Key commands beside live traffic (docs/key-management.md, "Key commands and
# locks"):
#
#   tests/scenarios/key-commands.sh build/release/cardvault
#
# On a private PostgreSQL cluster (tests/lib/scenario.sh):
#   1. destroy-dek gives up cleanly when a session holds its DEK row (FOR
#      SHARE): a bounded wait (lock_timeout, a few retries), a message naming
#      the lock, exit non-zero, nothing changed.
#   2. destroy-dek beside a long reader of data_keys (a transaction holding
#      ACCESS SHARE, as pg_dump does): it completes, and sequential tokenize
#      probes running meanwhile all answer 201, none slower than 2 s (an
#      ACCESS EXCLUSIVE request such as VACUUM FULL would queue every insert
#      and read behind the reader).
#   3. The running service drops the destroyed DEK from its cache within one
#      key refresh (log event dek_dropped naming it).
#   4. rotate-kek gives up cleanly when a session holds vault_meta FOR SHARE.
#   5. rotate-kek while a session holds FOR KEY SHARE on a DEK row (as a token
#      insert's foreign key does; the row is a copy of a real DEK added last,
#      so a rotation locking rows in order holds the active one while it
#      waits, standing in for a slow HSM): it completes, and the probes all
#      answer 201, none slower than 2 s.
#   6. A card sealed under a DEK destroyed meanwhile (the database marks the
#      active DEK destroyed inside the service's use reservation, as a slow
#      seal-to-commit would see it) is never acknowledged: no row is written
#      under the destroyed DEK, single and batched inserts alike, and every
#      201 answered meanwhile detokenizes.
# Ends with "key-commands: N passed, N failed" and appends "P F" to
# build/test-results.
SUITE=key-commands
. "$(dirname "$0")/../lib/scenario.sh"
cd "$SC_ROOT" || exit 2
export LC_ALL=C
for t in jq curl psql openssl awk timeout; do
  command -v "$t" >/dev/null || { echo "key-commands: $t is required"; exit 2; }
done
export CARDVAULT_RATE_LIMIT_RPS=0
T_START=$(date +%s)

LOCK_PID=""
PROBE_PIDS=""
kc_cleanup() {
  for p in $PROBE_PIDS; do kill "$p" 2>/dev/null; done
  [ -n "$LOCK_PID" ] && kill "$LOCK_PID" 2>/dev/null
  sc_cleanup
}
trap kc_cleanup EXIT

need() {
  local name=$1
  shift
  if "$@"; then ok "$name"; return 0; fi
  not_ok "$name"
  tail -n 5 "$SC_SERVICE_LOG" | sed 's/^/#   log: /'
  sc_finish key-commands
}
q() { psql -X -qAt -d cardvault -c "$1"; }
now() { date +%s.%N; }
secs_since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
wait_for() {
  local end
  end=$(awk -v n="$(now)" -v s="$1" 'BEGIN { printf "%.3f", n + s }')
  shift
  until "$@"; do
    awk -v n="$(now)" -v e="$end" 'BEGIN { exit !(n >= e) }' && return 1
    sleep 0.1
  done
}
log_has() { grep "\"event\":\"$1\"" "$SC_SERVICE_LOG" | grep -q "$2"; }
dek_has_tokens() { [ "$(q "SELECT count(*) FROM tokens WHERE dek_id = $1")" -gt 0 ]; }
retired_10s() {
  test "$(q "SELECT now() - retired_at > interval '10.5 s' FROM data_keys WHERE dek_id = $1")" = t
}
lock_idle_in_tx() {
  test "$(q "SELECT count(*) FROM pg_stat_activity WHERE application_name = '$1' AND state = 'idle in transaction'")" = 1
}
# lock_hold APPNAME SQL: a psql session running SQL in an open transaction
# until lock_release.
lock_hold() {
  rm -f "$SC_DIR/lock.fifo"
  mkfifo "$SC_DIR/lock.fifo"
  PGAPPNAME=$1 psql -X -q -d cardvault <"$SC_DIR/lock.fifo" >"$SC_DIR/lock.out" 2>&1 &
  LOCK_PID=$!
  exec 7>"$SC_DIR/lock.fifo"
  echo "BEGIN; $2" >&7
  wait_for 5 lock_idle_in_tx "$1"
}
lock_release() {
  echo "ROLLBACK;" >&7
  exec 7>&-
  wait "$LOCK_PID" 2>/dev/null
  LOCK_PID=""
}
new_kek() { (umask 077 && openssl rand -hex 32 >"$1"); }

# probe_start TAG: two loops of sequential tokenizations, each logging
# "HTTP_CODE SECONDS" per request, until probe_stop.
PROBE_N=0
probe_start() {
  PROBE_PIDS=""
  rm -f "$SC_DIR/probe.$1".*
  for w in 1 2; do
    (
      i=0
      while :; do
        i=$((i + 1))
        PROBE_N=$((PROBE_N + 1))
        pan=$(luhn_pan "4$w$RANDOM" "$i")
        curl -s -o /dev/null -m 10 -w '%{http_code} %{time_total}\n' -X POST "$SC_URL/v1/tokens" \
          -H "Authorization: Bearer $M_PK" -H 'Content-Type: application/json' \
          -d "{\"pan\":\"$pan\",\"exp_month\":12,\"exp_year\":$BASE_YEAR}" >>"$SC_DIR/probe.$1.$w"
      done
    ) &
    PROBE_PIDS="$PROBE_PIDS $!"
  done
}
probe_stop() {
  for p in $PROBE_PIDS; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  PROBE_PIDS=""
}
# probe_report TAG: sets P_N, P_BAD (non-201), P_MAX (slowest, s).
probe_report() {
  read -r P_N P_BAD P_MAX < <(cat "$SC_DIR/probe.$1".* 2>/dev/null |
    awk '{ n++; if ($1 != 201) b++; if ($2 > m) m = $2 } END { printf "%d %d %.3f\n", n, b, m }')
  echo "# probes during $1: $P_N requests, $P_BAD not 201, slowest $P_MAX s"
}
probes_fine() { [ "$P_N" -ge 5 ] && [ "$P_BAD" -eq 0 ] && awk -v m="$P_MAX" 'BEGIN { exit !(m < 2.0) }'; }

sc_setup
need "merchant created" sc_merchant keycmd
need "service starts" sc_start
echo "# cardvault $SC_BIN, listen $SC_URL, tmp $SC_DIR"
BASE_YEAR=$(($(date -u +%Y) + 1))

for i in $(seq 1 5); do tokenize "$(luhn_pan 4111 "$i")" 1 "$BASE_YEAR"; done
D1=$(q "SELECT min(dek_id) FROM data_keys")
need "cards sealed under D1 = $D1" test "$SC_STATUS:$(q "SELECT count(*) FROM tokens WHERE dek_id = $D1")" = "201:5"
"$SC_BIN" keys rotate-dek >"$SC_DIR/rotate-dek.out" 2>"$SC_DIR/rotate-dek.err"
D2=$(jq -r 'select(has("active_dek_id")) | .active_dek_id' "$SC_DIR/rotate-dek.out" | tail -1)
moved() { tokenize "$(luhn_pan 4222 "$RANDOM")" 2 "$BASE_YEAR"; dek_has_tokens "$D2"; }
need "rotate-dek: D2 = $D2, the service seals under it" wait_for 10 moved
wait_for 15 retired_10s "$D1"

# ------------------------------------- 1. destroy-dek gives up on a held row
lock_hold cv-kc-row "SELECT 1 FROM data_keys WHERE dek_id = $D1 FOR SHARE;"
T0=$(now)
timeout 25 "$SC_BIN" keys destroy-dek "$D1" --confirm >"$SC_DIR/destroy-held.out" 2>"$SC_DIR/destroy-held.err"
rc=$?
took=$(secs_since "$T0")
lock_release
echo "# destroy-dek with its row held: exit $rc after $took s: $(head -c 300 "$SC_DIR/destroy-held.err")"
check "destroy-dek with its DEK row held gives up within 12 s (exit $rc after $took s)" \
  eval '[ "$rc" != 0 ] && [ "$rc" != 124 ] && awk -v s="$took" "BEGIN { exit !(s < 12) }"'
check "... saying a lock was not granted" grep -qi "lock" "$SC_DIR/destroy-held.err"
check "... and changed nothing (D1 retired, key present)" \
  test "$(q "SELECT state || ' ' || (wrapped_key IS NOT NULL) FROM data_keys WHERE dek_id = $D1")" = "retired true"

# ------------------------------ 2. destroy-dek beside a long data_keys reader
lock_hold cv-kc-dump "SELECT 1 FROM data_keys LIMIT 1;"
probe_start destroy
sleep 1
T0=$(now)
timeout 20 "$SC_BIN" keys destroy-dek "$D1" --confirm >"$SC_DIR/destroy.out" 2>"$SC_DIR/destroy.err"
rc=$?
took=$(secs_since "$T0")
T_DESTROYED=$(now)
sleep 1.5
probe_stop
lock_release
echo "# destroy-dek beside the reader: exit $rc after $took s: $(tail -1 "$SC_DIR/destroy.out")"
probe_report destroy
check "destroy-dek beside a transaction holding ACCESS SHARE on data_keys completes (exit $rc, $took s)" \
  eval '[ "$rc" = 0 ] && [ "$(q "SELECT state FROM data_keys WHERE dek_id = $D1")" = destroyed ]'
check "tokenize kept answering during destroy-dek: all 201, none slower than 2 s" probes_fine

# ------------------------------------------- 3. the service drops the key
dropped() { log_has dek_dropped "\"dek_id\":$D1"; }
wait_for 8 dropped
check "the service dropped D1 from its key cache within one refresh (dek_dropped, $(secs_since "$T_DESTROYED") s)" dropped

# --------------------------------------- 4. rotate-kek gives up on vault_meta
new_kek "$SC_DIR/kek2"
lock_hold cv-kc-meta "SELECT 1 FROM vault_meta FOR SHARE;"
T0=$(now)
timeout 25 "$SC_BIN" keys rotate-kek --new-kek-file "$SC_DIR/kek2" >"$SC_DIR/rotate-held.out" 2>"$SC_DIR/rotate-held.err"
rc=$?
took=$(secs_since "$T0")
lock_release
echo "# rotate-kek with vault_meta held: exit $rc after $took s: $(head -c 300 "$SC_DIR/rotate-held.err")"
check "rotate-kek with vault_meta held gives up within 12 s, saying a lock was not granted (exit $rc after $took s)" \
  eval '[ "$rc" != 0 ] && [ "$rc" != 124 ] && awk -v s="$took" "BEGIN { exit !(s < 12) }" && grep -qi lock "$SC_DIR/rotate-held.err"'

# ------------------------------ 5. rotate-kek beside a held DEK row lock
FAKE=$(q "INSERT INTO data_keys (wrapped_key, max_uses, state, retired_at)
          SELECT wrapped_key, 1, 'retired', now() FROM data_keys WHERE dek_id = $D2 RETURNING dek_id" | head -1)
lock_hold cv-kc-fk "SELECT 1 FROM data_keys WHERE dek_id = $FAKE FOR KEY SHARE;"
probe_start rotate
sleep 1
T0=$(now)
timeout 20 "$SC_BIN" keys rotate-kek --new-kek-file "$SC_DIR/kek2" >"$SC_DIR/rotate.out" 2>"$SC_DIR/rotate.err"
rc=$?
took=$(secs_since "$T0")
[ "$rc" = 0 ] && cp -p "$SC_DIR/kek2" "$SC_DIR/kek2.copy" && mv "$SC_DIR/kek2.copy" "$CARDVAULT_KEK_FILE"
sleep 1.5
probe_stop
lock_release
echo "# rotate-kek beside a FOR KEY SHARE holder (DEK $FAKE): exit $rc after $took s"
probe_report rotate
check "rotate-kek beside a transaction holding FOR KEY SHARE on a DEK row completes (exit $rc, $took s)" test "$rc" = 0
check "tokenize kept answering during rotate-kek: all 201, none slower than 2 s" probes_fine
q "DELETE FROM data_keys WHERE dek_id = $FAKE" >/dev/null

# ------------------------ 6. no acknowledged card under a destroyed DEK
check "/readyz 200 with the new KEK" test "$(curl -s -o /dev/null -w '%{http_code}' -m 5 "$SC_OPS_URL/readyz")" = 200
sleep 5.5 # the service's use reservation lapses: the next tokenize renews it
tokenize "$(luhn_pan 4333 1)" 3 "$BASE_YEAR"
DA=$(q "SELECT dek_id FROM tokens WHERE token = '$(jq -r .token <<<"$SC_BODY")'")
before=$(q "SELECT count(*) FROM tokens WHERE dek_id = $DA")
q "UPDATE data_keys SET state = 'destroyed', wrapped_key = NULL, destroyed_at = now() WHERE dek_id = $DA" >/dev/null
rm -f "$SC_DIR/late".*
tokenize "$(luhn_pan 4333 2)" 3 "$BASE_YEAR"
echo "$SC_STATUS $(jq -r '.token // .error.code' <<<"$SC_BODY")" >"$SC_DIR/late.0"
late_pids=""
for i in $(seq 3 26); do
  (
    tokenize "$(luhn_pan 4333 "$i")" 3 "$BASE_YEAR"
    echo "$SC_STATUS $(jq -r '.token // .error.code' <<<"$SC_BODY")" >"$SC_DIR/late.$i"
  ) &
  late_pids="$late_pids $!"
done
for p in $late_pids; do wait "$p"; done
after=$(q "SELECT count(*) FROM tokens WHERE dek_id = $DA")
codes=$(cut -d' ' -f1 "$SC_DIR"/late.* | sort | uniq -c | tr -s ' \n' ' ')
echo "# tokenize right after the active DEK $DA was destroyed: $codes; rows under it before $before, after $after; $(grep -c '"event":"token_insert_refused"' "$SC_SERVICE_LOG") inserts refused"
check "no row written under the destroyed DEK after its destruction ($before -> $after)" test "$after" = "$before"
acked_bad=0
while read -r code tok; do
  [ "$code" = 201 ] || continue
  d=$(q "SELECT d.state FROM tokens t JOIN data_keys d USING (dek_id) WHERE t.token = '$tok'")
  [ "$d" = active ] || { acked_bad=$((acked_bad + 1)); echo "#   201 $tok under a $d DEK"; }
done < <(cat "$SC_DIR"/late.*)
check "every card acknowledged meanwhile is under a live DEK" test "$acked_bad" = 0
check "every refusal is a retriable 503" eval '! cut -d" " -f1 "$SC_DIR"/late.* | grep -qvE "^(201|503)$"'

# ---------------------------------------------------------------- the end
check "service still alive" kill -0 "$SC_SERVICE_PID"
sc_stop
rc=$?
check "service stops cleanly (exit $rc)" test "$rc" -eq 0
reports=$(cat "$SC_SERVICE_LOG" "$SC_DIR"/*.err 2>/dev/null | grep -E "AddressSanitizer|LeakSanitizer|runtime error:")
check "no sanitizer report" test -z "$reports"
echo "# key-commands scenario took $(($(date +%s) - T_START)) s"
sc_finish key-commands
