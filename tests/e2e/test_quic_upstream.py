"""keyway-proxy --upstream over HTTP/3: each request relayed as HTTP/1.1 to a small Python
upstream. A 10 MB response with Content-Length, chunked and close-delimited, each checked by
SHA-256 through keyway-h3; request bodies of 10 MB with and without a Content-Length
(chunked upstream) checked by the upstream's SHA-256; :authority as Host, connection-specific
fields stripped both ways; HEAD, 204, 304 and a 100 Continue before the answer; 502 when the
upstream is gone. (The TCP relay's Alt-Svc insertion is tested by test_proxy_altsvc.py.)
"""

import hashlib
import os
import random
import socket
import socketserver
import tempfile
import threading

from kwproxy import Checker, make_cert, skip_without_proxy
from kwquic import QuicProxy, h3, skip_without_h3

skip_without_proxy()
skip_without_h3()
c = Checker()
tmp = tempfile.mkdtemp(prefix="kw-quic-upstream-")
key, crt = make_cert(tmp, "ec", "ec")
BIG = random.Random(1).randbytes(10 * 1000 * 1000)
BIG_SHA = hashlib.sha256(BIG).hexdigest()
seen = {}  # the last request's head fields, for the checks


def read_request(f):
    line = f.readline()
    if not line:
        return None
    method, path, _ = line.decode().split(" ", 2)
    fields = {}
    while True:
        h = f.readline().decode()
        if h in ("\r\n", "\n", ""):
            break
        n, v = h.split(":", 1)
        fields.setdefault(n.strip().lower(), []).append(v.strip())
    body = b""
    if "content-length" in fields:
        body = f.read(int(fields["content-length"][0]))
    elif fields.get("transfer-encoding", [""])[0].lower() == "chunked":
        while True:
            size = int(f.readline().split(b";")[0], 16)
            if size == 0:
                while f.readline() not in (b"\r\n", b"\n", b""):
                    pass
                break
            body += f.read(size)
            f.readline()
    return method, path, fields, body


PP2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"
pp2 = {}  # the last PROXY v2 header: family byte and TLVs by type


def read_pp2(f):
    head = f.read(16)
    body = f.read(int.from_bytes(head[14:16], "big"))
    pp2.clear()
    pp2["family"] = head[13]
    addr_len = {0x11: 12, 0x12: 12, 0x21: 36, 0x22: 36}.get(head[13], 0)
    pp2["src_port"] = int.from_bytes(body[addr_len - 4:addr_len - 2], "big") if addr_len else 0
    tlvs = body[addr_len:]
    while len(tlvs) >= 3:
        t, n = tlvs[0], int.from_bytes(tlvs[1:3], "big")
        pp2[t] = tlvs[3:3 + n]
        tlvs = tlvs[3 + n:]


