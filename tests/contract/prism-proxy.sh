#!/bin/sh
# prism-proxy.sh: a validating proxy between the contract tests and a running cardvault.
#
#   prism-proxy.sh start PORT UPSTREAM_URL [strict|lenient]
#   prism-proxy.sh stop [PORT]        (no PORT: every proxy this script started)
#   prism-proxy.sh status [PORT]
#
# `start` launches Prism 5.14.2 (the version pinned in package.json; 5.16 needs Node >= 24) as
#   prism proxy CLOSED_SPEC UPSTREAM_URL --errors -p PORT
# where CLOSED_SPEC ($PRISM_RUN_DIR/openapi-PORT.closed.json) is ../../openapi.yaml bundled to JSON
# with every response object closed (closed-spec.mjs): the document's response schemas are open
# for clients, the proxy's are closed so a member the document does not describe is a violation.
# in the background (its own process group), writes its pid to $PRISM_RUN_DIR/prism-PORT.pid and
# its log to $PRISM_RUN_DIR/prism-PORT.log, and returns once Prism answers HTTP on 127.0.0.1:PORT
# (or fails, printing the log, after $PRISM_START_TIMEOUT seconds, default 60). `stop` sends
# SIGTERM to that process group only (then SIGKILL after 5 s) and removes the pid file.
# PRISM_RUN_DIR defaults to tests/contract/.run (ignored by tests/contract/.gitignore).
#
# Modes:
#   strict  (default) Prism validates every request and every response against openapi.yaml.
#   lenient adds --validate-request=false: requests are forwarded even when they break the
#           request schema (unknown field, wrong type, bad Idempotency-Key, ...) so negative tests
#           reach cardvault, while cardvault's responses are still validated.
#
# How a test client must treat responses that come through the proxy (roundtrip.test.ts does):
#   1. FAIL on any `sl-violations` response header, whatever the severity inside. Prism adds it,
#      with a JSON list, when the request or the response does not match openapi.yaml. Errors
#      (missing X-Request-Id, body off-schema, wrong error code for the status...) also turn the
#      answer into Prism's 500 (rule 2); an undeclared status is only a "Warning" and the
#      response passes through unchanged, so the header is the only sign.
#   2. FAIL on any `Content-Type: application/problem+json` response. cardvault never sends
#      problem+json (its errors are application/json {"error":{...},"request_id":...}), so such a
#      body was produced by Prism itself:
#        - 500 VIOLATIONS: cardvault's response broke the spec (--errors makes it an error);
#        - 422 (the request, its headers or its content type break the spec; strict mode) and
#          401 (no `Authorization: Bearer ...`; both modes): NOT forwarded;
#        - 404 NO_PATH_MATCHED_ERROR / 405 NO_METHOD_MATCHED_ERROR: path or method not in the
#          spec; not forwarded;
#        - 500 FetchError (cardvault unreachable), 501 (a GET/HEAD with a body).
#   3. FAIL when `X-Request-Id` is missing. Every cardvault response has it; Prism's own answers
#      do not. Watch for one that is not problem+json: Prism parses JSON request bodies itself
#      and answers malformed JSON with 400 application/json
#      {"error":{"code":"invalid_json","message":"Invalid JSON"}} (no type, no request_id).
#   Send straight to cardvault, and check the Error body yourself, whatever Prism cannot
#   forward faithfully: requests without a Bearer Authorization header (401), unknown paths
#   (404 route_not_found), undeclared methods (405 + Allow), malformed JSON and duplicate keys
#   (Prism re-serializes JSON bodies, so duplicates collapse), and - unless you use a lenient
#   proxy - every request that breaks the request schema (unknown_field, invalid_type,
#   missing_field, out-of-range values, bad Idempotency-Key, 413, 415).
#   cardvault must never answer 501: Prism takes an upstream 501 as "not implemented" and
#   replaces it with a mocked response.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
run_dir=${PRISM_RUN_DIR:-$here/.run}
spec=$here/../../openapi.yaml
prism=$here/node_modules/.bin/prism

usage() {
    echo "usage: $0 start PORT UPSTREAM_URL [strict|lenient] | stop [PORT] | status [PORT]" >&2
    exit 2
}

