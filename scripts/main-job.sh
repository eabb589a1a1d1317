#!/usr/bin/env bash
# main-job.sh - demo PKI and keys in a scratch folder, keywayd on 127.0.0.1 with mutual TLS,
# a few seconds of keyway-bench per key type, a result table; everything stopped at the end.
#
#   scripts/main-job.sh [--duration SECONDS] [--bin DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
duration=3
bin=
while [ $# -gt 0 ]; do
	case $1 in
	--duration) duration=$2; shift 2 ;;
	--bin) bin=$2; shift 2 ;;
	*) echo "usage: main-job.sh [--duration SECONDS] [--bin DIR]" >&2; exit 2 ;;
	esac
done
find_bin() { # find_bin NAME: --bin DIR, then PATH
	if [ -n "$bin" ]; then
		find "$bin" -type f -name "$1" -perm -u+x | head -n1
	else
		command -v "$1"
	fi
}
keywayd=$(find_bin keywayd)
bench=$(find_bin keyway-bench)
[ -x "$keywayd" ] && [ -x "$bench" ] || { echo "keywayd/keyway-bench not found (run scripts/demo.sh)" >&2; exit 1; }

scratch=$(mktemp -d /tmp/keyway-demo.XXXXXX)
kpid=
cleanup() {
	[ -n "$kpid" ] && kill -TERM "$kpid" 2>/dev/null && wait "$kpid" 2>/dev/null || true
	rm -rf "$scratch"
}
trap cleanup EXIT INT TERM

echo "== demo PKI and keys in $scratch"
"$here/demo-pki.sh" "$scratch/pki"
pki=$scratch/pki

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
echo "== keywayd on 127.0.0.1:$port (mutual TLS), metrics on 127.0.0.1:$mport"
"$keywayd" --keys "$pki/keys" --listen "127.0.0.1:$port" --tls-cert "$pki/server.crt" \
	--tls-key "$pki/server.key" --client-ca "$pki/ca.crt" --unix "$scratch/keywayd.sock" \
	--metrics "127.0.0.1:$mport" --pid-file "$scratch/keywayd.pid" 2>"$scratch/keywayd.log" &
kpid=$!
for _ in $(seq 100); do [ -s "$scratch/keywayd.pid" ] && break; sleep 0.1; done
[ -s "$scratch/keywayd.pid" ] || { echo "keywayd did not start:" >&2; cat "$scratch/keywayd.log" >&2; exit 1; }

results=$scratch/results.jsonl
run() { # run LABEL OP KEY [extra args]
	local label=$1 op=$2 key=$3
	shift 3
	printf '   %-28s' "$label" >&2
	if out=$(timeout $((duration + 20)) "$bench" --server "127.0.0.1:$port" --tls-cert "$pki/client.crt" \
		--tls-key "$pki/client.key" --ca "$pki/ca.crt" --op "$op" --key "$key" \
		--connections 2 --depth 32 --duration "$duration" --json "$@" 2>/dev/null); then
		echo "ok" >&2
	else
		echo "FAILED" >&2
	fi
	[ -n "${out:-}" ] && printf '{"label":"%s",%s\n' "$label" "${out#\{}" >>"$results"
}
echo "== keyway-bench, ${duration}s per operation, 2 connections x 32 in flight"
run "ping" ping "$pki/certs/ecdsa-p256.crt"
run "RSA-2048 PKCS#1 SHA-256" rsa-pkcs1-sha256 "$pki/certs/rsa2048.crt"
run "RSA-2048 PSS SHA-256" rsa-pss-sha256 "$pki/certs/rsa2048.crt"
run "RSA-2048 raw decrypt" rsa-decrypt "$pki/certs/rsa2048.crt"
run "ECDSA P-256 SHA-256" ecdsa-sha256 "$pki/certs/ecdsa-p256.crt"
run "Ed25519" ed25519 "$pki/certs/ed25519.crt"
run "RSA-2048 over unix socket" rsa-pkcs1-sha256 "$pki/certs/rsa2048.crt" --server "unix:$scratch/keywayd.sock"

echo
python3 - "$results" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
hdr = ("operation", "ops/s", "p50 µs", "p99 µs", "p99.9 µs", "errors")
print("%-28s %10s %9s %9s %9s %7s" % hdr)
print("-" * 78)
for r in rows:
    print("%-28s %10.0f %9.0f %9.0f %9.0f %7d" % (r["label"], r["ops_per_sec"], r["p50_us"],
          r["p99_us"], r["p999_us"], r["errors"]))
PY
echo
signs=$(python3 -c "import urllib.request as u; t=u.urlopen('http://127.0.0.1:$mport/metrics', timeout=5).read().decode(); print(sum(float(l.split()[-1]) for l in t.splitlines() if l.startswith('keyless_requests{')))")
echo "keywayd /metrics: keyless_requests total = ${signs%.*}"
echo "== stopping keywayd (SIGTERM, graceful drain)"
kill -TERM "$kpid"
wait "$kpid" && echo "keywayd exited 0"
kpid=
