"""keyway-proxy --quic-listen end to end with keyway-h3 (ngtcp2's stock GnuTLS packet
protection): --quic-crypto engine (the default; 1-RTT packets sent are sealed by Keyway's
engine, evp and ipsec-mb, and opened by GnuTLS in the client, through key updates, with
the counters to prove it) and --quic-crypto gnutls; HTTP/3 answers like --respond, GET
/bytes/N whole and equal to the TCP body, Alt-Svc on TCP answers, parallel streams, 2 %
loss and reordering through a UDP relay, Retry, port changes with --workers 2, the
--max-connections cap, SIGHUP swapping the QUIC certificate with the TCP one (or
neither); hostile datagrams (random bytes, a truncated Initial, an unknown version, a
short header for an unknown connection, a flood of short Initials) leave a running
transfer and the proxy unharmed and get the stateless answers QUIC prescribes; SIGTERM
exits 0.
"""

import hashlib
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import tempfile
import time

from kwproxy import Checker, Proxy, make_cert, run, skip_without_proxy, wait_for
from kwquic import (H3, LossyRelay, QuicProxy, h3, h3_start, pattern, skip_without_h3,
                    udp_exchange)

skip_without_proxy()
skip_without_h3()
c = Checker()
tmp = tempfile.mkdtemp(prefix="kw-quic-proxy-")
key, crt = make_cert(tmp, "ec", "ec")


def long_header(version, dcid, scid, rest, pad_to=0):
    b = bytes([0xc0]) + struct.pack(">I", version) + bytes([len(dcid)]) + dcid + \
        bytes([len(scid)]) + scid + rest
    return b + bytes(max(0, pad_to - len(b)))


def check_engine(p, what, engine_on):
    m = p.metrics()
    sent = m['keyway_proxy_quic_datagrams_total{direction="sent"}']
    prot = m["keyway_proxy_quic_packets_protected_total"]
    if engine_on:
        # Every datagram after the handshake carries a 1-RTT packet the engine sealed.
        c.check(prot >= 0.9 * sent and prot > 1000, "%s: the engine protected the 1-RTT packets"
                % what, "%d protected, %d datagrams sent" % (prot, sent))
        c.check(m["keyway_proxy_quic_protect_batches_total"] < prot,
                "%s: in batches of several packets" % what)
        c.check(m["keyway_proxy_quic_engine_cpu_seconds_total"] > 0,
                "%s: engine CPU time counted" % what)
        # Received 1-RTT packets (the client's ACKs): opened ahead with their receive batch
        # where that is what ngtcp2 asked for, else alone; both counted, adding up.
        batch = m['keyway_proxy_quic_rx_opens_total{path="batch"}']
        alone = m['keyway_proxy_quic_rx_opens_total{path="packet"}']
        c.check(batch > 0, "%s: received packets opened by the receive batch" % what,
                "%d by batch, %d alone" % (batch, alone))
        c.eq(batch + alone, m["keyway_proxy_quic_packets_opened_total"],
             "%s: opens by path add up" % what)
    else:
        c.eq(prot, 0.0, "%s: no packet protected by the engine" % what)
        c.eq(m["keyway_proxy_quic_rx_batches_total"], 0.0, "%s: no receive batch" % what)
    c.eq(m["keyway_proxy_quic_protect_failures_total"], 0.0, "%s: no protection failure" % what)


