#!/usr/bin/env bash
# make cluster: two cardvault instances behind HAProxy, PostgreSQL 15 with a
# synchronous standby and automatic failover (pg_auto_failover), all on
# loopback. Prints the one URL to use and a demo merchant's keys; Ctrl-C
# stops everything it started.
#
#   tests/cluster/cluster.sh build/release/cardvault
set -u
SC_ROOT_DIR=$(cd "$(dirname "$0")/../.." && pwd)
. "$(dirname "$0")/lib.sh"
BIN=$(realpath "${1:-build/release/cardvault}")
cd "$SC_ROOT_DIR" || exit 2
stopping=0
stop() {
    [ "$stopping" = 1 ] && return
    stopping=1
    cl_log "stopping"
    cl_down
    rm -rf "$CL_DIR"
}
trap stop EXIT
trap 'exit 130' INT TERM
cl_up "$BIN" || exit 1
json=$(CARDVAULT_DATABASE_URL="$CL_DB_URL" "$BIN" merchant create "Cluster demo shop") || exit 1
echo
echo "cardvault cluster: $CL_URL"
echo "  merchant $(jq -r .merchant_id <<<"$json"): secret key $(jq -r .secret_key <<<"$json")"
echo "  (instances a: 127.0.0.1:$CL_VAULT_A_PORT ops :$CL_OPS_A_PORT, b: 127.0.0.1:$CL_VAULT_B_PORT ops :$CL_OPS_B_PORT;"
echo "   PostgreSQL nodes :$CL_PG1_PORT and :$CL_PG2_PORT, monitor :$CL_MON_PORT; logs in $CL_DIR)"
echo "Ctrl-C stops everything."
while :; do sleep 1; done
