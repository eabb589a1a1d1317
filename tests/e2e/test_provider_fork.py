"""keyway provider across fork(): the parent signs (its I/O thread and a
keyserver connection now exist), then forks; each child must sign with a
thread and connection of its own, and the parent must go on signing. The
helper (provider_fork.c) is built here with cc against the system OpenSSL.
"""

import os
import shutil
import subprocess

import kwprov
import kwtest


def body(c):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        kwprov.skip("no C compiler")
    with kwtest.TempDir("kw-prov-fork-") as tmp, \
            kwprov.Setup(tmp, names=("rsa2048", "p256"), unix=True) as s:
        exe = os.path.join(tmp, "provider_fork")
        src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "provider_fork.c")
        b = subprocess.run([cc, "-O1", "-o", exe, src, "-lcrypto"], capture_output=True,
                           text=True, timeout=120)
        if not c.check(b.returncode == 0, "helper builds", b.stderr[-800:]):
            return
        for name in ("rsa2048", "p256"):
            for servers, how in ((s.server(), "TCP + mutual TLS"),
                                 ("unix:" + s.kd.unix_path, "Unix socket")):
                p = subprocess.run([exe, s.prov_dir, s.refs[name], s.certs[name]],
                                   capture_output=True, text=True, timeout=90,
                                   env=s.env(servers=servers))
                lines = [l for l in p.stdout.splitlines() if l.startswith(("ok", "FAIL"))]
                c.check(p.returncode == 0 and len(lines) == 7 and
                        all(l.startswith("ok") for l in lines),
                        "%s over %s: parent, two forked children, parent again all sign" % (
                            name, how), p.stdout[-1500:] + p.stderr[-800:])


if __name__ == "__main__":
    kwtest.run_main("provider_fork", body)
