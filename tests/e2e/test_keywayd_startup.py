#!/usr/bin/python3
"""Start-up: bad key files are exit 2 naming the file (group/world-readable
unless --allow-group-readable-keys, encrypted PKCS#8 and traditional PEM,
garbage, unsupported sizes); missing TLS files and key directory are exit 2;
--config FILE (`key = value`, `#` comments) works, flags override it, and a bad
line is exit 2 naming file:line. Files not named *.key are ignored."""

import os
import random
import shutil

import kwtest as kw


def base_args(pki, keys_dir, port):
    return ["--keys", keys_dir, "--listen", "127.0.0.1:%d" % port,
            "--tls-cert", pki.server_cert_file, "--tls-key", pki.server_key_file,
            "--client-ca", pki.ca_file]


def expect_exit2(c, what, args, must_name):
    rc, out = kw.run_keywayd_expect_exit(args, timeout=10)
    c.eq(rc, 2, "%s: exit 2" % what)
    named = [n for n in must_name if n in out]
    c.check(len(named) == len(must_name), "%s: message names %s" % (what, ", ".join(must_name)),
            "output: %r" % out.strip()[-400:])
    return out


def starts(c, what, pki, keys_dir, tmp, extra=(), base=None):
    try:
        with kw.Keywayd(pki, keys_dir, tmp, extra=extra, base_args=base) as kd:
            if kd.port:
                with kd.connect() as cl:
                    return c.check(kw.ping_ok(cl), what)
            return c.check(True, what)
    except kw.KeywaydError as e:
        return c.fail(what, str(e))


