#!/usr/bin/env bash
# The per-client-address budget of failed authentications
# (CARDVAULT_AUTH_FAILURES_PER_MIN) and the trusted-proxy setting
# (CARDVAULT_TRUSTED_PROXIES).
#
#   tests/scenarios/auth-throttle.sh build/release/cardvault
#
# 1. One address (as behind a TLS proxy, where every client shares the
#    proxy's address): bad keys use up the budget (401, then 429 with
#    Retry-After), and meanwhile a valid key from that same address is
#    served (200) while bad keys keep getting 429.
# 2. Without CARDVAULT_TRUSTED_PROXIES, X-Forwarded-For is ignored: two
#    "clients" named in it share the peer's bucket and the log names the peer.
# 3. With CARDVAULT_TRUSTED_PROXIES=127.0.0.1: two clients named in
#    X-Forwarded-For have separate buckets and the log names them; the same
#    header from 127.0.0.2 (not a listed proxy) is ignored; with
#    CARDVAULT_TRUSTED_PROXY_HEADER=forwarded, Forwarded: for= is read
#    instead; a malformed list stops the service at start.
# 4. A stale key cache (PostgreSQL down past CARDVAULT_AUTH_STALE_MAX_MS)
#    answers 503 to every key and does not use up the budget: once the
#    database is back, the next bad key is a 401, not a 429.
# Ends with "auth-throttle: N passed, N failed", appends "P F" to
# build/test-results.
SUITE=auth-throttle
. "$(dirname "$0")/../lib/scenario.sh"
cd "$SC_ROOT" || exit 2
sc_pin_binary
require_tools jq curl psql

rand62() { LC_ALL=C tr -dc 'A-Za-z0-9' </dev/urandom | head -c "$1"; }
bad_key() { echo "sk_$(rand62 43)"; }
retry_after() { tr -d '\r' <"$SC_DIR/r.h" | awk -F': ' 'tolower($1) == "retry-after" { print $2 }'; }
# statuses N ARGS...: N requests with a fresh bad key each; prints the statuses, space-separated
statuses() {
  local n=$1 out=() i
  shift
  for i in $(seq 1 "$n"); do
    req GET "/v1/tokens/tok_$(rand62 22)" "$(bad_key)" "" "$@"
    out+=("$R_STATUS")
  done
  echo "${out[*]}"
}
# logged_clients: the distinct "client" values of auth_failed lines since LOG_MARK
logged_clients() {
  tail -n +"$LOG_MARK" "$SC_SERVICE_LOG" | grep '"event":"auth_failed"' |
    jq -r .client 2>/dev/null | sort -u | tr '\n' ' ' | sed 's/ $//'
}
mark_log() { touch "$SC_SERVICE_LOG"; LOG_MARK=$(($(wc -l <"$SC_SERVICE_LOG") + 1)); }
restart() {
  sc_stop
  mark_log
  sc_start CARDVAULT_AUTH_FAILURES_PER_MIN=3 "$@"
}

sc_setup
sc_merchant "throttle" || { not_ok "merchant"; sc_finish; }
GOOD=$M_SK
LOG_MARK=1

# ------------------------------------------------ 1. bad keys, good key, one address
restart || { not_ok "service starts"; sc_finish; }
ok "service starts with CARDVAULT_AUTH_FAILURES_PER_MIN=3"
s=$(statuses 4)
echo "# 4 bad keys from 127.0.0.1: $s"
check "bad keys use up the address's budget (401 401 401 429)" test "$s" = "401 401 401 429"
check "the 429 carries Retry-After" eval '[[ "$(retry_after)" =~ ^[0-9]+$ ]]'
req GET "/v1/tokens/tok_$(rand62 22)" "$GOOD"
echo "# a valid key from the same address, budget empty: $R_STATUS"
check "a valid key from the throttled address is served (404 token_not_found, not 429)" \
  test "$R_STATUS" = 404
req POST /v1/tokens "$GOOD" '{"pan":"4242424242424242","exp_month":12,"exp_year":2031}'
check "and can tokenize (201)" test "$R_STATUS" = 201
s=$(statuses 2)
check "bad keys from that address still get 429 ($s)" test "$s" = "429 429"

# ------------------------------------------------ 2. no trusted proxy: XFF ignored
restart || { not_ok "service restarts"; sc_finish; }
a=$(statuses 3 -H "X-Forwarded-For: 198.51.100.1")
b=$(statuses 1 -H "X-Forwarded-For: 198.51.100.2")
echo "# without CARDVAULT_TRUSTED_PROXIES: XFF .1 x3: $a; XFF .2: $b"
check "without trusted proxies, X-Forwarded-For does not split the bucket (.2 gets 429)" \
  test "$a:$b" = "401 401 401:429"
