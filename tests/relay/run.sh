#!/usr/bin/env bash
# The relay client against the fake processor, below the HTTP API: makes the
# test PKI into a temporary directory (no key is committed), starts four
# fakes on 127.0.0.1 (processor.test from the test CA, a certificate for
# other.test, processor.test from an untrusted CA, processor.test speaking
# only TLS 1.2 with a CBC suite; each requires a client certificate), runs the test binary (tests/relay/test_relay_client.c) and
# appends its "P F" to build/test-results.
#
#   tests/relay/run.sh BUILD/tests/relay/test_relay_client
set -uo pipefail
cd "$(dirname "$0")/../.."
bin=${1:?usage: run.sh TEST_BINARY}
mkdir -p build
record() { echo "$1 $2" >>build/test-results; }
for tool in openssl python3; do
  command -v "$tool" >/dev/null || { echo "relay-client: $tool is missing"; record 0 1; exit 1; }
done

tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

# A port below the kernel's ephemeral range that nothing answers on.
free_port() {
  local base=15000 span=15000 p lo
  lo=$(awk '{ print $1 }' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
  [ $((base + span)) -le "$lo" ] || span=$((lo - base))
  for _ in $(seq 1 50); do
    p=$((base + RANDOM % span))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
  done
  echo "$((base + RANDOM % span))"
}

tests/relay/make-pki.sh "$tmp/pki" || { echo "relay-client: test PKI failed"; record 0 1; exit 1; }
export RELAY_PKI=$tmp/pki
# GOOD offers HTTP/2 in ALPN but speaks HTTP/1.1 only (the relay must not
# take the offer); WEAK: processor.test from the test CA, TLS 1.2 with a CBC
# suite only.
for row in "GOOD server --offer-h2" "WRONG wrongname" "ROGUE rogue" "WEAK server --weak-tls12"; do
  set -- $row
  port=$(free_port)
  python3 tests/relay/fake_processor.py --port "$port" --cert "$tmp/pki/$2.pem" \
    --key "$tmp/pki/$2.key" --client-ca "$tmp/pki/client-ca.pem" --record "$tmp/$1.rec" \
    --count "$tmp/$1.cnt" --slow 4 ${3:-} >"$tmp/$1.log" 2>&1 &
  pids+=($!)
  export "RELAY_PORT_$1=$port" "RELAY_REC_$1=$tmp/$1.rec" "RELAY_CNT_$1=$tmp/$1.cnt"
done
export RELAY_PORT_CLOSED=$(free_port)
# Ready when each fake has written its count and accepts a TCP connection
# (that probe is one connection; the tests compare counts before and after).
for name in GOOD WRONG ROGUE WEAK; do
  port_var=RELAY_PORT_$name
  for _ in $(seq 1 100); do
    [ -s "$tmp/$name.cnt" ] && (exec 3<>"/dev/tcp/127.0.0.1/${!port_var}") 2>/dev/null && break
    sleep 0.1
  done
done

out=$("$bin" 2>&1); rc=$?
printf '%s\n' "$out"
line=$(printf '%s\n' "$out" | grep -E '^relay-client: [0-9]+ passed, [0-9]+ failed' | tail -1)
if [ -n "$line" ]; then
  echo "$line" | sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed.*/\1 \2/' >>build/test-results
else
  for name in GOOD WRONG ROGUE WEAK; do sed 's/^/  fake '"$name"': /' "$tmp/$name.log"; done
  record 0 1
fi
exit "$rc"
