#!/usr/bin/env bash
# Operator features scenario.
#
#   tests/scenarios/ops.sh [build/release/cardvault]
#
# On its own PostgreSQL cluster (tests/lib/scenario.sh) it checks:
#   - `cardvault --version`: the build's version, then the OpenSSL,
#     libmicrohttpd and libpq versions, and --help names --version;
#   - /metrics: cardvault_build_info{version,openssl,libmicrohttpd} 1 with the
#     same version as --version; the process metrics (process_cpu_seconds_total,
#     process_resident_memory_bytes, process_virtual_memory_bytes,
#     process_open_fds, process_max_fds, process_start_time_seconds) present
#     and sane (start time within the run, resident memory above 1 MiB, open
#     fds at most max fds); the latency histogram has 5 s and 10 s buckets;
#   - HEAD on /healthz, /readyz and /metrics: the GET's status and headers
#     (Content-Type, Content-Length), no body; POST on them is 405 with
#     Allow: GET, HEAD;
#   - `cardvault probe`: exit 0 for healthz and readyz on the running
#     service (from CARDVAULT_OPS_LISTEN and from --ops-url), 1 on a port
#     nobody listens on and on the API port's /readyz (404 there), 1 for
#     readyz once the database is down while healthz still exits 0, 2 on a
#     usage error; each within the 2 s timeout;
#   - IPv6: serve with CARDVAULT_LISTEN=[::1]:PORT and
#     CARDVAULT_OPS_LISTEN=[::1]:OPS: curl over IPv6 gets /healthz and a
#     token, `cardvault probe` finds the ops listener from the variable;
#     [::]:PORT is refused as plain HTTP beyond loopback; an unbracketed
#     IPv6 address is refused. Skipped, saying so, when the machine has no
#     IPv6 loopback (/proc/net/if_inet6 without ::1).
# Ends with "ops: N passed, N failed" (sc_finish).
SUITE=ops
# shellcheck source=tests/lib/scenario.sh
. "$(dirname "$0")/../lib/scenario.sh"

require_tools jq curl psql openssl awk timeout

cd "$SC_ROOT" || exit 2 # migrate reads ./migrations
sc_setup
sc_merchant "Ops Shop" || { echo "merchant create failed"; exit 1; }
YEAR=$(($(date -u +%Y) + 2))
T0=$(date +%s)

# ---- --version -----------------------------------------------------------
ver=$("$SC_BIN" --version)
check "--version exits 0 and names cardvault, openssl, libmicrohttpd, libpq" \
    awk 'NR==1 && $1=="cardvault" && NF==2 {a=1} NR==2 && $1=="openssl" {b=1}
         NR==3 && $1=="libmicrohttpd" {c=1} NR==4 && $1=="libpq" {d=1}
         END {exit !(a && b && c && d && NR==4)}' <<<"$ver"
VERSION=$(awk 'NR==1 {print $2}' <<<"$ver")
OSSL=$(awk 'NR==2 {print $2}' <<<"$ver")
MHDV=$(awk 'NR==3 {print $2}' <<<"$ver")
check "--version's version is not empty or unknown ($VERSION)" \
    test -n "$VERSION" -a "$VERSION" != unknown
check "--help lists --version" grep -q -- '--version' <("$SC_BIN" --help)

need "service starts" sc_start

# ---- metrics -------------------------------------------------------------
tokenize 4111111111111111 12 "$YEAR"
check "a tokenize works (201)" test "$SC_STATUS" = 201
curl -s "$SC_OPS_URL/metrics" >"$SC_DIR/metrics"
check "cardvault_build_info names the build" grep -qxF \
    "cardvault_build_info{version=\"$VERSION\",openssl=\"$OSSL\",libmicrohttpd=\"$MHDV\"} 1" "$SC_DIR/metrics"