with QuicProxy(key, crt, "--workers", "2") as p:
    with c.section("HTTP/3 answers like --respond"):
        r = h3(p, "/", "--include", ca=crt)
        out = r.stdout.decode(errors="replace")
        c.eq(r.returncode, 0, "keyway-h3 / exits 0 (certificate verified with --ca)")
        c.check(out.startswith(":status: 200\n"), "status 200", out[:200])
        c.check(out.endswith("\n\nok\n"), "the --respond body", out[-100:])
        c.check("content-length: 3\n" in out, "Content-Length given", out[:200])
        r = h3(p, "/bytes/12x", "--include", ca=crt)
        c.check(r.stdout.startswith(b":status: 400\n"), "a bad /bytes/N answers 400",
                r.stdout[:100])

    with c.section("GET /bytes/N over HTTP/3 and TCP"):
        body = os.path.join(tmp, "body")
        r = h3(p, "/bytes/1000000", "-o", body, ca=crt)
        c.eq(r.returncode, 0, "keyway-h3 /bytes/1000000 exits 0")
        data = open(body, "rb").read()
        c.eq(len(data), 1000000, "1000000 bytes over HTTP/3")
        c.check(data == pattern(1000000), "the /bytes pattern")
        t = run(["curl", "-sS", "--cacert", crt, "--resolve", "localhost:%d:127.0.0.1" % p.port,
                 "https://localhost:%d/bytes/1000000" % p.port])
        c.check(t.stdout == data, "TCP --respond answers the same 1000000 bytes",
                "%d bytes" % len(t.stdout))
        r = h3(p, "/bytes/0", ca=crt)
        c.check(r.returncode == 0 and r.stdout == b"", "/bytes/0: an empty body")
        t = run(["curl", "-sS", "-D", "-", "-o", os.devnull, "--cacert", crt, "--resolve",
                 "localhost:%d:127.0.0.1" % p.port, "https://localhost:%d/" % p.port])
        c.check(('alt-svc: h3=":%d"; ma=86400' % p.qport) in t.stdout.decode().lower(),
                "TCP --respond answers carry Alt-Svc naming the HTTP/3 port", t.stdout)

    with c.section("parallel streams and a key update"):
        r = h3(p, "/bytes/100000", "-n", "150", "-o", os.devnull, ca=crt)
        err = r.stderr.decode()
        c.eq(r.returncode, 0, "150 parallel requests (more than the 100-stream limit at once)")
        c.check("responses=150 " in err and "body_bytes=15000000 " in err,
                "150 whole bodies", err)
        r = h3(p, "/bytes/30000000", "--key-update-kb", "2000", "-o", body, ca=crt)
        err = r.stderr.decode()
        c.eq(r.returncode, 0, "30 MB with client key updates")
        c.check(" key_updates=0" not in err, "the client updated its keys", err)
        c.check(hashlib.sha256(open(body, "rb").read()).digest() ==
                hashlib.sha256(pattern(30000000)).digest(), "the 30 MB body is intact")

    with c.section("hostile datagrams during a transfer"):
        big = 200000000
        dl = os.path.join(tmp, "big")
        proc = h3_start(p, "/bytes/%d" % big, "-o", dl, ca=crt)
        c.check(wait_for(lambda: p.metrics()["keyway_proxy_quic_connections"] == 1),
                "the transfer is under way")
        rnd = random.Random(7)
        for n in (1, 7, 20, 100, 1200, 1500):
            udp_exchange(p.qport, bytes(rnd.getrandbits(8) for _ in range(n)), wait=0.01)
        dcid, scid = bytes(rnd.getrandbits(8) for _ in range(8)), b"\x01" * 8
        # A client Initial cut short, and one under 1200 bytes: neither makes a connection.
        initial = long_header(1, dcid, scid, b"\x00\x44\xe6" + bytes(60), pad_to=1200)
        c.eq(udp_exchange(p.qport, initial[:40], wait=0.05), b"", "truncated Initial: no answer")
        # An unknown version in 1200 bytes: Version Negotiation listing QUIC v1.
        vn = udp_exchange(p.qport, long_header(0x1a2a3a4a, dcid, scid, b"", pad_to=1200))
        c.check(len(vn) > 7 and vn[1:5] == b"\x00\x00\x00\x00" and b"\x00\x00\x00\x01" in vn[7:],
                "unknown version: Version Negotiation offering v1", vn[:40].hex())
        c.check(len(vn) > 7 and vn[6:6 + 8] == scid, "VN echoes the client's SCID as DCID")
        # A short header for a connection nobody has: a stateless reset, shorter than it.
        short = bytes([0x40]) + bytes(rnd.getrandbits(8) for _ in range(99))
        sr = udp_exchange(p.qport, short)
        c.check(21 <= len(sr) < len(short) and (sr[0] & 0xc0) == 0x40,
                "unknown connection: a stateless reset smaller than the packet", sr.hex())
        # A flood of small Initials: dropped, never a connection.
        for _ in range(300):
            udp_exchange(p.qport, initial[:rnd.randrange(30, 1199)], wait=0)
        out, err = proc.communicate(timeout=60)
        c.check(proc.returncode == 0, "the transfer went on and completed", err.decode()[-300:])
        c.eq(os.path.getsize(dl), big, "200 MB received whole")
        m = p.metrics()
        c.check(m["keyway_proxy_quic_dropped_datagrams_total"] >= 300, "drops counted",
                m["keyway_proxy_quic_dropped_datagrams_total"])
        c.check(m["keyway_proxy_quic_version_negotiations_total"] >= 1, "VN counted")
        c.check(m["keyway_proxy_quic_stateless_resets_total"] >= 1, "stateless reset counted")
        r = h3(p, "/", ca=crt)
        c.check(p.alive() and r.returncode == 0 and r.stdout == b"ok\n",
                "the proxy still serves")
        c.check(m["keyway_proxy_quic_sends_total"] < m['keyway_proxy_quic_datagrams_total{direction="sent"}'],
                "GSO: fewer sendmsg calls than datagrams sent")
        c.eq(m["keyway_proxy_quic_connections_accepted_total"], m["keyway_proxy_quic_handshakes_total"],
             "no hostile datagram made a connection")
        check_engine(p, "default (engine)", True)
    c.eq(p.stop(), 0, "exit 0 on SIGTERM")

