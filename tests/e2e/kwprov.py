"""kwprov - helpers for the keyway provider's end-to-end tests.

A Setup holds a PKI (kwtest.PKI), keys served by a keywayd on 127.0.0.1,
a certificate for each key signed by the test CA, and for each key its
KEYWAY KEY reference PEM (made by `keyway ref`) and its keyway: URI. It
runs the stock `openssl` command with the provider loaded from the build
tree (-provider-path) and the KEYWAY_* settings in the environment.

Environment: KEYWAY_PROVIDER_DIR (the directory of keyway.so), KEYWAY_CLI,
KEYWAYD. Without the first two the tests skip (exit 77).

When keyway.so is built with AddressSanitizer, the processes that load it
(openssl, nginx) get the sanitizer runtime preloaded and leak checks off:
they are not ours to hold to that.
"""

import os
import re
import shutil
import subprocess

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding

import kwharness
import kwtest

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"


skip = kwharness.skip


def provider_dir():
    d = os.environ.get("KEYWAY_PROVIDER_DIR")
    if not d or not os.path.isfile(os.path.join(d, "keyway.so")):
        skip("KEYWAY_PROVIDER_DIR does not hold keyway.so (got %r)" % d)
    return d


def cli():
    c = os.environ.get("KEYWAY_CLI")
    if not c or not os.access(c, os.X_OK):
        skip("KEYWAY_CLI not set (got %r)" % c)
    return c


sanitizer_env = kwharness.sanitizer_env
free_port = kwharness.free_port


class Setup:
    """keywayd + keys + certificates + references. Use as a context manager."""

    def __init__(self, tmp, names=("rsa2048", "p256", "p384", "ed25519"), unix=False):
        self.tmp = tmp
        self.prov_dir = provider_dir()
        self.cli = cli()
        self.pki = kwtest.PKI(os.path.join(tmp, "pki"))
        self.keys = kwtest.make_keys(os.path.join(tmp, "keys"), names)
        self.certs, self.refs, self.uris, self.pubs = {}, {}, {}, {}
        os.makedirs(os.path.join(tmp, "certs"), exist_ok=True)
        for n, tk in self.keys.items():
            _, cert = kwtest.make_leaf(self.pki.ca_key, self.pki.ca, "localhost", True, key=tk.key)
            self.certs[n] = kwtest.write_cert(os.path.join(tmp, "certs", n + ".crt"), cert)
            self.pubs[n] = os.path.join(tmp, "certs", n + ".pub")
            with open(self.pubs[n], "wb") as f:
                f.write(tk.pub.public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo))
            self.refs[n] = os.path.join(tmp, "certs", n + ".ref.pem")
            out = self.run_cli(["ref", "--cert", self.certs[n]])
            if out.returncode != 0:
                raise RuntimeError("keyway ref failed: " + out.stderr)
            with open(self.refs[n], "w") as f:
                f.write(out.stdout)
            self.uris[n] = "keyway:ski=%s;cert=%s" % (tk.ski.hex(), os.path.abspath(self.certs[n]))
        self.kd = kwtest.Keywayd(self.pki, os.path.join(tmp, "keys"), tmp, unix=unix)
        self.timeout_ms = 2000

    def __enter__(self):
        self.kd.start()
        return self

    def __exit__(self, *exc):
        self.kd.stop()

    def run_cli(self, args, env=None, timeout=30):
        return subprocess.run([self.cli] + args, capture_output=True, text=True, timeout=timeout,
                              env=env if env is not None else os.environ.copy())

    def server(self):
        return "127.0.0.1:%d" % self.kd.port

    def env(self, servers=None, **over):
        """The environment of a process using the provider: KEYWAY_* settings, sanitizer runtime."""
        e = os.environ.copy()
        for k in list(e):
            if k.startswith("KEYWAY_") and k not in ("KEYWAY_PROVIDER_DIR", "KEYWAY_CLI"):
                del e[k]
        e.update({
            "KEYWAY_SERVERS": servers if servers is not None else self.server(),
            "KEYWAY_CA": self.pki.ca_file,
            "KEYWAY_CLIENT_CERT": self.pki.client_cert_file,
            "KEYWAY_CLIENT_KEY": self.pki.client_key_file,
            "KEYWAY_TIMEOUT_MS": str(self.timeout_ms),
        })
        e.update(sanitizer_env(os.path.join(self.prov_dir, "keyway.so")))
        for k, v in over.items():
            if v is None:
                e.pop(k, None)
            else:
                e[k] = v
        return e

    def provider_args(self):
        return ["-provider-path", self.prov_dir, "-provider", "keyway", "-provider", "default"]

    def openssl(self, args, env=None, stdin=None, timeout=30):
        """Runs openssl CMD <provider args> ARGS...; returns CompletedProcess (bytes)."""
        cmd = [OPENSSL, args[0]] + self.provider_args() + list(args[1:])
        return subprocess.run(cmd, capture_output=True, input=stdin, timeout=timeout,
                              env=env if env is not None else self.env())


