#!/usr/bin/env bash
# bench/run.sh [--quick] [--profile]: cardvault against the limits of this machine, in one run.
#
#   1. A private PostgreSQL cluster in a temp dir (initdb + pg_ctl, as the
#      `postgres` user when run as root), unix socket only, port 25000+.
#      Settings (PG_SETTINGS below), the same for every workload:
#        fsync=on, synchronous_commit=on     durable commits (checked: SHOW fsync)
#        full_page_writes=on, wal_sync_method=fdatasync (Linux default)
#        shared_buffers=256MB                the whole working set stays cached
#        max_connections=200                 pgbench -c 64 plus the service pool
#        max_wal_size=4GB, checkpoint_timeout=30min
#                                            no checkpoint is triggered inside a
#                                            measurement; run.sh issues CHECKPOINT
#                                            before every write measurement so each
#                                            starts from the same state
#        everything else: initdb defaults (autovacuum on, commit_delay=0)
#   2. The release build of the service (build/release/cardvault, copied to the
#      temp dir so a rebuild during the run cannot change it), migrate, one
#      merchant, `cardvault serve` on 127.0.0.1 (stdout, the JSON access log, to
#      $BENCH_SERVICE_LOG, default /dev/null).
#   3. BENCH_ROUNDS rounds (full: 3, quick: 2). Each round starts with a
#      dd oflag=dsync probe of the disk, then for each client count (full: 16
#      and 64; quick: 64), wrk -t2 / pgbench -j2, one after the other:
#        limit (a)  pgbench -M prepared: the tokenize INSERT, one row a transaction
#        tokenize   wrk POST /v1/tokens (bench/tokenize.lua)
#        detokenize wrk POST /v1/tokens/{token}/detokenize (bench/detokenize.lua)
#        elements   wrk POST /v1/tokens as the hosted card field's frame sends
#                   it (bench/elements.lua: a pk_ key bound to the shop's
#                   origin, the vault's own Origin, CardVault-Frame-Origin, a
#                   new Idempotency-Key each request); information, no target
#        limit (d)  (largest client count only) pgbench -M prepared: the same
#                   token row, 64 rows a transaction (bench/pgbench/insert64.sql),
#                   counted in rows/s
#        limit (b)  pgbench -M prepared: the read's primary-key SELECT
#        read       wrk GET /v1/tokens/{token} (bench/read.lua)
#        limit (c)  bench/bare_mhd: same MHD flags, fixed tokenize-sized answer
#      odd rounds in this order, even rounds in the reverse order; a CHECKPOINT
#      before every write measurement. report.py gives each ratio as the median
#      of the per-round ratios with their min-max.
#      Then, per workload, a paced run at half the peak (the best median) rate
#      (64 connections) for the p99-at-half-load figure, and (full only) the
#      diagnostic pgbench of a detokenize's own statements (SELECT, then
#      audit_append).
#   4. Bulk import: N Luhn-valid cards (full: 100,000; quick: 20,000) as a CSV
#      file, moved in by `cardvault import` (its default batch size, as the
#      schema owner, into a second merchant so no card merges with the
#      tokenize runs'), timed whole, with its peak RSS (GNU time's maximum
#      resident set, else VmHWM polled) and CPU; rows/s against the tokenize
#      peak and limits (a) and (d) of this run. Every row must be in tokens and
#      import_rows, and the mapping file must hold N rows.
#   5. Every token acknowledged with 201 (tokenize and elements) must be in the database; any error
#      (socket error, timeout, unexpected status, failed pgbench transaction)
#      or missing token, or an import that is not whole, makes the run fail.
#   6. --profile: perf record (cpu-clock, dwarf call graphs) of the service
#      during one more run of each workload (first client count), split by
#      bench/perf_split.py into HTTP, JSON, crypto, database, logging; CPU µs
#      per request from /proc/PID/stat of the unprofiled run. Needs `perf`.
#   Output: a Markdown table on stdout, JSON in bench/results/latest.json
#   (and bench/results/<mode>-<timestamp>.json).
#
# Environment:
#   CARDVAULT_HTTP_THREADS, CARDVAULT_DB_POOL_SIZE, ... passed to the service
#     unchanged (and the thread count to bare_mhd); unset = the service defaults,
#     except CARDVAULT_RATE_LIMIT_RPS and the CARDVAULT_TOKENIZE_QUOTA_PER_HOUR*
#     quotas, which default to 0 (off) here (the quotas through tests/lib/scenario.sh).
#   BENCH_ROUNDS (full 3, quick 2), BENCH_DURATION (s per measurement: full 6, quick 3), BENCH_CLIENTS ("16 64"), BENCH_HALF_CLIENTS (largest of BENCH_CLIENTS),
#   BENCH_WRK_THREADS (2), BENCH_PGBENCH_CONNECT_S (2: s added to pgbench's -T for connecting), BENCH_SERVICE_LOG (/dev/null), BENCH_KEEP=1 (keep the temp dir),
#   BENCH_SKIP_BUILD=1 (use build/release/cardvault and build/bench/bare_mhd as they are),
#   BENCH_IMPORT_ROWS (cards to import; 0 = no import run), BENCH_IMPORT_BATCH (--batch;
#   unset = the command's default), BENCH_ELEMENTS_ORIGIN (the shop origin the
#   elements key is bound to: https://shop.example).
set -euo pipefail

QUICK=0
PROFILE=0
for a in "$@"; do
  case "$a" in
    --quick) QUICK=1 ;;
    --profile) PROFILE=1 ;;
    -h|--help) awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $a (use --quick, --profile)" >&2; exit 2 ;;
  esac
done

cd "$(dirname "$0")/.."
ROOT=$(pwd)
export BENCH_DIR="$ROOT/bench"   # the Lua scripts load common.lua from here
T_START=$(date +%s)

if [ "$QUICK" = 1 ]; then
  MODE=quick
  DUR=${BENCH_DURATION:-3}
  CLIENTS=${BENCH_CLIENTS:-64}
  ROUNDS=${BENCH_ROUNDS:-2}
  HALF_DUR=$DUR
  READ_ROWS=20000
  IMPORT_ROWS=${BENCH_IMPORT_ROWS:-20000}
  WARM_DUR=1
  DIAG=0
else
  MODE=full
  DUR=${BENCH_DURATION:-6}
  CLIENTS=${BENCH_CLIENTS:-16 64}
  ROUNDS=${BENCH_ROUNDS:-3}
  HALF_DUR=$DUR
  READ_ROWS=100000
  IMPORT_ROWS=${BENCH_IMPORT_ROWS:-100000}
  WARM_DUR=2
  DIAG=1
fi
HALF_CLIENTS=${BENCH_HALF_CLIENTS:-}
case "$ROUNDS" in ''|*[!0-9]*|0) echo "run.sh: BENCH_ROUNDS must be a positive integer" >&2; exit 2 ;; esac
# Rows per transaction of the batched-insert limit: fixed in bench/pgbench/insert64.sql.
BATCH_ROWS=64
WRK_THREADS=${BENCH_WRK_THREADS:-2}
PGB_THREADS=$WRK_THREADS
PGB_CONNECT_S=${BENCH_PGBENCH_CONNECT_S:-2}
SERVICE_LOG=${BENCH_SERVICE_LOG:-/dev/null}
MAX_CLIENTS=$(printf '%s\n' $CLIENTS | sort -n | tail -1)
# Paced runs use as many connections as the largest unpaced run, so that a
# slow answer holding one connection does not keep the offered rate down.
HALF_CLIENTS=${HALF_CLIENTS:-$MAX_CLIENTS}

