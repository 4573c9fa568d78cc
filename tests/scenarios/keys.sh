#!/usr/bin/env bash
# Key lifecycle under load, a KEK rotation killed midway, and a move from a
# file KEK to a PKCS#11 token KEK (see docs/key-management.md).
#
#   tests/scenarios/keys.sh build/release/cardvault
#
# On a private PostgreSQL cluster (tests/lib/scenario.sh, fsync on):
#   1. Lifecycle under load. wrk tokenizes at full speed with client-known
#      cards (tests/scenarios/lib/keys-tokenize-load.lua logs every 201 as
#      "TOKEN PAN MONTH YEAR") and a second wrk detokenizes the first few
#      hundred of them round and round, checking each answer. Meanwhile:
#      `keys rotate-dek` (D1 -> D2); once the service writes under D2,
#      `keys rotate-kek --new-kek-file` and the configured KEK file replaced in
#      place (atomic mv), so the running service reloads it (kek_reloaded);
#      `keys rotate-dek` again (D2 -> D3), which makes the service unwrap a DEK
#      wrapped under the new KEK; `keys reencrypt --from-dek D1 --batch 200`
#      (moving the very rows the detokenize load reads); then, once D2 has been
#      retired for more than 5 s (the reservation TTL: before that an instance
#      may still encrypt under it), `keys destroy-dek D2 --confirm`, its tokens
#      listed from the database just before; and `keys reencrypt --batch 200`
#      (all retired DEKs; the destroyed one's rows are skipped). Then: every
#      acknowledged card detokenizes to its exact PAN and expiry except those
#      under D2, which answer 410 token_destroyed (GET too); prints
#      "lifecycle: acknowledged N, verified N, destroyed(410) N, lost N" and
#      lost must be 0; no request under load answered anything but 201/200
#      (non-2xx and 503s counted and printed); `keys status` matches the
#      database; the KCV in the database is the new KEK's (computed here with
#      openssl); `audit verify` passes and the trail holds keys.rotate_dek,
#      keys.rotate_kek, keys.reencrypt and keys.destroy_dek.
#   2. A KEK rotation killed midway. (a) A psql session holds vault_meta
#      FOR UPDATE, `keys rotate-kek` blocks on it and gets SIGKILL. (b) A psql
#      session holds audit_head FOR UPDATE: `keys rotate-kek` re-wraps every
#      DEK and updates vault_meta inside its transaction, then blocks on the
#      audit append just before COMMIT, and gets SIGKILL there. Each time,
#      after the lock is released: the KCV, every wrapped DEK and the wrapped
#      fingerprint key are byte-for-byte the old ones, no keys.rotate_kek event
#      was added, the running service (old KEK) detokenizes and is ready, and a
#      restarted one starts with the old KEK. Then a rotation completes.
#   3. File KEK -> PKCS#11 token KEK (when softhsm2-util, pkcs11-tool and
#      libsofthsm2.so exist; else SKIP, counting nothing): a SoftHSM2 token in
#      a temp dir, an AES-256 key generated in it (sensitive), the PIN in a
#      0600 file; `keys rotate-kek pkcs11:...`; the running file-KEK service
#      refuses cleanly (/readyz 503 "kek":"unavailable", kek_stale) while still
#      detokenizing with the DEKs it holds; restarted with
#      CARDVAULT_KEK_PKCS11_* (no CARDVAULT_KEK_FILE) it detokenizes old cards
#      (410 for the destroyed ones), tokenizes new ones, adopts a DEK created
#      by `keys rotate-dek` under the token, and `keys status` says pkcs11.
#   Finally: audit verify, no sanitizer report, a clean stop.
# Ends with "keys: N passed, N failed" and appends "P F" to build/test-results.
SUITE=keys
. "$(dirname "$0")/../lib/scenario.sh"
. "$(dirname "$0")/lib/load.sh"
. "$(dirname "$0")/lib/keys-load.sh"
cd "$SC_ROOT" || exit 2
export LC_ALL=C
sc_pin_binary
require_tools wrk jq curl psql openssl xxd shuf awk
export CARDVAULT_RATE_LIMIT_RPS=0
T_START=$(date +%s)

LOCK_PID=""
ROT_PID=""
keys_cleanup() {
  [ -n "$LOAD_PID" ] && kill -INT "$LOAD_PID" 2>/dev/null
  [ -n "$DETOK_PID" ] && kill -INT "$DETOK_PID" 2>/dev/null
  [ -n "$ROT_PID" ] && kill -9 "$ROT_PID" 2>/dev/null
  [ -n "$LOCK_PID" ] && kill "$LOCK_PID" 2>/dev/null
  sc_cleanup
}
trap keys_cleanup EXIT

