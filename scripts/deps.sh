#!/usr/bin/env bash
# deps.sh - install the Debian 12 packages Keyway builds, tests and benchmarks with.
# Installs only what is missing; needs root (or sudo) when something is.
#
#   scripts/deps.sh           install what is missing (apt-get, with sudo unless root)
#
# Peers that Debian ships as services (nginx, haproxy, prometheus) are only programs to the
# tests and benchmarks, which start their own instances on free ports: their
# services are neither started by the install nor left enabled.
set -euo pipefail
# --help: the header comment above, and nothing else (no build, no install).
case ${1:-} in -h | --help) sed -n '2,/^set -/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac

packages=(
	build-essential cmake ninja-build pkg-config  # toolchain
	clang libclang-rt-14-dev                      # libFuzzer harnesses, sanitizer runtimes
	libssl-dev openssl                            # OpenSSL 3.0: all crypto and TLS
	python3 python3-cryptography                  # the independent keyless client of the e2e tests
	libipsec-mb-dev                               # the QUIC ipsec-mb engine (AES-GCM bursts)
	libp11-kit-dev                                # keywayd: PKCS#11 URIs (RFC 7512) and pkcs11.h
	softhsm2                                      # a PKCS#11 token for keywayd's tests and benchmark
	gnuplot-nox                                   # benchmark plots
	util-linux procps                             # taskset, ps for benchmarks
	nginx curl                                    # the provider's e2e test with an unmodified server
	haproxy nghttp2-client                        # keyway-proxy benchmarks: HAProxy 2.6 peer, h2load
	prometheus                                    # promtool and a real scraper for the metrics e2e test
	strace                                        # system calls per handshake (bench/proxy-notify-poll.sh)
	valgrind                                      # the RSA kernel's constant-time test (ctest -L ctgrind)
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

# policy-rc.d answering 101 ("action forbidden") keeps maintainer scripts from
# starting any service during this install; an existing one is left alone.
policy=/usr/sbin/policy-rc.d
own_policy=
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
	$sudo chmod 0755 "$policy"
	own_policy=1
fi
remove_policy() { [ -z "$own_policy" ] || $sudo rm -f "$policy"; }
trap remove_policy EXIT

$sudo apt-get update -q >&2
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >&2

# disable_service NAME: not started at boot. systemctl disables offline (no
# running systemd needed) and syncs the SysV links; update-rc.d where it is absent.
disable_service() {
	dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed" || return 0
	if command -v systemctl >/dev/null; then
		$sudo systemctl disable "$1.service" >/dev/null 2>&1 || true
	elif [ -e "/etc/init.d/$1" ]; then
		$sudo update-rc.d "$1" disable >/dev/null 2>&1 || true
	fi
}
for s in nginx haproxy prometheus; do
	disable_service "$s"
done
