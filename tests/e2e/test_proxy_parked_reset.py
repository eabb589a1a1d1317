"""keyway-proxy does not spin when clients reset while their handshakes are
parked: keys on keywayd behind a 500 ms keyway-relay, so every handshake's
signature stays in flight for about a second, and a job pool of four, so
most connections also wait for a free ASYNC_JOB. Each client sends its
ClientHello and resets the connection (SO_LINGER 0) once the proxy has
parked it. A parked socket that stayed in epoll would be reported again
and again (EPOLLHUP|EPOLLERR ignore the interest mask): the proxy's CPU
time over the parked interval must stay far below one busy core, every
reset connection must be closed once its op completes, and a fresh client
must still complete a handshake.
"""

import os
import socket
import ssl
import struct
import tempfile
import time

import kwprov
from kwproxy import Checker, Proxy, client_context, https_get, skip_without_proxy, wait_for

skip_without_proxy()
c = Checker()
tmp = tempfile.mkdtemp(prefix="kw-proxy-parked-")
CLIENTS = 24
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """User plus system CPU time of pid, from /proc/PID/stat."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def send_client_hello(port, ca):
    """A TCP connection that has sent its ClientHello and waits for the answer."""
    ctx = client_context(ca)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    s = ctx.wrap_socket(raw, server_hostname="localhost", do_handshake_on_connect=False)
    s.setblocking(False)
    try:
        s.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return s


def reset(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def clean_env():
    return {k: v for k, v in os.environ.items() if not k.startswith("KEYWAY_")}


with kwprov.Setup(tmp, names=("p256",)) as s:
    ca = s.pki.ca_file
    relay = kwprov.Relay(s.server(), 500)
    flags = ["--servers", relay.addr(), "--ca", ca, "--client-cert", s.pki.client_cert_file,
             "--client-key", s.pki.client_key_file, "--workers", "1", "--async-jobs", "4",
             "--keepalive-timeout", "0", "--timeout-ms", "10000",
             "--attempt-timeout-ms", "8000"]
    for what, extra in (("callback", []), ("fd", ["--notify", "fd"])):
        with Proxy(s.uris["p256"], s.certs["p256"], *flags, *extra, env=clean_env()) as p:
            # Warm up the keyserver connection so the parked interval is all op latency.
            c.check(https_get(p.port, ca)[0] == 200,
                    what + ": a first handshake completes")
            socks = [send_client_hello(p.port, ca) for _ in range(CLIENTS)]
            c.check(wait_for(lambda: p.metrics()["keyway_proxy_async_job_waits_total"] > 0, 5),
                    what + ": handshakes parked on ops and on the job pool")
            for sock in socks:
                reset(sock)
            time.sleep(0.05)
            before, t0 = cpu_seconds(p.proc.pid), time.monotonic()
            time.sleep(1.5)
            used = (cpu_seconds(p.proc.pid) - before) / (time.monotonic() - t0)
            c.check(used < 0.3, "%s: %.0f%% of a core while %d reset handshakes are parked "
                    "(< 30%%)" % (what, used * 100, CLIENTS))
            c.check(wait_for(lambda: p.metrics()["keyway_proxy_open_connections"] == 0, 20),
                    what + ": every reset connection closed once its op completed",
                    p.metrics().get("keyway_proxy_open_connections"))
            c.check(https_get(p.port, ca)[0] == 200,
                    what + ": a fresh handshake completes afterwards")
            # Ops: the two full handshakes and the four that held the jobs when their
            # clients reset; a connection that waited for a job got none once reset.
            ops = p.metrics()["keyway_provider_ops_submitted_total"]
            c.check(ops <= 2 + 4 + 2, "%s: %d ops, none for a client reset while waiting for "
                    "a job" % (what, ops))
            c.eq(p.stop(), 0, what + ": clean exit")
    relay.stop()

c.done()
