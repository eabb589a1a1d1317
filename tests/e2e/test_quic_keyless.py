"""keyway-proxy --quic-listen with keys only keyservers hold: HTTP/3 handshakes sign
through the keyway provider (RSA-2048 as a KEYWAY KEY reference PEM, P-256 as a keyway:
URI; P-384 and Ed25519 once each) against keywayd behind keyway-relay at 5 ms, on the
handshake threads (their counter moves, one keyserver operation per handshake). With
the keyserver slowed to 1 s each way, a download on an established connection keeps
going while 4 handshakes wait on the keyserver: the worker's loop never waits for it.
--quic-handshake-threads 0 (signing on the loop) stalls that download, which is what
the threads are for. Steps queued past the handshake deadline skip the keyserver;
SIGTERM while steps wait on the keyserver exits cleanly, SIGHUP reloads the
keyserver-held key, and with no keyserver the handshake fails with a warning naming it.
"""

import os
import signal
import tempfile
import time

import kwprov
from kwproxy import Checker, skip_without_proxy, wait_for
from kwquic import LossyRelay, QuicProxy, h3, h3_start, skip_without_h3

skip_without_proxy()
skip_without_h3()
c = Checker()
tmp = tempfile.mkdtemp(prefix="kw-quic-keyless-")


def clean_env():
    return {k: v for k, v in os.environ.items() if not k.startswith("KEYWAY_")}


def sent(p):
    return p.metrics()['keyway_proxy_quic_datagrams_total{direction="sent"}']


def stalls_while_handshaking(s, ca, tls_flags, threads):
    """Whether a download on an established connection stalls while 4 handshakes wait on a
    keyserver 1 s away each way: (stalled, metrics at the end of the window)."""
    slow = kwprov.Relay(s.server(), 1000)
    try:
        with QuicProxy(s.uris["p256"], s.certs["p256"], "--workers", "1",
                       "--quic-handshake-threads", str(threads), "--servers", slow.addr(),
                       "--timeout-ms", "20000", "--attempt-timeout-ms", "20000",
                       *tls_flags, env=clean_env()) as p:
            # A Python relay keeps the download slow enough to last the whole window.
            udp = LossyRelay(p.qport, loss=0, reorder=0)
            orig = p.qport
            p.qport = udp.port
            dl = h3_start(p, "/bytes/1000000000", "-o", os.devnull, ca=ca)
            p.qport = orig
            ok = wait_for(lambda: p.metrics()["keyway_proxy_quic_handshakes_total"] == 1, 20)
            c.check(ok, "threads=%d: the download's connection is established" % threads)
            time.sleep(0.3)
            hs = [h3_start(p, "/", ca=ca) for _ in range(4)]
            # All 4 handshakes are waiting on the keyserver (each needs 2 s at least).
            wait_for(lambda: p.metrics()["keyway_provider_ops_submitted_total"] >= 5, 5)
            before = sent(p)
            time.sleep(0.5)
            m = p.metrics()
            pending = m["keyway_proxy_quic_handshakes_total"] == 1
            stalled = m['keyway_proxy_quic_datagrams_total{direction="sent"}'] - before < 50
            c.check(pending or threads == 0, "threads=%d: the 4 handshakes still wait on the "
                    "keyserver at the end of the window" % threads, m)
            for h in hs:
                out, err = h.communicate(timeout=60)
                if threads == 0:
                    continue  # one at a time on the loop: some outlast the client's 10 s
                c.check(h.returncode == 0 and out == b"ok\n",
                        "threads=%d: a handshake behind the slow keyserver completes" % threads,
                        err[-300:])
            dl.kill()
            dl.wait()
            udp.close()
            c.eq(p.stop(), 0, "threads=%d: clean exit" % threads)
            return stalled, m
    finally:
        slow.stop()


