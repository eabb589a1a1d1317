#!/usr/bin/env bash
# soak.sh - keyway-proxy and two keywayds under mixed load and operator actions for a
# long time, watching memory, descriptors and CPU of every process.
#
#   bench/soak.sh [--minutes N] [--build DIR] [--results DIR]
#
# keyway-proxy (--workers 1, RSA-2048 key held by two keywayds, each behind its own
# keyway-relay adding 1 ms each way) serves, for N minutes (default 30):
#   - new-connection load: h2load, 2 requests per connection (a full handshake each);
#   - keep-alive load: h2load, hundreds of requests per connection;
#   - aborting clients: a partial ClientHello, then a reset (SO_LINGER 0);
#   - every 3 minutes one keywayd, in turn, is killed (SIGKILL) and restarted 5 s later;
#   - every minute SIGHUP to the proxy and to both keywayds (reloads).
# (Runs shorter than 9 minutes kill every third and reload every quarter of the run.)
# A sampler reads RSS, open descriptors and CPU time of every process each second.
# Afterwards: a table, RESULT lines, RESULTS/soak-DATE.dat and RESULTS/soak.png.
# It fails (exit 1) when a process' RSS grows by more than 2 MiB over the last half of
# the run (the slope of a least-squares line through its samples, not one sample),
# when the proxy's descriptors are not back to their baseline once the load stops (its
# keyserver links, a pool opened lazily, are counted apart and must stay within the
# pool's bound), or
# when a handshake that was not deliberately aborted failed (h2load's failed/errored).
# A keywayd's RSS is fitted over its samples since its last restart, when that covers
# at least a quarter of the run. Exit 2 on a set-up error.
set -euo pipefail

# shellcheck source=proxy-lib.sh
. "$(dirname "$0")/proxy-lib.sh"
minutes=30
parse_args "soak.sh [--minutes N] [--build DIR] [--results DIR]" --minutes=minutes -- "$@"
want minutes '^[1-9][0-9]{0,3}$' "--minutes: expected 1-9999"
max_life=$((minutes * 60 + 600))
bench_init "proxy keywayd relay cli" "h2load openssl taskset python3 timeout curl"

duration=$((minutes * 60))
echo "== machine: $machine; $(openssl version)"
echo "== soak for $minutes min: proxy on CPU $server_cpu; keywayds, relays and load on CPU $load_cpu"
make_pki

declare -A kdport kdmport
start_kd() { # NAME: a keywayd on its fixed ports (kept across restarts)
	start "$1" "$load_cpu" "$keywayd" --keys "$pki/keys" --listen "127.0.0.1:${kdport[$1]}" \
		--tls-cert "$pki/server.crt" --tls-key "$pki/server.key" --client-ca "$pki/ca.crt" \
		--workers 1 --metrics "127.0.0.1:${kdmport[$1]}" --log-level warn
	wait_port "${kdport[$1]}" || { cat "$scratch/$1.log" >&2; die "$1 did not start"; }
}
for k in kd1 kd2; do
	kdport[$k]=$(free_port) kdmport[$k]=$(free_port)
	start_kd "$k"
done
start_relay relay1 "$load_cpu" 1 "${kdport[kd1]}"
start_relay relay2 "$load_cpu" 1 "${kdport[kd2]}"
pport[proxy]=$(free_port) mport[proxy]=$(free_port)
start proxy "$server_cpu" "$proxy" --listen "127.0.0.1:${pport[proxy]}" \
	--cert "$pki/certs/rsa2048.crt" --key "$scratch/rsa2048.ref" \
	--servers "127.0.0.1:${rport[relay1]},127.0.0.1:${rport[relay2]}" --ca "$pki/ca.crt" \
	--client-cert "$pki/client.crt" --client-key "$pki/client.key" \
	--respond --workers 1 --keepalive-timeout 5 --access-log off --log-level warn \
	--metrics "127.0.0.1:${mport[proxy]}"
wait_proxies proxy
names=(proxy kd1 kd2 relay1 relay2)

