#!/usr/bin/env bash
# test.sh - install what is missing, build, and run the whole test suite.
#
#   scripts/test.sh              -Werror build in build/, then CTest
#   scripts/test.sh --sanitize   the same with ASan+UBSan, in build-asan/
set -euo pipefail
# --help: the header comment above, and nothing else (no build, no install).
case ${1:-} in -h | --help) sed -n '2,/^set -/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
cd "$(dirname "$0")/.."

build=build
flags=(-DKW_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo)
if [ "${1:-}" = "--sanitize" ]; then
	build=build-asan
	flags=(-DKW_WERROR=ON -DKW_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug)
	# Leaks fail the run; every sanitizer report aborts the process it is in.
	export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
	export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
fi

scripts/deps.sh
cmake -G Ninja -S . -B "$build" "${flags[@]}" >/dev/null
ninja -C "$build"
cd "$build"
ctest --output-on-failure --timeout 300 -j2