def main(c):
    with kw.TempDir() as tmp:
        pki, keys_dir, keys = kw.setup(tmp, ["rsa2048", "p256"])
        port = kw.free_port()
        # Non-key files next to the keys are ignored.
        with open(os.path.join(keys_dir, "README"), "w") as f:
            f.write("not a key\n")
        with open(os.path.join(keys_dir, "cert.pem"), "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nxx\n-----END CERTIFICATE-----\n")
        starts(c, "valid key directory with non-*.key files starts", pki, keys_dir, tmp)

        def with_bad(name, write, extra=(), must_name=None, allow=False):
            """Write one bad file into a copy of the key dir and expect exit 2."""
            d = os.path.join(tmp, "keys-%s" % name.replace(" ", "-"))
            os.makedirs(d)
            for tk in keys.values():
                kw.write_key(os.path.join(d, os.path.basename(tk.path)), tk.key)
            path = write(d)
            expect_exit2(c, name, base_args(pki, d, port) + list(extra),
                         must_name or [os.path.basename(path)])
            return d, path

        k = kw.gen_key("p256")
        d, _ = with_bad("group-readable key (0640)",
                        lambda d: kw.write_key(os.path.join(d, "grp.key"), k, mode=0o640))
        starts(c, "group-readable key accepted with --allow-group-readable-keys", pki, d, tmp,
               extra=["--allow-group-readable-keys"])
        with_bad("world-readable key (0644)",
                 lambda d: kw.write_key(os.path.join(d, "world.key"), k, mode=0o644))
        with_bad("encrypted PKCS#8 key",
                 lambda d: kw.write_key(os.path.join(d, "enc8.key"), k, password=b"secret"))
        with_bad("encrypted traditional PEM key",
                 lambda d: kw.write_key(os.path.join(d, "encpem.key"), kw.gen_key("rsa2048"),
                                        fmt="traditional", password=b"secret"))

        def garbage(d):
            p = os.path.join(d, "garbage.key")
            with open(p, "wb") as f:
                f.write(os.urandom(300))
            os.chmod(p, 0o600)
            return p
        with_bad("garbage *.key file", garbage)
        from cryptography.hazmat.primitives.asymmetric import rsa as _rsa, ec as _ec
        with_bad("RSA-1024 key (too small)",
                 lambda d: kw.write_key(os.path.join(d, "small.key"),
                                        _rsa.generate_private_key(65537, 1024)))
        with_bad("P-224 key (unsupported curve)",
                 lambda d: kw.write_key(os.path.join(d, "p224.key"),
                                        _ec.generate_private_key(_ec.SECP224R1())))
        os.makedirs(os.path.join(tmp, "empty"))
        rc, out = kw.run_keywayd_expect_exit(base_args(pki, os.path.join(tmp, "empty"), port))
        c.eq(rc, 2, "key directory without keys: exit 2")
        missing = os.path.join(tmp, "no-such-dir")
        expect_exit2(c, "missing --keys directory", base_args(pki, missing, port), [missing])
        a = base_args(pki, keys_dir, port)
        a[a.index("--tls-cert") + 1] = os.path.join(tmp, "nocert.pem")
        expect_exit2(c, "missing --tls-cert file", a, ["nocert.pem"])
        a = base_args(pki, keys_dir, port)
        a[a.index("--client-ca") + 1] = os.path.join(tmp, "noca.pem")
        expect_exit2(c, "missing --client-ca file", a, ["noca.pem"])
        a = base_args(pki, keys_dir, port)
        a[a.index("--tls-key") + 1] = pki.client_key_file
        rc, out = kw.run_keywayd_expect_exit(a)
        c.eq(rc, 2, "--tls-key not matching --tls-cert: exit 2")
        # The mode is checked on the descriptor the key is read from: a FIFO (mode 0600,
        # which a stat-then-reopen would block on) is refused at once, not waited on.
        fifo = os.path.join(tmp, "fifo.key")
        os.mkfifo(fifo, 0o600)
        a[a.index("--tls-key") + 1] = fifo
        expect_exit2(c, "--tls-key naming a FIFO", a, [fifo, "not a regular file"])
        shared = os.path.join(tmp, "shared-tls.key")
        shutil.copyfile(pki.server_key_file, shared)
        os.chmod(shared, 0o644)
        a[a.index("--tls-key") + 1] = shared
        expect_exit2(c, "world-readable --tls-key (0644)", a,
                     [shared, "chmod 600", "--allow-group-readable-keys"])
        rc, out = kw.run_keywayd_expect_exit(base_args(pki, keys_dir, port) +
                                             ["--no-such-flag"])
        c.eq(rc, 2, "unknown flag: exit 2")

        # --config
        conf = os.path.join(tmp, "keywayd.conf")
        port_file = kw.free_port()
        with open(conf, "w") as f:
            f.write("# keywayd test configuration\n\n"
                    "keys = %s\nlisten = 127.0.0.1:%d\n"
                    "tls-cert = %s   # trailing comment\ntls-key = %s\nclient-ca = %s\n"
                    "workers = 2\n" % (keys_dir, port_file, pki.server_cert_file,
                                       pki.server_key_file, pki.ca_file))
        kd = kw.Keywayd(pki, keys_dir, tmp, listen=False, base_args=["--config", conf])
        kd.port = port_file
        try:
            with kd:
                with kd.connect() as cl:
                    ok, f = kw.signs_with(cl, keys["rsa2048"])
                    c.check(ok, "--config FILE with keys/listen/TLS settings serves", kw.describe(f))
        except kw.KeywaydError as e:
            c.fail("--config FILE with keys/listen/TLS settings serves", str(e))

        # A symlink planted at the pid file's temporary path is not written through.
        kd = kw.Keywayd(pki, keys_dir, tmp)
        victim = os.path.join(tmp, "victim")
        os.symlink(victim, kd.pid_file + ".tmp")
        try:
            with kd:
                c.check(not os.path.exists(victim) and not os.path.islink(kd.pid_file),
                        "the pid file is written fresh, not through a symlink at its temporary "
                        "path")
        except kw.KeywaydError as e:
            c.fail("keywayd starts although a symlink sits at the pid file's temporary path",
                   str(e))

        port_flag = kw.free_port()
        other_keys = os.path.join(tmp, "other-keys")
        ed = kw.make_keys(other_keys, ["ed25519"])["ed25519"]
        kd = kw.Keywayd(pki, keys_dir, tmp, listen=False,
                        base_args=["--listen", "127.0.0.1:%d" % port_flag, "--config", conf,
                                   "--keys", other_keys])
        kd.port = port_flag
        try:
            with kd:
                with kd.connect() as cl:
                    ok, f = kw.signs_with(cl, ed)
                    c.check(ok, "flags override the file: --listen and --keys from the command "
                            "line (given before and after --config)", kw.describe(f))
                    f = cl.request(kw.OP_RSA_SHA256, bytes(32), ski=keys["rsa2048"].ski)
                    c.eq(f.error, kw.ERR_KEY_NOT_FOUND, "the file's keys directory is not used")
                try:
                    kw.Client.tcp(port_file, pki.client_context(), timeout=2).close()
                    c.fail("the file's listen address is not used")
                except OSError:
                    c.check(True, "the file's listen address is not used")
        except kw.KeywaydError as e:
            c.fail("flags override the file", str(e))

        for bad_line, lineno, what in [("worker = 2", 3, "unknown key"),
                                       ("workers = many", 3, "bad value"),
                                       ("just some words", 3, "line without '='")]:
            bad = os.path.join(tmp, "bad-%d.conf" % random.getrandbits(16))
            with open(bad, "w") as f:
                f.write("# comment\nkeys = %s\n%s\n" % (keys_dir, bad_line))
            out = expect_exit2(c, "config %s (%r)" % (what, bad_line),
                               ["--config", bad, "--listen", "127.0.0.1:%d" % port,
                                "--tls-cert", pki.server_cert_file, "--tls-key",
                                pki.server_key_file, "--client-ca", pki.ca_file],
                               ["%s:%d" % (os.path.basename(bad), lineno)])
        expect_exit2(c, "missing --config file", ["--config", os.path.join(tmp, "nope.conf")],
                     ["nope.conf"])


if __name__ == "__main__":
    kw.run_main("keywayd start-up", main)
