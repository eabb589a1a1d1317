"""keyway-proxy's start-up errors for files that do not load are one plain
line: the file, what is wrong and the fix, with none of OpenSSL's reason
strings ("system lib", "no such file", "error:0A...", "PEM routines",
"no start line", "key values mismatch") appended; exit status 1. Covers a
missing --cert, a --key that is not a key, an encrypted key, a damaged PEM, a
certificate/key mismatch, and the keyserver files (--ca that does not parse,
--client-cert that is not PEM, --client-key not matching it), named by the
flag that gave them. At --log-level debug OpenSSL's detail is still there.
"""

import os
import re
import subprocess

import kwharness
from kwproxy import PROXY, make_cert, skip_without_proxy

RAW = re.compile(r"system lib|no such file\b|error:[0-9A-F]{8}|routines|no start line|"
                 r"key values mismatch|unsupported|PEM lib")


def start(args, env=None):
    env = dict(env or os.environ)
    env.pop("OPENSSL_CONF", None)
    for k in list(env):
        if k.startswith("KEYWAY_") and k != "KEYWAY_PROXY":
            env.pop(k)
    return kwharness.run_once([PROXY, "--listen", "127.0.0.1:0", "--respond"] + args,
                              timeout=20, env=env)


def body(c):
    skip_without_proxy()
    with kwharness.TempDir() as tmp:
        key, crt = make_cert(tmp, "a", "ec")
        key2, crt2 = make_cert(tmp, "b", "ec")
        rsa, _ = make_cert(tmp, "r", "rsa")
        junk = os.path.join(tmp, "junk.txt")
        with open(junk, "w") as f:
            f.write("hello\n")
        enc = os.path.join(tmp, "enc.key")
        subprocess.run(["openssl", "pkey", "-in", key, "-out", enc, "-aes128", "-passout",
                        "pass:x"], check=True, capture_output=True, timeout=30)
        damaged = os.path.join(tmp, "damaged.crt")
        with open(damaged, "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nMIIBxx!!\n-----END CERTIFICATE-----\n")
        missing = os.path.join(tmp, "missing.crt")
        # Owner-only files: a --key readable by others is refused for its mode before
        # its content is read (test_proxy_key_modes.py), and these cases are about content.
        for name in os.listdir(tmp):
            os.chmod(os.path.join(tmp, name), 0o600)
        uri = "keyway:ski=%s;cert=%s" % ("00" * 20, crt)
        keyless = ["--cert", crt, "--key", uri, "--servers", "127.0.0.1:1"]
        cases = [
            (["--cert", missing, "--key", key], [missing, "No such file or directory",
                                                "fix: check the path"], "missing --cert"),
            (["--cert", crt, "--key", junk], [junk, "no usable PEM private key", "fix:"],
             "--key that is not a key"),
            (["--cert", crt, "--key", crt], [crt, "no usable PEM private key", "fix:"],
             "--key naming a certificate"),
            (["--cert", junk, "--key", key], [junk, "not a PEM certificate", "fix:"],
             "--cert that is not PEM"),
            (["--cert", crt, "--key", enc], [enc, "an encrypted private key", "fix:"],
             "encrypted --key"),
            (["--cert", damaged, "--key", key], [damaged, "a damaged PEM certificate", "fix:"],
             "damaged --cert"),
            (["--cert", crt, "--key", key2], [key2, crt, "does not match the certificate",
                                              "fix:"], "certificate/key mismatch"),
            (["--cert", crt, "--key", rsa], [rsa, crt, "does not match the certificate", "fix:"],
             "an RSA key for an EC certificate"),
            (keyless + ["--ca", junk], ["--ca", junk, "no usable PEM", "fix:"],
             "--ca that does not parse"),
            (keyless + ["--ca", missing], ["--ca", missing, "No such file or directory",
                                           "fix: check the path"], "missing --ca"),
            (keyless + ["--ca", crt, "--client-cert", junk, "--client-key", key],
             ["--client-cert", junk, "not a PEM certificate", "fix:"],
             "--client-cert that is not PEM"),
            (keyless + ["--ca", crt, "--client-cert", crt, "--client-key", key2],
             ["--client-key", key2, "the key does not match the certificate", "fix:"],
             "--client-key not matching --client-cert"),
        ]
        for args, wants, what in cases:
            rc, out = start(args)
            lines = [l for l in out.splitlines() if l.strip()]
            last = lines[-1] if lines else out
            c.eq(rc, 1, "%s: exit 1" % what)
            c.eq(len(lines), 1, "%s: one line" % what)
            c.eq(last.count("fix:"), 1, "%s: one fix" % what)
            c.check(all(w in last for w in wants), "%s: %s" % (what, ", ".join(wants)), out)
            c.check(RAW.search(last) is None, "%s: no raw OpenSSL reason" % what, last)
        rc, out = start(["--cert", junk, "--key", key, "--log-level", "debug"])
        c.check(rc == 1 and "no start line" in out,
                "--log-level debug keeps OpenSSL's detail", out)


kwharness.run_main("keyway-proxy file errors", body)
