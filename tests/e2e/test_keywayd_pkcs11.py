#!/usr/bin/python3
"""keywayd serving keys that live on a PKCS#11 token (SoftHSM2 in a scratch
directory through SOFTHSM2_CONF), and nothing else: every keyless operation on
RSA-2048, P-256, P-384 and Ed25519 token keys, each result checked with the
public key; a ping answered while hundreds of token signatures are queued
(on the same connection and on another one); the queued operations of
connections that closed dropped unrun; a token limited to one session (max-sessions=1)
used through its login session; SIGHUP picking up a key added to
the token; the metrics; and the start-up refusals: wrong PIN (never echoed),
missing module, missing token, a token key and a key file with the same SKI.
Skipped when SoftHSM2 is not installed."""

import os
import random
import shutil
import signal
import subprocess
import time
import urllib.request

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding

import kwharness
import kwtest as kw

MODULES = ["/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"]
PIN = "kwpin4711"
TOKEN = "kwe2e"


def softhsm_module():
    for m in MODULES:
        if os.path.exists(m):
            return m
    return None


def make_token(tmp):
    """A SoftHSM2 token in tmp, SOFTHSM2_CONF pointing at it (for keywayd too)."""
    os.makedirs(os.path.join(tmp, "tokens"))
    conf = os.path.join(tmp, "softhsm2.conf")
    with open(conf, "w") as f:
        f.write("directories.tokendir = %s/tokens\nobjectstore.backend = file\n"
                "log.level = ERROR\n" % tmp)
    os.environ["SOFTHSM2_CONF"] = conf
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", TOKEN, "--so-pin",
                    "5678", "--pin", PIN], check=True, capture_output=True, timeout=60)


def import_key(tmp, tk, id_hex):
    """Imports the private key of tk (and its public key) into the token."""
    path = os.path.join(tmp, "import.pem")
    kw.write_key(path, tk.key)
    subprocess.run(["softhsm2-util", "--import", path, "--token", TOKEN, "--pin", PIN,
                    "--label", tk.name, "--id", id_hex], check=True, capture_output=True,
                   timeout=60)
    os.unlink(path)


def token_keys(tmp, names):
    keys = {}
    for i, n in enumerate(names):
        kind = kw.KEY_SPECS[n][0]
        tk = kw.TestKey(n, kind, kw.gen_key(n), None)
        import_key(tmp, tk, "%02x" % (i + 1))
        keys[n] = tk
    return keys


def keywayd(tmp, module, extra=(), uri=None, metrics=False, pki=None):
    """keywayd serving only token keys: on a Unix socket, and over mutual TLS with pki."""
    args = ["--pkcs11", uri or "pkcs11:token=%s?pin-value=%s" % (TOKEN, PIN),
            "--pkcs11-module", module]
    kd = kw.Keywayd(pki, None, tmp, base_args=args, listen=False, unix=True, workers=1,
                    metrics=metrics, extra=list(extra))
    if pki is not None:
        kd.port = kw.free_port()
        kd.args += ["--listen", "127.0.0.1:%d" % kd.port, "--tls-cert", pki.server_cert_file,
                    "--tls-key", pki.server_key_file, "--client-ca", pki.ca_file]
    return kd


def check_sign(c, cl, tk, op, payload, what):
    id = random.getrandbits(32)
    cl.send(kw.encode(op, payload, ski=tk.ski, id=id))
    f = cl.recv_frame()
    if not c.check(f.id == id and f.opcode == kw.OP_RESPONSE and f.payload,
                   what + ": response", kw.describe(f)):
        return
    c.check(not kw.check_response_shape(f), what + ": 1024-byte padded response",
            "; ".join(kw.check_response_shape(f)))
    why = kw.verify_sig(tk, op, payload, f.payload)
    c.check(why is None, what + ": signature verifies with the public key", why or "")


