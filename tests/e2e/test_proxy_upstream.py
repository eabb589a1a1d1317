"""keyway-proxy --upstream: a TLS terminator in front of a TCP server.

50 MiB each way through the relay arrive intact (sha256) while the client
first reads nothing and then slowly: both senders stall (backpressure) and
the proxy's RSS stays far below what went through. The client half-closes
(close_notify) and still receives the upstream's answer, which reports the
hash of what the upstream got. The upstream parses the PROXY v2 header
itself. Then: garbage before and after the handshake, the idle timeout and
the drain each close only their connection, a refusing upstream closes the
client cleanly, and every connection leaves one access-log line with the
right reason.
"""

import hashlib
import os
import shutil
import signal
import socket
import ssl
import tempfile
import threading
import time

from kwproxy import Checker, Proxy, closed_by_peer, free_port, make_cert, skip_without_proxy, \
    tls_connect, wait_for
from kwrelay import TlsClient, Upstream, parse_access_log, parse_pp2, pattern, sha256, \
    transfer, vm_rss_kib

skip_without_proxy()
c = Checker()
tmp = tempfile.mkdtemp(prefix="kw-proxy-upstream-")
key, crt = make_cert(tmp, "ec", "ec")
SIZE = 50 << 20
RSS_LIMIT_KIB = 64 << 10


def log_lines(path):
    with open(path) as f:
        return parse_access_log(f.read())


def wait_lines(path, n, timeout=15):
    wait_for(lambda: len(log_lines(path)) >= n, timeout)
    return log_lines(path)


# ---- 50 MiB each way, backpressure, half-close, PROXY v2 ----
c2u, u2c = pattern(1, SIZE), pattern(2, SIZE)
st = {"up_sent": 0, "up_recv": 0, "gate": threading.Event(), "pp2": None, "got": None}


def big(conn, i):
    st["pp2"] = parse_pp2(conn)
    h = hashlib.sha256()

    def reader():
        st["gate"].wait(120)
        while True:
            d = conn.recv(65536)
            if not d:
                break
            h.update(d)
            st["up_recv"] += len(d)
        st["got"] = h.hexdigest()
    rt = threading.Thread(target=reader)
    rt.start()
    view, off = memoryview(u2c), 0
    while off < SIZE:
        off += conn.send(view[off:off + 65536])
        st["up_sent"] = off
    rt.join(120)
    conn.sendall(("got %s %d\n" % (st["got"], st["up_recv"])).encode())
    conn.shutdown(socket.SHUT_WR)
    conn.settimeout(20)
    conn.recv(1)  # until the proxy closes


