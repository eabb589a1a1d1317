#!/usr/bin/env bash
# package.sh - build the Debian package from a clean export of the source tree.
#
#   scripts/package.sh [--out DIR] [--timeout SECONDS]
#
# Exports the tracked files (committed, plus uncommitted changes to tracked
# files) without .git into a scratch folder, installs missing build
# dependencies (as root), runs `dpkg-buildpackage -b -us -uc` there (unit tests
# and fuzz-corpus replay only) and copies keyway_*.deb to DIR (default: out/).
# Prints the .deb's path last. The build is bounded by --timeout (default 1500 s).
set -euo pipefail
usage() {
	sed -n '2,10s/^# \{0,1\}//p' "$0"
	exit "${1:-2}"
}
out=
limit=1500
while [ $# -gt 0 ]; do
	case $1 in
	--out) [ $# -ge 2 ] || usage; out=$2; shift 2 ;;
	--timeout) [ $# -ge 2 ] || usage; limit=$2; shift 2 ;;
	-h | --help) usage 0 ;;
	*) usage ;;
	esac
done
[[ $limit =~ ^[1-9][0-9]*$ ]] || { echo "--timeout: expected seconds" >&2; exit 2; }
cd "$(dirname "$0")/.."
out=$(mkdir -p "${out:-out}" && cd "${out:-out}" && pwd)

for tool in git dpkg-buildpackage dpkg-parsechangelog; do
	command -v "$tool" >/dev/null || { echo "$tool is needed (apt-get install git dpkg-dev)" >&2; exit 1; }
done
version=$(dpkg-parsechangelog -l debian/changelog -S Version)
upstream=${version%-*}

scratch=$(mktemp -d "${TMPDIR:-/tmp}/keyway-package.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
src=$scratch/keyway-$upstream
mkdir "$src"
# A stash commit holds uncommitted changes to tracked files without touching them.
tree=$(git stash create)
git archive --format=tar "${tree:-HEAD}" | tar -x -C "$src"

if ! (cd "$src" && dpkg-checkbuilddeps >/dev/null 2>&1); then
	sudo=
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	echo "package: installing the build dependencies" >&2
	export DEBIAN_FRONTEND=noninteractive
	timeout 600 $sudo apt-get update -q >&2
	timeout 900 $sudo apt-get build-dep -y -q --no-install-recommends "$src" >&2
fi

start=$(date +%s)
if ! (cd "$src" && timeout "$limit" dpkg-buildpackage -b -us -uc >"$scratch/build.log" 2>&1); then
	tail -n 60 "$scratch/build.log" >&2
	echo "package: dpkg-buildpackage failed or passed ${limit} s (log tail above)" >&2
	exit 1
fi
echo "package: built in $(($(date +%s) - start)) s" >&2
cp "$scratch"/keyway_"$version"_*.deb "$out/"
cp "$scratch/build.log" "$out/keyway_${version}_build.log"
ls "$out"/keyway_"$version"_*.deb
