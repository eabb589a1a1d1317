#!/usr/bin/env bash
# fuzz.sh - runs every libFuzzer harness of tests/fuzz/ in turn, for a bounded time each.
#
#   bench/fuzz.sh [--minutes N] [--build DIR] [--only LIST] [--update-corpus] [--results DIR]
#
# --minutes N      time per harness, fractions allowed (default 1)
# --build DIR      a build configured with clang and -DKW_FUZZ=ON; without it the
#                  script configures and builds build-fuzz/ itself (clang, KW_FUZZ=ON)
# --only LIST      a comma-separated subset of harness names (default: all built)
# --update-corpus  merge the inputs that reach new coverage back into
#                  tests/fuzz/corpus/<name>/ (libFuzzer -merge=1); otherwise the
#                  committed corpus is never written
# --results DIR    where the table (.dat) goes (default bench/results)
#
# Each harness runs on a scratch copy of its committed corpus (libFuzzer adds
# new inputs to its first directory) with -max_total_time, one process at a
# time (the harnesses are single-threaded). A finding is a crash, leak,
# timeout or out-of-memory input written by libFuzzer, or a non-zero exit;
# its reproducers are copied to DIR/fuzz-findings/<name>/ next to the build.
# Prints a table of executions and findings per harness and RESULT lines.
# Exit status: 0 with no finding, 1 with a finding, 2 on a setup error.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
MINUTES=1
BUILD=
ONLY=
UPDATE=0
RESULTS=$ROOT/bench/results

die() {
	echo "fuzz.sh: $*" >&2
	exit 2
}

while [ $# -gt 0 ]; do
	case $1 in
	--minutes) MINUTES=${2:?--minutes needs a value}; shift 2 ;;
	--build) BUILD=${2:?--build needs a directory}; shift 2 ;;
	--only) ONLY=${2:?--only needs a list}; shift 2 ;;
	--update-corpus) UPDATE=1; shift ;;
	--results) RESULTS=${2:?--results needs a directory}; shift 2 ;;
	-h | --help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) die "unknown option '$1' (see --help)" ;;
	esac
done
SECONDS_EACH=$(awk -v m="$MINUTES" 'BEGIN { s = int(m * 60 + 0.5); if (s < 1) exit 1; print s }') ||
	die "--minutes '$MINUTES' is not a positive number"

if [ -z "$BUILD" ]; then
	BUILD=$ROOT/build-fuzz
	command -v clang >/dev/null || die "clang not found (apt-get install clang)"
	CC=clang cmake -G Ninja -S "$ROOT" -B "$BUILD" -DKW_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
		>/dev/null || die "configuring $BUILD failed"
	targets=$(ninja -C "$BUILD" -t targets all | sed -n 's/^\(fuzz_[a-z0-9]*\): .*/\1/p' |
		grep -v '_replay$' | sort -u)
	[ -n "$targets" ] || die "no fuzz targets in $BUILD (is the compiler clang?)"
	# shellcheck disable=SC2086
	timeout 1800 ninja -C "$BUILD" -j2 $targets >/dev/null || die "building the harnesses failed"
fi
[ -d "$BUILD/tests/fuzz" ] || die "$BUILD/tests/fuzz does not exist: is $BUILD a build of this tree?"
BUILD=$(cd "$BUILD" && pwd) # the harnesses run from their scratch directories
BIN=$BUILD/tests/fuzz

names=()
for corpus in "$ROOT"/tests/fuzz/corpus/*/; do
	name=$(basename "$corpus")
	if [ -n "$ONLY" ] && [[ ",$ONLY," != *",$name,"* ]]; then
		continue
	fi
	if [ -x "$BIN/fuzz_$name" ]; then
		names+=("$name")
	else
		echo "fuzz.sh: skipping $name: $BIN/fuzz_$name was not built" >&2
	fi
done
[ ${#names[@]} -gt 0 ] || die "no harness to run"

SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/keyway-fuzz.XXXXXX")
trap 'rm -rf "$SCRATCH"' EXIT
FINDINGS_DIR=$BUILD/fuzz-findings
mkdir -p "$RESULTS"
DAT=$RESULTS/fuzz-$(date -u +%Y-%m-%dT%H%M%SZ).dat

printf '%-10s %8s %14s %10s %14s %9s\n' harness seconds executions exec/s corpus findings |
	tee "$DAT"
total=0
failed=0
for name in "${names[@]}"; do
	work=$SCRATCH/$name
	mkdir -p "$work/corpus" "$work/artifacts"
	cp "$ROOT/tests/fuzz/corpus/$name/." "$work/corpus/" -r
	before=$(find "$work/corpus" -type f | wc -l)
	rm -rf "${FINDINGS_DIR:?}/$name" # a previous run's reproducers are not this run's
	# The harnesses' own stdout (e.g. --help text of the config parser) is noise;
	# libFuzzer reports on stderr.
	status=0
	(cd "$work" && timeout -k 10 $((SECONDS_EACH + 120)) "$BIN/fuzz_$name" \
		-max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix="$work/artifacts/" "$work/corpus" >/dev/null 2>"$work/log") || status=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log" | tail -1)
	execs=${execs:-0}
	after=$(find "$work/corpus" -type f | wc -l)
	found=$(find "$work/artifacts" -type f | wc -l)
	if [ "$status" -ne 0 ] && [ "$found" -eq 0 ]; then
		found=1 # died without an artifact (e.g. killed by timeout): still a finding
	fi
	if [ "$found" -gt 0 ]; then
		failed=1
		mkdir -p "$FINDINGS_DIR/$name"
		cp "$work/artifacts/." "$FINDINGS_DIR/$name/" -r
		cp "$work/log" "$FINDINGS_DIR/$name/fuzz.log"
		echo "fuzz.sh: $name: exit $status, reproducers and log in $FINDINGS_DIR/$name/" >&2
		grep -m 5 -E 'ERROR: |SUMMARY: |==[0-9]+==' "$work/log" >&2 || true
	fi
	if [ "$UPDATE" -eq 1 ]; then
		"$BIN/fuzz_$name" -merge=1 "$ROOT/tests/fuzz/corpus/$name" "$work/corpus" \
			>/dev/null 2>"$work/merge.log" || die "merging $name's corpus failed (see $work/merge.log)"
	fi
	total=$((total + execs))
	printf '%-10s %8d %14d %10d %6d -> %5d %9d\n' "$name" "$SECONDS_EACH" "$execs" \
		$((execs / SECONDS_EACH)) "$before" "$after" "$found" | tee -a "$DAT"
done
printf '%-10s %8d %14d\n' total $((SECONDS_EACH * ${#names[@]})) "$total" | tee -a "$DAT"

echo "RESULT fuzz_executions $total - INFO"
if [ "$failed" -ne 0 ]; then
	echo "RESULT fuzz_findings >0 0 FAIL"
	exit 1
fi
echo "RESULT fuzz_findings 0 0 PASS"
