#!/usr/bin/python3
"""keywayd's TCP listener: mutual TLS with TLS 1.2 and TLS 1.3, the server
certificate verifying for 127.0.0.1 and localhost, and clients refused without
a certificate, with one from another CA, or speaking plain TCP."""

import socket
import ssl

import kwtest as kw


def refused(kd, cert, version):
    """(refused?, how). A TLS 1.3 client may finish its side of the handshake
    before the server checks the certificate; then the refusal shows on the
    first read. Either way no answer may come back."""
    ctx = kd.pki.client_context(cert, min_version=version, max_version=version)
    try:
        cl = kw.Client.tcp(kd.port, ctx, timeout=5.0)
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError, OSError) as e:
        return True, "handshake failed: %s" % e
    with cl:
        try:
            cl.send(kw.encode(kw.OP_PING, b"let me in", id=7))
        except (ssl.SSLError, OSError) as e:
            return True, "write failed: %s" % e
        closed, got = cl.expect_closed(5.0)
        if closed and not got:
            return True, "closed after handshake"
        return False, "connection open, got %d bytes: %s" % (len(got), got[:16].hex())


def main(c):
    with kw.TempDir() as tmp:
        pki, keys_dir, keys = kw.setup(tmp, ["p256", "rsa2048"])
        with kw.Keywayd(pki, keys_dir, tmp) as kd:
            for name, v in [("TLS 1.2", ssl.TLSVersion.TLSv1_2), ("TLS 1.3", ssl.TLSVersion.TLSv1_3)]:
                want = "TLSv1.2" if v == ssl.TLSVersion.TLSv1_2 else "TLSv1.3"
                try:
                    with kd.connect(min_version=v, max_version=v) as cl:
                        c.eq(cl.sock.version(), want, "%s handshake with a client certificate" % name)
                        c.check(kw.ping_ok(cl), "%s: ping answered" % name)
                        for tk in keys.values():
                            ok, f = kw.signs_with(cl, tk)
                            c.check(ok, "%s: %s signature verifies" % (name, tk.name),
                                    kw.describe(f))
                except (ssl.SSLError, OSError) as e:
                    c.fail("%s handshake with a client certificate" % name, str(e))
            try:
                with kd.connect(server_hostname="localhost") as cl:
                    c.check(kw.ping_ok(cl), "server certificate verifies for DNS name localhost")
            except (ssl.SSLError, OSError) as e:
                c.fail("server certificate verifies for DNS name localhost", str(e))
            with kd.connect() as cl:
                c.check(cl.sock.version() in ("TLSv1.2", "TLSv1.3"),
                        "default client negotiates %s" % cl.sock.version())
                peer = cl.sock.getpeercert()
                c.check(peer and ("IP Address", "127.0.0.1") in peer.get("subjectAltName", ()),
                        "server presents the --tls-cert certificate")

                for name, v in [("TLS 1.2", ssl.TLSVersion.TLSv1_2),
                                ("TLS 1.3", ssl.TLSVersion.TLSv1_3)]:
                    ok, how = refused(kd, None, v)
                    c.check(ok, "%s without a client certificate: refused (%s)" % (name, how), how)
                    ok, how = refused(kd, "other", v)
                    c.check(ok, "%s with a client certificate from another CA: refused (%s)"
                            % (name, how), how)

                # Plain TCP speaking keyless: no answer, connection closed.
                s = socket.create_connection(("127.0.0.1", kd.port), timeout=5)
                try:
                    s.sendall(kw.encode(kw.OP_PING, b"plain", id=1))
                    got = b""
                    closed = False
                    try:
                        while len(got) < 8192:
                            chunk = s.recv(4096)
                            if not chunk:
                                closed = True
                                break
                            got += chunk
                    except ConnectionResetError:
                        closed = True
                    except socket.timeout:
                        pass
                    c.check(closed and not got.startswith(b"\x01\x00"),
                            "plain-TCP keyless request: no answer, connection closed",
                            "closed=%s got %d bytes" % (closed, len(got)))
                finally:
                    s.close()

                c.check(kw.ping_ok(cl), "the trusted connection kept working throughout")
                c.check(kd.alive(), "keywayd still running")
        c.eq(kd.returncode, 0, "keywayd exits 0 on SIGTERM")


if __name__ == "__main__":
    kw.run_main("keywayd mTLS", main)
