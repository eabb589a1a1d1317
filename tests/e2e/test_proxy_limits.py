"""keyway-proxy's limits against slow and hostile clients.

1,000 slowloris connections (silent, or trickling a ClientHello a byte at a
time) are held open while normal clients keep being served; a flood past
--max-connections is accepted and closed at once (exactly the excess, by
construction: nothing else is open), a client arriving while full is
refused cleanly, and once the flood leaves normal clients are served again.
A client that sends more than --max-handshake-bytes before finishing its
handshake is cut. Every connection leaves one well-formed access-log line,
and the reasons add up to the counters.
"""

import os
import resource
import shutil
import socket
import struct
import tempfile
import threading
import time

from kwproxy import Checker, Proxy, closed_by_peer, https_get, make_cert, skip_without_proxy, \
    wait_for
from kwrelay import client_hello, parse_access_log

skip_without_proxy()
c = Checker()
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
want = 3000
if soft < want and hard >= want:
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
SLOW = 1000 if soft >= want else max(100, soft - 600)
FLOOD, SPARE = 200, 50
MAX = SLOW + SPARE
print("info: %d slowloris connections, --max-connections %d (RLIMIT_NOFILE %d)" %
      (SLOW, MAX, soft))

tmp = tempfile.mkdtemp(prefix="kw-proxy-limits-")
key, crt = make_cert(tmp, "ec", "ec")
alog = os.path.join(tmp, "access.log")
hello = client_hello(crt)
KEYS = ["time", "worker", "client", "sni", "tls", "cipher", "handshake_ms", "duration_ms",
        "rx_client", "tx_client", "tx_upstream", "rx_upstream", "reason"]


def served(port, n):
    ok = 0
    for _ in range(n):
        try:
            st, _, body = https_get(port, crt)
            ok += st == 200 and body == b"ok\n"
        except Exception as e:  # noqa: BLE001
            print("info: normal client failed: %r" % e)
    return ok


def connect(port):
    s = socket.socket()
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    return s


with Proxy(key, crt, "--workers", "2", "--max-connections", str(MAX),
           "--handshake-timeout", "120", "--max-handshake-bytes", "4096",
           "--access-log", alog) as p:
    open_gauge = lambda: p.metrics()["keyway_proxy_open_connections"]  # noqa: E731
    slow = [connect(p.port) for _ in range(SLOW)]
    stop = threading.Event()

    def trickle():
        # Odd sockets send their ClientHello one byte per round; even ones stay silent.
        pos = 0
        while not stop.is_set() and pos < len(hello) - 1:
            for s in slow[1::2]:
                try:
                    s.send(hello[pos:pos + 1])
                except OSError:
                    pass
            pos += 1
            stop.wait(0.3)
    tt = threading.Thread(target=trickle)
    tt.start()
    c.check(wait_for(lambda: open_gauge() == SLOW, timeout=30),
            "all slowloris connections accepted and held", open_gauge())
    c.eq(served(p.port, 20), 20, "normal clients served beside %d slowloris" % SLOW)
    c.check(wait_for(lambda: open_gauge() == SLOW), "normal clients' slots freed")
    flood = [connect(p.port) for _ in range(FLOOD)]
    refused_metric = 'keyway_proxy_closes_total{reason="max-connections"}'
    c.check(wait_for(lambda: p.metrics()[refused_metric] == FLOOD - SPARE, timeout=30),
            "flood: exactly the excess refused", p.metrics()[refused_metric])
    c.eq(open_gauge(), MAX, "open connections at --max-connections")
    c.eq(served(p.port, 1), 0, "a client arriving while full is refused")
    refused = sum(closed_by_peer(s, timeout=0.05) for s in flood)
    c.check(refused >= FLOOD - SPARE, "refused flood connections see a close", refused)
    for s in flood:
        s.close()
    c.check(wait_for(lambda: open_gauge() == SLOW, timeout=30), "flood gone, slots back")
    c.eq(served(p.port, 20), 20, "normal clients served again after the flood")
    # Over --max-handshake-bytes: a handshake record announced at 16 KiB, 8 KiB of it sent.
    big = connect(p.port)
    big.sendall(b"\x16\x03\x01" + struct.pack("!H", 16384) + b"\x01" * 8192)
    c.check(closed_by_peer(big, timeout=10), "--max-handshake-bytes cuts a client")
    big.close()
    c.check(p.alive(), "proxy alive")
    stop.set()
    tt.join(30)
    for s in slow:
        s.close()
    c.check(wait_for(lambda: open_gauge() == 0, timeout=30), "every slot released")
    m = p.metrics()
    total = m["keyway_proxy_connections_accepted_total"]
    c.check(wait_for(lambda: len(parse_access_log(open(alog).read())) >= total, timeout=15),
            "one access line per connection")
    lines = parse_access_log(open(alog).read())
    c.eq(len(lines), int(total), "access lines = accepted connections")
    c.check(all(list(l.keys()) == KEYS for l in lines), "every line has the same keys in order")
    reasons = {}
    for l in lines:
        reasons[l["reason"]] = reasons.get(l["reason"], 0) + 1
    c.eq(reasons.get("max-connections"), FLOOD - SPARE + 1, "log: max-connections lines")
    c.eq(reasons.get("too-many-bytes"), 1, "log: too-many-bytes line")
    c.eq(reasons.get("done"), 40, "log: done lines (normal clients)")
    c.eq(reasons.get("client-close"), SLOW + SPARE, "log: client-close lines (slowloris, flood)")
    for r, n in reasons.items():
        c.eq(m.get('keyway_proxy_closes_total{reason="%s"}' % r), float(n),
             "metrics agree with the log: " + r)
    c.eq(p.stop(), 0, "clean exit")

shutil.rmtree(tmp)
c.done()
