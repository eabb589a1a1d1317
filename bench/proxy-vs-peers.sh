#!/usr/bin/env bash
# proxy-vs-peers.sh - keyway-proxy's server CPU per full TLS 1.3 handshake,
# local RSA-2048 key signed inline, against nginx 1.22 and HAProxy 2.6; and
# with the key signed on a crypto thread (--backend threads --crypto-threads 1),
# with multi-buffer RSA batches (--rsa-batch on) and without.
#
#   bench/proxy-vs-peers.sh [--connections N] [--rounds R] [--build DIR] [--results DIR]
#
# Configured equally: one worker each (keyway-proxy --workers 1, nginx
# worker_processes 1, HAProxy nbthread 1), every server pinned to CPU 1 and
# h2load to CPU 0, TLS 1.3 only, X25519, TLS_AES_128_GCM_SHA256, the same
# RSA-2048 certificate, no session cache, tickets off, the connection closed
# after each response (keyway-proxy --keepalive-timeout 0, nginx
# keepalive_timeout 0, HAProxy option httpclose). nginx 1.22 still sends two
# TLS 1.3 tickets with tickets off (OpenSSL's stateful default); the script
# counts the tickets each server really sends and prints them.
#
# Load: `h2load --h1 -n N -c 32 -t 1 --groups X25519 --tls13-ciphers
# TLS_AES_128_GCM_SHA256`, one request per connection (the servers close). CPU
# is utime+stime of all the server's processes from /proc/PID/stat, divided by
# the handshakes the server itself counted (keyway-proxy's /metrics, nginx's
# stub_status accepts, HAProxy's CumSslConns), which must equal h2load's
# successes. Servers alternate in slices of N connections, R rounds, the order
# rotating each round, so all see the same drift of this noisy VM; the figure is
# total CPU / total handshakes, with the per-round spread beside it. The threads
# backend's crypto thread is part of the keyway-proxy process, pinned to the
# same core, so its CPU counts.
#
# Prints a table, writes RESULTS/proxy-vs-peers-DATE.dat and
# RESULTS/proxy-vs-peers.png (gnuplot), and ends with `RESULT` lines: target
# keyway-proxy CPU/handshake <= nginx's and <= HAProxy's (ratio <= 1.0), and
# with batches <= inline's.
# Exit status: 0 if every target is met, 1 if one is missed, 2 on a setup error.
set -euo pipefail

# shellcheck source=proxy-lib.sh
. "$(dirname "$0")/proxy-lib.sh"
conns=1000 rounds=10
parse_slices proxy-vs-peers.sh "$@"
bench_init proxy "nginx haproxy h2load openssl taskset python3 timeout curl"
chmod 755 "$scratch" # nginx workers run as an unprivileged user
names=(keyway-proxy keyway-proxy-async keyway-proxy-threads keyway-proxy-batch nginx haproxy)

echo "== machine: $machine"
echo "== $(openssl version); $(nginx -v 2>&1); $(haproxy -v | head -n1 | cut -d' ' -f1-3); $(h2load --version | head -n1)"
echo "== keyway-proxy: $proxy"

# One RSA-2048 certificate for everyone.
timeout 60 openssl req -x509 -newkey rsa:2048 -nodes -keyout "$scratch/rsa.key" \
	-out "$scratch/rsa.crt" -days 2 -subj /CN=localhost 2>/dev/null || die "openssl req failed"
cat "$scratch/rsa.crt" "$scratch/rsa.key" >"$scratch/rsa.pem"
chmod 644 "$scratch/rsa.key" "$scratch/rsa.pem" # scratch copy; nginx reads it as root anyway

for n in "${names[@]}"; do pport[$n]=$(free_port); done
for n in keyway-proxy keyway-proxy-async keyway-proxy-threads keyway-proxy-batch; do
	mport[$n]=$(free_port)
done
sport=$(free_port)
hsock=$scratch/haproxy.sock

