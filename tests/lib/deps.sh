#!/usr/bin/env bash
# make deps: install what is missing, quietly when everything is present.
# Debian packages via apt-get (one `apt-get update` first, only when something
# is missing: a fresh machine's package lists may be empty), then the pinned
# npm tooling for the contract tests. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/../.."

packages=(
  build-essential pkg-config
  libmicrohttpd-dev libssl-dev libpq-dev libjansson-dev libcurl4-openssl-dev libp11-kit-dev zlib1g-dev
  postgresql postgresql-contrib postgresql-client
  clang libclang-rt-14-dev valgrind clang-format clang-tidy cppcheck
  curl jq openssl gnutls-bin procps psmisc
  wrk softhsm2 opensc
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

# Node.js and npm run the contract tooling only. This machine's Node 20 may
# come from NodeSource, so look for the commands, not for Debian's packages.
if ! command -v npm >/dev/null 2>&1; then
  missing+=(nodejs npm)
fi

if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "deps: missing packages: ${missing[*]}" >&2
    echo "deps: run 'make deps' as root (or: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Node tooling for the API contract (OpenAPI lint, validating proxy, typed client).
if [ -x tests/contract/install.sh ]; then
  tests/contract/install.sh
fi
