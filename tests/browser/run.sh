#!/usr/bin/env bash
# Browser tests of the card fields (docs/elements.md), end to end in headless Chromium:
#   tests/browser/run.sh path/to/cardvault        (make browser)
# A private PostgreSQL and the vault on one origin, a test shop (tests/browser/shop/, served by
# tests/browser/shop-server.mjs) on a second and "another site" on a third, all on 127.0.0.1
# with different ports (http://127.0.0.1 is a secure context). A merchant, a publishable key
# bound to the shop's origin, the loader's SRI value from `cardvault elements-sri`; then
# tests/browser/cases.mjs drives Debian's chromium through playwright-core (installed by
# `make deps`: tests/browser/install.sh) and checks each case. Screenshots go to
# build/browser-artifacts/. Prints ok/not ok lines and "browser: N passed, N failed", appended
# to build/test-results like every suite.
SUITE=browser
. "$(dirname "$0")/../lib/scenario.sh"
B="$SC_ROOT/tests/browser"
CHROMIUM=${CV_CHROMIUM:-/usr/bin/chromium}

need "chromium is installed ($CHROMIUM; make deps)" test -x "$CHROMIUM"
need "playwright-core and axe-core are installed (make deps)" \
  test -f "$B/node_modules/playwright-core/package.json" -a -f "$B/node_modules/axe-core/axe.min.js"
need "the vault binary exists ($SC_BIN)" test -x "$SC_BIN"

sc_setup
VAULT_PORT=${CARDVAULT_LISTEN##*:}
SHOP_PORT=$(free_port)
FOREIGN_PORT=$(free_port)
while [ "$FOREIGN_PORT" = "$SHOP_PORT" ] || [ "$FOREIGN_PORT" = "$VAULT_PORT" ] || [ "$SHOP_PORT" = "$VAULT_PORT" ]; do
  SHOP_PORT=$(free_port)
  FOREIGN_PORT=$(free_port)
done
SHOP_ORIGIN="http://127.0.0.1:$SHOP_PORT"
# The same shop under the name localhost: another site than the vault at 127.0.0.1, as in
# production, so Chromium runs the frame out of the shop's process.
SHOP_ORIGIN_X="http://localhost:$SHOP_PORT"

need "merchant created" sc_merchant "Browser Test Shop"
# Without the origin-bound key or the SRI value the cases still run (with stand-ins) and each
# fails on its own: a missing piece shows as failures, never as a skipped suite.
key_json=$("$SC_BIN" key create --merchant "$M_ID" --scopes tokenize \
  --allowed-origin "$SHOP_ORIGIN" --allowed-origin "$SHOP_ORIGIN_X" 2>"$SC_DIR/key.err")
ORIGIN_PK=$(jq -r '.key // empty' <<<"$key_json" 2>/dev/null)
if [[ $ORIGIN_PK == pk_* ]]; then
  ok "a publishable key whose allowed origins are the shop's ($SHOP_ORIGIN, $SHOP_ORIGIN_X)"
else
  not_ok "a publishable key whose allowed origins are the shop's ($SHOP_ORIGIN, $SHOP_ORIGIN_X)"
  sed 's/^/#   /' "$SC_DIR/key.err"
  ORIGIN_PK=$M_PK
fi

SRI=$("$SC_BIN" elements-sri 2>"$SC_DIR/sri.err")
if [[ $SRI =~ ^sha384-[A-Za-z0-9+/]{64}$ ]]; then
  ok "cardvault elements-sri prints the loader's sha384 integrity value"
else
  not_ok "cardvault elements-sri prints the loader's sha384 integrity value"
  sed 's/^/#   /' "$SC_DIR/sri.err"
  SRI=sha384-missing
fi

# The relay's fake processor (tests/relay), so the cases can use the holds the frames make: a
# fresh test PKI, the processor on HTTPS, one destination "acme" for the vault. Its record file
# holds the card by design; it is in $SC_DIR, removed on exit with everything else.
FP_PID=""
trap '[ -n "$FP_PID" ] && kill "$FP_PID" 2>/dev/null; sc_cleanup' EXIT
RELAY_RECORD="$SC_DIR/fp.rec"
RELAY_DESTS="$SC_DIR/destinations.json"
FP_PORT=$(free_port)
if "$SC_ROOT/tests/relay/make-pki.sh" "$SC_DIR/pki" >"$SC_DIR/pki.out" 2>&1; then
  python3 "$SC_ROOT/tests/relay/fake_processor.py" --port "$FP_PORT" --cert "$SC_DIR/pki/server.pem" \
    --key "$SC_DIR/pki/server.key" --record "$RELAY_RECORD" --count "$SC_DIR/fp.cnt" >"$SC_DIR/fp.log" 2>&1 &
  FP_PID=$!
  for _ in $(seq 1 50); do [ -s "$SC_DIR/fp.cnt" ] && break; sleep 0.1; done
  jq -n --arg u "https://processor.test:$FP_PORT" --arg ca "$SC_DIR/pki/ca.pem" \
    '{destinations: [{name: "acme", url: $u, methods: ["POST"], paths: ["/v1/charges"], ca_file: $ca,
      resolve: "127.0.0.1", timeout_ms: 3000, max_answer_bytes: 65536}]}' >"$RELAY_DESTS"
  check "the relay's fake processor is up (tests/relay/fake_processor.py)" test -s "$SC_DIR/fp.cnt"