h2load_run() { # N C M: requests, connections; appends "succeeded failed errored" to loads
	local out
	out=$(taskset -c "$load_cpu" timeout 120 h2load --h1 -n "$1" -c "$2" -m 1 \
		"https://127.0.0.1:${pport[proxy]}/" 2>&1) || true
	sed -n 's/^requests: .* \([0-9]*\) succeeded, \([0-9]*\) failed, \([0-9]*\) errored.*/\1 \2 \3/p' \
		<<<"$out" | head -n1 >>"$scratch/loads"
}
aborter() { # until $1 (epoch seconds): 10 partial handshakes a second, each reset
	taskset -c "$load_cpu" timeout $((duration + 60)) python3 - "${pport[proxy]}" "$1" <<'PY'
import socket, struct, sys, time
port, end, n = int(sys.argv[1]), float(sys.argv[2]), 0
hello = bytes.fromhex("16030100c8010000c40303") + bytes(32)  # a ClientHello cut short
while time.time() < end:
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
        s.sendall(hello)
        time.sleep(0.02)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        n += 1
    except OSError:
        pass
    time.sleep(0.1)
print(n)
PY
}
sample() { # T: one line per process: t name rss_kb fds cpu_ticks
	local n p rss fds
	for n in "${names[@]}"; do
		p=${child[$n]:-}
		[ -n "$p" ] && [ -d "/proc/$p" ] || continue
		rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null) || continue
		fds=$(find "/proc/$p/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
		echo "$1 $n ${rss:-0} $fds $(cpu_ticks "$p")"
	done
}
# The proxy's keyserver links are a pool opened lazily (`connections` per keyserver):
# the first failover opens the other keyserver's share, so they are counted apart
# and bounded, and every other descriptor must come back to its baseline.
fd_split() { # -> "OTHER LINKS": descriptors that are not keyserver links, and links
	python3 - "${child[proxy]}" "${rport[relay1]}" "${rport[relay2]}" <<'PY'
import os, sys
pid, ports = sys.argv[1], {int(p) for p in sys.argv[2:]}
links = set()
for table in ("tcp", "tcp6"):
    try:
        rows = open("/proc/%s/net/%s" % (pid, table)).read().splitlines()[1:]
    except OSError:
        continue
    for row in rows:
        f = row.split()
        if int(f[2].rsplit(":", 1)[1], 16) in ports:
            links.add(f[9])
other = nlinks = 0
for fd in os.listdir("/proc/%s/fd" % pid):
    try:
        target = os.readlink("/proc/%s/fd/%s" % (pid, fd))
    except OSError:
        continue
    if target.startswith("socket:[") and target[8:-1] in links:
        nlinks += 1
    else:
        other += 1
print(other, nlinks)
PY
}
proxy_fds() { fd_split | cut -d' ' -f1; }
proxy_links() { fd_split | cut -d' ' -f2; }
# connections (default 2) x 2 keyservers x 2 keyless backends: the worker's own and the
# provider's I/O thread (which serves what runs outside a worker loop)
max_links=8

echo "== warm-up, then the proxy's idle baseline"
h2load_run 200 20
: >"$scratch/loads"
sleep 7 # past the keep-alive timeout: only listeners and keyserver links stay open
baseline=$(proxy_fds)
echo "   proxy: $baseline descriptors open at rest, besides $(proxy_links) keyserver link(s)"

mkdir -p "$results"
stamp=$(date -u +%Y-%m-%dT%H%M%SZ)
dat=$results/soak-$stamp.dat
{
	echo "# soak.sh $stamp; $machine; $(openssl version); $minutes min; proxy baseline fds $baseline"
	echo "# t_s process rss_kb fds cpu_ticks (tck $tck)"
} >"$dat"
events=$scratch/events
: >"$events"

start_s=$(date +%s)
end_s=$((start_s + duration))
(while [ "$(date +%s)" -lt "$end_s" ]; do h2load_run 400 32; done) &
load1=$!
(while [ "$(date +%s)" -lt "$end_s" ]; do h2load_run 4000 4; done) &
load2=$!
aborter "$end_s" >"$scratch/aborted" &
load3=$!

