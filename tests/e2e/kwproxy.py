"""Helpers for the keyway-proxy end-to-end tests (standard library only).

KEYWAY_PROXY names the binary; without it the tests are skipped (exit 77).
Keys and certificates are made with the openssl command, so they are
independent of the code under test.
"""

import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import urllib.request

import kwharness

PROXY = os.environ.get("KEYWAY_PROXY")
TIMEOUT = 20.0


Checker = kwharness.Checker


def skip_without_proxy():
    if not PROXY or not os.path.exists(PROXY):
        kwharness.skip("KEYWAY_PROXY is not set")


def make_cert(dir, name, kind):
    """Writes dir/name.key and dir/name.crt (self-signed, CN=localhost)."""
    key, crt = os.path.join(dir, name + ".key"), os.path.join(dir, name + ".crt")
    newkey = {"rsa": ["-newkey", "rsa:2048"],
              "rsa4096": ["-newkey", "rsa:4096"],
              "ec": ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
              "ed25519": ["-newkey", "ed25519"]}[kind]
    subprocess.run(["openssl", "req", "-x509", *newkey, "-nodes", "-keyout", key, "-out", crt,
                    "-days", "2", "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return key, crt


free_port = kwharness.free_port


class Proxy(kwharness.Process):
    """A running keyway-proxy on free loopback ports, with its stderr in a file."""

    def __init__(self, key, crt, *args, metrics=True, expect_start=True, env=None, mode=None,
                 host="127.0.0.1"):
        """mode: the mode flags (default ["--respond"]; e.g. ["--upstream", "127.0.0.1:N"]);
        host: the listener's address (127.0.0.1 or ::1)."""
        listen = "[%s]:%%d" % host if ":" in host else host + ":%d"
        for attempt in range(5):
            self.port = free_port(host)
            self.mport = free_port() if metrics else None
            cmd = [PROXY, "--listen", listen % self.port, "--cert", crt, "--key", key,
                   *(["--respond"] if mode is None else mode), *args]
            if metrics:
                cmd += ["--metrics", "127.0.0.1:%d" % self.mport]
            super().__init__(cmd, env=env, stop_timeout=TIMEOUT)
            self.start()
            if not expect_start:
                return
            if self.wait_ready(lambda: "listening on" in self.stderr(), TIMEOUT):
                return
            self.kill()  # a port taken in between: try others
        raise RuntimeError("keyway-proxy did not start:\n" + self.stderr())

    def stderr(self):
        return self.log_text()

    def metrics(self):
        """The /metrics samples as {"name{labels}": value}."""
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.mport,
                                    timeout=TIMEOUT) as r:
            text = r.read().decode()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out

    def stop(self):
        """SIGTERM, then the exit status (None if it had to be killed)."""
        rc = super().stop()
        return None if self.term_sent and rc == -signal.SIGKILL else rc

    def __exit__(self, *exc):
        self.kill()


def client_context(crt):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(crt)
    return ctx


def tls_connect(port, crt, timeout=TIMEOUT):
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return client_context(crt).wrap_socket(raw, server_hostname="localhost")


def read_response(sock, buf=b""):
    """Reads one HTTP response; returns (status, headers dict, body, leftover bytes)."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed before a response head")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, v = line.split(":", 1)
        headers[k.strip().lower()] = v.strip()
    n = int(headers.get("content-length", "0"))
    while len(rest) < n:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed inside a body")
        rest += chunk
    return status, headers, rest[:n], rest[n:]


def closed_by_peer(sock, timeout=5.0):
    """True when the peer closes (EOF, close_notify or reset) within timeout."""
    sock.settimeout(timeout)
    try:
        while True:
            if not sock.recv(65536):
                return True
    except (ssl.SSLError, ConnectionError, OSError) as e:
        return not isinstance(e, socket.timeout)


def https_get(port, crt, path="/", extra=b""):
    with tls_connect(port, crt) as s:
        s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: localhost\r\n" + extra +
                  b"Connection: close\r\n\r\n")
        status, headers, body, _ = read_response(s)
        return status, headers, body


def run(cmd, timeout=TIMEOUT, input=None):
    return subprocess.run(cmd, capture_output=True, timeout=timeout, input=input)


def label_value(metrics, name):
    return metrics.get(name, -1)


def wait_for(cond, timeout=10.0):
    return bool(kwharness.wait_until(cond, timeout, 0.05))


def grep(pattern, text):
    return re.search(pattern, text) is not None


def concurrent_gets(port, ca, clients, each):
    """clients threads each make `each` one-request connections; returns the errors seen."""
    errors = []

    def one():
        for _ in range(each):
            try:
                st, _, body = https_get(port, ca)
                if st != 200 or body != b"ok\n":
                    errors.append(st)
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))
    ts = [threading.Thread(target=one) for _ in range(clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    return errors
