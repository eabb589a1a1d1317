#!/usr/bin/env bash
# check-structure.sh - the structural rules CI can check mechanically:
#   1. every tracked .c/.h file is formatted by the checked-in .clang-format;
#   2. components keep to their own headers: a quoted #include in src/<X>/
#      never names a header living in another src/<Y>/, and no file outside
#      src/<X>/ (other than its white-box tests, tests/unit/<X>/ and the
#      fuzz harnesses of tests/fuzz/, and micro-benchmarks, bench/<X>/)
#      includes a header of src/<X>/
#      (public headers live in include/keyway/ and are included as
#      "keyway/x.h");
#   3. no #include cycle among the files of src/ and include/.
#
#   scripts/check-structure.sh            run all three from the repository root
#   CLANG_FORMAT=clang-format-15 scripts/check-structure.sh
#
# Prints each violation on a line of its own and exits 1 if there is any;
# exits 2 if a tool is missing.
set -u
# --help: the header comment above, and nothing else (no build, no install).
case ${1:-} in -h | --help) sed -n '2,/^set -/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
cd "$(dirname "$0")/.." || exit 2

CLANG_FORMAT=${CLANG_FORMAT:-clang-format}
status=0

echo "== clang-format"
if ! command -v "$CLANG_FORMAT" >/dev/null; then
	echo "check-structure: $CLANG_FORMAT not found" >&2
	exit 2
fi
unformatted=$(git ls-files -z '*.c' '*.h' |
	xargs -0 -r -n 20 "$CLANG_FORMAT" --dry-run -Werror 2>&1 |
	sed -n 's/^\([^:]*\):[0-9]*:[0-9]*: error: .*clang-format-violations.*/\1/p' | sort -u)
if [ -n "$unformatted" ]; then
	echo "$unformatted" | sed 's/^/not clang-format clean: /'
	echo "clang-format: $(echo "$unformatted" | wc -l) file(s) differ; run clang-format -i on them"
	status=1
else
	echo "clang-format: every file clean"
fi

echo "== includes"
python3 - <<'EOF' || status=1
import os
import re
import subprocess
import sys

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
files = subprocess.run(["git", "ls-files", "*.c", "*.h"], capture_output=True, text=True,
                       check=True).stdout.split()
present = set(files)
components = sorted({f.split("/")[1] for f in files if f.startswith("src/") and f.count("/") >= 2})


def component(path):
    """X for a file of src/X/ (its private headers live there), else None."""
    parts = path.split("/")
    return parts[1] if parts[0] == "src" and len(parts) > 2 else None


def resolve(path, name):
    """The tracked file a quoted include names: next to the includer, then
    include/, then the one src/<X>/ folder holding it (a private header
    reached through an include directory)."""
    here = os.path.normpath(os.path.join(os.path.dirname(path), name))
    if here in present:
        return here
    if os.path.join("include", name) in present:
        return os.path.join("include", name)
    hits = [os.path.join("src", c, name) for c in components
            if os.path.join("src", c, name) in present]
    return hits[0] if len(hits) == 1 else None


edges = {}
bad = []
for f in files:
    with open(f, errors="replace") as fh:
        text = fh.read()
    mine = component(f)
    for name in INCLUDE.findall(text):
        target = resolve(f, name)
        if target is None:
            continue
        owner = component(target)
        if f.startswith(("src/", "include/")) and target.startswith(("src/", "include/")):
            edges.setdefault(f, set()).add(target)
        if owner is None or owner == mine:
            continue
        if f.startswith(("tests/unit/%s/" % owner, "bench/%s/" % owner, "tests/fuzz/")):
            continue
        bad.append('%s includes "%s", a private header of src/%s/' % (f, name, owner))

for b in bad:
    print(b)
print("includes: %d include(s) of another component's private header" % len(bad))

# Include cycles: depth-first search, each cycle reported once.
cycles, state, stack = set(), {}, []


def visit(n):
    state[n] = 1
    stack.append(n)
    for m in sorted(edges.get(n, ())):
        if state.get(m) == 1:
            cyc = stack[stack.index(m):]
            i = cyc.index(min(cyc))
            cycles.add(tuple(cyc[i:] + cyc[:i]))
        elif m not in state:
            visit(m)
    stack.pop()
    state[n] = 2


sys.setrecursionlimit(10000)
for n in sorted(edges):
    if n not in state:
        visit(n)
for c in sorted(cycles):
    print("include cycle: " + " -> ".join(c + (c[0],)))
print("cycles: %d #include cycle(s) among src/ and include/" % len(cycles))
sys.exit(1 if bad or cycles else 0)
EOF

if [ "$status" -ne 0 ]; then
	echo "check-structure: FAILED (see above)"
else
	echo "check-structure: all rules hold"
fi
exit "$status"
