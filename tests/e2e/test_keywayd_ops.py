#!/usr/bin/python3
"""Every keyless operation keywayd serves, each result checked with the public key:
RSA PKCS#1 v1.5 (MD5SHA1, SHA1..SHA512) and PSS (SHA256/384/512) on RSA-2048/3072/4096,
ECDSA with every hash (MD5SHA1 included) on P-256/384/521, Ed25519, RSA raw decrypt.
Keys come in every accepted encoding (PKCS#8 PEM, traditional PEM, DER, in a subdirectory).
Every response must echo its request id and be padded to 1024 bytes."""

import os
import random

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding

import kwtest as kw

KEYS = ["rsa2048", "rsa3072", "rsa4096", "p256", "p384", "p521", "ed25519"]
FMTS = {"rsa3072": "der", "rsa4096": "traditional", "p384": "traditional", "p521": "sub/der",
        "ed25519": "nested/deeper/pkcs8"}


def key_material_in(log, tks):
    """Pieces of private keys found in log: PEM body lines, private scalars in hex."""
    found = []
    low = log.lower()
    for tk in tks:
        pem = tk.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()).decode()
        for line in pem.splitlines()[1:-1]:
            if len(line) >= 32 and line in log:
                found.append("%s: PEM line %s..." % (tk.name, line[:12]))
                break
        if tk.kind == "rsa":
            secret = tk.key.private_numbers().d
        elif tk.kind == "ec":
            secret = tk.key.private_numbers().private_value
        else:
            secret = int.from_bytes(tk.key.private_bytes(serialization.Encoding.Raw,
                                                         serialization.PrivateFormat.Raw,
                                                         serialization.NoEncryption()), "big")
        h = "%x" % secret
        if h[:24] in low:
            found.append("%s: private value in hex" % tk.name)
    return found


def check_sign(c, cl, tk, op, payload, what):
    id = random.getrandbits(32)
    req = kw.encode(op, payload, ski=tk.ski, id=id)
    cl.send(req)
    f = cl.recv_frame()
    if not c.check(f.id == id and f.opcode == kw.OP_RESPONSE and f.payload,
                   what + ": response", "request %s... -> %s" % (req[:24].hex(), kw.describe(f))):
        return
    c.check(not kw.check_response_shape(f), what + ": 1024-byte padded response",
            "; ".join(kw.check_response_shape(f)))
    why = kw.verify_sig(tk, op, payload, f.payload)
    c.check(why is None, what + ": signature verifies with the public key (%d bytes)" %
            len(f.payload), why or "")


def main(c):
    with kw.TempDir() as tmp:
        pki, keys_dir, keys = kw.setup(tmp, KEYS, FMTS)
        with kw.Keywayd(pki, keys_dir, tmp, workers=2, extra=["--log-level", "debug"]) as kd, \
                kd.connect() as cl:
            msg = os.urandom(100)
            for tk in keys.values():
                if tk.kind == "rsa":
                    for h in ["md5sha1", "sha1", "sha224", "sha256", "sha384", "sha512"]:
                        op, p = kw.sign_request(tk, h, msg)
                        check_sign(c, cl, tk, op, p, "%s PKCS#1 v1.5 %s" % (tk.name, h))
                    for h in ["sha256", "sha384", "sha512"]:
                        op, p = kw.sign_request(tk, h, msg, pss=True)
                        check_sign(c, cl, tk, op, p, "%s PSS %s" % (tk.name, h))
                    # Raw decrypt: gokeyless returns the whole k-byte block, padding kept.
                    secret = b"\x03\x03" + os.urandom(46)
                    ct = tk.pub.encrypt(secret, padding.PKCS1v15())
                    id = random.getrandbits(32)
                    cl.send(kw.encode(kw.OP_RSA_DECRYPT, ct, ski=tk.ski, id=id))
                    f = cl.recv_frame()
                    if c.check(f.id == id and f.opcode == kw.OP_RESPONSE,
                               "%s RSA decrypt: response" % tk.name, kw.describe(f)):
                        why = kw.check_raw_decrypt(f.payload, tk.k, secret)
                        c.check(why is None, "%s RSA decrypt: %d-byte block 00 02 ... 00 || secret"
                                % (tk.name, tk.k), why or "")
                        c.check(not kw.check_response_shape(f),
                                "%s RSA decrypt: 1024-byte padded response" % tk.name,
                                "; ".join(kw.check_response_shape(f)))
                elif tk.kind == "ec":
                    for h in ["md5sha1", "sha1", "sha224", "sha256", "sha384", "sha512"]:
                        op, p = kw.sign_request(tk, h, msg)
                        check_sign(c, cl, tk, op, p, "%s ECDSA %s" % (tk.name, h))
                else:
                    for m, label in [(msg, "100-byte message"), (b"", "empty message"),
                                     (os.urandom(2000), "2000-byte message (unpadded request)")]:
                        id = random.getrandbits(32)
                        cl.send(kw.encode(kw.OP_ED25519, m, ski=tk.ski, id=id))
                        f = cl.recv_frame()
                        if c.check(f.id == id and f.opcode == kw.OP_RESPONSE and f.payload,
                                   "Ed25519 %s: response" % label, kw.describe(f)):
                            why = kw.verify_sig(tk, kw.OP_ED25519, m, f.payload)
                            c.check(why is None, "Ed25519 %s: signature verifies" % label,
                                    why or "")
                            c.check(not kw.check_response_shape(f),
                                    "Ed25519 %s: 1024-byte padded response" % label,
                                    "; ".join(kw.check_response_shape(f)))
            # Every request id is echoed, including the extremes.
            tk = keys["p256"]
            for id in [0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF]:
                op, p = kw.sign_request(tk, "sha256", msg)
                cl.send(kw.encode(op, p, ski=tk.ski, id=id))
                f = cl.recv_frame()
                c.eq(f.id, id, "response id echoes request id 0x%08x" % id)
            # Two connections at once, interleaved: each gets its own answers.
            with kd.connect() as cl2:
                a, b = keys["rsa2048"], keys["ed25519"]
                opa, pa = kw.sign_request(a, "sha384", msg)
                opb, pb = kw.sign_request(b, "sha256", msg)
                cl.send(kw.encode(opa, pa, ski=a.ski, id=11))
                cl2.send(kw.encode(opb, pb, ski=b.ski, id=11))
                fa, fb = cl.recv_frame(), cl2.recv_frame()
                c.check(fa.opcode == kw.OP_RESPONSE and kw.verify_sig(a, opa, pa, fa.payload)
                        is None, "interleaved connections: RSA answer on connection 1",
                        kw.describe(fa))
                c.check(fb.opcode == kw.OP_RESPONSE and kw.verify_sig(b, opb, pb, fb.payload)
                        is None, "interleaved connections: Ed25519 answer on connection 2",
                        kw.describe(fb))
        c.eq(kd.returncode, 0, "keywayd exits 0 on SIGTERM")
        leaks = key_material_in(kd.stderr_text(), keys.values())
        c.check(not leaks, "no key material in keywayd's log (--log-level debug)",
                "; ".join(leaks))


if __name__ == "__main__":
    kw.run_main("keywayd operations", main)
