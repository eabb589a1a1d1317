#!/usr/bin/env bash
# quic-proxy.sh - keyway-proxy's HTTP/3 bulk download: server CPU per MB with 1-RTT
# packet protection on Keyway's QUIC engine against ngtcp2's GnuTLS callbacks, system
# calls per datagram sent, where the CPU goes (perf), and server CPU per short request.
#
#   bench/quic-proxy.sh [--megabytes M] [--rounds R] [--strace-megabytes S]
#                       [--perf-megabytes P] [--rate N] [--clients C] [--seconds T]
#                       [--upload-megabytes U] [--parts bulk,syscalls,perf,requests,upload]
#                       [--engine auto|evp|ipsec-mb] [--sched inline|sjbsq|hash|jsq]
#                       [--build DIR] [--results DIR]
#
# --parts picks the measurements (default all five); targets are judged only for the
# parts run. A short run: --parts bulk,perf,upload --megabytes 300 --perf-megabytes 200
# --upload-megabytes 100.
#
# Each run: keyway-proxy --respond --quic-listen --workers 1 pinned to CPU 1, a fresh
# process per run; keyway-h3 (ngtcp2 with the stock GnuTLS callbacks) pinned to CPU 0
# downloads M MB (default 1000) from /bytes/N as 8 parallel streams on one connection
# (1200-byte packets, AES-128-GCM). The proxy's utime+stime from /proc over the run,
# divided by M, is its CPU per MB; --quic-crypto gnutls and engine take turns, R rounds
# (default 3), and each side's median is compared. The engine's own time comes from
# keyway_proxy_quic_engine_cpu_seconds_total. The engine runs inline on the worker (no
# crypto cores: one core is left for the client); --sched S other than inline runs the
# engine mode with --quic-sched S --quic-crypto-threads 1 instead, its crypto thread
# pinned with the worker (the process's CPU counts it).
# System calls: one more run per side under `strace -c -f` (S MB, default 200), the
# count over keyway_proxy_quic_datagrams_total{direction="sent"}; strace slows every
# call, so CPU is never measured in these runs.
#
# Where the CPU goes (perf): one more bulk run per side (P MB, default 300) under
# `perf record -e cpu-clock:u -c 100000` (a user-space sample every 100 us of CPU: this
# kernel's perf_event_paranoid may forbid kernel samples). Samples in packet protection
# (GnuTLS, nettle, libngtcp2_crypto, the engine's code, intel-ipsec-mb, libcrypto) at 100
# us each, over the proxy's whole utime+stime in that run, give protection's share of
# the server's CPU; the share of the user-space samples is printed too.
# Requests: C keyway-h3 processes (default 100), one connection each, on the load CPU,
# together N requests per second (default 1000: each paces --interval-ms C*1000/N) of
# GET / for T seconds (default 10). The proxy's CPU from when all C connections are up
# until the clients are done, over the requests answered meanwhile
# (keyway_proxy_quic_requests_total), is its CPU per request; R rounds, medians.
# Upload (the receive side): keyway-h3 --data posts U MB (default 200) on the load CPU;
# the proxy's CPU over the run per MB, R rounds, medians; in engine mode also the share
# of received 1-RTT packets opened with their receive batch
# (keyway_proxy_quic_rx_opens_total{path="batch"}) and the engine's time per packet.
# Targets (the project's issue on HTTP/3): engine CPU per MB <= 0.94 x gnutls's;
# system calls per datagram sent <= 0.25; packet protection <= 3 % of the server's CPU
# with the engine. Exit status 1 if a target is missed or a
# check fails (every download whole), 2 on a setup error, else 0.
# Prints one table, writes RESULTS/quic-proxy-DATE.dat and RESULTS/quic-proxy.png.
set -euo pipefail

# shellcheck source=proxy-lib.sh
. "$(dirname "$0")/proxy-lib.sh"
programs[h3]="keyway-h3 h3client"
h3=''
mb=1000 rounds=3 smb=200 engine=auto sched=inline pmb=300 rate=1000 clients=100 seconds=10 umb=200
parts=bulk,syscalls,perf,requests,upload
parse_args "quic-proxy.sh [--megabytes M] [--rounds R] [--strace-megabytes S] [--perf-megabytes P] [--rate N] [--clients C] [--seconds T] [--upload-megabytes U] [--parts LIST] [--engine auto|evp|ipsec-mb] [--sched inline|sjbsq|hash|jsq] [--build DIR] [--results DIR]" \
	--megabytes=mb --rounds=rounds --strace-megabytes=smb --engine=engine --sched=sched \
	--perf-megabytes=pmb --rate=rate --clients=clients --seconds=seconds \
	--upload-megabytes=umb --parts=parts -- "$@"
