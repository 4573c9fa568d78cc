#!/usr/bin/env bash
# Tenant isolation and key-scope matrix.
#
#   tests/scenarios/isolation.sh build/release/cardvault
#
# Three merchants A, B, C, each with five keys: pk (tokenize), sk (tokenize,
# read, delete), dk (detokenize), read (a `key create --scopes read` key) and
# revoked (all scopes, revoked while the service runs); plus two keys of no
# merchant: none (no Authorization header) and bogus (well-formed, unknown).
# Every key is sent to every route against five kinds of token:
#   own      a live token of the key's merchant (a fresh one for each DELETE)
#   xmer     a live token of another merchant (A->B, B->C, C->A)
#   missing  a well-formed token never issued
#   deleted  a token of the key's merchant, deleted
#   bad      a malformed token (tok_0000)
# The expected status of each cell is written out in EXPECT below; the
# matrix is printed with a "!" on any cell that differs. Also checked: every
# 404 body is byte-identical (minus request_id) to the never-issued token's,
# with the same headers (no existence or tenant oracle); 401/403/404 carry
# invalid_api_key / insufficient_scope / token_not_found; other merchants'
# tokens survive the DELETE attempts; a cross-merchant detokenize leaves a
# not_found audit event naming the caller; revocation takes effect within
# the documented refresh (5 s at most).
# Ends with "isolation: N passed, N failed", appends "P F" to build/test-results.
SUITE=isolation
. "$(dirname "$0")/../lib/scenario.sh"
cd "$SC_ROOT" || exit 2
sc_pin_binary
require_tools jq curl psql

# ------------------------------------------------------------------ EXPECT
# One row per merchant and key kind; columns:
#   tokenize | read: own xmer missing deleted bad | delete: (same) | detokenize: (same)
# A key without the route's scope gets 403 before any token is looked up; a
# token that is not the caller's (other merchant, missing, deleted,
# malformed) is 404 everywhere; a revoked, unknown or absent key is 401.
EXPECT=$(cat <<'EOF'
A pk       201  403 403 403 403 403  403 403 403 403 403  403 403 403 403 403
A sk       201  200 404 404 404 404  204 404 404 404 404  403 403 403 403 403
A dk       403  403 403 403 403 403  403 403 403 403 403  200 404 404 404 404
A read     403  200 404 404 404 404  403 403 403 403 403  403 403 403 403 403
A revoked  401  401 401 401 401 401  401 401 401 401 401  401 401 401 401 401
B pk       201  403 403 403 403 403  403 403 403 403 403  403 403 403 403 403
B sk       201  200 404 404 404 404  204 404 404 404 404  403 403 403 403 403
B dk       403  403 403 403 403 403  403 403 403 403 403  200 404 404 404 404
B read     403  200 404 404 404 404  403 403 403 403 403  403 403 403 403 403
B revoked  401  401 401 401 401 401  401 401 401 401 401  401 401 401 401 401
C pk       201  403 403 403 403 403  403 403 403 403 403  403 403 403 403 403
C sk       201  200 404 404 404 404  204 404 404 404 404  403 403 403 403 403
C dk       403  403 403 403 403 403  403 403 403 403 403  200 404 404 404 404
C read     403  200 404 404 404 404  403 403 403 403 403  403 403 403 403 403
C revoked  401  401 401 401 401 401  401 401 401 401 401  401 401 401 401 401
- none     401  401 401 401 401 401  401 401 401 401 401  401 401 401 401 401
- bogus    401  401 401 401 401 401  401 401 401 401 401  401 401 401 401 401
EOF
)
TARGETS=(own xmer missing deleted bad)
ROUTES=(read delete detokenize)

rand62() { LC_ALL=C tr -dc 'A-Za-z0-9' </dev/urandom | head -c "$1"; }
strip_id() { sed -E 's/"request_id":"req_[A-Za-z0-9]*"/"request_id":""/' "$1"; }
# header names and values that must not differ between 404s (Date and
# X-Request-Id do by nature)
norm_headers() { tr -d '\r' <"$1" | grep -viE '^(date|x-request-id):' | tr 'A-Z' 'a-z' | sort; }

sc_setup
declare -A MID KEY OWN DELETED
PAN_N=0
next_pan() { PAN_N=$((PAN_N + 1)); luhn_pan 5555 "$PAN_N"; }
for m in A B C; do
  sc_merchant "isolation $m" || { not_ok "merchant $m created"; sc_finish isolation; }
  MID[$m]=$M_ID
  KEY[$m/pk]=$M_PK
  KEY[$m/sk]=$M_SK
  KEY[$m/dk]=$M_DK
  KEY[$m/read]=$("$SC_BIN" key create --merchant "$M_ID" --scopes read | jq -r .key)
  KEY[$m/revoked]=$("$SC_BIN" key create --merchant "$M_ID" --scopes tokenize,read,delete,detokenize | jq -r .key)
