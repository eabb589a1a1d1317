#!/usr/bin/python3
"""SIGTERM drains: a batch of requests sent just before SIGTERM is answered in
full, new connections are refused meanwhile, and keywayd exits 0 within
--drain-timeout; the pid file and Unix socket are cleaned up."""

import os
import random
import signal
import socket
import ssl
import time

import kwtest as kw


def main(c):
    with kw.TempDir() as tmp:
        pki, keys_dir, keys = kw.setup(tmp, ["rsa4096", "p256"])
        big = keys["rsa4096"]
        drain = 5
        # One worker, so the batch of RSA-4096 signatures takes a noticeable time.
        with c.section("requests sent before SIGTERM are answered"):
            kd = kw.Keywayd(pki, keys_dir, tmp, workers=1, unix=True,
                            extra=["--drain-timeout", str(drain)])
            with kd:
                cl = kd.connect()
                ucl = kd.connect_unix()
                n = 96
                ids = random.sample(range(1, 1 << 32), n)
                reqs = {}
                out = bytearray()
                for i, id in enumerate(ids):
                    tk = big if i % 3 else keys["p256"]
                    op, p = kw.sign_request(tk, "sha256", b"drain %d" % i)
                    reqs[id] = (tk, op, p)
                    out += kw.encode(op, p, ski=tk.ski, id=id)
                uid = 4242
                cl.send(bytes(out))
                ucl.send(kw.encode(kw.OP_PING, b"unix drain", id=uid))
                t0 = time.monotonic()
                kd.signal(signal.SIGTERM)
                try:
                    frames = cl.pump(b"", n, timeout=drain + 5)
                except (OSError, kw.ConnectionClosed) as e:
                    frames = []
                    c.fail("all %d requests sent before SIGTERM are answered" % n, str(e))
                if frames:
                    got = {f.id for f in frames}
                    bad = [f for f in frames if f.id not in reqs or f.opcode != kw.OP_RESPONSE or
                           kw.verify_sig(*reqs[f.id], f.payload) is not None]
                    c.check(len(frames) == n and got == set(reqs) and not bad,
                            "all %d requests sent before SIGTERM are answered, signatures valid" % n,
                            "%d frames, %d distinct ids, %d bad" % (len(frames), len(got), len(bad)))
                try:
                    f = ucl.recv_frame(5)
                    c.check(f.id == uid and f.opcode == kw.OP_PONG and f.payload == b"unix drain",
                            "the Unix-socket request sent before SIGTERM is answered", kw.describe(f))
                except (OSError, kw.ConnectionClosed) as e:
                    c.fail("the Unix-socket request sent before SIGTERM is answered", str(e))

                # While draining (or after exit), a new connection must not be served.
                served = False
                try:
                    with kd.connect(timeout=3) as cl2:
                        served = kw.ping_ok(cl2, timeout=2)
                except (ssl.SSLError, OSError, kw.ConnectionClosed):
                    pass
                c.check(not served, "no new connection is served after SIGTERM")

                rc = kd.wait(drain + 3 - (time.monotonic() - t0))
                took = time.monotonic() - t0
                c.eq(rc, 0, "keywayd exits 0 after draining (in %.1f s)" % took)
                c.check(rc is not None and took <= drain + 3,
                        "exit within --drain-timeout %d s (+ margin): %.1f s" % (drain, took))
                closed, extra = cl.expect_closed(3)
                c.check(closed and not extra, "drained connection closed after its answers",
                        "closed=%s extra=%d bytes" % (closed, len(extra)))
                cl.close()
                ucl.close()
                c.check(not os.path.exists(kd.unix_path), "Unix socket removed on exit")

        with c.section("idle connections do not delay exit"):
            # A request that can't finish in time doesn't hold exit past the drain timeout:
            # here nothing is slow, so check the bound with idle connections open.
            kd = kw.Keywayd(pki, keys_dir, tmp, extra=["--drain-timeout", "2"])
            with kd:
                idle = [kd.connect() for _ in range(3)]
                t0 = time.monotonic()
                kd.signal(signal.SIGTERM)
                rc = kd.wait(6)
                took = time.monotonic() - t0
                c.eq(rc, 0, "with idle connections open, SIGTERM exits 0 (in %.1f s)" % took)
                c.check(rc is not None and took <= 2 + 2,
                        "idle connections do not hold exit past --drain-timeout 2 (%.1f s)" % took)
                for s in idle:
                    s.close()


if __name__ == "__main__":
    kw.run_main("keywayd SIGTERM drain", main)
