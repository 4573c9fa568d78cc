#!/usr/bin/env bash
# Memory residue: what a finished request leaves in the live service's memory.
#
#   tests/scenarios/heap-scan.sh build/release/cardvault
#
# Starts the service (production mode, plain HTTP on loopback: the listener a
# TLS-terminating proxy talks to) and tokenizes card 0 with curl. Then
# tests/scenarios/lib/hold-client.pl opens HEAP_SCAN_N + 4 connections at
# once (as a busy server has them) plus one that stays open and carries
# nothing secret (so freed memory lies below a live allocation instead of at
# the heap's top, where glibc may return it to the kernel by chance), and
# sends on them: HEAP_SCAN_N (default 20) tokenize requests under the
# merchant's secret key, each with its own fresh Luhn-valid PAN and a CVC,
# half with "Connection: close" (as a proxy speaking HTTP/1.0 upstream sends
# them), half kept alive; the detokenize of card 0 (detokenize key; the
# answer carries the PAN); two bodies refused with 400 (a misspelt field, an
# expiry in the past); one card sent with a wrong key (401, refused on its
# headers, body never read). It closes them, waits until the service has
# closed them too, then reads all readable and writable memory of the
# running process (/proc/PID/maps + /proc/PID/mem,
# tests/scenarios/lib/memscan.pl; needs root or CAP_SYS_PTRACE, as in CI)
# and counts:
#   - every PAN sent, as its digit string;
#   - the CVC in its JSON context ("cvc":" -- no CVC in JSON form may remain);
#   - the secret key and the detokenize key, in full.
# Each count must be 0. The scan covers the whole process: heap, thread
# arenas, thread stacks, libmicrohttpd's connection pools, jansson, OpenSSL.
# HEAP_SCAN_HTTP_THREADS=N runs the service with an epoll pool of N threads.
# What it does not cover: the client side (curl and perl are other
# processes), kernel socket buffers, a connection still open (its memory is
# live by definition), and the HTTPS listener's TLS buffers inside GnuTLS
# (the service runs without CARDVAULT_TLS_CERT here; see
# docs/storage-policy.md, "Service memory").
# The log is checked too: none of those values in the service's output.
# Ends with "heap-scan: N passed, N failed", appends "P F" to build/test-results.
SUITE=heap-scan
. "$(dirname "$0")/../lib/scenario.sh"
cd "$SC_ROOT" || exit 2
sc_pin_binary
require_tools jq curl psql perl ss

N=${HEAP_SCAN_N:-20}
sc_setup
sc_merchant "heap scan" || { not_ok "merchant"; sc_finish; }
# HEAP_SCAN_HTTP_THREADS=N: the epoll pool of N threads instead of a thread per connection.
sc_start ${HEAP_SCAN_HTTP_THREADS:+CARDVAULT_HTTP_THREADS=$HEAP_SCAN_HTTP_THREADS} ||
  { not_ok "service starts"; sc_finish; }
