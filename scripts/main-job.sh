#!/usr/bin/env bash
# main-job.sh - the whole system on generated demo keys: a demo PKI in a scratch folder,
# keywayd, keyway-proxy in front of it, and h2load against the proxy in three modes:
#
#   local key, inline    the RSA-2048 key on the proxy, signed on its loop (no offload)
#   keyless, async off   the key on keywayd, reached through keyway-relay adding D ms
#                        each way (default 5): the proxy's loop blocks on each sign
#   keyless, async on    the same path: handshakes pause, the loop goes on
#
# With two or more CPUs the proxy is pinned alone on one; the rest share the others.
# Under the table, the headline ratios in a sentence; the chart's caption names the
# machine (CPUs, pinning, OpenSSL).
#
# Prints a table (handshakes/s, connect latency, the proxy's CPU per handshake, errors),
# writes a PNG (path printed), and stops everything at the end.
#
#   scripts/main-job.sh [--duration SECONDS] [--bin DIR] [--delay-ms D] [--png FILE]
#
# --duration: seconds of h2load per mode (default 10); --bin: where the programs are
# (default: PATH); --png: the chart (default: keyway-main-job.png in $TMPDIR or /tmp).
set -euo pipefail
# --help: the header comment above, and nothing else (no build, no install).
case ${1:-} in -h | --help) sed -n '2,/^set -/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
here=$(cd "$(dirname "$0")" && pwd)
duration=10
bin=
delay=5
png=${TMPDIR:-/tmp}/keyway-main-job.png
usage() { echo "usage: main-job.sh [--duration SECONDS] [--bin DIR] [--delay-ms D] [--png FILE]" >&2; exit 2; }
while [ $# -gt 0 ]; do
	case $1 in
	--duration) [ $# -ge 2 ] || usage; duration=$2; shift 2 ;;
	--bin) [ $# -ge 2 ] || usage; bin=$2; shift 2 ;;
	--delay-ms) [ $# -ge 2 ] || usage; delay=$2; shift 2 ;;
	--png) [ $# -ge 2 ] || usage; png=$2; shift 2 ;;
	*) usage ;;
	esac
