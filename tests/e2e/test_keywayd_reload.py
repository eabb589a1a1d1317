#!/usr/bin/python3
"""SIGHUP: keys added to and removed from --keys serve / stop at once while an
open connection keeps working on the same socket; a broken key file keeps the
whole old set (and is logged); the TLS client CA and certificate are reloaded
too, a broken certificate keeping the old one; no connection is dropped, except
one whose client certificate the new client CA no longer verifies."""

import os
import shutil
import signal
import ssl
import time

from cryptography import x509

import kwharness
import kwtest as kw


def poll(cond, timeout=5.0, step=0.05):
    """Wait (bounded) until cond() is true; return its last value."""
    return kwharness.wait_until(cond, timeout, step)


def answer(cl, tk):
    """'ok' (valid signature), 'notfound' (0x02), or a description."""
    op, p = kw.sign_request(tk, "sha256", b"reload")
    f = cl.request(op, p, ski=tk.ski)
    if f.opcode == kw.OP_RESPONSE and kw.verify_sig(tk, op, p, f.payload) is None:
        return "ok"
    if f.error == kw.ERR_KEY_NOT_FOUND:
        return "notfound"
    return kw.describe(f)


def can_connect(kd, cert):
    try:
        with kd.connect(cert) as cl:
            return kw.ping_ok(cl)
    except (ssl.SSLError, OSError, kw.ConnectionClosed):
        return False