# keyway-proxy: the no-offload baseline, sign inline on the loop thread; without and with
# SSL_MODE_ASYNC around the handshake.
start_peer_proxy() { # NAME ASYNC [FLAGS...]
	local name=$1 async=$2
	shift 2
	start "$name" "$server_cpu" "$proxy" --listen "127.0.0.1:${pport[$name]}" --cert "$scratch/rsa.crt" \
		--key "$scratch/rsa.key" --allow-group-readable-keys --respond --workers 1 --async "$async" \
		--keepalive-timeout 0 --resumption off --access-log off --metrics "127.0.0.1:${mport[$name]}" "$@"
}
start_peer_proxy keyway-proxy off --backend inline
start_peer_proxy keyway-proxy-async on --backend inline
# The key signed on one crypto thread (the same core): one op at a time, or queued ops in
# multi-buffer batches.
start_peer_proxy keyway-proxy-threads on --backend threads --crypto-threads 1 --rsa-batch off
start_peer_proxy keyway-proxy-batch on --backend threads --crypto-threads 1 --rsa-batch on

mkdir -p "$scratch/nginx/logs"
cat >"$scratch/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
master_process on;
pid $scratch/nginx/nginx.pid;
error_log $scratch/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    server {
        listen 127.0.0.1:${pport[nginx]} ssl;
        ssl_certificate $scratch/rsa.crt;
        ssl_certificate_key $scratch/rsa.key;
        ssl_protocols TLSv1.3;
        ssl_ecdh_curve X25519;
        ssl_session_cache off;
        ssl_session_tickets off;
        keepalive_timeout 0;
        location / { return 200 "ok\n"; }
    }
    server {
        listen 127.0.0.1:$sport;
        location / { stub_status; }
    }
}
EOF
start nginx "$server_cpu" nginx -p "$scratch/nginx" -c "$scratch/nginx/nginx.conf" \
	-e "$scratch/nginx/error.log"

cat >"$scratch/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 4096
    tune.ssl.cachesize 0
    stats socket $hsock mode 600 level admin
defaults
    mode http
    timeout client 10s
    timeout connect 5s
    timeout server 10s
    option httpclose
frontend fe
    bind 127.0.0.1:${pport[haproxy]} ssl crt $scratch/rsa.pem ssl-min-ver TLSv1.3 curves X25519 no-tls-tickets
    http-request return status 200 content-type text/plain string "ok\n"
EOF
start haproxy "$server_cpu" haproxy -db -f "$scratch/haproxy.cfg"

for n in "${names[@]}"; do
	wait_port "${pport[$n]}" || { cat "$scratch/$n.log" "$scratch/nginx/error.log" >&2 2>/dev/null; die "$n did not start"; }
done
wait_port "$sport" || die "nginx's status port did not open"
for n in keyway-proxy keyway-proxy-async keyway-proxy-threads keyway-proxy-batch; do
	wait_port "${mport[$n]}" || die "$n's metrics port did not open"
done
for _ in $(seq 50); do [ -S "$hsock" ] && break; sleep 0.1; done

# server_pids NAME: the processes whose CPU counts (nginx: master and its worker).
server_pids() {
	if [ "$1" = nginx ]; then
		echo "${child[nginx]} $(pgrep -P "${child[nginx]}" | tr '\n' ' ')"
	else
		echo "${child[$1]}"
	fi
}
# handshakes NAME: the server's own count of TLS connections (each gets exactly one).
handshakes() {
	case $1 in
	keyway-proxy*) metric "${mport[$1]}" keyway_proxy_handshakes_total ;;
	nginx) # accepts counts this status request too, on a plain port: take it off
		timeout 10 python3 - "$sport" <<'PY'
import sys, urllib.request
t = urllib.request.urlopen("http://127.0.0.1:%s/" % sys.argv[1], timeout=5).read().decode()
print(int(t.splitlines()[2].split()[0]))
PY
		;;
	haproxy)
		timeout 10 python3 - "$hsock" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b"show info\n")
