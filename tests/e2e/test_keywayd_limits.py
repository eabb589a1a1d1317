#!/usr/bin/python3
"""keywayd under a connection flood: with a small descriptor limit (256, soft
and hard) and 600 silent TCP connections open against it, a real mutual-TLS
client still gets a pong and a signature within a second; an authenticated
connection is never evicted by the flood; a connection that never finishes
its TLS handshake is closed after --handshake-timeout although the server
wrote to it; and at --max-connections with every connection authenticated, a
new one is closed. Evictions and refusals are counted in the metrics."""

import re
import resource
import socket
import ssl
import time
import urllib.request

import kwharness
import kwtest as kw

FLOOD = 600
NOFILE = 256


def metric(port, name):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
        text = r.read().decode()
    m = re.search(r"^%s (\d+)$" % re.escape(name), text, re.M)
    return int(m.group(1)) if m else None


def limited(kd, nofile):
    """Runs kd under RLIMIT_NOFILE nofile (soft and hard): prlimit execs keywayd,
    so the pid stays the one the harness waits for."""
    kd.args = ["/usr/bin/prlimit", "--nofile=%d:%d" % (nofile, nofile), "--"] + kd.args
    return kd


def open_silent(port, n):
    """n TCP connections that send nothing; fewer if connecting fails."""
    socks = []
    for _ in range(n):
        try:
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        except OSError:
            break
    return socks


def client_hello_then_silence(port):
    """A TCP connection that sends a TLS ClientHello (so the server answers
    with its flight) and then nothing more; returns (socket, bytes the server
    wrote)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="127.0.0.1")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(out.read())
    s.settimeout(5)
    got = s.recv(65536)
    return s, got


def flood(c, tmp, pki, keys_dir, keys, extra=(), counted=True):
    """counted: the cap is below the descriptor limit, so the metrics listener
    keeps a descriptor and the evictions can be read."""
    c.section("flood of %d silent connections under ulimit -n %d %s"
              % (FLOOD, NOFILE, " ".join(extra)))
    kd = limited(kw.Keywayd(pki, keys_dir, tmp, metrics=True, workers=2,
                            extra=["--handshake-timeout", "60s"] + list(extra)), NOFILE)
    with kd:
        c.check(kd.wait_log(r"descriptor limit: %d\b" % NOFILE, 5),
                "start-up logs the descriptor limit", kd.stderr_text()[-500:])
        with kd.connect() as authed:
            c.check(kw.ping_ok(authed), "an authenticated client answers before the flood")
            socks = open_silent(kd.port, FLOOD)
            try:
                c.eq(len(socks), FLOOD, "silent connections opened")
                # Let the server take them all in (and evict), then one real client.
                counted and kwharness.wait_until(lambda: (metric(kd.metrics_port,
                                              "keyway_keywayd_connections_evicted_total")
                                       or 0) >= FLOOD - NOFILE, 10)
                t0 = time.monotonic()
                ok, signed, why = False, False, ""
                try:
                    with kd.connect(timeout=1.0) as cl:
                        ok = kw.ping_ok(cl, timeout=1.0)
                        tk = keys["p256"]
                        signed, f = kw.signs_with(cl, tk)
                        why = kw.describe(f)
                except (OSError, ssl.SSLError, kw.ConnectionClosed) as e:
                    why = "%s: %s" % (type(e).__name__, e)
                took = time.monotonic() - t0
                c.check(ok and signed and took < 1.0,
                        "a new mTLS client gets a pong and a signature within 1 s "
                        "(took %.3f s)" % took, why)
                c.check(kw.ping_ok(authed),
                        "the connection authenticated before the flood was not evicted")
                ev = counted and metric(kd.metrics_port,
                                        "keyway_keywayd_connections_evicted_total")
                counted and c.check(ev is not None and ev >= FLOOD - NOFILE,
                        "evictions counted (%s)" % ev)
            finally:
                for s in socks:
                    s.close()
        c.check(kd.alive(), "keywayd still running after the flood")


def handshake_timeout(c, tmp, pki, keys_dir):
    c.section("--handshake-timeout 1s, --max-connections 2")
    kd = kw.Keywayd(pki, keys_dir, tmp, metrics=True, workers=1,
                    extra=["--handshake-timeout", "1s", "--idle-timeout", "60",
                           "--max-connections", "2"])
    with kd:
        s, got = client_hello_then_silence(kd.port)
        with s:
            c.check(len(got) > 0, "the server answered the ClientHello (%d bytes)" % len(got))
            t0 = time.monotonic()
            closed = False
            s.settimeout(0.5)
            while time.monotonic() - t0 < 5.0:
                try:
                    if not s.recv(65536):
                        closed = True
                        break
                except socket.timeout:
                    continue
                except OSError:
                    closed = True
                    break
            took = time.monotonic() - t0
            c.check(closed and took < 4.0,
                    "a stalled handshake is closed after --handshake-timeout "
                    "(%.2f s after the server's flight; idle timeout is 60 s)" % took)
        # Both slots authenticated: a newcomer is closed, neither is evicted.
        with kd.connect() as a, kd.connect() as b:
            c.check(kw.ping_ok(a) and kw.ping_ok(b), "two authenticated clients at the cap")
            extra = socket.create_connection(("127.0.0.1", kd.port), timeout=5)
            with extra:
                extra.settimeout(5)
                try:
                    closed = extra.recv(1) == b""
                except socket.timeout:
                    closed = False
                except OSError:  # reset
                    closed = True
                c.check(closed, "at the cap with every connection authenticated, "
                        "a new connection is closed")
            c.check(kw.ping_ok(a) and kw.ping_ok(b), "the authenticated clients stay")
            c.check((metric(kd.metrics_port, "keyway_keywayd_connections_refused_total")
                     or 0) >= 1, "the refusal is counted")


def bad_options(c, pki, keys_dir):
    c.section("option errors")
    base = ["--keys", keys_dir, "--tls-cert", pki.server_cert_file, "--tls-key",
            pki.server_key_file, "--client-ca", pki.ca_file, "--listen", "127.0.0.1:0"]
    for bad in ["5x", "", "0", "-1s", "2h"]:
        code, out = kw.run_keywayd_expect_exit(base + ["--handshake-timeout", bad])
        c.check(code == 2 and "--handshake-timeout" in out,
                "--handshake-timeout %r refused with exit 2" % bad, out.strip()[-300:])
    code, out = kw.run_keywayd_expect_exit(base + ["--max-connections", "0"])
    c.eq(code, 2, "--max-connections 0 refused")


def main(c):
    # The test itself holds the flood's sockets.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < FLOOD + 200 and (hard == resource.RLIM_INFINITY or hard >= FLOOD + 200):
        resource.setrlimit(resource.RLIMIT_NOFILE, (FLOOD + 200, hard))
    with kw.TempDir() as tmp:
        pki, keys_dir, keys = kw.setup(tmp, ["p256"])
        bad_options(c, pki, keys_dir)
        flood(c, tmp, pki, keys_dir, keys)
        # A cap above the descriptor limit: descriptors run out first (EMFILE), and
        # the workers' spare descriptors must still let the new client in.
        flood(c, tmp, pki, keys_dir, keys, ["--max-connections", "100000"], counted=False)
        handshake_timeout(c, tmp, pki, keys_dir)


if __name__ == "__main__":
    kw.run_main("keywayd connection limits", main)
