"""Helpers for keyway-proxy's --upstream tests (standard library only): an
upstream server made of threads, a TLS client driven through memory BIOs
(so it can half-close, read slowly and stop reading), an independent PROXY
protocol v2 parser and an access-log parser.
"""

import hashlib
import random
import selectors
import socket
import ssl
import struct
import threading
import time

from kwproxy import client_context

PP2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def pattern(seed, n):
    """n deterministic pseudo-random bytes."""
    return random.Random(seed).randbytes(n)


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("closed after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return buf


def read_to_eof(sock, bufsize=65536):
    """Everything sock receives until the peer closes its side."""
    data = b""
    while True:
        d = sock.recv(bufsize)
        if not d:
            return data
        data += d


def parse_pp2(sock):
    """Reads and parses a PROXY v2 header from sock, written from the spec, not the code."""
    head = recv_exact(sock, 16)
    if head[:12] != PP2_SIG:
        raise ValueError("no PROXY v2 signature: %r" % head)
    out = {"ver_cmd": head[12], "fam": head[13]}
    body = recv_exact(sock, struct.unpack("!H", head[14:16])[0])
    if out["fam"] == 0x11:
        src, dst, sport, dport = struct.unpack("!4s4sHH", body[:12])
        out["src"] = (socket.inet_ntop(socket.AF_INET, src), sport)
        out["dst"] = (socket.inet_ntop(socket.AF_INET, dst), dport)
        rest = body[12:]
    elif out["fam"] == 0x21:
        src, dst, sport, dport = struct.unpack("!16s16sHH", body[:36])
        out["src"] = (socket.inet_ntop(socket.AF_INET6, src), sport)
        out["dst"] = (socket.inet_ntop(socket.AF_INET6, dst), dport)
        rest = body[36:]
    else:
        rest = body
    out["tlvs"] = parse_tlvs(rest)
    ssl_tlv = out["tlvs"].get(0x20)
    if ssl_tlv is not None:
        out["ssl_client"] = ssl_tlv[0]
        out["ssl_verify"] = struct.unpack("!I", ssl_tlv[1:5])[0]
        out["ssl_sub"] = parse_tlvs(ssl_tlv[5:])
    return out


def parse_tlvs(b):
    tlvs, i = {}, 0
    while i < len(b):
        if i + 3 > len(b):
            raise ValueError("truncated TLV")
        t, n = b[i], struct.unpack("!H", b[i + 1:i + 3])[0]
        if i + 3 + n > len(b):
            raise ValueError("TLV longer than the header")
        tlvs[t] = b[i + 3:i + 3 + n]
        i += 3 + n
    return tlvs


class Upstream:
    """A server on host (127.0.0.1, ::1 or unix:/path); handler(conn, index) runs in a
    thread per connection. addr is what --upstream takes."""

    def __init__(self, handler, rcvbuf=None, host="127.0.0.1"):
        if host.startswith("unix:"):
            self.lsock = socket.socket(socket.AF_UNIX)
        else:
            self.lsock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        if rcvbuf:
            self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.lsock.bind(host[5:] if host.startswith("unix:") else (host, 0))
        self.lsock.listen(128)
        self.port = None if host.startswith("unix:") else self.lsock.getsockname()[1]
        self.addr = host if host.startswith("unix:") else "%s:%d" % (
            "[%s]" % host if ":" in host else host, self.port)
        self.handler = handler
        self.threads, self.errors, self.count = [], [], 0
        self.stop = False
        self.t = threading.Thread(target=self._accept, daemon=True)
        self.t.start()

    def _accept(self):
        while not self.stop:
            try:
                conn, _ = self.lsock.accept()
            except OSError:
                return
            i = self.count
            self.count += 1
            t = threading.Thread(target=self._run, args=(conn, i), daemon=True)
            self.threads.append(t)
            t.start()

    def _run(self, conn, i):
        try:
            self.handler(conn, i)
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.errors.append(repr(e))
        finally:
            conn.close()

    def close(self):
        self.stop = True
        self.lsock.close()
        for t in self.threads:
            t.join(30)


class TlsClient:
    """One TLS connection through memory BIOs over a non-blocking socket."""

    def __init__(self, port, crt, sni="localhost", rcvbuf=None):
        self.sock = socket.socket()
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(20)
        self.sock.connect(("127.0.0.1", port))
        self.sock.setblocking(False)
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = client_context(crt).wrap_bio(self.inc, self.out, server_hostname=sni)
        self.raw_out = b""
        self.sock_eof = False
        self.tls_eof = False
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.sock, selectors.EVENT_READ)

    def _pull(self):
        self.raw_out += self.out.read()

    def _io(self, want_read, timeout):
        """One round of socket I/O; returns True if anything moved."""
        self._pull()
        events = (selectors.EVENT_READ if want_read and not self.sock_eof else 0) | \
                 (selectors.EVENT_WRITE if self.raw_out else 0)
        if events == 0:
            time.sleep(timeout)
            return False
        self.sel.modify(self.sock, events)
        moved = False
        for _, ev in self.sel.select(timeout):
            if ev & selectors.EVENT_WRITE and self.raw_out:
                try:
                    n = self.sock.send(self.raw_out)
                    self.raw_out = self.raw_out[n:]
                    moved = True
                except BlockingIOError:
                    pass
            if ev & selectors.EVENT_READ:
                try:
                    data = self.sock.recv(65536)
                except BlockingIOError:
                    continue
                except ConnectionError:
                    data = b""
                if data:
                    self.inc.write(data)
                else:
                    self.sock_eof = True
                    self.inc.write_eof()
                moved = True
        return moved

    def handshake(self, deadline=20.0):
        end = time.time() + deadline
        while time.time() < end:
            try:
                self.obj.do_handshake()
                self._pull()
                return True
            except ssl.SSLWantReadError:
                self._io(True, 0.2)
        return False

    def read_tls(self, limit=1 << 20):
        """Plaintext available now (up to limit), b"" if none; sets tls_eof at the end."""
        out = []
        n = 0
        while n < limit and not self.tls_eof:
            try:
                chunk = self.obj.read(min(65536, limit - n))
            except ssl.SSLWantReadError:
                break
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                self.tls_eof = True
                break
            if not chunk:
                self.tls_eof = True
                break
            out.append(chunk)
            n += len(chunk)
        return b"".join(out)

    def close_notify(self):
        """Half-close: send close_notify, keep reading."""
        self.read_pending = self.read_tls()  # nothing may sit in the BIO during shutdown
        try:
            self.obj.unwrap()
        except ssl.SSLWantReadError:
            pass
        self._pull()

    def close(self):
        self.sel.close()
        self.sock.close()


