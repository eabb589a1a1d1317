#!/usr/bin/env bash
# package-smoke.sh - install the keyway .deb, run what it installed, remove it.
#
#   scripts/package-smoke.sh [DEB]      (as root; DEB defaults to the newest out/keyway_*.deb)
#
# Installs DEB with apt-get; checks every program's --version (the revision of a
# package build is its package version), every man page (man -w), the service
# users, that neither unit is enabled or running, and that OpenSSL loads
# keyway.so from its module directory. Then, on a demo PKI in a scratch folder,
# starts /usr/bin/keywayd and /usr/bin/keyway-proxy with the packaged
# /etc/keyway configs (addresses and files overridden by flags) on 127.0.0.1
# free ports, relays one HTTPS request through the proxy, whose key only
# keywayd holds, to a local upstream with curl, checks that SIGHUP reopens the
# access log as logrotate expects, stops both, and finally removes and purges
# the package and checks its files are gone. Every step is bounded in time; on
# any failure the package is still purged.
set -euo pipefail
usage() {
	sed -n '2,16s/^# \{0,1\}//p' "$0"
	exit "${1:-2}"
}
case ${1:-} in -h | --help) usage 0 ;; esac
[ $# -le 1 ] || usage
here=$(cd "$(dirname "$0")" && pwd)
deb=${1:-$(ls -t "$here"/../out/keyway_*.deb 2>/dev/null | head -n1)}
[ -n "$deb" ] && [ -f "$deb" ] || { echo "no .deb given and none in out/ (run scripts/package.sh)" >&2; exit 2; }
deb=$(cd "$(dirname "$deb")" && pwd)/$(basename "$deb")
[ "$(id -u)" -eq 0 ] || { echo "package-smoke.sh installs a package: run it as root" >&2; exit 2; }
for tool in apt-get dpkg-deb curl openssl python3 man timeout; do
	command -v "$tool" >/dev/null || { echo "$tool is needed" >&2; exit 1; }
done
version=$(dpkg-deb -f "$deb" Version)
programs=(keywayd keyway-proxy keyway keyway-bench keyway-relay keyway-h3)
export DEBIAN_FRONTEND=noninteractive

scratch=$(mktemp -d /tmp/keyway-smoke.XXXXXX)
chmod 755 "$scratch"
pids=()
failed=0
fail() {
	echo "FAIL $*" >&2
	failed=1
}
ok() { echo "ok   $*"; }
stop_all() {
	local p
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do
		for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	pids=()
}
purge() {
	dpkg-query -W -f='${Status}' keyway 2>/dev/null | grep -q "installed\|config-files" || return 0
	timeout 300 apt-get purge -y -q keyway >"$scratch/purge.log" 2>&1 || cat "$scratch/purge.log" >&2
}
cleanup() {
	stop_all
	purge
	rm -rf "$scratch"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_port() { # PORT NAME: until it accepts, at most 10 s
	timeout 10 bash -c "until (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null; do sleep 0.05; done" ||
		{ fail "$2 did not start:"; cat "$scratch/$2.log" >&2; exit 1; }
}
wait_for() { # SECONDS CMD...: until CMD succeeds
	local until=$(($(date +%s) + $1))
	shift
	until "$@"; do
		[ "$(date +%s)" -lt "$until" ] || return 1
		sleep 0.1
	done
}

echo "== install $(basename "$deb")"
timeout 300 apt-get install -y -q "$deb" >"$scratch/install.log" 2>&1 ||
	{ cat "$scratch/install.log" >&2; fail "apt-get install"; exit 1; }
ok "apt-get install ./$(basename "$deb")"

# man_finds SECTION NAME: man finds the package's page (among all it finds: a copy
# installed from source under /usr/local may come first, and that is the admin's).
man_finds() {
	local want=/usr/share/man/man$1/$2.$1.gz pages
	pages=$(man -a -w "$1" "$2" 2>/dev/null || true)
	if printf '%s\n' "$pages" | grep -qxF "$want"; then
		ok "man -w $1 $2: $want"
	else
		fail "man -w $1 $2: '$(echo $pages)' (expected $want among them)"
	fi
}
for p in "${programs[@]}"; do
	[ -x "/usr/bin/$p" ] || fail "/usr/bin/$p is not installed"
	line=$(timeout 10 "/usr/bin/$p" --version) || fail "$p --version exits non-zero"
	if [[ $line =~ ^$p\ [0-9]+\.[0-9]+\.[0-9]+\ \(package\ ${version//./\\.}\)\ OpenSSL\ [0-9.]+\;\ features:\ .+$ ]]; then
		ok "$line"
	else
		fail "$p --version: '$line' (expected the revision 'package $version')"
	fi
	man_finds 1 "$p"
done
man_finds 5 keyway-provider

for u in keywayd keyway-proxy; do
	getent passwd "$u" >/dev/null && ok "user $u exists" || fail "user $u missing"
	id -nG "$u" 2>/dev/null | grep -qw keyway && ok "$u is in group keyway" || fail "$u not in group keyway"
	unit=/lib/systemd/system/$u.service
	[ -f "$unit" ] && ok "$unit" || fail "$unit missing"
	state=$(systemctl is-enabled "$u.service" 2>/dev/null || true)
	[ "$state" != enabled ] && ok "$u.service not enabled ($state)" || fail "$u.service is enabled"
	! systemctl is-active --quiet "$u.service" 2>/dev/null && ok "$u.service not running" ||
		fail "$u.service is running"
done
for f in keywayd.conf proxy.conf openssl.cnf; do
	grep -qx "/etc/keyway/$f" /var/lib/dpkg/info/keyway.conffiles && ok "/etc/keyway/$f is a conffile" ||
		fail "/etc/keyway/$f is not a conffile"
done
[ -f /usr/lib/sysusers.d/keyway.conf ] && ok "sysusers.d/keyway.conf" || fail "no sysusers.d/keyway.conf"
[ -f /etc/logrotate.d/keyway ] && ok "logrotate.d/keyway" || fail "no logrotate.d/keyway"

modules=$(openssl version -m | sed -n 's/^MODULESDIR: "\(.*\)"$/\1/p')
[ -f "$modules/keyway.so" ] && ok "keyway.so in $modules" || fail "no keyway.so in '$modules'"
out=$(timeout 20 openssl list -providers -provider keyway 2>&1) && grep -q "^  keyway$" <<<"$out" &&
	grep -A3 "^  keyway$" <<<"$out" | grep -q "status: active" && ok "openssl loads the keyway provider" ||
	fail "openssl list -providers -provider keyway: $out"

echo "== keywayd and keyway-proxy from /usr/bin on a demo PKI in $scratch"
"$here/demo-pki.sh" "$scratch/pki"
pki=$scratch/pki
/usr/bin/keyway ref --cert "$pki/certs/rsa2048.crt" >"$scratch/rsa2048.ref"
printf 'hello through keyway\n' >"$scratch/hello.txt"
kport=$(free_port) kmport=$(free_port) pport=$(free_port) pmport=$(free_port) uport=$(free_port)

# The packaged configuration, with addresses and files overridden by flags.
timeout 120 /usr/bin/keywayd --config /etc/keyway/keywayd.conf --keys "$pki/keys" \
	--listen "127.0.0.1:$kport" --tls-cert "$pki/server.crt" --tls-key "$pki/server.key" \
	--client-ca "$pki/ca.crt" --unix "$scratch/keywayd.sock" --pid-file "$scratch/keywayd.pid" \
	--metrics "127.0.0.1:$kmport" --workers 1 2>"$scratch/keywayd.log" &
pids+=($!)
wait_port "$kport" keywayd
ok "keywayd listens on 127.0.0.1:$kport and $scratch/keywayd.sock"

(cd "$scratch" && exec timeout 120 python3 -m http.server --bind 127.0.0.1 "$uport") \
	>"$scratch/upstream.log" 2>&1 &
pids+=($!)
wait_port "$uport" upstream

timeout 120 /usr/bin/keyway-proxy --config /etc/keyway/proxy.conf --listen "127.0.0.1:$pport" \
	--cert "$pki/certs/rsa2048.crt" --key "$scratch/rsa2048.ref" --upstream "127.0.0.1:$uport" \
	--servers "unix:$scratch/keywayd.sock" --access-log "$scratch/access.log" \
	--metrics "127.0.0.1:$pmport" --workers 1 2>"$scratch/keyway-proxy.log" &
proxy=$!
pids+=($proxy)
wait_port "$pport" keyway-proxy
ok "keyway-proxy listens on 127.0.0.1:$pport (key on keywayd)"

get() { # the file through the proxy, TLS verified against the demo CA
	curl -sS --max-time 10 --cacert "$pki/ca.crt" "https://127.0.0.1:$pport/hello.txt"
}
body=$(get 2>&1) && [ "$body" = "hello through keyway" ] && ok "curl through keyway-proxy: '$body'" ||
	fail "curl through keyway-proxy: '$body'"
signs=$(curl -s --max-time 5 "http://127.0.0.1:$kmport/metrics" |
	awk '$1 ~ /^keyless_requests\{opcode="OpRSA/ { n += $2 } END { print n + 0 }')
[ "$signs" -ge 1 ] && ok "keywayd signed the handshake ($signs RSA requests)" ||
	fail "keywayd's metrics show no RSA request"

# logrotate's postrotate sends SIGHUP: the proxy must write to a new file after it.
wait_for 5 grep -q "reason=" "$scratch/access.log" && ok "access log line written" ||
	fail "no access log line"
mv "$scratch/access.log" "$scratch/access.log.1"
kill -HUP "$proxy"
wait_for 5 test -e "$scratch/access.log" && ok "SIGHUP reopened the access log" ||
	fail "SIGHUP did not reopen the access log"
get >/dev/null 2>&1 || fail "curl after SIGHUP"
wait_for 5 grep -q "reason=" "$scratch/access.log" && ok "the next line goes to the new file" ||
	fail "no line in the reopened access log"

stop_all
ok "keywayd and keyway-proxy stopped"

echo "== remove"
timeout 300 apt-get remove -y -q keyway >"$scratch/remove.log" 2>&1 ||
	{ cat "$scratch/remove.log" >&2; fail "apt-get remove"; }
for p in "${programs[@]}"; do
	[ ! -e "/usr/bin/$p" ] || fail "/usr/bin/$p is still there after remove"
done
[ ! -e "$modules/keyway.so" ] || fail "keyway.so is still there after remove"
[ ! -e /lib/systemd/system/keywayd.service ] || fail "keywayd.service is still there after remove"
[ -f /etc/keyway/keywayd.conf ] && ok "apt-get remove: programs gone, configuration kept" ||
	fail "apt-get remove took /etc/keyway/keywayd.conf"
timeout 300 apt-get purge -y -q keyway >"$scratch/purge.log" 2>&1 ||
	{ cat "$scratch/purge.log" >&2; fail "apt-get purge"; }
[ ! -e /etc/keyway ] && [ ! -e /etc/logrotate.d/keyway ] && ok "apt-get purge: /etc/keyway gone" ||
	fail "apt-get purge left /etc/keyway or /etc/logrotate.d/keyway"

if [ "$failed" -ne 0 ]; then
	echo "package smoke test: FAILED" >&2
	exit 1
fi
echo "package smoke test: passed"
