#!/usr/bin/env bash
# bench/cluster.sh [BINARY]: the vault as `make cluster` runs it (two
# instances behind HAProxy, PostgreSQL with a synchronous standby under
# pg_auto_failover), against the limits of the same cluster, in one run.
#
#   1. The loopback cluster of tests/cluster/lib.sh (cl_up: the monitor, a
#      primary and its synchronous standby, vaults a and b on the multi-host
#      URI, HAProxy with the configuration of docker/cluster/haproxy.cfg), one
#      merchant. SHOW on both nodes records fsync, synchronous_commit and
#      synchronous_standby_names; the run stops unless fsync is on on both
#      and the standby is synchronous (pg_stat_replication.sync_state sync or
#      quorum). pg_auto_failover's nodes keep fsync on: every commit waits
#      for the primary's WAL flush and for the standby's.
#   2. The limits, started once: two bench/bare_mhd instances (the service's
#      HTTP flags, a fixed tokenize-sized 201) behind a second HAProxy whose
#      configuration is cl_haproxy_cfg's, with only its ports and directory
#      changed (checked: the two files differ in nothing else), a third
#      bare_mhd answering 200 as their health check.
#   3. A warm-up through HAProxy, then BENCH_CLUSTER_ROUNDS rounds (3), each
#      a dd oflag=dsync probe and, with BENCH_CLUSTER_CLIENTS (64) clients
#      and BENCH_CLUSTER_DURATION (5) s each, one after the other:
#        limit_syncinsert  pgbench -M prepared on the primary: the tokenize
#                          INSERT, one row a transaction
#                          (bench/pgbench/insert.sql), the standby synchronous
#        tokenize_haproxy  wrk POST /v1/tokens through HAProxy (tokenize.lua)
#        tokenize_direct   the same straight at vault a
#        read_haproxy      wrk GET /v1/tokens/{token} through HAProxy (read.lua)
#        read_direct       the same straight at vault a
#        bare_haproxy      bare.lua through the bare HAProxy (two bare_mhd)
#        bare_direct       bare.lua straight at one bare_mhd
#      odd rounds in this order, even rounds backward; a CHECKPOINT on the
#      primary before every write measurement.
#   4. Every token a 201 answered must be in `tokens` on the primary (and
#      is counted on the standby, for information); any request error or
#      missing token fails the run.
#   Output: a Markdown report on stdout (bench/cluster_report.py: medians
#   over the rounds with min-max, the ratios HAProxy / direct, tokenize /
#   sync-standby insert, bare HAProxy / bare direct, and the other load of
#   every measurement), progress on stderr, JSON in
#   bench/results/cluster-latest.json (and cluster-<UTC time>.json; not
#   tracked by git).
#
# Environment: BENCH_CLUSTER_ROUNDS (3), BENCH_CLUSTER_DURATION (5),
#   BENCH_CLUSTER_CLIENTS (64), BENCH_WRK_THREADS (2), BENCH_PGBENCH_CONNECT_S
#   (2), BENCH_KEEP=1 (keep the temp dir, the cluster's logs in it). Any
#   CARDVAULT_* reaches both vaults (the hourly tokenize quotas are 0 here,
#   through tests/lib/scenario.sh; lib.sh sets CARDVAULT_RATE_LIMIT_RPS=0 and
#   CARDVAULT_MAX_CONNECTIONS_PER_IP=512, which the bare_mhd instances get too).
# Needs: what make cluster needs (pg_auto_failover, haproxy, PostgreSQL 15),
# wrk, pgbench, jq, curl, python3, build/bench/bare_mhd (make bench-tools).
# shellcheck disable=SC2317 # the step_* functions and the traps are called indirectly
set -euo pipefail

case "${1:-}" in
  -h|--help) awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$0"; exit 0 ;;
esac
cd "$(dirname "$0")/.."
ROOT=$(pwd)
export BENCH_DIR="$ROOT/bench"   # the Lua scripts load common.lua from here
T_START=$(date +%s)
BIN=$(realpath "${1:-build/release/cardvault}")
ROUNDS=${BENCH_CLUSTER_ROUNDS:-3}
DUR=${BENCH_CLUSTER_DURATION:-5}
CLIENTS=${BENCH_CLUSTER_CLIENTS:-64}
WRK_THREADS=${BENCH_WRK_THREADS:-2}
PGB_CONNECT_S=${BENCH_PGBENCH_CONNECT_S:-2}
for v in ROUNDS DUR CLIENTS; do
  case "${!v}" in ''|*[!0-9]*|0) echo "cluster.sh: $v must be a positive integer" >&2; exit 2 ;; esac