def transfer(client, send_data, on_data, can_read, raw_budget=256 << 10, stall=None,
             deadline=120.0):
    """Drives client: writes send_data then close_notify, hands received plaintext to
    on_data until the TLS stream ends. can_read() gates reading. stall(moved) is called
    every round and may return True to stop early. Returns True when both ends finished."""
    off, shut = 0, False
    end = time.time() + deadline
    while time.time() < end:
        moved = False
        while off < len(send_data) and len(client.raw_out) + client.out.pending < raw_budget:
            n = client.obj.write(send_data[off:off + 16384])
            off += n
            moved = True
        if off == len(send_data) and not shut:
            pending = client.read_tls()
            if pending:
                on_data(pending)
            client.close_notify()
            if getattr(client, "read_pending", b""):
                on_data(client.read_pending)
            shut = True
            moved = True
        reading = can_read()
        moved |= client._io(reading and not client.tls_eof, 0.05)
        if reading:
            data = client.read_tls()
            if data:
                on_data(data)
                moved = True
        if stall is not None and stall(moved, off):
            return False
        if shut and client.tls_eof and not client.raw_out:
            return True
    return False


def vm_rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def parse_access_log(text):
    """Access lines (key=value ...) as dicts; other log lines are skipped."""
    out = []
    for line in text.splitlines():
        if not line.startswith("time=") or " reason=" not in line:
            continue
        out.append(dict(kv.split("=", 1) for kv in line.split(" ")))
    return out


def sha256(b):
    return hashlib.sha256(b).hexdigest()


def client_hello(crt, sni="localhost"):
    """The bytes of a real ClientHello, made without a socket."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = client_context(crt).wrap_bio(inc, out, server_hostname=sni)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()
