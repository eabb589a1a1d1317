#!/usr/bin/env bash
# demo.sh - the main job on a fresh Debian 12 machine: install what is missing, build,
# install the programs to /usr/local/bin, then run scripts/main-job.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
cmake -G Ninja -S . -B build-release -DCMAKE_BUILD_TYPE=Release >/dev/null
ninja -C build-release
sudo=
[ "$(id -u)" -eq 0 ] || sudo=sudo
$sudo cmake --install build-release --prefix /usr/local >/dev/null
echo "installed: $(cd /usr/local/bin && ls keyway* 2>/dev/null | tr '\n' ' ')"
exec scripts/main-job.sh "$@"
