#!/usr/bin/env bash
# Builds the packaged TypeScript client (docs/clients/typescript) into
# build/clients/typescript: types generated from openapi.yaml by openapi-typescript, the wrapper
# compiled by tsc --strict against them (a change to the API the wrapper does not follow fails
# here), then `npm pack` makes the tarball a shop installs. It uses the pinned tools of
# tests/contract (the same versions the client's package.json pins; tests/contract/install.sh,
# run by make deps, installs them).
#   tests/clients/build-ts.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
src="$root/docs/clients/typescript"
tools="$root/tests/contract/node_modules"
out="$root/build/clients/typescript"
[ -x "$tools/.bin/tsc" ] || { echo "build-ts.sh: run make deps (tests/contract/install.sh) first" >&2; exit 2; }
rm -rf "$out"
mkdir -p "$out/src/generated"
cp "$src/package.json" "$src/tsconfig.json" "$src/README.md" "$out/"
cp "$src"/src/*.ts "$out/src/"
# the client's one run-time dependency and the compiler's types, from the pinned tool set
ln -s "$tools" "$out/node_modules"
"$tools/.bin/openapi-typescript" "$root/openapi.yaml" --output "$out/src/generated/cardvault.ts" >/dev/null
(cd "$out" && "$tools/.bin/tsc" -p tsconfig.json)
(cd "$out" && npm pack --silent --pack-destination "$out" >/dev/null)
echo "build-ts.sh: $(ls "$out"/*.tgz)"
