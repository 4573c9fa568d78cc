#!/usr/bin/env bash
# The contract, checked by tools no one here wrote:
#   1. Redocly lints openapi.yaml (rules in redocly.yaml);
#   2. a typed client generated from openapi.yaml (openapi-typescript + openapi-fetch) runs
#      tokenize -> read -> detokenize -> delete against the real service, through Prism's
#      validating proxy in strict mode, so every request and response is checked against the
#      document (with its response objects closed: closed-spec.mjs, so an undocumented member is
#      caught though the document itself is open).
# (The integration suite also runs through Prism: see tests/integration/run.sh, CV_PRISM=1.)
#   tests/contract/run.sh path/to/cardvault
. "$(dirname "$0")/../lib/scenario.sh"
CONTRACT="$SC_ROOT/tests/contract"
export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true

if "$CONTRACT/lint.sh" >"$SC_DIR/lint.out" 2>&1; then
  ok "redocly lint: openapi.yaml is valid with the recommended rules"
else
  not_ok "redocly lint"; sed 's/^/  /' "$SC_DIR/lint.out" | tail -30
fi

# 3. every error example in openapi.yaml carries the exact type and message
#    the service sends for its code (`cardvault errors` prints them from the
#    table the service answers from), and every code it can send is named.
if "$SC_BIN" errors >"$SC_DIR/errors.json" 2>"$SC_DIR/errors.err" &&
   (cd "$CONTRACT" && ./node_modules/.bin/redocly bundle ../../openapi.yaml --ext json \
      -o "$SC_DIR/openapi.json" >"$SC_DIR/bundle.out" 2>&1) &&
   node "$CONTRACT/error-examples.mjs" "$SC_DIR/openapi.json" "$SC_ROOT/openapi.yaml" \
      "$SC_DIR/errors.json" >"$SC_DIR/examples.out" 2>&1; then
  ok "openapi.yaml's error examples match the service's messages: $(tail -1 "$SC_DIR/examples.out")"
else
  not_ok "openapi.yaml's error examples match the service's messages"
  sed 's/^/  /' "$SC_DIR/errors.err" "$SC_DIR/bundle.out" "$SC_DIR/examples.out" 2>/dev/null | tail -30
fi

# 4. the schemas are kind to generated clients: no `const`, open responses, closed requests,
#    byte limits stated (schema-rules.mjs).
if [ -s "$SC_DIR/openapi.json" ] &&
   node "$CONTRACT/schema-rules.mjs" "$SC_DIR/openapi.json" >"$SC_DIR/rules.out" 2>&1; then
  ok "openapi.yaml's schemas follow the client rules: $(tail -1 "$SC_DIR/rules.out")"
else
  not_ok "openapi.yaml's schemas follow the client rules"
  sed 's/^/  /' "$SC_DIR/rules.out" 2>/dev/null | tail -30
fi

# 5. the API reference page renders from openapi.yaml and names every operation (make api-docs).
if "$CONTRACT/api-docs.sh" "$SC_DIR/api-docs/index.html" >"$SC_DIR/api-docs.out" 2>&1; then
  ok "API reference rendered: $(tail -1 "$SC_DIR/api-docs.out" | sed 's|.*(||; s|)||')"
else
  not_ok "API reference rendered"; sed 's/^/  /' "$SC_DIR/api-docs.out" | tail -20
fi

sc_setup
sc_merchant "Contract Shop"
if sc_start; then ok "service started"; else not_ok "service started"; sc_finish contract; fi

PRISM_PORT=$(free_port)
export PRISM_RUN_DIR="$SC_DIR/prism"
if "$CONTRACT/prism-proxy.sh" start "$PRISM_PORT" "$SC_URL" strict >"$SC_DIR/prism.out" 2>&1; then
  ok "prism $("$CONTRACT/node_modules/.bin/prism" --version 2>/dev/null) validating proxy started (strict)"
else
  not_ok "prism proxy start"; tail -20 "$SC_DIR/prism.out"
fi

if CV_BASE_URL="http://127.0.0.1:$PRISM_PORT" CV_PUBLISHABLE_KEY="$M_PK" CV_SECRET_KEY="$M_SK" \
   CV_DETOKENIZE_KEY="$M_DK" "$CONTRACT/roundtrip.sh" >"$SC_DIR/roundtrip.out" 2>&1; then
  ok "typed client round trip through Prism: $(grep -E '^# (pass|fail)' "$SC_DIR/roundtrip.out" | tr '\n' ' ')"
else
  not_ok "typed client round trip"; tail -40 "$SC_DIR/roundtrip.out"
fi
"$CONTRACT/prism-proxy.sh" stop "$PRISM_PORT" >/dev/null 2>&1
sc_stop
sc_finish contract
