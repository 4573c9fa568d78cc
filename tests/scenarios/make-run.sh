#!/usr/bin/env bash
# `make run` as a newcomer takes it (docker/local-run.sh, the README's first
# command), on its own state directory and ports:
#   - the first run creates a private PostgreSQL cluster, a KEK and a demo
#     merchant, starts the vault (and the demo shop when node is there) and
#     prints the keys and a curl example;
#   - the printed tokenize example, run as printed, answers 201 with a token;
#     the printed secret key reads it and the printed detokenize key gets the
#     card back; the ops listener's /readyz answers 200;
#   - Ctrl-C (SIGINT to the script's process group) stops the service with
#     exit code 0, then the cluster;
#   - a second run reuses the cluster, the KEK and the merchant (same
#     merchant id, nothing "created"), and the first token still detokenizes;
#   - the card number never appears in what the runs printed (service logs
#     included).
#
#   tests/scenarios/make-run.sh build/release/cardvault
SUITE=make-run
SC_CLUSTER=external # the script under test brings its own cluster
. "$(dirname "$0")/../lib/scenario.sh"
BIN=$(realpath "${1:-build/release/cardvault}")
cd "$SC_ROOT" || exit 2
require_tools curl jq openssl setsid

RUN_DIR=$(mktemp -d /tmp/cv-make-run.XXXXXX)
PGPORT=$(free_port) PORT=$(free_port) SHOP_PORT=$(free_port) OPS_PORT=$(free_port)
RUN_PID="" PGDATA_DIR=""
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
    [ -n "$RUN_PID" ] && kill -KILL -- "-$RUN_PID" 2>/dev/null
    if [ -n "$PGDATA_DIR" ] && [ -f "$PGDATA_DIR/PG_VERSION" ]; then
        as_pg "$pgbin/pg_ctl" -D "$PGDATA_DIR" -m immediate -w stop >/dev/null 2>&1
        rm -rf "$PGDATA_DIR" "$PGDATA_DIR.sock"
    fi
    rm -rf "$RUN_DIR"
}
trap cleanup EXIT

# run_start N: starts `make run`'s script in a session of its own (its group
# gets the SIGINT a terminal's Ctrl-C would send); waits for its banner.
run_start() {
    local out="$RUN_DIR/out$1"
    setsid env CARDVAULT_RUN_DIR="$RUN_DIR/state" CARDVAULT_RUN_BIN="$BIN" \
        CARDVAULT_RUN_PGPORT="$PGPORT" CARDVAULT_LISTEN="127.0.0.1:$PORT" \
        CARDVAULT_RUN_SHOP_LISTEN="127.0.0.1:$SHOP_PORT" CARDVAULT_OPS_LISTEN="127.0.0.1:$OPS_PORT" \
        docker/local-run.sh >"$out" 2>&1 &
    RUN_PID=$!
    for _ in $(seq 1 600); do
        curl -sf "http://127.0.0.1:$OPS_PORT/readyz" >/dev/null 2>&1 && return 0
        kill -0 "$RUN_PID" 2>/dev/null || break
        sleep 0.1
    done
    sed 's/^/#   /' "$out" | tail -20
    return 1
}
# run_stop N: Ctrl-C, then the script's exit status in RUN_RC.
run_stop() {
    kill -INT -- "-$RUN_PID"
    for _ in $(seq 1 300); do kill -0 "$RUN_PID" 2>/dev/null || break; sleep 0.1; done
    wait "$RUN_PID" 2>/dev/null
    RUN_RC=$?
    RUN_PID=""
}
printed_key() { grep -m1 "^  $1:" "$RUN_DIR/out$2" | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^(pk|sk|dk|rk)_/) { print $i; exit } }'; }

