"""keyway-proxy under misbehaving clients: garbage bytes on the TLS port,
half-finished handshakes left hanging, abrupt resets at every stage (also
while a handshake is paused on an offloaded op) -- while well-behaved
clients keep being served without a single error. Then the failures are
counted by reason and the handshake timeout frees the hanging ones.
"""

import shutil
import socket
import ssl
import struct
import tempfile
import threading
import time

from kwproxy import (Checker, Proxy, client_context, https_get, make_cert, read_response,
                     skip_without_proxy, wait_for)

skip_without_proxy()
c = Checker()
tmp = tempfile.mkdtemp(prefix="kw-proxy-robust-")
key, crt = make_cert(tmp, "rsa", "rsa")


def client_hello(crt):
    """The bytes of a real TLS 1.3 ClientHello, made without a socket."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = client_context(crt).wrap_bio(inc, out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def reset(sock):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def good_clients(port, n, stop, errors, served):
    def loop():
        while not stop.is_set():
            try:
                st, _, body = https_get(port, crt)
                if st != 200 or body != b"ok\n":
                    errors.append("status %d" % st)
                served.append(1)
            except Exception as e:  # noqa: BLE001 - any failure is the finding
                errors.append(repr(e))
    ts = [threading.Thread(target=loop) for _ in range(n)]
    for t in ts:
        t.start()
    return ts


def abuse(port, hello, rounds):
    hanging = []
    for i in range(rounds):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        kind = i % 5
        if kind == 0:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\x00\xff" * 20)  # not TLS at all
            s.close()
        elif kind == 1:
            s.sendall(hello[: len(hello) // 2])  # half a ClientHello, then silence
            hanging.append(s)
        elif kind == 2:
            s.sendall(hello)  # a full ClientHello, then a reset mid-handshake
            time.sleep(0.002)
            reset(s)
        elif kind == 3:
            reset(s)  # reset right after connect
        else:
            s.sendall(hello)  # a ClientHello, then a plain close without reading
            s.close()
    return hanging


hello = client_hello(crt)
for mode in (["--async", "off"], ["--backend", "threads"],
             ["--backend", "threads", "--notify", "fd", "--poll", "busy"]):
    what = " ".join(mode)
    with Proxy(key, crt, "--workers", "2", "--handshake-timeout", "2", *mode) as p:
        stop, errors, served = threading.Event(), [], []
        ts = good_clients(p.port, 4, stop, errors, served)
        hanging = abuse(p.port, hello, 300)
        # While the hanging handshakes are still open, good clients go on being served
        # (waited for by count, not by time: a loaded machine is slower, not wrong).
        wait_for(lambda: len(served) > 20 or errors, timeout=30)
        stop.set()
        for t in ts:
            t.join(30)
        c.check(p.alive(), "proxy alive after abuse: " + what)
        c.check(not errors and len(served) > 20,
                "good clients served without error meanwhile: " + what,
                "%d served, errors %s" % (len(served), errors[:3]))
        m = p.metrics()
        f = {r: m['keyway_proxy_handshake_failures_total{reason="%s"}' % r]
             for r in ("tls", "closed", "timeout")}
        c.check(f["tls"] >= 60 and f["closed"] >= 60,
                "failures counted by reason (tls, closed): " + what, f)
        # The half-finished handshakes are cut by --handshake-timeout.
        c.check(wait_for(lambda: p.metrics()['keyway_proxy_handshake_failures_total'
                                              '{reason="timeout"}'] >= 60, timeout=8),
                "hanging handshakes time out: " + what)
        c.check(wait_for(lambda: p.metrics()['keyway_proxy_connections{state="active"}'] == 0),
                "no active connection left: " + what)
        for s in hanging:
            s.close()
        st, _, body = https_get(p.port, crt)
        c.check(st == 200 and body == b"ok\n", "still serving afterwards: " + what)
        if "threads" in mode:
            m = p.metrics()
            c.check(m["keyway_proxy_async_pauses_total"] > 0, "the async path ran: " + what)
            c.eq(m['keyway_proxy_inflight_ops{kind="asym"}'], 0.0, "nothing left in flight: " + what)
        c.eq(p.stop(), 0, "clean exit: " + what)

shutil.rmtree(tmp)
c.done()