ok "service starts (pid $SC_SERVICE_PID)"
PORT=${CARDVAULT_LISTEN##*:}

# Fresh PANs: a random 8-digit middle, so nothing else in memory matches.
SALT=$(printf '%08d' $((RANDOM * 32768 + RANDOM)))
PANS=()
for i in $(seq 0 $((N + 3))); do PANS+=("$(luhn_pan "49${SALT:0:8}" "$i")"); done
# Card 0 is tokenized first (plain curl) so that it can be detokenized below.
req POST /v1/tokens "$M_SK" "{\"pan\":\"${PANS[0]}\",\"exp_month\":12,\"exp_year\":2031,\"cvc\":\"123\"}"
need "a first card is tokenized" test "$R_STATUS" = 201
TOKEN0=$(jq -r .token <<<"$R_BODY")
rm -f "$SC_DIR/r.body" "$SC_DIR/r.h"
# Then N tokenize requests and the detokenize of card 0, each on its own
# connection, all open at once (tests/scenarios/lib/hold-client.pl).
{
  for i in $(seq 1 "$N"); do
    printf 'POST\t/v1/tokens\t%s\t{"pan":"%s","exp_month":12,"exp_year":2031,"cvc":"%03d"}\t%d\n' \
      "$M_SK" "${PANS[$i]}" $(((RANDOM % 900) + 100)) $((i % 2))
  done
  printf 'POST\t/v1/tokens/%s/detokenize\t%s\t{}\t1\n' "$TOKEN0" "$M_DK"
  # Two refused bodies (400): a misspelt field, an expiry in the past.
  printf 'POST\t/v1/tokens\t%s\t{"pan":"%s","exp_month":12,"exp_year":2031,"cvc":"%03d","cvv":"1"}\t1\n' \
    "$M_SK" "${PANS[$((N + 1))]}" $(((RANDOM % 900) + 100))
  printf 'POST\t/v1/tokens\t%s\t{"pan":"%s","exp_month":1,"exp_year":2001,"cvc":"%03d"}\t1\n' \
    "$M_SK" "${PANS[$((N + 2))]}" $(((RANDOM % 900) + 100))
  # A card sent with a wrong key (401): refused on its headers, body unread.
  printf 'POST\t/v1/tokens\t%s\t{"pan":"%s","exp_month":12,"exp_year":2031,"cvc":"%03d"}\t1\n' \
    "sk_$(LC_ALL=C tr -dc 'A-Za-z0-9' </dev/urandom | head -c 43)" "${PANS[$((N + 3))]}" \
    $(((RANDOM % 900) + 100))
} | perl tests/scenarios/lib/hold-client.pl "$PORT" "$SC_DIR/answers" &
HOLD_PID=$!
trap 'kill -TERM "$HOLD_PID" 2>/dev/null; sc_cleanup' EXIT
for _ in $(seq 1 300); do
  grep -qx ready "$SC_DIR/answers" 2>/dev/null && break
  kill -0 "$HOLD_PID" 2>/dev/null || break
  sleep 0.1
done
need "the client sent every request and closed their connections" grep -qx ready "$SC_DIR/answers"
n201=$(awk -F'\t' '$1 == 201' "$SC_DIR/answers" | wc -l)
n400=$(awk -F'\t' '$1 == 400' "$SC_DIR/answers" | wc -l)
check "$N tokenize requests with PAN and CVC answered 201 ($n201)" test "$n201" -eq "$N"
check "the two refused bodies answered 400 ($n400)" test "$n400" -eq 2
check "the card with a wrong key answered 401" \
  test "$(awk -F'\t' -v n="$((N + 4))" 'NR == n { print $1 }' "$SC_DIR/answers")" = 401
detok=$(awk -F'\t' -v n="$((N + 1))" 'NR == n { print $2 }' "$SC_DIR/answers" | jq -r .pan 2>/dev/null)
check "detokenize returned card 0's PAN" test "$detok" = "${PANS[0]}"
rm -f "$SC_DIR/answers"

# Every request connection closed on the service's side (only the pin, which
# carries nothing secret, is left), and their threads gone.
closed=0
for _ in $(seq 1 100); do
  if [ "$(ss -Htn state established "( sport = :$PORT )" 2>/dev/null | wc -l)" -le 1 ]; then
    closed=1
    break
  fi
  sleep 0.1
done
check "every request connection closed" test "$closed" -eq 1
sleep 1

specs=("cvc_json=\"cvc\":\"" "secret_key=$M_SK" "detokenize_key=$M_DK")
for i in "${!PANS[@]}"; do specs+=("pan$i=${PANS[$i]}"); done
scan=$(perl tests/scenarios/lib/memscan.pl "$SC_SERVICE_PID" "${specs[@]}")
need "the service's memory could be read" test -n "$scan" -a "$(awk '$1 == "bytes" { print $2 }' <<<"$scan")" -gt 0
echo "# scanned: $(grep '^bytes ' <<<"$scan")"
pan_total=$(awk '$1 ~ /^pan[0-9]+$/ { s += $2 } END { print s + 0 }' <<<"$scan")
pan_where=$(awk '$1 ~ /^pan[0-9]+$/ && $2 > 0 { for (i = 3; i <= NF; i++) print $i }' <<<"$scan" |
  awk -F: '{ c[$1] += $2 } END { for (k in c) printf "%s:%d ", k, c[k] }')
pan_which=$(awk '$1 ~ /^pan[0-9]+$/ && $2 > 0 { n++ } END { print n + 0 }' <<<"$scan")
count_of() { awk -v k="$1" '$1 == k { print $2 }' <<<"$scan"; }
where_of() { awk -v k="$1" '$1 == k { $1 = ""; $2 = ""; print }' <<<"$scan" | sed 's/^ *//'; }
echo "# PAN occurrences: $pan_total ($pan_which of ${#PANS[@]} PANs) ${pan_where:+in $pan_where}"
echo "# \"cvc\":\" occurrences: $(count_of cvc_json) $(where_of cvc_json)"
echo "# secret key occurrences: $(count_of secret_key) $(where_of secret_key)"
echo "# detokenize key occurrences: $(count_of detokenize_key) $(where_of detokenize_key)"
check "no PAN in the service's memory after the connections closed ($pan_total found)" \
  test "$pan_total" -eq 0
check "no CVC in JSON context in the service's memory ($(count_of cvc_json) found)" \
  test "$(count_of cvc_json)" -eq 0
check "no full secret API key in the service's memory ($(count_of secret_key) found)" \
  test "$(count_of secret_key)" -eq 0
check "no full detokenize API key in the service's memory ($(count_of detokenize_key) found)" \
  test "$(count_of detokenize_key)" -eq 0

leaks=0
for v in "${PANS[@]}" "$M_SK" "$M_DK" '"cvc"'; do
  grep -qF -e "$v" "$SC_SERVICE_LOG" && leaks=$((leaks + 1))
done
check "no PAN, CVC or key in the service log" test "$leaks" -eq 0
kill -TERM "$HOLD_PID" 2>/dev/null
wait "$HOLD_PID" 2>/dev/null
sc_stop
sc_finish