def every_op(c, kd, keys):
    """Every operation over mutual TLS (the Unix socket carries the load test)."""
    msg = os.urandom(100)
    with kd.connect() as cl:
        for tk in keys.values():
            if tk.kind == "rsa":
                for h in ["md5sha1", "sha1", "sha224", "sha256", "sha384", "sha512"]:
                    op, p = kw.sign_request(tk, h, msg)
                    check_sign(c, cl, tk, op, p, "%s PKCS#1 v1.5 %s" % (tk.name, h))
                for h in ["sha256", "sha384", "sha512"]:
                    op, p = kw.sign_request(tk, h, msg, pss=True)
                    check_sign(c, cl, tk, op, p, "%s PSS %s" % (tk.name, h))
                secret = b"\x03\x03" + os.urandom(46)
                ct = tk.pub.encrypt(secret, padding.PKCS1v15())
                f = cl.request(kw.OP_RSA_DECRYPT, ct, ski=tk.ski)
                c.check(f.opcode == kw.OP_RESPONSE and f.payload is not None and
                        kw.check_raw_decrypt(f.payload, tk.k, secret) is None,
                        "%s raw decrypt: the k-byte PKCS#1 block" % tk.name, kw.describe(f))
                # By modulus digest, as file keys are found.
                op, p = kw.sign_request(tk, "sha256", msg)
                f = cl.request(op, p, digest=tk.digest)
                c.check(f.opcode == kw.OP_RESPONSE and
                        kw.verify_sig(tk, op, p, f.payload) is None,
                        "%s found by its modulus digest" % tk.name, kw.describe(f))
                # c >= n: a crypto error for this request only.
                f = cl.request(kw.OP_RSA_DECRYPT, b"\xff" * tk.k, ski=tk.ski)
                c.eq(f.error, 0x01, "%s decrypt of c >= n: error 0x01" % tk.name)
            elif tk.kind == "ec":
                for h in ["md5sha1", "sha1", "sha224", "sha256", "sha384", "sha512"]:
                    op, p = kw.sign_request(tk, h, msg)
                    check_sign(c, cl, tk, op, p, "%s ECDSA %s" % (tk.name, h))
            else:
                op, p = kw.sign_request(tk, "sha256", msg)
                check_sign(c, cl, tk, op, p, "%s Ed25519" % tk.name)
        c.check(kw.ping_ok(cl), "ping after the token operations")


def ping_under_load(c, kd, tk, n=400):
    """n RSA signatures queued on one device thread; pings are answered meanwhile."""
    op, p = kw.sign_request(tk, "sha256", b"load")
    reqs = b"".join(kw.encode(op, p, ski=tk.ski, id=i) for i in range(1, n + 1))
    ping_id = n + 1
    with kd.connect_unix(timeout=60) as busy, kd.connect_unix() as other:
        busy.send(reqs + kw.encode(kw.OP_PING, b"same-conn", id=ping_id))
        # Another connection: its ping is answered at once.
        t0 = time.monotonic()
        ok = kw.ping_ok(other, b"other-conn", timeout=5.0)
        took = time.monotonic() - t0
        c.check(ok and took < 2.0, "a ping on another connection is answered within 2 s "
                "while %d token signatures are queued" % n, "ok=%s, %.3f s" % (ok, took))
        # The same connection: the pong overtakes the signatures queued before it.
        seen, pong_at, good = 0, None, 0
        while seen < n + 1:
            f = busy.recv_frame(60)
            seen += 1
            if f.id == ping_id:
                pong_at = seen
                c.check(f.opcode == kw.OP_PONG and f.payload == b"same-conn",
                        "the pong echoes its payload", kw.describe(f))
            elif f.opcode == kw.OP_RESPONSE and kw.verify_sig(tk, op, p, f.payload) is None:
                good += 1
        c.check(pong_at is not None and pong_at < n // 2,
                "the ping sent after %d signatures is answered before most of them" % n,
                "pong was answer %s of %d" % (pong_at, n + 1))
        c.eq(good, n, "all %d queued signatures verify" % n)