now() { date +%s.%N; }
secs_since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
# kcv_of FILE: the key check value of a hex KEK file (AES-256-ECB(KEK, 0^128),
# first 8 bytes), computed independently of cardvault.
kcv_of() {
  head -c 16 /dev/zero | openssl enc -aes-256-ecb -nopad -K "$(tr -d ' \n' <"$1")" | xxd -p | cut -c1-16
}
# result FILE FIELD: FIELD of the command's result line (the CLI's stdout also
# carries JSON log lines such as dek_created).
result() { jq -r "select(has(\"$2\")) | .$2" "$1" 2>/dev/null | tail -1; }
db_kcv() { q "SELECT encode(kek_check_value, 'hex') FROM vault_meta"; }
# Everything a KEK rotation rewrites, as one fingerprint.
key_state() {
  q "SELECT kek_provider || ' ' || encode(kek_check_value, 'hex') || ' ' ||
       encode(sha256(fingerprint_key_wrapped), 'hex') || ' ' ||
       (SELECT string_agg(dek_id || ':' || coalesce(encode(sha256(wrapped_key), 'hex'), 'null'), ','
                          ORDER BY dek_id) FROM data_keys) FROM vault_meta"
}
audit_n() { q "SELECT count(*) FROM audit_events WHERE action = '$1'"; }
log_n() { grep -c "\"event\":\"$1\"" "$SC_SERVICE_LOG"; }
ready_status() { curl -s -o "$SC_DIR/readyz.body" -w '%{http_code}' -m 5 "$SC_OPS_URL/readyz"; }
# wait_for SECONDS COMMAND...: polls every 0.1 s until COMMAND succeeds.
wait_for() {
  local end
  end=$(awk -v n="$(now)" -v s="$1" 'BEGIN { printf "%.3f", n + s }')
  shift
  until "$@"; do
    awk -v n="$(now)" -v e="$end" 'BEGIN { exit !(n >= e) }' && return 1
    sleep 0.1
  done
}
dek_has_tokens() { [ "$(q "SELECT count(*) FROM tokens WHERE dek_id = $1")" -gt 0 ]; }
# detok_sample FILE N KEY: detokenizes N random cards of FILE ("TOKEN PAN M Y")
# one by one; sets S_OK (exact card back) and S_BAD.
detok_sample() {
  local tok pan m y out
  S_OK=0
  S_BAD=0
  while read -r tok pan m y; do
    out=$(curl -s -m 5 -X POST "$SC_URL/v1/tokens/$tok/detokenize" -H "Authorization: Bearer ${3:-$M_DK}")
    if [ "$(jq -r '"\(.token) \(.pan) \(.exp_month) \(.exp_year)"' <<<"$out" 2>/dev/null)" = "$tok $pan $m $y" ]; then
      S_OK=$((S_OK + 1))
    else
      S_BAD=$((S_BAD + 1))
      echo "#   $tok -> $(jq -c '.error // .pan' <<<"$out" 2>/dev/null)"
    fi
  done < <(shuf -n "$2" "$1")
}
# status_of METHOD TOKEN [KEY]: "HTTP_STATUS ERROR_CODE" of one call.
status_of() {
  local url="$SC_URL/v1/tokens/$2" out
  [ "$1" = POST ] && url="$url/detokenize"
  out=$(curl -s -m 5 -w '\n%{http_code}' -X "$1" "$url" -H "Authorization: Bearer ${3:-$M_DK}")
  echo "${out##*$'\n'} $(jq -r '.error.code // "-"' <<<"${out%$'\n'*}" 2>/dev/null)"
}
# tokenize_verify PAN MONTH YEAR: tokenize, then detokenize; ok when the card
# comes back exactly. Sets NEW_TOKEN.
tokenize_verify() {
  NEW_TOKEN=""
  tokenize "$1" "$2" "$3"
  [ "$SC_STATUS" = 201 ] || { echo "#   tokenize: $SC_STATUS $SC_BODY"; return 1; }
  NEW_TOKEN=$(jq -r .token <<<"$SC_BODY")
  local out
  out=$(curl -s -m 5 -X POST "$SC_URL/v1/tokens/$NEW_TOKEN/detokenize" -H "Authorization: Bearer $M_DK")
  [ "$(jq -r '"\(.pan) \(.exp_month) \(.exp_year)"' <<<"$out")" = "$1 $2 $3" ]
}
# keys_status_matches_db: every DEK in `keys status` with the database's state
# and token count, and nothing else.
keys_status_matches_db() {
  local st
  st=$("$SC_BIN" keys status 2>>"$SC_DIR/cli.err") || return 1
  jq -r '.deks[] | "\(.dek_id) \(.state) \(.tokens)"' <<<"$st" >"$SC_DIR/status.deks"
  q "SELECT d.dek_id || ' ' || d.state || ' ' || count(t.token) FROM data_keys d
       LEFT JOIN tokens t USING (dek_id) GROUP BY d.dek_id, d.state ORDER BY d.dek_id" >"$SC_DIR/db.deks"
  diff "$SC_DIR/status.deks" "$SC_DIR/db.deks" >/dev/null
}
# lock_hold APPNAME SQL: a psql session (application_name APPNAME) that runs
# SQL inside an open transaction and keeps it open until lock_release.
lock_hold() {
  rm -f "$SC_DIR/lock.fifo"
  mkfifo "$SC_DIR/lock.fifo"
  PGAPPNAME=$1 psql -X -q -d cardvault <"$SC_DIR/lock.fifo" >"$SC_DIR/lock.out" 2>&1 &
  LOCK_PID=$!
  exec 7>"$SC_DIR/lock.fifo"
  echo "BEGIN; $2" >&7
  wait_for 5 lock_idle_in_tx "$1"
}
# Re-asked on every try of wait_for (a $(...) argument would be evaluated once).
lock_idle_in_tx() {
  test "$(q "SELECT count(*) FROM pg_stat_activity WHERE application_name = '$1' AND state = 'idle in transaction'")" = 1
}
lock_release() {
  echo "ROLLBACK;" >&7
  exec 7>&-
  wait "$LOCK_PID" 2>/dev/null
  LOCK_PID=""
}
backend_gone() { test "$(q "SELECT count(*) FROM pg_stat_activity WHERE application_name = '$1'")" = 0; }
backend_waits_on_lock() {
  test "$(q "SELECT count(*) FROM pg_stat_activity WHERE application_name = '$1' AND wait_event_type = 'Lock'")" = 1
}
new_kek() { (umask 077 && openssl rand -hex 32 >"$1"); }

