"""keyway CLI end to end: `keyway ski` gives the same SKI for a certificate,
its public key and its private key, in PEM and DER, and that SKI equals an
independent computation (SHA-1 of the subjectPublicKey BIT STRING contents,
parsed here from the SPKI DER) for RSA, ECDSA and Ed25519. `keyway digest`
matches SHA-256 of the upper-case hex modulus. Bad input exits 1 with one line
naming the file.

KEYWAY_CLI names the binary; without it the test is skipped (exit 77).
"""

import datetime
import hashlib
import os
import re
import subprocess
import sys
import tempfile

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

CLI = os.environ.get("KEYWAY_CLI")
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def der_tlv(buf, pos):
    """Returns (tag, content_start, content_end) of the DER element at pos."""
    tag = buf[pos]
    n = buf[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(buf[pos:pos + k], "big")
        pos += k
    return tag, pos, pos + n


def spki_ski(pub):
    """SHA-1 of the subjectPublicKey BIT STRING contents, minus the unused-bits byte."""
    der = pub.public_bytes(serialization.Encoding.DER,
                           serialization.PublicFormat.SubjectPublicKeyInfo)
    tag, start, end = der_tlv(der, 0)           # SEQUENCE SubjectPublicKeyInfo
    assert tag == 0x30 and end == len(der)
    tag, s, e = der_tlv(der, start)             # SEQUENCE AlgorithmIdentifier
    assert tag == 0x30
    tag, s, e = der_tlv(der, e)                 # BIT STRING subjectPublicKey
    assert tag == 0x03 and der[s] == 0 and e == end
    return hashlib.sha1(der[s + 1:e]).hexdigest()


def self_signed(key):
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "keyway cli test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    algo = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .sign(key, algo))


def run(*args):
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=20)


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return path


def main():
    if not CLI:
        print("KEYWAY_CLI not set; skipping")
        return 77
    d = tempfile.mkdtemp(prefix="keyway-cli-test.")
    try:
        keys = {
            "rsa2048": rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "ecdsa-p256": ec.generate_private_key(ec.SECP256R1()),
            "ecdsa-p384": ec.generate_private_key(ec.SECP384R1()),
            "ed25519": ed25519.Ed25519PrivateKey.generate(),
        }
        PEM, DER = serialization.Encoding.PEM, serialization.Encoding.DER
        for name, key in keys.items():
            cert = self_signed(key)
            pub = key.public_key()
            files = {
                "cert.pem": cert.public_bytes(PEM),
                "cert.der": cert.public_bytes(DER),
                "pub.pem": pub.public_bytes(PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
                "pub.der": pub.public_bytes(DER, serialization.PublicFormat.SubjectPublicKeyInfo),
                "pkcs8.pem": key.private_bytes(PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()),
                "pkcs8.der": key.private_bytes(DER, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()),
            }
            if not isinstance(key, ed25519.Ed25519PrivateKey):
                files["trad.pem"] = key.private_bytes(
                    PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                    serialization.NoEncryption())
            want = spki_ski(pub)
            outs = {}
            for kind, data in files.items():
                p = run("ski", write(os.path.join(d, "%s.%s" % (name, kind)), data))
                outs[kind] = (p.returncode, p.stdout, p.stderr)
            check(all(o == (0, want + "\n", "") for o in outs.values()),
                  "%s: ski of cert/public/private, PEM/DER all print %s (%s)"
                  % (name, want, sorted(set(o[1].strip() or o[2].strip() for o in outs.values()))))

            p = run("digest", os.path.join(d, name + ".cert.pem"))
            if isinstance(key, rsa.RSAPrivateKey):
                n_hex = "%X" % pub.public_numbers().n
                want_d = hashlib.sha256(n_hex.encode()).hexdigest()
                check(p.returncode == 0 and p.stdout == want_d + "\n",
                      "%s: digest is SHA-256 of the upper-case modulus hex" % name)
            else:
                check(p.returncode == 1 and p.stdout == "" and "not an RSA key" in p.stderr,
                      "%s: digest refused for a non-RSA key (%s)" % (name, p.stderr.strip()))

        # The SKI ignores a certificate's own SubjectKeyIdentifier extension.
        key = keys["ecdsa-p256"]
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bogus ski")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(1)
                .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectKeyIdentifier(b"\x11" * 20), critical=False)
                .sign(key, hashes.SHA256()))
        p = run("ski", write(os.path.join(d, "bogus.pem"), cert.public_bytes(PEM)))
        check(p.stdout == spki_ski(key.public_key()) + "\n",
              "ski computed from the key, not the certificate's extension")

        # Errors: one line naming the file, exit 1.
        missing = os.path.join(d, "missing.pem")
        garbage = write(os.path.join(d, "garbage.pem"), b"not a key\n")
        encrypted = write(os.path.join(d, "enc.pem"), keys["ecdsa-p256"].private_bytes(
            PEM, serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret")))
        for path, what in ((missing, "missing file"), (garbage, "garbage"),
                           (encrypted, "encrypted key")):
            p = run("ski", path)
            lines = p.stderr.splitlines()
            check(p.returncode == 1 and p.stdout == "" and len(lines) == 1 and path in lines[0],
                  "ski %s: exit 1, one line naming the file (%r)" % (what, p.stderr))

        p = run("ski")
        check(p.returncode == 2 and "FILE" in p.stderr, "ski without FILE: usage error")
        p = run("nonsense")
        check(p.returncode == 2 and "keyway help" in p.stderr, "unknown command: usage error")
        for args in (["--help"], ["help"]):
            p = run(*args)
            check(p.returncode == 0 and re.search(r"^\s+ski FILE", p.stdout, re.M)
                  and re.search(r"^\s+digest FILE", p.stdout, re.M),
                  "keyway %s lists the subcommands" % " ".join(args))
        p = run("ski", "--help")
        check(p.returncode == 0 and "usage: keyway ski FILE" in p.stdout, "keyway ski --help")
    finally:
        for n in os.listdir(d):
            os.unlink(os.path.join(d, n))
        os.rmdir(d)
    if failures:
        print("%d check(s) failed" % len(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