def metrics_ok(c, kd):
    text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % kd.metrics_port,
                                  timeout=5).read().decode()
    c.check('keyway_keywayd_pkcs11_operations_total{result="ok"}' in text and
            'keyway_keywayd_pkcs11_operations_total{result="ok"} 0\n' not in text,
            "metrics count the token operations", "")
    for name in ["keyway_keywayd_pkcs11_operation_duration_seconds_bucket",
                 "keyway_keywayd_pkcs11_queue_depth"]:
        c.check(name in text, "metrics have " + name, "")
    promtool = shutil.which("promtool")
    if promtool:
        ours = "\n".join(line for line in text.splitlines() if "pkcs11" in line) + "\n"
        r = subprocess.run([promtool, "check", "metrics"], input=ours, capture_output=True,
                           text=True, timeout=30)
        c.check(r.returncode == 0, "promtool check metrics accepts the pkcs11 families",
                r.stdout + r.stderr)


def metric(kd, name):
    """The value of the sample name (with its labels) on kd's metrics page, 0 if absent."""
    text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % kd.metrics_port,
                                  timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def closed_connections_cancel(c, tmp, module, tk, nconn=20, n=500):
    """nconn connections each queue n token signatures and close at once: their
    queued operations are dropped before they reach the token, and a new client is
    served without waiting for them (one device thread: ~1 ms a signature, so
    running them all would take seconds). --audit-log still counts every request
    that reached the token, the dropped ones as failures (written when keywayd stops)."""
    op, p = kw.sign_request(tk, "sha256", b"gone")
    reqs = b"".join(kw.encode(op, p, ski=tk.ski, id=i) for i in range(1, n + 1))
    ops = 'keyway_keywayd_pkcs11_operations_total{result="%s"}'
    audit = os.path.join(tmp, "audit-cancel.log")
    with keywayd(tmp, module, metrics=True,
                 extra=["--pkcs11-threads", "1", "--audit-log", audit]) as kd:
        for _ in range(nconn):
            with kd.connect_unix(timeout=30) as gone:
                gone.send(reqs)
        t0 = time.monotonic()
        with kd.connect_unix(timeout=60) as cl:
            ok, f = kw.signs_with(cl, tk)
        took = time.monotonic() - t0
        c.check(ok and took < 5.0, "a new client is served within 5 s after %d connections "
                "queued %d token signatures each and closed" % (nconn, n),
                "ok=%s, %.3f s, %s" % (ok, took, kw.describe(f)))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (
                metric(kd, "keyway_keywayd_pkcs11_queue_depth") > 0 or
                metric(kd, "keyway_keywayd_pkcs11_operations_running") > 0):
            time.sleep(0.05)
        ran, dropped = metric(kd, ops % "ok"), metric(kd, ops % "cancelled")
        c.check(ran + dropped >= nconn * 100,
                "the closed connections queued token work", "ok=%d, cancelled=%d" % (ran, dropped))
        c.check(ran <= 0.1 * (ran + dropped),
                "the token ran few of the operations queued by closed connections; the rest "
                "were counted as cancelled", "ok=%d, cancelled=%d" % (ran, dropped))
    requests = failed = 0
    with open(audit) as f:
        for line in f:
            d = dict(w.split("=", 1) for w in line.split() if "=" in w)
            if d.get("key") == tk.ski.hex() and d.get("op") == "sign":
                requests += int(d["requests"])
                failed += int(d["failed"])
    # Requests still unread in a socket when it closed never reached keywayd; every one
    # that reached the token's queue (run or dropped) must be in the log.
    c.check(requests >= ran + dropped and failed >= dropped,
            "the audit log counts every request of the closed connections that reached the "
            "token, the unanswered ones as failures", "requests=%d, failed=%d, ok=%d, "
            "cancelled=%d" % (requests, failed, ran, dropped))


