"""keyway-proxy with several certificates: --cert/--key pairs (a local EC
key, a local RSA key and a key only keywayd holds), SNI choosing among them
with the first as the default, the ALPN list, and SIGHUP swapping a
certificate for new connections while an open one keeps working -- and a
broken file at reload keeping the old set. Then, with --upstream, SIGHUP
in the middle of a 32 MiB transfer: the transfer finishes intact on the
old certificate while new connections get the new one.
"""

import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time

from cryptography import x509

import kwprov
from kwproxy import Checker, Proxy, read_response, skip_without_proxy
from kwrelay import Upstream, pattern, sha256

skip_without_proxy()
c = Checker()
tmp = tempfile.mkdtemp(prefix="kw-proxy-certs-")


def self_signed(name, kind, days=2):
    """name.key/name.crt made by the openssl command (independent of the proxy)."""
    key, crt = os.path.join(tmp, name + ".key"), os.path.join(tmp, name + ".crt")
    newkey = {"rsa": ["-newkey", "rsa:2048"],
              "ec": ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]}[kind]
    subprocess.run(["openssl", "req", "-x509", *newkey, "-nodes", "-keyout", key, "-out", crt,
                    "-days", str(days), "-subj", "/CN=" + name, "-addext",
                    "subjectAltName=DNS:" + name], check=True, capture_output=True, timeout=60)
    os.chmod(key, 0o600)
    return key, crt


def connect(port, sni, alpn=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    raw = socket.create_connection(("127.0.0.1", port), timeout=20)
    return ctx.wrap_socket(raw, server_hostname=sni)


def served(port, sni, alpn=None):
    """(subject CN, serial, negotiated ALPN) of the certificate the proxy chose for sni."""
    with connect(port, sni, alpn) as s:
        cert = x509.load_der_x509_certificate(s.getpeercert(binary_form=True))
        cn = cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)[0].value
        return cn, cert.serial_number, s.selected_alpn_protocol()


def request(s):
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    st, _, body, _ = read_response(s)
    return st == 200 and body == b"ok\n"


with kwprov.Setup(os.path.join(tmp, "kw"), names=("p256",)) as setup:
    dkey, dcrt = self_signed("default.test", "ec")
    akey, acrt = self_signed("a.test", "rsa")
    # b.test's key lives only in keywayd; the proxy gets its reference PEM.
    bcrt = os.path.join(tmp, "b.test.crt")
    subprocess.run(["openssl", "req", "-x509", "-key", setup.keys["p256"].path, "-out", bcrt,
                    "-days", "2", "-subj", "/CN=b.test", "-addext", "subjectAltName=DNS:b.test"],
                   check=True, capture_output=True, timeout=60)
    ref = setup.run_cli(["ref", "--cert", bcrt])
    c.check(ref.returncode == 0, "keyway ref for b.test", ref.stderr)
    bref = os.path.join(tmp, "b.test.ref.pem")
    with open(bref, "w") as f:
        f.write(ref.stdout)

    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYWAY_")}
    args = ["--cert", acrt, "--key", akey, "--cert", bcrt, "--key", bref,
            "--servers", setup.server(), "--ca", setup.pki.ca_file,
            "--client-cert", setup.pki.client_cert_file,
            "--client-key", setup.pki.client_key_file,
            "--alpn", "x-test,http/1.1", "--workers", "2"]
    with Proxy(dkey, dcrt, *args, env=env) as p:
        c.eq(served(p.port, "a.test")[0], "a.test", "SNI a.test: its certificate (local RSA key)")
        c.eq(served(p.port, "b.test")[0], "b.test",
             "SNI b.test: its certificate (key held by keywayd)")
        c.eq(served(p.port, "default.test")[0], "default.test", "SNI default.test: the first pair")
        c.eq(served(p.port, "unknown.test")[0], "default.test", "unknown SNI: the default")
        c.eq(served(p.port, "a.test", ["h2", "http/1.1"])[2], "http/1.1",
             "ALPN: http/1.1 chosen from h2,http/1.1")
        c.eq(served(p.port, "a.test", ["x-test", "http/1.1"])[2], "x-test",
             "ALPN: the proxy's preference order")
        c.eq(served(p.port, "a.test", ["h2"])[2], None, "ALPN: nothing in common, no ALPN")

        # SIGHUP with a new a.test certificate: an open connection keeps working.
        old_serial = served(p.port, "a.test")[1]
        held = connect(p.port, "a.test")
        c.check(request(held), "keep-alive connection before the reload")
        shutil.copy(acrt, acrt + ".old")
        shutil.copy(akey, akey + ".old")
        self_signed("a.test", "ec")  # rewrites a.test.key/.crt in place
        p.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "reloaded" not in p.stderr():
            time.sleep(0.05)
        c.check("reloaded 3 certificates" in p.stderr(), "SIGHUP logged", p.stderr()[-500:])
        new = served(p.port, "a.test")
        c.check(new[0] == "a.test" and new[1] != old_serial, "after SIGHUP: the new certificate")
        c.check(request(held), "the connection opened before SIGHUP still answers")
        held.close()

        # A broken file at reload keeps the set in use.
        with open(acrt, "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
        p.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "reload failed" not in p.stderr():
            time.sleep(0.05)
        log = p.stderr()
        c.check("reload failed" in log and acrt in log, "bad file at SIGHUP: logged with the file",
                log[-500:])
        c.eq(served(p.port, "a.test")[1], new[1], "bad file at SIGHUP: the previous set stays")
        c.check(p.alive(), "bad file at SIGHUP: proxy alive")
        c.eq(p.stop(), 0, "clean exit")

    # Pairs are checked at start-up.
    p = Proxy(dkey, dcrt, "--cert", acrt, expect_start=False, env=env)
    rc = p.proc.wait(timeout=20)
    c.check(rc == 2 and "in pairs" in p.stderr(), "--cert without its --key: start-up error",
            p.stderr())

# SIGHUP while a long transfer runs through --upstream.
SIZE = 32 << 20
blob = pattern(11, SIZE)


def stream(conn, i):
    try:
        conn.sendall(blob)
    except (BrokenPipeError, ConnectionResetError):
        return  # a handshake-only probe (served()) closed at once: expected
    conn.shutdown(socket.SHUT_WR)
    conn.settimeout(30)
    conn.recv(1)  # until the proxy closes


up = Upstream(stream)
ckey, ccrt = self_signed("c.test", "ec")
with Proxy(ckey, ccrt, "--workers", "2", "--access-log", "off",
           mode=["--upstream", "127.0.0.1:%d" % up.port]) as p:
    first = served(p.port, "c.test")[1]
    s = connect(p.port, "c.test")
    got, reloaded = bytearray(), False
    while True:
        d = s.recv(65536)
        if not d:
            break
        got.extend(d)
        if not reloaded and len(got) >= (4 << 20):
            self_signed("c.test", "ec")  # a new certificate and key, same paths
            p.proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and "reloaded" not in p.stderr():
                time.sleep(0.05)
            c.check(served(p.port, "c.test")[1] != first,
                    "mid-transfer SIGHUP: new connections get the new certificate")
            reloaded = True
    s.close()
    c.check(reloaded and len(got) == SIZE and sha256(bytes(got)) == sha256(blob),
            "mid-transfer SIGHUP: the 32 MiB transfer finished intact", len(got))
    c.eq(p.stop(), 0, "upstream mode: clean exit")
up.close()
c.check(not up.errors, "upstream handler without error", up.errors)

shutil.rmtree(tmp, ignore_errors=True)
c.done()
