#!/usr/bin/env bash
# demo-pki.sh DIR - make a throw-away PKI and key set for demos, benchmarks and tests.
#
#   DIR/ca.crt, ca.key              the demo CA (signs everything below)
#   DIR/server.crt, server.key      keywayd's TLS identity (SAN: localhost, 127.0.0.1, ::1)
#   DIR/client.crt, client.key      a keyless client identity (for mutual TLS)
#   DIR/keys/NAME.key               keys keywayd serves (mode 0600)
#   DIR/certs/NAME.crt              a certificate for each served key (CN=localhost)
#
# NAME is rsa2048, rsa3072, ecdsa-p256, ecdsa-p384, ecdsa-p521, ed25519.
set -euo pipefail
# --help: the header comment above, and nothing else (no build, no install).
case ${1:-} in -h | --help) sed -n '2,/^set -/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
dir=${1:?usage: demo-pki.sh DIR}
mkdir -p "$dir/keys" "$dir/certs"
cd "$dir"
umask 077

days=30
ossl() { openssl "$@" 2>/dev/null; }

ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.crt \
	-days "$days" -subj "/CN=Keyway demo CA" \
	-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign

issue() { # issue NAME KEYFILE SUBJECT EXT
	local name=$1 key=$2 subj=$3 ext=$4
	ossl req -new -key "$key" -subj "$subj" -out "$name.csr"
	ossl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days "$days" \
		-out "$name.crt" -extfile <(printf '%s\n' "$ext")
	rm -f "$name.csr"
}

ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out server.key
issue server server.key "/CN=localhost" \
	"subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1
extendedKeyUsage=serverAuth"
ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out client.key
issue client client.key "/CN=keyway demo client" "extendedKeyUsage=clientAuth"

gen() { # gen NAME genpkey-args...
	local name=$1
	shift
	ossl genpkey "$@" -out "keys/$name.key"
	issue "certs/$name" "keys/$name.key" "/CN=localhost" \
		"subjectAltName=DNS:localhost,IP:127.0.0.1
extendedKeyUsage=serverAuth"
}
gen rsa2048 -algorithm RSA -pkeyopt rsa_keygen_bits:2048
gen rsa3072 -algorithm RSA -pkeyopt rsa_keygen_bits:3072
gen ecdsa-p256 -algorithm EC -pkeyopt ec_paramgen_curve:P-256
gen ecdsa-p384 -algorithm EC -pkeyopt ec_paramgen_curve:P-384
gen ecdsa-p521 -algorithm EC -pkeyopt ec_paramgen_curve:P-521
gen ed25519 -algorithm ED25519
chmod 600 keys/*.key ./*.key
chmod 644 ./*.crt certs/*.crt
rm -f ca.srl
