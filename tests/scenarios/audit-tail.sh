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
#     reset) plain `audit verify` still passes (the documented limit of a
#     chain kept in the database it protects) while `--expect` fails.
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
   UPDATE audit_head SET (seq, hash) = (SELECT seq, hash FROM audit_events WHERE seq = $N);
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

sc_finish audit-tail
