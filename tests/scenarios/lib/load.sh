# shellcheck shell=bash
# Load helpers for the fault scenarios (sourced after tests/lib/scenario.sh).
# wrk drives the service with the Lua scripts beside this file, one
# connection per thread so every response pairs with its request.
#   load_start DIR PREFIX KEY [THREADS]  tokenize at full speed in the background
#   load_stop                            interrupt wrk, wait for its summary
#   load_acks DIR                        all "TOKEN PAN" lines acknowledged (201)
#   load_summary DIR KEY                 a value from DIR/summary (e.g. "status 503")
#   verify_acks ACKFILE DKEY DIR         detokenize every acknowledged token; sets
#                                        V_ACKED, V_VERIFIED, V_LOST
LOAD_LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LOAD_PID=""

# wrk_bg SCRIPT SECONDS THREADS OUTFILE SCRIPT-ARGS...: one of the Lua scripts
# beside this file against $SC_URL in the background, one connection per
# thread; its pid in WRK_PID.
wrk_bg() {
  local script=$1 secs=$2 threads=$3 out=$4
  shift 4
  wrk -t "$threads" -c "$threads" -d "${secs}s" --timeout 10s -s "$LOAD_LIB/$script" \
    "$SC_URL" -- "$@" >"$out" 2>&1 &
  WRK_PID=$!
}

load_start() {
  local dir=$1 prefix=$2 key=$3 threads=${4:-8}
  mkdir -p "$dir"
  wrk_bg tokenize-load.lua 120 "$threads" "$dir/wrk.out" "$dir" "$prefix" "$key"
  LOAD_PID=$WRK_PID
}

# wrk_stop PID: interrupt a wrk run (its done() still writes the summary).
wrk_stop() {
  [ -n "$1" ] || return 0
  kill -INT "$1" 2>/dev/null
  wait "$1" 2>/dev/null
}

load_stop() { wrk_stop "$LOAD_PID"; LOAD_PID=""; }

# wrk_verify SCRIPT DIR THREADS SECONDS POLLS WRK-ARGS...: runs a verify
# script (detokenize-verify.lua) for at most SECONDS, until
# every thread has written DIR/verify-done.<thread>, wrk ends, or POLLS
# looks 50 ms apart found neither; then interrupts it.
wrk_verify() {
  local script=$1 dir=$2 threads=$3 secs=$4 polls=$5 pid
  shift 5
  wrk_bg "$script" "$secs" "$threads" "$dir/verify-wrk.out" "$@"
  pid=$WRK_PID
  for _ in $(seq 1 "$polls"); do
    [ "$(ls "$dir"/verify-done.* 2>/dev/null | wc -l)" -ge "$threads" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  wrk_stop "$pid"
}

load_acks() { cat "$1"/acks.* 2>/dev/null; }

load_summary() { # DIR "status 503" -> count (0 when absent)
  awk -v k="$2" '{ v = $NF; $NF = ""; sub(/ $/, ""); if ($0 == k) { print v; f = 1 } }
                 END { if (!f) print 0 }' "$1/summary" 2>/dev/null
}

verify_acks() {
  local acks=$1 key=$2 dir=$3 threads=${VERIFY_THREADS:-16}
  V_ACKED=$(grep -c . "$acks")
  V_VERIFIED=0
  V_LOST=$V_ACKED
  mkdir -p "$dir"
  rm -f "$dir"/verify.* "$dir"/verify-done.*
  if [ "$V_ACKED" -gt 0 ]; then
    wrk_verify detokenize-verify.lua "$dir" "$threads" 120 1200 "$acks" "$key" "$dir" "$threads"
  fi
  # A token verifies when a detokenize answer carried it with its exact PAN.
  # Tokens wrk could not settle (a dropped connection) are retried one by one
  # (at most 100: more means the service is not answering at all).
  cat "$dir"/verify.* 2>/dev/null | awk '$1 == 200 { print $2, $3 }' | sort -u >"$dir/answered"
  sort -u "$acks" >"$dir/acked"
  comm -23 "$dir/acked" "$dir/answered" >"$dir/unverified"
  local tok pan out n=0
  : >"$dir/still-unverified"
  while read -r tok pan; do
    n=$((n + 1))
    if [ "$n" -gt 100 ]; then echo "$tok $pan -> not retried" >>"$dir/still-unverified"; continue; fi
    out=$(curl -s -m 5 -X POST "$SC_URL/v1/tokens/$tok/detokenize" -H "Authorization: Bearer $key")
    if [ "$(jq -r '.token + " " + .pan' <<<"$out" 2>/dev/null)" = "$tok $pan" ]; then
      echo "$tok $pan" >>"$dir/answered"
    else
      echo "$tok $pan -> $(jq -c '.error.code // .pan' <<<"$out" 2>/dev/null)" >>"$dir/still-unverified"
    fi
  done <"$dir/unverified"
  V_VERIFIED=$(sort -u "$dir/answered" | comm -12 "$dir/acked" - | wc -l)
  V_LOST=$((V_ACKED - V_VERIFIED))
}
