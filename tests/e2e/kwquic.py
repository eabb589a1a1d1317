"""Helpers for the HTTP/3 end-to-end tests: keyway-proxy with --quic-listen, the keyway-h3
client, and raw datagrams (standard library only).

KEYWAY_PROXY and KEYWAY_H3 name the binaries; without them the tests are skipped (exit 77).
"""

import os
import re
import socket
import subprocess

import kwharness
from kwproxy import Proxy, TIMEOUT

H3 = os.environ.get("KEYWAY_H3")


def skip_without_h3():
    if not H3 or not os.path.exists(H3):
        kwharness.skip("KEYWAY_H3 is not set")


class QuicProxy(Proxy):
    """keyway-proxy with --quic-listen 127.0.0.1:0; self.qport is the UDP port it bound."""

    def __init__(self, key, crt, *args, **kw):
        super().__init__(key, crt, "--quic-listen", "127.0.0.1:0", *args, **kw)
        m = re.search(r"HTTP/3 on udp 127\.0\.0\.1:(\d+)", self.stderr())
        if not m:
            raise RuntimeError("no HTTP/3 port in the log:\n" + self.stderr())
        self.qport = int(m.group(1))

    def url(self, path):
        return "https://localhost:%d%s" % (self.qport, path)


def h3(proxy, path, *args, ca=None, timeout=TIMEOUT):
    """Runs keyway-h3 against proxy; returns the CompletedProcess (stdout bytes)."""
    cmd = [H3, "--connect", "127.0.0.1:%d" % proxy.qport, "--stats"]
    cmd += ["--ca", ca] if ca else ["--insecure"]
    return subprocess.run(cmd + list(args) + [proxy.url(path)], capture_output=True,
                          timeout=timeout)


def h3_start(proxy, path, *args, ca=None):
    """Starts keyway-h3 in the background (a Popen)."""
    cmd = [H3, "--connect", "127.0.0.1:%d" % proxy.qport, "--stats"]
    cmd += ["--ca", ca] if ca else ["--insecure"]
    return subprocess.Popen(cmd + list(args) + [proxy.url(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def pattern(n):
    """The body of /bytes/n: lines of 63 letters and a newline."""
    line = (b"abcdefghijklmnopqrstuvwxyz" * 3)[:63] + b"\n"
    return (line * (n // 64 + 1))[:n]


def udp_exchange(port, payload, wait=0.5):
    """Sends one datagram to 127.0.0.1:port; returns the answer (b"" if none within wait)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(wait if wait > 0 else None)
    if wait <= 0:
        s.setblocking(False)
    try:
        s.sendto(payload, ("127.0.0.1", port))
        return s.recvfrom(65536)[0]
    except (socket.timeout, BlockingIOError, ConnectionRefusedError):
        return b""
    finally:
        s.close()


class LossyRelay:
    """A UDP relay between one client and the proxy that drops a share of the datagrams
    each way and swaps neighbours (reordering), from a seeded generator."""

    def __init__(self, target_port, loss=0.02, reorder=0.02, seed=5):
        import random
        import threading
        self.rnd = random.Random(seed)
        self.loss, self.reorder = loss, reorder
        self.front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.front.bind(("127.0.0.1", 0))
        self.port = self.front.getsockname()[1]
        self.back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.back.connect(("127.0.0.1", target_port))
        self.client = None
        self.dropped = self.swapped = self.passed = 0
        self.stop = False
        self.held = {}
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def forward(self, data, send, way):
        if self.rnd.random() < self.loss:
            self.dropped += 1
            return
        if way in self.held:
            send(data)  # the newer one first: the held one comes after it
            send(self.held.pop(way))
            self.swapped += 1
            self.passed += 2
            return
        if self.rnd.random() < self.reorder:
            self.held[way] = data
            return
        send(data)
        self.passed += 1

    def run(self):
        import select
        while not self.stop:
            ready, _, _ = select.select([self.front, self.back], [], [], 0.05)
            for s in ready:
                if s is self.front:
                    data, addr = s.recvfrom(65536)
                    self.client = addr
                    self.forward(data, self.back.send, "up")
                elif self.client is not None:
                    data = s.recv(65536)
                    self.forward(data, lambda d: self.front.sendto(d, self.client), "down")

    def close(self):
        self.stop = True
        self.thread.join(5)
        self.front.close()
        self.back.close()
