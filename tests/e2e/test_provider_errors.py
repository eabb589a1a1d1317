"""keyway provider failures: each must be a clear error through OpenSSL's
error queue, within timeout_ms (the bound checked is timeout_ms + 2 s, a
correctness bound, not a speed test), never a hang:

- keyserver down (nothing listens), key unknown to the keyserver, wrong
  keyserver name, keyserver certificate from another CA, a keyserver that
  accepts connections and never answers;
- no keyserver configured, a malformed setting (refused when the key loads);
- and the good side: with a dead keyserver listed first, the op fails over
  to the live one.
"""

import os
import socket
import time

import kwprov
import kwtest

TIMEOUT_MS = 1000


def body(c):
    with kwtest.TempDir("kw-prov-err-") as tmp, kwprov.Setup(tmp, names=("rsa2048", "p256")) as s:
        s.timeout_ms = TIMEOUT_MS
        dgst = os.path.join(tmp, "digest")
        with open(dgst, "wb") as f:
            f.write(bytes(range(32)))

        def sign(what, key, env, want, bound=TIMEOUT_MS / 1000.0 + 2.0, ok=False):
            t0 = time.monotonic()
            p = s.openssl(["pkeyutl", "-sign", "-inkey", key, "-in", dgst, "-out",
                           os.path.join(tmp, "sig"), "-pkeyopt", "digest:sha256"], env=env)
            dt = time.monotonic() - t0
            err = p.stderr.decode(errors="replace")
            if ok:
                c.check(p.returncode == 0, what + ": signs", err[-500:])
            else:
                c.check(p.returncode != 0 and all(w in err for w in want),
                        "%s: fails saying %s" % (what, " + ".join(repr(w) for w in want)),
                        err[-700:])
            c.check(dt < bound, "%s: answered in %.2f s (bound %.1f s)" % (what, dt, bound))
            return err

        dead = "127.0.0.1:%d" % kwprov.free_port()
        sign("keyserver down", s.refs["rsa2048"], s.env(servers=dead),
             ["keyserver unreachable", dead, "Connection refused"])

        # A key the keyserver does not hold.
        stranger = kwtest.gen_key("p256")
        _, cert = kwtest.make_leaf(s.pki.ca_key, s.pki.ca, "localhost", True, key=stranger)
        cpath = kwtest.write_cert(os.path.join(tmp, "stranger.crt"), cert)
        r = s.run_cli(["ref", "--cert", cpath])
        rpath = os.path.join(tmp, "stranger.ref.pem")
        with open(rpath, "w") as f:
            f.write(r.stdout)
        ski = kwtest.ski_of(stranger).hex()
        sign("key unknown to the keyserver", rpath, s.env(), ["key not found on the keyserver",
                                                              ski])

        sign("wrong keyserver name", s.refs["rsa2048"],
             s.env(KEYWAY_SERVER_NAME="not-the-keyserver.example"),
             ["TLS with the keyserver failed", s.server()])
        sign("keyserver certificate from another CA", s.refs["rsa2048"],
             s.env(KEYWAY_CA=s.pki.ca2_file), ["TLS with the keyserver failed"])

        # Accepts (the kernel does, into the backlog) and never answers.
        mute = socket.socket()
        mute.bind(("127.0.0.1", 0))
        mute.listen(16)
        try:
            t0 = time.monotonic()
            sign("keyserver that never answers", s.refs["p256"],
                 s.env(servers="127.0.0.1:%d" % mute.getsockname()[1]),
                 ["keyserver timeout", "timeout_ms=%d" % TIMEOUT_MS])
            c.check(time.monotonic() - t0 >= TIMEOUT_MS / 1000.0 * 0.9,
                    "keyserver that never answers: waited about timeout_ms")
        finally:
            mute.close()

        sign("no keyserver configured", s.refs["p256"], s.env(servers=""),
             ["no keyserver configured", "KEYWAY_SERVERS"])
        sign("malformed setting", s.refs["p256"], s.env(KEYWAY_TIMEOUT_MS="soon"),
                   ["configuration error", "KEYWAY_TIMEOUT_MS", "soon"])
        sign("malformed polling setting", s.refs["p256"], s.env(KEYWAY_POLLING="sometimes"),
             ["configuration error", "KEYWAY_POLLING", "sometimes"])
        sign("unreadable client key", s.refs["p256"],
             s.env(KEYWAY_CLIENT_KEY=os.path.join(tmp, "missing.key")),
             ["configuration error", "missing.key"])

        # Failover: the dead keyserver first, the live one second.
        sign("dead keyserver listed before a live one", s.refs["rsa2048"],
             s.env(servers=dead + "," + s.server()), [], ok=True)


if __name__ == "__main__":
    kwtest.run_main("provider_errors", body)
