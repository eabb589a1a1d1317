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
import subprocess
import sys
import tempfile
import threading
import time

RELAY = os.environ.get("KEYWAY_RELAY")
TIMEOUT = 20.0
failures = []


def check(cond, what):
    if cond:
        print("ok   " + what)
    else:
        print("FAIL " + what)
        failures.append(what)


class EchoServer:
    """Echoes every byte; on EOF sends b"BYE" and shuts its write side, so a
    client sees that its half-close reached the server."""

    def __init__(self, family=socket.AF_INET, path=None):
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        if family == socket.AF_UNIX:
            self.sock.bind(path)
            self.addr = "unix:" + path
        else:
            self.sock.bind(("127.0.0.1", 0))
            self.addr = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.stop = False
        self.eofs = 0
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
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
            # Wait for the relay to close its side.
            while c.recv(65536):
                pass
        except OSError:
            pass
        finally:
            c.close()

    def close(self):
        self.stop = True
        self.thread.join(2)
        self.sock.close()


class Relay:
    def __init__(self, to, delay, extra=()):
        self.proc = subprocess.Popen(
            [RELAY, "--listen", "127.0.0.1:0", "--to", to, "--delay-ms", str(delay), *extra],
            stderr=subprocess.PIPE, text=True)
        self.port = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                break
        if self.port is None:
            self.proc.kill()
            raise RuntimeError("keyway-relay did not start")
        # Keep draining stderr so the relay never blocks on a full pipe.
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()

    def connect(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def close(self):
        self.proc.terminate()
        try:
            rc = self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait(5)
        return rc


def recv_exact(s, n):
    out = bytearray()
    while len(out) < n:
        d = s.recv(min(65536, n - len(out)))
        if not d:
            break
        out += d
    return bytes(out)


def rtt(relay, rounds=5):
    s = relay.connect()
    times = []
    for i in range(rounds):
        t0 = time.monotonic()
        s.sendall(b"p%d" % i)
        got = recv_exact(s, len(b"p%d" % i))
        times.append(time.monotonic() - t0)
        if got != b"p%d" % i:
            times.append(-1)
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


def main():
    if not RELAY:
        print("KEYWAY_RELAY not set; skipping")
        return 77
    echo = EchoServer()
    scratch = tempfile.mkdtemp(prefix="keyway-relay-test.")
    relays = []
    try:
        # 50 ms each way: every round trip is at least 100 ms.
        r50 = Relay(echo.addr, 50)
        relays.append(r50)
        times = rtt(r50)
        check(min(times) >= 0.095, "delay 50 ms: round trips %s ms all >= 95 ms"
              % [round(t * 1000, 1) for t in times])

        # 5 MiB each way, in order (hash), then the half-close comes through.
        sent, got, tail = bulk(r50, 5 << 20)
        check(sent == got, "delay 50 ms: 5 MiB each way arrives intact and in order")
        check(tail == b"BYE", "delay 50 ms: half-close reached the server after the data (tail %r)"
              % tail[:16])

        # Half-close alone: the server sees EOF and can still answer.
        eofs = echo.eofs
        s = r50.connect()
        s.sendall(b"last words")
        s.shutdown(socket.SHUT_WR)
        t0 = time.monotonic()
        data = b""
        while True:
            d = s.recv(4096)
            if not d:
                break
            data += d
        elapsed = time.monotonic() - t0
        s.close()
        check(data == b"last wordsBYE", "half-close: data then the server's reply, then EOF (%r)" % data)
        check(echo.eofs == eofs + 1, "half-close: the server saw EOF")
        check(elapsed >= 0.095, "half-close: the EOF was delayed too (%.1f ms)" % (elapsed * 1000))

        # Several connections at once keep their own streams.
        results = {}

        def one(k):
            results[k] = bulk(r50, 256 << 10)

        ts = [threading.Thread(target=one, args=(k,)) for k in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(TIMEOUT * 3)
        check(len(results) == 8 and all(a == b and c == b"BYE" for a, b, c in results.values()),
              "delay 50 ms: 8 concurrent connections each intact")

        # No delay: forwarding is immediate and still ordered.
        r0 = Relay(echo.addr, 0)
        relays.append(r0)
        times = rtt(r0, rounds=20)
        check(min(times) >= 0 and len(times) == 20, "delay 0: round trips echo correctly")
        sent, got, tail = bulk(r0, 5 << 20)
        check(sent == got and tail == b"BYE", "delay 0: 5 MiB each way intact, half-close propagated")

        # Fractional delay.
        r25 = Relay(echo.addr, "2.5")
        relays.append(r25)
        times = rtt(r25, rounds=10)
        check(min(times) >= 0.0049, "delay 2.5 ms: round trips %s ms all >= 4.9 ms"
              % [round(t * 1000, 2) for t in times])

        # A Unix-socket upstream and the delay from a config file; flags override it.
        uecho = EchoServer(socket.AF_UNIX, os.path.join(scratch, "echo.sock"))
        conf = os.path.join(scratch, "relay.conf")
        with open(conf, "w") as f:
            f.write("# relay test\nto = %s  # upstream\ndelay-ms = 20\n" % uecho.addr)
        ru = Relay(uecho.addr, 20, extra=["--config", conf])
        relays.append(ru)
        times = rtt(ru, rounds=3)
        check(min(times) >= 0.039, "unix upstream, delay 20 ms: round trips %s ms >= 39 ms"
              % [round(t * 1000, 1) for t in times])
        sent, got, tail = bulk(ru, 1 << 20)
        check(sent == got and tail == b"BYE", "unix upstream: 1 MiB intact, half-close propagated")
        # The file says unix and 20 ms; the flags say TCP and no delay, and win.
        rf = Relay(echo.addr, 0, extra=["--config", conf])
        relays.append(rf)
        times = rtt(rf, rounds=3)
        check(max(times) < 0.039 and min(times) >= 0,
              "flags override the config file (%s ms)" % [round(t * 1000, 1) for t in times])
        uecho.close()

        with open(conf, "w") as f:
            f.write("to = 127.0.0.1:1\ndelay-msec = 5\n")
        p = subprocess.run([RELAY, "--listen", "127.0.0.1:0", "--config", conf],
                           stderr=subprocess.PIPE, text=True, timeout=10)
        check(p.returncode != 0 and "relay.conf:2" in p.stderr and "delay-ms" in p.stderr,
              "config: an unknown key names file:line and the fix (%s)" % p.stderr.strip())
        p = subprocess.run([RELAY, "--listen", "127.0.0.1:0", "--to", "127.0.0.1:1",
                            "--delay-ms", "2.5x"], stderr=subprocess.PIPE, text=True, timeout=10)
        check(p.returncode != 0 and "--delay-ms" in p.stderr, "a bad --delay-ms is refused")

        # Upstream down: the client's connection is reset, the relay keeps running.
        dead = socket.socket()
        dead.bind(("127.0.0.1", 0))
        dead_port = dead.getsockname()[1]
        dead.close()
        rd = Relay("127.0.0.1:%d" % dead_port, 10)
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
        check(closed and rd.proc.poll() is None, "upstream refused: client closed, relay alive")

        for r in list(relays):
            rc_ = r.close()
            check(rc_ == 0, "SIGTERM: relay exits 0 (%s)" % rc_)
            relays.remove(r)
    finally:
        for r in relays:
            r.proc.kill()
            r.proc.wait(5)
        echo.close()
        for name in os.listdir(scratch):
            os.unlink(os.path.join(scratch, name))
        os.rmdir(scratch)
    if failures:
        print("%d check(s) failed" % len(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
