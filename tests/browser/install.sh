#!/bin/sh
# Installs the browser-test tooling (playwright-core, axe-core) exactly as pinned in
# package-lock.json, with `npm ci`. Idempotent and quiet when nothing is to do: it reinstalls only
# when node_modules is missing or older than package.json/package-lock.json. Called by `make deps`.
# playwright-core ships no browser and downloads none (no install script); the tests drive
# Debian's chromium (/usr/bin/chromium, installed by tests/lib/deps.sh). The variable below makes
# sure nothing in the tree tries anyway.
set -eu
cd "$(dirname "$0")"
stamp=node_modules/.cardvault-npm-ci
if [ -f "$stamp" ] && [ -z "$(find package.json package-lock.json -newer "$stamp")" ]; then
    exit 0
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "tests/browser/install.sh: node and npm are required (Debian: apt-get install nodejs npm)" >&2
    exit 1
fi
if ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)'; then
    echo "tests/browser/install.sh: Node $(node --version) is too old; need 20 or later (playwright-core 1.65 requires it)" >&2
    exit 1
fi
echo "tests/browser: npm ci (playwright-core, axe-core from package-lock.json)"
rm -f "$stamp"
PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error
touch "$stamp"
