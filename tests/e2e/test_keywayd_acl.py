#!/usr/bin/python3
"""--acl: per-client key authorization.

Each identity form (spki:, dns:, cn:, uid: over the Unix socket, *) and each
operation (sign, decrypt) allows what its rules say and nothing else; two
client certificates of the same CA get different answers. A denial is the
very frame an unknown key gets (0x02) and is counted by reason. A reload
takes effect on an already open connection; a bad file is refused at
start-up (FILE:LINE and the fix) and, on SIGHUP, keeps the old rules. A
--unix-mode letting every user connect needs --allow-world-socket."""

import os
import re
import shutil
import signal
import subprocess
import urllib.request

from cryptography.hazmat.primitives.asymmetric import padding

import kwharness
import kwtest as kw

ALLOWED, DENIED = "allowed", "denied"


def sign(cl, tk):
    """ALLOWED (a valid signature), DENIED (0x02), or a description."""
    op, p = kw.sign_request(tk, "sha256", b"acl")
    f = cl.request(op, p, ski=tk.ski)
    if f.opcode == kw.OP_RESPONSE and kw.verify_sig(tk, op, p, f.payload) is None:
        return ALLOWED
    return DENIED if f.error == kw.ERR_KEY_NOT_FOUND else kw.describe(f)


def decrypt(cl, tk):
    secret = os.urandom(48)
    f = cl.request(kw.OP_RSA_DECRYPT, tk.pub.encrypt(secret, padding.PKCS1v15()), ski=tk.ski)
    if f.opcode == kw.OP_RESPONSE and kw.check_raw_decrypt(f.payload, tk.k, secret) is None:
        return ALLOWED
    return DENIED if f.error == kw.ERR_KEY_NOT_FOUND else kw.describe(f)


def same_as_unknown(cl, tk):
    """A denied request's frame is byte for byte an unknown key's (same id)."""
    op, p = kw.sign_request(tk, "sha256", b"probe")
    denied = cl.request(op, p, ski=tk.ski, id=77)
    unknown = cl.request(op, p, ski=os.urandom(20), id=77)
    return denied.raw == unknown.raw and denied.error == kw.ERR_KEY_NOT_FOUND


def metrics(kd):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % kd.metrics_port, timeout=5) as r:
        return r.read().decode()


