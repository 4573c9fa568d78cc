#!/usr/bin/env bash
# Slow and oversized clients, and the ops listener.
#
#   tests/scenarios/slow-clients.sh build/release/cardvault
#
# On a private PostgreSQL cluster (tests/lib/scenario.sh) with
# pg_stat_statements loaded, a service with CARDVAULT_REQUEST_DEADLINE_MS=2000
# and room for 40 connections, at most 10 per address:
#   a. Request deadline: 40 connections from 4 addresses (10 each, every slot)
#      send a request line and then one header byte every 0.5 s, so they are
#      never idle. Each is closed about 2 s after it connected (not before
#      1.8 s, not after 3 s), and a normal request made while they hold every
#      slot gets its 200 before the deadline has passed by 1.5 s. A request
#      sent in pieces within the deadline, and a keep-alive connection that
#      waits between two requests, are both served. The closes are counted in
#      cardvault_http_deadline_closed_total.
#   b. Oversized chunked body: a tokenize whose chunked body runs to 64 MiB
#      is answered 413 with the JSON error body_too_large, and the connection
#      is closed while the client is still sending: it got no more than
#      16 MiB into its socket (the cap is 8 KiB; the rest is socket buffers).
#      The service still tokenizes afterwards.
#   c. Ops listener: /readyz and /metrics are 404 on the API port (any
#      method) and 200 on CARDVAULT_OPS_LISTEN; /healthz answers on both; the
#      token routes are 404 on the ops port.
#   d. Readiness cache: 300 /readyz calls, 8 at a time, run the database ping
#      (counted by pg_stat_statements) and the readiness probe (counted by
#      cardvault_readiness_probes_total) at most once per second, plus one.
# Ends with "slow-clients: N passed, N failed" and appends "P F" to
# build/test-results.
SUITE=slow-clients
. "$(dirname "$0")/../lib/scenario.sh"
cd "$SC_ROOT" || exit 2
sc_pin_binary
require_tools curl jq psql perl ss awk

DEADLINE_MS=2000
LIB=$SC_ROOT/tests/scenarios/lib
now() { date +%s.%N; }
secs_since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'; }