done
[[ $duration =~ ^[1-9][0-9]{0,2}$ ]] || { echo "--duration: expected 1-999 seconds" >&2; exit 2; }
[[ $delay =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "--delay-ms: expected milliseconds, e.g. 5 or 2.5" >&2; exit 2; }
find_bin() { # find_bin NAME: --bin DIR, then PATH
	if [ -n "$bin" ]; then
		find "$bin" -type f -name "$1" -perm -u+x | head -n1
	else
		command -v "$1" || true
	fi
}
keywayd=$(find_bin keywayd)
proxy=$(find_bin keyway-proxy)
relay=$(find_bin keyway-relay)
cli=$(find_bin keyway)
for b in "$keywayd" "$proxy" "$relay" "$cli"; do
	[ -n "$b" ] && [ -x "$b" ] || { echo "keywayd, keyway-proxy, keyway-relay or keyway not found (run scripts/demo.sh, or pass --bin DIR)" >&2; exit 1; }
done
for tool in h2load openssl python3 curl timeout; do
	command -v "$tool" >/dev/null || { echo "$tool is needed (scripts/deps.sh installs it)" >&2; exit 1; }
done

# Two or more CPUs: the proxy alone on the last one; h2load, keywayd and the relay
# share the others, so the load generator never steals the proxy's CPU. The
# proxy's CPU per handshake is its own process's, whatever shares the other core.
ncpu=$(nproc)
pin_proxy=() pin_load=()
placement="no pinning (one CPU, or no taskset): every process shares the CPU"
if [ "$ncpu" -ge 2 ] && command -v taskset >/dev/null; then
	pin_proxy=(taskset -c "$((ncpu - 1))")
	pin_load=(taskset -c "0-$((ncpu - 2))")
	others="CPU 0"
	[ "$ncpu" -eq 2 ] || others="CPUs 0-$((ncpu - 2))"
	placement="keyway-proxy alone on CPU $((ncpu - 1)); h2load, keywayd and keyway-relay share $others"
fi
openssl_version=$(openssl version | awk '{print $1, $2}')
tck=$(getconf CLK_TCK)

scratch=$(mktemp -d /tmp/keyway-demo.XXXXXX)
declare -A wpid
order=()
stop() { # NAME: SIGTERM through timeout, then wait (bounded), then SIGKILL
	local w=${wpid[$1]:-}
	[ -n "$w" ] || return 0
	kill -TERM "$w" 2>/dev/null || true
	for _ in $(seq 50); do kill -0 "$w" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$w" 2>/dev/null || true
	wait "$w" 2>/dev/null || true
	wpid[$1]=
}
cleanup() {
	local n
	for n in "${order[@]}"; do stop "$n"; done
	rm -rf "$scratch"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
start() { # NAME CMD...: in the background, stderr to NAME.log
	local name=$1
	shift
	"$@" 2>"$scratch/$name.log" &
	wpid[$name]=$!
	order+=("$name")
}
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_port() { # PORT NAME
	timeout 10 bash -c "until (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null; do sleep 0.05; done" ||
		{ echo "$2 did not start:" >&2; cat "$scratch/$2.log" >&2; exit 1; }
}
metric() { # PORT NAME
	curl -s --max-time 5 "http://127.0.0.1:$1/metrics" |
		awk -v n="$2" '$1 == n { printf "%.0f\n", $2; f = 1 } END { if (!f) print 0 }'
}
life=$((duration * 6 + 120)) # every server's bound, far above the job's length

echo "== demo PKI and keys (in a scratch directory removed at the end)"
"$here/demo-pki.sh" "$scratch/pki"
pki=$scratch/pki
"$cli" ref --cert "$pki/certs/rsa2048.crt" >"$scratch/rsa2048.ref"

kport=$(free_port) kmport=$(free_port) rport=$(free_port)
start keywayd "${pin_load[@]}" timeout "$life" "$keywayd" --keys "$pki/keys" --listen "127.0.0.1:$kport" \
	--tls-cert "$pki/server.crt" --tls-key "$pki/server.key" --client-ca "$pki/ca.crt" --workers 1 \
	--metrics "127.0.0.1:$kmport"
wait_port "$kport" keywayd
start relay "${pin_load[@]}" timeout "$life" "$relay" --listen "127.0.0.1:$rport" --to "127.0.0.1:$kport" \
	--delay-ms "$delay"
wait_port "$rport" relay
echo "== $ncpu CPUs: $placement"
echo "== keywayd on 127.0.0.1:$kport (mutual TLS, 1 worker); keyway-relay on 127.0.0.1:$rport, $delay ms each way"

modes=(local sync async)
declare -A port mport
for m in "${modes[@]}"; do
	port[$m]=$(free_port) mport[$m]=$(free_port)
	case $m in
	local) keyargs=(--key "$pki/keys/rsa2048.key" --backend inline --async off) ;;
	sync | async)
		a=on
		[ "$m" = sync ] && a=off
		keyargs=(--key "$scratch/rsa2048.ref" --servers "127.0.0.1:$rport" --ca "$pki/ca.crt"
			--client-cert "$pki/client.crt" --client-key "$pki/client.key" --async "$a") ;;
	esac
	start "$m" "${pin_proxy[@]}" timeout "$life" "$proxy" --listen "127.0.0.1:${port[$m]}" \
		--cert "$pki/certs/rsa2048.crt" "${keyargs[@]}" --respond --workers 1 --keepalive-timeout 0 \
		--resumption off --access-log off --metrics "127.0.0.1:${mport[$m]}"
done
for m in "${modes[@]}"; do wait_port "${port[$m]}" "$m"; wait_port "${mport[$m]}" "$m"; done
proxy_pid() { pgrep -P "${wpid[$1]}" | head -n1; }
echo "== keyway-proxy (1 worker each, RSA-2048, TLS 1.3, a new connection per request):"
echo "   local key, inline on :${port[local]}; keyless, async off on :${port[sync]}; keyless, async on on :${port[async]}"

