# shellcheck shell=bash disable=SC2034
# proxy-lib.sh - shared pieces of the benchmarks (sourced, not run).
#
# A script sources this file, reads its flags with parse_args and want, then calls
# bench_init with the programs and tools it needs. Provided: the binaries (proxy
# keywayd relay cli bench), a scratch directory with a demo PKI, processes started
# under `timeout` and stopped by the EXIT trap, /proc CPU accounting, /metrics
# reads, h2load runs parsed into fields, the .dat file and the gnuplot chart.

here=${here:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}
root=$(cd "$here/.." && pwd)
PATH=$PATH:/usr/sbin:/usr/local/sbin
# Every long-running process is started under this bound (seconds).
max_life=${max_life:-900}
build=
results=$here/results
# What bench_init, make_pki, start_keywayd, cpu_slice and open_dat set.
proxy='' keywayd='' relay='' cli='' bench='' ncpu='' server_cpu='' load_cpu='' tck='' machine=''
scratch='' pki='' kport='' kmport='' slice_ticks='' slice_hs='' slice_fields='' slice_other=''
slice_core='' stamp='' dat=''

die() { echo "$(basename "$0"): $*" >&2; exit 2; }

# parse_args USAGE --flag=VAR... -- ARGS...: sets VAR to the value after --flag in ARGS
# (--build and --results are always known); -h prints the script's header comment, and
# anything else prints "usage: USAGE" and exits 2.
parse_args() {
	local usage=$1 spec
	declare -A var=([--build]=build [--results]=results)
	shift
	while [ "$1" != -- ]; do
		var[${1%%=*}]=${1#*=}
		shift
	done
	shift
	while [ $# -gt 0 ]; do
		case $1 in
		-h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
		esac
		spec=${var[$1]:-}
		[ -n "$spec" ] && [ $# -ge 2 ] || { echo "usage: $usage" >&2; exit 2; }
		printf -v "$spec" '%s' "$2"
		shift 2
	done
}
want() { # [VAR REGEX MESSAGE]...: exit 2 with MESSAGE unless $VAR matches REGEX
	while [ $# -ge 3 ]; do
		[[ ${!1} =~ $2 ]] || { echo "$3" >&2; exit 2; }
		shift 3
	done
}

# parse_slices SCRIPT ARGS...: the flags of a benchmark whose only own ones are
# --connections N (100-999999, into conns) and --rounds R (1-99, into rounds).
parse_slices() {
	local script=$1
	shift
	parse_args "$script [--connections N] [--rounds R] [--build DIR] [--results DIR]" \
		--connections=conns --rounds=rounds -- "$@"
	want conns '^[1-9][0-9]{2,5}$' "--connections: expected 100-999999" \
		rounds '^[1-9][0-9]?$' "--rounds: expected 1-99"
}

find_bin() { # NAME SUBDIR: --build DIR, then build-release/, build/, then PATH
	local d
	if [ -n "${build:-}" ]; then
		for d in "$build/src/$2" "$build"; do
			[ -x "$d/$1" ] && { echo "$d/$1"; return; }
		done
		return 1
	fi
	for d in "$root/build-release" "$root/build"; do
		[ -x "$d/src/$2/$1" ] && { echo "$d/src/$2/$1"; return; }
	done
	command -v "$1"
}

# bench_init "VAR..." "TOOL...": finds each program (VAR among proxy keywayd relay
# cli bench) and tool, picks the cores (server_cpu for the server under test,
# load_cpu for the load generator), makes the scratch directory, sets the EXIT trap.
declare -A programs=([proxy]="keyway-proxy proxy" [keywayd]="keywayd keywayd"
	[relay]="keyway-relay relay" [cli]="keyway cli" [bench]="keyway-bench bench")
bench_init() {
	local var tool
	for var in $1; do
		# shellcheck disable=SC2086
		printf -v "$var" '%s' "$(find_bin ${programs[$var]})"
		[ -n "${!var}" ] || die "${programs[$var]%% *} not found (build it, or pass --build DIR)"
	done
	for tool in $2; do
		command -v "$tool" >/dev/null || die "$tool is needed (scripts/deps.sh installs it)"
	done
	ncpu=$(nproc)
	if [ "$ncpu" -ge 2 ]; then
		server_cpu=1 load_cpu=0
	else
		server_cpu=0 load_cpu=0
		echo "warning: one CPU only; everything shares it" >&2
	fi
	tck=$(getconf CLK_TCK)
	machine="$(lscpu | sed -n 's/^Model name: *//p' | head -n1), $ncpu CPUs, kernel $(uname -r)"
	scratch=$(mktemp -d /tmp/keyway-bench.XXXXXX)
	trap cleanup EXIT
	trap 'exit 130' INT TERM
}

declare -A wrapper child
procs=()
stop_proc() { # NAME: SIGTERM (timeout passes it on), wait up to 5 s, then SIGKILL
	local w=${wrapper[$1]:-} c=${child[$1]:-}
	[ -n "$w" ] || return 0
	kill -TERM "$w" 2>/dev/null || true
	for _ in $(seq 50); do kill -0 "$w" 2>/dev/null || break; sleep 0.1; done
	if kill -0 "$w" 2>/dev/null; then
		[ -n "$c" ] && kill -KILL "$c" 2>/dev/null
		kill -KILL "$w" 2>/dev/null || true
	fi
	wait "$w" 2>/dev/null || true
	wrapper[$1]=
}
stop_all() {
	local n
	for n in "${procs[@]}"; do [ -n "${wrapper[$n]:-}" ] && kill -TERM "${wrapper[$n]}" 2>/dev/null; done
	for n in "${procs[@]}"; do stop_proc "$n"; done
	return 0
}
cleanup() {
	stop_all
	rm -rf "$scratch"
}

# start NAME CPU CMD...: run CMD pinned to CPU under `timeout`, stderr to
# $scratch/NAME.log; child[NAME] is the program's own pid (for /proc).
start() {
	local name=$1 cpu=$2
	shift 2
	taskset -c "$cpu" timeout -s TERM "$max_life" "$@" 2>"$scratch/$name.log" &
	wrapper[$name]=$!
	procs+=("$name")
	local c=
	for _ in $(seq 50); do
		c=$(pgrep -P "${wrapper[$name]}" | head -n1) && [ -n "$c" ] && break
		sleep 0.02
	done
	child[$name]=$c
}

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_port() { # PORT: until something accepts on 127.0.0.1:PORT (10 s)
	timeout 10 bash -c "until (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null; do sleep 0.05; done"
}

cpu_ticks() { # PID...: utime + stime of the processes, summed; strip "pid (comm) " first
	local p t=0 f
	for p in "$@"; do
		f=$(sed 's/^.*) //' "/proc/$p/stat") || continue
		t=$((t + $(awk '{print $12 + $13}' <<<"$f")))
	done
	echo "$t"
}
core_ticks() { # CPU: "busy total" ticks of that core from /proc/stat (busy: all but idle, iowait)
	awk -v c="cpu$1" '$1 == c { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t }' /proc/stat
}
metric() { # PORT NAME: the value of one un-labelled or fully-labelled series, integer
	curl -s --max-time 5 "http://127.0.0.1:$1/metrics" |
		awk -v n="$2" '$1 == n { printf "%.0f\n", $2; found = 1 } END { if (!found) print 0 }'
}
metric_sum() { # PORT PREFIX: sum of every series whose name starts with PREFIX{
	curl -s --max-time 5 "http://127.0.0.1:$1/metrics" |
		awk -v n="$2{" 'index($1, n) == 1 { s += $2 } END { printf "%.0f\n", s }'
}

# Demo PKI (CA, keywayd and client identities, keys and certificates) and the
# KEYWAY KEY reference PEMs the keyless proxies load instead of a key.
make_pki() {
	timeout 120 "$root/scripts/demo-pki.sh" "$scratch/pki" || die "demo-pki.sh failed"
	pki=$scratch/pki
	local k
	for k in rsa2048 ecdsa-p256; do
		timeout 10 "$cli" ref --cert "$pki/certs/$k.crt" >"$scratch/$k.ref" || die "keyway ref failed"
	done
}

# start_keywayd CPU: one worker, mutual TLS, metrics; sets kport, kmport
start_keywayd() {
	kport=$(free_port) kmport=$(free_port)
	start keywayd "$1" "$keywayd" --keys "$pki/keys" --listen "127.0.0.1:$kport" \
		--tls-cert "$pki/server.crt" --tls-key "$pki/server.key" --client-ca "$pki/ca.crt" \
		--workers 1 --metrics "127.0.0.1:$kmport" --log-level warn
	wait_port "$kport" || { cat "$scratch/keywayd.log" >&2; die "keywayd did not start"; }
}

# start_relay NAME CPU DELAY_MS TO_PORT: sets rport[NAME]
declare -A rport pport mport
start_relay() {
	rport[$1]=$(free_port)
	start "$1" "$2" "$relay" --listen "127.0.0.1:${rport[$1]}" --to "127.0.0.1:$4" --delay-ms "$3" \
		--log-level warn
	wait_port "${rport[$1]}" || { cat "$scratch/$1.log" >&2; die "$1 did not start"; }
}

# start_proxy NAME KEY(rsa2048|ecdsa-p256) KEYSERVER_PORT|local ARGS...: one worker on
# the server CPU, closes after each response, no resumption; sets pport, mport.
start_proxy() {
	local name=$1 key=$2 ks=$3
	shift 3
	pport[$name]=$(free_port) mport[$name]=$(free_port)
	local keyargs
	if [ "$ks" = local ]; then
		keyargs=(--key "$pki/keys/$key.key")
	else
		# keywayd runs one worker, which serves a connection on one thread: a second
		# connection per proxy worker would only split each loop turn's batch of
		# requests in two writes and two reads (3-6 % more proxy CPU per handshake).
		keyargs=(--key "$scratch/$key.ref" --servers "127.0.0.1:$ks" --ca "$pki/ca.crt"
			--client-cert "$pki/client.crt" --client-key "$pki/client.key" --connections 1)
	fi
	start "$name" "$server_cpu" "$proxy" --listen "127.0.0.1:${pport[$name]}" \
		--cert "$pki/certs/$key.crt" "${keyargs[@]}" --respond --workers 1 \
		--keepalive-timeout 0 --resumption off --access-log off --metrics "127.0.0.1:${mport[$name]}" "$@"
}
wait_proxies() { # NAMES...
	local n
	for n in "$@"; do
		wait_port "${pport[$n]}" && wait_port "${mport[$n]}" ||
			{ cat "$scratch/$n.log" >&2; die "$n did not start"; }
	done
}

# h2 PORT N C: h2load, one request per connection (the proxy closes), TLS 1.3
# X25519 AES-128-GCM, pinned to the load CPU.
# A caller may set load_cpus (a taskset list) and load_threads to give h2load
# more cores, one h2load thread each; by default one thread on the load CPU.
h2() {
	taskset -c "${load_cpus:-$load_cpu}" timeout 300 h2load --h1 -n "$2" -c "$3" -m 1 \
		-t "${load_threads:-1}" --groups X25519 --tls13-ciphers TLS_AES_128_GCM_SHA256 \
		"https://127.0.0.1:$1/"
}
# h2_fields OUTPUT: "succeeded failed wall_seconds tls mean_connect_ms"
h2_fields() {
	local ok wall tls conn
	ok=$(sed -n 's/^requests: .* \([0-9]*\) succeeded, \([0-9]*\) failed.*/\1 \2/p' <<<"$1")
	wall=$(sed -n 's/^finished in \([0-9.]*\)\(m\{0,1\}\)s,.*/\1 \2/p' <<<"$1" |
		awk '{print ($2 == "m") ? $1 / 1000 : $1}')
	tls=$(sed -n 's/^TLS Protocol: *//p; s/^Cipher: *//p; s/^Server Temp Key: *\([A-Z0-9]*\).*/\1/p' <<<"$1" |
		tr '\n' '/' | sed 's/ //g; s/\/$//')
	# "time for connect:  min max mean sd +/-sd", units us/ms/s each
	conn=$(awk '/^time for connect:/ { v = $6; u = v; sub(/[a-z]+$/, "", v); sub(/^[0-9.]+/, "", u);
		print (u == "us") ? v / 1000 : (u == "s") ? v * 1000 : v }' <<<"$1")
	echo "${ok:-0 0} ${wall:-0} ${tls:-?} ${conn:-0}"
}

# cpu_slice NAME N: one CPU slice, h2load (N connections, 32 at a time) against proxy
# NAME. Sets slice_ticks (the proxy's utime+stime), slice_hs (its handshake counter's
# growth), slice_fields (h2_fields), slice_other (ticks other processes took on the
# server core) and slice_core (that core's total ticks).
cpu_slice() {
	local n=$1 h0 h1 b0 e0 b1 e1 t0 t1 out
	h0=$(metric "${mport[$n]}" keyway_proxy_handshakes_total)
	read -r b0 e0 < <(core_ticks "$server_cpu")
	t0=$(cpu_ticks "${child[$n]}")
	out=$(h2 "${pport[$n]}" "$2" 32 2>&1) || die "h2load against $n failed: $out"
	t1=$(cpu_ticks "${child[$n]}")
	read -r b1 e1 < <(core_ticks "$server_cpu")
	h1=$(metric "${mport[$n]}" keyway_proxy_handshakes_total)
	slice_ticks=$((t1 - t0)) slice_hs=$((h1 - h0)) slice_core=$((e1 - e0))
	slice_fields=$(h2_fields "$out")
	slice_other=$((b1 - b0 - slice_ticks))
	[ "$slice_other" -lt 0 ] && slice_other=0
	return 0
}

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# warm_up N C NAME...: N connections, C at a time, against each server (pport), unmeasured.
warm_up() {
	local count=$1 c=$2 n
	shift 2
	for n in "$@"; do h2 "${pport[$n]}" "$count" "$c" >/dev/null 2>&1 || die "h2load against $n failed"; done
}

# open_dat NAME: sets stamp and dat (RESULTS/NAME-STAMP.dat), which gets its first comment line.
open_dat() {
	mkdir -p "$results"
	stamp=$(date -u +%Y-%m-%dT%H%M%SZ)
	dat=$results/$1-$stamp.dat
	echo "# $1.sh $stamp; $machine; $(openssl version)" >"$dat"
}

# chart NAME SIZE [FONT] <GNUPLOT: draws RESULTS/NAME.png (pngcairo, SIZE such as
# 900,520) with the commands on stdin, removes RESULTS/NAME.plotdata, says where
# the data and the chart are.
chart() {
	if command -v gnuplot >/dev/null; then
		{
			echo "set terminal pngcairo size $2 font \"${3:-sans,10}\""
			echo "set output \"$results/$1.png\""
			cat
		} | timeout 60 gnuplot 2>"$scratch/gnuplot.err" ||
			echo "warning: gnuplot failed: $(cat "$scratch/gnuplot.err")" >&2
		rm -f "$results/$1.plotdata"
		echo "== data: $dat; chart: $results/$1.png"
	else
		echo "warning: gnuplot not installed; no chart (scripts/deps.sh installs gnuplot-nox)" >&2
	fi
}
# bar_chart NAME SIZE XMAX BOXWIDTH LABEL_AT TITLE YLABEL: chart NAME as one bar a
# server (column 3 of RESULTS/NAME.plotdata, its label column 2) with min-max whiskers
# (columns 4 and 5) and the value written at LABEL_AT (gnuplot x:y, such as
# ($1+0.15):($3*1.04)).
bar_chart() {
	{
		printf 'set title "%s" noenhanced\nset ylabel "%s"\n' "$6" "$7"
		printf '%s\n' "set style fill solid 0.6 border -1" "set boxwidth $4" "set yrange [0:*]" \
			"set xrange [-0.6:$3]" "set grid ytics" "unset key"
		printf 'plot "%s" using 1:3:xtic(2) with boxes lc rgb "#4477aa", \\\n' "$results/$1.plotdata"
		printf '     "" using 1:3:4:5 with yerrorbars lc rgb "black" pt 0, \\\n'
		printf '     "" using %s:(sprintf("%%.0f µs",$3)) with labels\n' "$5"
	} | chart "$1" "$2"
}