# The service's defaults, read from its source, for the report and bare_mhd.
cfg_default() { sed -n "s/.*cfg->$1 = \([0-9][0-9]*\);.*/\1/p" service/config.c | head -1; }
HTTP_THREADS=${CARDVAULT_HTTP_THREADS:-$(cfg_default http_threads)}
HTTP_THREADS=${HTTP_THREADS:-0}
DB_POOL=${CARDVAULT_DB_POOL_SIZE:-$(cfg_default db_pool_size)}
DB_WRITERS=${CARDVAULT_DB_WRITERS:-$(cfg_default db_writers)}
# cardvault import's rows per transaction: --batch, else its default (and maximum).
IMPORT_BATCH=${BENCH_IMPORT_BATCH:-$(sed -n 's/^#define CV_IMPORT_BATCH_MAX \([0-9][0-9]*\).*/\1/p' include/cardvault/store_import.h)}

PG_SETTINGS=(
  "fsync=on"
  "synchronous_commit=on"
  "full_page_writes=on"
  "wal_sync_method=fdatasync"
  "shared_buffers=256MB"
  "max_connections=200"
  "max_wal_size=4GB"
  "checkpoint_timeout=30min"
)

log() { printf '[bench %3ds] %s\n' "$(( $(date +%s) - T_START ))" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

for tool in wrk pgbench jq curl openssl /usr/bin/python3; do
  command -v "$tool" >/dev/null || die "$tool is not installed"
done
if [ "$PROFILE" = 1 ]; then command -v perf >/dev/null || die "--profile needs perf (linux-perf)"; fi

# ---------------------------------------------------------------- build
if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  log "building the release service and bench tools"
  # build/release/cardvault, not ./cardvault: the copy in the repo root may be
  # busy (a running service), and the bench copies the binary it runs anyway
  make --no-print-directory BUILD=release build/release/cardvault >&2
  make --no-print-directory -f Makefile -f bench/bench.mk bench-tools >&2
fi
SERVICE_BIN=build/release/cardvault
[ -x "$SERVICE_BIN" ] || die "$SERVICE_BIN is missing (make BUILD=release all)"
[ -x build/bench/bare_mhd ] || die "build/bench/bare_mhd is missing (make bench-tools)"

WORK=$(mktemp -d /tmp/cardvault-bench.XXXXXX)
chmod 755 "$WORK"
mkdir -p "$WORK/out" "$WORK/tokens"
cp "$SERVICE_BIN" "$WORK/cardvault"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
cp build/bench/bare_mhd "$WORK/bare_mhd"
SVC_PID=""
BARE_PID=""

# ---------------------------------------------------------------- PostgreSQL
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -n "$PGBIN" ] || die "no PostgreSQL server binaries under /usr/lib/postgresql"
PGDATA="$WORK/pg"
PGSOCK="$WORK/sock"
PGPORT=$(( 25000 + $$ % 1000 ))
mkdir -p "$PGDATA" "$PGSOCK"
if [ "$(id -u)" -eq 0 ]; then
  as_pg() { runuser -u postgres -- "$@"; }
  PGUSER_NAME=postgres
  chown postgres:postgres "$PGDATA" "$PGSOCK"
else
  as_pg() { "$@"; }
  PGUSER_NAME=$(id -un)
fi
chmod 700 "$PGDATA"

