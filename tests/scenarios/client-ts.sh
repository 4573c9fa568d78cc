#!/usr/bin/env bash
# The packaged TypeScript client (docs/clients/typescript) built and used against the service:
#   1. tests/clients/build-ts.sh generates its types from openapi.yaml, compiles it with
#      tsc --strict and packs the tarball (a wrapper that no longer matches the API fails here);
#   2. tests/clients/client.test.mjs (node --test) drives it as an integrator's server would:
#      tokenize with metadata, a lifetime and an Idempotency-Key (and its replay), read, update,
#      every token over pages of 2, detokenize (and a secret key refused it), delete, then a
#      typed 404; typed errors for a bad card, a bad key and no answer at all;
#   3. the service log holds none of the card numbers used.
#   tests/scenarios/client-ts.sh build/release/cardvault
# Ends with "client-ts: N passed, N failed" and appends "P F" to build/test-results.
SUITE=client-ts
. "$(dirname "$0")/../lib/scenario.sh"
cd "$SC_ROOT" || exit 2
sc_pin_binary
require_tools node npm jq curl

if tests/clients/build-ts.sh >"$SC_DIR/build.out" 2>&1; then
  ok "client built: $(tail -1 "$SC_DIR/build.out" | sed 's|.*/||')"
else
  not_ok "client built"; sed 's/^/  /' "$SC_DIR/build.out" | tail -30; sc_finish
fi
check "the tarball holds the compiled client and its types, nothing else" \
  bash -c "tar -tzf build/clients/typescript/*.tgz | sort | tr '\n' ' ' | grep -q 'package/dist/index.d.ts' &&
           ! tar -tzf build/clients/typescript/*.tgz | grep -qv '^package/\(dist/\|package.json\|README.md\)'"

sc_setup
sc_merchant "TypeScript client shop" || { not_ok "merchant"; sc_finish; }
need "service starts" sc_start
if CV_BASE_URL="$SC_URL" CV_SECRET_KEY="$M_SK" CV_DETOKENIZE_KEY="$M_DK" \
   node --test tests/clients/client.test.mjs >"$SC_DIR/node.out" 2>&1; then
  ok "the client's round trip: $(grep -E '^# (pass|fail) ' "$SC_DIR/node.out" | tr '\n' ' ')"
else
  not_ok "the client's round trip"; sed 's/^/  /' "$SC_DIR/node.out" | tail -40
fi
check "no card number of the run in the service log" \
  bash -c "! grep -qE '4111110000000004242|555555000000000' '$SC_SERVICE_LOG'"
sc_finish