class Upstream(socketserver.StreamRequestHandler):
    def handle(self):
        if self.request.recv(12, socket.MSG_PEEK) == PP2_SIG:
            read_pp2(self.rfile)
        req = read_request(self.rfile)
        if req is None:
            return
        method, path, fields, body = req
        seen.clear()
        seen.update(fields)
        seen[":method"], seen[":path"] = method, path
        w = self.wfile.write
        if path == "/big/clen":
            w(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n"
              b"Keep-Alive: timeout=5\r\nX-Sha256: %s\r\n\r\n" % (len(BIG), BIG_SHA.encode()))
            if method != "HEAD":
                w(BIG)
        elif path == "/big/chunked":
            w(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for i in range(0, len(BIG), 100003):
                part = BIG[i:i + 100003]
                w(b"%x;ext=1\r\n" % len(part) + part + b"\r\n")
            w(b"0\r\nX-Trailer: yes\r\n\r\n")
        elif path == "/big/close":
            w(b"HTTP/1.1 200 OK\r\n\r\n")
            w(BIG)
        elif path == "/echo":
            w(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 80\r\n\r\n")
            w(("%s %012d" % (hashlib.sha256(body).hexdigest(), len(body))).encode()
              + b"\n" * 3)
        elif path == "/204":
            w(b"HTTP/1.1 204 No Content\r\nX-Here: 1\r\n\r\n")
        elif path == "/304":
            w(b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n")
        elif path == "/continue":
            w(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nafter\n")
        else:
            w(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


srv = Server(("127.0.0.1", 0), Upstream)
threading.Thread(target=srv.serve_forever, daemon=True).start()
up = "127.0.0.1:%d" % srv.server_address[1]
out = os.path.join(tmp, "out")

with QuicProxy(key, crt, "--workers", "2", mode=["--upstream", up]) as p:
    for framing in ("clen", "chunked", "close"):
        with c.section("10 MB response, " + framing):
            r = h3(p, "/big/" + framing, "-o", out, "--include", ca=crt, timeout=60)
            c.eq(r.returncode, 0, "%s: keyway-h3 exits 0" % framing)
            data = open(out, "rb").read()
            head, _, body = data.partition(b"\n\n")
            c.check(head.startswith(b":status: 200"), "%s: status 200" % framing, head[:200])
            c.eq(hashlib.sha256(body).hexdigest(), BIG_SHA, "%s: the body's SHA-256" % framing)
            c.check(b"transfer-encoding" not in head and b"connection" not in head and
                    b"keep-alive" not in head, "%s: connection-specific fields stripped" %
                    framing, head)
            c.check(seen.get("host") == ["localhost:%d" % p.qport],
                    "%s: :authority became Host" % framing, seen.get("host"))
            c.check(seen.get("connection") == ["close"], "%s: one request per upstream "
                    "connection (Connection: close)" % framing, seen.get("connection"))

    with c.section("request bodies"):
        src = os.path.join(tmp, "src")
        open(src, "wb").write(BIG)
        for extra, what in (([], "with Content-Length"), (["--data-no-length"], "chunked upstream")):
            r = h3(p, "/echo", "--data", src, *extra, ca=crt, timeout=60)
            c.eq(r.returncode, 0, "10 MB POST %s: exits 0" % what)
            c.check(r.stdout.startswith(("%s %012d" % (BIG_SHA, len(BIG))).encode()),
                    "10 MB POST %s: the upstream got it whole (SHA-256)" % what, r.stdout[:90])
        c.check(seen.get("transfer-encoding") == ["chunked"] and "content-length" not in seen,
                "a body without Content-Length goes chunked", seen)
        c.eq(seen.get(":method"), "POST", "the method relayed")

    with c.section("HEAD, 204, 304, 100 Continue, 404"):
        r = h3(p, "/big/clen", "--method", "HEAD", "--include", ca=crt)
        c.check(r.returncode == 0 and b"content-length: 10000000" in r.stdout and
                r.stdout.endswith(b"\n\n"), "HEAD: the length, no body", r.stdout[-200:])
        r = h3(p, "/204", "--include", ca=crt)
        c.check(r.returncode == 0 and r.stdout.startswith(b":status: 204") and
                b"x-here: 1" in r.stdout, "204 relayed with its fields", r.stdout)
        r = h3(p, "/304", "--include", ca=crt)
        c.check(r.returncode == 0 and r.stdout.startswith(b":status: 304"), "304 relayed",
                r.stdout)
        r = h3(p, "/continue", "--include", ca=crt)
        c.check(r.returncode == 0 and r.stdout.startswith(b":status: 200") and
                r.stdout.endswith(b"after\n"), "100 Continue skipped, the answer relayed",
                r.stdout)
        r = h3(p, "/nothing", "--include", ca=crt)
        c.check(r.stdout.startswith(b":status: 404"), "404 relayed", r.stdout)
        r = h3(p, "/big/clen", "-n", "8", "-o", os.devnull, ca=crt, timeout=60)
        c.check(r.returncode == 0 and b"responses=8 " in r.stderr and b"body_bytes=80000000" in
                r.stderr, "8 parallel 10 MB relays on one connection", r.stderr)
        m = p.metrics()
        c.check(m['keyway_proxy_upstream_connects_total{result="ok"}'] >= 15,
                "upstream connections counted")
    c.eq(p.stop(), 0, "exit 0 on SIGTERM")

with c.section("--send-proxy-v2: the client as UDP, TLS 1.3, h3"):
    with QuicProxy(key, crt, "--workers", "1", "--send-proxy-v2", mode=["--upstream", up]) as p:
        r = h3(p, "/big/clen", "-o", out, ca=crt, timeout=60)
        c.check(r.returncode == 0 and hashlib.sha256(open(out, "rb").read()).hexdigest() ==
                BIG_SHA, "the response after a PROXY v2 header", r.stderr)
        c.eq(pp2.get("family"), 0x12, "family UDP over IPv4")
        c.eq(pp2.get(0x01), b"h3", "ALPN h3")
        c.eq(pp2.get(0x02), b"localhost", "the SNI as AUTHORITY")
        ssl_tlv = pp2.get(0x20, b"")
        c.check(b"TLSv1.3" in ssl_tlv and b"TLS_AES_" in ssl_tlv,
                "the SSL TLV names TLS 1.3 and the cipher", ssl_tlv)
        c.eq(p.stop(), 0, "exit 0 on SIGTERM")

with c.section("the upstream gone: 502"):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead = "127.0.0.1:%d" % s.getsockname()[1]
    s.close()
    with QuicProxy(key, crt, "--workers", "1", mode=["--upstream", dead]) as p:
        r = h3(p, "/", "--include", ca=crt)
        c.check(r.returncode == 0 and r.stdout.startswith(b":status: 502"),
                "502 Bad Gateway", r.stdout + r.stderr)
        c.eq(p.stop(), 0, "exit 0 on SIGTERM")

srv.shutdown()
c.done()
