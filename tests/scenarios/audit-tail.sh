#!/usr/bin/env bash
# Cutting the audit trail's tail, and what stops it (docs/threat-model.md).
#
#   tests/scenarios/audit-tail.sh build/release/cardvault
#
# On a private PostgreSQL cluster (tests/lib/scenario.sh): `migrate` as the
# schema owner creates the group role cardvault_service; serve runs as the
# login role cardvault_app (a member of it). Checks:
#   - as the service's role: moving audit_head back, deleting or truncating
#     it, deleting or updating audit_events, disabling a trigger and DDL are
#     refused;
#   - serve started as the schema owner (or a superuser) refuses to start with
#     one line, and starts with CARDVAULT_ALLOW_OWNER_ROLE=1 (with a warning);
#   - serve as cardvault_app tokenizes, detokenizes and deletes, and logs the
#     chain's head (audit_anchor: seq, hash) at start and every
#     CARDVAULT_AUDIT_ANCHOR_INTERVAL_S;
#   - `audit verify --expect SEQ:HASH` passes with that anchor; after the
#     OWNER cuts the tail below it (triggers disabled, rows deleted, head
#     reset to an earlier event's hash and MAC) plain `audit verify` still
#     passes (the documented limit of a chain kept in the database it
#     protects) while `--expect` fails;
#   - the keyed chain (migration 0005): as the OWNER, with the triggers
#     disabled, rewriting an event's detail and recomputing every later
#     SHA-256 link and the head in SQL, deleting a middle event and
#     renumbering, inserting a forged event, or appending an unkeyed row
#     after keyed ones each make `audit verify` fail naming the first bad
#     seq (the MACs need K_audit, which the database never sees); the
#     service's role cannot insert an unkeyed row at all; a chain that spans
#     the migration (events appended by 0001-0004's SQL, then 0005 applied,
#     then more events) verifies and reports the seq it is keyed from.
# Ends with "audit-tail: N passed, N failed"; appends "P F" to build/test-results.
SUITE=audit-tail
. "$(dirname "$0")/../lib/scenario.sh"
cd "$SC_ROOT" || exit 2
for t in jq curl psql openssl; do
  command -v "$t" >/dev/null || { echo "audit-tail: $t is required"; exit 2; }
done

sc_setup
# as_app SQL: psql as the role serve runs as (SC_APP_URL; the owner when the
# harness could not create the service's role); returns psql's exit code.
as_app() { psql -X -q -At -v ON_ERROR_STOP=1 -d "${SC_APP_URL:-$CARDVAULT_DATABASE_URL}" -c "$1" >"$SC_DIR/app.out" 2>&1; }
q() { psql -X -q -At -v ON_ERROR_STOP=1 -d cardvault -c "$1"; }
# refused DESC SQL: the service's role gets an error for SQL.
refused() {
  local why
  if as_app "$2"; then not_ok "$1: accepted"; return; fi
  why=$(sed -n 's/^ERROR: *//p' "$SC_DIR/app.out" | head -1 | cut -c1-90)
  if [ -n "$why" ]; then ok "$1: refused ($why)"; else not_ok "$1: no SQL error: $(head -1 "$SC_DIR/app.out")"; fi
}
cv() { "$SC_BIN" "$@" >"$SC_DIR/cv.out" 2>"$SC_DIR/cv.err"; }

check "migrate created the group role cardvault_service (NOLOGIN)" \
  test "$(q "SELECT rolcanlogin FROM pg_roles WHERE rolname = 'cardvault_service'")" = f
check "the login role cardvault_app exists and is a member of cardvault_service" \
  test "$(q "SELECT pg_has_role('cardvault_app', 'cardvault_service', 'MEMBER')" 2>/dev/null)" = t
sc_merchant "Tail Shop" || { not_ok "merchant create"; sc_finish audit-tail; }