mval() { awk -v n="$1" '$1 == n { print $2 }' "$SC_DIR/metrics"; }
for m in process_cpu_seconds_total process_resident_memory_bytes process_virtual_memory_bytes \
    process_open_fds process_max_fds process_start_time_seconds; do
    check "$m present with # TYPE" sh -c "grep -q '^# TYPE $m ' '$SC_DIR/metrics' && test -n \"\$(awk '\$1==\"$m\"' '$SC_DIR/metrics')\""
done
NOW=$(date +%s)
check "process_start_time_seconds within this run" \
    awk -v s="$(mval process_start_time_seconds)" -v a="$T0" -v b="$NOW" 'BEGIN { exit !(s >= a - 2 && s <= b + 1) }'
check "process_resident_memory_bytes above 1 MiB, at most virtual" \
    awk -v r="$(mval process_resident_memory_bytes)" -v v="$(mval process_virtual_memory_bytes)" \
    'BEGIN { exit !(r > 1048576 && r <= v) }'
check "process_open_fds between 3 and process_max_fds" \
    awk -v o="$(mval process_open_fds)" -v m="$(mval process_max_fds)" 'BEGIN { exit !(o >= 3 && o <= m) }'
check "process_cpu_seconds_total is a small non-negative number" \
    awk -v c="$(mval process_cpu_seconds_total)" 'BEGIN { exit !(c >= 0 && c < 600) }'
check "latency histogram has 5 s and 10 s buckets" sh -c \
    "grep -q 'cardvault_http_request_duration_seconds_bucket{route=\"/v1/tokens\",method=\"POST\",le=\"5\"} 1' '$SC_DIR/metrics' &&
     grep -q 'cardvault_http_request_duration_seconds_bucket{route=\"/v1/tokens\",method=\"POST\",le=\"10\"} 1' '$SC_DIR/metrics'"
if command -v promtool >/dev/null; then
    check "promtool check metrics accepts the page" sh -c "promtool check metrics < '$SC_DIR/metrics' >/dev/null 2>&1 || promtool check metrics < '$SC_DIR/metrics' 2>&1 | grep -qv error"
fi

# ---- HEAD ----------------------------------------------------------------
for p in /healthz /readyz /metrics; do
    get_h=$(curl -s -o /dev/null -D - "$SC_OPS_URL$p" | tr -d '\r')
    head_out="$SC_DIR/head.out"
    head_h=$(curl -s -I -o "$head_out" -D - "$SC_OPS_URL$p" | tr -d '\r')
    # curl -I puts the headers in the body file too; --raw socket read proves no body below.
    gs=$(awk 'NR==1 {print $2}' <<<"$get_h"); hs=$(awk 'NR==1 {print $2}' <<<"$head_h")
    gct=$(grep -i '^content-type:' <<<"$get_h"); hct=$(grep -i '^content-type:' <<<"$head_h")
    check "HEAD $p: status $hs as GET's $gs, same Content-Type" \
        test "$gs" = 200 -a "$hs" = "$gs" -a "$gct" = "$hct" -a -n "$hct"
    check "HEAD $p: Content-Length present" grep -qi '^content-length: [0-9]' <<<"$head_h"
    # Raw exchange: after the blank line that ends the headers, nothing.
    raw=$(printf 'HEAD %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' "$p" |
        timeout 3 bash -c "exec 3<>/dev/tcp/127.0.0.1/$OPS_PORT; cat >&3; cat <&3" | od -An -c | tr -d ' \n')
    check "HEAD $p: no body after the headers" sh -c "case '$raw' in *'\\r\\n\\r\\n') exit 0;; *) exit 1;; esac"
done
st=$(curl -s -o /dev/null -D "$SC_DIR/post.h" -w '%{http_code}' -X POST "$SC_OPS_URL/metrics")
check "POST /metrics: 405 with Allow: GET, HEAD" sh -c \
    "test '$st' = 405 && tr -d '\r' < '$SC_DIR/post.h' | grep -qx 'Allow: GET, HEAD'"
st=$(curl -s -o /dev/null -w '%{http_code}' -I "$SC_URL/elements.js")
check "HEAD on other routes stays 405 ($st)" test "$st" = 405