data = s.makefile("rb").read()  # haproxy closes after the answer
print([l.split(":")[1].strip() for l in data.decode().splitlines() if l.startswith("CumSslConns:")][0])
PY
		;;
	esac
}

# What each server really negotiates and sends: protocol, tickets.
echo
printf "%-20s %-8s %-24s %-8s %s\n" server proto cipher group tickets
for n in "${names[@]}"; do
	out=$(printf 'GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' |
		timeout 10 openssl s_client -connect "127.0.0.1:${pport[$n]}" -msg -ign_eof \
			-ciphersuites TLS_AES_128_GCM_SHA256 -groups X25519 2>/dev/null) || true
	tickets=$(grep -c 'NewSessionTicket' <<<"$out" || true)
	proto=$(sed -n 's/^New, \(TLSv[0-9.]*\), Cipher is .*/\1/p' <<<"$out" | head -n1)
	cipher=$(sed -n 's/^New, TLSv[0-9.]*, Cipher is //p' <<<"$out" | head -n1)
	group=$(sed -n 's/^Server Temp Key: \([^,]*\).*/\1/p' <<<"$out" | head -n1)
	printf "%-20s %-8s %-24s %-8s %s\n" "$n" "${proto:-?}" "${cipher:-?}" "${group:-?}" "$tickets"
	echo "$n $tickets" >>"$scratch/tickets"
done

echo
echo "== warm-up"
warm_up 320 32 "${names[@]}"

open_dat proxy-vs-peers
{
	echo "# connections per slice $conns, rounds $rounds, h2load -c 32 on CPU $load_cpu, servers on CPU $server_cpu"
	echo "# round server ticks handshakes_counted h2load_succeeded h2load_failed wall_s tls"
} >>"$dat"