sc_setup
need "merchant created" sc_merchant keys
need "service starts" sc_start
echo "# cardvault $SC_BIN_ORIG, listen $SC_URL, tmp $SC_DIR"
KCV1=$(kcv_of "$CARDVAULT_KEK_FILE")
BASE_YEAR=$(($(date -u +%Y) + 1))

# ------------------------------------------------ 1. lifecycle under load
L="$SC_DIR/load"
keys_load_start "$L" 51 "$M_PK" "$BASE_YEAR" 4
T_LOAD=$(now)
wait_for 10 eval '[ "$(load_acks "$L" | wc -l)" -ge 300 ]'
load_acks "$L" | head -300 >"$SC_DIR/early"
D1=$(q "SELECT min(dek_id) FROM data_keys")
need "early cards acknowledged, all under one DEK (D1 = $D1)" \
  test "$(wc -l <"$SC_DIR/early"):$(q "SELECT count(DISTINCT dek_id) FROM tokens")" = "300:1"
check "vault bound to the file KEK (database KCV = the KEK file's)" test "$(db_kcv)" = "$KCV1"
keys_detok_start "$L" "$SC_DIR/early" "$M_DK" 2
sleep 1

"$SC_BIN" keys rotate-dek >"$SC_DIR/rotate-dek-1.out" 2>"$SC_DIR/rotate-dek-1.err"
rc=$?
D2=$(result "$SC_DIR/rotate-dek-1.out" active_dek_id)
T_R1=$(now)
echo "# keys rotate-dek (exit $rc): $(grep active_dek_id "$SC_DIR/rotate-dek-1.out")"
need "rotate-dek #1 under load: new active DEK D2 = $D2" eval '[ "$rc" = 0 ] && [ "$D2" -gt "$D1" ]'
check "D1 is retired at once" test "$(q "SELECT state FROM data_keys WHERE dek_id = $D1")" = retired
wait_for 8 dek_has_tokens "$D2"
moved_after=$(secs_since "$T_R1")
check "the service moved to D2 within the 5 s reservation TTL (first row under D2 seen after $moved_after s)" \
  eval 'dek_has_tokens "$D2" && awk -v s="$moved_after" "BEGIN { exit !(s < 6) }"'

new_kek "$SC_DIR/kek2"
KCV2=$(kcv_of "$SC_DIR/kek2")
"$SC_BIN" keys rotate-kek --new-kek-file "$SC_DIR/kek2" >"$SC_DIR/rotate-kek.out" 2>"$SC_DIR/rotate-kek.err"
rc=$?
# Install the new KEK where the service looks for it: same path, atomic rename.
cp -p "$SC_DIR/kek2" "$SC_DIR/kek2.copy" && mv "$SC_DIR/kek2.copy" "$CARDVAULT_KEK_FILE"
T_K=$(now)
echo "# keys rotate-kek (exit $rc): $(grep rewrapped_deks "$SC_DIR/rotate-kek.out" | cut -c1-100)..."
need "rotate-kek under load re-wrapped every DEK" \
  test "$rc:$(result "$SC_DIR/rotate-kek.out" rewrapped_deks)" = "0:$(q "SELECT count(*) FROM data_keys WHERE wrapped_key IS NOT NULL")"
check "database KCV is now the new KEK's ($KCV2, computed with openssl)" test "$(db_kcv)" = "$KCV2"

