#!/usr/bin/python3
"""A keyless client that sends its requests and then half-closes its TCP
connection without a TLS close_notify still gets every answer: keywayd serves
the complete frames it decrypted before the end of stream, flushes their
answers, and only then closes (issue 12, item 13). Over TLS 1.2 and 1.3."""

import socket
import ssl
import time

import kwtest as kw

# More requests than keywayd answers before its backpressure bound stops it.
NPINGS = 600


def pump_handshake(sock, tls, inc, out):
    """Drive tls's handshake over the raw socket through memory BIOs."""
    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            pass
        data = out.read()
        if data:
            sock.sendall(data)
        chunk = sock.recv(65536)
        if not chunk:
            raise kw.ConnectionClosed("EOF during the handshake")
        inc.write(chunk)
    data = out.read()
    if data:
        sock.sendall(data)


def read_all(sock, tls, inc, timeout):
    """Plaintext received until the server closes (or timeout): (bytes, how it ended)."""
    got = b""
    deadline = time.monotonic() + timeout
    ended = "timeout"
    while time.monotonic() < deadline:
        try:
            while True:
                piece = tls.read(65536)
                if not piece:
                    return got, "close_notify"
                got += piece
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLError as e:
            return got, "TLS error: %s" % e
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except OSError as e:
            return got, "socket error: %s" % e
        if not chunk:
            inc.write_eof()
            ended = "EOF"
            try:
                while True:
                    piece = tls.read(65536)
                    if not piece:
                        break
                    got += piece
            except (ssl.SSLWantReadError, ssl.SSLError):
                pass
            return got, ended
        inc.write(chunk)
    return got, ended


def frames_of(data):
    out = []
    while len(data) >= kw.HEADER_LEN:
        length = int.from_bytes(data[2:4], "big")
        if len(data) < kw.HEADER_LEN + length:
            break
        out.append(kw.Frame(data[:kw.HEADER_LEN + length]))
        data = data[kw.HEADER_LEN + length:]
    return out


def one_run(c, kd, rsa, version, npings, nsigns):
    ctx = kd.pki.client_context(min_version=version, max_version=version)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(inc, out, server_hostname="127.0.0.1")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # A small receive window and no reading until the half-close: keywayd's answers
    # back up, it stops serving (backpressure) with complete frames still buffered,
    # and it reads the end of stream when the client starts reading.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10.0)
    sock.connect(("127.0.0.1", kd.port))
    with sock:
        pump_handshake(sock, tls, inc, out)
        want = {}
        for i in range(npings):
            id = 1000 + i
            payload = b"ping %d" % i
            tls.write(kw.encode(kw.OP_PING, payload, id=id))
            want[id] = (kw.OP_PING, payload)
        for i in range(nsigns):
            id = 2000 + i
            op, payload = kw.sign_request(rsa, msg=b"half-close %d" % i)
            tls.write(kw.encode(op, payload, ski=rsa.ski, id=id))
            want[id] = (op, payload)
        # All requests leave in one write, followed at once by a TCP FIN and no
        # close_notify: the records and the end of stream reach keywayd together.
        sock.sendall(out.read())
        sock.shutdown(socket.SHUT_WR)
        data, ended = read_all(sock, tls, inc, 10.0)

    name = {ssl.TLSVersion.TLSv1_2: "TLS 1.2", ssl.TLSVersion.TLSv1_3: "TLS 1.3"}[version]
    got = frames_of(data)
    ids = set(f.id for f in got)
    c.check(ids == set(want), "%s: an answer to every request sent before the half-close" % name,
            "%d of %d answered, %d unexpected ids" % (len(ids & set(want)), len(want),
                                                      len(ids - set(want))))
    for f in got:
        op, payload = want.get(f.id, (None, None))
        if op == kw.OP_PING:
            c.check(f.opcode == kw.OP_PONG and f.payload == payload,
                    "%s: pong %d echoes its payload" % (name, f.id), kw.describe(f))
        elif op is not None:
            why = kw.verify_sig(rsa, op, payload, f.payload) if f.opcode == kw.OP_RESPONSE \
                else kw.describe(f)
            c.check(why is None, "%s: signature %d verifies" % (name, f.id), why or "")
    c.check(ended in ("close_notify", "EOF"),
            "%s: keywayd closes the connection after answering" % name, ended)


def main(c):
    with kw.TempDir() as tmp:
        pki, keys_dir, keys = kw.setup(tmp, ["rsa2048"])
        rsa = keys["rsa2048"]
        with kw.Keywayd(pki, keys_dir, tmp, workers=1, extra=["--max-inflight", "4"]) as kd:
            for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
                one_run(c, kd, rsa, version, npings=NPINGS, nsigns=3)
            with kd.connect() as other:
                c.check(kw.ping_ok(other), "keywayd still answers a normal client")
        c.eq(kd.returncode, 0, "keywayd exits 0 on SIGTERM")


if __name__ == "__main__":
    kw.run_main("keywayd answers a client that half-closes without close_notify", main)