echo "== $rounds rounds of $conns connections per server"
for r in $(seq "$rounds"); do
	# Rotate the order so no server always runs first (or right after another).
	k=$(((r - 1) % ${#names[@]}))
	order=("${names[@]:$k}" "${names[@]:0:$k}")
	for n in "${order[@]}"; do
		# shellcheck disable=SC2046
		pids=$(server_pids "$n")
		h0=$(handshakes "$n")
		t0=$(cpu_ticks $pids)
		out=$(h2 "${pport[$n]}" "$conns" 32 2>&1) || die "h2load against $n failed: $out"
		t1=$(cpu_ticks $pids)
		h1=$(handshakes "$n")
		counted=$((h1 - h0))
		[ "$n" = nginx ] && counted=$((counted - 1))
		read -r ok failed wall tls _ <<<"$(h2_fields "$out")"
		echo "$r $n $((t1 - t0)) $counted $ok $failed $wall $tls" >>"$dat"
		printf "  round %d %-20s %5d ticks %6d handshakes (h2load: %s) %ss %s\n" "$r" "$n" \
			"$((t1 - t0))" "$counted" "$ok $failed" "$wall" "$tls"
	done
done

# How much of the batch server's signing went through batches (warm-up included).
batches=$(metric "${mport[keyway-proxy-batch]}" keyway_proxy_rsa_batches_total)
lanes=$(metric "${mport[keyway-proxy-batch]}" keyway_proxy_rsa_batch_lanes_total)
fallbacks=$(metric "${mport[keyway-proxy-batch]}" keyway_proxy_rsa_batch_fallbacks_total)
echo "# keyway-proxy-batch: batches $batches lanes $lanes fallbacks $fallbacks" >>"$dat"
stop_all

status=0
python3 - "$dat" "$tck" "$results" "$scratch/tickets" "$batches" "$lanes" "$fallbacks" <<'PY' || status=$?
import collections, statistics, sys
dat, tck, results, tickets_file = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
batches, lanes, fallbacks = (int(x) for x in sys.argv[5:8])
rows = [l.split() for l in open(dat) if not l.startswith("#")]
tickets = dict(l.split() for l in open(tickets_file))
names = ["keyway-proxy", "keyway-proxy-async", "keyway-proxy-threads", "keyway-proxy-batch",
         "nginx", "haproxy"]
labels = {"keyway-proxy": "keyway-proxy async off", "keyway-proxy-async":
          "keyway-proxy async on", "keyway-proxy-threads": "keyway-proxy threads",
          "keyway-proxy-batch": "keyway-proxy threads batch", "nginx": "nginx 1.22",
          "haproxy": "HAProxy 2.6"}
tot = collections.defaultdict(lambda: [0, 0, 0, 0, 0.0])
per_round = collections.defaultdict(dict)
bad = []
for r, n, ticks, counted, ok, failed, wall, tls in rows:
    t = tot[n]
    t[0] += int(ticks); t[1] += int(counted); t[2] += int(ok); t[3] += int(failed); t[4] += float(wall)
    per_round[n][r] = int(ticks) * 1e6 / tck / max(int(counted), 1)
    if int(counted) != int(ok) or int(failed) != 0:
        bad.append("round %s %s: server counted %s, h2load %s ok %s failed" % (r, n, counted, ok, failed))
    if tls != "TLSv1.3/TLS_AES_128_GCM_SHA256/X25519":
        bad.append("round %s %s: negotiated %s" % (r, n, tls))
us = {n: tot[n][0] * 1e6 / tck / tot[n][1] for n in names}
print()
print("| server | handshakes | verified | tickets | CPS (wall) | server CPU µs/handshake | per round (min-max) |")
print("|---|---:|---|---:|---:|---:|---|")
for n in names:
    t = tot[n]
    v = sorted(per_round[n].values())
    print("| %s | %d | %s | %s | %.0f | **%.1f** | %.0f-%.0f |" % (
        labels[n], t[1], "yes" if t[1] == t[2] and t[3] == 0 else "NO", tickets.get(n, "?"),
        t[2] / t[4] if t[4] else 0, us[n], v[0], v[-1]))
for b in bad:
    print("WARNING: " + b)
print()
print("threads batch: %d of %d signatures in %d multi-buffer batches (%.0f%%, %.2f lanes a batch)"
      % (lanes, lanes + fallbacks, batches, 100.0 * lanes / max(lanes + fallbacks, 1),
         lanes / max(batches, 1)))
with open(results + "/proxy-vs-peers.plotdata", "w") as f:
    for i, n in enumerate(names):
        v = list(per_round[n].values())
        f.write('%d "%s" %.1f %.1f %.1f\n' % (i, labels[n], us[n], min(v), max(v)))
print()
ok_all = not bad
pairs = [(n, peer) for n in ("keyway-proxy", "keyway-proxy-async", "keyway-proxy-threads",
                              "keyway-proxy-batch") for peer in ("nginx", "haproxy")]
pairs.append(("keyway-proxy-batch", "keyway-proxy"))  # batches against signing inline
for n, peer in pairs:
    ratio = us[n] / us[peer]
    rounds = sorted(per_round[n][r] / per_round[peer][r] for r in per_round[n])
    passed = ratio <= 1.0 and not bad
    ok_all &= passed
    print("RESULT %s_cpu_per_handshake_vs_%s %.3f 1.0 %s   (per round %.2f-%.2f, median %.2f)" % (
        n.replace("-", "_"), peer.replace("-", "_"), ratio, "PASS" if passed else "FAIL",
        rounds[0], rounds[-1], statistics.median(rounds)))
sys.exit(0 if ok_all else 1)
PY

bar_chart proxy-vs-peers 1200,540 5.6 0.6 '($1+0.17):($3+25)' \
	"Server CPU per full TLS 1.3 handshake: RSA-2048 (keyway-proxy inline or on a crypto thread), X25519, one core\n(bars: total CPU / total handshakes; whiskers: per-round min-max)\n$machine" \
	"µs of server CPU per handshake (lower is better)"
exit $status