"$SC_BIN" keys rotate-dek >"$SC_DIR/rotate-dek-2.out" 2>"$SC_DIR/rotate-dek-2.err"
rc=$?
D3=$(result "$SC_DIR/rotate-dek-2.out" active_dek_id)
T_R2=$(now)
need "rotate-dek #2 (under the new KEK): D3 = $D3" eval '[ "$rc" = 0 ] && [ "$D3" -gt "$D2" ]'
wait_for 8 dek_has_tokens "$D3"
moved_after=$(secs_since "$T_R2")
check "the service unwrapped D3 (wrapped under the new KEK) and moved to it (after $moved_after s)" \
  eval 'dek_has_tokens "$D3" && awk -v s="$moved_after" "BEGIN { exit !(s < 6) }"'
check "the running service reloaded the replaced KEK file (log kek_reloaded)" test "$(log_n kek_reloaded)" -ge 1
check "/readyz 200 after the KEK rotation" test "$(ready_status)" = 200
echo "# service log: $(log_n kek_stale) kek_stale, $(log_n kek_reloaded) kek_reloaded; $(grep -o '"event":"kek_[a-z]*"' "$SC_SERVICE_LOG" | tr '\n' ' ')"

# reencrypt and destroy-dek only touch DEKs retired at least 10 s ago (no
# instance may still seal under them then); wait for D1 to get there.
retired_10s() {
  test "$(q "SELECT now() - retired_at > interval '10.5 s' FROM data_keys WHERE dek_id = $1")" = t
}
wait_for 15 retired_10s "$D1"
d1_rows=$(q "SELECT count(*) FROM tokens WHERE dek_id = $D1")
"$SC_BIN" keys reencrypt --from-dek "$D1" --batch 200 >"$SC_DIR/reencrypt-1.out" 2>"$SC_DIR/reencrypt-1.err"
rc=$?
echo "# keys reencrypt --from-dek $D1 --batch 200 (exit $rc): $(grep -c reencrypt_progress "$SC_DIR/reencrypt-1.out") progress lines, last: $(tail -1 "$SC_DIR/reencrypt-1.out")"
check "reencrypt --from-dek D1 under load moved all $d1_rows rows" \
  test "$rc:$(jq -r 'select(.moved != null) | "\(.moved) \(.unreadable)"' "$SC_DIR/reencrypt-1.out")" = "0:$d1_rows 0"
check "reencrypt printed progress per batch of at most 200" \
  eval '[ "$(jq -s "[.[] | select(.event == \"reencrypt_progress\") | .batch] | (length > 1 and max <= 200)" "$SC_DIR/reencrypt-1.out")" = true ]'
check "D1 protects no token now" test "$(q "SELECT count(*) FROM tokens WHERE dek_id = $D1")" = 0

# D2 was retired by rotate-dek #2; destroy-dek refuses keys retired less than
# 10 s ago (an instance may still seal under one for up to 5 s). Only tried
# with a clear margin (retired under 8 s ago): closer to 10 s the command can
# legitimately pass the 10 s mark before it looks, and would destroy D2 early.
retired_under_8s() {
  test "$(q "SELECT now() - retired_at < interval '8 s' FROM data_keys WHERE dek_id = $1")" = t
}
if retired_under_8s "$D2"; then
  "$SC_BIN" keys destroy-dek "$D2" --confirm >"$SC_DIR/destroy-early.out" 2>&1
  rc=$?
  check "destroy-dek refuses a DEK retired less than 10 s ago (exit $rc)" test "$rc" -ne 0
fi
wait_for 15 retired_10s "$D2"
q "SELECT token FROM tokens WHERE dek_id = $D2 ORDER BY token" >"$SC_DIR/destroyed.before"
"$SC_BIN" keys destroy-dek "$D2" --confirm >"$SC_DIR/destroy.out" 2>"$SC_DIR/destroy.err"
rc=$?
T_D=$(now)
echo "# keys destroy-dek $D2 --confirm (exit $rc, $(secs_since "$T_R2") s after its retirement): $(grep destroyed_dek_id "$SC_DIR/destroy.out")"
n_destroyed=$(grep -c . "$SC_DIR/destroyed.before")
need "destroy-dek D2 under load" test "$rc" = 0
check "destroy-dek reports the $n_destroyed tokens listed just before (> 0)" \
  eval '[ "$n_destroyed" -gt 0 ] && [ "$(result "$SC_DIR/destroy.out" tokens_now_unrecoverable)" = "$n_destroyed" ]'
check "D2's wrapped key is gone from the table" \
  test "$(q "SELECT state || ' ' || (wrapped_key IS NULL) FROM data_keys WHERE dek_id = $D2")" = "destroyed true"
sleep 1.5
"$SC_BIN" keys reencrypt --batch 200 >"$SC_DIR/reencrypt-2.out" 2>"$SC_DIR/reencrypt-2.err"
rc=$?
echo "# keys reencrypt --batch 200 (exit $rc): $(tail -1 "$SC_DIR/reencrypt-2.out")"
check "reencrypt of every retired DEK exits 0 and skips the destroyed DEK's rows" \
  test "$rc:$(jq -r 'select(.moved != null) | .unreadable' "$SC_DIR/reencrypt-2.out")" = "0:0"
