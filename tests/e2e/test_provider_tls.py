"""keyway provider in `openssl s_server -provider keyway -provider default`,
with `openssl s_client` fetching a page: TLS 1.3 with RSA-PSS, ECDSA
(P-256, P-384) and Ed25519 certificates; TLS 1.2 with ECDHE-RSA (PSS and
PKCS#1 signatures), ECDHE-ECDSA (also over P-256 alone: the provider,
loaded first, must not take over OpenSSL's EC key generation) and RSA key exchange (the premaster
decrypted by the keyserver, depadded here). Each handshake must complete,
the peer signature type must be the expected one and the page must arrive.
The key is named by reference PEM and by keyway: URI; one run goes to
keywayd over its Unix socket.
"""

import kwprov
import kwtest

CASES = [
    # (what, key, s_client args, expected protocol, expected peer signature type or None)
    ("TLS 1.3 RSA-PSS", "rsa2048", ["-tls1_3"], "TLSv1.3", "RSA-PSS"),
    ("TLS 1.3 ECDSA P-256", "p256", ["-tls1_3"], "TLSv1.3", "ECDSA"),
    ("TLS 1.3 ECDSA P-384", "p384", ["-tls1_3"], "TLSv1.3", "ECDSA"),
    ("TLS 1.3 Ed25519", "ed25519", ["-tls1_3"], "TLSv1.3", "ed25519"),
    ("TLS 1.2 ECDHE-RSA, PSS", "rsa2048",
     ["-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"], "TLSv1.2", "RSA-PSS"),
    ("TLS 1.2 ECDHE-RSA, PKCS#1", "rsa2048",
     ["-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256", "-sigalgs", "RSA+SHA256"],
     "TLSv1.2", "RSA"),
    ("TLS 1.2 ECDHE-ECDSA", "p256", ["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"],
     "TLSv1.2", "ECDSA"),
    # Loaded as "-provider keyway -provider default": OpenSSL's own EC key management
    # must still make the ECDHE keys (NIST groups only, no X25519 to fall back on).
    ("TLS 1.2 ECDHE-ECDSA over P-256 only", "p256",
     ["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256", "-groups", "P-256"], "TLSv1.2",
     "ECDSA"),
    ("TLS 1.3 RSA-PSS over P-384 only", "rsa2048", ["-tls1_3", "-groups", "P-384"], "TLSv1.3",
     "RSA-PSS"),
    ("TLS 1.2 RSA key exchange", "rsa2048", ["-tls1_2", "-cipher", "AES128-GCM-SHA256"],
     "TLSv1.2", None),
    ("TLS 1.2 RSA key exchange, AES256-SHA256", "rsa2048",
     ["-tls1_2", "-cipher", "AES256-SHA256"], "TLSv1.2", None),
]


def handshake(c, s, what, key, cert, client_args, proto, sigtype, env=None):
    srv = kwprov.SServer(s, key, cert, env=env)
    try:
        if not c.check(srv.wait_ready(), what + ": s_server listens", srv.output()[-600:]):
            return
        rc, out = kwprov.s_client(s, srv.port, client_args)
        cipher_line = kwprov.first(r"(New, TLSv[0-9.]+, Cipher is \S+)", out)
        c.check(rc == 0 and cipher_line is not None and proto in cipher_line,
                "%s: handshake completes (%s)" % (what, cipher_line), out[-800:] + srv.output()[-600:])
        c.check("HTTP/1.0 200 ok" in out, what + ": data flows (HTTP 200 from s_server -www)")
        if sigtype is not None:
            c.eq(kwprov.first(r"Peer signature type: (\S+)", out), sigtype,
                 what + ": peer signature type")
        if "-cipher" in client_args:
            want = client_args[client_args.index("-cipher") + 1]
            c.check(cipher_line is not None and cipher_line.endswith(want),
                    what + ": negotiated " + want)
    finally:
        srv.stop()


def body(c):
    with kwtest.TempDir("kw-prov-tls-") as tmp, kwprov.Setup(tmp, unix=True) as s:
        for what, name, args, proto, sigtype in CASES:
            handshake(c, s, what + " (reference PEM)", s.refs[name], s.certs[name], args, proto,
                      sigtype)
        handshake(c, s, "TLS 1.3 ECDSA P-256 (keyway: URI)", s.uris["p256"], s.certs["p256"],
                  ["-tls1_3"], "TLSv1.3", "ECDSA")
        handshake(c, s, "TLS 1.2 RSA key exchange (keyway: URI)", s.uris["rsa2048"],
                  s.certs["rsa2048"], ["-tls1_2", "-cipher", "AES128-GCM-SHA256"], "TLSv1.2",
                  None)
        handshake(c, s, "TLS 1.3 RSA-PSS via keywayd's Unix socket", s.refs["rsa2048"],
                  s.certs["rsa2048"], ["-tls1_3"], "TLSv1.3", "RSA-PSS",
                  env=s.env(servers="unix:" + s.kd.unix_path))
        # The keyserver answers: a wrong key would make the client's verify fail.
        srv = kwprov.SServer(s, s.refs["p256"], s.certs["p384"])
        try:
            ok = srv.wait_ready(5)
            out = srv.output()
            c.check(not ok or "mismatch" in out.lower() or srv.proc.poll() is not None,
                    "s_server refuses a certificate that is not the key's", out[-400:])
        finally:
            srv.stop()


if __name__ == "__main__":
    kwtest.run_main("provider_tls", body)