modes = [("gnutls", ["--quic-crypto", "gnutls"], False),
         ("engine evp", ["--quic-crypto", "engine", "--quic-engine", "evp"], True)]
avail = run([os.environ["KEYWAY_PROXY"], "--listen", "127.0.0.1:0", "--cert", crt, "--key", key,
             "--respond", "--quic-listen", "127.0.0.1:0", "--quic-engine", "ipsec-mb",
             "--metrics", "bad-address"])  # stops after the engine check either way
if b"is not available here" in avail.stderr:
    print("note: the ipsec-mb engine is not available here; evp only")
else:
    modes.append(("engine ipsec-mb", ["--quic-engine", "ipsec-mb"], True))
for what, args, engine_on in modes:
    with c.section("--quic-crypto " + what):
        with QuicProxy(key, crt, "--workers", "1", *args) as p:
            body = os.path.join(tmp, "body-" + what.replace(" ", "-"))
            r = h3(p, "/bytes/20000000", "--key-update-kb", "3000", "-o", body, ca=crt)
            err = r.stderr.decode()
            c.eq(r.returncode, 0, "%s: 20 MB with key updates" % what)
            c.check(" key_updates=0" not in err, "%s: the client updated its keys" % what, err)
            c.check(open(body, "rb").read() == pattern(20000000), "%s: the body is intact" % what)
            r = h3(p, "/bytes/100000", "-n", "40", "-o", os.devnull, ca=crt)
            c.eq(r.returncode, 0, "%s: 40 parallel requests" % what)
            for cipher in ("aes-256-gcm", "chacha20-poly1305"):
                r = h3(p, "/bytes/3000000", "--cipher", cipher, "--key-update-kb", "1000",
                       "-o", body, ca=crt)
                c.check(r.returncode == 0 and open(body, "rb").read() == pattern(3000000),
                        "%s: %s (its own header protection), with key updates" % (what, cipher),
                        r.stderr)
            check_engine(p, what, engine_on)
            c.eq(p.stop(), 0, "%s: exit 0 on SIGTERM" % what)

with c.section("--max-connections caps QUIC connections too"):
    with QuicProxy(key, crt, "--workers", "1", "--max-connections", "1") as p:
        # Long enough to outlast the second client's 2 s (300 MB can finish in 1.5 s).
        proc = h3_start(p, "/bytes/1000000000", "-o", os.devnull, ca=crt)
        c.check(wait_for(lambda: p.metrics()["keyway_proxy_quic_connections"] == 1),
                "the first connection is open")
        r = h3(p, "/", "--timeout", "2", ca=crt)
        c.eq(r.returncode, 1, "a second connection over --max-connections 1 fails")
        c.check(p.metrics()["keyway_proxy_quic_connections_refused_total"] >= 1,
                "refusal counted")
        out, err = proc.communicate(timeout=60)
        c.eq(proc.returncode, 0, "the first connection finished")
        r = h3(p, "/", ca=crt)
        c.eq(r.returncode, 0, "its slot is free again")
        c.eq(p.stop(), 0, "exit 0 on SIGTERM")

with c.section("2 % loss and 2 % reordering each way (a UDP relay), engine mode"):
    with QuicProxy(key, crt, "--workers", "1") as p:
        relay = LossyRelay(p.qport)
        r = subprocess.run([H3, "--connect", "127.0.0.1:%d" % relay.port, "--ca", crt, "--stats",
                            "-n", "4", "--key-update-kb", "2000", "-o", os.path.join(tmp, "lossy"),
                            p.url("/bytes/5000000")], capture_output=True, timeout=120)
        relay.close()
        c.check(r.returncode == 0 and open(os.path.join(tmp, "lossy"), "rb").read() ==
                pattern(5000000), "4 x 5 MB whole through loss and reordering", r.stderr)
        c.check(relay.dropped > 100 and relay.swapped > 100,
                "the relay dropped and swapped datagrams",
                "dropped %d swapped %d passed %d" % (relay.dropped, relay.swapped, relay.passed))
        check_engine(p, "lossy", True)
        c.eq(p.stop(), 0, "exit 0 on SIGTERM")

