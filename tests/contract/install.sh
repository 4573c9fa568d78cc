#!/bin/sh
# Installs the contract tooling (Redocly CLI, Prism, openapi-typescript, openapi-fetch, TypeScript)
# exactly as pinned in package-lock.json, with `npm ci`. Idempotent and quiet when nothing is to do:
# it reinstalls only when node_modules is missing or older than package.json/package-lock.json.
# Called by `make deps`.
set -eu
cd "$(dirname "$0")"
stamp=node_modules/.cardvault-npm-ci
if [ -f "$stamp" ] && [ -z "$(find package.json package-lock.json -newer "$stamp")" ]; then
    exit 0
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "tests/contract/install.sh: node and npm are required (Debian: apt-get install nodejs npm)" >&2
    exit 1
fi
# Tested with Node 20.20 (this machine) and with Debian bookworm's own nodejs 18.20.4 + npm 9.2
# (lint, type generation, tsc, Prism proxy and the round trip all pass; npm prints EBADENGINE
# warnings for @redocly/cli, which declares Node >= 20.19). Prism 5.14.2 needs Node >= 18.20.1.
if ! node -e 'const [a,b,c]=process.versions.node.split(".").map(Number);process.exit(a>18||(a===18&&(b>20||(b===20&&c>=1)))?0:1)'; then
    echo "tests/contract/install.sh: Node $(node --version) is too old; need 18.20.1 or later" >&2
    exit 1
fi
echo "tests/contract: npm ci (contract tooling from package-lock.json)"
rm -f "$stamp"
npm ci --no-audit --no-fund --loglevel=error
touch "$stamp"