alog = os.path.join(tmp, "access.log")
up = Upstream(big, rcvbuf=65536)
with Proxy(key, crt, "--workers", "2", "--access-log", alog,
           mode=["--upstream", "127.0.0.1:%d" % up.port, "--send-proxy-v2"]) as p:
    base_rss = vm_rss_kib(p.proc.pid)
    cl = TlsClient(p.port, crt, rcvbuf=65536)
    c.check(cl.handshake(), "TLS handshake through the terminator")
    received = bytearray()
    phase = {"reading": False, "last": None, "since": time.time(), "max_rss": base_rss,
             "blocked": None}

    def on_data(d):
        received.extend(d)
        if len(received) < (2 << 20):
            time.sleep(0.002)  # slow reader for the first 2 MiB

    def stall(moved, off):
        phase["max_rss"] = max(phase["max_rss"], vm_rss_kib(p.proc.pid))
        if phase["reading"]:
            return False
        now = (off, st["up_sent"])
        if now != phase["last"]:
            phase["last"], phase["since"] = now, time.time()
        elif time.time() - phase["since"] > 1.0:
            # Neither side moved for a second while nobody reads: both are stalled.
            phase["blocked"] = now
            phase["reading"] = True
            st["gate"].set()
        return False

    ok = transfer(cl, c2u, on_data, lambda: phase["reading"], stall=stall, deadline=240)
    c.check(ok, "transfer finished: both directions ended")
    blocked = phase["blocked"] or (SIZE, SIZE)
    c.check(blocked[0] < SIZE and blocked[1] < SIZE,
            "backpressure: both senders stalled while nobody read",
            "client sent %d, upstream sent %d of %d" % (blocked[0], blocked[1], SIZE))
    growth = phase["max_rss"] - base_rss
    c.check(growth < RSS_LIMIT_KIB, "proxy RSS growth stays < 64 MiB while 100 MiB pass",
            "%d KiB" % growth)
    print("info: RSS %d KiB before, max %d KiB" % (base_rss, phase["max_rss"]))
    c.eq(sha256(bytes(received[:SIZE])), sha256(u2c), "50 MiB upstream->client intact")
    trailer = bytes(received[SIZE:]).decode(errors="replace")
    c.eq(trailer, "got %s %d\n" % (sha256(c2u), SIZE),
         "50 MiB client->upstream intact, answered after the client's half-close")
    pp = st["pp2"] or {}
    c.eq(pp.get("ver_cmd"), 0x21, "PROXY v2: version 2, command PROXY")
    c.eq(pp.get("fam"), 0x11, "PROXY v2: TCP over IPv4")
    c.eq(pp.get("src"), cl.sock.getsockname(), "PROXY v2: source = the client's address")
    c.eq(pp.get("dst"), ("127.0.0.1", p.port), "PROXY v2: destination = the proxy's listener")
    c.eq(pp.get("tlvs", {}).get(0x02), b"localhost", "PROXY v2: AUTHORITY = SNI")
    c.check(pp.get("ssl_client", 0) & 0x01, "PROXY v2: SSL TLV with PP2_CLIENT_SSL")
    sub = pp.get("ssl_sub", {})
    c.eq(sub.get(0x21), cl.obj.version().encode(), "PROXY v2: SSL version sub-TLV")
    c.eq(sub.get(0x23), cl.obj.cipher()[0].encode(), "PROXY v2: SSL cipher sub-TLV")
    client_port = cl.sock.getsockname()[1]
    cl.close()
    lines = wait_lines(alog, 1)
    c.eq(len(lines), 1, "one access line for one connection")
    ln = lines[0] if lines else {}
    c.eq(ln.get("client"), "127.0.0.1:%d" % client_port, "access log: client address:port")
    c.eq(ln.get("reason"), "done", "access log: reason done")
    c.eq(ln.get("sni"), "localhost", "access log: SNI")
    c.eq(ln.get("tls"), "TLSv1.3", "access log: TLS version")
    c.eq(ln.get("cipher"), sub.get(0x23, b"").decode(), "access log: cipher")
    c.check(float(ln.get("handshake_ms", "-1")) > 0, "access log: handshake time", ln)
    c.eq((ln.get("rx_client"), ln.get("tx_upstream")), (str(SIZE), str(SIZE)),
         "access log: client->upstream bytes")
    n = str(SIZE + len(trailer))
    c.eq((ln.get("rx_upstream"), ln.get("tx_client")), (n, n), "access log: upstream->client bytes")
    m = p.metrics()
    c.eq(m.get('keyway_proxy_relay_bytes_total{direction="client_to_upstream"}'), float(SIZE),
         "metrics: bytes client->upstream")
    c.eq(m.get('keyway_proxy_relay_bytes_total{direction="upstream_to_client"}'),
         float(SIZE + len(trailer)), "metrics: bytes upstream->client")
    c.eq(m.get('keyway_proxy_upstream_connects_total{result="ok"}'), 1.0, "metrics: connect ok")
    c.eq(m.get('keyway_proxy_closes_total{reason="done"}'), 1.0, "metrics: closes{done}")
    c.eq(p.stop(), 0, "clean exit after the transfer")
up.close()
c.check(not up.errors, "upstream handler without error", up.errors)


# ---- garbage, idle timeout, drain: each closes only its connection ----
def echo(conn, i):
    while True:
        d = conn.recv(65536)
        if not d:
            break
        conn.sendall(d)
    conn.shutdown(socket.SHUT_WR)


def echo_round(s, msg):
    s.sendall(msg)
    got = b""
    while len(got) < len(msg):
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


alog2 = os.path.join(tmp, "access2.log")
up = Upstream(echo)
with Proxy(key, crt, "--workers", "2", "--access-log", alog2, "--idle-timeout", "3",
           "--drain-timeout", "1", mode=["--upstream", "127.0.0.1:%d" % up.port]) as p:
    keep = tls_connect(p.port, crt)
    c.eq(echo_round(keep, b"ping"), b"ping", "echo through the relay")
    bad = tls_connect(p.port, crt)
    c.eq(echo_round(bad, b"x" * 1000), b"x" * 1000, "second connection relays")
    # A TLS record that cannot be decrypted, straight onto the socket.
    junk = socket.socket(fileno=os.dup(bad.fileno()))
    junk.sendall(b"\x17\x03\x03\x00\x20" + os.urandom(32))
    junk.close()
    c.check(closed_by_peer(bad), "garbage record after the handshake closes that connection")
    raw = socket.create_connection(("127.0.0.1", p.port), timeout=10)
    raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + os.urandom(200))
    c.check(closed_by_peer(raw), "garbage before the handshake closes that connection")
    raw.close()
    c.eq(echo_round(keep, b"still"), b"still", "the other connection is unaffected")
    keep.close()  # close_notify; the echo server closes in turn: done
    idle = tls_connect(p.port, crt)
    c.eq(echo_round(idle, b"once"), b"once", "idle candidate relays once")
    c.check(closed_by_peer(idle, timeout=20), "--idle-timeout closes a silent relay")
    idle.close()
    lines = wait_lines(alog2, 4)
    reasons = sorted(l["reason"] for l in lines)
    c.eq(reasons, sorted(["tls-error", "handshake-failed", "done", "idle-timeout"]),
         "access log: one line per connection with its reason")
    d = tls_connect(p.port, crt)
    c.eq(echo_round(d, b"before drain"), b"before drain", "relay before SIGTERM")
    t0 = time.time()
    c.eq(p.stop(), 0, "SIGTERM: exits 0 with a relay open")
    c.check(closed_by_peer(d, timeout=5), "the open relay was closed by the drain")
    print("info: drain took %.2f s (--drain-timeout 1)" % (time.time() - t0))
    d.close()
    lines = log_lines(alog2)
    c.eq(lines[-1]["reason"] if lines else None, "drain", "access log: reason drain")
    bad.close()
