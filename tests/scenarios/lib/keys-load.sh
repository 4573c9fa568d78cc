# shellcheck shell=bash
# shellcheck disable=SC2034 # LOAD_PID and the V_* results are read by the caller
# Load helpers for tests/scenarios/keys.sh (sourced after tests/lib/scenario.sh
# and tests/scenarios/lib/load.sh, whose load_stop, load_acks, load_summary,
# wrk_bg, wrk_stop and wrk_verify it reuses).
# The Lua scripts beside this file record the whole card (PAN and expiry):
#   keys_load_start DIR PREFIX KEY BASEYEAR [THREADS]
#                       tokenize at full speed in the background (LOAD_PID, so
#                       load_stop stops it); acks as "TOKEN PAN MONTH YEAR"
#   keys_detok_start DIR CARDFILE KEY [THREADS]
#                       detokenize CARDFILE's cards round and round (DETOK_PID)
#   keys_detok_stop     interrupt it, wait for DIR/detok-summary
#   keys_verify ACKFILE DKEY DIR DESTROYED
#                       detokenize every acknowledged card once. DESTROYED
#                       lists tokens whose DEK was destroyed: those must answer
#                       410 token_destroyed, every other one 200 with its exact
#                       card. Sets V_ACKED, V_VERIFIED, V_DESTROYED (acked,
#                       listed, answered 410 token_destroyed), V_LOST (the
#                       rest), V_SHRED_LEAK (listed tokens that answered 200).
DETOK_PID=""

keys_load_start() {
  local dir=$1 prefix=$2 key=$3 year=$4 threads=${5:-4}
  mkdir -p "$dir"
  wrk_bg keys-tokenize-load.lua 300 "$threads" "$dir/wrk.out" "$dir" "$prefix" "$key" "$year"
  LOAD_PID=$WRK_PID
}

keys_detok_start() {
  local dir=$1 cards=$2 key=$3 threads=${4:-2}
  mkdir -p "$dir"
  wrk_bg keys-detokenize-load.lua 300 "$threads" "$dir/detok-wrk.out" "$cards" "$key" "$dir"
  DETOK_PID=$WRK_PID
}

keys_detok_stop() { wrk_stop "$DETOK_PID"; DETOK_PID=""; }

keys_verify() {
  local acks=$1 key=$2 dir=$3 destroyed=$4 threads=${VERIFY_THREADS:-8}
  V_ACKED=$(sort -u "$acks" | grep -c .)
  V_VERIFIED=0
  V_DESTROYED=0
  V_LOST=$V_ACKED
  V_SHRED_LEAK=0
  mkdir -p "$dir"
  rm -f "$dir"/verify.* "$dir"/verify-done.*
  if [ "$V_ACKED" -gt 0 ]; then
    wrk_verify detokenize-verify.lua "$dir" "$threads" 300 2400 "$acks" "$key" "$dir" "$threads"
  fi
  sort -u "$destroyed" >"$dir/destroyed"
  sort -u "$acks" >"$dir/acked"
  # 200: the answer's own token, PAN and expiry; 410: the token and its code.
  cat "$dir"/verify.* 2>/dev/null | awk '$1 == 200 { print $2, $3, $4, $5 }' | sort -u >"$dir/answered"
  cat "$dir"/verify.* 2>/dev/null | awk '$1 == 410 && $3 == "token_destroyed" { print $2 }' |
    sort -u >"$dir/gone"
  # Tokens wrk could not settle (a dropped connection, or a wrong answer) are
  # retried one by one (at most 100: more means the service is not answering).
  awk 'NR == FNR { d[$1] = 1; next } !($1 in d)' "$dir/destroyed" "$dir/acked" |
    comm -23 - "$dir/answered" >"$dir/unsettled"
  cut -d' ' -f1 "$dir/acked" | sort -u | comm -12 - "$dir/destroyed" | comm -23 - "$dir/gone" |
    awk '{ print $1, "-", "-", "-" }' >>"$dir/unsettled"
  local tok pan m y out n=0 code
  : >"$dir/retried"
  while read -r tok pan m y; do
    n=$((n + 1))
    if [ "$n" -gt 100 ]; then echo "$tok $pan $m $y -> not retried" >>"$dir/retried"; continue; fi
    out=$(curl -s -m 5 -w '\n%{http_code}' -X POST "$SC_URL/v1/tokens/$tok/detokenize" -H "Authorization: Bearer $key")
    code=${out##*$'\n'}
    out=${out%$'\n'*}
    if [ "$code" = 200 ]; then
      jq -r '"\(.token) \(.pan) \(.exp_month) \(.exp_year)"' <<<"$out" >>"$dir/answered"
    elif [ "$code" = 410 ] && [ "$(jq -r .error.code <<<"$out" 2>/dev/null)" = token_destroyed ]; then
      echo "$tok" >>"$dir/gone"
    fi
    echo "$tok $pan $m $y -> $code $(jq -c '.error.code // "\(.pan) \(.exp_month) \(.exp_year)"' <<<"$out" 2>/dev/null)" >>"$dir/retried"
  done <"$dir/unsettled"
  sort -u -o "$dir/answered" "$dir/answered"
  sort -u -o "$dir/gone" "$dir/gone"
  V_VERIFIED=$(comm -12 "$dir/acked" "$dir/answered" | wc -l)
  # Acknowledged tokens under the destroyed DEK that answered 410 token_destroyed.
  V_DESTROYED=$(cut -d' ' -f1 "$dir/acked" | sort -u | comm -12 - "$dir/destroyed" | comm -12 - "$dir/gone" | wc -l)
  V_LOST=$((V_ACKED - V_VERIFIED - V_DESTROYED))
  V_SHRED_LEAK=$(cut -d' ' -f1 "$dir/answered" | sort -u | comm -12 - "$dir/destroyed" | wc -l)
}
