#!/usr/bin/env bash
# The relay client's benchmark (bench/README.md, "Relay client"): a fresh test
# PKI, the fake processor (tests/relay/fake_processor.py) requiring client
# certificates, then build/bench/relay_client: a bare libcurl client's rate at
# the fake (the limit), cv_relay_client_send's rate, and the limit again.
# Prints a Markdown table; the JSON goes to bench/results/relay-latest.json.
#
#   bench/relay_client.sh BINARY [SECONDS] [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:?usage: relay_client.sh BINARY [SECONDS] [THREADS]}
secs=${2:-3}
threads=${3:-4}
tmp=$(mktemp -d)
fp=
cleanup() { [ -n "$fp" ] && kill "$fp" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
tests/relay/make-pki.sh "$tmp/pki"
port=$((15000 + RANDOM % 15000))
python3 tests/relay/fake_processor.py --port "$port" --cert "$tmp/pki/server.pem" \
  --key "$tmp/pki/server.key" --client-ca "$tmp/pki/client-ca.pem" --record /dev/null \
  --count "$tmp/count" >"$tmp/fp.log" 2>&1 &
fp=$!
for _ in $(seq 1 100); do
  [ -s "$tmp/count" ] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
echo "relay bench: ${secs}s per phase, $threads threads, fake processor on port $port" >&2
"$bin" "$tmp/pki" "$port" "$secs" "$threads" >"$tmp/out.json"
mkdir -p bench/results
cp "$tmp/out.json" bench/results/relay-latest.json
python3 - "$tmp/out.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
lim = max(r["limit"]["rate"], r["limit_after"]["rate"]) or 1
print("| run | requests | errors | req/s | p50 ms | p99 ms | of limit |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for k in ("limit", "relay", "limit_after"):
    v = r[k]
    print("| %s | %d | %d | %.1f | %.2f | %.2f | %.0f%% |" % (
        k, v["requests"], v["errors"], v["rate"], v["p50_ms"], v["p99_ms"], 100 * v["rate"] / lim))
bad = sum(r[k]["errors"] for k in ("limit", "relay", "limit_after"))
sys.exit(1 if bad else 0)
PY
