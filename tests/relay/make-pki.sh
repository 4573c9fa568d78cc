#!/usr/bin/env bash
# The fake processor's test PKI, made fresh into DIR for one test run (no key
# is ever committed):
#   ca.pem / ca.key            the test CA the relay is told to trust
#   server.pem / server.key    processor.test, signed by the test CA
#   wrongname.pem / .key       other.test, signed by the test CA (host-name check)
#   rogue-ca.pem, rogue.pem/.key  processor.test, signed by a CA nobody trusts
#   client-ca.pem              the CA the processor requires client certificates from
#   client.pem / client.key    the vault's client certificate (mutual TLS)
#   server.pin                 sha256//BASE64 of server.pem's public key
#
#   tests/relay/make-pki.sh DIR
set -euo pipefail
dir=${1:?usage: make-pki.sh DIR}
mkdir -p "$dir"
cd "$dir"
days=2
ca() { # NAME SUBJECT
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" \
    -out "$1.pem" -days $days -subj "/CN=$2" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    2>/dev/null
}
leaf() { # NAME CA SAN USAGE
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" \
    -out "$1.csr" -subj "/CN=$3" 2>/dev/null
  printf 'basicConstraints=CA:FALSE\nsubjectAltName=DNS:%s\nextendedKeyUsage=%s\n' "$3" "$4" >"$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -CAcreateserial -days $days \
    -extfile "$1.ext" -out "$1.pem" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
ca ca "cardvault test CA"
ca rogue-ca "a CA nobody trusts"
ca client-ca "cardvault test client CA"
leaf server ca processor.test serverAuth
leaf wrongname ca other.test serverAuth
leaf rogue rogue-ca processor.test serverAuth
leaf client client-ca cardvault-relay clientAuth
chmod 600 ./*.key
printf 'sha256//%s\n' "$(openssl x509 -in server.pem -pubkey -noout |
  openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64)" >server.pin