# ------------------------------------------------ what the service role may not do
refused "UPDATE audit_head to a lower seq" "UPDATE audit_head SET seq = seq - 1, hash = '\\x00'"
refused "DELETE FROM audit_events" "DELETE FROM audit_events"
refused "UPDATE audit_events" "UPDATE audit_events SET outcome = 'success'"
refused "TRUNCATE audit_events" "TRUNCATE audit_events"
refused "DELETE FROM audit_head" "DELETE FROM audit_head"
refused "TRUNCATE audit_head" "TRUNCATE audit_head"
refused "ALTER TABLE audit_events DISABLE TRIGGER" "ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only"
refused "ALTER TABLE audit_head DISABLE TRIGGER ALL" "ALTER TABLE audit_head DISABLE TRIGGER ALL"
refused "DROP TRIGGER on audit_events" "DROP TRIGGER audit_events_append_only ON audit_events"
refused "CREATE TABLE (no DDL)" "CREATE TABLE scratch (x int)"
refused "UPDATE merchants" "UPDATE merchants SET name = 'x'"
refused "UPDATE api_keys (un-revoke a key)" "UPDATE api_keys SET revoked_at = NULL"
refused "UPDATE data_keys.wrapped_key" "UPDATE data_keys SET wrapped_key = NULL"
# Even the owner may not move the head backwards while the trigger is on.
if q "UPDATE audit_head SET seq = 0" >/dev/null 2>&1; then
  not_ok "the owner moved audit_head back with the trigger enabled"
else
  ok "audit_head's trigger refuses moving the head back (the owner too, while enabled)"
fi

# ------------------------------------------------ serve refuses the owner's role
OWNER_URL=$CARDVAULT_DATABASE_URL
timeout 20 "$SC_BIN" serve >"$SC_DIR/serve-owner.out" 2>&1; rc=$?
lines=$(grep -c . "$SC_DIR/serve-owner.out")
if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ "$lines" -eq 1 ] && grep -qi 'owner\|superuser' "$SC_DIR/serve-owner.out"; then
  ok "serve as the schema owner refuses to start (exit $rc: $(cut -c1-150 "$SC_DIR/serve-owner.out"))"
else
  not_ok "serve as the schema owner: exit $rc, $lines lines: $(head -3 "$SC_DIR/serve-owner.out")"
fi
# Not a superuser, but a member of the role that owns the tables: refused too.
q "CREATE ROLE tail_owner_member LOGIN IN ROLE postgres" >/dev/null
timeout 20 env CARDVAULT_DATABASE_URL="$OWNER_URL user=tail_owner_member" "$SC_BIN" serve >"$SC_DIR/serve-member.out" 2>&1; rc=$?
if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && grep -q 'is the owner of the schema' "$SC_DIR/serve-member.out"; then
  ok "serve as a non-superuser member of the owner's role refuses to start (exit $rc)"
else
  not_ok "serve as a member of the owner's role: exit $rc: $(head -2 "$SC_DIR/serve-member.out")"
fi
SC_SERVICE_LOG="$SC_DIR/serve-owner-allowed.log"
if sc_start CARDVAULT_DATABASE_URL="$OWNER_URL" CARDVAULT_ALLOW_OWNER_ROLE=1; then
  ok "serve as the owner starts with CARDVAULT_ALLOW_OWNER_ROLE=1"
else
  not_ok "serve as the owner with CARDVAULT_ALLOW_OWNER_ROLE=1 did not start"
fi
sc_stop
check "... and logs a warning (owner_role_allowed)" grep -q '"event":"owner_role_allowed"' "$SC_SERVICE_LOG"

# ------------------------------------------------ serve as the app role, anchors
SC_SERVICE_LOG="$SC_DIR/service.log"
if sc_start CARDVAULT_AUDIT_ANCHOR_INTERVAL_S=1; then
  ok "serve as cardvault_app starts (${SC_APP_URL:-no service role})"
else
  not_ok "serve as cardvault_app did not start"; tail -5 "$SC_SERVICE_LOG"; sc_finish audit-tail
fi
check "serve logged the head at start (audit_anchor)" grep -q '"event":"audit_anchor"' "$SC_SERVICE_LOG"
tokens=()
for i in 1 2 3 4 5 6; do
  tokenize "$(luhn_pan 424242 "$i")" 12 2031
  [ "$SC_STATUS" = 201 ] && tokens+=("$(jq -r .token <<<"$SC_BODY")")
done
check "tokenize as cardvault_app (6 cards)" test "${#tokens[@]}" -eq 6
good=0
for t in "${tokens[@]}"; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$SC_URL/v1/tokens/$t/detokenize" -H "Authorization: Bearer $M_DK")
  [ "$code" = 200 ] && good=$((good + 1))
