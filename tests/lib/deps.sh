#!/usr/bin/env bash
# Install what is missing, quietly when everything is present. Idempotent.
#
#   tests/lib/deps.sh run   what `make run` needs: the compiler, the -dev
#                           libraries, PostgreSQL, curl, and Node.js for the
#                           demo shop's small server (make deps-run)
#   tests/lib/deps.sh       all of that plus the test tool chain: sanitizer
#                           runtime, linters, valgrind, wrk, SoftHSM, Chromium,
#                           python3 (the relay's fake processor, tests/relay),
#                           MariaDB's server (the throwaway database of the
#                           scan-mysql scenario), HAProxy and pg_auto_failover
#                           (make cluster, make test-cluster), and the pinned
#                           npm tooling (make deps)
#
# Debian packages via apt-get (one `apt-get update` first, only when something
# is missing: a fresh machine's package lists may be empty).
# chromium is Debian's build: the browser tests never download a browser of
# their own.
set -euo pipefail
cd "$(dirname "$0")/../.."
mode=${1:-all}

packages=(
  build-essential pkg-config
  libmicrohttpd-dev libssl-dev libpq-dev libjansson-dev libcurl4-openssl-dev libp11-kit-dev zlib1g-dev
  libmariadb-dev
  postgresql postgresql-contrib postgresql-client
  curl openssl procps iproute2
)
if [ "$mode" != run ]; then
  packages+=(
    clang libclang-rt-14-dev valgrind clang-format clang-tidy cppcheck
    jq gnutls-bin psmisc gdb python3 systemd
    wrk softhsm2 opensc
    chromium fonts-dejavu-core
    mariadb-server
    haproxy postgresql-15-auto-failover pg-auto-failover-cli
  )
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

# Node.js runs the demo shop of `make run`; with npm, the contract and browser
# tooling. This machine's Node 20 may come from NodeSource, so look for the
# commands, not for Debian's packages.
if [ "$mode" = run ] && ! command -v node >/dev/null 2>&1; then
  missing+=(nodejs)
elif [ "$mode" != run ] && ! command -v npm >/dev/null 2>&1; then
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
if [ "$mode" != run ] && [ -x tests/contract/install.sh ]; then
  tests/contract/install.sh
fi
# Node tooling for the browser tests (playwright-core driving Debian's chromium
# above, axe-core): pinned in tests/browser/package-lock.json.
if [ "$mode" != run ] && [ -x tests/browser/install.sh ]; then
  tests/browser/install.sh
fi
