"""keyway-proxy and a key no keyserver holds.

keywayd holds the P-256 key but not the RSA one. A proxy given the RSA
key's reference keeps serving its listener; a handshake on it fails and the
access log line says why: detail=key-not-found with the key's SKI.
"""

import glob
import os
import re
import tempfile

import kwprov
from kwproxy import Checker, Proxy, skip_without_proxy, tls_connect, wait_for
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


def handshake_fails(port, crt):
    try:
        s = tls_connect(port, crt)
    except (OSError, ConnectionError):
        return True
    s.close()
    return False


s = kwprov.Setup(tmp, names=("rsa2048", "p256"))
for f in glob.glob(os.path.join(tmp, "keys", "rsa2048*")):
    os.remove(f)  # keywayd will not hold this key
missing_ski = s.keys["rsa2048"].ski.hex()

with s:
    ca = s.pki.ca_file
    flags = ["--servers", s.server(), "--ca", ca, "--client-cert", s.pki.client_cert_file,
             "--client-key", s.pki.client_key_file]

    # ---- a handshake on the missing key: the access log names the cause and the key ----
    alog = os.path.join(tmp, "access.log")
    with Proxy(s.refs["rsa2048"], s.certs["rsa2048"], "--workers", "1", "--access-log", alog,
               *flags, env=clean_env()) as p:
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

c.done()