# ---- probe ---------------------------------------------------------------
# probe_rc ARGS...: the exit code of `cardvault probe ARGS...` (its stderr in probe.err).
probe_rc() { "$SC_BIN" probe "$@" >/dev/null 2>"$SC_DIR/probe.err"; echo $?; }
check "probe (healthz from CARDVAULT_OPS_LISTEN): exit 0" test "$(probe_rc)" = 0
check "probe readyz: exit 0" test "$(probe_rc readyz)" = 0
check "probe --ops-url $SC_OPS_URL readyz: exit 0" test "$(probe_rc --ops-url "$SC_OPS_URL" readyz)" = 0
check "probe prints one JSON line" sh -c "'$SC_BIN' probe | jq -e '.event == \"probe_ok\" and .http_status == 200' >/dev/null"
DEAD=$(free_port 20000 8000)
rc=$(probe_rc --ops-url "http://127.0.0.1:$DEAD")
check "probe on a port nobody listens on: exit 1 ($(head -c 120 "$SC_DIR/probe.err"))" test "$rc" = 1
rc=$(CARDVAULT_OPS_LISTEN="127.0.0.1:$DEAD" probe_rc)
check "probe with CARDVAULT_OPS_LISTEN on a wrong port: exit 1" test "$rc" = 1
rc=$(probe_rc --ops-url "$SC_URL" readyz)
check "probe readyz on the API port (404 there): exit 1" test "$rc" = 1
rc=$(probe_rc bogus)
check "probe bogus: usage error, exit 2" test "$rc" = 2
rc=$(probe_rc --ops-url "https://127.0.0.1:$OPS_PORT")
check "probe --ops-url https://...: usage error, exit 2" test "$rc" = 2
# A listener that accepts and never answers: the probe gives up after ~2 s.
SILENT=$(free_port 20000 8000)
timeout 10 bash -c "python3 -c 'import socket,time
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((\"127.0.0.1\", $SILENT)); s.listen(4)
c=s.accept(); time.sleep(8)'" &
SILENT_PID=$!
# until it listens (a loaded machine starts python slowly; a refused
# connection would end the probe at once)
for _ in $(seq 1 100); do
    ss -Hltn "sport = :$SILENT" 2>/dev/null | grep -q . && break
    sleep 0.1
done
t0=$(date +%s%N)
rc=$(probe_rc --ops-url "http://127.0.0.1:$SILENT")
PROBE_MS=$((($(date +%s%N) - t0) / 1000000))
check "probe on a listener that never answers: exit 1 within 3 s (${PROBE_MS} ms)" \
    test "$rc" = 1 -a "$PROBE_MS" -lt 3000 -a "$PROBE_MS" -ge 1500
kill "$SILENT_PID" 2>/dev/null; wait "$SILENT_PID" 2>/dev/null
sc_pg_stop fast
sleep 1.2 # past the readiness cache (1 s)
rc=$(probe_rc readyz)
check "probe readyz with the database down: exit 1" test "$rc" = 1
check "probe healthz with the database down: exit 0" test "$(probe_rc healthz)" = 0
st=$(curl -s -o /dev/null -w '%{http_code}' -I "$SC_OPS_URL/readyz")
check "HEAD /readyz with the database down: 503 like GET" test "$st" = 503
sc_pg_start
sc_stop
rc=$(probe_rc)
check "probe with the service stopped: exit 1" test "$rc" = 1

# ---- a primary without its expected synchronous standby ---------------------
# This lone server names no standby: with CARDVAULT_EXPECT_SYNC_STANDBY=1 it
# is a cluster's primary running alone (pg_auto_failover's wait_primary).
need "service starts expecting a synchronous standby" sc_start CARDVAULT_EXPECT_SYNC_STANDBY=1
body=$(curl -s -w ' %{http_code}' "$SC_OPS_URL/readyz")
check "expected standby missing: /readyz still 200 ($body)" test "${body##* }" = 200
check "expected standby missing: checks.replication says degraded: no synchronous standby" \
    test "$(jq -r '.checks.replication' <<<"${body% *}")" = "degraded: no synchronous standby"
check "expected standby missing: cardvault_db_sync_standby 0" \
    bash -c "curl -s '$SC_OPS_URL/metrics' | grep -qx 'cardvault_db_sync_standby 0'"
# Named but not streaming: commits would wait for it.
psql -X -q -d postgres -c "ALTER SYSTEM SET synchronous_standby_names = 'absent_standby'" -c "SELECT pg_reload_conf()" >/dev/null
sleep 1.2 # past the shared readiness answer's second
check "a standby named but not streaming: degraded: synchronous standby not connected" \
    test "$(curl -s "$SC_OPS_URL/readyz" | jq -r '.checks.replication')" = "degraded: synchronous standby not connected"
psql -X -q -d postgres -c "ALTER SYSTEM RESET synchronous_standby_names" -c "SELECT pg_reload_conf()" >/dev/null
sc_stop
need "service starts without CARDVAULT_EXPECT_SYNC_STANDBY" sc_start
check "without a standby expected: no replication check and no cardvault_db_sync_standby" \
    bash -c "! curl -s '$SC_OPS_URL/readyz' | grep -q replication && ! curl -s '$SC_OPS_URL/metrics' | grep -q cardvault_db_sync_standby"
sc_stop

# ---- IPv6 ----------------------------------------------------------------
if ! grep -q '^00000000000000000000000000000001 ' /proc/net/if_inet6 2>/dev/null; then
    echo "# SKIP IPv6: this machine has no IPv6 loopback (::1 not in /proc/net/if_inet6)"
else
    V6_API="[::1]:$PORT" V6_OPS="[::1]:$OPS_PORT"
    SAVE_URL=$SC_URL
    SC_URL="http://$V6_API"
    need "serve on CARDVAULT_LISTEN=$V6_API, CARDVAULT_OPS_LISTEN=$V6_OPS" \
        sc_start CARDVAULT_LISTEN="$V6_API" CARDVAULT_OPS_LISTEN="$V6_OPS"
    check "curl -6 $SC_URL/healthz: 200" test "$(curl -6 -s -o /dev/null -w '%{http_code}' "$SC_URL/healthz")" = 200
    tokenize 4111111111111111 12 "$YEAR"
    check "tokenize over IPv6: 201" test "$SC_STATUS" = 201
    check "curl -6 http://$V6_OPS/readyz: 200" \
        test "$(curl -6 -s -o /dev/null -w '%{http_code}' "http://$V6_OPS/readyz")" = 200
    check "nothing listens on 127.0.0.1:$PORT then" \
        test "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/healthz")" = 000
    check "probe from CARDVAULT_OPS_LISTEN=$V6_OPS: exit 0" \
        test "$(CARDVAULT_OPS_LISTEN="$V6_OPS" probe_rc readyz)" = 0
    check "probe --ops-url http://$V6_OPS: exit 0" test "$(probe_rc --ops-url "http://$V6_OPS")" = 0
    sc_stop
    SC_URL=$SAVE_URL
    out=$(env CARDVAULT_DATABASE_URL="${SC_APP_URL:-$CARDVAULT_DATABASE_URL}" CARDVAULT_LISTEN="[::]:$PORT" \
        timeout 10 "$SC_BIN" serve 2>&1)
    rc=$?
    check "serve on [::]:$PORT without TLS: refused as beyond loopback (exit $rc)" \
        sh -c "test $rc = 1 && grep -q 'non-loopback' <<'EOF2'
$out
EOF2"
fi
out=$(CARDVAULT_LISTEN="::1:$PORT" "$SC_BIN" serve 2>&1)
rc=$?
check "CARDVAULT_LISTEN=::1:$PORT (no brackets): refused (exit $rc) naming brackets" \
    sh -c "test $rc = 1 && grep -q 'brackets' <<'EOF2'
$out
EOF2"
sc_finish
