#!/usr/bin/env bash
# rsa-ct.sh - dudect-style constant-time test of the real AVX-512 IFMA RSA kernel.
#
#   bench/rsa-ct.sh [--measurements N] [--fixed-keys 1|8] [--build DIR] [--results DIR]
#
# keyway-rsa-bench dudect times N calls (default 1,000,000; about 25 minutes of one
# CPU) of the 8-lane RSA-2048 kernel with rdtsc, each call's lanes all from one class:
# copies of one fixed key, or random keys (32 structures each, so both classes touch
# as much memory), classes interleaved at random, inputs random in both. Welch's t
# between the classes, raw and with the measurements cropped at the 50th, 90th and
# 99th percentiles of a 10,000-call pilot (as dudect does). PASS if every |t| < 4.5.
# --fixed-keys 8 makes the fixed class a different fixed key per lane instead of one
# key in all eight: it separates a dependence on the key from one on identical lanes.
# Not a CTest test: it is long and needs IFMA. Writes bench/results/rsa-ct-STAMP.txt.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
n=1000000 fixed=1 build= results=$here/results
while [ $# -gt 0 ]; do
	case $1 in
	-h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	--measurements) n=$2 ;;
	--fixed-keys) fixed=$2 ;;
	--build) build=$2 ;;
	--results) results=$2 ;;
	*) echo "usage: $0 [--measurements N] [--fixed-keys 1|8] [--build DIR] [--results DIR]" >&2; exit 2 ;;
	esac
	shift 2
done
[[ $n =~ ^[1-9][0-9]{3,8}$ ]] || { echo "--measurements: 1000 to 999999999" >&2; exit 2; }
[[ $fixed =~ ^(1|8)$ ]] || { echo "--fixed-keys: 1 or 8" >&2; exit 2; }
for d in "$build" "$root/build-release" "$root/build"; do
	[ -n "$d" ] && [ -x "$d/src/lib/keyway-rsa-bench" ] && { tool=$d/src/lib/keyway-rsa-bench; break; }
done
[ -n "${tool:-}" ] || { echo "keyway-rsa-bench not built (ninja -C build keyway-rsa-bench)" >&2; exit 2; }
cpu=$(($(nproc) > 1 ? 1 : 0))
mkdir -p "$results"
out=$results/rsa-ct-$(date -u +%Y%m%dT%H%M%SZ).txt
taskset -c "$cpu" "$tool" dudect --measurements "$n" --fixed-keys "$fixed" | tee "$out"
grep -q '^RESULT rsa-ct-max-t .* PASS$' "$out"