up.close()

# ---- an upstream that refuses connections ----
alog3 = os.path.join(tmp, "access3.log")
dead = free_port()
with Proxy(key, crt, "--workers", "1", "--access-log", alog3,
           mode=["--upstream", "127.0.0.1:%d" % dead]) as p:
    for i in range(3):
        s = tls_connect(p.port, crt)
        c.check(closed_by_peer(s), "refused upstream: client %d closed" % i)
        s.close()
    m = p.metrics()
    c.eq(m.get('keyway_proxy_upstream_connects_total{result="failed"}'), 3.0,
         "metrics: 3 failed upstream connects")
    c.eq(m.get('keyway_proxy_relays'), 0.0, "metrics: no relay left")
    c.eq(m.get('keyway_proxy_closes_total{reason="upstream-connect-failed"}'), 3.0,
         "metrics: closes{upstream-connect-failed}")
    lines = wait_lines(alog3, 3)
    c.eq([l["reason"] for l in lines], ["upstream-connect-failed"] * 3,
         "access log: upstream-connect-failed")
    # Log rotation: move the file away, SIGHUP, and the next line goes to a new file.
    os.rename(alog3, alog3 + ".1")
    p.proc.send_signal(signal.SIGHUP)
    c.check(wait_for(lambda: os.path.exists(alog3)), "SIGHUP reopens --access-log")
    s = tls_connect(p.port, crt)
    closed_by_peer(s)
    s.close()
    c.eq(len(wait_lines(alog3, 1)), 1, "the next line goes to the new file")
    c.eq(len(log_lines(alog3 + ".1")), 3, "the old file keeps its lines")
    c.eq(p.stop(), 0, "clean exit")

# ---- an upstream that never answers the SYN: --connect-timeout ----
# A listener with a full accept queue drops new SYNs, so connecting hangs.
full = socket.socket()
full.bind(("127.0.0.1", 0))
full.listen(0)
fillers = []
for _ in range(3):
    f = socket.socket()
    f.setblocking(False)
    f.connect_ex(full.getsockname())
    fillers.append(f)
time.sleep(0.2)
alog4 = os.path.join(tmp, "access4.log")
with Proxy(key, crt, "--workers", "1", "--access-log", alog4, "--connect-timeout", "1",
           mode=["--upstream", "127.0.0.1:%d" % full.getsockname()[1]]) as p:
    s = tls_connect(p.port, crt)
    c.check(closed_by_peer(s, timeout=15), "connect timeout: client closed")
    s.close()
    lines = wait_lines(alog4, 1)
    c.eq([l["reason"] for l in lines], ["upstream-timeout"], "access log: upstream-timeout")
    c.eq(p.metrics().get('keyway_proxy_upstream_connects_total{result="timeout"}'), 1.0,
         "metrics: connect timeout counted")
    c.eq(p.stop(), 0, "clean exit")
for f in fillers:
    f.close()
full.close()

# ---- the relay after offloaded (paused) handshakes ----
up = Upstream(echo)
with Proxy(key, crt, "--workers", "2", "--backend", "threads", "--access-log", "off",
           mode=["--upstream", "127.0.0.1:%d" % up.port]) as p:
    blob = os.urandom(128 << 10)  # fits in the socket buffers: no reader needed meanwhile
    ok = 0
    for i in range(5):
        with tls_connect(p.port, crt) as s:
            ok += echo_round(s, blob) == blob
    c.eq(ok, 5, "--backend threads: 128 KiB echoed on each of 5 connections")
    c.check(p.metrics()["keyway_proxy_async_pauses_total"] > 0, "--backend threads: paused")
    c.eq(p.stop(), 0, "clean exit")
up.close()

# ---- start-up errors ----
with Proxy(key, crt, expect_start=False, metrics=False, mode=[]) as p:
    p.proc.wait(20)
    c.eq(p.proc.returncode, 2, "no mode: exit 2")
    c.check("exactly one of --respond" in p.stderr(), "no mode: says what to give", p.stderr())
with Proxy(key, crt, expect_start=False, metrics=False,
           mode=["--respond", "--upstream", "127.0.0.1:1"]) as p:
    p.proc.wait(20)
    c.eq(p.proc.returncode, 2, "both modes: exit 2")

shutil.rmtree(tmp)
c.done()