else
  not_ok "the relay's test PKI (tests/relay/make-pki.sh)"
  sed 's/^/#   /' "$SC_DIR/pki.out"
  echo '{"destinations": []}' >"$RELAY_DESTS"
fi

need "service started" sc_start CARDVAULT_RELAY_DESTINATIONS="$RELAY_DESTS"
# The bytes served are the bytes the SRI value names (else every page fails to load the loader).
served=$(curl -s "$SC_URL/elements.js" | openssl dgst -sha384 -binary | openssl base64 -A)
check "GET /elements.js matches cardvault elements-sri" test "sha384-$served" = "$SRI"

# Whole suite well under 3 minutes; a hung browser must not hang `make test`.
mkdir -p "$SC_ROOT/build/browser-artifacts"
(
  cd "$SC_ROOT" &&
  CV_VAULT="$SC_URL" CV_PK="$ORIGIN_PK" CV_PK_NO_ORIGIN="$M_PK" CV_SK="$M_SK" CV_SRI="$SRI" \
  CV_RK="$M_RK" CV_RELAY_DEST=acme CV_RELAY_RECORD="$RELAY_RECORD" \
  CV_SHOP_PORT="$SHOP_PORT" CV_SHOP_X_ALLOWED=1 CV_FOREIGN_PORT="$FOREIGN_PORT" CV_DB_URL="$CARDVAULT_DATABASE_URL" \
  CV_ARTIFACTS="$SC_ROOT/build/browser-artifacts" CV_CHROMIUM="$CHROMIUM" CV_SERVICE_LOG="$SC_SERVICE_LOG" \
    timeout -k 10 240 node "$B/cases.mjs"
) >"$SC_DIR/cases.out" 2>&1
rc=$?
# The cases' own lines, counted into this suite's totals.
grep -v '^browser cases: ' "$SC_DIR/cases.out"
p=$(grep -c '^ok - ' "$SC_DIR/cases.out")
f=$(grep -c '^not ok - ' "$SC_DIR/cases.out")
passed=$((passed + p))
failed=$((failed + f))
if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
  not_ok "cases.mjs exited with status $rc"
fi
[ "$p" -gt 0 ] || not_ok "cases.mjs ran no check"

sc_stop
check "the service stopped cleanly" test "$?" -eq 0
if [ -n "$FP_PID" ]; then kill "$FP_PID" 2>/dev/null; wait "$FP_PID" 2>/dev/null; FP_PID=""; fi
sc_finish browser
