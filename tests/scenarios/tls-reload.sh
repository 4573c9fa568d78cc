#!/usr/bin/env bash
# The HTTPS certificate reloaded on SIGHUP, without a restart and without
# dropping a connection:
#   1. serve with certificate A; a client connection (python's ssl, the test
#      CA bundle) makes a request and stays open;
#   2. the files now hold certificate B; SIGHUP: tls_reloaded is logged with
#      B's SHA-256, a new connection is served with B, the open connection
#      still answers (on A), the service never restarted (same pid),
#      cardvault_tls_reloads_total{result="ok"} is 1 and
#      cardvault_tls_cert_not_after_seconds is B's expiry;
#   3. a key that is not the certificate's, an expired certificate and a file
#      of garbage are each refused on SIGHUP (tls_reload_refused with the
#      reason, no key material in the log), B keeps serving, the refusals
#      are counted;
#   4. without TLS, SIGHUP is logged as skipped and the service carries on.
#   tests/scenarios/tls-reload.sh build/release/cardvault
# Ends with "tls-reload: N passed, N failed" and appends "P F" to build/test-results.
SUITE=tls-reload
. "$(dirname "$0")/../lib/scenario.sh"
cd "$SC_ROOT" || exit 2
sc_pin_binary
require_tools openssl curl jq python3

sc_setup
D=$SC_DIR/tls
mkdir -p "$D"
san="subjectAltName=IP:127.0.0.1,DNS:localhost"
mk() { # mk NAME DAYS
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days "$2" -subj "/CN=cardvault $1" \
    -addext "$san" -keyout "$D/$1.key" -out "$D/$1.crt" 2>/dev/null
  chmod 600 "$D/$1.key"
}
mk a 2
mk b 3
# An expired one: openssl ca sets the dates (req and x509 cannot in OpenSSL 3.0).
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=cardvault old" \
  -keyout "$D/old.key" -out "$D/old.csr" 2>/dev/null
mkdir -p "$D/ca.d" && : >"$D/ca.d/index.txt" && echo 01 >"$D/ca.d/serial"
printf '[ca]\ndefault_ca=x\n[x]\ndatabase=%s/index.txt\nnew_certs_dir=%s\nserial=%s/serial\npolicy=p\ndefault_md=sha256\n[p]\ncommonName=supplied\n' \
  "$D/ca.d" "$D/ca.d" "$D/ca.d" >"$D/ca.d/ca.cnf"
openssl ca -batch -selfsign -config "$D/ca.d/ca.cnf" -keyfile "$D/old.key" -in "$D/old.csr" \
  -startdate 20200101000000Z -enddate 20200102000000Z -out "$D/old.crt" >/dev/null 2>&1
chmod 600 "$D/old.key"
cat "$D/a.crt" "$D/b.crt" >"$D/ca.pem"
fp_of_file() { openssl x509 -in "$1" -noout -fingerprint -sha256 | sed 's/.*=//; s/://g' | tr 'A-F' 'a-f'; }
fp_served() {
  openssl s_client -connect "127.0.0.1:$PORT" -servername localhost </dev/null 2>/dev/null |
    openssl x509 -noout -fingerprint -sha256 2>/dev/null | sed 's/.*=//; s/://g' | tr 'A-F' 'a-f'
}
use() { cp "$D/$1.crt" "$D/cur.crt"; cp "$D/$2.key" "$D/cur.key"; chmod 600 "$D/cur.key"; }
metric() { curl -s "$SC_OPS_URL/metrics" | awk -v k="$1" '$1 == k {print $2}'; }
HTTPS="https://127.0.0.1:$PORT"

use a a
env CARDVAULT_DATABASE_URL="$SC_APP_URL" CARDVAULT_TLS_CERT="$D/cur.crt" CARDVAULT_TLS_KEY="$D/cur.key" \
  "$SC_BIN" serve >>"$SC_SERVICE_LOG" 2>&1 &
SC_SERVICE_PID=$!
for _ in $(seq 1 200); do curl -sf --cacert "$D/ca.pem" "$HTTPS/healthz" >/dev/null 2>&1 && break; sleep 0.05; done
need "HTTPS service starts with certificate A" curl -sf -o /dev/null --cacert "$D/ca.pem" "$HTTPS/healthz"
check "it serves A" test "$(fp_served)" = "$(fp_of_file "$D/a.crt")"
check "cardvault_tls_cert_not_after_seconds is A's expiry" \
  test "$(metric cardvault_tls_cert_not_after_seconds)" = "$(date -d "$(openssl x509 -in "$D/a.crt" -noout -enddate | cut -d= -f2)" +%s)"