def main(c):
    with kw.TempDir() as tmp:
        pki, keys_dir, keys = kw.setup(tmp, ["rsa2048", "p256"])
        rsa, p256 = keys["rsa2048"], keys["p256"]
        spare = os.path.join(tmp, "spare")
        os.makedirs(spare)
        ed = kw.add_key_file(spare, "ed25519", "ed25519")
        p384 = kw.add_key_file(spare, "p384", "p384", fmt="der")

        with kw.Keywayd(pki, keys_dir, tmp, workers=2) as kd, kd.connect() as cl:
            c.eq(answer(cl, rsa), "ok", "before reload: RSA-2048 key serves")
            c.eq(answer(cl, p256), "ok", "before reload: P-256 key serves")
            c.eq(answer(cl, ed), "notfound", "before reload: Ed25519 key not yet known")

            # Add one key (in a new subdirectory), remove another, SIGHUP.
            os.makedirs(os.path.join(keys_dir, "new"))
            shutil.copy2(ed.path, os.path.join(keys_dir, "new", "ed25519.key"))
            os.chmod(os.path.join(keys_dir, "new", "ed25519.key"), 0o600)
            os.unlink(p256.path)
            kd.signal(signal.SIGHUP)
            c.check(poll(lambda: answer(cl, ed) == "ok"),
                    "after SIGHUP: the added Ed25519 key serves on the same connection")
            c.eq(answer(cl, p256), "notfound", "after SIGHUP: the removed P-256 key is gone (0x02)")
            c.eq(answer(cl, rsa), "ok", "after SIGHUP: the kept RSA key still serves")
            c.check(kw.ping_ok(cl), "the connection opened before the reload still works")

            # A broken file: the whole old set stays, even the key whose file was removed.
            log_at = len(kd.stderr_text())
            with open(os.path.join(keys_dir, "broken.key"), "wb") as f:
                f.write(b"-----BEGIN PRIVATE KEY-----\nnot base64 at all\n-----END PRIVATE KEY-----\n")
            os.chmod(os.path.join(keys_dir, "broken.key"), 0o600)
            shutil.copy2(p384.path, os.path.join(keys_dir, "p384.key"))
            os.unlink(os.path.join(keys_dir, "new", "ed25519.key"))
            kd.signal(signal.SIGHUP)
            m = kd.wait_log(r"broken\.key", timeout=5.0, start=log_at)
            c.check(m is not None, "reload with a broken key file logs the file's name",
                    "stderr since reload: %r" % kd.stderr_text()[log_at:][-400:])
            time.sleep(0.3)
            c.check(kd.alive(), "keywayd survives a reload with a broken key file")
            c.eq(answer(cl, ed), "ok", "broken reload: old set kept (Ed25519 still serves)")
            c.eq(answer(cl, rsa), "ok", "broken reload: old set kept (RSA still serves)")
            c.eq(answer(cl, p384), "notfound",
                 "broken reload: nothing from the rejected set (P-384 not served)")

            # Fix it: the next reload applies the directory as it is.
            os.unlink(os.path.join(keys_dir, "broken.key"))
            kd.signal(signal.SIGHUP)
            c.check(poll(lambda: answer(cl, p384) == "ok"),
                    "fixed reload: the P-384 key (DER) serves")
            c.eq(answer(cl, ed), "notfound", "fixed reload: the Ed25519 key is gone")
            c.eq(answer(cl, rsa), "ok", "fixed reload: RSA still serves")

            # TLS: a broken server certificate file keeps the old TLS set-up.
            with open(pki.server_cert_file, "rb") as f:
                good_cert = f.read()
            log_at = len(kd.stderr_text())
            with open(pki.server_cert_file, "wb") as f:
                f.write(b"-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n")
            kd.signal(signal.SIGHUP)
            m = kd.wait_log(os.path.basename(pki.server_cert_file).replace(".", r"\."),
                            timeout=5.0, start=log_at)
            c.check(m is not None, "reload with a broken --tls-cert logs the file's name",
                    "stderr since reload: %r" % kd.stderr_text()[log_at:][-400:])
            time.sleep(0.3)
            c.check(kd.alive() and can_connect(kd, "good"),
                    "broken --tls-cert: new connections still get the old certificate")
            c.eq(answer(cl, rsa), "ok", "broken --tls-cert: keys kept")
            with open(pki.server_cert_file, "wb") as f:
                f.write(good_cert)

            # TLS: a new server certificate and key are served after SIGHUP.
            new_key, new_cert = kw.make_leaf(pki.ca_key, pki.ca, "keywayd-renewed", True)
            kw.write_key(pki.server_key_file + ".new", new_key)
            kw.write_cert(pki.server_cert_file + ".new", new_cert)
            os.replace(pki.server_key_file + ".new", pki.server_key_file)
            os.replace(pki.server_cert_file + ".new", pki.server_cert_file)
            kd.signal(signal.SIGHUP)

            def serial_seen():
                try:
                    with kd.connect() as c2:
                        der = c2.sock.getpeercert(binary_form=True)
                        return x509.load_der_x509_certificate(der).serial_number
                except (ssl.SSLError, OSError):
                    return None
            c.check(poll(lambda: serial_seen() == new_cert.serial_number),
                    "after SIGHUP: new connections get the renewed server certificate (new key)")
            c.eq(answer(cl, rsa), "ok", "renewed certificate: the old connection still signs")

            # TLS: swap the client CA for the other one; new handshakes follow it.
            c.check(not can_connect(kd, "other"), "before CA swap: other CA's client refused")
            shutil.copyfile(pki.ca2_file, pki.ca_file + ".new")
            os.replace(pki.ca_file + ".new", pki.ca_file)
            kd.signal(signal.SIGHUP)
            # The client still verifies the server with the first CA: read it back.
            ca1 = os.path.join(tmp, "ca1.pem")
            kw.write_cert(ca1, pki.ca)
            pki.ca_file = ca1
            c.check(poll(lambda: can_connect(kd, "other")),
                    "after --client-ca swap: the other CA's client is accepted")
            c.check(not can_connect(kd, "good"), "after --client-ca swap: the old CA's client "
                    "is refused")
            # Its client certificate no longer verifies against the new CA: the
            # connection opened at the start is closed by the reload.
            closed, _ = cl.expect_closed(5.0)
            c.check(closed, "after --client-ca swap: the open connection whose certificate the "
                    "new CA does not verify is closed")
        c.eq(kd.returncode, 0, "keywayd exits 0 on SIGTERM")


if __name__ == "__main__":
    kw.run_main("keywayd SIGHUP reload", main)
