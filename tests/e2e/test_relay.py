"""keyway-relay end to end: the delay is applied each way, bulk data arrives
intact and in order, half-close propagates after the delayed data, a zero
delay forwards at once, Unix upstreams and config files work.

Standard library only. KEYWAY_RELAY names the binary; without it the test
is skipped (exit 77).
"""

import hashlib
import os
import re
import socket
import threading
import time

import kwharness
from kwrelay import Upstream, read_to_eof, recv_exact

RELAY = os.environ.get("KEYWAY_RELAY")
TIMEOUT = 20.0


class EchoServer(Upstream):
    """Echoes every byte; on EOF sends b"BYE" and shuts its write side, so a
    client sees that its half-close reached the server."""

    def __init__(self, host="127.0.0.1"):
        self.eofs = 0
        super().__init__(self.serve, host=host)

    def serve(self, c, _):
        c.settimeout(TIMEOUT)
        try:
            while True:
                data = c.recv(65536)
                if not data:
                    self.eofs += 1
                    c.sendall(b"BYE")
                    c.shutdown(socket.SHUT_WR)
                    break
                c.sendall(data)
            read_to_eof(c)  # until the relay closes its side
        except OSError:
            pass


class Relay(kwharness.Process):
    """keyway-relay on a port of its choice (it logs which)."""

    def __init__(self, to, delay, extra=()):
        super().__init__([RELAY, "--listen", "127.0.0.1:0", "--to", to, "--delay-ms", str(delay),
                          *extra])
        self.start()
        m = self.wait_log(r"listening on 127\.0\.0\.1:(\d+)", 10)
        if m is None:
            self.stop()
            raise RuntimeError("keyway-relay did not start: " + self.log_text())
        self.port = int(m.group(1))

    def connect(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s


def rtt(relay, rounds=5):
    """Round-trip times in seconds; -1 for a round whose echo was wrong or cut short."""
    s = relay.connect()
    times = []
    for i in range(rounds):
        msg = b"p%d" % i
        t0 = time.monotonic()
        s.sendall(msg)
        try:
            ok = recv_exact(s, len(msg)) == msg
        except EOFError:
            ok = False
        times.append(time.monotonic() - t0 if ok else -1)
    s.close()
    return times


def bulk(relay, size):
    """Sends `size` random bytes while reading the echo; returns (sent hash, got hash, EOF tail)."""
    data = os.urandom(size)
    s = relay.connect()
    got = bytearray()

    def reader():
        try:
            while True:
                d = s.recv(1 << 20)
                if not d:
                    break
                got.extend(d)
        except OSError:
            pass

    t = threading.Thread(target=reader)
    t.start()
    view = memoryview(data)
    # Uneven write sizes so chunks never line up with reads.
    i, step = 0, 1
    while i < len(data):
        n = min(len(data) - i, 1 + (step * 7919) % 300000)
        s.sendall(view[i:i + n])
        i += n
        step += 1
    s.shutdown(socket.SHUT_WR)
    t.join(TIMEOUT * 3)
    s.close()
    body, tail = bytes(got[:size]), bytes(got[size:])
    return hashlib.sha256(data).hexdigest(), hashlib.sha256(body).hexdigest(), tail


def body(c):
    if not RELAY:
        kwharness.skip("KEYWAY_RELAY not set")
    echo = EchoServer()
    relays = []
    with kwharness.TempDir("keyway-relay-test.") as scratch:
        try:
            run_all(c, echo, relays, scratch)
        finally:
            for r in relays:
                r.kill()
            echo.close()


def run_all(c, echo, relays, scratch):
    # 50 ms each way: every round trip is at least 100 ms.
    r50 = Relay(echo.addr, 50)
    relays.append(r50)
    times = rtt(r50)
    c.check(min(times) >= 0.095, "delay 50 ms: round trips %s ms all >= 95 ms"
          % [round(t * 1000, 1) for t in times])

    # 5 MiB each way, in order (hash), then the half-close comes through.
    sent, got, tail = bulk(r50, 5 << 20)
    c.check(sent == got, "delay 50 ms: 5 MiB each way arrives intact and in order")
    c.check(tail == b"BYE", "delay 50 ms: half-close reached the server after the data (tail %r)"
          % tail[:16])

    # Half-close alone: the server sees EOF and can still answer.
    eofs = echo.eofs
    s = r50.connect()
    s.sendall(b"last words")
    s.shutdown(socket.SHUT_WR)
    t0 = time.monotonic()
    data = read_to_eof(s, 4096)
    elapsed = time.monotonic() - t0
    s.close()
    c.check(data == b"last wordsBYE", "half-close: data then the server's reply, then EOF (%r)" % data)
    c.check(echo.eofs == eofs + 1, "half-close: the server saw EOF")
    c.check(elapsed >= 0.095, "half-close: the EOF was delayed too (%.1f ms)" % (elapsed * 1000))

    # Several connections at once keep their own streams.
    results = {}

    def one(k):
        results[k] = bulk(r50, 256 << 10)

    ts = [threading.Thread(target=one, args=(k,)) for k in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(TIMEOUT * 3)
    c.check(len(results) == 8 and all(a == b and c == b"BYE" for a, b, c in results.values()),
          "delay 50 ms: 8 concurrent connections each intact")

    # No delay: forwarding is immediate and still ordered.
    r0 = Relay(echo.addr, 0)
    relays.append(r0)
    times = rtt(r0, rounds=20)
    c.check(min(times) >= 0 and len(times) == 20, "delay 0: round trips echo correctly")
    sent, got, tail = bulk(r0, 5 << 20)
    c.check(sent == got and tail == b"BYE", "delay 0: 5 MiB each way intact, half-close propagated")

    # Fractional delay.
    r25 = Relay(echo.addr, "2.5")
    relays.append(r25)
    times = rtt(r25, rounds=10)
    c.check(min(times) >= 0.0049, "delay 2.5 ms: round trips %s ms all >= 4.9 ms"
          % [round(t * 1000, 2) for t in times])

    # A Unix-socket upstream and the delay from a config file; flags override it.
    uecho = EchoServer("unix:" + os.path.join(scratch, "echo.sock"))
    conf = os.path.join(scratch, "relay.conf")
    with open(conf, "w") as f:
        f.write("# relay test\nto = %s  # upstream\ndelay-ms = 20\n" % uecho.addr)
    ru = Relay(uecho.addr, 20, extra=["--config", conf])
    relays.append(ru)
    times = rtt(ru, rounds=3)
    c.check(min(times) >= 0.039, "unix upstream, delay 20 ms: round trips %s ms >= 39 ms"
          % [round(t * 1000, 1) for t in times])
    sent, got, tail = bulk(ru, 1 << 20)
    c.check(sent == got and tail == b"BYE", "unix upstream: 1 MiB intact, half-close propagated")
    # The file says unix and 20 ms; the flags say TCP and no delay, and win.
    rf = Relay(echo.addr, 0, extra=["--config", conf])
    relays.append(rf)
    times = rtt(rf, rounds=3)
    c.check(max(times) < 0.039 and min(times) >= 0,
          "flags override the config file (%s ms)" % [round(t * 1000, 1) for t in times])
    uecho.close()

    with open(conf, "w") as f:
        f.write("to = 127.0.0.1:1\ndelay-msec = 5\n")
    rc, out = kwharness.run_once([RELAY, "--listen", "127.0.0.1:0", "--config", conf])
    # The fix is the right key: "delay-ms" alone, not inside the wrong "delay-msec".
    c.check(rc not in (0, None) and "relay.conf:2" in out and
            re.search(r"delay-ms(?![a-z])", out),
            "config: an unknown key names file:line and the fix (%s)" % out.strip())
    rc, out = kwharness.run_once([RELAY, "--listen", "127.0.0.1:0", "--to", "127.0.0.1:1",
                                  "--delay-ms", "2.5x"])
    c.check(rc not in (0, None) and "--delay-ms" in out, "a bad --delay-ms is refused")

    # Upstream down: the client's connection is reset, the relay keeps running.
    rd = Relay("127.0.0.1:%d" % kwharness.free_port(), 10)
    relays.append(rd)
    # The reset may even beat connect() back to the client.
    try:
        s = rd.connect()
        try:
            closed = s.recv(10) == b""
        finally:
            s.close()
    except ConnectionResetError:
        closed = True
    except socket.timeout:
        closed = False
    c.check(closed and rd.proc.poll() is None, "upstream refused: client closed, relay alive")

    for r in list(relays):
        rc_ = r.stop()
        c.check(rc_ == 0, "SIGTERM: relay exits 0 (%s)" % rc_)
        relays.remove(r)


if __name__ == "__main__":
    kwharness.run_main("relay", body)
