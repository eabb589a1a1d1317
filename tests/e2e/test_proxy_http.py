"""keyway-proxy's HTTP/1.1 responder end to end: keep-alive, pipelined
requests answered in order, Connection: close honoured, HTTP/1.0 rules,
HEAD, request bodies skipped, garbage answered 400 and closed, oversized
headers 431, --keepalive-timeout 0 and the idle timeout, and the active/idle
connection gauges.
"""

import shutil
import tempfile
import time

from kwproxy import (Checker, Proxy, closed_by_peer, make_cert, read_response,
                     skip_without_proxy, tls_connect, wait_for)

skip_without_proxy()
c = Checker()
tmp = tempfile.mkdtemp(prefix="kw-proxy-http-")
key, crt = make_cert(tmp, "ec", "ec")


def answered_then_closed(port, request):
    """True if request, alone on a new connection, is answered 200 with
    Connection: close and the proxy then closes the connection."""
    s = tls_connect(port, crt)
    s.sendall(request)
    st, h, _, _ = read_response(s)
    ok = st == 200 and h.get("connection") == "close" and closed_by_peer(s)
    s.close()
    return ok


with Proxy(key, crt, "--workers", "1", "--keepalive-timeout", "2") as p:
    # Keep-alive: three requests, one connection, one handshake.
    s = tls_connect(p.port, crt)
    for i in range(3):
        s.sendall(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
        st, h, body, rest = read_response(s)
        c.check(st == 200 and body == b"ok\n" and rest == b"", "keep-alive request %d" % i)
    c.check("connection" not in h, "HTTP/1.1 keep-alive needs no Connection header")
    m = p.metrics()
    c.eq(m["keyway_proxy_handshakes_total"], 1.0, "one handshake for three requests")
    c.eq(m['keyway_proxy_connections{state="idle"}'], 1.0, "an idle keep-alive connection")
    c.eq(m['keyway_proxy_connections{state="active"}'], 0.0, "idle is not active")

    # Pipelined: five requests in one write (one with a body, one HEAD), in order.
    reqs = (b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\n\r\npayload"
            b"HEAD /c HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /d HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /e HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            b"GET /never HTTP/1.1\r\nHost: x\r\n\r\n")
    s.sendall(reqs)
    buf, got = b"", []
    for i in range(5):
        sock_buf = buf
        # A HEAD answer has Content-Length but no body: read it by hand.
        if i == 2:
            while b"\r\n\r\n" not in sock_buf:
                sock_buf += s.recv(65536)
            head, buf = sock_buf.split(b"\r\n\r\n", 1)
            got.append((200 if b" 200 " in head else 0, b"HEAD"))
            continue
        st, h, body, buf = read_response(s, sock_buf)
        got.append((st, body))
    c.eq(got, [(200, b"ok\n"), (200, b"ok\n"), (200, b"HEAD"), (200, b"ok\n"), (200, b"ok\n")],
         "pipelined requests answered in order")
    c.eq(h.get("connection"), "close", "Connection: close echoed on the last answer")
    c.check(buf == b"" and closed_by_peer(s), "closed after Connection: close, nothing more")
    s.close()

    # HTTP/1.0: closes unless keep-alive is asked for.
    c.check(answered_then_closed(p.port, b"GET / HTTP/1.0\r\n\r\n"),
            "HTTP/1.0 closes by default")
    s = tls_connect(p.port, crt)
    s.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\n\r\n")
    st, h, body, rest = read_response(s)
    c.eq(h.get("connection"), "keep-alive", "HTTP/1.0 keep-alive honoured")
    st2, h2, _, _ = read_response(s, rest)
    c.check(st2 == 200 and closed_by_peer(s), "second HTTP/1.0 request closes")
    s.close()

    # Garbage and oversized heads: an error status, then close.
    for what, data, want in (("garbage", b"\x00\x01\x02 nonsense\r\n\r\n", 400),
                             ("bad version", b"GET / HTTP/3.0\r\n\r\n", 505),
                             ("chunked body", b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked"
                              b"\r\n\r\n0\r\n\r\n", 501),
                             ("oversized head", b"GET / HTTP/1.1\r\nX: " + b"a" * 10000, 431)):
        s = tls_connect(p.port, crt)
        s.sendall(data)
        st, h, body, _ = read_response(s)
        c.check(st == want and closed_by_peer(s), "%s: %d and close" % (what, want), st)
        s.close()
    c.check(p.metrics()["keyway_proxy_http_errors_total"] == 4.0, "HTTP errors counted")

    # The idle keep-alive timeout (2 s) closes a quiet connection.
    s = tls_connect(p.port, crt)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    read_response(s)
    t0 = time.time()
    c.check(closed_by_peer(s, timeout=6) and 1.5 < time.time() - t0 < 5,
            "idle connection closed after --keepalive-timeout")
    s.close()
    c.check(wait_for(lambda: p.metrics()['keyway_proxy_connections{state="idle"}'] == 0.0),
            "idle gauge back to 0")
    c.eq(p.stop(), 0, "exit 0")

with Proxy(key, crt, "--keepalive-timeout", "0") as p:
    c.check(answered_then_closed(p.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            "--keepalive-timeout 0 closes after each response")
    # A client that finishes the handshake but is slow with its request is not cut off at once.
    s = tls_connect(p.port, crt)
    time.sleep(0.5)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    st, _, _, _ = read_response(s)
    c.eq(st, 200, "first request after a pause is served with --keepalive-timeout 0")
    s.close()
    c.eq(p.stop(), 0, "exit 0")

shutil.rmtree(tmp)
c.done()
