#!/usr/bin/env bash
# Renders openapi.yaml into one HTML page with Redocly (the pinned @redocly/cli of
# tests/contract) and checks the page names every operationId of the document.
#   tests/contract/api-docs.sh OUT.html
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=$(realpath -m "${1:?usage: api-docs.sh OUT.html}")
export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true
[ -x "$root/tests/contract/node_modules/.bin/redocly" ] || { echo "api-docs.sh: run make deps first" >&2; exit 2; }
mkdir -p "$(dirname "$out")"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
(cd "$root/tests/contract" && ./node_modules/.bin/redocly build-docs ../../openapi.yaml -o "$out") >"$log" 2>&1 ||
    { cat "$log" >&2; exit 1; }
missing=0
for op in $(awk '$1 == "operationId:" {print $2}' "$root/openapi.yaml"); do
    grep -q "\"operationId\":\"$op\"" "$out" || { echo "api-docs.sh: $op is not on the page" >&2; missing=$((missing + 1)); }
done
[ "$missing" = 0 ] || exit 1
echo "api-docs.sh: $out ($(awk '$1 == "operationId:"' "$root/openapi.yaml" | wc -l) operations)"