cleanup() {
  local st=$?
  set +e
  [ -n "${PERF_PID:-}" ] && kill -INT "$PERF_PID" 2>/dev/null && wait "$PERF_PID" 2>/dev/null
  [ -n "$SVC_PID" ] && kill -TERM "$SVC_PID" 2>/dev/null && wait "$SVC_PID" 2>/dev/null
  [ -n "$BARE_PID" ] && kill -TERM "$BARE_PID" 2>/dev/null && wait "$BARE_PID" 2>/dev/null
  if [ -f "$PGDATA/postmaster.pid" ]; then
    as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null 2>&1
  fi
  if [ "$st" -ne 0 ]; then
    [ -s "$WORK/service.err" ] && { echo "--- service stderr (tail)" >&2; tail -20 "$WORK/service.err" >&2; }
    [ -s "$PGDATA/server.log" ] && { echo "--- postgres log (tail)" >&2; tail -20 "$PGDATA/server.log" >&2; }
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

log "initdb in $PGDATA (port $PGPORT, socket $PGSOCK)"
as_pg "$PGBIN/initdb" -D "$PGDATA" -A trust -U "$PGUSER_NAME" -E UTF8 --locale=C \
  --no-instructions >"$WORK/initdb.log" 2>&1 || { cat "$WORK/initdb.log" >&2; die "initdb failed"; }
{
  echo "# bench/run.sh"
  echo "listen_addresses = ''"
  echo "unix_socket_directories = '$PGSOCK'"
  echo "port = $PGPORT"
  for s in "${PG_SETTINGS[@]}"; do echo "${s%%=*} = '${s#*=}'"; done
} | as_pg tee -a "$PGDATA/postgresql.conf" >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/server.log" -w start >/dev/null \
  || die "PostgreSQL did not start"

PSQL=(psql -X -q -v ON_ERROR_STOP=1 -h "$PGSOCK" -p "$PGPORT" -U "$PGUSER_NAME")
"${PSQL[@]}" -d postgres -c "CREATE DATABASE cardvault" >/dev/null
psql_at() { "${PSQL[@]}" -d cardvault -Atc "$1"; }
for s in "${PG_SETTINGS[@]}"; do
  got=$(psql_at "SHOW ${s%%=*}")
  [ "$got" = "${s#*=}" ] || die "PostgreSQL setting ${s%%=*} is '$got', expected '${s#*=}'"
done
[ "$(psql_at 'SHOW fsync')" = on ] || die "fsync is not on"
PG_VERSION=$(psql_at "SHOW server_version")
PG_PM_PID=$(head -1 "$PGDATA/postmaster.pid")
log "PostgreSQL $PG_VERSION up: fsync=$(psql_at 'SHOW fsync') synchronous_commit=$(psql_at 'SHOW synchronous_commit')"

# The disk's synchronous write rate where the WAL lives: what bounds a commit.
# Probed again at the start of every round (it varies by several times within
# minutes on a shared disk).
dsync_probe() {
  dd if=/dev/zero of="$WORK/dsync.test" bs=8k count=1000 oflag=dsync 2>&1 \
    | awk '/copied/ {for (i = 1; i <= NF; i++) if ($i == "s,") print int(1000 / $(i - 1))}'
  rm -f "$WORK/dsync.test"
}
DSYNC_PER_S=$(dsync_probe)
log "disk: ${DSYNC_PER_S:-?} synchronous 8 KiB writes/s (dd oflag=dsync in $WORK)"

# ---------------------------------------------------------------- service
(umask 077 && openssl rand -hex 32 >"$WORK/kek")
export CARDVAULT_DATABASE_URL="host=$PGSOCK port=$PGPORT user=$PGUSER_NAME dbname=cardvault"
export CARDVAULT_KEK_FILE="$WORK/kek"
# shellcheck disable=SC2034 # read by tests/lib/scenario.sh, sourced below
SC_CLUSTER=external # the bench brings its own cluster; free_port from the test harness
# shellcheck source=tests/lib/scenario.sh
. "$ROOT/tests/lib/scenario.sh"
SVC_PORT=$(free_port)
OPS_PORT=$(free_port)
BARE_PORT=$(free_port)
export CARDVAULT_LISTEN="127.0.0.1:$SVC_PORT"
# No load balancer in front: close the listener as soon as a stop signal arrives.
export CARDVAULT_DRAIN_GRACE_MS=${CARDVAULT_DRAIN_GRACE_MS:-0}
export CARDVAULT_OPS_LISTEN="127.0.0.1:$OPS_PORT" # /healthz, /readyz, /metrics
SVC_URL="http://127.0.0.1:$SVC_PORT"
# The vault's own origin, which the card frame's fetch carries as Origin:
# CARDVAULT_PUBLIC_ORIGIN when the caller sets it, else derived from the Host
# header wrk sends (docs/elements.md).
VAULT_ORIGIN=${CARDVAULT_PUBLIC_ORIGIN:-$SVC_URL}
OPS_URL="http://127.0.0.1:$OPS_PORT"
# Per-key rate limiting is a policy, not a capacity: off unless the caller sets it.
export CARDVAULT_RATE_LIMIT_RPS=${CARDVAULT_RATE_LIMIT_RPS:-0}
BARE_URL="http://127.0.0.1:$BARE_PORT"

"$WORK/cardvault" migrate >"$WORK/migrate.out" 2>&1 || { cat "$WORK/migrate.out" >&2; die "migrate failed"; }
"$WORK/cardvault" merchant create "Bench Shop" >"$WORK/merchant.json" 2>"$WORK/merchant.err" \
  || { cat "$WORK/merchant.err" >&2; die "merchant create failed"; }
MERCHANT=$(jq -r .merchant_id "$WORK/merchant.json")
PK=$(jq -r .publishable_key "$WORK/merchant.json")
SK=$(jq -r .secret_key "$WORK/merchant.json")
DK=$(jq -r .detokenize_key "$WORK/merchant.json")
# The hosted card field's key: publishable (tokenize only), bound to the shop's
# origin, as docs/elements.md has a shop create it. A build without origin-bound
# keys runs without the elements workload.
ELEMENTS_ORIGIN=${BENCH_ELEMENTS_ORIGIN:-https://shop.example}
ELEMENTS=1
if "$WORK/cardvault" key create --merchant "$MERCHANT" --scopes tokenize --allowed-origin "$ELEMENTS_ORIGIN" \
     >"$WORK/elements-key.json" 2>"$WORK/elements-key.err"; then
  EK=$(jq -r .key "$WORK/elements-key.json")
else
  log "no elements workload: key create --allowed-origin failed ($(head -1 "$WORK/elements-key.err"))"
  ELEMENTS=0
  EK=""
fi

# serve runs as the service's least-privilege login role, as in production
# (migrate created the group role cardvault_service; the schema owner keeps
# running the operator commands and the pgbench limits).
if "${PSQL[@]}" -d cardvault -c "SELECT 1 FROM pg_roles WHERE rolname = 'cardvault_service'" -At | grep -q 1; then
  "${PSQL[@]}" -d cardvault -c "DO \$\$ BEGIN
      IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cardvault_app') THEN
        CREATE ROLE cardvault_app LOGIN IN ROLE cardvault_service;
      END IF; END \$\$" >/dev/null || die "cannot create the service's login role"
  SVC_DATABASE_URL="host=$PGSOCK port=$PGPORT user=cardvault_app dbname=cardvault"
else
  SVC_DATABASE_URL=$CARDVAULT_DATABASE_URL # a build from before the role split
fi
CARDVAULT_DATABASE_URL="$SVC_DATABASE_URL" "$WORK/cardvault" serve >"$SERVICE_LOG" 2>"$WORK/service.err" &
SVC_PID=$!
# /readyz is on the ops listener (a build from before it had it on the API port).
svc_ready() { curl -sf "$OPS_URL/readyz" >/dev/null 2>&1 || curl -sf "$SVC_URL/readyz" >/dev/null 2>&1; }
for _ in $(seq 1 100); do
  svc_ready && break
  kill -0 "$SVC_PID" 2>/dev/null || die "cardvault serve exited"
  sleep 0.1
done
svc_ready || die "cardvault is not ready on $OPS_URL"
log "cardvault serve pid $SVC_PID on $SVC_URL (http threads $HTTP_THREADS (0 = a thread per connection), db pool ${DB_POOL:-?}, db writers ${DB_WRITERS:-?})"

# ---------------------------------------------------------------- helpers
ERRORS=0
proc_cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
CLK_TCK=$(getconf CLK_TCK)
vm_kib() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }

# CPU accounting around each measurement, in clock ticks: the whole machine
# (/proc/stat user + nice + system + irq + softirq; steal is left out), the
# service, our PostgreSQL cluster (postmaster, its live children, and the
# children it has reaped), and this shell's reaped children (wrk, pgbench).
# What is left is other load on the machine: a run with much of it is suspect.
# irq and softirq count as busy because with tick-based accounting (this VM's
# kernel) a tick spent in softirq, mostly our own loopback traffic, is charged
# to the task it interrupted as well: without them the processes' own times
# exceed the machine's in an HTTP-heavy run and other load reads 0 where it
# is not (bench/cluster.sh does the same).
pg_ticks() {
  local pm=$PG_PM_PID t=0 c
  [ -n "$pm" ] || { echo 0; return; }
  t=$(awk '{print $14 + $15 + $16 + $17}' "/proc/$pm/stat")
  for c in $(cat "/proc/$pm/task/$pm/children" 2>/dev/null); do
    t=$((t + $(awk '{print $14 + $15}' "/proc/$c/stat" 2>/dev/null || echo 0)))
  done
  echo "$t"
}
cpu_snapshot() { # busy steal service pg shell-children
  local pid=${1:-$SVC_PID}
  echo "$(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8, $9}' /proc/stat)" \
       "$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)" "$(pg_ticks)" \
       "$(awk '{print $16 + $17}' "/proc/$$/stat")"
}
# cpu_json BEFORE AFTER SECONDS: {"machine_busy_cores", "steal_cores", "other_load_cores"}
cpu_json() {
  local secs=$3
  read -r b0 st0 s0 p0 h0 <<<"$1"
  read -r b1 st1 s1 p1 h1 <<<"$2"
  awk -v b=$((b1 - b0)) -v st=$((st1 - st0)) -v s=$((s1 - s0)) -v p=$((p1 - p0)) -v h=$((h1 - h0)) \
      -v t="$CLK_TCK" -v d="$secs" 'BEGIN {
        o = b - s - p - h; if (o < 0) o = 0
        printf "{\"machine_busy_cores\":%.2f,\"steal_cores\":%.2f,\"service_cores\":%.2f,\"postgres_cores\":%.2f,\"loadgen_cores\":%.2f,\"other_load_cores\":%.2f}",
          b / t / d, st / t / d, s / t / d, p / t / d, h / t / d, o / t / d }'
}