def denied_count(page, reason):
    m = re.search(r'^keyway_keywayd_acl_denied_total\{reason="%s"\} (\d+)$' % reason, page, re.M)
    return int(m.group(1)) if m else None


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def main(c):
    with kw.TempDir() as tmp:
        pki, keys_dir, keys = kw.setup(tmp, ["rsa2048", "p256", "ed25519"])
        rsa, p256, ed = keys["rsa2048"], keys["p256"], keys["ed25519"]
        a = kw.ClientCert(pki, "front-a", "front-a", dns=["a.example"])
        b = kw.ClientCert(pki, "front-b", "front-b", dns=["x.example", "b.example"])
        cn = kw.ClientCert(pki, "front-c", "front-c")
        uid = os.getuid()
        acl = write(os.path.join(tmp, "acl"), """\
# front-a: signs with the RSA key only (OPS left out: sign)
allow spki:%s %s
# front-b, by a DNS name of its certificate (case-insensitive): RSA, both operations
allow dns:B.Example %s sign,decrypt   # trailing comment
allow cn:front-c %s,label:hsm-key sign
allow uid:%d %s decrypt
allow uid:%d %s
""" % (a.spki, rsa.ski.hex(), rsa.ski.hex(), p256.ski.hex(), uid, rsa.ski.hex(), uid + 1,
       ed.ski.hex()))
        sock = os.path.join(tmp, "kw.sock")

        with kw.Keywayd(pki, keys_dir, tmp, unix=sock, metrics=True, workers=2,
                        extra=["--acl", acl]) as kd:
            with c.section("spki: rule"), a.connect(kd.port) as cl:
                c.eq(sign(cl, rsa), ALLOWED, "spki: front-a signs with the RSA key")
                c.eq(decrypt(cl, rsa), DENIED, "spki: front-a may not decrypt (OPS default sign)")
                c.eq(sign(cl, p256), DENIED, "spki: front-a may not use the P-256 key")
                c.check(same_as_unknown(cl, p256), "a denial is the frame of an unknown key")
                c.check(kw.ping_ok(cl), "pings are never subject to the ACL")
            with c.section("dns: rule"), b.connect(kd.port) as cl:
                c.eq(sign(cl, rsa), ALLOWED, "dns: front-b signs with the RSA key")
                c.eq(decrypt(cl, rsa), ALLOWED, "dns: front-b decrypts with the RSA key")
                c.eq(sign(cl, ed), DENIED, "dns: front-b may not use the Ed25519 key")
            with c.section("cn: rule"), cn.connect(kd.port) as cl:
                c.eq(sign(cl, p256), ALLOWED, "cn: front-c signs with the P-256 key")
                c.eq(sign(cl, rsa), DENIED, "cn: front-c may not use the RSA key")
            with c.section("no rule"), kd.connect() as cl:
                for tk in (rsa, p256, ed):
                    c.eq(sign(cl, tk), DENIED, "a client no rule names gets nothing (%s)" % tk.name)
            with c.section("uid: rule over the Unix socket"), kd.connect_unix() as cl:
                c.eq(decrypt(cl, rsa), ALLOWED, "uid:%d decrypts with the RSA key" % uid)
                c.eq(sign(cl, rsa), DENIED, "uid:%d may not sign (OPS decrypt)" % uid)
                c.eq(sign(cl, ed), DENIED, "a rule for another uid does not apply")
            page = metrics(kd)
            # operation: a's decrypt, uid's sign; key: a's p256 (twice, with the probe),
            # b's ed, cn's rsa, uid's ed; client: the 3 signs of the certificate no rule names.
            c.eq(denied_count(page, "operation"), 2, "denials counted with reason=operation")
            c.eq(denied_count(page, "key"), 5, "denials counted with reason=key")
            c.eq(denied_count(page, "client"), 3, "denials counted with reason=client")
            promtool = shutil.which("promtool")
            if promtool:
                out = subprocess.run([promtool, "check", "metrics"], input=page, text=True,
                                     capture_output=True, timeout=60)
                bad = [l for l in (out.stdout + out.stderr).splitlines()
                       if "keyway_keywayd_acl" in l or "revoked" in l]
                c.check(not bad, "promtool accepts the ACL counters", bad)

            with c.section("reload on an open connection"), kd.connect() as cl:
                c.eq(sign(cl, p256), DENIED, "before the reload: no rule for this client")
                write(acl, "allow * * sign\n")
                kd.signal(signal.SIGHUP)
                c.check(kwharness.wait_until(lambda: sign(cl, p256) == ALLOWED, 5.0),
                        "after SIGHUP, * * sign lets the open connection sign")
                c.eq(sign(cl, ed), ALLOWED, "* * covers every key")
                c.eq(decrypt(cl, rsa), DENIED, "* * sign still refuses decrypt")

                log_at = len(kd.stderr_text())
                write(acl, "allow * * sign\nallow spki:nothex *\n")
                kd.signal(signal.SIGHUP)
                m = kd.wait_log(r"reload failed.*acl:2: 'spki:nothex': not a SHA-256 in hex; fix:",
                                timeout=5.0, start=log_at)
                c.check(m is not None, "a bad file on reload is logged with FILE:LINE and the fix",
                        kd.stderr_text()[log_at:][-500:])
                c.eq(sign(cl, p256), ALLOWED, "after a failed reload the old rules stay")
                c.check(kw.ping_ok(cl), "the connection survives both reloads")

        with c.section("bad files at start-up"):
            base = ["--keys", keys_dir, "--unix", os.path.join(tmp, "s2.sock")]
            cases = [
                ("deny * *\n", r"acl:1: unknown rule 'deny'; fix: a rule is `allow CLIENT KEYS"),
                ("# ok\nallow *\n", r"acl:2: `allow` needs CLIENT and KEYS; fix:"),
                ("allow * * sign,encrypt\n", r"acl:1: unknown operation 'encrypt'; fix: OPS"),
                ("allow * abc\n", r"acl:1: 'abc': not a key; fix: KEYS is"),
                ("allow uid:x *\n", r"acl:1: 'uid:x': not a decimal uid; fix:"),
                ("allow host:a *\n", r"acl:1: unknown client 'host:a'; fix:"),
            ]
            for text, want in cases:
                write(acl, text)
                rc, out = kw.run_keywayd_expect_exit(base + ["--acl", acl])
                c.check(rc == 2 and re.search(want, out),
                        "start-up refuses %r (exit 2, %s)" % (text, want), "rc=%s: %s" % (rc, out))
            rc, out = kw.run_keywayd_expect_exit(base + ["--acl", os.path.join(tmp, "none")])
            c.check(rc == 2 and "--acl" in out and "No such file" in out,
                    "a missing --acl file is refused", "rc=%s: %s" % (rc, out))

        with c.section("world-writable Unix socket"):
            base = ["--keys", keys_dir, "--unix", os.path.join(tmp, "w.sock")]
            rc, out = kw.run_keywayd_expect_exit(base + ["--unix-mode", "0666"])
            c.check(rc == 2 and "--allow-world-socket" in out,
                    "--unix-mode 0666 is refused without --allow-world-socket",
                    "rc=%s: %s" % (rc, out))
            with kw.Keywayd(pki, keys_dir, tmp, listen=False, unix=os.path.join(tmp, "w.sock"),
                            base_args=["--keys", keys_dir],
                            extra=["--unix-mode", "0666", "--allow-world-socket"]) as kd:
                c.eq(oct(os.stat(kd.unix_path).st_mode & 0o777), oct(0o666),
                     "--allow-world-socket accepts --unix-mode 0666")


if __name__ == "__main__":
    kw.run_main("keywayd --acl", main)