want mb '^[1-9][0-9]{1,4}$' "--megabytes: expected 10-99999" \
	smb '^[1-9][0-9]{1,4}$' "--strace-megabytes: expected 10-99999" \
	pmb '^[1-9][0-9]{1,4}$' "--perf-megabytes: expected 10-99999" \
	umb '^[1-9][0-9]{1,3}$' "--upload-megabytes: expected 10-9999" \
	rate '^[1-9][0-9]{1,4}$' "--rate: expected 1-99999" \
	clients '^[1-9][0-9]{0,3}$' "--clients: expected 1-9999" \
	seconds '^[1-9][0-9]{0,3}$' "--seconds: expected 1-9999" \
	parts '^(bulk|syscalls|perf|requests|upload)(,(bulk|syscalls|perf|requests|upload))*$' "--parts: expected a comma list of bulk, syscalls, perf, requests, upload" \
	rounds '^[1-9][0-9]?$' "--rounds: expected 1-99" \
	engine '^(auto|evp|ipsec-mb)$' "--engine: expected auto, evp or ipsec-mb" \
	sched '^(inline|sjbsq|hash|jsq)$' "--sched: expected inline, sjbsq, hash or jsq"
bench_init "proxy h3" "openssl taskset python3 timeout curl strace perf"

echo "== machine: $machine; load average $(loadavg)"
echo "== $(openssl version); $(strace -V | head -n1)"
echo "== keyway-proxy: $proxy; keyway-h3: $h3"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
	-subj /CN=localhost -addext subjectAltName=DNS:localhost \
	-keyout "$scratch/key.pem" -out "$scratch/cert.pem" 2>/dev/null
chmod 600 "$scratch/key.pem"
fail=0

# run_proxy NAME MODE [WRAPPER...]: starts the proxy (pinned, one worker); sets qport, mport.
run_proxy() {
	local name=$1 mode=$2
	shift 2
	local port sched_args=()
	[ "$mode" = engine ] && [ "$sched" != inline ] &&
		sched_args=(--quic-sched "$sched" --quic-crypto-threads 1)
	port=$(free_port)
	mport=$(free_port)
	start "$name" "$server_cpu" "$@" "$proxy" --listen "127.0.0.1:$port" \
		--quic-listen "127.0.0.1:$port" --cert "$scratch/cert.pem" --key "$scratch/key.pem" \
		--respond --workers 1 --access-log off --log-level warn --metrics "127.0.0.1:$mport" \
		--quic-crypto "$mode" --quic-engine "$engine" "${sched_args[@]}"
	qport=$port
	wait_port "$mport" || die "$name did not start: $(cat "$scratch/$name.log")"
}

# download MB: keyway-h3 on the load CPU, 8 streams; fails the run unless all arrived.
download() {
	local per=$(($1 * 1000000 / 8)) out
	out=$(taskset -c "$load_cpu" timeout 600 "$h3" --connect "127.0.0.1:$qport" \
		--ca "$scratch/cert.pem" --stats -n 8 -o /dev/null "https://localhost:$qport/bytes/$per" 2>&1) ||
		{ echo "FAIL: keyway-h3: $out" >&2; fail=1; return 0; }
	grep -q "responses=8 .*body_bytes=$((per * 8)) " <<<"$out" ||
		{ echo "FAIL: keyway-h3 did not get every byte: $out" >&2; fail=1; }
}

part() { [[ ",$parts," == *",$1,"* ]]; }
med() { python3 -c "import statistics,sys; print('%.3f' % statistics.median(map(float, sys.argv[1:])))" "$@"; }
pass() { python3 -c "import sys; print('PASS' if float(sys.argv[1]) <= float(sys.argv[2]) else 'FAIL')" "$1" "$2"; }
verdicts=()

