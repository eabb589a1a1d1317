#!/usr/bin/python3
"""--client-crl: revoked client certificates are refused, and a SIGHUP that
revokes the certificate of an open connection closes that connection (and
only that one). Every CA of --client-ca needs a CRL: one missing is refused
at start-up and on reload (the old CRLs stay). The listener issues no
session tickets and resumes no session (TLS 1.2 and 1.3), so a revoked
client cannot come back on an old session. An expired CRL (or one not valid
yet) is warned about at load, and each refused client certificate is logged
with its reason, rate-limited."""

import datetime
import os
import re
import signal
import ssl
import urllib.request

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

import kwharness
import kwtest as kw


def make_crl(ca_key, ca_cert, revoked=(), last=None, next=None):
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject)
         .last_update(last or now - datetime.timedelta(minutes=5))
         .next_update(next or now + datetime.timedelta(days=7)))
    for cert in revoked:
        b = b.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(cert.serial_number)
            .revocation_date(now - datetime.timedelta(minutes=1)).build())
    return b.sign(ca_key, hashes.SHA256())


def write_crls(path, *crls):
    with open(path + ".new", "wb") as f:
        for crl in crls:
            f.write(crl.public_bytes(serialization.Encoding.PEM))
    os.replace(path + ".new", path)
    return path


def connects(cert, port):
    try:
        with cert.connect(port) as cl:
            return kw.ping_ok(cl)
    except (ssl.SSLError, OSError, kw.ConnectionClosed):
        return False


def stale_crls(c, tmp, pki, keys_dir, x):
    """An expired CRL is accepted (as documented) but warned about at start-up and on
    reload, naming the file, the CA and nextUpdate; each client it makes verification
    refuse is logged with the reason. A CRL not valid yet is warned about too."""
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    expired_at = now - datetime.timedelta(days=1)
    path = os.path.join(tmp, "stale.pem")
    write_crls(path, make_crl(pki.ca_key, pki.ca, last=now - datetime.timedelta(days=8),
                              next=expired_at))
    want = (r"--client-crl %s: the CRL of the CA '/CN=Keyway Test CA' has expired "
            r"\(thisUpdate [0-9TZ:-]+, nextUpdate %s\)" %
            (re.escape(path), expired_at.strftime("%Y-%m-%dT%H:%M:%SZ")))
    with kw.Keywayd(pki, keys_dir, tmp, extra=["--client-crl", path]) as kd:
        c.check(kd.wait_log(want, timeout=5.0) is not None,
                "start-up warns of the expired CRL, naming the file, the CA and nextUpdate",
                kd.stderr_text()[-600:])
        c.check(not connects(x, kd.port), "a client of that CA is refused")
        m = kd.wait_log(r"client certificate refused: CRL has expired", timeout=5.0)
        c.check(m is not None, "the refused handshake is logged with its reason",
                kd.stderr_text()[-600:])
        c.check(not connects(x, kd.port) and not connects(x, kd.port),
                "later tries are refused too")
        log = kd.stderr_text()
        c.eq(log.count("refused: CRL has expired"), 1,
             "refusals within 10 s after a logged one are held back (rate limit)")
        at = len(log)
        future = now + datetime.timedelta(days=1)
        write_crls(path, make_crl(pki.ca_key, pki.ca, last=future,
                                  next=future + datetime.timedelta(days=7)))
        kd.signal(signal.SIGHUP)
        m = kd.wait_log(r"--client-crl %s: the CRL of the CA '/CN=Keyway Test CA' is not "
                        r"valid yet \(thisUpdate %s" %
                        (re.escape(path), future.strftime("%Y-%m-%dT%H:%M:%SZ")),
                        timeout=5.0, start=at)
        c.check(m is not None, "a reload warns of a CRL not valid yet",
                kd.stderr_text()[at:][-600:])
        at = len(kd.stderr_text())
        write_crls(path, make_crl(pki.ca_key, pki.ca),
                   make_crl(pki.ca_key, pki.ca, last=now - datetime.timedelta(days=8),
                            next=expired_at))
        kd.signal(signal.SIGHUP)
        kd.wait_log("reloaded", timeout=5.0, start=at)
        c.check("has expired" not in kd.stderr_text()[at:],
                "no warning when the CA also has a current CRL in the file",
                kd.stderr_text()[at:][-600:])
        c.check(connects(x, kd.port), "with a current CRL the client connects again")


