#!/bin/sh
# Typed-client round trip: generates TypeScript types from ../../openapi.yaml (openapi-typescript,
# into generated/), compiles src/ with tsc (into dist/), and runs the tests with `node --test`.
#
# Needs CV_BASE_URL (normally a Prism proxy started with ./prism-proxy.sh, so every exchange is
# validated against the spec), CV_PUBLISHABLE_KEY, CV_SECRET_KEY and CV_DETOKENIZE_KEY of one
# merchant. Exit status: non-zero on a generation, compile or test failure.
set -eu
cd "$(dirname "$0")"
[ -x node_modules/.bin/tsc ] || { echo "roundtrip.sh: run tests/contract/install.sh first" >&2; exit 2; }
missing=
for v in CV_BASE_URL CV_PUBLISHABLE_KEY CV_SECRET_KEY CV_DETOKENIZE_KEY; do
    eval "val=\${$v:-}"
    [ -n "$val" ] || missing="$missing $v"
done
if [ -n "$missing" ]; then
    echo "roundtrip.sh: not set:$missing" >&2
    exit 2
fi
rm -rf generated dist
node_modules/.bin/openapi-typescript ../../openapi.yaml --output generated/cardvault.ts
node_modules/.bin/tsc -p tsconfig.json
# Explicit files rather than `node --test dist/`: directory arguments changed meaning in Node 21+.
set -- dist/src/*.test.js
exec node --test "$@"