open_dat quic-proxy
echo "# parts: $parts" >>"$dat"
declare -A per_mb
if part bulk; then
	echo "# round mode proxy_ms_per_mb engine_ms_per_mb datagrams_sent sendmsg_calls" >>"$dat"
	for r in $(seq "$rounds"); do
		for mode in gnutls engine; do
			run_proxy "$mode-$r" "$mode"
			t0=$(cpu_ticks "${child[$mode-$r]}")
			download "$mb"
			t1=$(cpu_ticks "${child[$mode-$r]}")
			eng=$(curl -s "http://127.0.0.1:$mport/metrics" |
				awk '$1 == "keyway_proxy_quic_engine_cpu_seconds_total" { print $2 }')
			sent=$(metric "$mport" 'keyway_proxy_quic_datagrams_total{direction="sent"}')
			sends=$(metric "$mport" keyway_proxy_quic_sends_total)
			ms=$(python3 -c "print('%.3f' % (($t1 - $t0) * 1000.0 / $tck / $mb))")
			ems=$(python3 -c "print('%.3f' % (${eng:-0} * 1000.0 / $mb))")
			per_mb[$mode]="${per_mb[$mode]:-} $ms"
			echo "$r $mode $ms $ems $sent $sends" >>"$dat"
			printf '  round %d %-6s %7s ms/MB (engine %s ms/MB), %s datagrams in %s sendmsg\n' \
				"$r" "$mode" "$ms" "$ems" "$sent" "$sends"
			stop_proc "$mode-$r"
		done
	done
fi

# System calls per datagram sent, under strace (separate runs: strace slows the calls).
declare -A per_dgram
if part syscalls; then
	for mode in gnutls engine; do
		run_proxy "strace-$mode" "$mode" strace -c -f -o "$scratch/$mode.strace"
		download "$smb"
		sent=$(metric "$mport" 'keyway_proxy_quic_datagrams_total{direction="sent"}')
		# Stop the traced proxy itself: strace, told to stop, would detach and leave it running.
		kill -TERM "$(pgrep -P "${child[strace-$mode]}")" 2>/dev/null || true
		stop_proc "strace-$mode"
		calls=$(awk '$NF == "total" { print $(NF-2) }' "$scratch/$mode.strace")
		per_dgram[$mode]=$(python3 -c "print('%.3f' % ($calls / max($sent, 1)))")
		cp "$scratch/$mode.strace" "${dat%.dat}-$mode.strace"
		echo "# strace $mode: $calls system calls, $sent datagrams sent" >>"$dat"
	done
fi

# protection_samples FILE: "protection_samples all_samples" of a perf.data file. Packet
# protection: the TLS/crypto libraries, ngtcp2's GnuTLS crypto glue, intel-ipsec-mb, and
# the engine's and the proxy's protection code (symbols of src/quic/engine*.c, key.c
# and src/proxy/quic_tx.c).
protection_samples() {
	perf report -i "$1" --stdio --no-children -n --sort dso,sym 2>/dev/null | python3 -c '
import re, sys
libs = re.compile(r"lib(nettle|hogweed|gnutls|IPSec_MB|crypto|ngtcp2_crypto_gnutls)\b")
syms = re.compile(r"^(kw_quic_|seal_chunk|open_chunk|gather|prepare_(seal|open)|unmask|hp_xor|"
                  r"set_nonce|key_state|count_seals|imb_|evp_|gcm_direct|fill_(mask|cipher)|"
                  r"burst|slot_|tx_encrypt|tx_hp_mask|rx_hp_mask|rx_decrypt|open_copy|pn_of|"
                  r"kpx_qtx_seal|in_window|op_clear|drop_all|kpx_rxb_|kpx_qtx_rx_|use_entry|"
                  r"rx_prebatch)")
prot = total = 0
for line in sys.stdin:
    m = re.match(r"\s*[\d.]+%\s+(\d+)\s+(\S+)\s+\[.\]\s+(\S+)", line)
    if not m:
        continue
    n, dso, sym = int(m.group(1)), m.group(2), m.group(3)
    total += n
    if libs.search(dso) or syms.match(sym):
        prot += n
print(prot, total)'
}

declare -A prot_share prot_user
if part perf; then
	for mode in gnutls engine; do
		run_proxy "perf-$mode" "$mode" perf record -q -e cpu-clock:u -c 100000 \
			-o "$scratch/$mode.perf" --
		pid=$(pgrep -P "${child[perf-$mode]}")
		t0=$(cpu_ticks "$pid")
		download "$pmb"
		t1=$(cpu_ticks "$pid")
		kill -TERM "$pid" 2>/dev/null || true
		stop_proc "perf-$mode"
		read -r prot all < <(protection_samples "$scratch/$mode.perf")
		# Each sample stands for 100 us of user-space CPU.
		prot_share[$mode]=$(python3 -c "print('%.2f' % ($prot * 1e-4 * 100 / max(($t1 - $t0) / $tck, 1e-9)))")
		prot_user[$mode]=$(python3 -c "print('%.2f' % ($prot * 100.0 / max($all, 1)))")
		echo "# perf $mode: $prot of $all user samples (100 us each) in packet protection; proxy CPU $(((t1 - t0) * 1000 / tck)) ms" >>"$dat"
		perf report -i "$scratch/$mode.perf" --stdio --no-children --sort dso,sym \
			>"$scratch/$mode.perf.txt" 2>/dev/null || true
		head -n 60 "$scratch/$mode.perf.txt" >"${dat%.dat}-$mode.perf.txt"
		printf '  perf %-6s packet protection %s %% of the server CPU (%s %% of user samples)\n' \
			"$mode" "${prot_share[$mode]}" "${prot_user[$mode]}"
	done
