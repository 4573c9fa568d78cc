#!/usr/bin/env bash
# bench/relay.sh: the relay's throughput and latency against the fake
# processor (tests/relay/fake_processor.py), with the processor's own answer,
# measured in the same run, as the limit (bench/README.md, "Relay").
#
#   bench/relay.sh [build/release/cardvault]      (make bench-relay)
#
# Knobs: BENCH_RELAY_SECONDS (5), BENCH_RELAY_CLIENTS (8), BENCH_RELAY_ROUNDS (2).
# Interleaved: limit, relay, limit, relay ...; the ratio of each round, and
# their median, are printed. PostgreSQL runs with fsync on (every relay
# commits its audit event before it answers).
SUITE=bench-relay
. "$(dirname "$0")/../tests/lib/scenario.sh"
cd "$SC_ROOT" || exit 2
require_tools wrk jq curl openssl python3
SECS=${BENCH_RELAY_SECONDS:-5}
CLIENTS=${BENCH_RELAY_CLIENTS:-8}
ROUNDS=${BENCH_RELAY_ROUNDS:-2}

sc_setup
[ "$(q 'SHOW fsync')" = on ] || { echo "fsync is off: no benchmark"; exit 1; }
sc_merchant "relay bench" || exit 1
pki="$SC_DIR/pki"
tests/relay/make-pki.sh "$pki" || exit 1
fp_port=$(free_port)
# One processor without client certificates, for the relay and the limit alike
# (wrk cannot present one): the same TLS handshake and answer on both paths.
python3 tests/relay/fake_processor.py --port "$fp_port" --cert "$pki/server.pem" \
  --key "$pki/server.key" --record /dev/null --count "$SC_DIR/fp.cnt" >"$SC_DIR/fp.log" 2>&1 &
fp_pid=$!
for _ in $(seq 1 50); do [ -s "$SC_DIR/fp.cnt" ] && break; sleep 0.1; done
jq -n --arg u "https://processor.test:$fp_port" --arg ca "$pki/ca.pem" \
  '{destinations: [{name: "bench", url: $u, methods: ["POST"], paths: ["/v1/charges"],
    ca_file: $ca, resolve: "127.0.0.1", timeout_ms: 10000}]}' >"$SC_DIR/dests.json"
sc_start CARDVAULT_RELAY_DESTINATIONS="$SC_DIR/dests.json" || exit 1
req POST /v1/tokens "$M_PK" "{\"pan\":\"4000000000000002\",\"exp_month\":4,\"exp_year\":$(($(date -u +%Y) + 3))}"
token=$(jq -r .token <<<"$R_BODY")
req POST /v1/relay/bench "$M_RK" "{\"method\":\"POST\",\"path\":\"/v1/charges\",\"headers\":{\"Content-Type\":\"application/json\"},\"tokens\":{\"card\":\"$token\"},\"body\":\"{\\\"n\\\":\\\"{{card.number}}\\\"}\"}"
[ "$R_STATUS" = 200 ] || { echo "a first relay failed: $R_STATUS $R_BODY"; exit 1; }

run() { # direct|relay -> "rps p50_ms p99_ms non200"
  local out url=$SC_URL direct=0
  # wrk does not check certificates: the address is enough for the limit.
  if [ "$1" = direct ]; then url="https://127.0.0.1:$fp_port"; direct=1; fi
  out=$(BENCH_RELAY_KEY=$M_RK BENCH_RELAY_TOKEN=$token BENCH_RELAY_DIRECT=$direct \
    wrk -t2 -c"$CLIENTS" -d"${SECS}s" --latency -s bench/relay.lua "$url" 2>&1)
  local rps p50 p99 bad
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  bad=$(awk '/^non-200:/ {print $2}' <<<"$out")
  echo "$rps $(ms "$p50") $(ms "$p99") ${bad:-?}"
}
ms() { # wrk's 1.23ms / 456.00us / 1.2s -> milliseconds
  awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /[0-9]s$/ && v !~ /ms$/) n *= 1000; printf "%.2f", n }'
}

ratios=()
printf '| round | limit: processor direct (req/s, p50, p99) | relay (req/s, p50, p99) | relay / limit |\n| --- | --- | --- | --- |\n'
for r in $(seq 1 "$ROUNDS"); do
  read -r d_rps d_p50 d_p99 d_bad <<<"$(run direct)"
  read -r r_rps r_p50 r_p99 r_bad <<<"$(run relay)"
  ratio=$(awk -v a="$r_rps" -v b="$d_rps" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }')
  ratios+=("$ratio")
  printf '| %d | %s, %s ms, %s ms (non-200: %s) | %s, %s ms, %s ms (non-200: %s) | %s× |\n' \
    "$r" "$d_rps" "$d_p50" "$d_p99" "$d_bad" "$r_rps" "$r_p50" "$r_p99" "$r_bad" "$ratio"
done
median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR] = $1} END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.2f", (a[NR / 2] + a[NR / 2 + 1]) / 2 }')
echo
echo "relay throughput / processor's own: median ${median}× over $ROUNDS rounds ($CLIENTS clients, ${SECS} s each, $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg))"
events=$(q "SELECT count(*) FROM audit_events WHERE action = 'relay.send'")
echo "relay.send audit events committed: $events"
kill "$fp_pid" 2>/dev/null