# Every 3 minutes a kill and every minute a SIGHUP; a short run scales both down so
# that each happens at least twice.
kill_every=$((duration >= 540 ? 180 : duration / 3))
hup_every=$((duration >= 240 ? 60 : duration / 4))
victim=kd1 next_kill=$((start_s + kill_every)) next_hup=$((start_s + hup_every)) next_report=$((start_s + 60))
while :; do
	now=$(date +%s)
	[ "$now" -lt "$end_s" ] || break
	sample $((now - start_s)) >>"$dat"
	if [ "$now" -ge "$next_hup" ]; then
		for n in proxy kd1 kd2; do kill -HUP "${child[$n]}" 2>/dev/null || true; done
		echo "$((now - start_s)) hup" >>"$events"
		next_hup=$((next_hup + hup_every))
	fi
	if [ "$now" -ge "$next_kill" ]; then
		kill -KILL "${child[$victim]}" 2>/dev/null || true
		wait "${wrapper[$victim]}" 2>/dev/null || true
		echo "$((now - start_s)) kill $victim" >>"$events"
		sleep 5
		start_kd "$victim"
		echo "$(($(date +%s) - start_s)) restart $victim" >>"$events"
		[ "$victim" = kd1 ] && victim=kd2 || victim=kd1
		next_kill=$((next_kill + kill_every))
	fi
	if [ "$now" -ge "$next_report" ]; then
		echo "   $(((now - start_s) / 60)) of $minutes min: proxy RSS $(awk '/^VmRSS:/ {print $2}' "/proc/${child[proxy]}/status") kB, $(proxy_fds) fds + $(proxy_links) links, $(wc -l <"$scratch/loads") h2load runs"
		next_report=$((next_report + 60))
	fi
	sleep 1
done
wait "$load1" "$load2" "$load3" 2>/dev/null || true

# Once the load has stopped: the proxy's descriptors back to the baseline (keep-alive
# connections close after 5 s; give them up to 30 s).
fds_end=$(proxy_fds)
for _ in $(seq 30); do
	fds_end=$(proxy_fds)
	[ "$fds_end" -le "$baseline" ] && break
	sleep 1
done
links_end=$(proxy_links)
aborted=$(cat "$scratch/aborted" 2>/dev/null || echo 0)
hs=$(metric "${mport[proxy]}" keyway_proxy_handshakes_total)
failovers=$(metric "${mport[proxy]}" keyway_provider_failovers_total)
stop_all

python3 - "$dat" "$scratch/loads" "$events" "$baseline" "$fds_end" "$aborted" "$hs" \
	"$failovers" "$tck" "$duration" "$results/soak.png" "$links_end" "$max_links" <<'PY' || status=$?
import subprocess, sys
dat, loads, events, baseline, fds_end, aborted, hs, failovers, tck, duration, png, links, max_links = sys.argv[1:]
baseline, fds_end, tck, duration = int(baseline), int(fds_end), int(tck), int(duration)
links, max_links = int(links), int(max_links)
series = {}
for line in open(dat):
    if line.startswith("#"):
        continue
    t, name, rss, fds, cpu = line.split()
    series.setdefault(name, []).append((int(t), int(rss), int(fds), int(cpu)))
restarts = {}
for line in open(events):
    parts = line.split()
    if parts[1] == "restart":
        restarts[parts[2]] = int(parts[0])
ok = failed = 0
for line in open(loads):
    s, f, e = map(int, line.split())
    ok += s
    failed += f + e

def slope(points):
    n = len(points)
    if n < 10:
        return None
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0

half = duration / 2
bad = []
print()
print("%-8s %12s %12s %16s %8s %8s %10s" % ("process", "RSS start", "RSS end", "2nd-half growth",
                                            "fds max", "fds end", "CPU"))
