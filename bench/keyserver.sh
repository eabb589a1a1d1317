#!/usr/bin/env bash
# keyserver.sh - keywayd's CPU per signature, against OpenSSL's own best.
#
#   bench/keyserver.sh [--duration SECONDS] [--build DIR] [--results DIR]
#
# Denominator: `openssl speed -mr` for RSA-2048, ECDSA P-256 and Ed25519 signs;
# its +R lines give the op count and the user CPU seconds it took (speed
# measures with times(), one reused key context, no I/O), so
# CPU/op = seconds / count: the best this OpenSSL does on this CPU.
# Numerator: keywayd with one worker pinned to one core, under keyway-bench
# pinned to the other (mutual TLS, one connection, 64 requests in flight);
# keywayd's utime+stime from /proc/PID/stat over the run divided by the ops
# keyway-bench got answered. Both run on the same core.
#
# Prints a table, writes RESULTS/keyserver-DATE.dat and RESULTS/keyserver.png
# (gnuplot), and ends with `RESULT <name> <value> <target> PASS|FAIL` lines.
# Exit status: 0 if every target is met, 1 if one is missed, 2 on a setup error.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
duration=5
build=
results=$here/results

usage() { echo "usage: keyserver.sh [--duration SECONDS] [--build DIR] [--results DIR]" >&2; exit 2; }
while [ $# -gt 0 ]; do
	case $1 in
	--duration) [ $# -ge 2 ] || usage; duration=$2; shift 2 ;;
	--build) [ $# -ge 2 ] || usage; build=$2; shift 2 ;;
	--results) [ $# -ge 2 ] || usage; results=$2; shift 2 ;;
	-h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) usage ;;
	esac
done
[[ $duration =~ ^[1-9][0-9]*$ ]] || { echo "--duration: expected whole seconds >= 1" >&2; exit 2; }

die() { echo "keyserver.sh: $*" >&2; exit 2; }

# find_bin NAME SUBDIR: --build DIR, else build dirs of this checkout, else PATH.
find_bin() {
	local name=$1 sub=$2 d
	if [ -n "$build" ]; then
		[ -x "$build/$sub/$name" ] && { echo "$build/$sub/$name"; return; }
		[ -x "$build/$name" ] && { echo "$build/$name"; return; }
		return 1
	fi
	for d in "$root/build" "$root/build-release"; do
		[ -x "$d/$sub/$name" ] && { echo "$d/$sub/$name"; return; }
	done
	PATH=$PATH:/usr/local/sbin:/usr/local/bin:/usr/sbin command -v "$name"
}
keywayd=$(find_bin keywayd src/keywayd) || die "keywayd not found (build it, or pass --build DIR)"
bench=$(find_bin keyway-bench src/bench) || die "keyway-bench not found (build it, or pass --build DIR)"
for tool in openssl taskset python3 timeout; do
	command -v "$tool" >/dev/null || die "$tool is needed"
done

# Server and load generator on different cores when there are two.
ncpu=$(nproc)
if [ "$ncpu" -ge 2 ]; then
	server_cpu=1 bench_cpu=0
else
	server_cpu=0 bench_cpu=0
	echo "warning: one CPU only; keywayd and keyway-bench share it" >&2
fi
tck=$(getconf CLK_TCK)

