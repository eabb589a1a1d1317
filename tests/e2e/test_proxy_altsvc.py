"""keyway-proxy --upstream with --quic-listen: the TCP relay adds Alt-Svc to each final response
head from the upstream and leaves every other byte as the upstream sent it. One keep-alive
connection carries pipelined requests (with Content-Length and chunked bodies) answered with
each framing: Content-Length, chunked with extensions and trailers, 100/103 before the answer,
HEAD, 204, 304, an upstream Alt-Svc kept as is, a 1 MB body that looks like HTTP inside, some
sent one byte per write, and a close-delimited last one. Without --quic-listen the client gets
exactly the upstream's bytes. A response that is not HTTP/1.x closes that connection only.
"""

import socket
import ssl
import tempfile

from kwproxy import Checker, Proxy, make_cert, skip_without_proxy, tls_connect
from kwquic import QuicProxy
from kwrelay import Upstream, pattern

skip_without_proxy()
c = Checker()
tmp = tempfile.mkdtemp(prefix="kw-proxy-altsvc-")
key, crt = make_cert(tmp, "ec", "ec")

A = b"{ALT-SVC}"  # where the relay inserts Alt-Svc
BIG = pattern(3, 1 << 20) + b"\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
RESP = {
    "/clen": b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n{ALT-SVC}\r\nhello world",
    "/chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n{ALT-SVC}\r\n5;x=y\r\nhello\r\n"
                b"6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n",
    "/interim": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s>\r\n\r\n"
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n{ALT-SVC}\r\nok",
    "/204": b"HTTP/1.1 204 No Content\r\n{ALT-SVC}\r\n",
    "/304": b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 9\r\n{ALT-SVC}\r\n",
    "/has": b"HTTP/1.1 200 OK\r\nAlt-Svc: clear\r\nContent-Length: 1\r\n\r\nx",
    "/big": b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n{ALT-SVC}\r\n" % len(BIG) + BIG,
    "/lf": b"HTTP/1.1 200 OK\nContent-Length: 3\n{ALT-SVC}\nbye",
    "/close": b"HTTP/1.1 200 OK\r\nConnection: close\r\n{ALT-SVC}\r\nuntil the close\r\n\r\n",
    "/garbage": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n{ALT-SVC}\r\nokNOT HTTP\r\n\r\n",
    # After a 101 the bytes are another protocol's, however HTTP-like.
    "/upgrade": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n"
                b"HTTP/1.1 200 OK\r\n\r\n\x00\xff",
}
SLOW = ("/chunked", "/interim")  # sent one byte per write
# Pipelined on one connection: (method, path, request body framing).
REQS = [("POST", "/clen", "clen"), ("GET", "/chunked", None), ("POST", "/interim", "chunked"),
        ("HEAD", "/clen", None), ("GET", "/204", None), ("GET", "/304", None),
        ("GET", "/has", None), ("GET", "/big", None), ("GET", "/lf", None),
        ("GET", "/close", None)]


AFTER_UPGRADE = b"not a request\r\n\r\n"


def request(method, path, body):
    if body == "clen":
        return b"%s %s HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nHEAD" % (
            method.encode(), path.encode())
    if body == "chunked":
        return b"%s %s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" \
               b"4;e=1\r\nGET \r\n0\r\nT: 1\r\n\r\n" % (method.encode(), path.encode())
    if path == "/upgrade":
        return b"GET /upgrade HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: x\r\n" \
               b"\r\n" + AFTER_UPGRADE
    return b"%s %s HTTP/1.1\r\nHost: x\r\n\r\n" % (method.encode(), path.encode())


def answer(method, path):
    r = RESP[path]
    if method == "HEAD":
        r = r[:r.index(A + b"\r\n") + len(A) + 2]
    return r


