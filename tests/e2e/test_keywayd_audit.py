#!/usr/bin/python3
"""--audit-log: every 10 s one key=value line per (client identity, key SKI,
operation) with the requests, ACL denials and other failures of the interval,
summed over the workers; pings and idle intervals write nothing; SIGHUP
reopens the file (log rotation).

A run takes 25 to 45 s: the lines of one or two intervals, a quiet one, one more."""

import os
import signal
import time

from cryptography.hazmat.primitives.asymmetric import padding

import kwharness
import kwtest as kw

INTERVAL = 10.0


def read_lines(path):
    try:
        with open(path) as f:
            return [l for l in f.read().splitlines() if l.strip()]
    except FileNotFoundError:
        return []


def parse(line):
    return dict(w.split("=", 1) for w in line.split(" ") if "=" in w)


def totals(lines):
    """{(client, key, op): [requests, denied, failed]} summed over the lines."""
    out = {}
    for l in lines:
        d = parse(l)
        if "client" not in d:
            continue
        k = (d["client"] + (" cn=" + d["cn"] if "cn" in d else ""), d["key"], d["op"])
        t = out.setdefault(k, [0, 0, 0])
        for i, f in enumerate(("requests", "denied", "failed")):
            t[i] += int(d[f])
    return out


def main(c):
    with kw.TempDir() as tmp:
        pki, keys_dir, keys = kw.setup(tmp, ["rsa2048", "p256", "ed25519"])
        rsa, p256, ed = keys["rsa2048"], keys["p256"], keys["ed25519"]
        a = kw.ClientCert(pki, "front-a", "front a")  # a space, percent-encoded in the line
        acl = os.path.join(tmp, "acl")
        with open(acl, "w") as f:
            f.write("allow spki:%s %s\nallow uid:%d * sign\n" % (a.spki, rsa.ski.hex(), os.getuid()))
        log = os.path.join(tmp, "audit.log")
        sock = os.path.join(tmp, "kw.sock")
        with kw.Keywayd(pki, keys_dir, tmp, unix=sock, workers=2,
                        extra=["--acl", acl, "--audit-log", log]) as kd:
            with a.connect(kd.port) as cl, kd.connect_unix() as ul:
                for _ in range(3):
                    c.check(kw.signs_with(cl, rsa)[0], "front-a signs with the RSA key")
                f = cl.request(kw.OP_RSA_SHA256, b"short", ski=rsa.ski)
                c.eq(f.error, kw.ERR_CRYPTO, "a bad digest length fails (0x01)")
                for _ in range(2):
                    c.eq(kw.signs_with(cl, p256)[1].error, kw.ERR_KEY_NOT_FOUND,
                         "front-a is denied the P-256 key")
                ct = rsa.pub.encrypt(b"s" * 48, padding.PKCS1v15())
                c.eq(cl.request(kw.OP_RSA_DECRYPT, ct, ski=rsa.ski).error, kw.ERR_KEY_NOT_FOUND,
                     "front-a is denied decryption")
                c.eq(cl.request(kw.OP_ECDSA_SHA256, bytes(32), ski=os.urandom(20)).error,
                     kw.ERR_KEY_NOT_FOUND, "an unknown key is not found")
                c.check(kw.ping_ok(cl) and kw.ping_ok(ul), "pings (not audited)")
                for _ in range(2):
                    c.check(kw.signs_with(ul, ed)[0], "the Unix-socket client signs")

            client = "spki:%s cn=front%%20a" % a.spki
            want = {
                (client, rsa.ski.hex(), "sign"): [4, 0, 1],
                (client, rsa.ski.hex(), "decrypt"): [1, 1, 0],
                (client, p256.ski.hex(), "sign"): [2, 2, 0],
                (client, "unknown", "sign"): [1, 0, 1],
                ("uid:%d" % os.getuid(), ed.ski.hex(), "sign"): [2, 0, 0],
            }
            # The requests may straddle a boundary: wait for all of them, at most two
            # intervals and the writer's delay.
            done = kwharness.wait_until(lambda: totals(read_lines(log)) == want,
                                        2 * INTERVAL + 3, 0.2)
            lines = read_lines(log)
            c.check(done, "the audit lines count every request, denial and failure",
                    "want %s, got %s\n%s" % (want, totals(lines), "\n".join(lines)))
            c.check(all(parse(l).get("interval_s") == "10" and parse(l).get("time", "").endswith("Z")
                        for l in lines), "each line has its time and interval", lines)
            c.check(len(lines) <= 2 * len(want), "one line per tuple and interval", lines)

            # Log rotation: the file is renamed, SIGHUP reopens the path. The idle
            # interval is waited out meanwhile.
            before = len(lines)
            os.rename(log, log + ".1")
            kd.signal(signal.SIGHUP)
            time.sleep(INTERVAL + 1.5)
            c.eq(len(read_lines(log + ".1")), before, "an idle interval writes nothing")
            c.eq(read_lines(log), [], "nor to the file reopened at SIGHUP")
            with kd.connect_unix() as ul:
                c.check(kw.signs_with(ul, ed)[0], "a signature after the rotation")
            want = {("uid:%d" % os.getuid(), ed.ski.hex(), "sign"): [1, 0, 0]}
            c.check(kwharness.wait_until(lambda: totals(read_lines(log)) == want,
                                         INTERVAL + 3, 0.2),
                    "after SIGHUP the lines go to a new file at the same path",
                    read_lines(log))
            c.eq(len(read_lines(log + ".1")), before, "and none to the rotated one")


if __name__ == "__main__":
    kwharness.run_main("keywayd --audit-log", main)