done
KEY[-/none]=""
KEY[-/bogus]="sk_$(rand62 43)"
check "a read-only key is an sk_ key" test "${KEY[A/read]:0:3}" = sk_
sc_start CARDVAULT_AUTH_FAILURES_PER_MIN=0 || { not_ok "service starts"; sc_finish isolation; }
ok "service starts"
echo "# cardvault $SC_BIN_ORIG, listen $SC_URL, tmp $SC_DIR"

# mk_token M: a fresh token of merchant M in $T
mk_token() {
  tokenize "$(next_pan)" 12 2031 "${KEY[$1/pk]}"
  T=$(jq -r .token <<<"$SC_BODY")
  [ "$SC_STATUS" = 201 ]
}
for m in A B C; do
  mk_token "$m" && OWN[$m]=$T || not_ok "token of $m"
  mk_token "$m" && DELETED[$m]=$T || not_ok "token of $m"
  req DELETE "/v1/tokens/${DELETED[$m]}" "${KEY[$m/sk]}"
  [ "$R_STATUS" = 204 ] || not_ok "setup: delete a token of $m ($R_STATUS)"
done

# Revoke the "revoked" keys while the service has them cached.
for m in A B C; do
  req GET "/v1/tokens/${OWN[$m]}" "${KEY[$m/revoked]}"
  check "$m: the all-scopes key works before its revocation" test "$R_STATUS" = 200
  "$SC_BIN" key revoke "${KEY[$m/revoked]:0:12}" >"$SC_DIR/revoke.out" 2>&1
  check "$m: key revoke reports revoked" grep -q '"revoked":true' "$SC_DIR/revoke.out"
done
start=$(date +%s%N)
for m in A B C; do
  while req GET "/v1/tokens/${OWN[$m]}" "${KEY[$m/revoked]}"; [ "$R_STATUS" != 401 ]; do
    [ $((($(date +%s%N) - start) / 1000000)) -gt 6000 ] && break
    sleep 0.05
  done
done
revoke_ms=$((($(date +%s%N) - start) / 1000000))
echo "# revocation seen by the running service after ${revoke_ms} ms"
check "revoked keys refused within 5 s (${revoke_ms} ms)" test "$revoke_ms" -le 5000

other() { case $1 in A) echo B ;; B) echo C ;; C) echo A ;; *) echo A ;; esac; }
MISSING="tok_$(rand62 22)"
# target_token M ROUTE TARGET: the token for a cell
target_token() {
  local m=$1 route=$2 target=$3 owner
  owner=$m
  [ "$m" = - ] && owner=A
  case $target in
    own)
      if [ "$route" = delete ]; then mk_token "$owner"; echo "$T"; else echo "${OWN[$owner]}"; fi ;;
    xmer) echo "${OWN[$(other "$m")]}" ;;
    missing) echo "$MISSING" ;;
    deleted) echo "${DELETED[$owner]}" ;;
    bad) echo "tok_0000" ;;
  esac
}
code_for() { case $1 in 401) echo invalid_api_key ;; 403) echo insufficient_scope ;; 404) echo token_not_found ;; *) echo "" ;; esac; }

printf '\n%-10s %-4s | %-24s | %-24s | %-24s\n' "key" "tok" "read: own xmr mis del bad" \
  "delete: own xmr mis del bad" "detok: own xmr mis del bad"