scratch=$(mktemp -d /tmp/keyway-bench.XXXXXX)
kpid= tpid=
stop_keywayd() {
	if [ -n "$kpid" ]; then
		kill -TERM "$kpid" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$kpid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$kpid" 2>/dev/null || true
	fi
	[ -n "$tpid" ] && wait "$tpid" 2>/dev/null || true
	kpid= tpid=
}
cleanup() {
	stop_keywayd
	rm -rf "$scratch"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== machine: $(lscpu | sed -n 's/^Model name: *//p' | head -n1), $ncpu CPUs, kernel $(uname -r)"
echo "== $(openssl version)"
echo "== keywayd: $keywayd"
echo "== keyway-bench: $bench"
echo "== demo PKI and keys in $scratch"
timeout 120 "$root/scripts/demo-pki.sh" "$scratch/pki" || die "demo-pki.sh failed"
pki=$scratch/pki

# ---- the denominator: openssl speed, on the core keywayd will use ----
echo "== openssl speed -seconds $duration (pinned to CPU $server_cpu)"
timeout $((duration * 6 + 120)) taskset -c "$server_cpu" \
	openssl speed -seconds "$duration" -mr rsa2048 ecdsap256 ed25519 >"$scratch/speed.txt" 2>&1 ||
	die "openssl speed failed: $(tail -n3 "$scratch/speed.txt")"
# +DTP:bits:op:alg announces a test; the next +R line is count:bits[:alg]:user-seconds.
awk -F: '
	/^\+DTP:/ { bits = $2; op = $3; alg = $4; next }
	/^\+R[0-9]+:/ {
		name = ""
		if (alg == "rsa" && op == "private" && bits == 2048) name = "rsa2048"
		if (alg == "ecdsa" && op == "sign" && bits == 256) name = "ecdsap256"
		if (alg == "Ed25519" && op == "sign") name = "ed25519"
		if (name != "") printf "%s %s %s\n", name, $2, $NF
	}' "$scratch/speed.txt" >"$scratch/speed.parsed"
[ "$(wc -l <"$scratch/speed.parsed")" -eq 3 ] || die "cannot parse openssl speed output: $(cat "$scratch/speed.txt")"

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
cpu_ticks() { # utime + stime (fields 14, 15); strip "pid (comm) " first, comm may hold spaces
	sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}
core_busy() { # busy ticks of CPU N (everything but idle and iowait), for the interference check
	awk -v c="cpu$1" '$1 == c { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat
}

# ---- the numerator: keywayd under keyway-bench, one key type at a time ----
run_key() { # run_key NAME KEYFILE OP
	local name=$1 file=$2 op=$3 port keys t0 t1 out
	keys=$scratch/keys-$name
	mkdir -p "$keys"
	install -m 600 "$pki/keys/$file.key" "$keys/"
	port=$(free_port)
	# keywayd gets the duration of the runs plus slack; the trap stops it sooner.
	timeout -k 5 $((duration * 2 + 120)) taskset -c "$server_cpu" "$keywayd" --keys "$keys" \
		--listen "127.0.0.1:$port" --tls-cert "$pki/server.crt" --tls-key "$pki/server.key" \
		--client-ca "$pki/ca.crt" --workers 1 --log-level warn \
		--pid-file "$scratch/keywayd-$name.pid" 2>"$scratch/keywayd-$name.log" &
	tpid=$!
	for _ in $(seq 100); do
		[ -s "$scratch/keywayd-$name.pid" ] && break
		kill -0 "$tpid" 2>/dev/null || break
		sleep 0.1
	done
	[ -s "$scratch/keywayd-$name.pid" ] || die "keywayd did not start: $(cat "$scratch/keywayd-$name.log")"
	kpid=$(cat "$scratch/keywayd-$name.pid")

	local args=(--server "127.0.0.1:$port" --tls-cert "$pki/client.crt" --tls-key "$pki/client.key"
		--ca "$pki/ca.crt" --op "$op" --key "$pki/certs/$file.crt" --connections 1 --depth 64 --json)
	# One second of warm-up (handshake, first allocations), not measured.
	timeout 60 taskset -c "$bench_cpu" "$bench" "${args[@]}" --duration 1 >/dev/null 2>&1 ||
		die "keyway-bench warm-up failed for $name: $(tail -n3 "$scratch/keywayd-$name.log")"
	t0=$(cpu_ticks "$kpid") b0=$(core_busy "$server_cpu")
	out=$(timeout $((duration + 60)) taskset -c "$bench_cpu" "$bench" "${args[@]}" \
		--duration "$duration" 2>"$scratch/bench-$name.err") ||
		die "keyway-bench failed for $name: $(tail -n3 "$scratch/bench-$name.err")"
	t1=$(cpu_ticks "$kpid") b1=$(core_busy "$server_cpu")
	stop_keywayd
	# Ticks keywayd used, and ticks its core spent on anything else (other load skews the result).
	printf '%s %s %s %s\n' "$name" "$((t1 - t0))" "$((b1 - b0 - (t1 - t0)))" "$out" >>"$scratch/keywayd.raw"
}

: >"$scratch/keywayd.raw"
echo "== keywayd --workers 1 on CPU $server_cpu, keyway-bench on CPU $bench_cpu:" \
	"mTLS, 1 connection, depth 64, ${duration}s per key"
run_key rsa2048 rsa2048 rsa-pkcs1-sha256
run_key ecdsap256 ecdsa-p256 ecdsa-sha256
run_key ed25519 ed25519 ed25519

# ---- the table, the data file, RESULT lines ----
mkdir -p "$results"
stamp=$(date -u +%Y-%m-%dT%H%M%SZ)
dat=$results/keyserver-$stamp.dat
machine="$(lscpu | sed -n 's/^Model name: *//p' | head -n1), $ncpu CPUs, kernel $(uname -r)"
status=0
python3 - "$scratch/speed.parsed" "$scratch/keywayd.raw" "$tck" "$duration" "$dat" "$machine" \
	"$(openssl version)" "$stamp" <<'PY' || status=$?
import json, sys
speed_f, raw_f, tck, duration, dat, machine, ossl, stamp = sys.argv[1:9]
tck, duration = int(tck), int(duration)
speed = {}
for line in open(speed_f):
    name, count, secs = line.split()
    speed[name] = (int(count), float(secs))
rows = []
labels = {"rsa2048": "RSA-2048", "ecdsap256": "ECDSA P-256", "ed25519": "Ed25519"}
targets = {"rsa2048": 1.05, "ecdsap256": 1.30, "ed25519": 1.30}
for line in open(raw_f):
    name, ticks, other, js = line.split(" ", 3)
    b = json.loads(js)
    other_pct = max(0, int(other)) / tck / b["seconds"] * 100 if b["seconds"] else 0
    count, secs = speed[name]
    ossl_us = secs * 1e6 / count
    kw_us = int(ticks) / tck * 1e6 / b["ops"] if b["ops"] else float("inf")
    util = int(ticks) / tck / b["seconds"] * 100 if b["seconds"] else 0
    # speed runs each test for `duration` wall seconds; less CPU than that means other load.
    ossl_pct = secs / duration * 100
    rows.append((name, ossl_us, kw_us, kw_us / ossl_us, targets[name], b, util, other_pct, ossl_pct))

print()
hdr = "%-12s %11s %11s %6s %6s %8s %8s %8s %6s | %8s %8s %6s" % (
    "key", "openssl µs", "keywayd µs", "ratio", "target", "ops/s", "p50 µs", "p99 µs", "errors",
    "openssl%", "keywayd%", "other%")
print(hdr)
print("-" * len(hdr))
for name, o, k, r, t, b, u, x, op in rows:
    print("%-12s %11.2f %11.2f %6.3f %6.2f %8.0f %8.0f %8.0f %6d | %7.0f%% %7.0f%% %5.0f%%" % (
        labels[name], o, k, r, t, b["ops_per_sec"], b["p50_us"], b["p99_us"], b["errors"], op, u,
        x))
print()
print("openssl µs: user CPU per sign in `openssl speed` (its +R lines); keywayd µs: keywayd's")
print("utime+stime per answered op. openssl%, keywayd%: each one's CPU over its wall time;")
print("other%: CPU its core gave to other processes during the keywayd run. Well under 100%")
print("openssl% or more than a few % other% means other load on the core skewed the numbers.")
print()

with open(dat, "w") as f:
    f.write("# keyserver.sh --duration %d, %s, %s, %s\n" % (duration, stamp, machine, ossl))
    f.write("# key openssl_us keywayd_us ratio target ops_per_sec p50_us p99_us errors "
            "keywayd_cpu_pct other_pct openssl_cpu_pct\n")
    for name, o, k, r, t, b, u, x, op in rows:
        f.write("%s %.3f %.3f %.4f %.2f %.1f %.1f %.1f %d %.1f %.1f %.1f\n" % (
            labels[name].replace(" ", "-"), o, k, r, t, b["ops_per_sec"], b["p50_us"],
            b["p99_us"], b["errors"], u, x, op))

failed = False
for name, o, k, r, t, b, u, x, op in rows:
    ok = r <= t and b["errors"] == 0
    failed |= not ok
    print("RESULT keywayd_cpu_ratio_%s %.3f %.2f %s" % (name, r, t, "PASS" if ok else "FAIL"))
sys.exit(1 if failed else 0)
PY
[ "$status" -le 1 ] || die "cannot compute the results"

if command -v gnuplot >/dev/null; then
	timeout 60 gnuplot <<EOF 2>"$scratch/gnuplot.err" || echo "warning: gnuplot failed: $(cat "$scratch/gnuplot.err")" >&2
set terminal pngcairo size 800,480 font ",11"
set output "$results/keyserver.png"
set title "keywayd CPU per sign / openssl speed CPU per sign (1 worker, mTLS, depth 64)\n{/*0.8 $machine, $stamp}"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set yrange [0:*]
set ylabel "ratio (lower is better)"
set grid ytics
set key top left
plot "$dat" using 4:xtic(1) title "measured" lc rgb "#3b75af", \
     "" using 5 title "target" lc rgb "#cccccc", \
     1 title "OpenSSL itself" dt 2 lc rgb "black"
EOF
	[ -s "$results/keyserver.png" ] && echo "wrote $dat and $results/keyserver.png" >&2
else
	echo "wrote $dat (install gnuplot for the chart: apt-get install gnuplot-nox)" >&2
fi
exit "$status"