sc_setup -c shared_preload_libraries=pg_stat_statements
q "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" >/dev/null
PORT=${CARDVAULT_LISTEN##*:}
OPS_URL=$SC_OPS_URL
need "merchant created" sc_merchant slow
need "service starts (deadline ${DEADLINE_MS} ms, 40 connections, 10 per address)" \
  sc_start CARDVAULT_REQUEST_DEADLINE_MS=$DEADLINE_MS CARDVAULT_MAX_CONNECTIONS=40 \
  CARDVAULT_MAX_CONNECTIONS_PER_IP=10
echo "# cardvault $SC_BIN_ORIG, API $SC_URL, ops $OPS_URL, tmp $SC_DIR"
# metric NAME: its value on the ops listener (0 when absent or unreachable).
metric() { curl -s -m 5 "$OPS_URL/metrics" | awk -v k="$1" '$1 == k { print $2; f = 1 } END { if (!f) print 0 }'; }

# ------------------------------------------------------ a. request deadline
closed_before=$(metric cardvault_http_deadline_closed_total)
t0=$(now)
perl "$LIB/trickle.pl" "$PORT" 127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5 10 0.5 7 >"$SC_DIR/trickle.out" &
trickle_pid=$!
sleep 0.7
held=$(ss -Htn state established "( sport = :$PORT )" | wc -l)
# A normal client keeps trying (a full server may refuse or queue it).
first_ok=""
while le "$(secs_since "$t0")" 6.5; do
  code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$SC_URL/healthz" 2>/dev/null)
  if [ "$code" = 200 ]; then first_ok=$(secs_since "$t0"); break; fi
  sleep 0.2
done
wait "$trickle_pid"
read -r _ opened _ closed _ min_life _ max_life <"$SC_DIR/trickle.out"
echo "# trickling clients: $held connections held at 0.7 s; opened $opened, closed $closed, lifetimes ${min_life}-${max_life} s; a normal request first answered 200 at ${first_ok:-never} s"
check "the trickling clients held every slot (40 connections)" test "$held" -ge 40
check "every trickling connection was closed by the server ($closed of $opened)" \
  eval '[ "$opened" -eq 40 ] && [ "$closed" -eq "$opened" ]'
check "closed at the ${DEADLINE_MS} ms deadline: lifetimes ${min_life}-${max_life} s within 1.8-3.0 s" \
  eval 'le 1.8 "$min_life" && le "$max_life" 3.0'
check "a normal request got through while they trickled (200 at ${first_ok:-never} s, want <= 3.5 s)" \
  eval '[ -n "$first_ok" ] && le "$first_ok" 3.5'
closed_after=$(metric cardvault_http_deadline_closed_total)
check "cardvault_http_deadline_closed_total counted them ($closed_before -> $closed_after)" \
  test $((closed_after - closed_before)) -ge 40

# A request that arrives in pieces within the deadline is served, and a
# keep-alive connection gets the whole deadline again after each answer.
exec {fd}<>"/dev/tcp/127.0.0.1/$PORT"
printf 'GET /healthz HTTP/1.1\r\nHost: x\r\n' >&"$fd"
sleep 0.6
printf 'X-Piece: 1\r\n' >&"$fd"
sleep 0.6
printf '\r\n' >&"$fd"
sleep 1.2 # 2.4 s since connecting: past the deadline counted from the start
printf 'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' >&"$fd"
timeout 5 cat <&"$fd" >"$SC_DIR/pieces.out"
exec {fd}>&-
answers=$(grep -o 'HTTP/1.1 200' "$SC_DIR/pieces.out" | wc -l)
[ "$answers" = 2 ] || sed 's/^/#   /' "$SC_DIR/pieces.out"
check "a request sent in pieces within the deadline, then a second after 1.2 s idle: both 200 ($answers)" \
  test "$answers" = 2

# ------------------------------------------------- b. oversized chunked body
perl "$LIB/chunked-flood.pl" "$PORT" "$M_PK" $((64 * 1024 * 1024)) >"$SC_DIR/flood.out"
read -r _ sent _ fstatus _ early <"$SC_DIR/flood.out"
fcode=$(sed -n 2p "$SC_DIR/flood.out" | jq -r '.error.code' 2>/dev/null)
echo "# chunked flood: the client got $sent bytes into its socket, status $fstatus ($fcode), closed while sending: $early"
check "a 64 MiB chunked body is answered 413 body_too_large" test "$fstatus/$fcode" = 413/body_too_large
check "the connection is closed while the client still sends (sent $sent bytes <= 16 MiB)" \
  eval '[ "$early" = 1 ] && [ "$sent" -le $((16 * 1024 * 1024)) ]'
tokenize "$(luhn_pan 41 7)" 12 2031
check "the service tokenizes after the flood (201)" test "$SC_STATUS" = 201

# ------------------------------------------------------------ c. ops listener
api_code() { curl -s -o /dev/null -m 5 -w '%{http_code}' -X "$1" "$SC_URL$2"; }
ops_code() { curl -s -o /dev/null -m 5 -w '%{http_code}' -X "$1" "$OPS_URL$2"; }
got="$(api_code GET /readyz) $(api_code GET /metrics) $(api_code POST /metrics) $(api_code DELETE /readyz)"
check "API port: /readyz and /metrics are 404 for every method ($got)" test "$got" = "404 404 404 404"
got="$(ops_code GET /readyz) $(ops_code GET /metrics) $(ops_code GET /healthz) $(api_code GET /healthz)"
check "ops port: /readyz, /metrics, /healthz 200; API /healthz 200 ($got)" test "$got" = "200 200 200 200"
ct=$(curl -s -o /dev/null -m 5 -w '%{content_type}' "$OPS_URL/metrics")
check "ops /metrics is Prometheus text ($ct)" eval '[[ "$ct" == text/plain*version=0.0.4* ]]'
got="$(ops_code POST /v1/tokens) $(ops_code GET /v1/tokens/tok_4eC39HqLyjWDarjtT1zdp7)"
check "ops port: token routes are 404 ($got)" test "$got" = "404 404"

# --------------------------------------------------------- d. readiness cache
pings() { q "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE query IN ('SELECT 1', 'SELECT \$1')"; }
sleep 1.1 # let the cached answer of part c expire
probes_before=$(metric cardvault_readiness_probes_total)
pings_before=$(pings)
urls=()
for _ in $(seq 1 300); do urls+=(-o /dev/null "$OPS_URL/readyz"); done
t1=$(now)
codes=$(curl -s --no-progress-meter --parallel --parallel-max 8 -w '%{http_code}\n' "${urls[@]}" | sort | uniq -c | awk '{ printf "%s x%s ", $2, $1 }')
elapsed=$(secs_since "$t1")
pings_after=$(pings)
probes_after=$(metric cardvault_readiness_probes_total)
allowed=$(awk -v e="$elapsed" 'BEGIN { printf "%d", int(e) + 2 }')
echo "# 300 /readyz in ${elapsed} s: ${codes}; database pings $((pings_after - pings_before)), readiness probes $((probes_after - probes_before)); allowed $allowed"
check "300 /readyz calls all answered 200 (${codes})" test "$codes" = "200 x300 "
check "database pings at most one per second (+1): $((pings_after - pings_before)) <= $allowed" \
  test $((pings_after - pings_before)) -le "$allowed"
check "readiness probes at most one per second (+1): $((probes_after - probes_before)) <= $allowed" \
  eval '[ "$probes_after" -gt 0 ] && [ $((probes_after - probes_before)) -le "$allowed" ]'

sc_stop
check "serve stopped cleanly (exit 0)" test $? = 0
check "no sanitizer report in the service log" eval '! grep -q "ERROR: AddressSanitizer\|runtime error:" "$SC_SERVICE_LOG"'
sc_finish
