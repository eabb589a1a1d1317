"""keyway provider across fork(): the parent signs (its I/O thread and a
keyserver connection now exist), then forks; each child must sign with a
thread and connection of its own, after closing (without writing to them)
every descriptor of the parent's provider I/O it inherited, and the parent
must go on signing on the connection it had. The
driver (provider_fork.c, KEYWAY_FORK_DRIVER) loads keyway.so like any
OpenSSL program; the build makes it with the other drivers.
"""

import os
import subprocess

import kwharness
import kwprov
import kwtest


def body(c):
    exe = os.environ.get("KEYWAY_FORK_DRIVER")
    if not exe or not os.access(exe, os.X_OK):
        kwprov.skip("KEYWAY_FORK_DRIVER not set (got %r)" % exe)
    with kwtest.TempDir("kw-prov-fork-") as tmp, \
            kwprov.Setup(tmp, names=("rsa2048", "p256"), unix=True) as s:
        for name in ("rsa2048", "p256"):
            for servers, how in ((s.server(), "TCP + mutual TLS"),
                                 ("unix:" + s.kd.unix_path, "Unix socket")):
                p = subprocess.run([exe, s.prov_dir, s.refs[name], s.certs[name]],
                                   capture_output=True, text=True, timeout=90,
                                   env=kwharness.own_program_env(s.env(servers=servers)))
                kwharness.note_output("provider_fork", p.stderr, p.returncode)
                lines = [l for l in p.stdout.splitlines() if l.startswith(("ok", "FAIL"))]
                c.check(p.returncode == 0 and len(lines) == 11 and
                        all(l.startswith("ok") for l in lines),
                        "%s over %s: parent, two forked children (holding none of the "
                        "parent's provider descriptors), parent again all sign on "
                        "its connection" % (
                            name, how), p.stdout[-1500:] + p.stderr[-800:])


if __name__ == "__main__":
    kwtest.run_main("provider_fork", body)