# A connection that stays open across the reload.
python3 - "$PORT" "$D" >"$D/held.out" 2>&1 <<'PY' &
import hashlib, http.client, os, ssl, sys, time
port, d = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=f"{d}/ca.pem")
c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=20)
c.request("GET", "/healthz"); r = c.getresponse(); r.read()
first = r.status
open(f"{d}/held.ready", "w").close()
for _ in range(200):
    if os.path.exists(f"{d}/held.go"): break
    time.sleep(0.05)
c.request("GET", "/healthz"); r = c.getresponse(); r.read()
print(first, r.status, hashlib.sha256(c.sock.getpeercert(True)).hexdigest())
PY
HELD=$!
for _ in $(seq 1 100); do [ -e "$D/held.ready" ] && break; sleep 0.05; done

use b b
kill -HUP "$SC_SERVICE_PID"
for _ in $(seq 1 100); do grep -q '"tls_reloaded"' "$SC_SERVICE_LOG" && break; sleep 0.05; done
check "SIGHUP: tls_reloaded logged with B's SHA-256" \
  grep -q "\"tls_reloaded\".*\"sha256\":\"$(fp_of_file "$D/b.crt")\"" "$SC_SERVICE_LOG"
check "the service did not restart (same process)" kill -0 "$SC_SERVICE_PID"
check "a new connection is served with B" test "$(fp_served)" = "$(fp_of_file "$D/b.crt")"
check "requests on a new connection answer (verified against the CA bundle)" \
  curl -sf -o /dev/null --cacert "$D/ca.pem" "$HTTPS/healthz"
touch "$D/held.go"
wait "$HELD"
read -r s1 s2 held_fp <"$D/held.out"
check "the connection opened before the reload answered before and after it, still on A ($s1 $s2)" \
  test "$s1 $s2 $held_fp" = "200 200 $(fp_of_file "$D/a.crt")"
check "cardvault_tls_reloads_total{result=\"ok\"} 1" test "$(metric 'cardvault_tls_reloads_total{result="ok"}')" = 1
check "cardvault_tls_cert_not_after_seconds is now B's expiry" \
  test "$(metric cardvault_tls_cert_not_after_seconds)" = "$(date -d "$(openssl x509 -in "$D/b.crt" -noout -enddate | cut -d= -f2)" +%s)"

n=0
for bad in "mismatch:b:a:the key is not the certificate's" "expired:old:old:expired" "garbage:-:-:no PEM certificate"; do
  IFS=: read -r name crt key reason <<<"$bad"
  if [ "$crt" = - ]; then head -c 600 /dev/urandom | base64 >"$D/cur.crt"; cp "$D/b.key" "$D/cur.key"; else use "$crt" "$key"; fi
  before=$(grep -c '"tls_reload_refused"' "$SC_SERVICE_LOG")
  kill -HUP "$SC_SERVICE_PID"
  for _ in $(seq 1 100); do [ "$(grep -c '"tls_reload_refused"' "$SC_SERVICE_LOG")" -gt "$before" ] && break; sleep 0.05; done
  n=$((n + 1))
  check "$name pair: refused ($(grep '"tls_reload_refused"' "$SC_SERVICE_LOG" | tail -1 | jq -r .reason 2>/dev/null))" \
    bash -c "grep '\"tls_reload_refused\"' '$SC_SERVICE_LOG' | tail -1 | grep -q \"$reason\""
  check "$name pair: B still served, the service still answers" \
    bash -c "[ '$(fp_served)' = '$(fp_of_file "$D/b.crt")' ] && curl -sf --cacert '$D/ca.pem' '$HTTPS/healthz' >/dev/null"
done
check "cardvault_tls_reloads_total{result=\"refused\"} $n" \
  test "$(metric 'cardvault_tls_reloads_total{result="refused"}')" = "$n"
check "no private key text in the service log" bash -c "! grep -q 'PRIVATE KEY' '$SC_SERVICE_LOG'"
kill -TERM "$SC_SERVICE_PID"; wait "$SC_SERVICE_PID" 2>/dev/null

need "service starts without TLS" sc_start
kill -HUP "$SC_SERVICE_PID"
for _ in $(seq 1 100); do grep -q '"tls_reload_skipped"' "$SC_SERVICE_LOG" && break; sleep 0.05; done
check "without TLS: SIGHUP logged as tls_reload_skipped" grep -q '"tls_reload_skipped"' "$SC_SERVICE_LOG"
check "without TLS: the service carries on" curl -sf -o /dev/null "$SC_URL/healthz"
sc_stop
sc_finish