with c.section("--quic-retry on: clients prove their address first"):
    with QuicProxy(key, crt, "--workers", "2", "--quic-retry", "on") as p:
        r = h3(p, "/bytes/1000000", "-o", os.path.join(tmp, "retry"), ca=crt)
        c.check(r.returncode == 0 and open(os.path.join(tmp, "retry"), "rb").read() ==
                pattern(1000000), "keyway-h3 through a Retry", r.stderr)
        m = p.metrics()
        c.check(m["keyway_proxy_quic_retries_total"] >= 1, "a Retry was sent")
        c.eq(m["keyway_proxy_quic_connections_accepted_total"], 1.0,
             "one connection, made after the token came back")
        # An Initial with a forged Retry token: no connection, no answer.
        dcid = bytes(range(8))
        token = b"\xb6" + bytes(40)
        rest = bytes([len(token)]) + token
        body_len = 1200 - (1 + 4 + 1 + 8 + 1 + 8 + len(rest) + 2)
        forged = long_header(1, dcid, b"\x02" * 8, rest + bytes([0x40 | body_len >> 8,
                                                            body_len & 0xff]), pad_to=1200)
        c.eq(udp_exchange(p.qport, forged), b"", "a forged token: no answer")
        m = p.metrics()
        c.check(m["keyway_proxy_quic_bad_tokens_total"] >= 1, "the forged token counted")
        c.eq(m["keyway_proxy_quic_connections_accepted_total"], 1.0, "and no connection made")
        c.eq(p.stop(), 0, "exit 0 on SIGTERM")
    with QuicProxy(key, crt, "--workers", "1") as p:
        c.eq(h3(p, "/", ca=crt).returncode, 0, "--quic-retry auto, one client")
        c.eq(p.metrics()["keyway_proxy_quic_retries_total"], 0.0, "no Retry when not loaded")
        c.eq(p.stop(), 0, "exit 0 on SIGTERM")

with c.section("--workers 2: a client that changes port keeps its connection"):
    with QuicProxy(key, crt, "--workers", "2") as p:
        workers = set()
        for i in range(4):
            r = h3(p, "/bytes/30000000", "--migrate-kb", "1500", "-o", os.path.join(tmp, "mig"),
                   ca=crt)
            err = r.stderr.decode()
            m = re.search(r"migrations=(\d+)", err)
            c.check(r.returncode == 0 and m and int(m.group(1)) >= 10,
                    "run %d: 30 MB over at least 10 new client ports" % i, err[-300:])
            c.check(open(os.path.join(tmp, "mig"), "rb").read() == pattern(30000000),
                    "run %d: the body is intact" % i)
        c.eq(p.metrics()["keyway_proxy_quic_stateless_resets_total"], 0.0,
             "no datagram reached a worker that does not hold its connection")
        c.eq(p.stop(), 0, "exit 0 on SIGTERM")

with c.section("SIGHUP swaps the QUIC certificate with the TCP one, or neither"):
    d = os.path.join(tmp, "reload")
    os.mkdir(d)
    key_a, crt_a = make_cert(d, "a", "ec")
    key_b, crt_b = make_cert(d, "b", "rsa")
    live_key, live_crt = os.path.join(d, "live.key"), os.path.join(d, "live.crt")
    shutil.copy(key_a, live_key)
    shutil.copy(crt_a, live_crt)
    with QuicProxy(live_key, live_crt, "--workers", "2") as p:
        c.eq(h3(p, "/", ca=crt_a).returncode, 0, "serves certificate A")
        shutil.copy(key_b, live_key)
        shutil.copy(crt_b, live_crt)
        p.signal(signal.SIGHUP)
        c.check(p.wait_log("SIGHUP: reloaded", 10), "reloaded")
        c.eq(h3(p, "/", ca=crt_b).returncode, 0, "after SIGHUP: QUIC serves certificate B")
        c.eq(h3(p, "/", ca=crt_a).returncode, 1, "and no longer A")
        open(live_crt, "w").write("not a certificate\n")
        p.signal(signal.SIGHUP)
        c.check(p.wait_log("reload failed", 10), "a broken file: the reload fails")
        c.eq(h3(p, "/", ca=crt_b).returncode, 0, "QUIC keeps certificate B")
        t = run(["curl", "-sS", "--cacert", crt_b, "--resolve", "localhost:%d:127.0.0.1" % p.port,
                 "https://localhost:%d/" % p.port])
        c.check(t.stdout == b"ok\n", "TCP keeps certificate B too", t.stderr)
        c.eq(p.stop(), 0, "exit 0 on SIGTERM")