sleep 0.5
load_stop
keys_detok_stop
echo "# load ran $(awk -v a="$T_LOAD" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }') s: rotate-dek at +$(awk -v a="$T_LOAD" -v b="$T_R1" 'BEGIN { printf "%.1f", b - a }') s, rotate-kek at +$(awk -v a="$T_LOAD" -v b="$T_K" 'BEGIN { printf "%.1f", b - a }') s, rotate-dek at +$(awk -v a="$T_LOAD" -v b="$T_R2" 'BEGIN { printf "%.1f", b - a }') s, destroy-dek at +$(awk -v a="$T_LOAD" -v b="$T_D" 'BEGIN { printf "%.1f", b - a }') s"

q "SELECT token FROM tokens WHERE dek_id = $D2 ORDER BY token" >"$SC_DIR/destroyed"
check "no token was written under D2 after its destruction" diff -q "$SC_DIR/destroyed.before" "$SC_DIR/destroyed"

# What the load saw.
tok_total=$(awk '$1 == "status" { n += $3 } END { print n + 0 }' "$L/summary")
tok_bad=$(awk '$1 == "status" && $2 != 201 { n += $3 } END { print n + 0 }' "$L/summary")
tok_503=$(load_summary "$L" "status 503")
detok_total=$(awk '$1 == "status" { n += $3 } END { print n + 0 }' "$L/detok-summary")
detok_bad=$(awk '$1 == "status" && $2 != 200 { n += $3 } END { print n + 0 }' "$L/detok-summary")
detok_503=$(awk '$1 == "status" && $2 == 503 { print $3 }' "$L/detok-summary")
detok_match=$(awk '$1 == "match" { print $2 }' "$L/detok-summary")
detok_mismatch=$(awk '$1 == "mismatch" { print $2 }' "$L/detok-summary")
echo "# under load: tokenize $tok_total requests, $tok_bad non-201 (${tok_503} x 503); detokenize $detok_total requests, $detok_bad non-200 (${detok_503:-0} x 503), $detok_match exact cards, $detok_mismatch wrong cards; $(load_summary "$L" timeouts) + $(awk '$1 == "timeouts" { print $2 }' "$L/detok-summary") timeouts"
[ "$tok_bad" -gt 0 ] && cat "$L"/errors.* | awk '{ print $1, $2 }' | sort | uniq -c | sed 's/^/#   tokenize /'
[ "$detok_bad$detok_mismatch" != 00 ] && cat "$L"/detok-errors.* | awk '{ print $1, $2 }' | sort | uniq -c | sed 's/^/#   detokenize /'
check "tokenize under load: every answer 201 (non-2xx: $tok_bad, of them 503: $tok_503)" \
  eval '[ "$tok_total" -gt 0 ] && [ "$tok_bad" -eq 0 ]'
check "detokenize under load: every answer 200 with the exact card (non-2xx: $detok_bad, wrong: $detok_mismatch)" \
  eval '[ "${detok_match:-0}" -gt 0 ] && [ "$detok_bad" -eq 0 ] && [ "$detok_mismatch" -eq 0 ]'

load_acks "$L" >"$SC_DIR/acks"
keys_verify "$SC_DIR/acks" "$M_DK" "$SC_DIR/verify" "$SC_DIR/destroyed"
echo "lifecycle: acknowledged $V_ACKED, verified $V_VERIFIED, destroyed(410) $V_DESTROYED, lost $V_LOST"
check "tokens were acknowledged under load" test "$V_ACKED" -gt 0
check "no acknowledged card lost (each detokenizes to its exact PAN and expiry, or is under D2)" test "$V_LOST" -eq 0
[ "$V_LOST" -eq 0 ] || head -5 "$SC_DIR/verify/retried" | sed 's/^/#   /'
acked_destroyed=$(cut -d' ' -f1 "$SC_DIR/verify/acked" | comm -12 - "$SC_DIR/verify/destroyed" | wc -l)
check "every acknowledged token under D2 ($acked_destroyed) answers 410 token_destroyed" \
  eval '[ "$acked_destroyed" -gt 0 ] && [ "$V_DESTROYED" -eq "$acked_destroyed" ]'
check "no token under the destroyed DEK detokenized" test "$V_SHRED_LEAK" -eq 0
get_bad=0
while read -r tok; do
  r=$(status_of GET "$tok" "$M_SK")
  [ "$r" = "410 token_destroyed" ] || { get_bad=$((get_bad + 1)); echo "#   GET $tok -> $r"; }
