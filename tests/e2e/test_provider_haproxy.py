"""The keyway provider in unmodified HAProxy 2.6 with ssl-mode-async.

HAProxy loads `ssl-provider keyway` and `ssl-provider default`, reads a
combined crt file (certificate + KEYWAY KEY reference), and runs its
handshakes in SSL_MODE_ASYNC: the provider pauses each one and wakes it
through the wait context's eventfd, which HAProxy watches.

- RSA and ECDSA: curl gets a 200; keywayd's /metrics count the signatures.
- Behind a keyway-relay adding 5 ms each way, with max_inflight 2 (a full
  backend): 300 concurrent clients all get their 200.
- 1,000 clients aborting mid-handshake (ClientHello sent, then close or
  reset), against a frontend with normal timeouts and one whose 3 ms
  client timeout makes HAProxy free connections while their job is paused:
  HAProxy stays up and serves, no sanitizer report, and its open
  descriptors come back to the baseline taken after the first requests
  (the provider's own keyserver connection stays open).
- KEYWAY_STATS_FILE, written when HAProxy stops (SIGUSR1), shows the
  pauses, the full-backend waits and the eventfd wake-ups.
"""

import concurrent.futures
import os
import random
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import time
import urllib.request

import kwharness
import kwprov
import kwtest
from kwrelay import read_to_eof

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


def client_hello():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def abort_storm(port, n, batch=100):
    """n clients: ClientHello, then close (half with RST), some after reading a little."""
    hello = client_hello()
    sent = 0
    for start in range(0, n, batch):
        socks = []
        for _ in range(min(batch, n - start)):
            so = socket.socket()
            try:
                so.connect(("127.0.0.1", port))
                so.sendall(hello)
                socks.append(so)
                sent += 1
            except OSError:
                so.close()
        time.sleep(random.uniform(0, 0.02))
        for k, so in enumerate(socks):
            if k % 2:
                so.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            if k % 3 == 0:
                so.setblocking(False)
                try:
                    so.recv(100)
                except OSError:
                    pass
            so.close()
    return sent


def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def signatures(s):
    """Signatures keywayd answered, from its metrics."""
    text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % s.kd.metrics_port,
                                  timeout=10).read().decode()
    return sum(int(float(m.group(2))) for m in
               re.finditer(r'^keyless_requests\{opcode="(Op\w*Sign\w*)"\} (\S+)$', text, re.M))


class HAProxy(kwharness.Process):
    def __init__(self, s, name, env, short_port=None):
        self.tmp = s.tmp
        self.port = kwprov.free_port()
        crt = os.path.join(s.tmp, "combined-%s.pem" % name)
        with open(crt, "w") as f:
            f.write(open(s.certs[name]).read() + open(s.refs[name]).read())
        short = ""
        if short_port:
            short = ("frontend fe_short\n    timeout client 3ms\n"
                     "    bind 127.0.0.1:%d ssl crt %s\n" % (short_port, crt) +
                     "    http-request return status 200 content-type text/plain string ok\n")
        cfg = os.path.join(s.tmp, "haproxy-%s.cfg" % name)
        with open(cfg, "w") as f:
            f.write("""global
    ssl-provider-path %s
    ssl-provider keyway
    ssl-provider default
    ssl-mode-async
    maxconn 5000
defaults
    mode http
    timeout connect 5s
    timeout client 10s
    timeout server 10s
frontend fe
    bind 127.0.0.1:%d ssl crt %s
    http-request return status 200 content-type text/plain string "hello from haproxy"
%s""" % (s.prov_dir, self.port, crt, short))
        super().__init__([HAPROXY, "-db", "-f", cfg], env=env, stop_timeout=20,
                         log=os.path.join(s.tmp, "haproxy-%s.log" % name))
        self.start()
        self.wait_ready(lambda: kwharness.accepts(self.port), 15)

    def output(self):
        return self.log_text()

    def curl(self, s):
        p = subprocess.run(["curl", "-sS", "-o", "-", "-w", "\n%{http_code}", "--cacert",
                            s.pki.ca_file, "--resolve", "localhost:%d:127.0.0.1" % self.port,
                            "https://localhost:%d/" % self.port],
                           capture_output=True, text=True, timeout=30)
        return p.returncode, p.stdout.strip().split("\n")[-1], p.stderr

    def stop(self):
        """Soft stop (SIGUSR1): HAProxy exits by itself once idle."""
        return super().stop(signal.SIGUSR1)


