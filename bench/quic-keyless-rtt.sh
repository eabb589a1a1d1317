#!/usr/bin/env bash
# quic-keyless-rtt.sh - keyway-proxy's HTTP/3 handshakes/s when every sign crosses a
# keyway-relay link to keywayd: the handshake threads against signing on the loop.
#
#   bench/quic-keyless-rtt.sh [--handshakes N] [--clients C] [--rounds R] [--delay-ms D]
#                             [--threads T] [--build DIR] [--results DIR]
#
# keywayd (--workers 1) sits behind keyway-relay delaying every chunk by D ms each way
# (default 2.5, so 5 ms round trip, as bench/proxy-keyless-rtt.sh). For each key
# (ECDSA P-256, then RSA-2048, loaded by reference) two keyway-proxy processes,
# --respond --quic-listen --workers 1 pinned to CPU 1, sign on keywayd:
#   threads  --quic-handshake-threads T (default 4): the signing steps on the threads
#   loop     --quic-handshake-threads 0: GnuTLS signs on the worker's loop, blocking it
# Load: C (default 32) keyway-h3 processes on CPU 0 with keywayd and the relay, each
# making N/C (N default 400) connections one after another (--repeat; one handshake and
# one GET / each). Handshakes/s is the handshakes completed over the wall time of the
# slice; the two modes take turns, R rounds (default 3), medians compared.
# Prints a table and RESULT lines (INFO), writes RESULTS/quic-keyless-rtt-DATE.dat.
# Exit status 1 if a handshake failed, 2 on a setup error, else 0.
set -euo pipefail

# shellcheck source=proxy-lib.sh
. "$(dirname "$0")/proxy-lib.sh"
programs[h3]="keyway-h3 h3client"
h3=''
n=400 clients=32 rounds=3 delay=2.5 threads=4
parse_args "quic-keyless-rtt.sh [--handshakes N] [--clients C] [--rounds R] [--delay-ms D] [--threads T] [--build DIR] [--results DIR]" \
	--handshakes=n --clients=clients --rounds=rounds --delay-ms=delay --threads=threads -- "$@"
want n '^[1-9][0-9]{1,5}$' "--handshakes: expected 10-999999" \
	clients '^[1-9][0-9]{0,2}$' "--clients: expected 1-999" \
	rounds '^[1-9][0-9]?$' "--rounds: expected 1-99" \
	delay '^[0-9]+(\.[0-9]+)?$' "--delay-ms: expected a number of milliseconds" \
	threads '^[1-9][0-9]?$' "--threads: expected 1-99"
bench_init "proxy keywayd relay cli h3" "openssl taskset python3 timeout curl"

echo "== machine: $machine; load average $(loadavg)"
echo "== keyway-proxy: $proxy; keyway-h3: $h3; relay $delay ms each way"
make_pki
start_keywayd "$load_cpu"
start_relay relay "$load_cpu" "$delay" "$kport"
fail=0

# slice NAME: N handshakes against proxy NAME (C keyway-h3 processes, each making its
# share of new connections one after another with --repeat); prints handshakes/s.
slice() {
	local q=${qp[$1]} t0 t1 ok i pids=()
	t0=$(date +%s.%N)
	for i in $(seq "$clients"); do
		taskset -c "$load_cpu" timeout 300 "$h3" --connect "127.0.0.1:$q" --ca "$pki/ca.crt" \
			--repeat $((n / clients)) -o /dev/null "https://localhost:$q/" &
		pids+=($!)
	done
	for i in "${pids[@]}"; do
		wait "$i" || { echo "FAIL: a keyway-h3 run failed against $1" >&2; fail=1; }
	done
	t1=$(date +%s.%N)
	ok=$(metric "${mport[$1]}" keyway_proxy_quic_handshakes_total)
	python3 -c "print('%.1f' % ($ok / ($t1 - $t0)))"
}

open_dat quic-keyless-rtt
echo "# round key mode handshakes_per_s (relay $delay ms each way, $n handshakes, $clients clients, threads mode: $threads threads)" >>"$dat"
declare -A qp rate
for key in ecdsa-p256 rsa2048; do
	for r in $(seq "$rounds"); do
		for mode in threads loop; do
			t=$threads
			[ "$mode" = loop ] && t=0
			name=$key-$mode-$r
			qp[$name]=$(free_port)
			start_proxy "$name" "$key" "${rport[relay]}" --quic-listen "127.0.0.1:${qp[$name]}" \
				--quic-handshake-threads "$t" --timeout-ms 20000
			wait_proxies "$name"
			hs=$(slice "$name")
			rate[$key-$mode]="${rate[$key-$mode]:-} $hs"
			echo "$r $key $mode $hs" >>"$dat"
			printf '  round %d %-10s %-7s %8s handshakes/s\n' "$r" "$key" "$mode" "$hs"
			stop_proc "$name"
		done
	done
done

med() { python3 -c "import statistics,sys; print('%.1f' % statistics.median(map(float, sys.argv[1:])))" "$@"; }
echo
printf '%-12s %14s %14s %8s\n' "key" "threads (T=$threads)" "loop" "ratio"
for key in ecdsa-p256 rsa2048; do
	# shellcheck disable=SC2086
	a=$(med ${rate[$key-threads]})
	# shellcheck disable=SC2086
	b=$(med ${rate[$key-loop]})
	ratio=$(python3 -c "print('%.2f' % ($a / $b))")
	printf '%-12s %14s %14s %8s\n' "$key" "$a" "$b" "$ratio"
	echo "RESULT quic_keyless_${key//-/_}_threads_hs_per_s $a - INFO"
	echo "RESULT quic_keyless_${key//-/_}_loop_hs_per_s $b - INFO"
	echo "RESULT quic_keyless_${key//-/_}_ratio $ratio - INFO"
done
echo "data: $dat"
exit "$fail"
