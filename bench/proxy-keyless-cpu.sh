#!/usr/bin/env bash
# proxy-keyless-cpu.sh - keyway-proxy's own CPU per full TLS 1.3 handshake when its
# RSA-2048 signs go to keywayd (keyless, async) against signing them itself (inline).
#
#   bench/proxy-keyless-cpu.sh [--connections N] [--rounds R] [--build DIR] [--results DIR]
#
# Two keyway-proxy processes run side by side, both --workers 1 pinned to CPU 1,
# the same RSA-2048 certificate, TLS 1.3, X25519, TLS_AES_128_GCM_SHA256, no
# tickets, the connection closed after each response (--keepalive-timeout 0
# --resumption off):
#   keyless  --key REFERENCE.pem (keyway ref) --servers keywayd, --async on
#   inline   --key rsa2048.key --backend inline (the no-offload baseline)
# keywayd (--workers 1) runs on CPU 0 beside h2load, never on the proxies' core;
# the figure is the proxy process's utime+stime from /proc/PID/stat only.
# Load: h2load --h1 -n N -c 32 -m 1 on CPU 0. The two take turns in slices of N
# connections, R rounds, alternating which goes first; the figure is total CPU
# / total handshakes (the proxy's keyway_proxy_handshakes_total, which must equal
# h2load's successes), with the per-round ratios and their median beside it.
# Every keyless handshake must have been signed by keywayd (its keyless_requests
# counter grows by at least the handshakes).
#
# Prints a table, writes RESULTS/proxy-keyless-cpu-DATE.dat and
# RESULTS/proxy-keyless-cpu.png, and ends with a RESULT line: target keyless
# CPU per handshake <= 0.55 x inline. Exit status: 0 if met, 1 if not, 2 on a
# setup error.
set -euo pipefail

# shellcheck source=proxy-lib.sh
. "$(dirname "$0")/proxy-lib.sh"
conns=1000 rounds=16
parse_slices proxy-keyless-cpu.sh "$@"
bench_init "proxy keywayd relay cli" "h2load openssl taskset python3 timeout curl"

echo "== machine: $machine; load average $(loadavg)"
echo "== $(openssl version); $(h2load --version | head -n1)"
echo "== keyway-proxy: $proxy"
make_pki
start_keywayd "$load_cpu"
echo "== keywayd --workers 1 on CPU $load_cpu (with h2load); proxies on CPU $server_cpu"

names=(keyless inline)
start_proxy keyless rsa2048 "$kport" --backend keyless --async on
start_proxy inline rsa2048 local --backend inline --async off
wait_proxies "${names[@]}"

echo "== warm-up"
warm_up 320 32 "${names[@]}"

open_dat proxy-keyless-cpu
{
	echo "# RSA-2048; connections per slice $conns, rounds $rounds, h2load -c 32 and keywayd on CPU $load_cpu, proxies on CPU $server_cpu"
	echo "# other_ticks: what CPU $server_cpu gave to other processes during the slice; core_ticks: its elapsed ticks"
	echo "# round proxy ticks handshakes h2load_ok h2load_failed wall_s tls connect_ms other_ticks core_ticks keywayd_requests"
} >>"$dat"

echo "== $rounds rounds of $conns connections per proxy (load average $(loadavg))"
for r in $(seq "$rounds"); do
	order=("${names[@]}")
	[ $((r % 2)) -eq 0 ] && order=(inline keyless)
	for n in "${order[@]}"; do
		k0=$(metric_sum "$kmport" keyless_requests)
		cpu_slice "$n" "$conns"
		k1=$(metric_sum "$kmport" keyless_requests)
		echo "$r $n $slice_ticks $slice_hs $slice_fields $slice_other $slice_core $((k1 - k0))" >>"$dat"
		printf "  round %2d %-8s %5d ticks %6d handshakes (h2load ok/failed: %s) other %d/%d ticks, keywayd +%d\n" \
			"$r" "$n" "$slice_ticks" "$slice_hs" "$(cut -d' ' -f1-2 <<<"$slice_fields")" "$slice_other" "$slice_core" "$((k1 - k0))"
	done
done
echo "== load average after: $(loadavg)"
stop_all

status=0
python3 - "$dat" "$tck" "$results" <<'PY' || status=$?
import collections, statistics, sys
dat, tck, results = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rows = [l.split() for l in open(dat) if not l.startswith("#")]
tot = collections.defaultdict(lambda: collections.Counter())
per = collections.defaultdict(dict)
bad = []
for r, n, ticks, hs, ok, failed, wall, tls, conn, other, core, kreq in rows:
    t = tot[n]
    t["ticks"] += int(ticks); t["hs"] += int(hs); t["ok"] += int(ok); t["failed"] += int(failed)
    t["wall"] += float(wall); t["other"] += int(other); t["core"] += int(core)
    per[n][r] = int(ticks) * 1e6 / tck / max(int(hs), 1)
    if int(hs) != int(ok) or int(failed):
        bad.append("round %s %s: proxy counted %s, h2load %s ok %s failed" % (r, n, hs, ok, failed))
    if tls != "TLSv1.3/TLS_AES_128_GCM_SHA256/X25519":
        bad.append("round %s %s: negotiated %s" % (r, n, tls))
    if n == "keyless" and int(kreq) < int(hs):
        bad.append("round %s: keywayd signed %s for %s keyless handshakes" % (r, kreq, hs))
us = {n: tot[n]["ticks"] * 1e6 / tck / tot[n]["hs"] for n in tot}
labels = {"keyless": "keyless, async on (sign on keywayd)", "inline": "local key, inline (baseline)"}
print()
print("| keyway-proxy, RSA-2048 | handshakes | verified | CPS (wall) | proxy CPU µs/handshake | per round (min-max) | other load on its core |")
print("|---|---:|---|---:|---:|---|---:|")
for n in ("keyless", "inline"):
    t = tot[n]; v = sorted(per[n].values())
    print("| %s | %d | %s | %.0f | **%.1f** | %.0f-%.0f | %.1f %% |" % (
        labels[n], t["hs"], "yes" if t["hs"] == t["ok"] and not t["failed"] else "NO",
        t["ok"] / t["wall"] if t["wall"] else 0, us[n], v[0], v[-1], 100.0 * t["other"] / max(t["core"], 1)))
for b in bad:
    print("WARNING: " + b)
ratio = us["keyless"] / us["inline"]
rr = sorted(per["keyless"][r] / per["inline"][r] for r in per["keyless"])
with open(results + "/proxy-keyless-cpu.plotdata", "w") as f:
    for i, n in enumerate(("inline", "keyless")):
        v = list(per[n].values())
        f.write('%d "%s" %.1f %.1f %.1f\n' % (i, labels[n], us[n], min(v), max(v)))
passed = ratio <= 0.55 and not bad
print()
print("RESULT keyless_async_vs_inline_cpu_per_handshake_rsa2048 %.3f 0.55 %s   (per round %.2f-%.2f, median %.3f)" % (
    ratio, "PASS" if passed else "FAIL", rr[0], rr[-1], statistics.median(rr)))
sys.exit(0 if passed else 1)
PY

bar_chart proxy-keyless-cpu 900,520 1.6 0.5 '($1+0.15):($3*1.04)' \
	"keyway-proxy CPU per full TLS 1.3 handshake, RSA-2048, X25519, one worker on one core\n(bars: total CPU / total handshakes; whiskers: per-round min-max)\n$machine" \
	"µs of proxy CPU per handshake (lower is better)"
exit $status
