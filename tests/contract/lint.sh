#!/bin/sh
# Lints ../../openapi.yaml with Redocly CLI and this folder's redocly.yaml
# (recommended ruleset, the rules the contract relies on raised to error).
# Exits non-zero on any lint error. Needs ./install.sh (npm ci) first.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
export REDOCLY_TELEMETRY=off
export REDOCLY_SUPPRESS_UPDATE_NOTICE=true
[ -x node_modules/.bin/redocly ] || { echo "lint.sh: run tests/contract/install.sh first" >&2; exit 2; }
exec node_modules/.bin/redocly lint --config redocly.yaml --format stylish ../../openapi.yaml