with kwprov.Setup(tmp, names=("rsa2048", "p256", "p384", "ed25519")) as s:
    ca = s.pki.ca_file
    tls_flags = ["--ca", ca, "--client-cert", s.pki.client_cert_file,
                 "--client-key", s.pki.client_key_file]
    relay = kwprov.Relay(s.server(), 5)
    cases = [("RSA-2048 reference PEM", s.refs["rsa2048"], s.certs["rsa2048"]),
             ("P-256 keyway: URI", s.uris["p256"], s.certs["p256"])]
    for what, key, crt in cases:
        with c.section(what + " over HTTP/3, keyserver 5 ms away"):
            with QuicProxy(key, crt, "--workers", "2", "--servers", relay.addr(), *tls_flags,
                           env=clean_env()) as p:
                for i in range(3):
                    r = h3(p, "/", "-n", "4", ca=ca)
                    c.check(r.returncode == 0 and b" responses=4 status=200 " in r.stderr,
                            "%s: handshake %d verified with --ca, 4 requests answered" %
                            (what, i + 1), r.stderr[-300:])
                r = h3(p, "/bytes/3000000", "-o", os.path.join(tmp, "body"), ca=ca)
                c.check(r.returncode == 0 and os.path.getsize(os.path.join(tmp, "body")) ==
                        3000000, what + ": 3 MB over the connection", r.stderr[-300:])
                r = h3(p, "/", "--repeat", "3", ca=ca)
                c.check(r.returncode == 0 and r.stdout == b"ok\n" * 3,
                        what + ": keyway-h3 --repeat 3 (the benchmark's load)", r.stderr[-300:])
                m = p.metrics()
                c.eq(m["keyway_proxy_quic_handshakes_total"], 7.0, what + ": 7 handshakes")
                c.check(m["keyway_proxy_quic_handshake_steps_total"] >= 7,
                        what + ": the signing steps ran on the handshake threads", m)
                c.eq(m["keyway_provider_ops_submitted_total"], 7.0,
                     what + ": one keyserver signature per handshake")
                # SIGHUP reloads the external key with the rest; new handshakes use it.
                p.signal(signal.SIGHUP)
                c.check(p.wait_log("SIGHUP: reloaded", 10), what + ": SIGHUP reloaded")
                r = h3(p, "/", ca=ca)
                c.check(r.returncode == 0 and r.stdout == b"ok\n",
                        what + ": a handshake after SIGHUP signs on the keyserver", r.stderr[-300:])
                c.eq(p.metrics()["keyway_provider_ops_submitted_total"], 8.0,
                     what + ": its signature too")
                c.eq(p.stop(), 0, what + ": clean exit")

    with c.section("P-384 and Ed25519 keys on the keyserver"):
        for name in ("p384", "ed25519"):
            with QuicProxy(s.refs[name], s.certs[name], "--workers", "1", "--servers",
                           relay.addr(), *tls_flags, env=clean_env()) as p:
                r = h3(p, "/", ca=ca)
                c.check(r.returncode == 0 and r.stdout == b"ok\n",
                        "%s: handshake verified with --ca" % name, r.stderr[-300:])
                c.eq(p.metrics()["keyway_provider_ops_submitted_total"], 1.0,
                     "%s: signed on the keyserver" % name)
                c.eq(p.stop(), 0, "%s: clean exit" % name)

    with c.section("no keyserver: the handshake fails and the log says why"):
        gone = kwprov.Relay(s.server(), 1)
        with QuicProxy(s.uris["p256"], s.certs["p256"], "--workers", "1", "--servers",
                       gone.addr(), *tls_flags, env=clean_env()) as p:
            gone.stop()
            r = h3(p, "/", ca=ca)
            c.eq(r.returncode, 1, "keyway-h3 fails")
            c.check(p.wait_log("QUIC handshake: signing with the keyserver-held key failed: "
                               "127.0.0.1:%d" % gone.port, 10),
                    "the warning names the keyserver", p.stderr()[-600:])
            c.check(p.alive(), "the proxy stays up")
            c.eq(p.stop(), 0, "clean exit")

    with c.section("the loop does not wait on the keyserver"):
        stalled, m = stalls_while_handshaking(s, ca, tls_flags, 4)
        c.check(not stalled, "with handshake threads the download went on while 4 handshakes "
                "waited on the keyserver", m)
        c.check(m["keyway_proxy_quic_handshake_steps_total"] >= 5, "the steps ran on threads")
        stalled, m = stalls_while_handshaking(s, ca, tls_flags, 0)
        c.check(stalled, "signing on the loop (--quic-handshake-threads 0) stalls the download "
                "(what the threads prevent)", m)
        c.eq(m["keyway_proxy_quic_handshake_steps_total"], 0.0, "threads 0: no steps offloaded")

    with c.section("steps queued past the handshake deadline ask no keyserver"):
        # One thread, 2 s per signature: of 8 handshakes queued at once, those still
        # queued 10 s after their start are dropped without a keyserver operation.
        slow = kwprov.Relay(s.server(), 1000)
        with QuicProxy(s.uris["p256"], s.certs["p256"], "--workers", "1",
                       "--quic-handshake-threads", "1", "--servers", slow.addr(),
                       "--timeout-ms", "20000", "--attempt-timeout-ms", "20000", *tls_flags,
                       env=clean_env()) as p:
            hs = [h3_start(p, "/", ca=ca) for _ in range(8)]
            for h in hs:
                h.communicate(timeout=60)
            c.check(wait_for(lambda: p.metrics()["keyway_proxy_quic_connections"] == 0, 40),
                    "every connection ended")
            m = p.metrics()
            # 8 or more: a client resending its Initial after its late step ended it starts anew.
            c.check(m["keyway_proxy_quic_handshake_steps_total"] >= 8, "8 steps queued")
            c.check(m["keyway_provider_ops_submitted_total"] <= 6,
                    "the late ones skipped the keyserver", m["keyway_provider_ops_submitted_total"])
            c.eq(p.stop(), 0, "clean exit")
        slow.stop()

    with c.section("SIGTERM while signing steps wait on the keyserver"):
        slow = kwprov.Relay(s.server(), 1000)
        with QuicProxy(s.refs["rsa2048"], s.certs["rsa2048"], "--workers", "2",
                       "--servers", slow.addr(), "--timeout-ms", "20000",
                       "--attempt-timeout-ms", "20000", *tls_flags, env=clean_env()) as p:
            hs = [h3_start(p, "/", ca=ca) for _ in range(6)]
            c.check(wait_for(lambda: p.metrics()["keyway_provider_ops_submitted_total"] >= 6,
                             10), "6 signing steps under way")
            c.eq(p.stop(), 0, "the proxy exits 0 once the steps are back")
            for h in hs:
                h.kill()
                h.wait()
        slow.stop()
    relay.stop()
c.done()
