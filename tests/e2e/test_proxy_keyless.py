"""keyway-proxy with keys only keyservers hold: a keyway: URI and a KEYWAY KEY
reference PEM, answered by keywayd behind a 2.5 ms keyway-relay through the
built-in provider with external polling (each worker's own keyserver
connections in its own loop). Callback and fd notification, async on and
off, settings from flags and from a --config file with the provider's
openssl.cnf key names, curl as an independent client, the keyserver going
away and coming back, and start-up errors that name the fix.
"""

import os
import shutil
import subprocess
import tempfile
import time

import kwprov
from kwproxy import Checker, Proxy, concurrent_gets, https_get, skip_without_proxy

skip_without_proxy()
c = Checker()
tmp = tempfile.mkdtemp(prefix="kw-proxy-keyless-")
CLIENTS, EACH = 8, 6
N = CLIENTS * EACH


def clean_env():
    """The test's environment without KEYWAY_* settings: flags or --config give them."""
    return {k: v for k, v in os.environ.items() if not k.startswith("KEYWAY_")}




with kwprov.Setup(tmp, names=("rsa2048", "p256")) as s:
    ca = s.pki.ca_file
    relay = kwprov.Relay(s.server(), 2.5)
    tls_flags = ["--ca", ca, "--client-cert", s.pki.client_cert_file,
                 "--client-key", s.pki.client_key_file]
    flags = ["--servers", relay.addr()] + tls_flags
    cases = [
        ("URI, callback", s.uris["p256"], s.certs["p256"], []),
        ("reference PEM, callback", s.refs["rsa2048"], s.certs["rsa2048"], []),
        ("URI, fd", s.uris["p256"], s.certs["p256"], ["--notify", "fd"]),
        ("URI, async off", s.uris["p256"], s.certs["p256"], ["--async", "off"]),
    ]
    for what, key, crt, extra in cases:
        with Proxy(key, crt, "--workers", "2", "--keepalive-timeout", "0", *flags, *extra,
                   env=clean_env()) as p:
            errors = concurrent_gets(p.port, ca, CLIENTS, EACH)
            c.check(not errors, "%s: %d handshakes, no errors" % (what, N), errors[:3])
            m = p.metrics()
            info = [k for k in m if k.startswith("keyway_proxy_info")]
            c.check(info and 'backend="keyless"' in info[0], what + ": backend defaults to keyless",
                    info)
            c.eq(m["keyway_provider_ops_submitted_total"], float(N),
                 what + ": one keyless op per handshake")
            c.eq(m['keyway_proxy_inflight_ops{kind="asym"}'], 0.0, what + ": none left in flight")
            pauses = m["keyway_provider_pauses_total"]
            if "off" in extra:
                c.eq(pauses, 0.0, what + ": blocking offload never pauses")
            elif "fd" in extra:
                c.check(pauses >= N and m["keyway_provider_fd_wakeups_total"] > 0 and
                        m["keyway_provider_eventfds_created_total"] > 0 and
                        m['keyway_proxy_async_wakeups_total{via="fd"}'] > 0 and
                        m['keyway_proxy_async_wakeups_total{via="queue"}'] == 0,
                        what + ": paused, woken through wait eventfds", m)
            else:
                c.check(pauses >= N and
                        m["keyway_provider_callback_wakeups_total"] ==
                        pauses - m["keyway_provider_spurious_resumes_total"] -
                        m["keyway_provider_eagain_total"] and
                        m["keyway_provider_eventfds_created_total"] == 0 and
                        m['keyway_proxy_async_wakeups_total{via="queue"}'] >= N,
                        what + ": paused, woken through the async queue, no eventfd",
                        {k: v for k, v in m.items() if "provider" in k or "wakeups" in k})
            c.eq(p.stop(), 0, what + ": clean exit")

    # The provider's openssl.cnf key names work in --config; curl is an independent client.
    conf = os.path.join(tmp, "proxy.conf")
    with open(conf, "w") as f:
        f.write("# keyserver settings, as in the provider's openssl.cnf section\n"
                "servers = %s\nca = %s\nclient_cert = %s\nclient_key = %s\ntimeout_ms = 1500\n"
                % (s.server(), ca, s.pki.client_cert_file, s.pki.client_key_file))
    with Proxy(s.refs["p256"], s.certs["p256"], "--config", conf, env=clean_env()) as p:
        out = subprocess.run(["curl", "-sS", "--cacert", ca, "--resolve",
                              "localhost:%d:127.0.0.1" % p.port,
                              "https://localhost:%d/" % p.port],
                             capture_output=True, text=True, timeout=30)
        c.check(out.returncode == 0 and out.stdout == "ok\n", "--config keys: curl gets 200",
                out.stderr)

        # Without the keyserver the handshake fails cleanly (the key is nowhere else) ...
        s.kd.stop()
        t0 = time.monotonic()
        try:
            https_get(p.port, ca)
            failed = False
        except Exception:  # noqa: BLE001
            failed = True
        c.check(failed and time.monotonic() - t0 < 15, "keyserver down: handshake fails cleanly")
        c.check(p.alive(), "keyserver down: proxy alive")
        # ... and succeeds again once it is back.
        s.kd.start()
        ok = False
        deadline = time.monotonic() + 20
        while not ok and time.monotonic() < deadline:
            try:
                ok = https_get(p.port, ca)[0] == 200
            except Exception:  # noqa: BLE001
                time.sleep(0.2)
        c.check(ok, "keyserver back: handshakes succeed again")
        c.eq(p.stop(), 0, "keyserver down and back: clean exit")
    relay.stop()

    # Start-up errors name the fix.
    bad = [
        ("no keyserver configured", [], "--servers"),
        ("keyway key with --backend threads", ["--backend", "threads"] + flags, "--backend"),
    ]
    for what, args, needle in bad:
        p = Proxy(s.uris["p256"], s.certs["p256"], *args, expect_start=False, env=clean_env())
        try:
            rc = p.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.proc.kill()
            rc = None
        err = p.stderr()
        c.check(rc == 2 and needle in err and "fix" in err, "start-up error: " + what,
                "rc %r: %s" % (rc, err.strip()))

shutil.rmtree(tmp, ignore_errors=True)
c.done()
