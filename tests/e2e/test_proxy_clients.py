"""keyway-proxy against stock clients -- curl and openssl s_client -- in every
mode: inline, threads (callback and fd notification, each poll mode), and
keyless (callback and fd, async on and off), with the counters that prove
which path ran: the provider offloaded one signature per handshake (none
inline), handshakes paused unless async is off, and wake-ups came through
the async queue or the wait fds as configured.
"""

import os
import shutil
import subprocess
import tempfile

import kwprov
from kwproxy import Checker, Proxy, skip_without_proxy

skip_without_proxy()
c = Checker()
tmp = tempfile.mkdtemp(prefix="kw-proxy-clients-")


def curl(port, ca):
    out = subprocess.run(["curl", "-sS", "--cacert", ca, "--resolve",
                          "localhost:%d:127.0.0.1" % port, "https://localhost:%d/" % port],
                         capture_output=True, text=True, timeout=30)
    return out.returncode == 0 and out.stdout == "ok\n", out.stderr


def s_client(port, ca, tls):
    """One s_client handshake and request (-quiet waits for the close); True if verified and answered."""
    out = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port,
                          "-servername", "localhost", "-CAfile", ca, "-verify_return_error",
                          "-" + tls, "-quiet"],
                         input=b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
                         capture_output=True, timeout=30)
    return b"200 OK" in out.stdout and out.stdout.endswith(b"ok\n"), out.stderr[-300:]


with kwprov.Setup(os.path.join(tmp, "kw"), names=("p256", "rsa2048")) as s:
    ca = s.pki.ca_file
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYWAY_")}
    keyless = ["--servers", s.server(), "--ca", ca, "--client-cert", s.pki.client_cert_file,
               "--client-key", s.pki.client_key_file]
    local = s.keys["p256"].path  # the same key, here as a local file
    modes = [("inline", local, [])]
    for notify in ("callback", "fd"):
        for poll in ("heuristic", "timer", "busy"):
            modes.append(("threads %s %s" % (notify, poll), local,
                          ["--backend", "threads", "--notify", notify, "--poll", poll]))
    for notify in ("callback", "fd"):
        for asyn in ("on", "off"):
            modes.append(("keyless %s async %s" % (notify, asyn), s.uris["p256"],
                          keyless + ["--notify", notify, "--async", asyn]))
    modes.append(("keyless RSA reference PEM", s.refs["rsa2048"], keyless))
    for what, key, args in modes:
        crt = s.certs["rsa2048" if "RSA" in what else "p256"]
        with Proxy(key, crt, "--workers", "1", *args, env=env) as p:
            ok, err = curl(p.port, ca)
            c.check(ok, what + ": curl", err)
            for tls in ("tls1_3", "tls1_2"):
                ok, err = s_client(p.port, ca, tls)
                c.check(ok, "%s: openssl s_client -%s" % (what, tls), err)
            m = p.metrics()
            hs = m["keyway_proxy_handshakes_total"]
            offloaded = m["keyway_provider_ops_submitted_total"]
            pauses = m["keyway_proxy_async_pauses_total"]
            c.eq(hs, 3.0, what + ": three handshakes")
            if what == "inline":
                c.check(offloaded == 0 and pauses == 0, what + ": nothing offloaded, no pause")
            else:
                c.eq(offloaded, hs, what + ": one offloaded signature per handshake")
                if "async off" in what:
                    c.eq(pauses, 0.0, what + ": blocking offload, no pause")
                else:
                    via = "fd" if "fd" in what else "queue"
                    c.check(pauses >= hs and
                            m['keyway_proxy_async_wakeups_total{via="%s"}' % via] >= hs,
                            "%s: paused and woken through the %s" % (what, via),
                            {k: v for k, v in m.items() if "async" in k})
            c.eq(p.stop(), 0, what + ": clean exit")

shutil.rmtree(tmp, ignore_errors=True)
c.done()
