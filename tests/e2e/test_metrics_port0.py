"""--metrics HOST:0 lets the kernel pick the port; keywayd and keyway-proxy
log the port really bound (not ":0"), and /metrics answers there.

Standard library only, with kwharness for the checks. The programs come from
KEYWAYD and KEYWAY_PROXY (keyway-proxy's part is left out without it);
without KEYWAYD the test is skipped (exit 77).
"""

import os
import subprocess
import urllib.request

import kwharness

TIMEOUT = 20.0
KEYWAYD = os.environ.get("KEYWAYD")
PROXY = os.environ.get("KEYWAY_PROXY")


def scrape(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=TIMEOUT) as r:
        return r.status, r.read().decode()


def check_logged_port(c, p, pattern, what, family):
    """Waits for pattern (one group: the port) in p's log, then scrapes it."""
    m = p.wait_log(pattern, TIMEOUT)
    if not c.check(m is not None, "%s logs the metrics address" % what, p.log_text()):
        return
    port = int(m.group(1))
    c.check(port != 0, "%s logs the port bound, not 0" % what, m.group(0))
    status, text = scrape(port)
    c.eq(status, 200, "%s: /metrics answers on the logged port" % what)
    c.check(family in text, "%s: its own metrics there" % what, text[:300])


def keywayd(c, tmp):
    keys = os.path.join(tmp, "keys")
    os.makedirs(keys)
    key = os.path.join(keys, "a.key")
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", key], check=True,
                   capture_output=True, timeout=TIMEOUT)
    os.chmod(key, 0o600)
    p = kwharness.Process([KEYWAYD, "--keys", keys, "--unix", os.path.join(tmp, "kw.sock"),
                           "--workers", "1", "--metrics", "127.0.0.1:0"], what="keywayd")
    with p:
        check_logged_port(c, p, r"metrics on http://127\.0\.0\.1:(\d+)/metrics", "keywayd",
                          "keyless_keys")
        c.eq(p.stop(), 0, "keywayd: exit 0 on SIGTERM")


def proxy(c, tmp):
    key, crt = os.path.join(tmp, "p.key"), os.path.join(tmp, "p.crt")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", crt, "-days",
                    "2", "-subj", "/CN=localhost"], check=True, capture_output=True,
                   timeout=TIMEOUT)
    for attempt in range(3):  # the listener's free port may be taken in between
        port = kwharness.free_port()
        p = kwharness.Process([PROXY, "--listen", "127.0.0.1:%d" % port, "--cert", crt,
                               "--key", key, "--respond", "--workers", "1",
                               "--metrics", "127.0.0.1:0"], what="keyway-proxy")
        with p:
            if not p.wait_ready(lambda: "listening on" in p.log_text(), TIMEOUT):
                continue
            check_logged_port(c, p, r"metrics on 127\.0\.0\.1:(\d+)", "keyway-proxy",
                              "keyway_proxy_handshakes_total")
            c.eq(p.stop(), 0, "keyway-proxy: exit 0 on SIGTERM")
            return
    c.fail("keyway-proxy started")


def body(c):
    with kwharness.TempDir() as tmp:
        with c.section("keywayd"):
            keywayd(c, tmp)
        if PROXY:
            with c.section("keyway-proxy"):
                proxy(c, tmp)
        else:
            print("note: KEYWAY_PROXY not set, keyway-proxy not checked")


if __name__ == "__main__":
    if not KEYWAYD:
        kwharness.skip("KEYWAYD not set")
    kwharness.run_main("--metrics HOST:0", body)