done
THREADS=$WRK_THREADS
[ "$CLIENTS" -lt "$THREADS" ] && THREADS=$CLIENTS

log() { printf '[bench-cluster %3ds] %s\n' "$(( $(date +%s) - T_START ))" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

for tool in wrk pgbench jq curl openssl psql haproxy pg_autoctl setsid /usr/bin/python3; do
  command -v "$tool" >/dev/null || die "$tool is not installed"
done
[ -x "$BIN" ] || die "$BIN is missing (make BUILD=release all)"
[ -x build/bench/bare_mhd ] || die "build/bench/bare_mhd is missing (make bench-tools)"

WORK=$(mktemp -d /tmp/cardvault-bench-cluster.XXXXXX)
chmod 755 "$WORK"
mkdir -p "$WORK/out" "$WORK/tokens" "$WORK/rounds" "$WORK/cluster" "$WORK/bare-haproxy"
# The binaries run from start to end are copies: a rebuild meanwhile changes nothing.
cp "$BIN" "$WORK/cardvault"
cp build/bench/bare_mhd "$WORK/bare_mhd"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
BARE_PIDS=()
BARE_HA_PID=""

# shellcheck disable=SC2034 # read by tests/lib/scenario.sh and tests/cluster/lib.sh
SC_CLUSTER=external SC_ROOT_DIR=$ROOT
# shellcheck source=tests/lib/scenario.sh
. "$ROOT/tests/lib/scenario.sh"
CL_DIR="$WORK/cluster"
# shellcheck source=tests/cluster/lib.sh
. "$ROOT/tests/cluster/lib.sh"

cleanup() {
  local st=$? p
  set +e
  [ -n "$BARE_HA_PID" ] && kill -TERM "$BARE_HA_PID" 2>/dev/null && wait "$BARE_HA_PID" 2>/dev/null
  for p in "${BARE_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
  cl_down
  if [ "$st" -ne 0 ]; then
    for f in "$CL_DIR"/vault-a.log "$CL_DIR"/node1.log "$CL_DIR"/haproxy.log; do
      [ -s "$f" ] && { echo "--- $f (tail)" >&2; tail -10 "$f" >&2; }
    done
  fi
  if [ "${BENCH_KEEP:-0}" = 1 ]; then
    log "kept $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$st"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- the cluster
log "starting the cluster (tests/cluster/lib.sh cl_up) in $CL_DIR"
cl_up "$WORK/cardvault" || die "the cluster did not start"
PRIMARY_PORT=$(cl_primary_port)
[ -n "$PRIMARY_PORT" ] || die "no primary"
STANDBY_PORT=$CL_PG2_PORT
[ "$PRIMARY_PORT" = "$CL_PG2_PORT" ] && STANDBY_PORT=$CL_PG1_PORT
node_at() { psql -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$1" -U postgres -d cardvault -c "$2"; }
p_at() { node_at "$PRIMARY_PORT" "$1"; }
PG_VERSION=$(p_at "SHOW server_version")
P_FSYNC=$(p_at "SHOW fsync")
S_FSYNC=$(node_at "$STANDBY_PORT" "SHOW fsync")
P_SYNC_COMMIT=$(p_at "SHOW synchronous_commit")
P_SYNC_NAMES=$(p_at "SHOW synchronous_standby_names")
P_MAX_CONN=$(p_at "SHOW max_connections")
SYNC_STATE=$(p_at "SELECT string_agg(application_name || ' ' || sync_state, ', ') FROM pg_stat_replication")
if [ "$P_FSYNC" != on ] || [ "$S_FSYNC" != on ]; then
  die "fsync is not on on both nodes (primary $P_FSYNC, standby $S_FSYNC)"
fi
[ "$P_SYNC_COMMIT" = on ] || die "synchronous_commit is $P_SYNC_COMMIT on the primary, expected on"
grep -Eq ' (sync|quorum)$' <<<"$SYNC_STATE" || die "no synchronous standby (pg_stat_replication: ${SYNC_STATE:-none})"
# pgbench's clients come on top of the connections the vaults' pools and
# pg_autoctl hold (pg_auto_failover's nodes keep max_connections=100).
P_CONNS=$(p_at "SELECT count(*) FROM pg_stat_activity")
[ $((CLIENTS + P_CONNS + 8)) -le "$P_MAX_CONN" ] \
  || die "$CLIENTS pgbench clients do not fit: max_connections $P_MAX_CONN, $P_CONNS connections open (BENCH_CLUSTER_CLIENTS)"
log "PostgreSQL $PG_VERSION: primary :$PRIMARY_PORT, standby :$STANDBY_PORT ($SYNC_STATE); fsync $P_FSYNC / $S_FSYNC, synchronous_commit $P_SYNC_COMMIT, synchronous_standby_names '$P_SYNC_NAMES', max_connections $P_MAX_CONN ($P_CONNS in pg_stat_activity)"

CARDVAULT_DATABASE_URL="$CL_DB_URL" "$WORK/cardvault" merchant create "Bench cluster shop" \
  >"$WORK/merchant.json" 2>"$WORK/merchant.err" || { cat "$WORK/merchant.err" >&2; die "merchant create failed"; }
MERCHANT=$(jq -r .merchant_id "$WORK/merchant.json")
PK=$(jq -r .publishable_key "$WORK/merchant.json")
SK=$(jq -r .secret_key "$WORK/merchant.json")
# A key made a moment ago works on a vault once its key cache has refreshed
# (CARDVAULT_AUTH_REFRESH_MS, per instance): wait for both, as test-cluster.sh does.
for port in "$CL_VAULT_A_PORT" "$CL_VAULT_B_PORT"; do
  for _ in $(seq 1 100); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v1/tokens/tok_1111111111111111111111" \
        -H "Authorization: Bearer $SK")" = 404 ] && break
    sleep 0.1
  done
done
VAULT_URL="http://127.0.0.1:$CL_VAULT_A_PORT"
log "vaults a $VAULT_URL and b :$CL_VAULT_B_PORT, HAProxy $CL_URL, merchant $MERCHANT"

# ---------------------------------------------------------------- CPU accounting
# Clock ticks of whole process trees, from one read of /proc/*/stat: for each
# live process in a tree, utime + stime + cutime + cstime (a child that exits
# moves its time into its parent's cutime, so a tree's sum never loses it).
# Groups: the vaults, HAProxy (the cluster's and the bare one), PostgreSQL
# (the monitor and both nodes: pg_autoctl and every postgres under it), the
# bare_mhd instances. The load generators (wrk, pgbench) are this shell's
# reaped children. What is left of the machine's busy time is other load: a
# measurement with much of it is suspect. Busy is user + nice + system + irq +
# softirq of /proc/stat: with tick-based accounting (this VM's kernel) a tick
# spent in softirq (the loopback traffic, mostly) is charged to the task it
# interrupted as well, so without irq and softirq the processes' own times
# exceed the machine's by up to 0.3 cores in an HTTP-heavy run and other load
# reads 0 where it is not. (A kernel with CONFIG_IRQ_TIME_ACCOUNTING charges no
# task: there, the loopback's softirq time shows as other load.)
CLK_TCK=$(getconf CLK_TCK)
PG_ROOTS=$(cat "$CL_DIR/monitor.pid" "$CL_DIR/node1.pid" "$CL_DIR/node2.pid" | tr '\n' ',')
cpu_snapshot() { # busy steal vaults haproxy postgres bare shell-children
  {
    awk '/^cpu / {print "M", $2 + $3 + $4 + $7 + $8, $9}' /proc/stat
    awk '{print "S", $16 + $17}' "/proc/$$/stat"
    cat /proc/[0-9]*/stat 2>/dev/null || true
  } | awk -v groups="vaults:$CL_VAULT_A_PID,$CL_VAULT_B_PID haproxy:$CL_HAPROXY_PID,$BARE_HA_PID postgres:$PG_ROOTS bare:$(IFS=,; echo "${BARE_PIDS[*]}")" '
    $1 == "M" { busy = $2; steal = $3; next }
    $1 == "S" { sh = $2; next }
    {
      pid = $1; line = $0
      sub(/^[0-9]+ \(.*\) /, "", line) # comm may hold spaces; the last ") " ends it
      split(line, f, " ")
      t[pid] = f[12] + f[13] + f[14] + f[15]
      kids[f[2]] = kids[f[2]] " " pid
    }
    function tree(p,   n, k, i, s) {
      s = t[p]
      n = split(kids[p], k, " ")
      for (i = 1; i <= n; i++) s += tree(k[i])
      return s
    }
    END {
      out = busy " " steal
      ng = split(groups, g, " ")
      for (i = 1; i <= ng; i++) {
        split(g[i], nv, ":")
        np = split(nv[2], ps, ",")
        s = 0
        for (j = 1; j <= np; j++) if (ps[j] != "") s += tree(ps[j])
        out = out " " s
      }
      print out " " sh
    }'
}
# cpu_json BEFORE AFTER SECONDS: cores used per group during the measurement
cpu_json() {
  awk -v a="$1" -v b="$2" -v t="$CLK_TCK" -v d="$3" 'BEGIN {
    split(a, x, " "); split(b, y, " ")
    n = split("machine_busy steal vaults haproxy postgres bare loadgen", name, " ")
    for (i = 1; i <= n; i++) c[i] = (y[i] - x[i]) / t / d
    o = c[1] - c[3] - c[4] - c[5] - c[6] - c[7]; if (o < 0) o = 0
    printf "{"
    for (i = 1; i <= n; i++) printf "\"%s_cores\":%.2f,", name[i], c[i]
    printf "\"other_load_cores\":%.2f}", o }'
}

ERRORS=0
# run_wrk NAME SCRIPT URL KEY EXPECT FRONT: $WORK/out/NAME.json, wrk's done()
# summary plus the machine's CPU split; FRONT names the groups that served the
# requests (e.g. "vaults haproxy"), whose CPU per request is kept.
run_wrk() {
  local name=$1 script=$2 url=$3 key=$4 expect=$5 front=$6 snap0 snap1 t0 t1 secs e
  snap0=$(cpu_snapshot)
  t0=$(date +%s.%N)
  BENCH_KEY="$key" BENCH_EXPECT="$expect" BENCH_RATE=0 BENCH_THREADS="$THREADS" \
    BENCH_RESULT="$WORK/out/$name.wrk-summary" BENCH_TOKEN_OUT="$WORK/tokens/$name" \
    BENCH_TOKENS="$WORK/read-set.txt" \
    wrk -t "$THREADS" -c "$CLIENTS" -d "${DUR}s" --timeout 10s --latency -s "$BENCH_DIR/$script" "$url" \
    >"$WORK/out/$name.wrk.txt" 2>&1 || { cat "$WORK/out/$name.wrk.txt" >&2; die "wrk $name failed"; }
  snap1=$(cpu_snapshot)
  t1=$(date +%s.%N)
  [ -s "$WORK/out/$name.wrk-summary" ] || { cat "$WORK/out/$name.wrk.txt" >&2; die "wrk $name wrote no summary"; }
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')
  jq --argjson clients "$CLIENTS" --argjson threads "$THREADS" --arg front "$front" --argjson secs "$secs" \
     --argjson machine "$(cpu_json "$snap0" "$snap1" "$secs")" \
     '. + {clients: $clients, wrk_threads: $threads, machine: $machine, front: $front,
           front_cpu_us_per_req: (if .requests > 0 then
             ([$front | split(" ")[] | $machine[. + "_cores"]] | add) * $secs * 1e6 / .requests
             else null end),
           errors: (.socket_errors.connect + .socket_errors.read + .socket_errors.write
                    + .socket_errors.timeout + .unexpected_status)}' \
     "$WORK/out/$name.wrk-summary" >"$WORK/out/$name.json"
  e=$(jq .errors "$WORK/out/$name.json")
  ERRORS=$((ERRORS + e))
  log "$(printf '%-22s c=%-3s %9.0f req/s  p50 %6.2f ms  p99 %6.2f ms  errors %s  %s CPU %s µs/req  other load %s cores' \
    "$name" "$CLIENTS" "$(jq .rps "$WORK/out/$name.json")" "$(jq .latency_ms.p50 "$WORK/out/$name.json")" \
    "$(jq .latency_ms.p99 "$WORK/out/$name.json")" "$e" "$front" \
    "$(jq '.front_cpu_us_per_req // 0 | round' "$WORK/out/$name.json")" \
    "$(jq .machine.other_load_cores "$WORK/out/$name.json")")"
  if [ "$e" -gt 0 ]; then
    log "  $name statuses: $(jq -c '.statuses' "$WORK/out/$name.json") sockets: $(jq -c '.socket_errors' "$WORK/out/$name.json")"
  fi
}