done < <(shuf -n 100 "$SC_DIR/destroyed")
check "GET answers 410 token_destroyed for destroyed tokens (100 sampled)" test "$get_bad" = 0
tok=$(shuf -n 1 "$SC_DIR/verify/answered" | cut -d' ' -f1)
check "GET of a surviving token answers 200" test "$(status_of GET "$tok" "$M_SK")" = "200 -"

"$SC_BIN" keys destroy-dek "$D3" >"$SC_DIR/destroy-noconfirm.out" 2>&1
rc1=$?
"$SC_BIN" keys destroy-dek "$D3" --confirm >"$SC_DIR/destroy-active.out" 2>&1
rc2=$?
check "destroy-dek refuses without --confirm (exit $rc1) and refuses the active DEK (exit $rc2)" \
  eval '[ "$rc1" != 0 ] && [ "$rc2" != 0 ] && [ "$(q "SELECT state FROM data_keys WHERE dek_id = $D3")" = active ]'
check "keys status: every DEK's state and token count match the database" keys_status_matches_db
sed 's/^/#   status: /' "$SC_DIR/status.deks"
check "keys status: D1 retired, D2 destroyed, D3 active, one active DEK" \
  eval 'awk -v d1="$D1" -v d2="$D2" -v d3="$D3" "(\$1 == d1 && \$2 == \"retired\") || (\$1 == d2 && \$2 == \"destroyed\") || (\$1 == d3 && \$2 == \"active\") { n++ } \$2 == \"active\" { a++ } END { exit !(n == 3 && a == 1) }" "$SC_DIR/status.deks"'
st=$("$SC_BIN" keys status 2>>"$SC_DIR/cli.err")
check "keys status: KEK provider file, check value prefix of the new KEK" \
  test "$(jq -r '"\(.kek.provider) \(.kek.check_value_prefix)"' <<<"$st")" = "file ${KCV2:0:6}"

"$SC_BIN" audit verify >"$SC_DIR/audit-verify.out" 2>>"$SC_DIR/cli.err"
rc=$?
check "audit verify exits 0 after the lifecycle ($(cat "$SC_DIR/audit-verify.out"))" \
  eval '[ "$rc" = 0 ] && grep -q "\"ok\":true" "$SC_DIR/audit-verify.out"'
echo "# audit: $(audit_n keys.rotate_dek) keys.rotate_dek, $(audit_n keys.rotate_kek) keys.rotate_kek, $(audit_n keys.reencrypt) keys.reencrypt, $(audit_n keys.destroy_dek) keys.destroy_dek, $(audit_n keys.dek_created) keys.dek_created"
check "audit trail: 2 keys.rotate_dek, 1 keys.rotate_kek, 2 keys.reencrypt, 1 keys.destroy_dek" \
  test "$(audit_n keys.rotate_dek) $(audit_n keys.rotate_kek) $(audit_n keys.reencrypt) $(audit_n keys.destroy_dek)" = "2 1 2 1"
check "audit: keys.destroy_dek names D2" \
  test "$(q "SELECT detail FROM audit_events WHERE action = 'keys.destroy_dek'")" = "dek $D2"

