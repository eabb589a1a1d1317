#!/usr/bin/python3
"""Every row of the "Server answers" table in docs/protocol.md, against keywayd:
ping, missing/zero/unknown SKI, digest lookup, SKI over digest, family and payload
length mismatches, bad and unexpected opcodes, version mismatch (connection kept),
malformed frames (that connection closed without a reply, others unaffected),
unknown tags and any padding accepted."""

import os
import random

from cryptography.hazmat.primitives.asymmetric import padding

import kwtest as kw


def main(c):
    with kw.TempDir() as tmp:
        pki, keys_dir, keys = kw.setup(tmp, ["rsa2048", "rsa3072", "p256", "ed25519"])
        rsa, rsa3, p256, ed = keys["rsa2048"], keys["rsa3072"], keys["p256"], keys["ed25519"]
        d32 = kw.digest_of("sha256", b"answers")

        with kw.Keywayd(pki, keys_dir, tmp, workers=2) as kd, kd.connect() as cl:

            def ask(what, req_bytes, want_op=None, want_err=None, check=None):
                """Send one frame, expect one answer with the same id."""
                id = int.from_bytes(req_bytes[4:8], "big")
                try:
                    cl.send(req_bytes)
                    f = cl.recv_frame()
                except (OSError, kw.ConnectionClosed) as e:
                    c.fail(what, "request %s...: %s" % (req_bytes[:32].hex(), e))
                    return None
                detail = "request %s... -> %s" % (req_bytes[:40].hex(), kw.describe(f))
                ok = f.id == id
                if want_err is not None:
                    ok = ok and f.opcode == kw.OP_ERROR and f.error == want_err
                if want_op is not None:
                    ok = ok and f.opcode == want_op
                if ok and check is not None:
                    why = check(f)
                    if why:
                        ok, detail = False, detail + ": " + why
                shape = kw.check_response_shape(f)
                if shape:
                    ok, detail = False, detail + "; shape: " + "; ".join(shape)
                c.check(ok, what, detail)
                return f

            def nid():
                return random.getrandbits(32)

            def sig_by(tk, op, payload):
                return lambda f: kw.verify_sig(tk, op, payload, f.payload)

            # --- ping
            ask("ping with payload -> pong echoing it",
                kw.encode(kw.OP_PING, b"hello keyless", id=nid()), kw.OP_PONG,
                check=lambda f: None if f.payload == b"hello keyless" else "payload %r" % f.payload)
            ask("ping with empty payload item -> pong, empty payload",
                kw.encode(kw.OP_PING, b"", id=nid()), kw.OP_PONG,
                check=lambda f: None if not f.payload else "payload %r" % f.payload)
            ask("ping without payload item -> pong, empty payload",
                kw.encode(kw.OP_PING, None, id=nid()), kw.OP_PONG,
                check=lambda f: None if not f.payload else "payload %r" % f.payload)
            big = os.urandom(900)
            ask("ping with a 900-byte payload -> pong echoing it",
                kw.encode(kw.OP_PING, big, id=nid()), kw.OP_PONG,
                check=lambda f: None if f.payload == big else "payload differs")

            # --- SKI missing / all zero -> internal error 0x08 (as gokeyless)
            ask("RSA sign without SKI -> error 0x08",
                kw.encode(kw.OP_RSA_SHA256, d32, id=nid()), want_err=kw.ERR_INTERNAL)
            ask("ECDSA sign without SKI -> error 0x08",
                kw.encode(kw.OP_ECDSA_SHA256, d32, id=nid()), want_err=kw.ERR_INTERNAL)
            ask("RSA sign with all-zero SKI -> error 0x08",
                kw.encode(kw.OP_RSA_SHA256, d32, ski=bytes(20), id=nid()), want_err=kw.ERR_INTERNAL)
            ask("Ed25519 sign with all-zero SKI -> error 0x08",
                kw.encode(kw.OP_ED25519, b"m", ski=bytes(20), id=nid()), want_err=kw.ERR_INTERNAL)

            # --- unknown SKI / digest -> 0x02
            ask("RSA sign with unknown SKI -> error 0x02",
                kw.encode(kw.OP_RSA_SHA256, d32, ski=os.urandom(20), id=nid()),
                want_err=kw.ERR_KEY_NOT_FOUND)
            ask("ECDSA sign with unknown SKI -> error 0x02",
                kw.encode(kw.OP_ECDSA_SHA256, d32, ski=os.urandom(20), id=nid()),
                want_err=kw.ERR_KEY_NOT_FOUND)
            for tk in (rsa, rsa3):
                ask("RSA sign by digest (tag 0x01) only, %s -> signature by that key" % tk.name,
                    kw.encode(kw.OP_RSA_SHA256, d32, digest=tk.digest, id=nid()), kw.OP_RESPONSE,
                    check=sig_by(tk, kw.OP_RSA_SHA256, d32))
            ask("RSA decrypt by digest only works",
                kw.encode(kw.OP_RSA_DECRYPT, rsa.pub.encrypt(b"s" * 48, padding.PKCS1v15()),
                          digest=rsa.digest, id=nid()), kw.OP_RESPONSE,
                check=lambda f: kw.check_raw_decrypt(f.payload, rsa.k, b"s" * 48))
            ask("RSA sign with unknown digest only -> error 0x02",
                kw.encode(kw.OP_RSA_SHA256, d32, digest=os.urandom(32), id=nid()),
                want_err=kw.ERR_KEY_NOT_FOUND)
            ask("SKI wins over digest: SKI of RSA-3072 + digest of RSA-2048 -> signed by RSA-3072",
                kw.encode(kw.OP_RSA_SHA256, d32, ski=rsa3.ski, digest=rsa.digest, id=nid()),
                kw.OP_RESPONSE, check=sig_by(rsa3, kw.OP_RSA_SHA256, d32))
            ask("SKI wins over digest: unknown SKI + known digest -> error 0x02",
                kw.encode(kw.OP_RSA_SHA256, d32, ski=os.urandom(20), digest=rsa.digest, id=nid()),
                want_err=kw.ERR_KEY_NOT_FOUND)

            # --- family mismatch / wrong payload length -> 0x01
            mism = [
                ("ECDSA op on an RSA key", kw.OP_ECDSA_SHA256, d32, rsa),
                ("Ed25519 op on an RSA key", kw.OP_ED25519, b"msg", rsa),
                ("RSA PKCS#1 op on an EC key", kw.OP_RSA_SHA256, d32, p256),
                ("RSA PSS op on an EC key", kw.OP_RSA_PSS_SHA256, d32, p256),
                ("RSA decrypt on an EC key", kw.OP_RSA_DECRYPT, bytes(32), p256),
                ("Ed25519 op on an EC key", kw.OP_ED25519, b"msg", p256),
                ("ECDSA op on an Ed25519 key", kw.OP_ECDSA_SHA256, d32, ed),
                ("RSA op on an Ed25519 key", kw.OP_RSA_SHA256, d32, ed),
                ("RSA decrypt on an Ed25519 key", kw.OP_RSA_DECRYPT, bytes(32), ed),
            ]
            for what, op, payload, tk in mism:
                ask("family mismatch: %s -> error 0x01" % what,
                    kw.encode(op, payload, ski=tk.ski, id=nid()), want_err=kw.ERR_CRYPTO)
            lens = [
                ("RSA SHA256 with a 31-byte payload", kw.OP_RSA_SHA256, bytes(31), rsa),
                ("RSA SHA256 with a 33-byte payload", kw.OP_RSA_SHA256, bytes(33), rsa),
                ("RSA SHA256 with an empty payload", kw.OP_RSA_SHA256, b"", rsa),
                ("RSA SHA256 without payload item", kw.OP_RSA_SHA256, None, rsa),
                ("RSA MD5SHA1 with a 32-byte payload", kw.OP_RSA_MD5SHA1, bytes(32), rsa),
                ("RSA SHA1 with a 32-byte payload", kw.OP_RSA_SHA1, bytes(32), rsa),
                ("RSA SHA512 with a 48-byte payload", kw.OP_RSA_SHA512, bytes(48), rsa),
                ("RSA PSS SHA384 with a 32-byte payload", kw.OP_RSA_PSS_SHA384, bytes(32), rsa),
                ("ECDSA SHA256 with a 20-byte payload", kw.OP_ECDSA_SHA256, bytes(20), p256),
                ("ECDSA MD5SHA1 with a 32-byte payload", kw.OP_ECDSA_MD5SHA1, bytes(32), p256),
                ("ECDSA SHA384 with a 64-byte payload", kw.OP_ECDSA_SHA384, bytes(64), p256),
            ]
            for what, op, payload, tk in lens:
                ask("payload length: %s -> error 0x01" % what,
                    kw.encode(op, payload, ski=tk.ski, id=nid()), want_err=kw.ERR_CRYPTO)

            n_bytes = rsa.pub.public_numbers().n.to_bytes(rsa.k, "big")
            ask("RSA decrypt of a ciphertext equal to the modulus -> error 0x01",
                kw.encode(kw.OP_RSA_DECRYPT, n_bytes, ski=rsa.ski, id=nid()), want_err=kw.ERR_CRYPTO)
            ask("RSA decrypt of a k+1-byte ciphertext -> error 0x01",
                kw.encode(kw.OP_RSA_DECRYPT, b"\x00" + bytes(rsa.k - 1) + b"\x02", ski=rsa.ski,
                          id=nid()), want_err=kw.ERR_CRYPTO)

            # --- bad / unexpected opcodes
            for op in [0x08, 0x20, 0x21, 0x22, 0x23, 0x24, 0xF3, 0x99, 0x00, 0x38, 0xF4]:
                payload = bytes(rsa.k) if op == 0x08 else d32
                ask("opcode 0x%02x -> error 0x05 (bad opcode)" % op,
                    kw.encode(op, payload, ski=rsa.ski, id=nid()), want_err=kw.ERR_BAD_OPCODE)
            ask("request without an opcode item -> error 0x05 (read as opcode 0x00)",
                kw.encode(None, d32, ski=rsa.ski, id=nid()), want_err=kw.ERR_BAD_OPCODE)
            for op in [0xF0, 0xF2, 0xFF]:
                ask("opcode 0x%02x as a request -> error 0x06 (unexpected opcode)" % op,
                    kw.encode(op, b"\x00", ski=rsa.ski, id=nid()),
                    want_err=kw.ERR_UNEXPECTED_OPCODE)

            # --- version mismatch: error 0x04, same id, connection kept
            for major in [2, 0, 0xFF]:
                ask("major version %d -> error 0x04 with the same id" % major,
                    kw.encode(kw.OP_PING, b"v", id=nid(), major=major),
                    want_err=kw.ERR_VERSION_MISMATCH)
                c.check(kw.ping_ok(cl), "connection works after major version %d" % major)
            ask("major version 2 on a sign request -> error 0x04",
                kw.encode(kw.OP_RSA_SHA256, d32, ski=rsa.ski, id=nid(), major=2),
                want_err=kw.ERR_VERSION_MISMATCH)
            # The mismatched frame and a valid one in the same write: both answered.
            i1, i2 = nid(), nid()
            cl.send(kw.encode(kw.OP_PING, b"x", id=i1, major=2) + kw.encode(kw.OP_PING, b"y", id=i2))
            try:
                fs = [cl.recv_frame(), cl.recv_frame()]
                byid = {f.id: f for f in fs}
                c.check(byid.get(i1) is not None and byid[i1].error == kw.ERR_VERSION_MISMATCH and
                        byid.get(i2) is not None and byid[i2].opcode == kw.OP_PONG,
                        "major 2 + valid ping in one write: error 0x04 and pong",
                        "got %s" % [kw.describe(f) for f in fs])
            except (OSError, kw.ConnectionClosed) as e:
                c.fail("major 2 + valid ping in one write: error 0x04 and pong", str(e))

            # --- accepted: unknown tags, optional known tags, any padding
            op, p = kw.OP_RSA_SHA256, d32
            unknown = [(0x30, b"unknown"), (0x7E, b""), (0xA5, os.urandom(40)), (0x00, b"zero")]
            ask("unknown tags in a ping are ignored",
                kw.encode(kw.OP_PING, b"u", extra=unknown, id=nid()), kw.OP_PONG,
                check=lambda f: None if f.payload == b"u" else "payload %r" % f.payload)
            ask("unknown tags in a sign request are ignored",
                kw.encode(op, p, ski=rsa.ski, extra=unknown, id=nid()), kw.OP_RESPONSE,
                check=sig_by(rsa, op, p))
            optional = [(kw.TAG_SNI, b"example.com"), (kw.TAG_CLIENT_IP, bytes([192, 0, 2, 1])),
                        (kw.TAG_SERVER_IP, bytes(15) + b"\x01"), (kw.TAG_CERT_ID, b"cert-1"),
                        (kw.TAG_REQ_CONTEXT, b'{"request_id":"x"}'), (kw.TAG_COMPLIANCE, b"\x01"),
                        (kw.TAG_EXTRA, b"extra"), (kw.TAG_JAEGER, b"span"),
                        (kw.TAG_CUSTOM_FUNC, b"fn")]
            ask("every optional known tag (SNI, IPv4/IPv6, cert id, context, ...) accepted",
                kw.encode(op, p, ski=rsa.ski, extra=optional, id=nid()), kw.OP_RESPONSE,
                check=sig_by(rsa, op, p))
            ask("request without padding accepted",
                kw.encode(op, p, ski=rsa.ski, id=nid(), pad=False), kw.OP_RESPONSE,
                check=sig_by(rsa, op, p))
            ask("ping without padding accepted",
                kw.encode(kw.OP_PING, b"np", id=nid(), pad=False), kw.OP_PONG)
            for size in [1027, 4096, 65000]:
                ask("request padded to %d bytes accepted" % size,
                    kw.encode(op, p, ski=rsa.ski, id=nid(), pad_to=size), kw.OP_RESPONSE,
                    check=sig_by(rsa, op, p))
            # padding first, then the items
            body = kw.item(kw.TAG_PADDING, bytes(500)) + kw.item(kw.TAG_OPCODE, bytes([op])) + \
                kw.item(kw.TAG_PAYLOAD, p) + kw.item(kw.TAG_SKI, rsa.ski)
            ask("padding item before the other items accepted",
                kw.frame(body, id=nid()), kw.OP_RESPONSE, check=sig_by(rsa, op, p))
            ask("two padding items accepted",
                kw.frame(kw.item(kw.TAG_OPCODE, b"\xf1") + kw.item(kw.TAG_PADDING, bytes(10)) +
                         kw.item(kw.TAG_PADDING, bytes(900)), id=nid()), kw.OP_PONG)
            ask("empty padding item accepted",
                kw.frame(kw.item(kw.TAG_OPCODE, b"\xf1") + kw.item(kw.TAG_PADDING, b""), id=nid()),
                kw.OP_PONG)
            c.check(kw.ping_ok(cl), "main connection still works after all table rows")

            # --- malformed frames: that connection closes without a reply; others continue
            def body_of(*items):
                return b"".join(items)

            opi = kw.item(kw.TAG_OPCODE, bytes([kw.OP_RSA_SHA256]))
            pay = kw.item(kw.TAG_PAYLOAD, d32)
            ski = kw.item(kw.TAG_SKI, rsa.ski)
            past = opi + pay + ski + bytes([kw.TAG_PADDING]) + (100).to_bytes(2, "big") + bytes(10)
            # (what, body, pad): pad appends a padding item as a well-behaved client would.
            malformed = [
                ("item running past the body", past, False),
                ("opcode item running past the body", b"\x11\x00\x05\xf1", False),
                ("opcode item of length 2", kw.item(kw.TAG_OPCODE, b"\xf1\x00") + pay, True),
                ("opcode item of length 0", kw.item(kw.TAG_OPCODE, b"") + pay, True),
                ("SKI repeated", opi + pay + ski + ski, True),
                ("SKI repeated (different values)",
                 opi + pay + ski + kw.item(kw.TAG_SKI, p256.ski), True),
                ("opcode repeated", opi + opi + pay + ski, True),
                ("payload repeated", opi + pay + pay + ski, True),
                ("digest repeated", opi + pay + kw.item(kw.TAG_DIGEST, rsa.digest) * 2, True),
                ("client IP item of length 5",
                 opi + pay + ski + kw.item(kw.TAG_CLIENT_IP, bytes(5)), True),
                ("client IP item of length 0",
                 opi + pay + ski + kw.item(kw.TAG_CLIENT_IP, b""), True),
                ("server IP item of length 17",
                 opi + pay + ski + kw.item(kw.TAG_SERVER_IP, bytes(17)), True),
                ("compliance region item of length 2",
                 opi + pay + ski + kw.item(kw.TAG_COMPLIANCE, b"\x01\x01"), True),
                ("server IP item of length 5",
                 opi + pay + ski + kw.item(kw.TAG_SERVER_IP, bytes(5)), True),
            ]
            with kd.connect() as other:
                c.check(kw.ping_ok(other), "second connection works before malformed frames")
                for what, body, pad in malformed:
                    if pad:
                        body += kw.pad_item(len(body))
                    req = kw.frame(body, id=nid())
                    with kd.connect() as bad:
                        bad.send(req)
                        closed, got = bad.expect_closed(5.0)
                        c.check(closed and not got, "malformed (%s): connection closed, no reply" %
                                what, "request %s... -> closed=%s, got %d bytes %s" % (
                                    req[:48].hex(), closed, len(got), got[:16].hex()))
                    c.check(kw.ping_ok(other), "malformed (%s): other connection still works" %
                            what)
                c.check(kw.ping_ok(cl), "first connection still works after malformed frames")
                c.check(kd.alive(), "keywayd still running")
        c.eq(kd.returncode, 0, "keywayd exits 0 on SIGTERM")


if __name__ == "__main__":
    kw.run_main("keywayd answer table", main)