# run_pgbench NAME SCRIPT -D...: on the primary, as bench/run.sh runs it:
# -M prepared, the rate over the steady window of pgbench -l's log
# (bench/pgbench_window.py), BENCH_PGBENCH_CONNECT_S more seconds of -T for
# connecting, repeated once with twice the duration when the window is
# shorter than half of it.
run_pgbench() {
  local name=$1 script=$2 dur=$DUR st snap0 snap1 t0 t1 attempt pct tps failed
  shift 2
  snap0=$(cpu_snapshot)
  t0=$(date +%s.%N)
  for attempt in 1 2; do
    st=0
    rm -f "$WORK/out/$name.log".*
    pgbench -n -M prepared -c "$CLIENTS" -j "$THREADS" -T "$((dur + PGB_CONNECT_S))" -f "$BENCH_DIR/pgbench/$script" \
      -l --log-prefix="$WORK/out/$name.log" -h 127.0.0.1 -p "$PRIMARY_PORT" -U postgres "$@" cardvault \
      >"$WORK/out/$name.txt" 2>&1 || st=$?
    pct=$(cat "$WORK/out/$name.log".* 2>/dev/null | /usr/bin/python3 "$BENCH_DIR/pgbench_window.py")
    if [ "$st" -eq 0 ] && [ "$attempt" = 1 ] \
       && awk -v w="$(jq .window_s <<<"$pct")" -v d="$dur" 'BEGIN {exit !(w < d / 2)}'; then
      log "$name: steady window $(jq .window_s <<<"$pct") s of ${dur} s (connecting took the rest); once more with $((dur * 2)) s"
      dur=$((dur * 2))
      snap0=$(cpu_snapshot)
      t0=$(date +%s.%N)
      continue
    fi
    break
  done
  snap1=$(cpu_snapshot)
  t1=$(date +%s.%N)
  rm -f "$WORK/out/$name.log".*
  tps=$(jq '.tps // empty' <<<"$pct")
  failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$WORK/out/$name.txt")
  if [ "$st" -ne 0 ] || [ -z "$tps" ]; then
    cat "$WORK/out/$name.txt" >&2
    die "pgbench $name failed (exit $st)"
  fi
  failed=${failed:-0}
  ERRORS=$((ERRORS + failed))
  jq -n --argjson clients "$CLIENTS" --argjson tps "$tps" --argjson failed "$failed" --argjson dur "$dur" \
     --argjson pct "$pct" \
     --argjson machine "$(cpu_json "$snap0" "$snap1" "$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')")" \
     '{clients: $clients, rps: $tps, tps: $tps, steady_window_s: $pct.window_s, steady_window_tx: $pct.window_tx,
       latency_ms: ($pct | {p50, p99, p999}), machine: $machine, duration_s: $dur, errors: $failed}' \
     >"$WORK/out/$name.json"
  log "$(printf '%-22s c=%-3s %9.0f tx/s   p50 %6.2f ms  p99 %6.2f ms  failed %s  PostgreSQL CPU %s cores  other load %s cores' \
    "$name" "$CLIENTS" "$tps" "$(jq .p50 <<<"$pct")" "$(jq .p99 <<<"$pct")" "$failed" \
    "$(jq .machine.postgres_cores "$WORK/out/$name.json")" "$(jq .machine.other_load_cores "$WORK/out/$name.json")")"
}

