"""keyway-proxy and a key no keyserver holds.

keywayd holds the P-256 key but not the RSA one. A proxy given the RSA
key's reference starts and serves its listener, then warns (the check runs
after start-up) naming the certificate file, the SKI and the keyservers; a
handshake on it fails and the access log line says why: detail=key-not-found
with the key's SKI. With --require-keys and the RSA certificate first
(the default), SNI skips it for the P-256 one and a handshake without SNI
fails with the same detail. Keyservers that do not answer are a different
warning: the key is not called missing.
"""

import glob
import os
import shutil
import signal
import socket
import ssl
import tempfile

import kwprov
from kwproxy import Checker, Proxy, free_port, skip_without_proxy, tls_connect, wait_for
from kwrelay import parse_access_log

skip_without_proxy()
c = Checker()
tmp = tempfile.mkdtemp(prefix="kw-proxy-keycheck-")


def clean_env():
    return {k: v for k, v in os.environ.items() if not k.startswith("KEYWAY_")}


def lines(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return parse_access_log(f.read())


def handshake_fails(port, crt, sni=True):
    try:
        if sni:
            s = tls_connect(port, crt)
        else:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            raw = socket.create_connection(("127.0.0.1", port), timeout=20)
            s = ctx.wrap_socket(raw, server_hostname=None)
    except (OSError, ConnectionError):
        return True
    s.close()
    return False


def missing_warning(p):
    return "no keyserver holds its key" in p.stderr()


s = kwprov.Setup(tmp, names=("rsa2048", "p256"))
aside = os.path.join(tmp, "aside")
os.makedirs(aside)
for f in glob.glob(os.path.join(tmp, "keys", "rsa2048*")):
    shutil.move(f, aside)  # keywayd will not hold this key (until it is put back)
missing_ski = s.keys["rsa2048"].ski.hex()

with s:
    ca = s.pki.ca_file
    flags = ["--servers", s.server(), "--ca", ca, "--client-cert", s.pki.client_cert_file,
             "--client-key", s.pki.client_key_file]

    # ---- a handshake on the missing key: the access log names the cause and the key ----
    alog = os.path.join(tmp, "access.log")
    with Proxy(s.refs["rsa2048"], s.certs["rsa2048"], "--workers", "1", "--access-log", alog,
               *flags, env=clean_env()) as p:
        c.check("listening on" in p.stderr(), "the listener opened before any answer")
        c.check(wait_for(lambda: missing_warning(p), 15), "a warning: no keyserver holds it",
                p.stderr())
        warn = [l for l in p.stderr().splitlines() if "no keyserver holds its key" in l]
        c.check(warn and s.certs["rsa2048"] in warn[0] and missing_ski in warn[0] and
                s.server() in warn[0], "the warning names the cert file, SKI and keyservers",
                warn)
        c.check(handshake_fails(p.port, ca), "a handshake on the missing key fails")
        c.check(wait_for(lambda: len(lines(alog)) >= 1, 10), "one access log line")
        got = lines(alog)[-1] if lines(alog) else {}
        c.eq(got.get("reason"), "handshake-failed", "access log: reason=handshake-failed")
        c.eq(got.get("detail"), "key-not-found", "access log: detail=key-not-found")
        c.eq(got.get("ski"), missing_ski, "access log: ski= the missing key's SKI")

    # ---- a key the keyserver holds: no detail ----
    alog2 = os.path.join(tmp, "access2.log")
    with Proxy(s.uris["p256"], s.certs["p256"], "--workers", "1", "--access-log", alog2,
               *flags, env=clean_env()) as p:
        sock = tls_connect(p.port, ca)
        sock.close()
        c.check(wait_for(lambda: len(lines(alog2)) >= 1, 10), "held key: one access log line")
        c.check(lines(alog2) and "detail" not in lines(alog2)[-1], "held key: no detail",
                lines(alog2))

    # ---- --require-keys: SNI skips the refused certificate; the default one fails ----
    alog3 = os.path.join(tmp, "access3.log")
    with Proxy(s.refs["rsa2048"], s.certs["rsa2048"], "--cert", s.certs["p256"], "--key",
               s.uris["p256"], "--require-keys", "--workers", "1", "--access-log", alog3,
               *flags, env=clean_env()) as p:
        c.check(wait_for(lambda: missing_warning(p), 15), "--require-keys: the warning",
                p.stderr())
        c.check("--require-keys: the certificate is not served" in p.stderr(),
                "--require-keys: the warning says the certificate is not served")
        c.check(wait_for(lambda: not handshake_fails(p.port, ca), 10),
                "--require-keys: SNI localhost skips the refused certificate")
        c.check(handshake_fails(p.port, ca, sni=False),
                "--require-keys: a handshake needing the refused certificate fails")
        c.check(wait_for(lambda: len(lines(alog3)) >= 2, 10), "--require-keys: access lines")
        got = lines(alog3)[-1] if lines(alog3) else {}
        c.eq((got.get("reason"), got.get("detail"), got.get("ski")),
             ("handshake-failed", "key-not-found", missing_ski),
             "--require-keys: access log detail=key-not-found ski=")
        c.eq(p.stop(), 0, "--require-keys: clean exit")

    # ---- without --require-keys the same SNI handshake gets the missing key and fails ----
    with Proxy(s.refs["rsa2048"], s.certs["rsa2048"], "--cert", s.certs["p256"], "--key",
               s.uris["p256"], "--workers", "1", "--access-log", "off", *flags,
               env=clean_env()) as p:
        c.check(wait_for(lambda: missing_warning(p), 15), "no --require-keys: the warning")
        c.check(handshake_fails(p.port, ca), "no --require-keys: the certificate is still served")

    # ---- --require-keys until a reload finds the key ----
    with Proxy(s.refs["rsa2048"], s.certs["rsa2048"], "--require-keys", "--workers", "1",
               "--access-log", "off", *flags, env=clean_env()) as p:
        c.check(wait_for(lambda: missing_warning(p), 15), "reload: refused at first")
        c.check(handshake_fails(p.port, ca, sni=False), "reload: not served before")
        for f in glob.glob(os.path.join(aside, "*")):
            shutil.move(f, os.path.join(tmp, "keys"))
        s.kd.signal(signal.SIGHUP)  # keywayd now holds the key
        c.check(wait_for(lambda: "reloaded:" in s.kd.stderr_text(), 10), "reload: keywayd")
        served = False
        for attempt in range(5):  # keywayd's workers switch to the new keys on their next turn
            p.proc.send_signal(signal.SIGHUP)
            served = wait_for(lambda: not handshake_fails(p.port, ca, sni=False), 3)
            if served:
                break
        c.check(served, "reload: the key found, the certificate is served again", p.stderr())

# ---- keyservers that do not answer: not "missing" ----
dead = "127.0.0.1:%d" % free_port()
with Proxy(s.uris["p256"], s.certs["p256"], "--workers", "1", "--require-keys",
           "--servers", dead, "--ca", s.pki.ca_file, "--client-cert", s.pki.client_cert_file,
           "--client-key", s.pki.client_key_file, "--timeout-ms", "1000",
           env=clean_env()) as p:
    c.check(wait_for(lambda: "cannot tell whether a keyserver holds" in p.stderr(), 15),
            "unreachable keyservers: their own warning", p.stderr())
    c.check(not missing_warning(p), "unreachable keyservers: the key is not called missing")

c.done()