check_port() {
    case $1 in
        '' | *[!0-9]*) echo "prism-proxy.sh: PORT must be a number, got '$1'" >&2; exit 2 ;;
    esac
}

# Prints the pid recorded for PORT if that process is still a running Prism; else nothing.
live_pid() {
    pf=$run_dir/prism-$1.pid
    [ -f "$pf" ] || return 0
    pid=$(cat "$pf")
    case $pid in '' | *[!0-9]*) return 0 ;; esac
    if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q prism; then
        echo "$pid"
    fi
}

answers_http() {
    curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$1/healthz"
}

start() {
    if [ $# -lt 2 ] || [ $# -gt 3 ]; then usage; fi
    port=$1 upstream=$2 mode=${3:-strict}
    check_port "$port"
    case $mode in
        strict) extra= ;;
        lenient) extra=--validate-request=false ;;
        *) usage ;;
    esac
    [ -x "$prism" ] || { echo "prism-proxy.sh: run tests/contract/install.sh first" >&2; exit 2; }
    mkdir -p "$run_dir"
    if [ -n "$(live_pid "$port")" ]; then
        echo "prism-proxy.sh: a proxy started by this script already runs on port $port" >&2
        exit 1
    fi
    if answers_http "$port"; then
        echo "prism-proxy.sh: port $port is already in use" >&2
        exit 1
    fi
    log=$run_dir/prism-$port.log
    closed=$run_dir/openapi-$port.closed.json
    if ! (cd "$here" && REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true \
              node_modules/.bin/redocly bundle "$spec" --ext json -o "$run_dir/openapi-$port.bundled.json" >"$log" 2>&1 &&
          node closed-spec.mjs "$run_dir/openapi-$port.bundled.json" "$closed" >>"$log" 2>&1); then
        echo "prism-proxy.sh: cannot write the closed copy of $spec; log:" >&2
        cat "$log" >&2
        exit 1
    fi
    # setsid: Prism leads its own process group, so `stop` can end it and only it.
    # (node_modules/.bin/prism is what `npx prism` runs; calling it directly keeps the pid ours.)
    # shellcheck disable=SC2086
    setsid "$prism" proxy "$closed" "$upstream" --errors -p "$port" -h 127.0.0.1 $extra \
        </dev/null >"$log" 2>&1 &
    pid=$!
    echo "$pid" >"$run_dir/prism-$port.pid"
    limit=${PRISM_START_TIMEOUT:-60}
    waited=0
    while ! answers_http "$port"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "prism-proxy.sh: Prism exited during start-up; its log:" >&2
            cat "$log" >&2
            rm -f "$run_dir/prism-$port.pid"
            exit 1
        fi
        if [ "$waited" -ge $((limit * 5)) ]; then
            echo "prism-proxy.sh: Prism did not answer on port $port within ${limit}s; its log:" >&2
            cat "$log" >&2
            stop_one "$port"
            exit 1
        fi
        sleep 0.2
        waited=$((waited + 1))
    done
    echo "prism-proxy.sh: Prism ($mode) on http://127.0.0.1:$port -> $upstream, pid $pid, log $log"
}

stop_one() {
    port=$1
    pid=$(live_pid "$port")
    if [ -n "$pid" ]; then
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        n=0
        while kill -0 "$pid" 2>/dev/null && [ $n -lt 25 ]; do
            sleep 0.2
            n=$((n + 1))
        done
        if kill -0 "$pid" 2>/dev/null; then
            kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$run_dir/prism-$port.pid"
}

ports_started() {
    for pf in "$run_dir"/prism-*.pid; do
        [ -f "$pf" ] || continue
        p=${pf##*/prism-}
        echo "${p%.pid}"
    done
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case $cmd in
    start) start "$@" ;;
    stop)
        if [ $# -eq 1 ]; then
            check_port "$1"
            stop_one "$1"
        elif [ $# -eq 0 ]; then
            for p in $(ports_started); do stop_one "$p"; done
        else
            usage
        fi
        ;;
    status)
        [ $# -le 1 ] || usage
        rc=1
        for p in ${1:-$(ports_started)}; do
            pid=$(live_pid "$p")
            if [ -n "$pid" ]; then
                echo "port $p: running, pid $pid"
                rc=0
            else
                echo "port $p: not running"
            fi
        done
        exit $rc
        ;;
    *) usage ;;
esac