dsync_probe() {
  dd if=/dev/zero of="$WORK/dsync.test" bs=8k count=1000 oflag=dsync 2>&1 \
    | awk '/copied/ {for (i = 1; i <= NF; i++) if ($i == "s,") print int(1000 / $(i - 1))}'
  rm -f "$WORK/dsync.test"
}
checkpoint() { p_at "CHECKPOINT" >/dev/null; }

# ---------------------------------------------------------------- warm-up, sample row
log "warm-up: tokenize through HAProxy 2s"
DUR_SAVED=$DUR DUR=2
run_wrk warmup tokenize.lua "$CL_URL" "$PK" 201 "vaults haproxy"
DUR=$DUR_SAVED
curl -sf -H "Authorization: Bearer $PK" -H 'Content-Type: application/json' \
  -d "{\"pan\":\"4242424242424242\",\"exp_month\":12,\"exp_year\":$(( $(date +%Y) + 3 )),\"cvc\":\"123\"}" \
  "$VAULT_URL/v1/tokens" >"$WORK/sample-token.json" || die "sample tokenize failed"
RESP_BYTES=$(wc -c <"$WORK/sample-token.json")
SAMPLE_TOKEN=$(jq -r .token "$WORK/sample-token.json")
IFS='|' read -r FORMAT_VERSION DEK_ID NONCE_HEX CT_HEX < <(p_at \
  "SELECT format_version, dek_id, encode(nonce, 'hex'), encode(ciphertext, 'hex')
     FROM tokens WHERE merchant_id = '$MERCHANT' AND token = '$SAMPLE_TOKEN'")
[ -n "$DEK_ID" ] || die "the sample token is not on the primary"
PGB_VARS=(-D "merchant_id=$MERCHANT" -D "format_version=$FORMAT_VERSION" -D "dek_id=$DEK_ID"
          -D "nonce=\\x$NONCE_HEX" -D "ciphertext=\\x$CT_HEX" -D brand=visa -D bin=424242 -D last4=4242
          -D "created_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)")

# ---------------------------------------------------------------- the HTTP limit behind HAProxy
# Two bare_mhd (the two vaults' place), one answering 200 for the health
# checks (the ops listeners' place), behind HAProxy with cl_haproxy_cfg's
# configuration: only the ports and the directory differ.
cfg_default() { sed -n "s/.*cfg->$1 = \([0-9][0-9]*\);.*/\1/p" service/config.c | head -1; }
HTTP_THREADS=${CARDVAULT_HTTP_THREADS:-$(cfg_default http_threads)}
HTTP_THREADS=${HTTP_THREADS:-0}
BARE_A_PORT=$(cl_free_port) BARE_B_PORT=$(cl_free_port) BARE_OPS_PORT=$(cl_free_port) BARE_HA_PORT=$(cl_free_port)
for spec in "$BARE_A_PORT $HTTP_THREADS $RESP_BYTES 201" "$BARE_B_PORT $HTTP_THREADS $RESP_BYTES 201" "$BARE_OPS_PORT 1 2 200"; do
  read -r port _ <<<"$spec"
  # shellcheck disable=SC2086 # the four arguments
  CARDVAULT_MAX_CONNECTIONS_PER_IP=512 "$WORK/bare_mhd" $spec 2>>"$WORK/bare.err" &
  BARE_PIDS+=($!)
  for _ in $(seq 1 50); do
    curl -s -o /dev/null "http://127.0.0.1:$port/" 2>/dev/null && break
    sleep 0.1
  done
done
(
  # shellcheck disable=SC2030,SC2034 # read by cl_haproxy_cfg, in this subshell only
  CL_DIR=$WORK/bare-haproxy CL_PORT=$BARE_HA_PORT CL_VAULT_A_PORT=$BARE_A_PORT CL_OPS_A_PORT=$BARE_OPS_PORT \
    CL_VAULT_B_PORT=$BARE_B_PORT CL_OPS_B_PORT=$BARE_OPS_PORT
  cl_haproxy_cfg
)
same_cfg() { sed -e 's/[0-9]\{4,5\}\b/PORT/g' -e "s#$1#DIR#g" "$1/haproxy.cfg"; }
# shellcheck disable=SC2031 # CL_DIR is the cluster's again here
cmp -s <(same_cfg "$CL_DIR") <(same_cfg "$WORK/bare-haproxy") \
  || die "the bare HAProxy configuration differs from the cluster's in more than ports and paths"
haproxy -W -db -f "$WORK/bare-haproxy/haproxy.cfg" >>"$WORK/bare-haproxy/haproxy.log" 2>&1 &
BARE_HA_PID=$!
BARE_HA_URL="http://127.0.0.1:$BARE_HA_PORT"
BARE_URL="http://127.0.0.1:$BARE_A_PORT"
# until the health checks have marked both servers up (rise 2, inter 1s)
for _ in $(seq 1 100); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' -X POST "$BARE_HA_URL/v1/tokens" 2>/dev/null)" = 201 ] && break
  sleep 0.1
done
sleep 2
log "limits: bare_mhd :$BARE_A_PORT and :$BARE_B_PORT (http threads $HTTP_THREADS, $RESP_BYTES-byte 201) behind HAProxy $BARE_HA_URL (cl_haproxy_cfg, other ports)"

# ---------------------------------------------------------------- rounds
step_limit_syncinsert() { checkpoint; run_pgbench "limit_syncinsert_c${CLIENTS}_r$1" insert.sql "${PGB_VARS[@]}"; }
step_tokenize_haproxy() {
  checkpoint
  run_wrk "tokenize_haproxy_c${CLIENTS}_r$1" tokenize.lua "$CL_URL" "$PK" 201 "vaults haproxy"
  read_set
}
step_tokenize_direct() {
  checkpoint
  run_wrk "tokenize_direct_c${CLIENTS}_r$1" tokenize.lua "$VAULT_URL" "$PK" 201 "vaults"
  read_set
}
# The read set: tokens acknowledged so far, made once, after the first tokenize run.
read_set() {
  if [ ! -s "$WORK/read-set.txt" ]; then
    cat "$WORK"/tokens/* >"$WORK/read-set.txt"
    log "read set: $(wc -l <"$WORK/read-set.txt") acknowledged tokens"
  fi
}
step_read_haproxy() { run_wrk "read_haproxy_c${CLIENTS}_r$1" read.lua "$CL_URL" "$SK" 200 "vaults haproxy"; }
step_read_direct() { run_wrk "read_direct_c${CLIENTS}_r$1" read.lua "$VAULT_URL" "$SK" 200 "vaults"; }
step_bare_haproxy() { run_wrk "bare_haproxy_c${CLIENTS}_r$1" bare.lua "$BARE_HA_URL" "$PK" 201 "bare haproxy"; }
step_bare_direct() { run_wrk "bare_direct_c${CLIENTS}_r$1" bare.lua "$BARE_URL" "$PK" 201 "bare"; }

STEPS=(limit_syncinsert tokenize_haproxy tokenize_direct read_haproxy read_direct bare_haproxy bare_direct)
for r in $(seq 1 "$ROUNDS"); do
  seq_steps=("${STEPS[@]}")
  order=forward
  if [ $((r % 2)) -eq 0 ]; then
    order=backward
    seq_steps=()
    for ((i = ${#STEPS[@]} - 1; i >= 0; i--)); do seq_steps+=("${STEPS[$i]}"); done
  fi
  d=$(dsync_probe)
  log "round $r of $ROUNDS ($order): disk ${d:-?} synchronous 8 KiB writes/s, load average $(cut -d' ' -f1-3 /proc/loadavg)"
  jq -n --argjson r "$r" --arg order "$order" --argjson d "${d:-null}" --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" \
     --argjson steps "$(printf '%s\n' "${seq_steps[@]}" | jq -R . | jq -s .)" \
     '{round: $r, order: $order, dsync_8k_writes_per_s: $d, loadavg: $load, steps: $steps}' >"$WORK/rounds/r$r.json"
  for s in "${seq_steps[@]}"; do "step_$s" "$r"; done
done

# ---------------------------------------------------------------- verification
[ "$(cl_primary_port)" = "$PRIMARY_PORT" ] || die "the primary changed during the run"
log "checking every acknowledged token is in the database"
cat "$WORK"/tokens/* >"$WORK/acked.txt"
ACKED_201=$(cat "$WORK"/out/warmup.json "$WORK"/out/tokenize_*.json | jq -s 'map(.statuses["201"] // 0) | add')
ACKED_LINES=$(wc -l <"$WORK/acked.txt")
# found_on PORT: "distinct found", the acknowledged tokens and how many of them
# that node has for the merchant. One array literal, no temp table: a hot
# standby takes no writes (tokens are [0-9A-Za-z_] only, safe in the literal).
found_on() {
  { printf "SELECT count(*), count(t.token) FROM (SELECT DISTINCT a FROM unnest('{"
    paste -sd, "$WORK/acked.txt"
    printf "}'::text[]) AS a) u LEFT JOIN tokens t ON t.merchant_id = '%s' AND t.token = u.a;\n" "$MERCHANT"
  } | psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$1" -U postgres -d cardvault -At -F ' '
}
read -r ACKED_DISTINCT FOUND < <(found_on "$PRIMARY_PORT")
# The standby is read for information: synchronous_commit=on waits for its
# WAL flush, not its replay, so a row acknowledged a moment ago may be flushed
# there and not yet visible.
read -r _ FOUND_STANDBY < <(found_on "$STANDBY_PORT" 2>/dev/null || echo "0 null")
MISSING=$((ACKED_DISTINCT - FOUND))
DUPLICATES=$((ACKED_LINES - ACKED_DISTINCT))
UNRECORDED=$((ACKED_201 - ACKED_LINES))
log "acknowledged: $ACKED_201 responses 201, $ACKED_LINES tokens recorded, $ACKED_DISTINCT distinct, $FOUND on the primary ($MISSING missing), $FOUND_STANDBY on the standby"

# ---------------------------------------------------------------- report
T_END=$(date +%s)
mkdir -p bench/results
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
jq -n \
  --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --arg command "bench/cluster.sh $*" \
  --arg host "$(uname -srm)" --argjson nproc "$(nproc)" \
  --argjson mem_kib "$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)" \
  --arg cpu "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)" \
  --arg git "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- service include 2>/dev/null || echo '+dirty')" \
  --arg pg "$PG_VERSION" --arg p_fsync "$P_FSYNC" --arg s_fsync "$S_FSYNC" --arg sync_commit "$P_SYNC_COMMIT" \
  --arg sync_names "$P_SYNC_NAMES" --arg sync_state "$SYNC_STATE" --arg max_conn "$P_MAX_CONN" \
  --arg haproxy "$(haproxy -v | head -1 | awk '{print $3}')" \
  --arg wrk "$(wrk -v 2>&1 | head -1 | awk '{print $2}')" \
  --arg http_threads "$HTTP_THREADS" \
  --arg env "$(env | grep '^CARDVAULT_' | grep -v -e DATABASE_URL -e KEK_FILE -e LISTEN | sort | tr '\n' ' ')" \
  --argjson rounds_n "$ROUNDS" --argjson dur "$DUR" --argjson clients "$CLIENTS" --argjson threads "$THREADS" \
  --argjson resp_bytes "$RESP_BYTES" \
  --slurpfile rounds <(cat "$WORK"/rounds/r*.json | jq -s 'sort_by(.round)') \
  --slurpfile runs <(for f in "$WORK"/out/*.json; do
                       jq --arg n "$(basename "$f" .json)" '{($n): .}' "$f"; done | jq -s add) \
  --argjson acked_201 "$ACKED_201" --argjson acked_lines "$ACKED_LINES" \
  --argjson acked_distinct "$ACKED_DISTINCT" --argjson found "$FOUND" --argjson missing "$MISSING" \
  --argjson found_standby "${FOUND_STANDBY:-null}" \
  --argjson errors "$ERRORS" --argjson elapsed "$((T_END - T_START))" \
  --arg load_start "$LOAD_START" --arg load_end "$(cut -d' ' -f1-3 /proc/loadavg)" \
  '{date: $date, mode: "cluster", command: $command, elapsed_s: $elapsed, git: $git,
    machine: {nproc: $nproc, mem_gib: (($mem_kib / 1048576) * 10 | round / 10), cpu: $cpu, kernel: $host,
              loadavg_before: $load_start, loadavg_after: $load_end},
    settings: {postgres_version: $pg, fsync_primary: $p_fsync, fsync_standby: $s_fsync,
               synchronous_commit: $sync_commit, synchronous_standby_names: $sync_names,
               replication: $sync_state, max_connections: ($max_conn | tonumber? // $max_conn),
               haproxy: $haproxy, wrk: $wrk, wrk_threads: $threads, pgbench_threads: $threads,
               duration_s: $dur, clients: $clients, rounds: $rounds_n,
               service_http_threads: ($http_threads | tonumber? // $http_threads), service_env: $env,
               tokenize_response_bytes: $resp_bytes},
    rounds: $rounds[0], runs: $runs[0],
    verification: {responses_201: $acked_201, tokens_recorded: $acked_lines, distinct: $acked_distinct,
                   found_on_primary: $found, missing: $missing, found_on_standby: $found_standby},
    errors: $errors}' >"$WORK/results.json"
/usr/bin/python3 "$BENCH_DIR/cluster_report.py" "$WORK/results.json" bench/results/cluster-latest.json
cp bench/results/cluster-latest.json "bench/results/cluster-$STAMP.json"
log "done in $((T_END - T_START)) s; JSON: bench/results/cluster-latest.json"

FAIL=0
if [ "$ERRORS" -ne 0 ]; then log "FAIL: $ERRORS requests errored"; FAIL=1; fi
if [ "$MISSING" -ne 0 ]; then log "FAIL: $MISSING acknowledged tokens are missing from the primary"; FAIL=1; fi
if [ "$UNRECORDED" -ne 0 ]; then log "FAIL: $UNRECORDED responses 201 without a recorded token"; FAIL=1; fi
if [ "$DUPLICATES" -ne 0 ]; then log "FAIL: $DUPLICATES tokens acknowledged twice"; FAIL=1; fi
exit $FAIL
