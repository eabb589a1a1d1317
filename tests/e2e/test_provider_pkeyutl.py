"""keyway provider with `openssl pkeyutl` and friends, against keywayd.

Signs with a keyway: URI and with a KEYWAY KEY reference PEM, for RSA
PKCS#1 v1.5, RSA-PSS (salt = digest), ECDSA P-256/P-384 and Ed25519 (-rawin),
through both sign-a-digest and digest-sign; every signature is verified with
the public key, by python3-cryptography and by `openssl pkeyutl -verify`.
RSA decryption, PKCS#1 v1.5 and raw. Also: a reference after a certificate
in one file; keys load with no
keyserver reachable; settings from an openssl.cnf section; PSS settings
keyless can't do are refused when set; `keyway ping`; the module exports
OSSL_provider_init only.
"""

import hashlib
import os
import subprocess

import kwprov
import kwtest


def body(c):
    with kwtest.TempDir("kw-prov-") as tmp, kwprov.Setup(tmp) as s:
        msg = os.path.join(tmp, "msg.txt")
        with open(msg, "wb") as f:
            f.write(b"keyway provider e2e " * 7)
        data = open(msg, "rb").read()
        dgst = {}
        for h in ("sha256", "sha384"):
            dgst[h] = os.path.join(tmp, "msg." + h)
            with open(dgst[h], "wb") as f:
                f.write(hashlib.new(h, data).digest())

        def sign(name, key, args, infile, what):
            out = os.path.join(tmp, "sig-%s-%d" % (name, len(os.listdir(tmp))))
            p = s.openssl(["pkeyutl", "-sign", "-inkey", key, "-in", infile, "-out", out] + args)
            ok = c.check(p.returncode == 0, "%s: openssl pkeyutl signs" % what,
                         p.stderr.decode(errors="replace")[-600:])
            return open(out, "rb").read() if ok else None

        for name, tk in s.keys.items():
            for key, form in ((s.refs[name], "reference PEM"), (s.uris[name], "keyway: URI")):
                w = "%s via %s" % (name, form)
                if tk.kind == "rsa":
                    sig = sign(name, key, ["-pkeyopt", "digest:sha256"], dgst["sha256"],
                               w + ", PKCS#1 v1.5 SHA-256 digest")
                    c.check(sig and kwprov.verify(tk, sig, data, "sha256"),
                            w + ": PKCS#1 signature verifies")
                    sig = sign(name, key, ["-pkeyopt", "digest:sha256", "-pkeyopt",
                                           "rsa_padding_mode:pss", "-pkeyopt",
                                           "rsa_pss_saltlen:digest"],
                               dgst["sha256"], w + ", PSS SHA-256 digest")
                    c.check(sig and kwprov.verify(tk, sig, data, "sha256", pss=True),
                            w + ": PSS signature verifies (MGF1-SHA256, salt 32)")
                    sig = sign(name, key, ["-rawin", "-digest", "sha384"], msg,
                               w + ", digest-sign SHA-384")
                    c.check(sig and kwprov.verify(tk, sig, data, "sha384"),
                            w + ": digest-sign PKCS#1 SHA-384 verifies")
                    sig = sign(name, key, ["-rawin", "-digest", "sha512", "-pkeyopt",
                                           "rsa_padding_mode:pss"], msg,
                               w + ", digest-sign PSS SHA-512")
                    c.check(sig and kwprov.verify(tk, sig, data, "sha512", pss=True),
                            w + ": digest-sign PSS SHA-512 verifies")
                elif tk.kind == "ec":
                    for h in ("sha256", "sha384"):
                        sig = sign(name, key, [], dgst[h], w + ", ECDSA %s digest" % h)
                        c.check(sig and kwprov.verify(tk, sig, data, h),
                                w + ": ECDSA over the %s digest verifies" % h)
                    sig = sign(name, key, ["-rawin", "-digest", "sha256"], msg,
                               w + ", digest-sign SHA-256")
                    c.check(sig and kwprov.verify(tk, sig, data, "sha256"),
                            w + ": digest-sign ECDSA verifies")
                else:
                    sig = sign(name, key, ["-rawin"], msg, w + ", Ed25519 -rawin")
                    c.check(sig and len(sig) == 64 and kwprov.verify(tk, sig, data),
                            w + ": Ed25519 signature verifies")

        # The same, verified by openssl itself with the public key.
        for name, args, infile in (("rsa2048", ["-pkeyopt", "digest:sha256", "-pkeyopt",
                                                 "rsa_padding_mode:pss", "-pkeyopt",
                                                 "rsa_pss_saltlen:digest"], dgst["sha256"]),
                                    ("p384", [], dgst["sha384"]),
                                    ("ed25519", ["-rawin"], msg)):
            sig = os.path.join(tmp, "v-" + name)
            p = s.openssl(["pkeyutl", "-sign", "-inkey", s.refs[name], "-in", infile, "-out",
                           sig] + args)
            v = subprocess.run([kwprov.OPENSSL, "pkeyutl", "-verify", "-pubin", "-inkey",
                                s.pubs[name], "-in", infile, "-sigfile", sig] + args,
                               capture_output=True, timeout=30)
            c.check(p.returncode == 0 and v.returncode == 0 and
                    b"Signature Verified Successfully" in v.stdout,
                    "%s: openssl pkeyutl -verify accepts the signature" % name,
                    (p.stderr + v.stdout + v.stderr).decode(errors="replace")[-400:])

        # RSA decryption by the keyserver: PKCS#1 v1.5 (depadded here) and raw.
        from cryptography.hazmat.primitives.asymmetric import padding as apad
        tk = s.keys["rsa2048"]
        secret = b"keyway secret for decryption"
        ct = os.path.join(tmp, "ct")
        with open(ct, "wb") as f:
            f.write(tk.pub.encrypt(secret, apad.PKCS1v15()))
        for key, form in ((s.refs["rsa2048"], "reference PEM"), (s.uris["rsa2048"], "URI")):
            out = os.path.join(tmp, "pt")
            p = s.openssl(["pkeyutl", "-decrypt", "-inkey", key, "-in", ct, "-out", out])
            c.check(p.returncode == 0 and open(out, "rb").read() == secret,
                    "RSA PKCS#1 v1.5 decryption via %s" % form, p.stderr.decode(errors="replace"))
        p = s.openssl(["pkeyutl", "-decrypt", "-inkey", s.refs["rsa2048"], "-in", ct, "-out", out,
                       "-pkeyopt", "rsa_padding_mode:none"])
        raw = open(out, "rb").read() if p.returncode == 0 else b""
        c.check(len(raw) == 256 and raw[:2] == b"\x00\x02" and raw.endswith(b"\x00" + secret),
                "raw RSA decryption returns the padded block", p.stderr.decode(errors="replace"))
        with open(ct, "wb") as f:  # a ciphertext whose block is not PKCS#1 padded
            f.write(b"\x01" + bytes(255))
        p = s.openssl(["pkeyutl", "-decrypt", "-inkey", s.refs["rsa2048"], "-in", ct, "-out", out])
        c.check(p.returncode != 0 and b"RSA decryption failed" in p.stderr,
                "badly padded ciphertext: decryption fails cleanly",
                p.stderr.decode(errors="replace")[-300:])

        # A reference after a certificate in the same file (HAProxy's combined crt file).
        combined = os.path.join(tmp, "combined.pem")
        with open(combined, "w") as f:
            f.write(open(s.certs["p256"]).read() + open(s.refs["p256"]).read())
        sig = sign("p256", combined, [], dgst["sha256"], "reference after a certificate")
        c.check(sig and kwprov.verify(s.keys["p256"], sig, data, "sha256"),
                "reference after a certificate: signature verifies")

        # Loading a key never contacts a keyserver.
        p = s.openssl(["pkey", "-in", s.refs["rsa2048"], "-pubout"],
                      env=s.env(servers="127.0.0.1:1"))
        c.check(p.returncode == 0 and p.stdout == open(s.pubs["rsa2048"], "rb").read(),
                "key loads and shows its public key with no keyserver reachable",
                p.stderr.decode(errors="replace"))

        # What keyless cannot do is refused when set.
        p = s.openssl(["pkeyutl", "-sign", "-inkey", s.refs["rsa2048"], "-in", dgst["sha256"],
                       "-pkeyopt", "digest:sha256", "-pkeyopt", "rsa_padding_mode:pss",
                       "-pkeyopt", "rsa_pss_saltlen:max"])
        err = p.stderr.decode(errors="replace")
        c.check(p.returncode != 0 and "rsa_pss_saltlen:max" in err and "salt length" in err,
                "PSS salt length max refused at set-params with a clear reason", err[-400:])
        p = s.openssl(["pkeyutl", "-sign", "-inkey", s.refs["ed25519"], "-in", dgst["sha256"]])
        err = p.stderr.decode(errors="replace")
        c.check(p.returncode != 0 and "-rawin" in err, "Ed25519 without -rawin explains itself",
                err[-400:])

        # Settings from the provider's openssl.cnf section instead of the environment.
        cnf = os.path.join(tmp, "openssl.cnf")
        with open(cnf, "w") as f:
            f.write("openssl_conf = init\n[init]\nproviders = provs\n"
                    "[provs]\nkeyway = keyway_sect\ndefault = default_sect\n"
                    "[default_sect]\nactivate = 1\n"
                    "[keyway_sect]\nmodule = %s\nactivate = 1\nservers = %s\nca = %s\n"
                    "client_cert = %s\nclient_key = %s\ntimeout_ms = 3000\n" % (
                        os.path.join(s.prov_dir, "keyway.so"), s.server(), s.pki.ca_file,
                        s.pki.client_cert_file, s.pki.client_key_file))
        env = s.env(KEYWAY_SERVERS=None, KEYWAY_CA=None, KEYWAY_CLIENT_CERT=None,
                    KEYWAY_CLIENT_KEY=None, KEYWAY_TIMEOUT_MS=None, OPENSSL_CONF=cnf)
        out = os.path.join(tmp, "sig-cnf")
        p = subprocess.run([kwprov.OPENSSL, "pkeyutl", "-sign", "-inkey", s.refs["p384"], "-in",
                            dgst["sha384"], "-out", out], capture_output=True, env=env, timeout=30)
        c.check(p.returncode == 0 and kwprov.verify(s.keys["p384"], open(out, "rb").read(),
                                                   data, "sha384"),
                "settings from openssl.cnf: signs and verifies", p.stderr.decode(errors="replace"))
        # An environment variable overrides its openssl.cnf key.
        env["KEYWAY_SERVERS"] = "127.0.0.1:1"
        p = subprocess.run([kwprov.OPENSSL, "pkeyutl", "-sign", "-inkey", s.refs["p384"], "-in",
                            dgst["sha384"], "-out", out], capture_output=True, env=env, timeout=30)
        c.check(p.returncode != 0 and b"127.0.0.1:1" in p.stderr,
                "KEYWAY_SERVERS overrides servers", p.stderr.decode(errors="replace")[-300:])

        # keyway ping reads the same settings.
        r = s.run_cli(["ping"], env=s.env())
        c.check(r.returncode == 0 and r.stdout.startswith("ok ") and s.server() in r.stdout,
                "keyway ping: exit 0, one ok line", r.stdout + r.stderr)
        r = s.run_cli(["ping"], env=s.env(servers=s.server() + ",127.0.0.1:1"))
        lines = r.stdout.splitlines()
        c.check(r.returncode == 1 and len(lines) == 2 and lines[0].startswith("ok ") and
                lines[1].startswith("FAIL") and "127.0.0.1:1" in lines[1],
                "keyway ping: exit 1 with a dead keyserver, one line each", r.stdout + r.stderr)
        r = s.run_cli(["ping", "--openssl-conf", cnf], env=s.env(
            KEYWAY_SERVERS=None, KEYWAY_CA=None, KEYWAY_CLIENT_CERT=None, KEYWAY_CLIENT_KEY=None))
        c.check(r.returncode == 0 and s.server() in r.stdout,
                "keyway ping: settings from openssl.cnf", r.stdout + r.stderr)

        # The module's only exported symbol.
        nm = subprocess.run(["nm", "-D", "--defined-only", os.path.join(s.prov_dir, "keyway.so")],
                            capture_output=True, text=True, timeout=30)
        syms = [l.split()[-1] for l in nm.stdout.splitlines() if l.strip()]
        c.check(nm.returncode == 0 and syms == ["OSSL_provider_init"],
                "keyway.so exports OSSL_provider_init only", " ".join(syms))


if __name__ == "__main__":
    kwtest.run_main("provider_pkeyutl", body)