# ---------------------------------------------------------------- first run
need "make run's script starts the vault (its ops listener answers /readyz)" run_start 1
PGDATA_DIR=$(sed -n 's/^run: creating a private PostgreSQL cluster in //p' "$RUN_DIR/out1")
check "the first run created a private cluster ($PGDATA_DIR)" test -n "$PGDATA_DIR"
check "the first run created a KEK, mode 0600" \
    eval "grep -q '^run: created a KEK' '$RUN_DIR/out1' && [ \"\$(stat -c %a '$RUN_DIR/state/kek')\" = 600 ]"
MERCHANT=$(grep -m1 '^  merchant:' "$RUN_DIR/out1" | awk '{ print $2 }')
SK=$(printed_key "secret key" 1)
DK=$(printed_key "detokenize key" 1)
check "the banner prints the merchant and its keys" test -n "$MERCHANT" -a -n "$SK" -a -n "$DK"

# The tokenize example exactly as printed: from its "curl" line to the first
# line that does not end in a backslash.
EXAMPLE=$(awk '/^Try:/ { on = 1; next } on && /curl -s -X POST/ { grab = 1 }
               grab { print; if ($0 !~ /\\$/) exit }' "$RUN_DIR/out1")
check "the banner has a tokenize example" grep -q '/v1/tokens' <<<"$EXAMPLE"
R=$(bash -c "$EXAMPLE -w '\n%{http_code}'")
TOKEN=$(jq -r '.token // empty' <<<"${R%$'\n'*}" 2>/dev/null)
check "the printed tokenize example answers 201 with a token (${R##*$'\n'})" \
    test "${R##*$'\n'}" = 201 -a -n "$TOKEN"
code=$(curl -s -o "$RUN_DIR/read.json" -w '%{http_code}' "http://127.0.0.1:$PORT/v1/tokens/$TOKEN" \
    -H "Authorization: Bearer $SK")
check "the printed secret key reads it: 200, last4 4242 ($code)" \
    eval "[ '$code' = 200 ] && [ \"\$(jq -r .last4 '$RUN_DIR/read.json')\" = 4242 ]"
detok() {
    curl -s -X POST "http://127.0.0.1:$PORT/v1/tokens/$TOKEN/detokenize" -H "Authorization: Bearer $DK" |
        jq -r '.pan // empty'
}
check "the printed detokenize key gets the card back" test "$(detok)" = 4242424242424242
check "the ops listener: /readyz 200" \
    test "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$OPS_PORT/readyz")" = 200
if command -v node >/dev/null; then
    check "the demo shop serves its checkout page on another origin" \
        test "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$SHOP_PORT/")" = 200
fi
run_stop
check "Ctrl-C: the script exits 0 ($RUN_RC)" test "$RUN_RC" = 0
check "Ctrl-C: the service reported exit code 0" grep -q '^run: stopped (service exit code 0)' "$RUN_DIR/out1"
check "Ctrl-C: the cluster is stopped too" \
    eval "! as_pg '$pgbin/pg_ctl' -D '$PGDATA_DIR' status >/dev/null 2>&1"
check "Ctrl-C: nothing listens on the vault's port any more" \
    eval "! curl -s -o /dev/null 'http://127.0.0.1:$PORT/healthz'"

# --------------------------------------------------------------- second run
need "the second run starts" run_start 2
check "the second run creates nothing (cluster, KEK, merchant reused)" \
    eval "! grep -q -e '^run: creating' -e '^run: created' '$RUN_DIR/out2'"
check "the second run prints the same merchant" \
    test "$(grep -m1 '^  merchant:' "$RUN_DIR/out2" | awk '{ print $2 }')" = "$MERCHANT"
check "the first run's token still detokenizes to its card" test "$(detok)" = 4242424242424242
run_stop
check "the second run stops with exit 0 ($RUN_RC)" test "$RUN_RC" = 0

check "the card number never appears in what either run printed (logs included)" \
    eval "! grep -q 4242424242424242 '$RUN_DIR/out1' '$RUN_DIR/out2'"
sc_finish
