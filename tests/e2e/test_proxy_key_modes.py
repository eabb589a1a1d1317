"""keyway-proxy refuses private-key files readable by group or others at
start-up, before any network I/O: a local --key, --client-key and
KEYWAY_CLIENT_KEY, each at mode 0644, exit 1 with a message naming the file
and the fix; --allow-group-readable-keys accepts them. A keyway: URI and
certificates are public and never checked.
"""

import os
import shutil
import signal
import subprocess
import tempfile

import kwprov
from kwproxy import PROXY, Checker, Proxy, free_port, https_get, make_cert, skip_without_proxy, \
    wait_for

skip_without_proxy()
c = Checker()
tmp = tempfile.mkdtemp(prefix="kw-proxy-modes-")


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYWAY_")}
    env.update(extra)
    return env


def shared_copy(path):
    """A copy of path at mode 0644."""
    out = os.path.join(tmp, "shared-" + os.path.basename(path))
    shutil.copyfile(path, out)
    os.chmod(out, 0o644)
    return out


def refused(what, key, crt, args, env, name):
    port = free_port()
    r = subprocess.run([PROXY, "--listen", "127.0.0.1:%d" % port, "--cert", crt, "--key", key,
                        "--respond", *args], env=env, capture_output=True, timeout=20)
    err = r.stderr.decode()
    c.eq(r.returncode, 1, what + ": exit 1")
    c.check(name in err and "chmod 600 " + name in err and
            "--allow-group-readable-keys" in err, what + ": names the file and the fix",
            err.strip())


key, crt = make_cert(tmp, "local", "ec")
refused("local --key 0644", shared_copy(key), crt, [], clean_env(), shared_copy(key))
with Proxy(shared_copy(key), crt, "--allow-group-readable-keys", env=clean_env()) as p:
    c.eq(https_get(p.port, crt)[0], 200, "local --key 0644 with --allow-group-readable-keys")
    c.eq(p.stop(), 0, "clean exit")

# A reload reads the key again and checks the mode on what it reads.
private = os.path.join(tmp, "reloaded.key")
shutil.copyfile(key, private)
os.chmod(private, 0o600)
with Proxy(private, crt, env=clean_env()) as p:
    os.chmod(private, 0o644)
    p.proc.send_signal(signal.SIGHUP)
    c.check(wait_for(lambda: "reload failed" in p.stderr(), 10) and
            "chmod 600 " + private in p.stderr(),
            "SIGHUP with the --key now 0644: reload refused, naming the file", p.stderr()[-400:])
    c.eq(https_get(p.port, crt)[0], 200, "the certificates in use keep serving")
    c.eq(p.stop(), 0, "clean exit")

with kwprov.Setup(tmp, names=("p256",)) as s:
    ca = s.pki.ca_file
    ck = shared_copy(s.pki.client_key_file)
    base = ["--servers", s.server(), "--ca", ca, "--client-cert", s.pki.client_cert_file]
    refused("--client-key 0644", s.uris["p256"], s.certs["p256"], base + ["--client-key", ck],
            clean_env(), ck)
    refused("KEYWAY_CLIENT_KEY 0644", s.uris["p256"], s.certs["p256"], base,
            clean_env(KEYWAY_CLIENT_KEY=ck), ck)
    with Proxy(s.uris["p256"], s.certs["p256"], *base, "--client-key", ck,
               "--allow-group-readable-keys", env=clean_env()) as p:
        c.eq(https_get(p.port, ca)[0], 200,
             "--client-key 0644 with --allow-group-readable-keys: a keyless handshake")
        c.eq(p.stop(), 0, "clean exit")

shutil.rmtree(tmp, ignore_errors=True)
c.done()