with c.section("SIGTERM drains HTTP/3: GOAWAY, open requests answered"):
    with QuicProxy(key, crt, "--workers", "1") as p:
        dl = os.path.join(tmp, "drain")
        proc = h3_start(p, "/bytes/200000000", "-o", dl, ca=crt)
        c.check(wait_for(lambda: p.metrics()["keyway_proxy_quic_requests_total"] == 1),
                "the transfer is under way")
        p.signal(signal.SIGTERM)
        c.check(p.wait_log("draining", 5), "draining")
        r = h3(p, "/", "--timeout", "2", ca=crt)
        c.eq(r.returncode, 1, "no new connection while draining")
        out, err = proc.communicate(timeout=60)
        c.check(proc.returncode == 0 and os.path.getsize(dl) == 200000000,
                "the transfer under way finished whole", err.decode()[-300:])
        c.eq(p.wait(30), 0, "then the proxy exits 0")
    with QuicProxy(key, crt, "--workers", "1", "--drain-timeout", "1") as p:
        proc = h3_start(p, "/bytes/1000000000", "-o", os.devnull, ca=crt)
        c.check(wait_for(lambda: p.metrics()["keyway_proxy_quic_requests_total"] == 1),
                "the transfer is under way")
        p.signal(signal.SIGTERM)
        c.eq(p.wait(20), 0, "--drain-timeout 1: the proxy closes what is left and exits 0")
        out, err = proc.communicate(timeout=60)
        c.eq(proc.returncode, 1, "the cut transfer fails in the client")

with c.section("the access log has a proto=h3 line per QUIC connection"):
    alog = os.path.join(tmp, "access.log")
    with QuicProxy(key, crt, "--workers", "1", "--access-log", alog) as p:
        c.eq(h3(p, "/bytes/1000", "-n", "3", "-o", os.devnull, ca=crt).returncode, 0, "3 requests")
        other_key, other_crt = make_cert(tmp, "other", "ec")
        c.eq(h3(p, "/", ca=other_crt).returncode, 1,
             "a client that does not trust the certificate fails")
        c.eq(p.stop(), 0, "exit 0 on SIGTERM")
    lines = [l for l in open(alog).read().splitlines() if "proto=h3" in l]
    c.eq(len(lines), 2, "one line per connection")
    ok = lines[0] if "requests=3" in lines[0] else lines[-1]
    c.check("sni=localhost tls=TLSv1.3 cipher=TLS_AES_" in ok and "requests=3 " in ok and
            ok.endswith("reason=client-close"), "the served connection's line", ok)
    bad = [l for l in lines if l != ok]
    c.check(bad and bad[0].endswith("reason=handshake-failed") and "requests=0" in bad[0],
            "the failed handshake's line", bad)

with c.section("no Alt-Svc without --quic-listen"):
    with Proxy(key, crt, "--workers", "1") as p:
        t = run(["curl", "-sS", "-D", "-", "-o", os.devnull, "--cacert", crt, "--resolve",
                 "localhost:%d:127.0.0.1" % p.port, "https://localhost:%d/" % p.port])
        c.check(t.returncode == 0 and b"alt-svc" not in t.stdout.lower(), "no Alt-Svc",
                t.stdout)
        c.eq(p.stop(), 0, "exit 0 on SIGTERM")

with c.section("start-up errors"):
    r = run([os.environ["KEYWAY_PROXY"], "--listen", "127.0.0.1:0", "--cert", crt, "--key", key,
             "--respond", "--quic-listen", "unix:/x"])
    c.check(r.returncode == 2 and b"--quic-listen" in r.stderr, "--quic-listen unix: refused",
            r.stderr)
    r = run([os.environ["KEYWAY_PROXY"], "--listen", "127.0.0.1:0", "--cert", crt, "--key", key,
             "--respond", "--quic-listen", "127.0.0.1:0", "--quic-engine", "nope"])
    c.check(r.returncode == 2 and b"--quic-engine" in r.stderr, "an unknown --quic-engine: refused",
            r.stderr)

c.done()