done
check "detokenize as cardvault_app (audited, batched): $good of 6" test "$good" -eq 6
code=$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "$SC_URL/v1/tokens/${tokens[5]}" -H "Authorization: Bearer $M_SK")
check "delete as cardvault_app (audited in the same statement): $code" test "$code" = 204
head_seq=$(q "SELECT seq FROM audit_head")
anchor=""
for _ in $(seq 1 60); do
  anchor=$(grep '"event":"audit_anchor"' "$SC_SERVICE_LOG" | jq -r "select(.seq == $head_seq) | \"\(.seq):\(.hash)\"" 2>/dev/null | tail -1)
  [ -n "$anchor" ] && break
  sleep 0.1
done
if [[ $anchor =~ ^[0-9]+:[0-9a-f]{8}(-[0-9a-f]{8}){7}$ ]]; then
  ok "serve logged the head periodically: audit_anchor $anchor"
else
  not_ok "no audit_anchor line for head seq $head_seq: $(grep audit_anchor "$SC_SERVICE_LOG" | tail -2)"
fi
sc_stop
check "serve as cardvault_app stops cleanly" test $? -eq 0
A_SEQ=${anchor%%:*}
A_HASH=${anchor#*:}

if cv audit verify --expect "$anchor"; then
  ok "audit verify --expect $A_SEQ:${A_HASH:0:12}... passes on the intact chain"
else
  not_ok "audit verify --expect on the intact chain: $(cat "$SC_DIR/cv.out" "$SC_DIR/cv.err")"
fi
bad_hash=$(printf '%064d' 0)
if cv audit verify --expect "$A_SEQ:$bad_hash"; then
  not_ok "audit verify --expect with a wrong hash passed"
else
  ok "audit verify --expect with a wrong hash fails: $(jq -c 'del(.ok)' "$SC_DIR/cv.out" 2>/dev/null | cut -c1-120)"
fi
cv audit verify --expect "12x"
rc=$?
check "audit verify --expect 12x (malformed): exit 2 (got $rc)" test "$rc" -eq 2

# ------------------------------------------------ the owner cuts the tail
N=$((A_SEQ - 3))
q "ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only;
   ALTER TABLE audit_head DISABLE TRIGGER audit_head_forward_only;
   DELETE FROM audit_events WHERE seq > $N;
   UPDATE audit_head SET (seq, hash, mac) = (SELECT seq, hash, mac FROM audit_events WHERE seq = $N);
   ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only;
   ALTER TABLE audit_head ENABLE TRIGGER audit_head_forward_only" >/dev/null
if cv audit verify; then
  ok "after the owner cut the tail to seq $N, plain audit verify passes (the limit a kept anchor covers)"
else
  not_ok "plain audit verify after the cut: $(cat "$SC_DIR/cv.out")"
fi
if cv audit verify --expect "$anchor"; then
  not_ok "audit verify --expect $A_SEQ:... passed after the tail was cut to $N"
else
  ok "audit verify --expect $A_SEQ:${A_HASH:0:12}... fails after the cut: $(jq -c 'del(.ok)' "$SC_DIR/cv.out" 2>/dev/null | cut -c1-140)"
fi

# ------------------------------------------------ the keyed chain (migration 0005)
# What a database writer (the owner, a DBA, a restore of an edited dump) can
# do in SQL alone: disable the triggers, change rows, and recompute every
# SHA-256 link with audit_canonical() and sha256(), head included. Only the
# MACs stay out of reach (K_audit is wrapped under the KEK).
owner_sql() { q "ALTER TABLE audit_events DISABLE TRIGGER USER; ALTER TABLE audit_head DISABLE TRIGGER USER;
  $1;
  ALTER TABLE audit_events ENABLE TRIGGER USER; ALTER TABLE audit_head ENABLE TRIGGER USER" >/dev/null; }
# rechain FROM: recompute prev_hash and hash of every event from seq FROM on,
# and move the head onto the last one, exactly as audit_append did.
rechain() {
  echo "DO \$\$ DECLARE r record; prev bytea; BEGIN
    SELECT coalesce((SELECT hash FROM audit_events WHERE seq = $1 - 1), '\\x$(printf '%064d' 0)') INTO prev;
    FOR r IN SELECT * FROM audit_events WHERE seq >= $1 ORDER BY seq LOOP
      UPDATE audit_events SET prev_hash = prev,
        hash = sha256(prev || convert_to(audit_canonical(r.seq, r.occurred_at, r.actor, r.merchant_id,
               r.token, r.request_id, r.action, r.outcome, r.detail), 'UTF8'))
      WHERE seq = r.seq RETURNING hash INTO prev;
    END LOOP;
    UPDATE audit_head SET seq = (SELECT max(seq) FROM audit_events), hash = prev;
  END \$\$"
}
# The chain as it is now, to go back to between attacks.
q "SET client_min_messages = warning; DROP TABLE IF EXISTS tail_saved_events, tail_saved_head;
   CREATE TABLE tail_saved_events AS SELECT * FROM audit_events;
   CREATE TABLE tail_saved_head AS SELECT * FROM audit_head" >/dev/null
restore_chain() {
  owner_sql "DELETE FROM audit_events; INSERT INTO audit_events SELECT * FROM tail_saved_events;
             DELETE FROM audit_head; INSERT INTO audit_head SELECT * FROM tail_saved_head"
}
# expect_broken DESC SEQ: plain verify exits 1 naming SEQ first.
expect_broken() {
  local rc fb
  cv audit verify; rc=$?
  fb=$(jq -r '.first_broken_seq // empty' "$SC_DIR/cv.out" 2>/dev/null)
  if [ "$rc" -eq 1 ] && [ "$fb" = "$2" ]; then
    ok "$1: audit verify exit 1, first_broken_seq $fb ($(jq -r .reason "$SC_DIR/cv.out" | cut -c1-70))"
  else
    not_ok "$1: audit verify exit $rc, first_broken_seq '${fb}' (want $2): $(head -c 300 "$SC_DIR/cv.out" "$SC_DIR/cv.err")"
  fi
}

HEAD=$(q "SELECT seq FROM audit_head")
S=$((HEAD - 3)) # an event in the middle
if cv audit verify && [ "$(jq -r .ok "$SC_DIR/cv.out")" = true ]; then
  ok "audit verify passes before the attacks: $(jq -c '{events, keyed_from_seq, keyed_events, head_seq}' "$SC_DIR/cv.out")"
else
  not_ok "audit verify before the attacks: $(cat "$SC_DIR/cv.out" "$SC_DIR/cv.err")"
fi
restore_chain

owner_sql "UPDATE audit_events SET detail = 'rewritten by the owner' WHERE seq = $S; $(rechain "$S")"
check "the owner's rewrite recomputed a consistent SHA-256 chain (seq $S's hash changed, head follows)" \
  test "$(q "SELECT (SELECT hash FROM audit_events WHERE seq = $S) <> (SELECT hash FROM tail_saved_events WHERE seq = $S)
             AND (SELECT hash FROM audit_head) = (SELECT hash FROM audit_events ORDER BY seq DESC LIMIT 1)")" = t
expect_broken "event $S's detail rewritten, SHA-256 chain and head recomputed by the owner" "$S"
restore_chain

owner_sql "DELETE FROM audit_events WHERE seq = $S;
           UPDATE audit_events SET seq = -seq WHERE seq > $S;
           UPDATE audit_events SET seq = -seq - 1 WHERE seq < 0; $(rechain "$S")"
expect_broken "event $S deleted, later events renumbered, chain recomputed" "$S"
restore_chain

F=$((S + 1))
owner_sql "UPDATE audit_events SET seq = -seq WHERE seq >= $F;
           UPDATE audit_events SET seq = -seq + 1 WHERE seq < 0;
           INSERT INTO audit_events (seq, occurred_at, actor, action, outcome, detail, prev_hash, hash, mac)
             SELECT $F, occurred_at, 'cli:key-revoke', 'api_key.revoke', 'success', 'forged',
                    '\\x00', '\\x00', sha256('forged') FROM audit_events WHERE seq = $S;
           $(rechain "$F")"
expect_broken "a forged event inserted at seq $F (with a made-up MAC), chain recomputed" "$F"
restore_chain

U=$((HEAD + 1))
if as_app "INSERT INTO audit_events (seq, occurred_at, actor, action, outcome, prev_hash, hash)
           VALUES ($U, now(), 'x', 'x', 'x', '\\x00', '\\x00')"; then
  not_ok "the service's role inserted an unkeyed row after keyed ones"
else
  ok "the service's role cannot insert an unkeyed row after keyed ones ($(sed -n 's/^ERROR: *//p' "$SC_DIR/app.out" | head -1 | cut -c1-70))"
fi
owner_sql "INSERT INTO audit_events (seq, occurred_at, actor, action, outcome, prev_hash, hash)
             VALUES ($U, now(), 'cli:audit-verify', 'audit.verify', 'success', '\\x00', '\\x00');
           $(rechain "$U")"
expect_broken "an unkeyed row appended after keyed ones (SHA-256 link and head recomputed)" "$U"
restore_chain
if cv audit verify; then
  ok "audit verify passes again on the restored chain"
else
  not_ok "audit verify on the restored chain: $(cat "$SC_DIR/cv.out")"
fi
q "DROP TABLE tail_saved_events, tail_saved_head" >/dev/null

# A chain that spans the migration: a fresh database migrated to 0004 only,
# three events appended by 0004's own SQL (audit_append), then 0005, then a
# merchant created by this build (which creates K_audit with the chain's
# first keyed event).
mkdir -p "$SC_DIR/mig4"
cp migrations/000[1-4]_*.sql "$SC_DIR/mig4/"
q "CREATE DATABASE cardvault_span" >/dev/null
SPAN_URL="${OWNER_URL/dbname=cardvault/dbname=cardvault_span}"
span() { env CARDVAULT_DATABASE_URL="$SPAN_URL" "$SC_BIN" "$@" >"$SC_DIR/cv.out" 2>"$SC_DIR/cv.err"; }
if span migrate --dir "$SC_DIR/mig4" && [ "$(jq -r .schema_version "$SC_DIR/cv.out")" != "" ]; then
  for i in 1 2 3; do
    psql -X -q -At -v ON_ERROR_STOP=1 -d cardvault_span \
      -c "SELECT audit_append('cli:old-version', NULL, NULL, NULL, 'merchant.create', 'success', 'before 0005 #$i')" >/dev/null
  done
  ok "migrated to 0004 and appended 3 events with 0004's audit_append()"
else
  not_ok "migrate --dir (0001-0004): $(cat "$SC_DIR/cv.err")"
fi
span migrate && span merchant create "Span Shop"
check "migrate to 0005, then merchant create (keyed events)" test $? -eq 0
if span audit verify && [ "$(jq -r .keyed_from_seq "$SC_DIR/cv.out")" = 4 ]; then
  ok "audit verify passes on a chain spanning the migration: $(jq -c '{events, keyed_from_seq, keyed_events}' "$SC_DIR/cv.out")"
else
  not_ok "audit verify across the migration: $(cat "$SC_DIR/cv.out" "$SC_DIR/cv.err")"
fi
check "the first keyed event is audit.key_created, the 3 older ones have no MAC" \
  test "$(psql -X -At -d cardvault_span -c "SELECT string_agg(seq || ':' || action || ':' || (mac IS NOT NULL), ',' ORDER BY seq) FROM audit_events WHERE seq <= 4")" \
    = "1:merchant.create:false,2:merchant.create:false,3:merchant.create:false,4:audit.key_created:true"
check "the audit key is stored wrapped in vault_meta, never in clear (40-byte RFC 5649 wrapping)" \
  test "$(psql -X -At -d cardvault_span -c "SELECT length(audit_key_wrapped) FROM vault_meta")" = 40
psql -X -q -d cardvault_span -c "ALTER TABLE audit_events DISABLE TRIGGER USER;
  UPDATE audit_events SET detail = 'edited old row' WHERE seq = 2;
  ALTER TABLE audit_events ENABLE TRIGGER USER" >/dev/null
span audit verify
check "an unkeyed (pre-0005) row edited without relinking is still caught by its SHA-256 link: exit $?, first_broken_seq $(jq -r .first_broken_seq "$SC_DIR/cv.out")" \
  test "$(jq -r .first_broken_seq "$SC_DIR/cv.out")" = 2
env -u CARDVAULT_KEK_FILE CARDVAULT_DATABASE_URL="$OWNER_URL" "$SC_BIN" audit verify >"$SC_DIR/cv.out" 2>"$SC_DIR/cv.err"
rc=$?
check "audit verify without a KEK configured refuses to run (exit $rc: $(head -1 "$SC_DIR/cv.err" | cut -c1-80))" test "$rc" -eq 1

sc_finish audit-tail