# run_wrk NAME SCRIPT URL CLIENTS DURATION KEY EXPECT [RATE] [PID]
# Leaves $WORK/out/NAME.json: wrk's done() summary plus the process's CPU and peak RSS.
run_wrk() {
  local name=$1 script=$2 url=$3 clients=$4 dur=$5 key=$6 expect=$7 rate=${8:-0} pid=${9:-$SVC_PID}
  local threads=$WRK_THREADS
  [ "$clients" -lt "$threads" ] && threads=$clients
  local c0 c1 snap0 snap1 t0 t1
  c0=$(proc_cpu_ticks "$pid")
  snap0=$(cpu_snapshot "$pid")
  t0=$(date +%s.%N)
  BENCH_KEY="$key" BENCH_EXPECT="$expect" BENCH_RATE="$rate" \
    BENCH_THREADS="$threads" BENCH_RESULT="$WORK/out/$name.wrk-summary" \
    BENCH_TOKEN_OUT="$WORK/tokens/$name" BENCH_TOKENS="$WORK/read-set.txt" \
    BENCH_VAULT_ORIGIN="$VAULT_ORIGIN" BENCH_FRAME_ORIGIN="$ELEMENTS_ORIGIN" \
    wrk -t "$threads" -c "$clients" -d "${dur}s" --timeout 10s --latency -s "$BENCH_DIR/$script" "$url" \
    >"$WORK/out/$name.wrk.txt" 2>&1 || { cat "$WORK/out/$name.wrk.txt" >&2; die "wrk $name failed"; }
  c1=$(proc_cpu_ticks "$pid")
  snap1=$(cpu_snapshot "$pid")
  t1=$(date +%s.%N)
  [ -s "$WORK/out/$name.wrk-summary" ] || { cat "$WORK/out/$name.wrk.txt" >&2; die "wrk $name wrote no summary"; }
  jq --argjson clients "$clients" --argjson threads "$threads" \
     --argjson cpu_s "$(awk -v a="$c0" -v b="$c1" -v t="$CLK_TCK" 'BEGIN {printf "%.2f", (b - a) / t}')" \
     --argjson hwm "$(vm_kib "$pid" VmHWM)" --argjson rss "$(vm_kib "$pid" VmRSS)" \
     --argjson machine "$(cpu_json "$snap0" "$snap1" "$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')")" \
     '. + {clients: $clients, wrk_threads: $threads, cpu_s: $cpu_s, machine: $machine,
           cpu_us_per_req: (if .requests > 0 then $cpu_s * 1e6 / .requests else null end),
           hwm_so_far_kib: $hwm, rss_kib: $rss,
           errors: (.socket_errors.connect + .socket_errors.read + .socket_errors.write
                    + .socket_errors.timeout + .unexpected_status)}' \
     "$WORK/out/$name.wrk-summary" >"$WORK/out/$name.json"
  local e
  e=$(jq .errors "$WORK/out/$name.json")
  ERRORS=$((ERRORS + e))
  log "$(printf '%-22s c=%-3s %9.0f req/s  p50 %6.2f ms  p99 %6.2f ms  p99.9 %6.2f ms  errors %s  other load %s cores' "$name" "$clients" \
    "$(jq .rps "$WORK/out/$name.json")" "$(jq .latency_ms.p50 "$WORK/out/$name.json")" \
    "$(jq .latency_ms.p99 "$WORK/out/$name.json")" "$(jq .latency_ms.p999 "$WORK/out/$name.json")" "$e" \
    "$(jq .machine.other_load_cores "$WORK/out/$name.json")")"
  if [ "$e" -gt 0 ]; then
    log "  $name statuses: $(jq -c '.statuses' "$WORK/out/$name.json") sockets: $(jq -c '.socket_errors' "$WORK/out/$name.json")"
  fi
}

# [PGB_ROWS=N] run_pgbench NAME SCRIPT CLIENTS DURATION -D... : $WORK/out/NAME.json
# rps is rows/s: transactions/s times PGB_ROWS, the rows each transaction
# commits (1 unless set).
run_pgbench() {
  local name=$1 script=$2 clients=$3 dur=$4 rows=${PGB_ROWS:-1}
  shift 4
  local threads=$PGB_THREADS
  [ "$clients" -lt "$threads" ] && threads=$clients
  local st=0 snap0 snap1 t0 t1
  snap0=$(cpu_snapshot)
  t0=$(date +%s.%N)
  # -l: one line per transaction (client, latency µs, completion time). The
  # rate is taken from it over the steady window, when every client is
  # connected and running: from the moment the last client finished its first
  # transaction to the moment the first client finished its last one.
  # pgbench's own tps divides by its -T clock minus an estimate of the time
  # spent connecting, and on a heavily loaded machine connecting 64 clients
  # (a fork each) can take most of a short run, which made that figure a
  # fraction of the real rate. So pgbench runs BENCH_PGBENCH_CONNECT_S (2)
  # seconds longer than the measurement, for its clients to connect; a run
  # whose steady window is still shorter than half the duration (or that
  # committed nothing) is repeated once, longer.
  local attempt pct
  for attempt in 1 2; do
    st=0
    rm -f "$WORK/out/$name.log".*
    pgbench -n -M prepared -c "$clients" -j "$threads" -T "$((dur + PGB_CONNECT_S))" -f "$BENCH_DIR/pgbench/$script" \
      -l --log-prefix="$WORK/out/$name.log" \
      -h "$PGSOCK" -p "$PGPORT" -U "$PGUSER_NAME" "$@" cardvault >"$WORK/out/$name.txt" 2>&1 || st=$?
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
  local tps pgb_tps lat failed xacts
  tps=$(jq '.tps // empty' <<<"$pct")
  pgb_tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' "$WORK/out/$name.txt")
  lat=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' "$WORK/out/$name.txt")
  failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$WORK/out/$name.txt")
  xacts=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$WORK/out/$name.txt")
  if [ "$st" -ne 0 ] || [ -z "$tps" ]; then
    cat "$WORK/out/$name.txt" >&2
    die "pgbench $name failed (exit $st)"
  fi
  failed=${failed:-0}
  ERRORS=$((ERRORS + failed))
  jq -n --argjson clients "$clients" --argjson threads "$threads" --argjson tps "$tps" \
     --argjson lat "${lat:-null}" --argjson failed "$failed" --argjson xacts "${xacts:-0}" \
     --argjson dur "$dur" --argjson pct "$pct" --argjson rows "$rows" --argjson pgb_tps "${pgb_tps:-null}" \
     --argjson machine "$(cpu_json "$snap0" "$snap1" "$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')")" \
     '{clients: $clients, pgbench_threads: $threads, rps: ($tps * $rows), tps: $tps, rows_per_tx: $rows,
       pgbench_reported_tps: $pgb_tps, steady_window_s: $pct.window_s, steady_window_tx: $pct.window_tx,
       latency_ms: ({mean: $lat} + ($pct | {p50, p99, p999})), machine: $machine,
       transactions: $xacts, duration_s: $dur, errors: $failed}' >"$WORK/out/$name.json"
  log "$(printf '%-22s c=%-3s %9.0f tx/s   p50 %6.2f ms  p99 %6.2f ms  p99.9 %6.2f ms  failed %s  other load %s cores%s' "$name" "$clients" "$tps" \
    "$(jq .p50 <<<"$pct")" "$(jq .p99 <<<"$pct")" "$(jq .p999 <<<"$pct")" "$failed" \
    "$(jq .machine.other_load_cores "$WORK/out/$name.json")" \
    "$([ "$rows" -gt 1 ] && printf '  (%s rows/tx: %.0f rows/s)' "$rows" "$(jq .rps "$WORK/out/$name.json")")")"
}

checkpoint() { psql_at "CHECKPOINT" >/dev/null; }
half() { awk -v r="$1" 'BEGIN {printf "%d", r / 2}'; }
# jq: the median of an array of numbers (null when empty)
JQ_MEDIAN='def median: sort | if length == 0 then null elif length % 2 == 1 then .[(length - 1) / 2]
                              else (.[length / 2 - 1] + .[length / 2]) / 2 end;'
