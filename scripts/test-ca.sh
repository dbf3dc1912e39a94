#!/usr/bin/env bash
# Makes a throw-away certificate authority and a server certificate for
# 127.0.0.1 / localhost in DIR, for the TLS tests (never for real use):
#   DIR/ca.pem DIR/ca.key          the test CA
#   DIR/server.pem DIR/server.key  signed by it (SAN IP:127.0.0.1, localhost)
#   DIR/other-ca.pem               a second CA that signed nothing here
# Usage: scripts/test-ca.sh DIR
set -euo pipefail
dir=${1:?usage: test-ca.sh DIR}
mkdir -p "$dir"
cd "$dir"
ossl() { openssl "$@" 2>/dev/null; }
ossl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=sfrelay test CA" \
	-keyout ca.key -out ca.pem
ossl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=unrelated CA" \
	-keyout other-ca.key -out other-ca.pem
ossl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
	-keyout server.key -out server.csr
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >server.ext
ossl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
	-days 2 -extfile server.ext -out server.pem
chmod 600 ./*.key
