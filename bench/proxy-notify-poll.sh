#!/usr/bin/env bash
# proxy-notify-poll.sh - what keyway-proxy's completion notification (callback or
# eventfd) and ring polling (heuristic, timer, busy) cost: system calls and CPU per
# full TLS 1.3 handshake, RSA-2048.
#
#   bench/proxy-notify-poll.sh [--connections N] [--rounds R] [--strace-connections M]
#                              [--poll-interval-us U] [--build DIR] [--results DIR]
#
# Configurations, each a keyway-proxy --workers 1 pinned to CPU 1 (its crypto thread
# too), TLS 1.3, X25519, TLS_AES_128_GCM_SHA256, no tickets, closing after each response:
#   threads  local RSA-2048 key on one crypto thread (--backend threads), async on,
#            {--notify callback, fd} x {--poll heuristic, timer (every U µs, default
#            1000), busy}: six processes
#   keyless  the key on keywayd (--workers 1, on CPU 0), async on, --notify callback
#            and fd (--poll does not apply: keyless answers arrive on the keyserver
#            sockets in the proxy's own epoll)
#   inline   local key signed on the loop thread, async off (reference: no offload)
# CPU: all run side by side and take turns in slices of N connections (h2load --h1
# -c 32 -m 1 on CPU 0), R rounds, the order rotating; utime+stime of the proxy
# process from /proc (all its threads) / its keyway_proxy_handshakes_total.
# System calls: afterwards, `strace -c -f -p PID` attaches to each proxy in turn (all
# its threads) for a fixed run of M connections; the total count over M. /metrics is
# read only outside that window. strace slows every system call, which changes how
# much work each loop turn finds; the counts are those of a traced process.
#
# There is no target: the RESULT lines have target "-" and verdict INFO. They are
# checked (every handshake counted equals h2load's successes, TLS parameters as
# configured); exit status 1 if a check fails, 2 on a setup error, else 0.
# Prints one table, writes RESULTS/proxy-notify-poll-DATE.dat (and the strace
# summaries as -DATE.strace) and RESULTS/proxy-notify-poll.png.
set -euo pipefail

# shellcheck source=proxy-lib.sh
. "$(dirname "$0")/proxy-lib.sh"
conns=500 rounds=6 sconns=500 interval=1000
parse_args "proxy-notify-poll.sh [--connections N] [--rounds R] [--strace-connections M] [--poll-interval-us U] [--build DIR] [--results DIR]" \
	--connections=conns --rounds=rounds --strace-connections=sconns --poll-interval-us=interval -- "$@"
want conns '^[1-9][0-9]{2,5}$' "--connections: expected 100-999999" \
	sconns '^[1-9][0-9]{2,5}$' "--strace-connections: expected 100-999999" \
	rounds '^[1-9][0-9]?$' "--rounds: expected 1-99" \
	interval '^[1-9][0-9]{0,6}$' "--poll-interval-us: expected 1-9999999"
bench_init "proxy keywayd relay cli" "h2load openssl taskset python3 timeout curl strace"

echo "== machine: $machine; load average $(loadavg)"
echo "== $(openssl version); $(h2load --version | head -n1); $(strace -V | head -n1)"
echo "== keyway-proxy: $proxy"
make_pki
start_keywayd "$load_cpu"
echo "== keywayd --workers 1 on CPU $load_cpu (with h2load); proxies on CPU $server_cpu"

names=()
for nt in callback fd; do
	for pl in heuristic timer busy; do
		n=threads-$nt-$pl
		start_proxy "$n" rsa2048 local --backend threads --crypto-threads 1 --async on \
			--notify "$nt" --poll "$pl" --poll-interval-us "$interval"
		names+=("$n")
	done
done
for nt in callback fd; do
	start_proxy "keyless-$nt" rsa2048 "$kport" --backend keyless --async on --notify "$nt"
	names+=("keyless-$nt")
