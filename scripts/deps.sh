#!/usr/bin/env bash
# deps.sh - install the Debian 12 packages Keyway builds, tests and benchmarks with.
# Installs only what is missing; needs root (or sudo) when something is.
#
#   scripts/deps.sh           install what is missing (apt-get, with sudo unless root)
set -euo pipefail
# --help: the header comment above, and nothing else (no build, no install).
case ${1:-} in -h | --help) sed -n '2,/^set -/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac

packages=(
	build-essential cmake ninja-build pkg-config  # toolchain
	clang libclang-rt-14-dev                      # libFuzzer harnesses, sanitizer runtimes
	libssl-dev openssl                            # OpenSSL 3.0: all crypto and TLS
	python3 python3-cryptography                  # the independent keyless client of the e2e tests
	libipsec-mb-dev                               # the QUIC ipsec-mb engine (AES-GCM bursts)
	gnuplot-nox                                   # benchmark plots
	util-linux procps                             # taskset, ps for benchmarks
	nginx curl                                    # the provider's e2e test with an unmodified server
	haproxy nghttp2-client                        # keyway-proxy benchmarks: HAProxy 2.6 peer, h2load
	strace                                        # system calls per handshake (bench/proxy-notify-poll.sh)
	help2man                                      # man pages from each program's --help
	clang-format                                  # the formatter CI checks (scripts/check-structure.sh)
	dpkg-dev debhelper man-db                     # the Debian package and its smoke test
)

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=
[ "$(id -u)" -eq 0 ] || sudo=sudo
echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q >&2
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