fi

# Requests: $clients connections, $rate requests/s together, $seconds seconds; the modes
# alternate for R rounds (this figure is noisy on a shared machine) and medians compare.
declare -A per_req
if part requests; then
	interval=$((clients * 1000 / rate))
	n=$((seconds * 1000 / interval))
	for r in $(seq "$rounds"); do
		for mode in gnutls engine; do
			run_proxy "req-$mode-$r" "$mode"
			pids=()
			for _ in $(seq "$clients"); do
				taskset -c "$load_cpu" timeout $((seconds + 60)) "$h3" --connect "127.0.0.1:$qport" \
					--ca "$scratch/cert.pem" --timeout $((seconds + 50)) -n "$n" \
					--interval-ms "$interval" -o /dev/null "https://localhost:$qport/" &
				pids+=($!)
			done
			timeout 30 bash -c "until [ \"\$(curl -s http://127.0.0.1:$mport/metrics | awk '\$1 == \"keyway_proxy_quic_connections\" { print \$2 }')\" = $clients ]; do sleep 0.05; done" ||
				{ echo "FAIL: $clients connections did not come up" >&2; fail=1; }
			q0=$(metric "$mport" keyway_proxy_quic_requests_total)
			t0=$(cpu_ticks "${child[req-$mode-$r]}")
			for p in "${pids[@]}"; do wait "$p" || { echo "FAIL: a keyway-h3 client failed" >&2; fail=1; }; done
			t1=$(cpu_ticks "${child[req-$mode-$r]}")
			q1=$(metric "$mport" keyway_proxy_quic_requests_total)
			stop_proc "req-$mode-$r"
			us=$(python3 -c "print('%.1f' % (($t1 - $t0) * 1e6 / $tck / max($q1 - $q0, 1)))")
			per_req[$mode]="${per_req[$mode]:-} $us"
			echo "# requests round $r $mode: $((q1 - q0)) requests, proxy CPU $(((t1 - t0) * 1000 / tck)) ms, $us us per request" >>"$dat"
			printf '  requests round %d %-6s %s requests in %s ms of server CPU: %s us per request\n' \
				"$r" "$mode" "$((q1 - q0))" "$(((t1 - t0) * 1000 / tck))" "$us"
		done
	done
	# shellcheck disable=SC2086
	rq_g=$(med ${per_req[gnutls]})
	# shellcheck disable=SC2086
	rq_e=$(med ${per_req[engine]})
fi

# Upload: the receive side, where the receive batch opens the client's 1-RTT packets.
declare -A per_up
if part upload; then
	head -c "$((umb * 1000000))" /dev/urandom >"$scratch/upload"
	echo "# upload round mode proxy_ms_per_mb engine_ns_per_packet_opened opened_batch opened_alone" >>"$dat"
	for r in $(seq "$rounds"); do
		for mode in gnutls engine; do
			run_proxy "up-$mode-$r" "$mode"
			t0=$(cpu_ticks "${child[up-$mode-$r]}")
			out=$(taskset -c "$load_cpu" timeout 600 "$h3" --connect "127.0.0.1:$qport" \
				--ca "$scratch/cert.pem" --stats --data "$scratch/upload" -o /dev/null \
				"https://localhost:$qport/" 2>&1) ||
				{ echo "FAIL: keyway-h3 upload: $out" >&2; fail=1; }
			t1=$(cpu_ticks "${child[up-$mode-$r]}")
			eng=$(curl -s "http://127.0.0.1:$mport/metrics" |
				awk '$1 == "keyway_proxy_quic_engine_cpu_seconds_total" { print $2 }')
			ob=$(metric "$mport" 'keyway_proxy_quic_rx_opens_total{path="batch"}')
			oa=$(metric "$mport" 'keyway_proxy_quic_rx_opens_total{path="packet"}')
			stop_proc "up-$mode-$r"
			ms=$(python3 -c "print('%.3f' % (($t1 - $t0) * 1000.0 / $tck / $umb))")
			ns=$(python3 -c "print('%.0f' % (${eng:-0} * 1e9 / max($ob + $oa, 1)))")
			per_up[$mode]="${per_up[$mode]:-} $ms"
			echo "$r $mode $ms $ns $ob $oa" >>"$dat"
			printf '  upload round %d %-6s %7s ms/MB' "$r" "$mode" "$ms"
			[ "$mode" = engine ] && printf ' (%s opened with their batch, %s alone; engine %s ns per packet)' "$ob" "$oa" "$ns"
			echo
		done
	done
	# shellcheck disable=SC2086
	ug=$(med ${per_up[gnutls]})
	# shellcheck disable=SC2086
	ue=$(med ${per_up[engine]})
