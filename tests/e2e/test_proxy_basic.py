"""keyway-proxy end to end: curl and openssl s_client handshakes with local
RSA, ECDSA and Ed25519 keys (inline backend, async on and off), TLS 1.3 and
1.2, no session tickets unless --resumption on, metrics counting the
handshakes, a clean exit on SIGTERM, and the start-up errors.
"""

import os
import shutil
import tempfile

from kwproxy import (Checker, Proxy, PROXY, make_cert, run, skip_without_proxy)

skip_without_proxy()
c = Checker()
tmp = tempfile.mkdtemp(prefix="kw-proxy-basic-")
keys = {k: make_cert(tmp, k, k) for k in ("rsa", "ec", "ed25519")}

for async_mode in ("off", "on"):
    for kind in ("rsa", "ec", "ed25519"):
        key, crt = keys[kind]
        with Proxy(key, crt, "--workers", "2", "--async", async_mode) as p:
            what = "%s key, async %s" % (kind, async_mode)
            url = "https://localhost:%d/anything?x=1" % p.port
            r = run(["curl", "-sS", "--cacert", crt, "--resolve",
                     "localhost:%d:127.0.0.1" % p.port, url, url, "-w", " %{http_code}"])
            c.eq(r.stdout.decode(), "ok\n 200ok\n 200", "curl, two requests: " + what)
            r = run(["curl", "-sS", "--cacert", crt, "--tls-max", "1.2", "--resolve",
                     "localhost:%d:127.0.0.1" % p.port, url, "-w", " %{http_code}"])
            c.eq(r.stdout.decode(), "ok\n 200", "curl over TLS 1.2: " + what)
            r = run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % p.port, "-CAfile",
                     crt, "-servername", "localhost", "-verify_return_error", "-ign_eof"],
                    input=b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            out = r.stdout.decode(errors="replace")
            c.check("Verify return code: 0 (ok)" in out and "\r\nok\n" in out,
                    "openssl s_client: " + what, out[-400:])
            c.check("TLSv1.3" in out, "TLS 1.3 by default: " + what)
            c.check("Post-Handshake New Session Ticket" not in out,
                    "no session ticket with --resumption off: " + what)
            m = p.metrics()
            c.eq(m.get("keyway_proxy_handshakes_total"), 3.0, "3 handshakes (curl reused one): " + what)
            c.eq(m.get("keyway_proxy_requests_total"), 4.0, "4 requests counted: " + what)
            c.eq(m.get('keyway_proxy_handshake_failures_total{reason="tls"}'), 0.0,
                 "no failures: " + what)
            c.check(m.get('keyway_proxy_worker_cpu_seconds_total{worker="1"}', -1) >= 0,
                    "CPU per worker exported: " + what)
            c.eq(m.get('keyway_proxy_async_pauses_total'), 0.0,
                 "inline signs never pause: " + what)
            c.eq(p.stop(), 0, "exit 0 on SIGTERM: " + what)

key, crt = keys["ec"]
with Proxy(key, crt, "--resumption", "on") as p:
    r = run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % p.port, "-CAfile", crt,
             "-ign_eof", "-msg"], input=b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    out = r.stdout.decode(errors="replace")
    c.check("NewSessionTicket" in out, "--resumption on sends tickets")
    p.stop()

# Start-up errors: one line naming the fix; exit 2 for a bad option, 1 for a file that
# does not load.
def startup_error(args, want, what, rc=2):
    r = run([PROXY, "--listen", "127.0.0.1:0", *args])
    err = r.stderr.decode()
    c.check(r.returncode == rc and want in err, what, "rc %d: %s" % (r.returncode, err))

startup_error(["--cert", crt, "--key", key], "--respond", "no --respond: named")
startup_error(["--cert", crt, "--key", key, "--respond", "--backend", "keyless"],
              "every --key is a local private key", "--backend keyless with a local key: mismatch")
startup_error(["--cert", crt, "--key", "keyway:ski=" + "00" * 20 + ";cert=" + crt, "--respond",
               "--backend", "threads"], "does not fit", "keyway URI with --backend threads")
startup_error(["--cert", crt, "--key", keys["rsa"][0], "--respond"], "does not match",
              "key not matching the certificate", rc=1)
startup_error(["--cert", crt, "--key", "/nonexistent.key", "--respond"], "/nonexistent.key",
              "missing key file named", rc=1)
startup_error(["--cert", crt, "--key", key, "--respond", "--poll", "sometimes"], "poll",
              "bad --poll value named")
conf = os.path.join(tmp, "proxy.conf")
with open(conf, "w") as f:
    f.write("cert = %s\nkey = %s\nrespond = true\nworker = 2\n" % (crt, key))
startup_error(["--config", conf], "workers", "config file typo gets a suggestion")
with open(conf, "w") as f:
    f.write("cert = %s\nkey = %s\nrespond = true\nworkers = 1\nasync = off\n" % (crt, key))
with Proxy(key, crt, "--config", conf) as p:
    c.check("async off" in p.stderr(), "--config file read (async off)")
    c.eq(p.stop(), 0, "config-started proxy exits 0")

shutil.rmtree(tmp)
c.done()