# ------------------------------------------ 2. KEK rotation killed midway
new_kek "$SC_DIR/kek3"
KCV3=$(kcv_of "$SC_DIR/kek3")
grep -v '^-' "$SC_DIR/verify/answered" | awk 'NF == 4' >"$SC_DIR/survivors"
crash_round() { # crash_round TAG WHAT LOCK_SQL
  local tag=$1 app="cv-keys-rotate-$1" before after rc
  before=$(key_state)
  local events_before
  events_before=$(audit_n keys.rotate_kek)
  need "$tag: lock held ($3)" lock_hold "cv-keys-lock-$tag" "$3"
  PGAPPNAME=$app "$SC_BIN" keys rotate-kek --new-kek-file "$SC_DIR/kek3" >"$SC_DIR/crash-$tag.out" 2>"$SC_DIR/crash-$tag.err" &
  ROT_PID=$!
  if wait_for 10 backend_waits_on_lock "$app"; then
    ok "$tag: rotate-kek blocks $2"
  else
    not_ok "$tag: rotate-kek blocks $2"
  fi
  if [ "$tag" = b ]; then
    # Past the writes: its UPDATEs hold ROW EXCLUSIVE on data_keys and vault_meta.
    check "$tag: rotate-kek had already re-wrapped the DEKs and updated vault_meta (uncommitted)" \
      test "$(q "SELECT count(DISTINCT l.relation) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
                 WHERE a.application_name = '$app' AND l.mode = 'RowExclusiveLock'
                   AND l.relation IN ('data_keys'::regclass, 'vault_meta'::regclass)")" = 2
  fi
  kill -9 "$ROT_PID"
  wait "$ROT_PID" 2>/dev/null
  rc=$?
  ROT_PID=""
  lock_release
  wait_for 10 backend_gone "$app"
  check "$tag: rotate-kek killed (exit $rc), its transaction gone after the lock was released" \
    eval '[ "$rc" = 137 ] && backend_gone "$app"'
  after=$(key_state)
  check "$tag: KCV, wrapped DEKs and wrapped fingerprint key are the old ones" test "$before" = "$after"
  check "$tag: database KCV is still the old KEK's" test "$(db_kcv)" = "$KCV2"
  check "$tag: no keys.rotate_kek event added" test "$(audit_n keys.rotate_kek)" = "$events_before"
  detok_sample "$SC_DIR/survivors" 20
  check "$tag: the running service (old KEK) detokenizes 20 sampled cards exactly" test "$S_OK" = 20
  check "$tag: /readyz 200" test "$(ready_status)" = 200
}
crash_round a "on vault_meta FOR UPDATE (before any write)" "SELECT 1 FROM vault_meta FOR UPDATE;"
crash_round b "on the audit append just before COMMIT" "SELECT 1 FROM audit_head FOR UPDATE;"
need "service stops" sc_stop
need "service restarts with the old KEK (the database still names it)" sc_start
detok_sample "$SC_DIR/survivors" 50
check "restarted service (old KEK, DEKs unwrapped afresh) detokenizes 50 sampled cards" test "$S_OK" = 50
reloads=$(log_n kek_reloaded)
"$SC_BIN" keys rotate-kek --new-kek-file "$SC_DIR/kek3" >"$SC_DIR/rotate-kek-2.out" 2>"$SC_DIR/rotate-kek-2.err"
rc=$?
cp -p "$SC_DIR/kek3" "$SC_DIR/kek3.copy" && mv "$SC_DIR/kek3.copy" "$CARDVAULT_KEK_FILE"
check "a second rotate-kek completes (exit $rc)" test "$rc" = 0
check "database KCV is the third KEK's" test "$(db_kcv)" = "$KCV3"
check "/readyz 200 with the replaced file" test "$(ready_status)" = 200
check "running service reloaded it (kek_reloaded)" test "$(log_n kek_reloaded)" -gt "$reloads"
detok_sample "$SC_DIR/survivors" 20
check "detokenize after the second rotation: 20 sampled cards exact" test "$S_OK" = 20
check "tokenize + detokenize after the second rotation" tokenize_verify "$(luhn_pan 52 1)" 7 "$BASE_YEAR"

# ------------------------------------------- 3. file KEK -> PKCS#11 token
P11_MODULE=""
for m in /usr/lib/softhsm/libsofthsm2.so /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so \
  /usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so /usr/local/lib/softhsm/libsofthsm2.so; do
  [ -r "$m" ] && { P11_MODULE=$m; break; }
done
if [ -z "$P11_MODULE" ] || ! command -v softhsm2-util >/dev/null || ! command -v pkcs11-tool >/dev/null; then
  echo "SKIP pkcs11: softhsm2 (softhsm2-util, libsofthsm2.so) and/or opensc (pkcs11-tool) not installed"
