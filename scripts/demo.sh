#!/usr/bin/env bash
# demo.sh - the main job on a fresh Debian 12 machine: install what is missing, build,
# install the programs to /usr/local/bin, then run scripts/main-job.sh.
set -euo pipefail
# --help: the header comment above, and nothing else (no build, no install).
case ${1:-} in -h | --help) sed -n '2,/^set -/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
cd "$(dirname "$0")/.."

scripts/deps.sh
cmake -G Ninja -S . -B build-release -DCMAKE_BUILD_TYPE=Release >/dev/null
ninja -C build-release
sudo=
[ "$(id -u)" -eq 0 ] || sudo=sudo
$sudo cmake --install build-release --prefix /usr/local >/dev/null
echo "installed: $(cd /usr/local/bin && ls keyway* 2>/dev/null | tr '\n' ' ')"
exec scripts/main-job.sh "$@"
