#!/bin/sh
# ctgrind.sh CLEAN LEAKY - the kernel's constant-time test under Valgrind memcheck.
#
# CLEAN is the emulated kernel with the key marked undefined: memcheck must
# report no error at all (no branch, no address computed from the key or the
# data) and the results must equal OpenSSL's. LEAKY is the same kernel built
# with a deliberate key-dependent branch (KW_MB_CT_LEAK): memcheck must report
# it, which shows the test can fail. Exit 77 (skipped) without valgrind.
set -u
clean=$1 leaky=$2
command -v valgrind >/dev/null 2>&1 || { echo "ctgrind: valgrind not installed, skipped"; exit 77; }
log=$(mktemp) || exit 1
trap 'rm -f "$log"' EXIT
vg() { valgrind --tool=memcheck --error-exitcode=99 --log-file="$log" "$@"; }

vg "$clean"
rc=$?
if [ $rc -ne 0 ]; then
	cat "$log"
	echo "ctgrind: FAIL: the kernel is not clean under memcheck (exit $rc)"
	exit 1
fi
grep -q "ERROR SUMMARY: 0 errors" "$log" || { cat "$log"; echo "ctgrind: FAIL: errors reported"; exit 1; }
echo "ctgrind: clean kernel: no secret-dependent branch or address"

vg "$leaky"
rc=$?
if [ $rc -ne 99 ] || ! grep -q "Conditional jump or move depends on uninitialised value" "$log"; then
	cat "$log"
	echo "ctgrind: FAIL: the deliberately leaky kernel was not reported (exit $rc)"
	exit 1
fi
echo "ctgrind: leaky kernel reported, as it must be"