# median_peak WORKLOAD: max over the client counts of the median req/s of its rounds
median_peak() {
  cat "$WORK"/out/"$1"_c*_r*.json | jq -s "$JQ_MEDIAN"' group_by(.clients) | map(map(.rps) | median) | max'
}

# ---------------------------------------------------------------- warm-up
log "warm-up: tokenize ${WARM_DUR}s (caches, first DEK, a sample row for the pgbench values)"
run_wrk warmup tokenize.lua "$SVC_URL" 16 "$WARM_DUR" "$PK" 201
curl -sf -H "Authorization: Bearer $PK" -H 'Content-Type: application/json' \
  -d "{\"pan\":\"4242424242424242\",\"exp_month\":12,\"exp_year\":$(( $(date +%Y) + 3 )),\"cvc\":\"123\"}" \
  "$SVC_URL/v1/tokens" >"$WORK/sample-token.json" || die "sample tokenize failed"
RESP_BYTES=$(wc -c <"$WORK/sample-token.json")
SAMPLE_TOKEN=$(jq -r .token "$WORK/sample-token.json")
IFS='|' read -r FORMAT_VERSION DEK_ID NONCE_HEX CT_HEX CT_LEN < <(psql_at \
  "SELECT format_version, dek_id, encode(nonce, 'hex'), encode(ciphertext, 'hex'), length(ciphertext)
     FROM tokens WHERE merchant_id = '$MERCHANT' AND token = '$SAMPLE_TOKEN'")
[ -n "$DEK_ID" ] || die "the sample token is not in the database"
KEY_PREFIX=${DK:0:12}
log "tokenize response $RESP_BYTES bytes; row: format_version $FORMAT_VERSION, dek $DEK_ID, nonce $(( ${#NONCE_HEX} / 2 )) B, ciphertext $CT_LEN B"

# Rows for limit (b): the same table, the same row shape, tokens pgbench can name.
log "pre-inserting $READ_ROWS rows for the pgbench SELECT"
psql_at "INSERT INTO tokens (merchant_id, token, format_version, dek_id, nonce, ciphertext, brand, bin, last4, fingerprint)
  SELECT '$MERCHANT', 'tok_' || lpad(i::text, 22, '0'), $FORMAT_VERSION, $DEK_ID,
         decode('$NONCE_HEX', 'hex'), decode('$CT_HEX', 'hex'), 'visa', '424242', '4242',
         'fp_' || lpad(i::text, 22, '0')
    FROM generate_series(1, $READ_ROWS) AS i" >/dev/null
psql_at "VACUUM ANALYZE" >/dev/null

PGB_VARS=(-D "merchant_id=$MERCHANT" -D "format_version=$FORMAT_VERSION" -D "dek_id=$DEK_ID"
          -D "nonce=\\x$NONCE_HEX" -D "ciphertext=\\x$CT_HEX" -D brand=visa -D bin=424242 -D last4=4242
          -D "nrows=$READ_ROWS" -D "actor=$KEY_PREFIX" -D "request_id=req_bench0000000000000000"
          -D action=token.detokenize -D outcome=success
          -D "created_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)")

# ---------------------------------------------------------------- rounds
# Each round measures every workload and its limits once, one after the other
# (A B A B ...), with a dd oflag=dsync probe of the disk first. Odd rounds run
# the sequence forward, even rounds backward, so a limit measured just before
# its workload in one round is measured just after it in the next: a drift of
# the disk or of the neighbours' load then biases the rounds' ratios in
# opposite directions instead of all in one. report.py takes the median of the
# per-round ratios. A CHECKPOINT precedes every write measurement.
step_limit_insert() { checkpoint; run_pgbench "limit_insert_c$1_r$2" insert.sql "$1" "$DUR" "${PGB_VARS[@]}"; }
step_limit_batch() {
  checkpoint
  PGB_ROWS=$BATCH_ROWS run_pgbench "limit_batch_c$1_r$2" insert64.sql "$1" "$DUR" "${PGB_VARS[@]}"
}
step_tokenize() {
  checkpoint
  run_wrk "tokenize_c$1_r$2" tokenize.lua "$SVC_URL" "$1" "$DUR" "$PK" 201
  # The read set: tokens the service acknowledged (and will be checked below),
  # made once, after the first tokenize run (round 1 runs it before any read).
  if [ ! -s "$WORK/read-set.txt" ]; then
    cat "$WORK"/tokens/* >"$WORK/read-set.txt"
    log "read set: $(wc -l <"$WORK/read-set.txt") acknowledged tokens"
  fi
}
step_detokenize() { checkpoint; run_wrk "detokenize_c$1_r$2" detokenize.lua "$SVC_URL" "$1" "$DUR" "$DK" 200; }
step_elements() { checkpoint; run_wrk "elements_c$1_r$2" elements.lua "$SVC_URL" "$1" "$DUR" "$EK" 201; }
step_limit_select() { run_pgbench "limit_select_c$1_r$2" select.sql "$1" "$DUR" "${PGB_VARS[@]}"; }
step_read() { run_wrk "read_c$1_r$2" read.lua "$SVC_URL" "$1" "$DUR" "$SK" 200; }
step_limit_http() { run_wrk "limit_http_c$1_r$2" bare.lua "$BARE_URL" "$1" "$DUR" "$PK" 201 0 "$BARE_PID"; }

# limit (c), started once and left idle between its measurements
"$WORK/bare_mhd" "$BARE_PORT" "$HTTP_THREADS" "$RESP_BYTES" 201 2>"$WORK/bare.err" &
BARE_PID=$!
for _ in $(seq 1 50); do
  curl -s -o /dev/null "$BARE_URL/" 2>/dev/null && break
  kill -0 "$BARE_PID" 2>/dev/null || { cat "$WORK/bare.err" >&2; die "bare_mhd exited"; }
  sleep 0.1
done
log "$(cat "$WORK/bare.err")"

mkdir -p "$WORK/rounds"
for r in $(seq 1 "$ROUNDS"); do
  seq_steps=()
  for c in $CLIENTS; do
    seq_steps+=("limit_insert $c" "tokenize $c" "detokenize $c")
    # after detokenize, so that the existing pairs keep their distances to
    # limit (a); next to limit (d) at the largest client count
    [ "$ELEMENTS" = 1 ] && seq_steps+=("elements $c")
    [ "$c" = "$MAX_CLIENTS" ] && seq_steps+=("limit_batch $c")
    seq_steps+=("limit_select $c" "read $c" "limit_http $c")
  done
  order=forward
  if [ $((r % 2)) -eq 0 ]; then
    order=backward
    rev=()
    for ((i = ${#seq_steps[@]} - 1; i >= 0; i--)); do rev+=("${seq_steps[$i]}"); done
    seq_steps=("${rev[@]}")
  fi
  d=$(dsync_probe)
  log "round $r of $ROUNDS ($order): disk ${d:-?} synchronous 8 KiB writes/s, load average $(cut -d' ' -f1-3 /proc/loadavg)"
  jq -n --argjson r "$r" --arg order "$order" --argjson d "${d:-null}" --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" \
     --argjson steps "$(printf '%s\n' "${seq_steps[@]}" | jq -R . | jq -s .)" \
     '{round: $r, order: $order, dsync_8k_writes_per_s: $d, loadavg: $load, steps: $steps}' \
     >"$WORK/rounds/r$r.json"
  for s in "${seq_steps[@]}"; do
    read -r what c <<<"$s"
    "step_$what" "$c" "$r"
  done
done
kill -TERM "$BARE_PID" && wait "$BARE_PID" || true
BARE_PID=""

# ---------------------------------------------------------------- half load
# Each workload paced at half its peak: the best, over the client counts, of
# the median of its rounds.
TOK_PEAK=$(median_peak tokenize)
READ_PEAK=$(median_peak read)
DET_PEAK=$(median_peak detokenize)
checkpoint
run_wrk tokenize_half tokenize.lua "$SVC_URL" "$HALF_CLIENTS" "$HALF_DUR" "$PK" 201 "$(half "$TOK_PEAK")"
run_wrk read_half read.lua "$SVC_URL" "$HALF_CLIENTS" "$HALF_DUR" "$SK" 200 "$(half "$READ_PEAK")"
checkpoint
run_wrk detokenize_half detokenize.lua "$SVC_URL" "$HALF_CLIENTS" "$HALF_DUR" "$DK" 200 \
  "$(half "$DET_PEAK")"
if [ "$DIAG" = 1 ]; then
  checkpoint
  run_pgbench "diag_detokenize_sql_c$MAX_CLIENTS" detokenize.sql "$MAX_CLIENTS" "$DUR" "${PGB_VARS[@]}"
fi

# ---------------------------------------------------------------- bulk import
# cardvault import of IMPORT_ROWS generated cards from a CSV file, as an
# operator runs it (the schema owner's connection, the KEK file), into a merchant
# of its own: a card the tokenize runs made can then not be merged, so every
# row must become a new token. The whole command is timed (start-up, batches,
# mapping file, audit events), after a CHECKPOINT like every write measurement.
IMPORT_BAD=0
if [ "$IMPORT_ROWS" -gt 0 ]; then
  "$WORK/cardvault" merchant create "Bench Import Shop" >"$WORK/import-merchant.json" 2>"$WORK/merchant.err" \
    || { cat "$WORK/merchant.err" >&2; die "merchant create (import) failed"; }
  IMPORT_MERCHANT=$(jq -r .merchant_id "$WORK/import-merchant.json")
  # Visa and Mastercard, 16 digits: the brand prefix, random digits, the row
  # number in 9 fixed digits (so no two rows share a card), the check digit;
  # expiry months 1-12, 1-4 years ahead (none expired).
  (umask 077 && awk -v n="$IMPORT_ROWS" -v y="$(date +%Y)" '
    function complete(p,   s, i, d, dbl) {
      s = 0; dbl = 1
      for (i = length(p); i >= 1; i--) {
        d = substr(p, i, 1) + 0
        if (dbl) { d *= 2; if (d > 9) d -= 9 }
        s += d; dbl = !dbl
      }
      return p ((10 - s % 10) % 10)
    }
    BEGIN {
      srand(42)
      print "customer_ref,pan,exp_month,exp_year"
      for (i = 1; i <= n; i++) {
        pre = (i % 2) ? "4" sprintf("%05d", int(rand() * 100000)) : "5" (1 + i % 5) sprintf("%04d", int(rand() * 10000))
        printf "C%09d,%s,%d,%d\n", i, complete(pre sprintf("%09d", i)), 1 + i % 12, y + 1 + i % 4
      }
    }' >"$WORK/import.csv")
  IMPORT_ARGS=(import --merchant "$IMPORT_MERCHANT" --job bench --csv "$WORK/import.csv"
               --id-col customer_ref --pan-col pan --exp-month-col exp_month --exp-year-col exp_year
               --mapping "$WORK/import-map.csv")
  [ -n "${BENCH_IMPORT_BATCH:-}" ] && IMPORT_ARGS+=(--batch "$BENCH_IMPORT_BATCH")
  checkpoint
  log "import: $IMPORT_ROWS cards from CSV, batch $IMPORT_BATCH, merchant $IMPORT_MERCHANT"
  # Peak RSS: GNU time's maximum resident set (getrusage of the child) when
  # /usr/bin/time is GNU time; otherwise VmHWM of the process, polled (a high
  # watermark: only growth in the last 50 ms before exit could be missed).
  if /usr/bin/time -f %M true >/dev/null 2>&1; then
    IMPORT_RSS_SOURCE="GNU time %M (getrusage ru_maxrss)"
    snap0=$(cpu_snapshot)
    t0=$(date +%s.%N)
    st=0
    /usr/bin/time -o "$WORK/import.time" -f '%M %U %S' "$WORK/cardvault" "${IMPORT_ARGS[@]}" \
      >"$WORK/out/import.report" 2>"$WORK/import.err" || st=$?
    t1=$(date +%s.%N)
    snap1=$(cpu_snapshot)
    read -r IMPORT_HWM cpu_user cpu_sys < <(tail -1 "$WORK/import.time")
    IMPORT_CPU=$(awk -v u="$cpu_user" -v s="$cpu_sys" 'BEGIN {printf "%.2f", u + s}')
  else
    IMPORT_RSS_SOURCE="VmHWM of /proc/PID/status, polled every 50 ms"
    snap0=$(cpu_snapshot)
    t0=$(date +%s.%N)
    "$WORK/cardvault" "${IMPORT_ARGS[@]}" >"$WORK/out/import.report" 2>"$WORK/import.err" &
    ipid=$!
    IMPORT_HWM=0
    IMPORT_TICKS=0
    while kill -0 "$ipid" 2>/dev/null; do
      h=$(vm_kib "$ipid" VmHWM 2>/dev/null || true)
      c=$(proc_cpu_ticks "$ipid" 2>/dev/null || true)
      [ -n "$h" ] && IMPORT_HWM=$h
      [ -n "$c" ] && IMPORT_TICKS=$c
      sleep 0.05
    done
    st=0
    wait "$ipid" || st=$?
    t1=$(date +%s.%N)
    snap1=$(cpu_snapshot)
    IMPORT_CPU=$(awk -v c="$IMPORT_TICKS" -v t="$CLK_TCK" 'BEGIN {printf "%.2f", c / t}')
  fi
  IMPORT_SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}')
  if [ "$st" -ne 0 ] || ! jq -e . "$WORK/out/import.report" >/dev/null 2>&1; then
    tail -5 "$WORK/import.err" >&2
    cat "$WORK/out/import.report" >&2
    die "cardvault import failed (exit $st)"
  fi
  # Every row must be a new token of the import merchant, recorded in import_rows,
  # and in the mapping file once, under its own row id.
  IMPORT_TOKENS=$(psql_at "SELECT count(*) FROM tokens WHERE merchant_id = '$IMPORT_MERCHANT'")
  IMPORT_JOB_ROWS=$(psql_at "SELECT count(*) FROM import_rows WHERE merchant_id = '$IMPORT_MERCHANT' AND job_id = 'bench'")
  MAP_ROWS=$(( $(wc -l <"$WORK/import-map.csv") - 1 ))
  MAP_IDS_MATCH=false
  cmp -s <(tail -n +2 "$WORK/import.csv" | cut -d, -f1 | sort) \
         <(tail -n +2 "$WORK/import-map.csv" | cut -d, -f1 | sort) && MAP_IDS_MATCH=true
  rm -f "$WORK/import.csv" # it held (test) card numbers: not kept even with BENCH_KEEP
  read -r MAP_TOKENS MAP_FOUND < <("${PSQL[@]}" -d cardvault -At -F ' ' <<SQL
CREATE TEMP TABLE map (row_id text, token text, brand text, last4 text, exp_month int, exp_year int, merged int);
\copy map FROM '$WORK/import-map.csv' WITH (FORMAT csv, HEADER true)
ANALYZE map;
SELECT (SELECT count(DISTINCT token) FROM map),
       (SELECT count(*) FROM (SELECT DISTINCT token FROM map) m
          JOIN tokens t ON t.merchant_id = '$IMPORT_MERCHANT' AND t.token = m.token);
SQL
)
  jq --argjson rows "$IMPORT_ROWS" --argjson batch "$IMPORT_BATCH" --argjson secs "$IMPORT_SECS" \
     --argjson hwm "$IMPORT_HWM" --arg rss_source "$IMPORT_RSS_SOURCE" --argjson cpu_s "$IMPORT_CPU" \
     --argjson tokens "$IMPORT_TOKENS" --argjson job_rows "$IMPORT_JOB_ROWS" \
     --argjson map_rows "$MAP_ROWS" --argjson map_tokens "$MAP_TOKENS" --argjson map_found "$MAP_FOUND" \
     --argjson ids_match "$MAP_IDS_MATCH" \
     --argjson machine "$(cpu_json "$snap0" "$snap1" "$IMPORT_SECS")" \
     '{rows: $rows, batch: $batch, source: "csv", duration_s: $secs,
       rps: (if $secs > 0 then $rows / $secs else null end), reported_rows_per_s: .rows_per_s,
       peak_rss_kib: $hwm, rss_source: $rss_source, cpu_s: $cpu_s,
       cpu_us_per_row: (if $rows > 0 then $cpu_s * 1e6 / $rows else null end), machine: $machine,
       postgres_cpu_us_per_row: (if $rows > 0 then $machine.postgres_cores * $secs * 1e6 / $rows else null end),
       report: {rows_read, imported, merged, skipped, refused, refused_by_reason, mapping_rows, ok, error},
       verification: {tokens_in_db: $tokens, import_rows_in_db: $job_rows, mapping_rows: $map_rows,
                      mapping_distinct_tokens: $map_tokens, mapping_tokens_in_db: $map_found,
                      mapping_ids_match_csv: $ids_match},
       errors: ([.imported != $rows, .merged != 0, .refused != 0, $tokens != $rows, $job_rows != $rows,
                 $map_rows != $rows, $map_tokens != $rows, $map_found != $rows, ($ids_match | not)]
                | map(select(.)) | length)}' \
     "$WORK/out/import.report" >"$WORK/out/import.json"
  rm -f "$WORK/out/import.report"
  IMPORT_BAD=$(jq .errors "$WORK/out/import.json")
  log "$(printf '%-22s %s rows in %.1f s: %9.0f rows/s (its report: %s)  peak RSS %.1f MiB  CPU %s s  other load %s cores' \
    import "$IMPORT_ROWS" "$IMPORT_SECS" "$(jq .rps "$WORK/out/import.json")" \
    "$(jq .reported_rows_per_s "$WORK/out/import.json")" "$(awk -v k="$IMPORT_HWM" 'BEGIN {print k / 1024}')" \
    "$IMPORT_CPU" "$(jq .machine.other_load_cores "$WORK/out/import.json")")"
  log "import check: $IMPORT_TOKENS tokens and $IMPORT_JOB_ROWS import_rows in the database, mapping $MAP_ROWS rows ($MAP_FOUND of $MAP_TOKENS tokens found, ids match the CSV: $MAP_IDS_MATCH)"
fi

# ---------------------------------------------------------------- profile (--profile)
if [ "$PROFILE" = 1 ]; then
  PC=$(printf '%s\n' $CLIENTS | head -1)
  PDUR=$(( DUR < 6 ? DUR : 6 ))
  for wl in tokenize read detokenize; do
    case $wl in
      tokenize) key=$PK; expect=201 ;;
      read) key=$SK; expect=200 ;;
      detokenize) key=$DK; expect=200 ;;
    esac
    log "profile: perf record -F 499 --call-graph dwarf of the service during $wl c=$PC, ${PDUR}s"
    perf record -q -F 499 --call-graph dwarf,16384 -p "$SVC_PID" -o "$WORK/perf.data" -- sleep "$PDUR" \
      >"$WORK/perf.log" 2>&1 &
    PERF_PID=$!
    sleep 0.3
    run_wrk "profile_$wl" "$wl.lua" "$SVC_URL" "$PC" "$((PDUR - 1))" "$key" "$expect"
    wait "$PERF_PID" || { cat "$WORK/perf.log" >&2; die "perf record failed"; }
    PERF_PID=""
    perf script -i "$WORK/perf.data" -F comm,tid,ip,sym,dso >"$WORK/perf.txt" 2>/dev/null
    /usr/bin/python3 "$BENCH_DIR/perf_split.py" "$WORK/perf.txt" \
      "$(cat "$WORK/out/${wl}_c${PC}"_r*.json | jq -s "$JQ_MEDIAN"' map(.cpu_us_per_req) | median')" \
      "$WORK/profile-$wl.json" "$WORK/cardvault" \
      || die "perf_split.py failed"
    rm -f "$WORK/perf.data" "$WORK/perf.txt"
  done
fi

# ---------------------------------------------------------------- verification
log "checking every acknowledged token is in the database"
cat "$WORK"/tokens/* >"$WORK/acked.txt"
TOKENIZE_RUNS=("$WORK"/out/warmup.json "$WORK"/out/tokenize_*.json)
[ "$ELEMENTS" = 1 ] && TOKENIZE_RUNS+=("$WORK"/out/elements_*.json)
[ -f "$WORK/out/profile_tokenize.json" ] && TOKENIZE_RUNS+=("$WORK/out/profile_tokenize.json")
ACKED_201=$(cat "${TOKENIZE_RUNS[@]}" | jq -s 'map(.statuses["201"] // 0) | add')
ACKED_LINES=$(wc -l <"$WORK/acked.txt")
# = SELECT count(*) FROM tokens WHERE merchant_id = $m AND token = ANY(<acknowledged>),
# done as a join so that a few hundred thousand tokens stay fast.
read -r ACKED_DISTINCT FOUND < <("${PSQL[@]}" -d cardvault -At -F ' ' <<SQL
CREATE TEMP TABLE acked (token text);
\copy acked FROM '$WORK/acked.txt'
SELECT (SELECT count(DISTINCT token) FROM acked),
       (SELECT count(*) FROM tokens t
         WHERE t.merchant_id = '$MERCHANT' AND t.token IN (SELECT token FROM acked));
SQL
)
MISSING=$((ACKED_DISTINCT - FOUND))
DUPLICATES=$((ACKED_LINES - ACKED_DISTINCT))
UNRECORDED=$((ACKED_201 - ACKED_LINES))
log "acknowledged: $ACKED_201 responses 201, $ACKED_LINES tokens recorded, $ACKED_DISTINCT distinct, $FOUND in the database, $MISSING missing"
# The elements runs' share of the check above, on its own: their 201s, the
# tokens recorded, and how many of those are in the database for the merchant.
EL_201=0 EL_LINES=0 EL_DISTINCT=0 EL_FOUND=0
if [ "$ELEMENTS" = 1 ]; then
  cat "$WORK"/tokens/elements_* >"$WORK/elements-acked.txt"
  EL_201=$(cat "$WORK"/out/elements_*.json | jq -s 'map(.statuses["201"] // 0) | add')
  EL_LINES=$(wc -l <"$WORK/elements-acked.txt")
  read -r EL_DISTINCT EL_FOUND < <("${PSQL[@]}" -d cardvault -At -F ' ' <<SQL
CREATE TEMP TABLE acked (token text);
\copy acked FROM '$WORK/elements-acked.txt'
SELECT (SELECT count(DISTINCT token) FROM acked),
       (SELECT count(*) FROM tokens t
         WHERE t.merchant_id = '$MERCHANT' AND t.token IN (SELECT token FROM acked));
SQL
)
  log "elements: $EL_201 responses 201, $EL_LINES tokens recorded, $EL_DISTINCT distinct, $EL_FOUND in the database, $((EL_DISTINCT - EL_FOUND)) missing"
fi
AUDIT_ROWS=$(psql_at "SELECT count(*) FROM audit_events")

# The service's peak RSS: VmHWM of its process at the end of the run (never
# reset, so it is the high watermark of every workload, the profile included).
LIFETIME_HWM_KIB=$(vm_kib "$SVC_PID" VmHWM)

# ---------------------------------------------------------------- report
T_END=$(date +%s)
mkdir -p bench/results
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
jq -n \
  --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --arg mode "$MODE" \
  --arg command "bench/run.sh $*" --arg host "$(uname -srm)" \
  --argjson nproc "$(nproc)" \
  --argjson mem_kib "$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)" \
  --arg cpu "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)" \
  --arg git "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- service include 2>/dev/null || echo '+dirty')" \
  --arg pg "$PG_VERSION" --arg wrk "$(wrk -v 2>&1 | head -1 | awk '{print $2}')" \
  --argjson pg_settings "$(printf '%s\n' "${PG_SETTINGS[@]}" | jq -R 'split("=") | {(.[0]): .[1]}' | jq -s add)" \
  --arg http_threads "$HTTP_THREADS" --arg db_pool "${DB_POOL:-}" --arg db_writers "${DB_WRITERS:-}" \
  --arg env "$(env | grep '^CARDVAULT_' | grep -v -e DATABASE_URL -e KEK_FILE -e LISTEN | sort | tr '\n' ' ')" \
  --argjson rounds_n "$ROUNDS" --argjson batch_rows "$BATCH_ROWS" \
  --slurpfile rounds <(cat "$WORK"/rounds/r*.json | jq -s 'sort_by(.round)') \
  --argjson dur "$DUR" --argjson half_clients "$HALF_CLIENTS" --argjson wrk_threads "$WRK_THREADS" \
  --argjson clients "$(printf '%s\n' $CLIENTS | jq -s .)" \
  --argjson import_rows "$IMPORT_ROWS" --argjson import_batch "${IMPORT_BATCH:-null}" \
  --argjson resp_bytes "$RESP_BYTES" --argjson ct_len "$CT_LEN" --argjson read_rows "$READ_ROWS" \
  --argjson acked_201 "$ACKED_201" --argjson acked_lines "$ACKED_LINES" \
  --argjson acked_distinct "$ACKED_DISTINCT" --argjson found "$FOUND" --argjson missing "$MISSING" \
  --argjson audit_rows "$AUDIT_ROWS" \
  --argjson elements "$ELEMENTS" --arg elements_origin "$ELEMENTS_ORIGIN" --arg vault_origin "$VAULT_ORIGIN" \
  --argjson el_201 "$EL_201" --argjson el_lines "$EL_LINES" --argjson el_distinct "$EL_DISTINCT" \
  --argjson el_found "$EL_FOUND" \
  --argjson errors "$ERRORS" --argjson hwm "$LIFETIME_HWM_KIB" \
  --argjson elapsed "$((T_END - T_START))" \
  --argjson dsync "${DSYNC_PER_S:-null}" \
  --arg load_start "$LOAD_START" --arg load_end "$(cut -d' ' -f1-3 /proc/loadavg)" \
  --slurpfile runs <(for f in "$WORK"/out/*.json; do
                       jq --arg n "$(basename "$f" .json)" '{($n): .}' "$f"; done | jq -s add) \
  '{date: $date, mode: $mode, command: $command, elapsed_s: $elapsed, git: $git,
    machine: {nproc: $nproc, mem_gib: (($mem_kib / 1048576) * 10 | round / 10), cpu: $cpu, kernel: $host,
              loadavg_before: $load_start, loadavg_after: $load_end,
              dsync_8k_writes_per_s: $dsync},
    settings: {postgres_version: $pg, postgres: $pg_settings, wrk: $wrk, wrk_threads: $wrk_threads,
               pgbench_threads: $wrk_threads, duration_s: $dur, clients: $clients,
               rounds: $rounds_n, batch_rows_per_tx: $batch_rows,
               half_load_clients: $half_clients, service_http_threads: ($http_threads | tonumber? // $http_threads),
               service_db_pool: ($db_pool | tonumber? // null),
               service_db_writers: ($db_writers | tonumber? // null), service_env: $env,
               tokenize_response_bytes: $resp_bytes, ciphertext_bytes: $ct_len,
               select_rows: $read_rows, import_rows: $import_rows, import_batch: $import_batch,
               elements: (if $elements == 1 then {frame_origin: $elements_origin, vault_origin: $vault_origin}
                          else null end)},
    rounds: $rounds[0], runs: $runs[0],
    verification: {responses_201: $acked_201, tokens_recorded: $acked_lines,
                   distinct: $acked_distinct, found_in_db: $found, missing: $missing,
                   audit_events: $audit_rows,
                   elements: (if $elements == 1 then {responses_201: $el_201, tokens_recorded: $el_lines,
                                                      distinct: $el_distinct, found_in_db: $el_found,
                                                      missing: ($el_distinct - $el_found)}
                              else null end)},
    errors: $errors, service_peak_rss_kib: $hwm, service_peak_rss_source: "VmHWM of /proc/PID/status at the end of the run"}' \
  >"$WORK/results.json"
if [ "$PROFILE" = 1 ]; then
  jq --slurpfile t "$WORK/profile-tokenize.json" --slurpfile r "$WORK/profile-read.json" \
     --slurpfile d "$WORK/profile-detokenize.json" \
     '. + {profile: {tokenize: $t[0], read: $r[0], detokenize: $d[0]}}' "$WORK/results.json" >"$WORK/results.tmp"
  mv "$WORK/results.tmp" "$WORK/results.json"
fi
/usr/bin/python3 "$BENCH_DIR/report.py" "$WORK/results.json" "$ROOT/service/store_tokens.c:$ROOT/service/store_audit.c" \
  "$BENCH_DIR/pgbench" "bench/results/latest.json"
cp bench/results/latest.json "bench/results/$MODE-$STAMP.json"
log "done in $((T_END - T_START)) s; JSON: bench/results/latest.json"

FAIL=0
if [ "$ERRORS" -ne 0 ]; then log "FAIL: $ERRORS requests errored"; FAIL=1; fi
if [ "$MISSING" -ne 0 ]; then log "FAIL: $MISSING acknowledged tokens are missing from the database"; FAIL=1; fi
if [ "$UNRECORDED" -ne 0 ]; then log "FAIL: $UNRECORDED responses 201 without a recorded token"; FAIL=1; fi
if [ "$DUPLICATES" -ne 0 ]; then log "FAIL: $DUPLICATES tokens acknowledged twice"; FAIL=1; fi
if [ "$IMPORT_BAD" -ne 0 ]; then log "FAIL: the import is not whole ($IMPORT_BAD checks failed: see runs.import in the JSON)"; FAIL=1; fi
exit $FAIL
