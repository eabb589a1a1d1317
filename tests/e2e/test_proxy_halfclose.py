"""keyway-proxy --upstream with a TCP-level half-close: the client sends its
request and shuts its socket down for writing without a close_notify (a
bare EOF, as some clients do). The upstream must see the end of the stream
and the client must still receive the upstream's whole answer over TLS,
ended by the proxy's close_notify. Once with a TCP upstream, once with a
Unix-socket one (--upstream unix:/path).
"""

import os
import shutil
import socket
import tempfile
import time

from kwproxy import Checker, Proxy, make_cert, skip_without_proxy, wait_for
from kwrelay import TlsClient, Upstream

skip_without_proxy()
c = Checker()
tmp = tempfile.mkdtemp(prefix="kw-proxy-halfclose-")
key, crt = make_cert(tmp, "ec", "ec")
REQUEST = b"x" * 100000
ANSWER = 300000


def count_then_answer(conn, i):
    n = 0
    while True:  # until the client's EOF reaches us
        d = conn.recv(65536)
        if not d:
            break
        n += len(d)
    conn.sendall(b"got %d\n" % n + b"y" * ANSWER)
    conn.shutdown(socket.SHUT_WR)
    conn.settimeout(10)
    conn.recv(1)


for kind in ("tcp", "unix"):
    up = Upstream(count_then_answer,
                  host="unix:" + os.path.join(tmp, "up.sock") if kind == "unix" else "127.0.0.1")
    with Proxy(key, crt, "--workers", "1", "--access-log", "off",
               mode=["--upstream", up.addr]) as p:
        cl = TlsClient(p.port, crt)
        c.check(cl.handshake(), kind + ": handshake")
        cl.obj.write(REQUEST)
        deadline = time.time() + 20
        while (cl.raw_out or cl.out.pending) and time.time() < deadline:
            cl._io(False, 0.05)
        cl.sock.shutdown(socket.SHUT_WR)  # bare EOF: no close_notify
        got = bytearray()
        while not cl.tls_eof and time.time() < deadline:
            cl._io(True, 0.05)
            got += cl.read_tls()
        head, _, rest = bytes(got).partition(b"\n")
        c.eq(head, b"got %d" % len(REQUEST), kind + ": the upstream saw the whole request, then EOF")
        c.eq(len(rest), ANSWER, kind + ": the client received the whole answer after its half-close")
        c.check(cl.tls_eof, kind + ": the answer ended with the proxy's close_notify")
        cl.close()
        c.check(wait_for(lambda: p.metrics().get('keyway_proxy_closes_total{reason="done"}') == 1.0),
                kind + ": closed as done (both directions ended)")
        c.eq(p.stop(), 0, kind + ": clean exit")
    up.close()
    c.check(not up.errors, kind + ": upstream handler without error", up.errors)
shutil.rmtree(tmp, ignore_errors=True)
c.done()