cells=0
mismatches=()
code_errors=()
oracle_errors=()
while read -r m kind exp; do
  [ -n "$m" ] || continue
  read -ra want <<<"$exp"
  key=${KEY[$m/$kind]}
  got=()
  # tokenize
  req POST /v1/tokens "$key" "{\"pan\":\"$(next_pan)\",\"exp_month\":12,\"exp_year\":2031}"
  got+=("$R_STATUS")
  i=1
  for route in "${ROUTES[@]}"; do
    for target in "${TARGETS[@]}"; do
      tok=$(target_token "$m" "$route" "$target")
      case $route in
        read) req GET "/v1/tokens/$tok" "$key" ;;
        delete) req DELETE "/v1/tokens/$tok" "$key" ;;
        detokenize) req POST "/v1/tokens/$tok/detokenize" "$key" '{}' ;;
      esac
      got+=("$R_STATUS")
      want_code=$(code_for "${want[$i]}")
      body=$(<"$SC_DIR/r.body")
      got_code=-
      [[ "$body" =~ \"code\":\"([a-z_]+)\" ]] && got_code=${BASH_REMATCH[1]}
      if [ -n "$want_code" ] && [ "$got_code" != "$want_code" ]; then
        code_errors+=("$m/$kind $route $target: $(head -c 200 "$SC_DIR/r.body")")
      fi
      if [ "$R_STATUS" = 404 ]; then
        if [ "$target" = missing ]; then
          strip_id "$SC_DIR/r.body" >"$SC_DIR/ref.body"
          norm_headers "$SC_DIR/r.h" >"$SC_DIR/ref.h"
        fi
        printf '%s\n' "$m/$kind $route $target" >>"$SC_DIR/404.list"
        cp "$SC_DIR/r.body" "$SC_DIR/404.$cells.$i.body"
        cp "$SC_DIR/r.h" "$SC_DIR/404.$cells.$i.h"
        echo "$cells.$i $m/$kind $route $target" >>"$SC_DIR/404.index"
      fi
      i=$((i + 1))
    done
  done
  line=""
  for j in "${!want[@]}"; do
    mark=" "
    if [ "${got[$j]}" != "${want[$j]}" ]; then
      mark="!"
      mismatches+=("$m/$kind cell $j: expected ${want[$j]}, got ${got[$j]}")
    fi
    line+=$(printf '%s%s ' "${got[$j]}" "$mark")
    case $j in 0 | 5 | 10) line+="| " ;; esac
  done
  printf '%-10s %s\n' "$m/$kind" "$line"
  cells=$((cells + 1))
done <<<"$EXPECT"
echo

check "all $((cells * 16)) cells as expected (${#mismatches[@]} differ)" test "${#mismatches[@]}" -eq 0
for x in "${mismatches[@]}"; do echo "#   $x"; done
check "401/403/404 answers carry invalid_api_key / insufficient_scope / token_not_found" test "${#code_errors[@]}" -eq 0
for x in "${code_errors[@]:0:5}"; do echo "#   $x"; done

# Every 404 of a token route: the body of a never-issued token, minus
# request_id, and the same headers.
ref_body=$(cat "$SC_DIR/ref.body")
ref_h=$(cat "$SC_DIR/ref.h")
while read -r id m_kind route target; do
  [ "$(strip_id "$SC_DIR/404.$id.body")" = "$ref_body" ] || oracle_errors+=("body: $m_kind $route $target")
  [ "$(norm_headers "$SC_DIR/404.$id.h")" = "$ref_h" ] || oracle_errors+=("headers: $m_kind $route $target")
done <"$SC_DIR/404.index"
n404=$(wc -l <"$SC_DIR/404.index")
echo "# 404 body: $ref_body"
check "all $n404 404s (other merchant's, missing, deleted, malformed token) byte-identical minus request_id" \
  test "${#oracle_errors[@]}" -eq 0
for x in "${oracle_errors[@]:0:5}"; do echo "#   $x"; done
check "the 404 body is token_not_found" test "$(jq -r .error.code <<<"$ref_body")" = token_not_found
xmer404=$(grep -c ' xmer$' "$SC_DIR/404.index")
xmer_want=$(awk '{ for (f = 5; f <= 15; f += 5) if ($f == 404) n++ } END { print n + 0 }' <<<"$EXPECT")
check "every cross-merchant attempt with the route's scope answered 404 ($xmer404 of $xmer_want)" \
  test "$xmer404" -eq "$xmer_want"

# Other merchants' tokens survived the DELETE attempts; the owner still reads them.
for m in A B C; do
  req POST "/v1/tokens/${OWN[$m]}/detokenize" "${KEY[$m/dk]}" '{}'
  check "$m's token survived the other merchants' DELETE attempts (owner detokenizes it)" \
    test "$R_STATUS/$(jq -r '.token' "$SC_DIR/r.body")" = "200/${OWN[$m]}"
  check "$m's token row untouched in the database" \
    test "$(q "SELECT merchant_id FROM tokens WHERE token = '${OWN[$m]}'")" = "${MID[$m]}"
done

# A cross-merchant detokenize is audited as not_found against the caller.
for m in A B C; do
  o=$(other "$m")
  n=$(q "SELECT count(*) FROM audit_events WHERE action = 'token.detokenize' AND outcome = 'not_found'
         AND merchant_id = '${MID[$m]}' AND token = '${OWN[$o]}'")
  check "$m's detokenize of $o's token audited as not_found under $m" test "$n" -ge 1
  n=$(q "SELECT count(*) FROM audit_events WHERE merchant_id = '${MID[$o]}' AND actor IN
         ('${KEY[$m/pk]:0:12}', '${KEY[$m/sk]:0:12}', '${KEY[$m/dk]:0:12}', '${KEY[$m/read]:0:12}')")
  check "no audit event files $m's keys under $o" test "$n" -eq 0
done
n=$(q "SELECT count(*) FROM audit_events WHERE action = 'token.detokenize' AND outcome = 'denied'
       AND actor = '${KEY[A/pk]:0:12}'")
check "detokenize with a key lacking the scope is audited as denied ($n events)" test "$n" -ge 5

sc_stop
rc=$?
check "service stops cleanly (exit $rc)" test "$rc" -eq 0
check "no sanitizer report in the service log" \
  eval '! grep -qE "AddressSanitizer|LeakSanitizer|runtime error:" "$SC_SERVICE_LOG"'
sc_finish isolation