h2() { # PORT N: one request per connection, 64 at a time
	timeout $((duration * 4 + 60)) "${pin_load[@]}" h2load --h1 -n "$2" -c 64 -m 1 -t 1 "https://127.0.0.1:$1/" 2>&1
}
results=$scratch/results
: >"$results"
echo "== h2load --h1 -c 64, ${duration}s per mode"
failures() { # PORT: the proxy's failed handshakes so far (all reasons)
	curl -s --max-time 5 "http://127.0.0.1:$1/metrics" |
		awk '$1 ~ /^keyway_proxy_handshake_failures_total/ { s += $2 } END { printf "%.0f\n", s }'
}
for m in "${modes[@]}"; do
	h2 "${port[$m]}" 64 >/dev/null || { echo "h2load against $m failed" >&2; exit 1; } # warm-up
	p=$(proxy_pid "$m")
	h0=$(metric "${mport[$m]}" keyway_proxy_handshakes_total)
	f0=$(failures "${mport[$m]}")
	t0=$(sed 's/^.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')
	# Batches until --duration has passed, each sized from the rate so far to last
	# about a second or what is left (h2load's -D does not combine with one request
	# per connection). Sums: connections, failures, wall time, connect times.
	tot=0 bad=0 wall=0 csum=0 cmax=0 n=64
	while :; do
		out=$(h2 "${port[$m]}" "$n") || { echo "h2load against $m failed: $out" >&2; exit 1; }
		read -r ok fl er < <(sed -n 's/^requests: .* \([0-9]*\) succeeded, \([0-9]*\) failed, \([0-9]*\) errored.*/\1 \2 \3/p' <<<"$out")
		w=$(sed -n 's/^finished in \([0-9.]*\)\(m\{0,1\}\)s,.*/\1 \2/p' <<<"$out" | awk '{print ($2 == "m") ? $1 / 1000 : $1}')
		# time for connect: min max mean sd, each with a unit (us, ms, s)
		read -r cmean cm < <(awk '/^time for connect:/ { for (i = 5; i <= 6; i++) { v = $i; u = v; sub(/[a-z]+$/, "", v); sub(/^[0-9.]+/, "", u); x[i] = (u == "us") ? v / 1000 : (u == "s") ? v * 1000 : v } print x[6], x[5] }' <<<"$out")
		read -r tot bad wall csum cmax n < <(awk -v t="$tot" -v b="$bad" -v w="$wall" -v cs="$csum" -v cx="$cmax" \
			-v ok="${ok:-0}" -v f="$((${fl:-0} + ${er:-0}))" -v bw="${w:-0}" -v cm="${cmean:-0}" -v mx="${cm:-0}" -v d="$duration" 'BEGIN {
			t += ok; b += f; w += bw; cs += cm * ok; if (mx > cx) cx = mx
			left = d - w; r = (w > 0) ? t / w : 100; if (left > 1) left = 1
			n = int(r * left); if (n < 64) n = 64
			print t, b, w, cs, cx, (d - w > 0.2) ? n : 0 }')
		[ "$n" -gt 0 ] || break
	done
	t1=$(sed 's/^.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')
	h1=$(metric "${mport[$m]}" keyway_proxy_handshakes_total)
	f1=$(failures "${mport[$m]}")
	echo "$m $tot $wall $((h1 - h0)) $((t1 - t0)) $bad $((f1 - f0)) $csum $cmax" >>"$results"
	printf '   %-6s %6d connections in %5.1fs\n' "$m" "$tot" "$wall"
done
signs=$(curl -s --max-time 5 "http://127.0.0.1:$kmport/metrics" |
	awk '$1 ~ /^keyless_requests\{/ { s += $2 } END { printf "%.0f\n", s }')

echo
status=0
python3 - "$results" "$tck" "$png" "$delay" "$placement" <<'PY' || status=$?
import sys
results, tck, png, delay, placement = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
labels = {"local": "local key, inline", "sync": "keyless, async off", "async": "keyless, async on"}
rows = []
for line in open(results):
    m, ok, wall, hs, ticks, bad, fails, csum, cmax = line.split()
    ok, wall = int(ok), float(wall)
    rows.append((m, ok / wall if wall else 0, int(hs), int(ticks) * 1e6 / tck / max(int(hs), 1),
                 int(bad) + int(fails), float(csum) / max(ok, 1), float(cmax)))
