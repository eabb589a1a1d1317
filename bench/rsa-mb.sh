#!/usr/bin/env bash
# rsa-mb.sh - CPU per RSA sign of the multi-buffer engine against `openssl speed`.
#
#   bench/rsa-mb.sh [--repeat N] [--bits 2048|3072|4096] [--build DIR] [--results DIR]
#
# Alternates, REPEAT times (default 5) on one pinned CPU: `openssl speed -seconds 2 -mr
# rsaBITS` (user CPU per private-key op, from its +R line) and `keyway-rsa-bench speed`
# (process CPU per sign for full batches of 8 through kw_rsa_batch_run: PKCS#1 v1.5
# padding, blinding, the IFMA kernel, the public-exponent check, unblinding; and the bare
# kernel). Medians are compared: target batch ≤ 0.5 × openssl. Needs AVX-512 IFMA.
# Writes bench/results/rsa-mb-STAMP.dat and a PNG when gnuplot is installed.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
repeat=5 bits=2048 build= results=$here/results
while [ $# -gt 0 ]; do
	case $1 in
	-h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	--repeat) repeat=$2 ;;
	--bits) bits=$2 ;;
	--build) build=$2 ;;
	--results) results=$2 ;;
	*) echo "usage: $0 [--repeat N] [--bits 2048|3072|4096] [--build DIR] [--results DIR]" >&2; exit 2 ;;
	esac
	shift 2
done
[[ $repeat =~ ^[1-9][0-9]?$ && $bits =~ ^(2048|3072|4096)$ ]] || { echo "bad --repeat or --bits" >&2; exit 2; }
for d in "$build" "$root/build-release" "$root/build"; do
	[ -n "$d" ] && [ -x "$d/src/lib/keyway-rsa-bench" ] && { tool=$d/src/lib/keyway-rsa-bench; break; }
done
[ -n "${tool:-}" ] || { echo "keyway-rsa-bench not built (ninja -C build keyway-rsa-bench)" >&2; exit 2; }
cpu=$(($(nproc) > 1 ? 1 : 0))
mkdir -p "$results"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
dat=$results/rsa-mb-$stamp.dat
echo "# rep openssl_us batch8_us kernel8_us  (rsa$bits, CPU $cpu, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))" >"$dat"
for rep in $(seq "$repeat"); do
	o=$(timeout 120 taskset -c "$cpu" openssl speed -seconds 2 -mr "rsa$bits" 2>&1 |
		awk -F: '/^\+DTP:/ { op = $3 } /^\+R[0-9]*:/ && op == "private" { printf "%.1f", $NF / $2 * 1e6; exit }')
	m=$(timeout 300 taskset -c "$cpu" "$tool" speed --bits "$bits" --batches 200)
	b=$(awk '/batch8_sign_us/ { print $3 }' <<<"$m")
	k=$(awk '/kernel8_us/ { print $3 }' <<<"$m")
	[ -n "$o" ] && [ -n "$b" ] || { echo "measurement failed: $m" >&2; exit 1; }
	echo "$rep $o $b $k" | tee -a "$dat"
done
read -r om bm km < <(python3 - "$dat" <<'PY'
import statistics, sys
rows = [list(map(float, l.split()[1:])) for l in open(sys.argv[1]) if not l.startswith("#")]
print(*(statistics.median(c) for c in zip(*rows)))
PY
)
ratio=$(python3 -c "print(f'{$bm / $om:.3f}')")
printf '\nrsa%s, median of %s: openssl speed %.1f µs/sign, batch of 8 %.1f µs/sign (kernel alone %.1f), ratio %s\n' \
	"$bits" "$repeat" "$om" "$bm" "$km" "$ratio"
if command -v gnuplot >/dev/null; then
	gnuplot -e "set terminal png size 800,500; set output '${dat%.dat}.png';
		set title 'CPU per RSA-$bits sign (µs)'; set key top left; set xlabel 'repeat';
		plot '$dat' using 1:2 with linespoints title 'openssl speed',
		     '' using 1:3 with linespoints title 'kw\\_rsa\\_batch\\_run, batch of 8',
		     '' using 1:4 with linespoints title 'kernel alone'" || true
fi
ok=$(python3 -c "print('PASS' if $ratio <= 0.5 else 'FAIL')")
echo "RESULT rsa${bits}-batch8-vs-openssl $ratio 0.5 $ok"
[ "$ok" = PASS ]