else
  P11="$SC_DIR/p11"
  mkdir -p "$P11/tokens" && chmod 700 "$P11"
  printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' "$P11/tokens" >"$P11/softhsm2.conf"
  export SOFTHSM2_CONF="$P11/softhsm2.conf"
  P11_TOKEN=cv-keys
  P11_PIN=31415926
  (umask 077 && echo "$P11_PIN" >"$P11/pin")
  softhsm2-util --init-token --free --label "$P11_TOKEN" --so-pin 27182818 --pin "$P11_PIN" >"$P11/init.out" 2>&1 &&
    pkcs11-tool --module "$P11_MODULE" --token-label "$P11_TOKEN" --login --pin "$P11_PIN" \
      --keygen --key-type AES:32 --label kek-hsm --sensitive --usage-wrap --usage-decrypt >"$P11/keygen.out" 2>&1
  need "SoftHSM2 token with a sensitive AES-256 key generated in it" test $? = 0
  spec="pkcs11:module=$P11_MODULE,token=$P11_TOKEN,key=kek-hsm,pin-file=$P11/pin"
  "$SC_BIN" keys rotate-kek "$spec" >"$SC_DIR/rotate-p11.out" 2>"$SC_DIR/rotate-p11.err"
  rc=$?
  echo "# keys rotate-kek pkcs11:... (exit $rc): $(grep rewrapped_deks "$SC_DIR/rotate-p11.out" | cut -c1-100)..."
  need "rotate-kek from the file KEK to the token KEK" \
    test "$rc:$(result "$SC_DIR/rotate-p11.out" new_provider)" = "0:pkcs11"
  check "vault_meta names provider pkcs11 and a new KCV" \
    eval '[ "$(q "SELECT kek_provider FROM vault_meta")" = pkcs11 ] && [ "$(db_kcv)" != "$KCV3" ]'
  # The running service still has the file KEK configured: it cannot follow.
  stale_before=$(log_n kek_stale)
  rs=$(ready_status)
  check "file-KEK service refuses cleanly: /readyz 503 with kek unavailable" \
    test "$rs $(jq -r .checks.kek "$SC_DIR/readyz.body" 2>/dev/null)" = "503 unavailable"
  check "... and logs kek_stale" test "$(log_n kek_stale)" -gt "$stale_before"
  detok_sample "$SC_DIR/survivors" 10
  check "... while it still detokenizes with the DEKs it holds (10 sampled)" test "$S_OK" = 10
  need "service stops" sc_stop
  need "service starts with CARDVAULT_KEK_PKCS11_* and no CARDVAULT_KEK_FILE" sc_start -u CARDVAULT_KEK_FILE \
    CARDVAULT_KEK_PKCS11_MODULE="$P11_MODULE" CARDVAULT_KEK_PKCS11_TOKEN="$P11_TOKEN" \
    CARDVAULT_KEK_PKCS11_KEY_LABEL=kek-hsm CARDVAULT_KEK_PKCS11_PIN_FILE="$P11/pin"
  echo "# $(grep -o '"event":"pkcs11_kek_ready".*' "$SC_SERVICE_LOG" | tail -1)"
  check "token KEK ready (log pkcs11_kek_ready)" test "$(log_n pkcs11_kek_ready)" -ge 1
  check "/readyz 200 with the token KEK" test "$(ready_status)" = 200
  detok_sample "$SC_DIR/survivors" 100
  check "old cards detokenize under the token KEK (100 sampled, exact)" test "$S_OK" = 100
  tok=$(shuf -n 1 "$SC_DIR/destroyed")
  check "a destroyed token still answers 410 token_destroyed" test "$(status_of POST "$tok")" = "410 token_destroyed"
  check "tokenize + detokenize under the token KEK" tokenize_verify "$(luhn_pan 53 1)" 3 "$((BASE_YEAR + 2))"
  export CARDVAULT_KEK_PKCS11_MODULE="$P11_MODULE" CARDVAULT_KEK_PKCS11_TOKEN="$P11_TOKEN" \
    CARDVAULT_KEK_PKCS11_KEY_LABEL=kek-hsm CARDVAULT_KEK_PKCS11_PIN_FILE="$P11/pin"
  unset CARDVAULT_KEK_FILE
  st=$("$SC_BIN" keys status 2>>"$SC_DIR/cli.err")
  echo "# keys status kek: $(jq -c .kek <<<"$st")"
  check "keys status: provider pkcs11, configured pkcs11:$P11_TOKEN/kek-hsm, KCV prefix of the database" \
    test "$(jq -r '"\(.kek.provider) \(.kek.configured) \(.kek.check_value_prefix)"' <<<"$st")" = "pkcs11 pkcs11:$P11_TOKEN/kek-hsm $(db_kcv | cut -c1-6)"
  "$SC_BIN" keys rotate-dek >"$SC_DIR/rotate-dek-p11.out" 2>"$SC_DIR/rotate-dek-p11.err"
  rc=$?
  D4=$(result "$SC_DIR/rotate-dek-p11.out" active_dek_id)
  check "rotate-dek under the token KEK (D4 = $D4)" eval '[ "$rc" = 0 ] && [ "$D4" -gt "$D3" ]'
  # The service adopts D4 (unwrapped by the token) within the 5 s TTL.
  i=0
  adopted=""
  while [ $i -lt 80 ]; do
    i=$((i + 1))
    tokenize_verify "$(luhn_pan 53 $((i + 1)))" 5 "$((BASE_YEAR + 3))" || break
    [ "$(q "SELECT dek_id FROM tokens WHERE token = '$NEW_TOKEN'")" = "$D4" ] && { adopted=1; break; }
    sleep 0.1
  done
  check "the service seals under D4 (unwrapped by the token) after $i cards, each read back exactly" test -n "$adopted"
  check "keys status matches the database under the token KEK" keys_status_matches_db
fi

# ---------------------------------------------------------------- the end
"$SC_BIN" audit verify >"$SC_DIR/audit-verify-2.out" 2>>"$SC_DIR/cli.err"
check "audit verify exits 0 at the end" test $? = 0
check "service still alive" kill -0 "$SC_SERVICE_PID"
sc_stop
rc=$?
check "service stops cleanly (exit $rc)" test "$rc" -eq 0
reports=$(grep -E "AddressSanitizer|LeakSanitizer|runtime error:" "$SC_SERVICE_LOG")
check "no sanitizer report in the service log" test -z "$reports"
[ -z "$reports" ] || sort <<<"$reports" | uniq -c | head -5 | sed 's/^/#   /'
reports=$(cat "$SC_DIR"/*.err 2>/dev/null | grep -E "AddressSanitizer|LeakSanitizer|runtime error:")
check "no sanitizer report from the cardvault CLI commands" test -z "$reports"
[ -z "$reports" ] || sort <<<"$reports" | uniq -c | head -5 | sed 's/^/#   /'
echo "# keys scenario took $(($(date +%s) - T_START)) s"
sc_finish keys
