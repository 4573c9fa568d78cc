#!/usr/bin/env bash
# Runs a command inside a throwaway PostgreSQL cluster (Debian's pg_virtualenv),
# which exports PGHOST/PGPORT/PGUSER/PGPASSWORD and drops the cluster on exit.
# pg_virtualenv turns fsync off; tests that need durability pass -o fsync=on
# through PG_VIRTUALENV_OPTS and check SHOW fsync themselves.
set -euo pipefail
# shellcheck disable=SC2086
exec pg_virtualenv ${PG_VIRTUALENV_OPTS:-} "$@"