def get_200(port, cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as so:
        with ctx.wrap_socket(so, server_hostname="localhost") as t:
            t.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
            data = read_to_eof(t, 4096)
    return data.split(b"\r\n", 1)[0].split(b" ")[1:2] == [b"200"]


def body(c):
    if not os.access(HAPROXY, os.X_OK):
        kwprov.skip("haproxy not installed")
    if shutil.which("curl") is None:
        kwprov.skip("curl not installed")
    with kwtest.TempDir("kw-prov-haproxy-") as tmp:
        s = kwprov.Setup(tmp, names=("rsa2048", "p256"))
        s.kd = kwtest.Keywayd(s.pki, os.path.join(tmp, "keys"), tmp, metrics=True)
        with s:
            c.section("curl through HAProxy")
            for name in ("rsa2048", "p256"):
                stats = os.path.join(tmp, "stats-%s" % name)
                before = signatures(s)
                hp = HAProxy(s, name, s.env(KEYWAY_STATS_FILE=stats))
                try:
                    results = [hp.curl(s) for _ in range(5)]
                    c.check(all(r[0] == 0 and r[1] == "200" for r in results),
                            "%s: curl gets 200 five times" % name,
                            repr(results[-1]) + hp.output()[-1500:])
                    c.check(signatures(s) - before >= 5,
                            "%s: keywayd's metrics count the signatures (%d)" % (
                                name, signatures(s) - before))
                finally:
                    rc = hp.stop()
                c.eq(rc, 0, "%s: HAProxy stops cleanly" % name)
                c.check("ERROR: AddressSanitizer" not in hp.output(),
                        "%s: no sanitizer report" % name, hp.output()[-3000:])
                st = kwprov.read_stats(stats)
                c.check(sorted(st) == sorted(kwprov.STATS_NAMES) and st["pauses"] >= 5 and
                        st["fd_wakeups"] >= 5 and st["eventfds_created"] >= 1 and
                        st["callback_wakeups"] == 0,
                        "%s: stats file shows pauses and eventfd wake-ups" % name, repr(st))

            c.section("behind a 5 ms relay: full backend, 1,000 aborting clients")
            relay = kwprov.Relay(s.server(), 5)
            stats = os.path.join(tmp, "stats-relay")
            short_port = kwprov.free_port()
            hp = HAProxy(s, "p256", s.env(servers=relay.addr(), KEYWAY_STATS_FILE=stats,
                                          KEYWAY_CONNECTIONS="1", KEYWAY_MAX_INFLIGHT="2",
                                          KEYWAY_TIMEOUT_MS="10000"),
                         short_port=short_port)
            try:
                warm = [hp.curl(s) for _ in range(3)]
                c.check(all(r[1] == "200" for r in warm), "relay: curl gets 200",
                        repr(warm) + hp.output()[-1500:])
                baseline = open_fds(hp.proc.pid)
                with concurrent.futures.ThreadPoolExecutor(50) as ex:
                    oks = list(ex.map(lambda _: get_200(hp.port, s.pki.ca_file), range(300)))
                c.eq(sum(oks), 300, "full backend (max_inflight 2): 300 concurrent clients "
                     "all get 200")
                sent = abort_storm(hp.port, 500) + abort_storm(short_port, 500)
                c.check(sent >= 900, "1,000 clients aborting mid-handshake (%d connected)" % sent)
                deadline = time.monotonic() + 30
                fds = open_fds(hp.proc.pid)
                while time.monotonic() < deadline and fds > baseline:
                    time.sleep(0.2)
                    fds = open_fds(hp.proc.pid)
                c.check(hp.proc.poll() is None, "HAProxy survives the aborts")
                c.check(fds <= baseline, "HAProxy's open descriptors back to the baseline "
                        "(%d, baseline %d)" % (fds, baseline))
                after = hp.curl(s)
                c.eq(after[1], "200", "HAProxy still serves after the aborts")
            finally:
                rc = hp.stop()
                relay.stop()
            c.eq(rc, 0, "relay: HAProxy stops cleanly")
            c.check("ERROR: AddressSanitizer" not in hp.output(), "relay: no sanitizer report",
                    hp.output()[-3000:])
            st = kwprov.read_stats(stats)
            c.check(st.get("eagain", 0) > 0 and st.get("fd_wakeups", 0) >= 300 and
                    st.get("callback_wakeups", -1) == 0,
                    "relay: stats show full-backend waits and eventfd wake-ups", repr(st))


if __name__ == "__main__":
    kwtest.run_main("provider_haproxy", body)