fi

echo
printf '%-40s %12s %12s\n' "" "gnutls" "engine"
if part bulk; then
	# shellcheck disable=SC2086
	g=$(med ${per_mb[gnutls]})
	# shellcheck disable=SC2086
	e=$(med ${per_mb[engine]})
	ratio=$(python3 -c "print('%.3f' % ($e / $g))")
	printf '%-40s %12s %12s\n' "server CPU, ms per MB (median)" "$g" "$e"
fi
part syscalls && printf '%-40s %12s %12s\n' "system calls per datagram" "${per_dgram[gnutls]}" "${per_dgram[engine]}"
part perf && printf '%-40s %12s %12s\n' "packet protection, % of server CPU" "${prot_share[gnutls]}" "${prot_share[engine]}"
part requests && printf '%-40s %12s %12s\n' "server CPU per request, us (median)" "$rq_g" "$rq_e"
part upload && printf '%-40s %12s %12s\n' "upload: server CPU, ms per MB (median)" "$ug" "$ue"
if part bulk; then
	echo "engine/gnutls CPU per MB: $ratio (engine: $engine, sched: $sched, runs:${per_mb[engine]} vs${per_mb[gnutls]})"
	v=$(pass "$ratio" 0.94)
	verdicts+=("$v")
	echo "RESULT quic_bulk_cpu_ratio $ratio 0.94 $v"
	echo "RESULT quic_bulk_gnutls_ms_per_mb $g - INFO"
	echo "RESULT quic_bulk_engine_ms_per_mb $e - INFO"
fi
if part syscalls; then
	v=$(pass "${per_dgram[engine]}" 0.25)
	verdicts+=("$v")
	echo "RESULT quic_syscalls_per_datagram ${per_dgram[engine]} 0.25 $v"
fi
if part perf; then
	v=$(pass "${prot_share[engine]}" 3)
	verdicts+=("$v")
	echo "RESULT quic_protection_cpu_share_engine_pct ${prot_share[engine]} 3 $v"
	echo "RESULT quic_protection_cpu_share_gnutls_pct ${prot_share[gnutls]} - INFO"
fi
if part requests; then
	echo "requests: $rate/s over $clients connections for ${seconds} s; runs (us per request): engine${per_req[engine]} vs gnutls${per_req[gnutls]}"
	echo "RESULT quic_request_cpu_us_gnutls $rq_g - INFO"
	echo "RESULT quic_request_cpu_us_engine $rq_e - INFO"
	echo "RESULT quic_request_cpu_ratio $(python3 -c "print('%.3f' % ($rq_e / max($rq_g, 1e-9)))") - INFO"
fi
if part upload; then
	echo "upload: ${umb} MB; runs (ms per MB): engine${per_up[engine]} vs gnutls${per_up[gnutls]}"
	echo "RESULT quic_upload_gnutls_ms_per_mb $ug - INFO"
	echo "RESULT quic_upload_engine_ms_per_mb $ue - INFO"
	echo "RESULT quic_upload_cpu_ratio $(python3 -c "print('%.3f' % ($ue / max($ug, 1e-9)))") - INFO"
fi

if part bulk; then
	{
		echo "0 gnutls $g"
		echo "1 engine $e"
	} >"$results/quic-proxy.plotdata"
	{
		printf 'set title "keyway-proxy HTTP/3 bulk download: server CPU per MB (median of %s)" noenhanced\n' "$rounds"
		printf '%s\n' 'set ylabel "ms per MB"' "set style fill solid 0.6 border -1" "set boxwidth 0.5" \
			"set yrange [0:*]" "set offsets 0, 0, graph 0.12, 0" "set xrange [-0.6:1.6]" "set grid ytics" "unset key"
		printf 'plot "%s" using 1:3:xtic(2) with boxes lc rgb "#4477aa", \\\n' "$results/quic-proxy.plotdata"
		printf '     "" using 1:($3*1.04):(sprintf("%%.2f",$3)) with labels\n'
	} | chart quic-proxy 700,460
fi
[ "$fail" = 0 ] || exit 1
for v in "${verdicts[@]}"; do [ "$v" = PASS ] || exit 1; done
exit 0