def serve(conn, i):
    f = conn.makefile("rb")
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        line = f.readline()
        if not line:
            return
        method, path, _ = line.decode().split(" ", 2)
        fields = {}
        while True:
            h = f.readline()
            if h in (b"\r\n", b"\n", b""):
                break
            n, v = h.decode().split(":", 1)
            fields[n.strip().lower()] = v.strip()
        if "content-length" in fields:
            f.read(int(fields["content-length"]))
        elif fields.get("transfer-encoding") == "chunked":
            while True:
                size = int(f.readline().split(b";")[0], 16)
                f.read(size + 2) if size else None
                if size == 0:
                    while f.readline() not in (b"\r\n", b""):
                        pass
                    break
        r = answer(method, path).replace(A, b"")
        if path in SLOW:
            for b in r:
                conn.send(bytes([b]))
        else:
            conn.sendall(r)
        if path == "/upgrade":
            f.read(len(AFTER_UPGRADE))
        if path in ("/close", "/garbage", "/upgrade"):
            conn.shutdown(socket.SHUT_WR)
            return


def fetch(port, reqs):
    """Sends reqs pipelined; everything received up to the close (clean or not)."""
    s = tls_connect(port, crt, timeout=30)
    s.sendall(b"".join(request(*r) for r in reqs))
    data = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
    except (ssl.SSLError, ConnectionError):
        pass  # closed without close_notify
    s.close()
    return data


def want(reqs, alt):
    return b"".join(answer(m, p) for m, p, _ in reqs).replace(A, alt)


up = Upstream(serve)

with c.section("--quic-listen: Alt-Svc in each final response, the rest byte-exact"):
    with QuicProxy(key, crt, "--workers", "1", mode=["--upstream", up.addr]) as p:
        alt = b'Alt-Svc: h3=":%d"; ma=86400\r\n' % p.qport
        got = fetch(p.port, REQS)
        exp = want(REQS, alt)
        c.eq(len(got), len(exp), "as many bytes as the upstream's plus one field per response")
        c.check(got == exp, "each framing: the upstream's bytes with Alt-Svc before each final "
                "head's blank line", got[:300])
        c.eq(got.count(b"Alt-Svc: h3="), 9, "9 final responses, 9 added fields")
        c.check(b"Alt-Svc: clear\r\nContent-Length: 1\r\n\r\nx" in got,
                "an upstream Alt-Svc is left alone")

        got = fetch(p.port, [("GET", "/upgrade", None)])
        c.check(got == RESP["/upgrade"], "101: no field in it, the rest opaque", got)

        # A malformed response closes its connection, not the others.
        other = tls_connect(p.port, crt, timeout=30)
        other.sendall(request("GET", "/clen", None))
        got = fetch(p.port, [("GET", "/garbage", None)])
        full = RESP["/garbage"].replace(A, alt)
        c.check(got.startswith(full[:-len(b"NOT HTTP\r\n\r\n")]) and len(got) < len(full),
                "a response that is not HTTP/1.x: what came before it, then the close", got)
        other.sendall(request("GET", "/lf", None))
        exp = want([("GET", "/clen", None), ("GET", "/lf", None)], alt)
        buf = b""
        while len(buf) < len(exp):
            d = other.recv(65536)
            if not d:
                break
            buf += d
        c.check(buf == exp, "another connection goes on", buf)
        c.eq(p.stop(), 0, "exit 0 on SIGTERM")

with c.section("without --quic-listen: the byte-exact relay"):
    with Proxy(key, crt, "--workers", "1", mode=["--upstream", up.addr]) as p:
        got = fetch(p.port, REQS)
        c.check(got == want(REQS, b""), "exactly the upstream's bytes", got[:300])
        got = fetch(p.port, [("GET", "/garbage", None)])
        c.check(got == RESP["/garbage"].replace(A, b""), "garbage relayed as is", got)
        c.eq(p.stop(), 0, "exit 0 on SIGTERM")

up.close()
c.check(not up.errors, "the upstream saw no errors", up.errors)
c.done()