def main(c):
    with kw.TempDir() as tmp:
        pki, keys_dir, keys = kw.setup(tmp, ["p256"])
        p256 = keys["p256"]
        x = kw.ClientCert(pki, "front-x", "front-x")
        y = kw.ClientCert(pki, "front-y", "front-y")
        crl = write_crls(os.path.join(tmp, "crl.pem"), make_crl(pki.ca_key, pki.ca))

        with kw.Keywayd(pki, keys_dir, tmp, metrics=True, workers=2,
                        extra=["--client-crl", crl]) as kd:
            with c.section("revocation on an open connection"):
                cx, cy = x.connect(kd.port), y.connect(kd.port)
                c.check(kw.signs_with(cx, p256)[0] and kw.signs_with(cy, p256)[0],
                        "both clients sign while neither is revoked")
                write_crls(crl, make_crl(pki.ca_key, pki.ca, revoked=[x.cert]))
                kd.signal(signal.SIGHUP)
                closed, _ = cx.expect_closed(5.0)
                c.check(closed, "after SIGHUP the revoked client's open connection is closed")
                c.check(kw.ping_ok(cy) and kw.signs_with(cy, p256)[0],
                        "the other client's open connection goes on")
                c.check(not connects(x, kd.port), "the revoked client cannot connect again")
                c.check(kd.wait_log(r"client certificate refused: certificate revoked",
                                    timeout=5.0) is not None,
                        "the refused handshake is logged with its reason (revoked)",
                        kd.stderr_text()[-600:])
                c.check(connects(y, kd.port), "the other client still connects")
                with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % kd.metrics_port,
                                            timeout=5) as r:
                    page = r.read().decode()
                c.check("\nkeyway_keywayd_connections_revoked_total 1\n" in page,
                        "the closed connection is counted", page[-600:])
                cx.close()
                cy.close()

            with c.section("no session cache, no tickets"):
                for ver in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
                    ctx = y.context(min_version=ver, max_version=ver)
                    cl = kw.Client.tcp(kd.port, ctx)
                    ok = kw.ping_ok(cl)  # TLS 1.3 tickets come after the handshake
                    sess = cl.sock.session
                    cl.close()
                    c.check(ok and sess is not None and not sess.has_ticket,
                            "%s: no session ticket issued" % ver.name)
                    raw = __import__("socket").create_connection(("127.0.0.1", kd.port), 10)
                    s2 = ctx.wrap_socket(raw, server_hostname="127.0.0.1", session=sess)
                    c.check(not s2.session_reused, "%s: the session is not resumed" % ver.name)
                    s2.close()

            with c.section("a CA without a CRL on reload"):
                both = os.path.join(tmp, "both-ca.pem")
                kw.write_cert(both, pki.ca, pki.ca2)
                log_at = len(kd.stderr_text())
                os.replace(both, pki.ca_file)
                kd.signal(signal.SIGHUP)
                m = kd.wait_log(r"reload failed.*no CRL signed by the CA '/CN=Other CA'",
                                timeout=5.0, start=log_at)
                c.check(m is not None, "a reload adding a CA without a CRL fails and says which",
                        kd.stderr_text()[log_at:][-400:])
                c.check(not connects(x, kd.port) and connects(y, kd.port),
                        "after the failed reload the old CAs and CRLs stay")

        with c.section("start-up checks"):
            base = ["--keys", keys_dir, "--listen", "127.0.0.1:%d" % kw.free_port(),
                    "--tls-cert", pki.server_cert_file, "--tls-key", pki.server_key_file,
                    "--client-ca", pki.ca_file]
            rc, out = kw.run_keywayd_expect_exit(base + ["--client-crl", crl])
            c.check(rc == 2 and "no CRL signed by the CA '/CN=Other CA'" in out and "fix:" in out,
                    "start-up refuses a --client-ca CA without a CRL", "rc=%s: %s" % (rc, out))
            other = write_crls(os.path.join(tmp, "other.pem"), make_crl(pki.ca2_key, pki.ca2))
            kw.write_cert(pki.ca_file, pki.ca)
            rc, out = kw.run_keywayd_expect_exit(base + ["--client-crl", other])
            c.check(rc == 2 and "no CRL signed by the CA '/CN=Keyway Test CA'" in out,
                    "a CRL of another CA does not count", "rc=%s: %s" % (rc, out))
            with open(os.path.join(tmp, "empty.pem"), "w") as f:
                f.write("nothing\n")
            rc, out = kw.run_keywayd_expect_exit(base + ["--client-crl", f.name])
            c.check(rc == 2 and "--client-crl" in out, "a file without a CRL is refused",
                    "rc=%s: %s" % (rc, out))

        with c.section("an expired CRL"):  # after the start-up checks restored --client-ca
            stale_crls(c, tmp, pki, keys_dir, x)


if __name__ == "__main__":
    kwharness.run_main("keywayd --client-crl", main)