print("%-22s %12s %14s %14s %16s %7s" % ("mode (RSA-2048)", "handshakes/s", "connect mean", "connect max",
      "proxy CPU/hs", "errors"))
print("-" * 90)
for m, rate, hs, us, err, cmean, cmax in rows:
    print("%-22s %12.0f %11.1f ms %11.1f ms %13.0f µs %7d" % (labels[m], rate, cmean, cmax, us, err))
print()
print("keyless paths cross keyway-relay with %s ms each way; 'connect' is h2load's time for" % delay)
print("connect, TCP and TLS handshake; proxy CPU is the keyway-proxy process's user+system time.")
print("Placement: %s." % placement)
by = {r[0]: r for r in rows}
if all(m in by for m in ("local", "sync", "async")):
    rate_ratio = by["async"][1] / by["sync"][1] if by["sync"][1] else float("inf")
    cpu_ratio = by["async"][3] / by["local"][3] if by["local"][3] else float("inf")
    sync_cpu = by["sync"][3] / by["async"][3] if by["async"][3] else float("inf")
    print()
    print("Result: with the keyserver %s ms away, keyless async serves %.1fx the handshakes/s of"
          % (delay, rate_ratio))
    print("keyless async off, and the proxy spends %.2fx the CPU per handshake of a local key"
          % cpu_ratio)
    print("(the RSA signature runs on keywayd, not on the proxy). Async off costs %.1fx async on's"
          % sync_cpu)
    print("CPU per handshake: its loop sleeps in one keyserver round trip per handshake, so each")
    print("handshake pays its own wake-ups and system calls, where async on answers many paused")
    print("handshakes in one loop turn.")
    if by["async"][1] < by["local"][1]:
        print("Handshakes/s of keyless async below the local key's mean the other CPU (h2load,")
        print("keywayd, relay) is the limit here, not the proxy: compare CPU per handshake.")
with open(results + ".plot", "w") as f:
    for i, (m, rate, hs, us, err, cmean, cmax) in enumerate(rows):
        colour = {"local": 0x4477aa, "sync": 0xcc6677, "async": 0x228833}[m]
        f.write('%d "%s" %.1f %.1f %.1f %d\n' % (i, labels[m].replace(", ", "\\n"), rate, us, cmean,
                                                colour))
sys.exit(1 if any(r[4] for r in rows) else 0)
PY
echo "keywayd /metrics: keyless_requests total = $signs"

if command -v gnuplot >/dev/null; then
	timeout 60 gnuplot <<EOF && echo "chart: $png" || echo "warning: gnuplot failed" >&2
set terminal pngcairo size 1100,480 font "sans,10"
set output "$png"
set multiplot layout 1,3 title "keyway-proxy, RSA-2048, one worker, h2load -c 64, a full TLS 1.3 handshake per request (keyless: $delay ms each way)\n$ncpu CPUs, $placement; $openssl_version" noenhanced
set style fill solid 0.6 border -1
set boxwidth 0.6
set yrange [0:*]
set xrange [-0.6:2.6]
set grid ytics
set xtics font "sans,8"
set bmargin 3.5
set offsets 0, 0, graph 0.1, 0
unset key
set title "handshakes per second (higher is better)"
set ylabel "handshakes/s"
plot "$results.plot" using 1:3:6:xtic(2) with boxes lc rgb variable, "" using 1:3:(sprintf("%.0f",\$3)) with labels offset 0,0.7
set title "connect + handshake (lower is better)"
set ylabel "mean ms"
plot "$results.plot" using 1:5:6:xtic(2) with boxes lc rgb variable, "" using 1:5:(sprintf("%.1f",\$5)) with labels offset 0,0.7
set title "proxy CPU per handshake (lower is better)"
set ylabel "µs of CPU"
plot "$results.plot" using 1:4:6:xtic(2) with boxes lc rgb variable, "" using 1:4:(sprintf("%.0f",\$4)) with labels offset 0,0.7
unset multiplot
EOF
else
	echo "gnuplot not installed: no chart (scripts/deps.sh installs gnuplot-nox)" >&2
fi

echo "== stopping keyway-proxy, keyway-relay, keywayd (SIGTERM, graceful drain)"
for n in async sync local relay keywayd; do stop "$n"; done
echo "all stopped"
exit $status
