"""keyway-proxy over IPv6: listening on [::1], relaying to an upstream on
[::1] with a PROXY v2 header of the TCP-over-IPv6 family carrying the
client's IPv6 address and port, and the access log writing the client as
[addr]:port. Skipped when the machine has no IPv6 loopback.
"""

import os
import shutil
import socket
import ssl
import sys
import tempfile

from kwproxy import Checker, Proxy, make_cert, skip_without_proxy, wait_for
from kwrelay import Upstream, parse_access_log, parse_pp2, recv_exact

skip_without_proxy()
try:
    probe = socket.socket(socket.AF_INET6)
    probe.bind(("::1", 0))
    probe.close()
except OSError:
    print("skipped: no IPv6 loopback")
    sys.exit(77)


c = Checker()
tmp = tempfile.mkdtemp(prefix="kw-proxy-ipv6-")
key, crt = make_cert(tmp, "ec", "ec")
seen = {}


def echo(conn, i):
    seen["pp2"] = parse_pp2(conn)
    msg = recv_exact(conn, 5)
    conn.sendall(msg.upper())
    conn.settimeout(10)
    conn.recv(1)  # until the proxy closes


up = Upstream(echo, host="::1")
alog = os.path.join(tmp, "access.log")
p = Proxy(key, crt, "--send-proxy-v2", "--workers", "1", "--access-log", alog, metrics=False,
          host="::1", mode=["--upstream", "[::1]:%d" % up.port])
port = p.port
try:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(crt)
    raw = socket.create_connection(("::1", port), timeout=20)
    s = ctx.wrap_socket(raw, server_hostname="localhost")
    client = s.getsockname()
    s.sendall(b"hello")
    got = b""
    while len(got) < 5:
        d = s.recv(5 - len(got))
        if not d:
            break
        got += d
    c.eq(got, b"HELLO", "relayed over IPv6 both ways")
    s.close()
    pp = seen.get("pp2", {})
    c.eq(pp.get("fam"), 0x21, "PROXY v2: TCP over IPv6")
    c.eq(pp.get("src"), ("::1", client[1]), "PROXY v2: source = the client's IPv6 address, port")
    c.eq(pp.get("dst"), ("::1", port), "PROXY v2: destination = the proxy's IPv6 listener")
    c.check(wait_for(lambda: os.path.exists(alog) and
                     parse_access_log(open(alog).read())), "access line written")
    lines = parse_access_log(open(alog).read())
    c.eq(lines[0].get("client") if lines else None, "[::1]:%d" % client[1],
         "access log: the client as [addr]:port")
finally:
    c.eq(p.stop(), 0, "clean exit")
    up.close()
c.check(not up.errors, "upstream handler without error", up.errors)
shutil.rmtree(tmp, ignore_errors=True)
c.done()