def ping_behind_slow_token(c, tmp, module, tk, n=6, delay_ms=400):
    """A token taking delay_ms a signature (the test shim in front of SoftHSM2), n
    signatures queued on one connection: its socket is then read when the token
    hands answers back, or after a few milliseconds at the latest, so a ping sent
    afterwards on that same connection is not left waiting for the token."""
    shim = os.environ.get("KW_P11_SHIM")
    if not shim or not os.path.exists(shim):
        c.check(True, "(no test shim module: the slow-token ping is not run)", "")
        return
    op, p = kw.sign_request(tk, "sha256", b"slow")
    reqs = b"".join(kw.encode(op, p, ski=tk.ski, id=i) for i in range(1, n + 1))
    saved = {k: os.environ.get(k) for k in ("KW_SHIM_REAL", "KW_SHIM_SIGN_DELAY_US")}
    os.environ["KW_SHIM_REAL"] = module
    os.environ["KW_SHIM_SIGN_DELAY_US"] = str(delay_ms * 1000)
    try:
        with keywayd(tmp, shim, extra=["--pkcs11-threads", "1"]) as kd:
            with kd.connect_unix(timeout=30) as cl:
                cl.send(reqs)
                time.sleep(0.1)  # the signatures are read and on the token
                t0 = time.monotonic()
                cl.send(kw.encode(kw.OP_PING, b"behind", id=n + 1))
                f = cl.recv_frame(10)
                took = time.monotonic() - t0
                c.check(f.id == n + 1 and f.opcode == kw.OP_PONG and took < delay_ms / 4000.0,
                        "a ping behind %d signatures on a %d ms token is answered on the "
                        "same connection within %d ms" % (n, delay_ms, delay_ms // 4),
                        "answer %s after %.3f s" % (kw.describe(f), took))
                good = 0
                for _ in range(n):
                    f = cl.recv_frame(30)
                    good += f.opcode == kw.OP_RESPONSE and kw.verify_sig(tk, op, p, f.payload) is None
                c.eq(good, n, "the %d slow-token signatures verify" % n)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def one_session(c, tmp, module, tk, n=100):
    """max-sessions=1 (the login session only): keywayd says so and serves every
    request, its device threads taking turns on that session."""
    uri = "pkcs11:token=%s?pin-value=%s&max-sessions=1" % (TOKEN, PIN)
    op, p = kw.sign_request(tk, "sha256", b"one")
    reqs = b"".join(kw.encode(op, p, ski=tk.ski, id=i) for i in range(1, n + 1))
    with keywayd(tmp, module, uri=uri, extra=["--pkcs11-threads", "3"]) as kd:
        c.check(kd.wait_log("grants no session besides the login session", 5.0) is not None,
                "a token limited to one session is used through its login session, saying so",
                kd.stderr_text()[-600:])
        with kd.connect_unix(timeout=60) as cl:
            cl.send(reqs)
            good = 0
            for _ in range(n):
                f = cl.recv_frame(60)
                good += f.opcode == kw.OP_RESPONSE and kw.verify_sig(tk, op, p, f.payload) is None
            c.eq(good, n, "all %d signatures on a one-session token verify" % n)
            kd.signal(signal.SIGHUP)
            kd.wait_log("reloaded", 10)
            ok, f = kw.signs_with(cl, tk)
            c.check(ok, "a reload on a one-session token works and it still signs",
                    kw.describe(f))


def refusals(c, tmp, module, keys):
    def expect(args, needle, what):
        rc, out = kw.run_keywayd_expect_exit(args + ["--unix", os.path.join(tmp, "r.sock")])
        c.check(rc == 2 and needle in out, what, "exit %s: %s" % (rc, out.strip()))
        return out

    out = expect(["--pkcs11", "pkcs11:token=%s?pin-value=wrongpin99" % TOKEN, "--pkcs11-module",
                  module], "wrong PIN", "a wrong PIN is refused at start-up, saying so")
    c.check("wrongpin99" not in out, "the PIN tried is not in the message", out.strip())
    expect(["--pkcs11", "pkcs11:token=%s?pin-value=%s" % (TOKEN, PIN), "--pkcs11-module",
            "/nonexistent/libnone.so"], "cannot be loaded", "a missing module is refused")
    expect(["--pkcs11", "pkcs11:token=nosuch?pin-value=%s" % PIN, "--pkcs11-module", module],
           "no token matches", "a missing token is refused, naming the tokens present")
    kdir = os.path.join(tmp, "keys")
    os.makedirs(kdir, exist_ok=True)
    kw.write_key(os.path.join(kdir, "same.key"), keys["p256"].key)
    out = expect(["--keys", kdir, "--pkcs11", "pkcs11:token=%s?pin-value=%s" % (TOKEN, PIN),
                  "--pkcs11-module", module], "same key",
                 "a key file and a token key with the same SKI are refused")
    c.check("same.key" in out and "object=p256" in out, "the refusal names both keys",
            out.strip())


def reload_picks_up(c, tmp, kd):
    tk = kw.TestKey("late", "ec", kw.gen_key("p256"), None)
    import_key(tmp, tk, "99")
    start = len(kd.stderr_text())
    kd.signal(signal.SIGHUP)
    kd.wait_log("reloaded", 10, start)
    with kd.connect_unix() as cl:
        ok, f = kw.signs_with(cl, tk)
        c.check(ok, "SIGHUP re-reads the token: a key imported since is served",
                kw.describe(f))


def reload_failure_keeps_keys(c, tmp, module, tk):
    """A reload that cannot read a token keeps the old keys and says why."""
    pin = os.path.join(tmp, "pin")
    with open(pin, "w") as f:
        f.write(PIN + "\n")
    os.chmod(pin, 0o600)
    uri = "pkcs11:token=%s;object=%s?pin-source=file:%s" % (TOKEN, tk.name, pin)
    with keywayd(tmp, module, uri=uri) as kd:
        with kd.connect_unix() as cl:
            ok, f = kw.signs_with(cl, tk)
            c.check(ok, "a pin-source file (mode 0600) logs in", kw.describe(f))
            os.chmod(pin, 0o644)
            start = len(kd.stderr_text())
            kd.signal(signal.SIGHUP)
            kd.wait_log("reload failed", 10, start)
            log = kd.stderr_text()[start:]
            c.check("reload failed" in log and pin in log and "chmod 600" in log,
                    "a reload with a pin-source readable by others fails, naming the file",
                    log.strip())
            ok, f = kw.signs_with(cl, tk)
            c.check(ok, "the old token keys are still served on the open connection",
                    kw.describe(f))
        c.check(PIN not in kd.stderr_text(), "the PIN from the file is not logged", "")


def acl_by_label(c, tmp, module, keys):
    """--acl label:NAME rules match a token key by its CKA_LABEL."""
    acl = os.path.join(tmp, "acl")
    with open(acl, "w") as f:
        f.write("allow * label:p256 sign\n")
    with keywayd(tmp, module, extra=["--acl", acl]) as kd, kd.connect_unix() as cl:
        ok, f = kw.signs_with(cl, keys["p256"])
        c.check(ok, "an ACL rule label:p256 lets the token key labelled p256 sign",
                kw.describe(f))
        op, p = kw.sign_request(keys["p384"], "sha256", b"x")
        f = cl.request(op, p, ski=keys["p384"].ski)
        c.eq(f.error, 0x02, "a token key no rule names is answered as unknown (0x02)")


def main(c):
    module = softhsm_module()
    if module is None or shutil.which("softhsm2-util") is None:
        kwharness.skip("SoftHSM2 is not installed (Debian package softhsm2)")
    with kw.TempDir() as tmp:
        make_token(tmp)
        keys = token_keys(tmp, ["rsa2048", "p256", "p384", "ed25519"])
        pki = kw.PKI(os.path.join(tmp, "pki"))
        with keywayd(tmp, module, metrics=True, extra=["--pkcs11-threads", "1"], pki=pki) as kd:
            every_op(c, kd, keys)
            ping_under_load(c, kd, keys["rsa2048"])
            metrics_ok(c, kd)
            reload_picks_up(c, tmp, kd)
        c.eq(kd.returncode, 0, "keywayd exits 0 on SIGTERM")
        log = kd.stderr_text()
        c.check(PIN not in log, "the PIN is not logged", "")
        closed_connections_cancel(c, tmp, module, keys["rsa2048"])
        ping_behind_slow_token(c, tmp, module, keys["p256"])
        one_session(c, tmp, module, keys["p256"])
        refusals(c, tmp, module, keys)
        reload_failure_keeps_keys(c, tmp, module, keys["p256"])
        acl_by_label(c, tmp, module, keys)


if __name__ == "__main__":
    kw.run_main("keywayd PKCS#11 keys", main)