done
start_proxy inline rsa2048 local --backend inline --async off
names+=(inline)
wait_proxies "${names[@]}"
nn=${#names[@]}

echo "== warm-up"
warm_up 200 32 "${names[@]}"

open_dat proxy-notify-poll
straces=$results/proxy-notify-poll-$stamp.strace
{
	echo "# RSA-2048; connections per slice $conns, rounds $rounds, strace run $sconns connections; poll timer $interval us"
	echo "# h2load -c 32 and keywayd on CPU $load_cpu, proxies (with their crypto threads) on CPU $server_cpu"
	echo "# cpu round config ticks handshakes h2load_ok h2load_failed wall_s tls connect_ms other_ticks core_ticks"
	echo "# strace config syscalls handshakes h2load_ok h2load_failed wall_s tls connect_ms epoll_wait reads writes futex"
} >>"$dat"
: >"$straces"

echo "== CPU: $rounds rounds of $conns connections per proxy (load average $(loadavg))"
for r in $(seq "$rounds"); do
	s=$(((r - 1) % nn))
	order=("${names[@]:$s}" "${names[@]:0:$s}")
	for n in "${order[@]}"; do
		cpu_slice "$n" "$conns"
		echo "cpu $r $n $slice_ticks $slice_hs $slice_fields $slice_other $slice_core" >>"$dat"
		printf "  round %d %-26s %4d ticks %5d handshakes (h2load ok/failed %s) other %d/%d ticks\n" \
			"$r" "$n" "$slice_ticks" "$slice_hs" "$(cut -d' ' -f1-2 <<<"$slice_fields")" "$slice_other" "$slice_core"
	done
done

echo "== system calls: strace -c -f -p PID over $sconns connections each"
for n in "${names[@]}"; do
	h0=$(metric "${mport[$n]}" keyway_proxy_handshakes_total)
	sf=$scratch/$n.strace
	timeout 300 strace -c -f -p "${child[$n]}" -o "$sf" 2>"$scratch/$n.strace.log" &
	spid=$!
	# strace prints nothing when attached; give it time to seize every thread.
	sleep 1
	out=$(h2 "${pport[$n]}" "$sconns" 32 2>&1) || die "h2load against $n (traced) failed: $out"
	kill -INT "$spid" 2>/dev/null || true
	wait "$spid" 2>/dev/null || true
	h1=$(metric "${mport[$n]}" keyway_proxy_handshakes_total)
	f=$(h2_fields "$out")
	[ -s "$sf" ] || die "strace wrote no summary for $n: $(cat "$scratch/$n.strace.log")"
	# summary rows: % time, seconds, usecs/call, calls, [errors,] syscall; the last one "total"
	read -r total ew rd wr fx < <(awk '
		$1 ~ /^[0-9.]+$/ && $NF == "total" { t = $4 }
		$1 ~ /^[0-9.]+$/ && $NF != "total" {
			calls = $4; name = $NF
			if (name == "epoll_wait" || name == "epoll_pwait") ew += calls
			else if (name ~ /^(read|recvfrom|recvmsg|readv)$/) rd += calls
			else if (name ~ /^(write|sendto|sendmsg|writev)$/) wr += calls
			else if (name == "futex") fx += calls
		}
		END { print t + 0, ew + 0, rd + 0, wr + 0, fx + 0 }' "$sf")
	echo "strace $n $total $((h1 - h0)) $f $ew $rd $wr $fx" >>"$dat"
	{ echo "## $n: $((h1 - h0)) handshakes"; cat "$sf"; } >>"$straces"
	printf "  %-26s %6d syscalls / %5d handshakes = %5.1f\n" "$n" "$total" "$((h1 - h0))" \
		"$(awk -v a="$total" -v b="$((h1 - h0))" 'BEGIN{print (b > 0) ? a / b : 0}')"
done
echo "== load average after: $(loadavg)"
stop_all

status=0
python3 - "$dat" "$tck" "$results" "$interval" <<'PY' || status=$?
import collections, statistics, sys
dat, tck, results, interval = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
rows = [l.split() for l in open(dat) if not l.startswith("#")]
tot = collections.defaultdict(collections.Counter)
per = collections.defaultdict(list)
sc = {}
order = []
bad = []
for row in rows:
    kind = row[0]
    if kind == "cpu":
        _, r, n, ticks, hs, ok, failed, wall, tls, conn, other, core = row
        if n not in order:
            order.append(n)
        t = tot[n]
        t["ticks"] += int(ticks); t["hs"] += int(hs); t["ok"] += int(ok); t["failed"] += int(failed)
        t["wall"] += float(wall); t["other"] += int(other); t["core"] += int(core)
        per[n].append(int(ticks) * 1e6 / tck / max(int(hs), 1))
    else:
        _, n, total, hs, ok, failed, wall, tls, conn, ew, rd, wr, fx = row
        sc[n] = [int(x) / max(int(hs), 1) for x in (total, ew, rd, wr, fx)]
    if int(hs) != int(ok) or int(failed):
        bad.append("%s %s: proxy counted %s, h2load %s ok %s failed" % (kind, n, hs, ok, failed))
    if tls != "TLSv1.3/TLS_AES_128_GCM_SHA256/X25519":
        bad.append("%s %s: negotiated %s" % (kind, n, tls))
names = sorted(order, key=lambda n: (n.split("-")[0] != "threads", n.split("-")[0] != "keyless", n))
def label(n):
    p = n.split("-")
    if p[0] == "threads":
        return "threads, %s, %s" % (p[1], p[2] + (" %s µs" % interval if p[2] == "timer" else ""))
    if p[0] == "keyless":
        return "keyless, %s" % p[1]
    return "inline (no offload)"
print()
print("| keyway-proxy, RSA-2048 | syscalls/handshake | epoll_wait | read+recv | write+send | futex | CPU µs/handshake | per round (min-max) | CPS (wall) | other load on its core |")
print("|---|---:|---:|---:|---:|---:|---:|---|---:|---:|")
us = {}
with open(results + "/proxy-notify-poll.plotdata", "w") as f:
    for i, n in enumerate(names):
        t = tot[n]
        us[n] = t["ticks"] * 1e6 / tck / max(t["hs"], 1)
        s = sc.get(n, [float("nan")] * 5)
        v = sorted(per[n])
        print("| %s | **%.1f** | %.1f | %.1f | %.1f | %.1f | **%.0f** | %.0f-%.0f | %.0f | %.1f %% |" % (
            label(n), s[0], s[1], s[2], s[3], s[4], us[n], v[0], v[-1],
            t["ok"] / t["wall"] if t["wall"] else 0, 100.0 * t["other"] / max(t["core"], 1)))
        f.write('%d "%s" %.1f %.1f %.1f %.2f\n' % (i, label(n).replace(", ", "\\n", 1), us[n], v[0], v[-1], s[0]))
for b in bad:
    print("WARNING: " + b)
print()
for n in names:
    key = n.replace("-", "_")
    print("RESULT notify_poll_%s_cpu_us_per_handshake %.0f - INFO" % (key, us[n]))
    if n in sc:
        print("RESULT notify_poll_%s_syscalls_per_handshake %.1f - INFO" % (key, sc[n][0]))
sys.exit(1 if bad else 0)
PY

chart proxy-notify-poll 1300,620 <<EOF
set title "keyway-proxy, RSA-2048, one worker on one core: CPU per handshake (bars, left; whiskers: per-round min-max)\nand system calls per handshake under strace -c -f (points, right)\n$machine" noenhanced
set ylabel "µs of proxy CPU per handshake"
set y2label "system calls per handshake"
set ytics nomirror
set y2tics
set style fill solid 0.6 border -1
set boxwidth 0.6
set yrange [0:*]
set y2range [0:*]
set grid ytics
set xtics font "sans,8"
set key outside bottom center horizontal
set bmargin 6
plot "$results/proxy-notify-poll.plotdata" using 1:3:xtic(2) with boxes lc rgb "#4477aa" title "CPU µs/handshake", \
     "" using 1:3:4:5 with yerrorbars lc rgb "black" pt 0 notitle, \
     "" using 1:6 axes x1y2 with points pt 7 ps 1.5 lc rgb "#cc6677" title "syscalls/handshake"
EOF
exit $status