# --------------------------------------------------------------------------
# Verifying signatures independently (python3-cryptography).

HASHES = {"sha1": hashes.SHA1, "sha256": hashes.SHA256, "sha384": hashes.SHA384,
          "sha512": hashes.SHA512}


def verify(tk, sig, data, hname=None, pss=False, prehashed=False):
    """True if sig is tk's signature over data (a digest when prehashed)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import utils
    try:
        if tk.kind == "ed25519":
            tk.pub.verify(sig, data)
            return True
        h = HASHES[hname]()
        alg = utils.Prehashed(h) if prehashed else h
        if tk.kind == "ec":
            tk.pub.verify(sig, data, ec.ECDSA(alg))
        elif pss:
            tk.pub.verify(sig, data, padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size),
                          alg)
        else:
            tk.pub.verify(sig, data, padding.PKCS1v15(), alg)
        return True
    except InvalidSignature:
        return False


# --------------------------------------------------------------------------
# openssl s_server / s_client.

class SServer(kwharness.Process):
    """openssl s_server -www with a keyway key, on a free port, for n connections."""

    def __init__(self, setup, key, cert, extra=(), env=None, naccept=1):
        self.port = free_port()
        self.setup = setup
        cmd = [OPENSSL, "s_server"] + setup.provider_args() + [
            "-accept", "127.0.0.1:%d" % self.port, "-key", key, "-cert", cert,
            "-naccept", str(naccept), "-www"] + list(extra)
        super().__init__(cmd, env=env if env is not None else setup.env(),
                         log=os.path.join(setup.tmp, "s_server-%d.log" % self.port),
                         stop_timeout=5.0)
        self.start()

    def wait_ready(self, timeout=10.0):
        """s_server prints ACCEPT once it listens (a probe connection would count as one)."""
        return super().wait_ready(lambda: "ACCEPT" in self.output(), timeout)

    def output(self):
        return self.log_text()

    def stop(self):
        """s_server is not ours: its exit code is not held to 0 (a sanitizer report is)."""
        if self.alive():
            self.proc.terminate()
            if self.wait(self.stop_timeout) is None:
                self.proc.kill()
                self.wait(5)
        self.note(killed=True)
        return self.returncode


def s_client(setup, port, args=(), timeout=20):
    """One HTTP/1.0 GET through openssl s_client; returns (rc, output text)."""
    cmd = [OPENSSL, "s_client", "-connect", "127.0.0.1:%d" % port, "-CAfile", setup.pki.ca_file,
           "-verify_return_error", "-servername", "localhost", "-ign_eof"] + list(args)
    p = subprocess.run(cmd, input=b"GET / HTTP/1.0\r\n\r\n", capture_output=True, timeout=timeout)
    return p.returncode, (p.stdout + p.stderr).decode("utf-8", "replace")


def first(pattern, text):
    m = re.search(pattern, text)
    return m.group(1) if m else None


# --------------------------------------------------------------------------
# KEYWAY_STATS_FILE and keyway-relay.

def read_stats(path):
    """The counters the provider wrote to KEYWAY_STATS_FILE, as a dict."""
    out = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                k, _, v = line.strip().partition(" ")
                if v.isdigit():
                    out[k] = int(v)
    return out


STATS_NAMES = ["ops_submitted", "pauses", "spurious_resumes", "eagain", "fd_wakeups",
               "callback_wakeups", "eventfds_created", "retries", "failovers", "fallbacks"]


class Relay(kwharness.Process):
    """keyway-relay from a free port to target, delay_ms each way."""

    def __init__(self, target, delay_ms):
        self.port = free_port()
        exe = os.environ.get("KEYWAY_RELAY")
        if not exe:
            skip("KEYWAY_RELAY not set")
        super().__init__([exe, "--listen", "127.0.0.1:%d" % self.port, "--to", target,
                          "--delay-ms", str(delay_ms), "--log-level", "warn"])
        self.start()
        if not self.wait_ready(lambda: kwharness.accepts(self.port), 10):
            self.stop()
            raise RuntimeError("keyway-relay did not start")

    def addr(self):
        return "127.0.0.1:%d" % self.port