check "and the log names the TCP peer ($(logged_clients))" test "$(logged_clients)" = "127.0.0.1"

# ------------------------------------------------ 3. trusted proxy 127.0.0.1
restart CARDVAULT_TRUSTED_PROXIES="127.0.0.1, 10.0.0.0/8" || { not_ok "service restarts with trusted proxies"; sc_finish; }
ok "service restarts with CARDVAULT_TRUSTED_PROXIES=\"127.0.0.1, 10.0.0.0/8\""
a=$(statuses 4 -H "X-Forwarded-For: 203.0.113.9, 198.51.100.1")
b=$(statuses 2 -H "X-Forwarded-For: 198.51.100.2, 10.1.2.3")
echo "# trusted 127.0.0.1: client .1 x4: $a; client .2 (behind a second proxy) x2: $b"
check "two clients behind the proxy have separate buckets" \
  test "$a:$b" = "401 401 401 429:401 401"
check "the log names the clients, never the spoofable left part ($(logged_clients))" \
  test "$(logged_clients)" = "198.51.100.1 198.51.100.2"
req GET "/v1/tokens/tok_$(rand62 22)" "$GOOD" "" -H "X-Forwarded-For: 198.51.100.1"
check "a valid key from the throttled client is served (404)" test "$R_STATUS" = 404
mark_log
c=$(statuses 4 --interface 127.0.0.2 -H "X-Forwarded-For: 198.51.100.77")
echo "# from 127.0.0.2 (not a listed proxy) with XFF .77 x4: $c"
check "X-Forwarded-For from a peer that is not a listed proxy is ignored (its own bucket)" \
  test "$c" = "401 401 401 429"
check "and the log names that peer ($(logged_clients))" test "$(logged_clients)" = "127.0.0.2"

restart CARDVAULT_TRUSTED_PROXIES=127.0.0.1 CARDVAULT_TRUSTED_PROXY_HEADER=forwarded ||
  { not_ok "service restarts with the Forwarded header"; sc_finish; }
a=$(statuses 3 -H 'Forwarded: for=192.0.2.60;proto=https' -H "X-Forwarded-For: 198.51.100.1")
b=$(statuses 1 -H 'Forwarded: for="[2001:db8:cafe::17]:4711"')
echo "# Forwarded: for=192.0.2.60 x3: $a; for=[2001:db8:cafe::17] x1: $b"
check "CARDVAULT_TRUSTED_PROXY_HEADER=forwarded reads Forwarded: for= (separate buckets)" \
  test "$a:$b" = "401 401 401:401"
check "and the log names them ($(logged_clients))" \
  test "$(logged_clients)" = "192.0.2.60 2001:db8:cafe::17"
sc_stop
for bad in "10.0.0.1/8" "127.0.0.1,,10.0.0.0/8" "0.0.0.0/0" "localhost" "10.0.0.0/33"; do
  if CARDVAULT_TRUSTED_PROXIES="$bad" timeout 5 "$SC_BIN" serve >"$SC_DIR/bad.out" 2>&1; then
    not_ok "CARDVAULT_TRUSTED_PROXIES=\"$bad\" is refused at start"
  else
    check "CARDVAULT_TRUSTED_PROXIES=\"$bad\" is refused at start, naming the variable" \
      grep -q CARDVAULT_TRUSTED_PROXIES "$SC_DIR/bad.out"
  fi
done

# ------------------------------------------------ 4. a stale key cache is not a failure
restart CARDVAULT_AUTH_REFRESH_MS=200 CARDVAULT_AUTH_STALE_MAX_MS=1000 ||
  { not_ok "service restarts with a 1 s stale bound"; sc_finish; }
sc_pg_stop fast
sleep 2.5
s=$(statuses 5)
echo "# database down, key cache stale: 5 bad keys: $s"
check "a stale key cache answers 503 to every key (never 429)" test "$s" = "503 503 503 503 503"
sc_pg_start
ready=0
for _ in $(seq 1 50); do
  req GET "/v1/tokens/tok_$(rand62 22)" "$GOOD"
  [ "$R_STATUS" = 404 ] && { ready=1; break; }
  sleep 0.2
done
need "the key cache refreshes once the database is back" test "$ready" -eq 1
s=$(statuses 4)
echo "# database back: 4 bad keys: $s"
check "the 503s did not use up the budget (401 401 401 429)" test "$s" = "401 401 401 429"

leaks=$(grep -c "$GOOD" "$SC_SERVICE_LOG")
check "no API key in the service log" test "$leaks" -eq 0
sc_stop
sc_finish