print("-" * 82)
for name, pts in series.items():
    since = max(half, restarts.get(name, 0))
    window = [(t, rss) for t, rss, _, _ in pts if t >= since]
    growth = None
    if name in restarts and duration - restarts[name] < duration / 4:
        note = "restarted late: not fitted"
    else:
        s = slope(window)
        growth = s * (duration - since) / 1024 if s is not None else None  # MiB over the window
        note = "" if growth is None else "%+.2f MiB" % growth
    if growth is not None and growth > 2.0:
        bad.append("%s: RSS grew %.2f MiB over the last half" % (name, growth))
    cpu = "%.1fs" % ((pts[-1][3] - pts[0][3]) / tck) if name not in restarts else "restarted"
    print("%-8s %9.1f MiB %9.1f MiB %16s %8d %8d %10s" % (
        name, pts[0][1] / 1024, pts[-1][1] / 1024, note or "-", max(p[2] for p in pts), pts[-1][2],
        cpu))
if fds_end > baseline:
    bad.append("proxy: %d descriptors open after the load, baseline %d" % (fds_end, baseline))
if links > max_links:
    bad.append("proxy: %d keyserver links open after the load, at most %d" % (links, max_links))
if failed:
    bad.append("%d h2load requests failed or errored (not deliberately aborted)" % failed)
if not ok:
    bad.append("no request succeeded")
print()
print("h2load: %d requests succeeded, %d failed; proxy handshakes %s; aborted on purpose %s;"
      % (ok, failed, hs, aborted))
print("keyserver failovers %s; proxy descriptors at rest %d before, %d after (besides %d keyserver links)"
      % (failovers, baseline, fds_end, links))
print("events: %s" % ", ".join(l.strip() for l in open(events) if "kill" in l) or "none")
p = series.get("proxy", [])
g = [s for s in [slope([(t, r) for t, r, _, _ in p if t >= half])] if s is not None]
print("RESULT soak_proxy_rss_growth_mib %.2f target <=2 %s" % (
    g[0] * half / 1024 if g else float("nan"), "PASS" if not any("proxy: RSS" in b for b in bad) else "FAIL"))
print("RESULT soak_proxy_fds_after %d target <=%d %s" % (fds_end, baseline,
                                                          "PASS" if fds_end <= baseline else "FAIL"))
print("RESULT soak_proxy_keyserver_links_after %d target <=%d %s" % (links, max_links,
                                                                    "PASS" if links <= max_links else "FAIL"))
print("RESULT soak_failed_requests %d target 0 %s" % (failed, "PASS" if not failed else "FAIL"))

plot = dat + ".plot"
names = list(series)
with open(plot, "w") as f:
    for name in names:
        prev = None
        for t, rss, fds, cpu in series[name]:
            pct = 0.0 if prev is None else 100.0 * (cpu - prev[1]) / tck / max(t - prev[0], 1)
            f.write("%d %.2f %d %.1f\n" % (t, rss / 1024, fds, max(pct, 0.0)))
            prev = (t, cpu)
        f.write("\n\n")
cmds = ['set terminal pngcairo size 1200,900 font "sans,10"', 'set output "%s"' % png,
        'set multiplot layout 3,1 title "soak: keyway-proxy with two keywayds (killed in turn), '
        'SIGHUP each minute" noenhanced', "set grid", "set key outside right", 'set xlabel "s"']
for col, title, ylabel in ((2, "RSS (flat is good)", "MiB"), (3, "open descriptors", "fds"),
                           (4, "CPU", "% of a core")):
    cmds.append('set title "%s"; set ylabel "%s"' % (title, ylabel))
    cmds.append("plot " + ", ".join('"%s" index %d using 1:%d with lines title "%s"' % (plot, i, col, n)
                                      for i, n in enumerate(names)))
cmds.append("unset multiplot")
try:
    subprocess.run(["gnuplot"], input="\n".join(cmds), text=True, timeout=60, check=True)
    print("== data: %s; chart: %s" % (dat, png))
except (OSError, subprocess.SubprocessError) as e:
    print("warning: no chart: %s" % e, file=sys.stderr)
for b in bad:
    print("FAIL: " + b)
sys.exit(1 if bad else 0)
PY
exit "${status:-0}"
