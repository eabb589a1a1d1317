"""kwtest - helpers for keywayd's end-to-end tests.

An independent keyless client: the wire format (header, items, padding) is
written here from the protocol description, not taken from Keyway's C codec,
so these tests check keywayd against the spec rather than against itself.
Only the Python standard library and python3-cryptography are used.

Also: a demo PKI and key set, free ports, and a context manager that runs
keywayd. Everything is bounded in time: sockets have timeouts and every wait
on a process has a deadline.
"""

import hashlib
import ipaddress
import os
import select
import socket
import ssl
import struct
import sys
import time
import datetime

import kwharness

from cryptography import x509
from cryptography.x509.oid import NameOID, ExtendedKeyUsageOID
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa, ec, ed25519, padding, utils

# --------------------------------------------------------------------------
# Protocol constants (gokeyless v1.17.6)

MAJOR = 0x01
MINOR = 0x00
HEADER_LEN = 8
PADDED_LEN = 1024

TAG_DIGEST = 0x01
TAG_SNI = 0x02
TAG_CLIENT_IP = 0x03
TAG_SKI = 0x04
TAG_SERVER_IP = 0x05
TAG_CERT_ID = 0x06
TAG_OPCODE = 0x11
TAG_PAYLOAD = 0x12
TAG_CUSTOM_FUNC = 0x13
TAG_EXTRA = 0x14
TAG_JAEGER = 0x15
TAG_REQ_CONTEXT = 0x16
TAG_COMPLIANCE = 0x17
TAG_PADDING = 0x20

OP_RSA_DECRYPT = 0x01
OP_RSA_MD5SHA1 = 0x02
OP_RSA_SHA1 = 0x03
OP_RSA_SHA224 = 0x04
OP_RSA_SHA256 = 0x05
OP_RSA_SHA384 = 0x06
OP_RSA_SHA512 = 0x07
OP_RSA_DECRYPT_RAW = 0x08
OP_ECDSA_MD5SHA1 = 0x12
OP_ECDSA_SHA1 = 0x13
OP_ECDSA_SHA224 = 0x14
OP_ECDSA_SHA256 = 0x15
OP_ECDSA_SHA384 = 0x16
OP_ECDSA_SHA512 = 0x17
OP_ED25519 = 0x18
OP_SEAL = 0x21
OP_UNSEAL = 0x22
OP_RPC = 0x23
OP_CUSTOM = 0x24
OP_RSA_PSS_SHA256 = 0x35
OP_RSA_PSS_SHA384 = 0x36
OP_RSA_PSS_SHA512 = 0x37
OP_RESPONSE = 0xF0
OP_PING = 0xF1
OP_PONG = 0xF2
OP_ACTIVATE = 0xF3
OP_ERROR = 0xFF

ERR_CRYPTO = 0x01
ERR_KEY_NOT_FOUND = 0x02
ERR_VERSION_MISMATCH = 0x04
ERR_BAD_OPCODE = 0x05
ERR_UNEXPECTED_OPCODE = 0x06
ERR_INTERNAL = 0x08

# Go constant names, as keyless_requests{opcode=...} uses them.
OP_NAMES = {
    0x01: "OpRSADecrypt", 0x02: "OpRSASignMD5SHA1", 0x03: "OpRSASignSHA1",
    0x04: "OpRSASignSHA224", 0x05: "OpRSASignSHA256", 0x06: "OpRSASignSHA384",
    0x07: "OpRSASignSHA512", 0x12: "OpECDSASignMD5SHA1", 0x13: "OpECDSASignSHA1",
    0x14: "OpECDSASignSHA224", 0x15: "OpECDSASignSHA256", 0x16: "OpECDSASignSHA384",
    0x17: "OpECDSASignSHA512", 0x18: "OpEd25519Sign", 0x35: "OpRSAPSSSignSHA256",
    0x36: "OpRSAPSSSignSHA384", 0x37: "OpRSAPSSSignSHA512", 0xF1: "OpPing",
}

# hash name -> (digest length, hashlib constructor or None for md5sha1)
HASHES = {
    "md5sha1": 36, "sha1": 20, "sha224": 28, "sha256": 32, "sha384": 48, "sha512": 64,
}
RSA_PKCS1_OPS = {"md5sha1": OP_RSA_MD5SHA1, "sha1": OP_RSA_SHA1, "sha224": OP_RSA_SHA224,
                 "sha256": OP_RSA_SHA256, "sha384": OP_RSA_SHA384, "sha512": OP_RSA_SHA512}
RSA_PSS_OPS = {"sha256": OP_RSA_PSS_SHA256, "sha384": OP_RSA_PSS_SHA384,
               "sha512": OP_RSA_PSS_SHA512}
ECDSA_OPS = {"md5sha1": OP_ECDSA_MD5SHA1, "sha1": OP_ECDSA_SHA1, "sha224": OP_ECDSA_SHA224,
             "sha256": OP_ECDSA_SHA256, "sha384": OP_ECDSA_SHA384, "sha512": OP_ECDSA_SHA512}


def digest_of(hname, msg):
    """The payload a TLS stack would send for hash hname over msg."""
    if hname == "md5sha1":
        return hashlib.md5(msg).digest() + hashlib.sha1(msg).digest()
    return hashlib.new(hname, msg).digest()


# --------------------------------------------------------------------------
# Output and failure accounting: each test script prints what it checks and
# exits non-zero if any check failed, listing the failures at the end.

Checker = kwharness.Checker

# Problems seen in any program run of this script (sanitizer reports, crashes,
# non-zero exit after SIGTERM); run_main turns them into one failed check.
PROCESS_PROBLEMS = kwharness.PROBLEMS
note_process_output = kwharness.note_output


run_main = kwharness.run_main


# --------------------------------------------------------------------------
# Encoding and decoding, gokeyless rules.

def item(tag, value):
    if len(value) > 0xFFFF:
        raise ValueError("item too long")
    return struct.pack(">BH", tag, len(value)) + bytes(value)


def frame(body, id=0, major=MAJOR, minor=MINOR, length=None):
    """Header + body; length overrides the header's length field (for malformed frames)."""
    if length is None:
        length = len(body)
    return struct.pack(">BBHI", major, minor, length, id) + body


def pad_item(body_len, pad_to=PADDED_LEN):
    """The 0x20 item gokeyless appends so the frame is pad_to bytes, or b''."""
    total = HEADER_LEN + body_len
    if total >= pad_to:
        return b""
    return item(TAG_PADDING, bytes(max(0, pad_to - (total + 3))))


def encode(op, payload=None, ski=None, digest=None, extra=(), id=0, pad=True, major=MAJOR,
           minor=MINOR, pad_to=PADDED_LEN):
    """One request frame. payload None omits the payload item (b'' sends it empty);
    extra is a list of (tag, value) items appended after SKI/digest; pad pads
    the frame to pad_to bytes with a padding item, as gokeyless does."""
    body = b""
    if op is not None:
        body += item(TAG_OPCODE, bytes([op]))
    if payload is not None:
        body += item(TAG_PAYLOAD, payload)
    if ski is not None:
        body += item(TAG_SKI, ski)
    if digest is not None:
        body += item(TAG_DIGEST, digest)
    for tag, value in extra:
        body += item(tag, value)
    if pad:
        body += pad_item(len(body), pad_to)
    return frame(body, id=id, major=major, minor=minor)


class Frame:
    """A decoded frame: header fields, raw bytes and items (list of (tag, value))."""

    def __init__(self, raw):
        self.raw = raw
        self.major, self.minor, self.length, self.id = struct.unpack(">BBHI", raw[:8])
        self.body = raw[8:]
        self.items = decode_items(self.body)

    def get(self, tag):
        vals = [v for t, v in self.items if t == tag]
        return vals[0] if vals else None

    def tags(self):
        return [t for t, _ in self.items]

    @property
    def opcode(self):
        v = self.get(TAG_OPCODE)
        return v[0] if v is not None and len(v) == 1 else None

    @property
    def payload(self):
        return self.get(TAG_PAYLOAD)

    @property
    def error(self):
        """The error code if this is an OpError with a 1-byte payload, else None."""
        if self.opcode == OP_ERROR and self.payload is not None and len(self.payload) == 1:
            return self.payload[0]
        return None

    def __repr__(self):
        desc = "Frame(id=%d, v%d.%d, len=%d, op=%s" % (self.id, self.major, self.minor,
                                                       len(self.raw), _hx(self.opcode))
        p = self.payload
        if p is not None:
            desc += ", payload[%d]=%s" % (len(p), p[:16].hex() + ("..." if len(p) > 16 else ""))
        return desc + ", tags=%s)" % [hex(t) for t in self.tags()]


def _hx(v):
    return "None" if v is None else "0x%02x" % v


class DecodeError(Exception):
    pass


def decode_items(body):
    """Strict decode of a response body: every item inside the body, nothing left over."""
    items = []
    i = 0
    while i < len(body):
        if i + 3 > len(body):
            raise DecodeError("truncated item header at %d" % i)
        tag, n = struct.unpack(">BH", body[i:i + 3])
        if i + 3 + n > len(body):
            raise DecodeError("item 0x%02x at %d runs past the body" % (tag, i))
        items.append((tag, body[i + 3:i + 3 + n]))
        i += 3 + n
    return items


def check_response_shape(frame_, what=""):
    """Problems (list of str) with a response's shape: version 1.0, exactly one
    opcode and at most one payload item, padded to 1024 bytes as gokeyless does."""
    probs = []
    if (frame_.major, frame_.minor) != (1, 0):
        probs.append("version %d.%d" % (frame_.major, frame_.minor))
    if frame_.tags().count(TAG_OPCODE) != 1:
        probs.append("opcode items %d" % frame_.tags().count(TAG_OPCODE))
    if frame_.tags().count(TAG_PAYLOAD) > 1:
        probs.append("payload items %d" % frame_.tags().count(TAG_PAYLOAD))
    if len(frame_.raw) != PADDED_LEN:
        probs.append("response is %d bytes, not %d" % (len(frame_.raw), PADDED_LEN))
    elif frame_.tags()[-1:] != [TAG_PADDING]:
        probs.append("last item is not padding: %s" % frame_.tags())
    return probs


# --------------------------------------------------------------------------
# Key identifiers, computed here from the keys themselves.

def _der_read(buf, i):
    """(tag, content_start, content_end) of the DER element at i."""
    tag = buf[i]
    n = buf[i + 1]
    j = i + 2
    if n & 0x80:
        k = n & 0x7F
        if k == 0 or k > 4:
            raise ValueError("bad DER length")
        n = int.from_bytes(buf[j:j + k], "big")
        j += k
    if j + n > len(buf):
        raise ValueError("DER element past end")
    return tag, j, j + n


def spki_der(key):
    pub = key.public_key() if hasattr(key, "private_bytes") else key
    return pub.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def ski_of(key):
    """SHA-1 over the subjectPublicKey BIT STRING contents (unused-bits byte skipped)."""
    der = spki_der(key)
    tag, s, e = _der_read(der, 0)
    assert tag == 0x30, "SPKI is not a SEQUENCE"
    tag, a_s, a_e = _der_read(der, s)          # AlgorithmIdentifier
    assert tag == 0x30
    tag, b_s, b_e = _der_read(der, a_e)        # subjectPublicKey
    assert tag == 0x03, "second SPKI element is not a BIT STRING"
    assert der[b_s] == 0, "BIT STRING with unused bits"
    return hashlib.sha1(der[b_s + 1:b_e]).digest()


def rsa_digest_of(key):
    """SHA-256 of the modulus in upper-case hex without leading zeros (Go's %X)."""
    n = (key.public_key() if hasattr(key, "private_bytes") else key).public_numbers().n
    return hashlib.sha256(("%X" % n).encode()).digest()


# --------------------------------------------------------------------------
# Signature checks with the public key.

class _MD5SHA1(hashes.HashAlgorithm):
    name = "md5-sha1"
    digest_size = 36
    block_size = 64


def _hash_obj(hname):
    return {"sha1": hashes.SHA1(), "sha224": hashes.SHA224(), "sha256": hashes.SHA256(),
            "sha384": hashes.SHA384(), "sha512": hashes.SHA512()}[hname]


def rsa_public_op(pub, sig):
    nums = pub.public_numbers()
    k = (nums.n.bit_length() + 7) // 8
    if len(sig) != k:
        raise ValueError("signature is %d bytes, modulus %d" % (len(sig), k))
    return pow(int.from_bytes(sig, "big"), nums.e, nums.n).to_bytes(k, "big")


def verify_rsa_pkcs1(pub, hname, dgst, sig):
    """Raises on a bad signature. MD5SHA1 (no DigestInfo) is checked by a raw
    public-key operation against 00 01 FF..FF 00 || md5sha1."""
    if hname == "md5sha1":
        em = rsa_public_op(pub, sig)
        want = b"\x00\x01" + b"\xff" * (len(em) - 3 - len(dgst)) + b"\x00" + dgst
        if em != want:
            raise ValueError("MD5SHA1 block mismatch: %s" % em[:8].hex())
        return
    h = _hash_obj(hname)
    pub.verify(sig, dgst, padding.PKCS1v15(), utils.Prehashed(h))


def verify_rsa_pss(pub, hname, dgst, sig):
    h = _hash_obj(hname)
    pub.verify(sig, dgst, padding.PSS(mgf=padding.MGF1(_hash_obj(hname)),
                                      salt_length=h.digest_size), utils.Prehashed(h))


def verify_ecdsa(pub, hname, dgst, sig):
    h = _MD5SHA1() if hname == "md5sha1" else _hash_obj(hname)
    pub.verify(sig, dgst, ec.ECDSA(utils.Prehashed(h)))


def check_raw_decrypt(block, k, secret):
    """Problem string or None: block must be a k-byte PKCS#1 v1.5 type-2 block for secret."""
    if len(block) != k:
        return "block is %d bytes, want %d" % (len(block), k)
    if block[:2] != b"\x00\x02":
        return "block starts %s, want 0002" % block[:2].hex()
    sep = block.find(b"\x00", 2)
    if sep < 10:
        return "padding string too short or missing separator (at %d)" % sep
    if block[sep + 1:] != secret:
        return "secret mismatch"
    return None


# --------------------------------------------------------------------------
# Demo PKI and keys.

def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def make_ca(cn):
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(days=1))
            .not_valid_after(_now() + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def make_leaf(ca_key, ca_cert, cn, server, key=None, dns=()):
    """A leaf certificate from ca: a server one (127.0.0.1, localhost) or a client one
    (with DNS subjectAltNames dns, if any)."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    b = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca_cert.subject)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(_now() - datetime.timedelta(days=1))
         .not_valid_after(_now() + datetime.timedelta(days=30))
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                        critical=False)
         .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                               else ExtendedKeyUsageOID.CLIENT_AUTH]),
                        critical=False))
    if server:
        b = b.add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False)
    elif dns:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]),
                            critical=False)
    return key, b.sign(ca_key, hashes.SHA256())


def write_key(path, key, fmt="pkcs8", mode=0o600, password=None):
    """fmt: pkcs8 | traditional | der. password encrypts (for refusal tests)."""
    enc = (serialization.BestAvailableEncryption(password) if password
           else serialization.NoEncryption())
    if fmt == "der":
        data = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                 enc)
    elif fmt == "traditional":
        data = key.private_bytes(serialization.Encoding.PEM,
                                 serialization.PrivateFormat.TraditionalOpenSSL, enc)
    else:
        data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 enc)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, mode)
    return path


def write_cert(path, *certs):
    with open(path, "wb") as f:
        for c in certs:
            f.write(c.public_bytes(serialization.Encoding.PEM))
    return path


class PKI:
    """CA, server cert (127.0.0.1 / localhost), client cert; and a second CA
    with its own client cert, which keywayd must refuse. Files under dir."""

    def __init__(self, dir):
        os.makedirs(dir, exist_ok=True)
        self.dir = dir
        self.ca_key, self.ca = make_ca("Keyway Test CA")
        self.server_key, self.server_cert = make_leaf(self.ca_key, self.ca, "keywayd", True)
        self.client_key, self.client_cert = make_leaf(self.ca_key, self.ca, "client", False)
        self.ca2_key, self.ca2 = make_ca("Other CA")
        self.client2_key, self.client2_cert = make_leaf(self.ca2_key, self.ca2, "intruder", False)
        p = lambda n: os.path.join(dir, n)
        self.ca_file = write_cert(p("ca.pem"), self.ca)
        self.ca2_file = write_cert(p("ca2.pem"), self.ca2)
        self.server_cert_file = write_cert(p("server.pem"), self.server_cert)
        self.server_key_file = write_key(p("server-key.pem"), self.server_key)
        self.client_cert_file = write_cert(p("client.pem"), self.client_cert)
        self.client_key_file = write_key(p("client-key.pem"), self.client_key)
        self.client2_cert_file = write_cert(p("client2.pem"), self.client2_cert)
        self.client2_key_file = write_key(p("client2-key.pem"), self.client2_key)

    def client_context(self, cert="good", min_version=None, max_version=None):
        """cert: 'good' | 'other' (from the second CA) | None (no client cert)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(self.ca_file)
        ctx.check_hostname = True
        ctx.verify_mode = ssl.CERT_REQUIRED
        if cert == "good":
            ctx.load_cert_chain(self.client_cert_file, self.client_key_file)
        elif cert == "other":
            ctx.load_cert_chain(self.client2_cert_file, self.client2_key_file)
        if min_version is not None:
            ctx.minimum_version = min_version
        if max_version is not None:
            ctx.maximum_version = max_version
        return ctx


class ClientCert:
    """A further client certificate from pki's CA (or ca=(key, cert)), written under
    pki.dir as NAME.pem / NAME-key.pem; .spki is the SHA-256 of its SubjectPublicKeyInfo."""

    def __init__(self, pki, name, cn, dns=(), ca=None):
        ca_key, ca_cert = ca or (pki.ca_key, pki.ca)
        self.pki = pki
        self.key, self.cert = make_leaf(ca_key, ca_cert, cn, False, dns=dns)
        self.cert_file = write_cert(os.path.join(pki.dir, name + ".pem"), self.cert)
        self.key_file = write_key(os.path.join(pki.dir, name + "-key.pem"), self.key)
        self.spki = hashlib.sha256(self.cert.public_key().public_bytes(
            serialization.Encoding.DER,
            serialization.PublicFormat.SubjectPublicKeyInfo)).hexdigest()

    def context(self, min_version=None, max_version=None):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(self.pki.ca_file)
        ctx.load_cert_chain(self.cert_file, self.key_file)
        if min_version is not None:
            ctx.minimum_version = min_version
        if max_version is not None:
            ctx.maximum_version = max_version
        return ctx

    def connect(self, port, **kw):
        return Client.tcp(port, self.context(kw.pop("min_version", None),
                                             kw.pop("max_version", None)), **kw)


class TestKey:
    def __init__(self, name, kind, key, path):
        self.name = name
        self.kind = kind            # rsa | ec | ed25519
        self.key = key
        self.pub = key.public_key()
        self.path = path
        self.ski = ski_of(key)
        self.digest = rsa_digest_of(key) if kind == "rsa" else None

    @property
    def k(self):
        return (self.pub.key_size + 7) // 8 if self.kind == "rsa" else None

    def __repr__(self):
        return "<%s %s>" % (self.name, self.ski.hex())


KEY_SPECS = {
    "rsa2048": ("rsa", lambda: rsa.generate_private_key(65537, 2048)),
    "rsa3072": ("rsa", lambda: rsa.generate_private_key(65537, 3072)),
    "rsa4096": ("rsa", lambda: rsa.generate_private_key(65537, 4096)),
    "p256": ("ec", lambda: ec.generate_private_key(ec.SECP256R1())),
    "p384": ("ec", lambda: ec.generate_private_key(ec.SECP384R1())),
    "p521": ("ec", lambda: ec.generate_private_key(ec.SECP521R1())),
    "ed25519": ("ed25519", lambda: ed25519.Ed25519PrivateKey.generate()),
}


def gen_key(name):
    return KEY_SPECS[name][1]()


def make_keys(dir, names, fmts=None):
    """Write one key per name into dir as <name>.key (mode 0600). fmts maps a
    name to 'pkcs8' | 'traditional' | 'der' or to 'sub/…' to put it in a
    subdirectory. Returns {name: TestKey}."""
    os.makedirs(dir, exist_ok=True)
    fmts = fmts or {}
    out = {}
    for n in names:
        kind, gen = KEY_SPECS[n]
        key = gen()
        fmt = fmts.get(n, "pkcs8")
        d = dir
        if "/" in fmt:
            sub, fmt = fmt.rsplit("/", 1)
            d = os.path.join(dir, sub)
            os.makedirs(d, exist_ok=True)
        path = write_key(os.path.join(d, n + ".key"), key, fmt)
        out[n] = TestKey(n, kind, key, path)
    return out


def add_key_file(dir, name, kind_name, fmt="pkcs8"):
    key = gen_key(kind_name)
    path = write_key(os.path.join(dir, name + ".key"), key, fmt)
    return TestKey(name, KEY_SPECS[kind_name][0], key, path)


# --------------------------------------------------------------------------
# Ports, temp dirs, processes.

free_port = kwharness.free_port


TempDir = kwharness.TempDir


def keywayd_binary():
    p = os.environ.get("KEYWAYD")
    if not p and len(sys.argv) > 1:
        p = sys.argv[1]
    if not p or not os.access(p, os.X_OK):
        print("keywayd binary not found: set KEYWAYD=/path/to/keywayd (got %r)" % p)
        sys.exit(2)
    return p


class KeywaydError(Exception):
    pass


class Keywayd(kwharness.Process):
    """Runs keywayd on 127.0.0.1 with the given PKI and keys directory.

    with Keywayd(pki, keys_dir, tmp, extra=["--workers", "2"]) as kd:
        kd.port, kd.metrics_port, kd.unix_path, kd.proc, kd.stderr_text()

    Start-up waits (at most start_timeout s) for the pid file; stop() sends
    SIGTERM, waits stop_timeout s, then SIGKILLs (kwharness.Process).
    """

    def __init__(self, pki, keys_dir, tmp, extra=(), unix=False, metrics=False, workers=None,
                 start_timeout=10.0, stop_timeout=10.0, listen=True, base_args=None):
        self.pki = pki
        self.keys_dir = keys_dir
        self.tmp = tmp
        self.port = free_port() if listen else None
        self.metrics_port = free_port() if metrics else None
        self.unix_path = os.path.join(tmp, "kw-%d.sock" % os.getpid()) if unix is True else unix
        self.pid_file = os.path.join(tmp, "keywayd-%d-%d.pid" % (os.getpid(), time.monotonic_ns()))
        self.start_timeout = start_timeout
        if base_args is None:
            base_args = ["--keys", keys_dir, "--tls-cert", pki.server_cert_file,
                         "--tls-key", pki.server_key_file, "--client-ca", pki.ca_file]
            if listen:
                base_args += ["--listen", "127.0.0.1:%d" % self.port]
        args = [keywayd_binary()] + list(base_args) + ["--pid-file", self.pid_file]
        if self.unix_path:
            args += ["--unix", self.unix_path]
        if self.metrics_port:
            args += ["--metrics", "127.0.0.1:%d" % self.metrics_port]
        if workers is not None:
            args += ["--workers", str(workers)]
        super().__init__(args + list(extra), log=self.pid_file + ".stderr",
                         stop_timeout=stop_timeout)

    @property
    def what(self):
        return "keywayd %s" % " ".join(self.args[1:])

    def _pid_written(self):
        try:
            with open(self.pid_file) as f:
                txt = f.read().strip()
        except FileNotFoundError:
            return False
        try:
            pid = int(txt)
        except ValueError:
            return False  # partially written
        if pid != self.proc.pid:
            raise KeywaydError("pid file holds %s, process is %d" % (txt, self.proc.pid))
        return True

    def start(self):
        for _ in range(3):
            super().start()
            if self.wait_ready(self._pid_written, self.start_timeout):
                return self
            if self.alive() or not self._metrics_port_taken():
                break
            # free_port() cannot reserve the port it returns: another program on
            # the machine took the metrics port first. That port is ours to change.
            self.proc.wait()
            self._log.close()
            self.metrics_port = free_port()
            i = self.args.index("--metrics")
            self.args[i + 1] = "127.0.0.1:%d" % self.metrics_port
        if not self.alive():
            self.note()
            raise KeywaydError("keywayd exited %d at start-up: %s\nargs: %s" % (
                self.returncode, self.stderr_text().strip(), " ".join(self.args)))
        kwharness.PROBLEMS.append("keywayd wrote no pid file within %.0f s" % self.start_timeout)
        self.kill()
        raise KeywaydError("keywayd wrote no pid file within %.0f s: %s" % (
            self.start_timeout, self.stderr_text().strip()))

    def stderr_text(self):
        return self.log_text()

    def _metrics_port_taken(self):
        return (self.metrics_port is not None and "--metrics" in self.args and
                "--metrics: cannot listen" in self.log_text() and
                "Address already in use" in self.log_text())

    # client helpers
    def connect(self, cert="good", **kw):
        return Client.tcp(self.port, self.pki.client_context(cert, kw.pop("min_version", None),
                                                             kw.pop("max_version", None)), **kw)

    def connect_unix(self, **kw):
        return Client.unix(self.unix_path, **kw)


def run_keywayd_expect_exit(args, timeout=10.0):
    """Run keywayd with args (binary prepended); return (exit code or None if it
    kept running and was killed, combined output)."""
    return kwharness.run_once([keywayd_binary()] + list(args), what="keywayd %s" % " ".join(args),
                              timeout=timeout)


# --------------------------------------------------------------------------
# The client.

class ConnectionClosed(Exception):
    pass


class Client:
    """A blocking keyless client over mTLS or a unix socket. Every socket
    operation has a timeout; recv_frame raises socket.timeout or ConnectionClosed."""

    def __init__(self, sock, timeout=10.0):
        self.sock = sock
        self.sock.settimeout(timeout)
        self.timeout = timeout
        self.buf = b""
        self.next_id = 1

    @classmethod
    def tcp(cls, port, ctx, host="127.0.0.1", server_hostname="127.0.0.1", timeout=10.0):
        raw = socket.create_connection((host, port), timeout=timeout)
        try:
            raw.settimeout(timeout)
            s = ctx.wrap_socket(raw, server_hostname=server_hostname)
        except BaseException:
            raw.close()
            raise
        return cls(s, timeout)

    @classmethod
    def unix(cls, path, timeout=10.0):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(path)
        except BaseException:
            s.close()
            raise
        return cls(s, timeout)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def new_id(self):
        i = self.next_id
        self.next_id = (self.next_id + 1) & 0xFFFFFFFF
        return i

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, n, deadline):
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("timed out waiting for %d bytes (have %d)" % (n, len(self.buf)))
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError) as e:
                raise ConnectionClosed("reset: %s" % e)
            except ssl.SSLError as e:
                raise ConnectionClosed("TLS error: %s" % e)
            if not chunk:
                raise ConnectionClosed("EOF with %d bytes buffered" % len(self.buf))
            self.buf += chunk

    def recv_frame(self, timeout=None):
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        self._fill(HEADER_LEN, deadline)
        length = struct.unpack(">H", self.buf[2:4])[0]
        self._fill(HEADER_LEN + length, deadline)
        raw, self.buf = self.buf[:HEADER_LEN + length], self.buf[HEADER_LEN + length:]
        return Frame(raw)

    def request(self, op, payload=None, ski=None, digest=None, extra=(), id=None, **kw):
        """Send one request and return its response (must carry the same id)."""
        if id is None:
            id = self.new_id()
        self.send(encode(op, payload, ski, digest, extra, id=id, **kw))
        f = self.recv_frame()
        if f.id != id:
            raise AssertionError("response id %d for request id %d" % (f.id, id))
        return f

    def expect_closed(self, timeout=5.0):
        """True if the peer closes (EOF/reset/TLS alert) within timeout with no
        data; returns (closed, data received before the close)."""
        deadline = time.monotonic() + timeout
        got = self.buf
        self.buf = b""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False, got
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return False, got
            except (ConnectionResetError, BrokenPipeError, ssl.SSLError, OSError):
                return True, got
            if not chunk:
                return True, got
            got += chunk

    def pump(self, out, nframes, timeout=20.0, read_delay=0.0):
        """Write out and read nframes responses at the same time (non-blocking
        with select, so neither side can deadlock on full buffers). With
        read_delay, reading starts only after that many seconds (to make the
        server hold output). Returns the frames in arrival order."""
        frames = []
        sock = self.sock
        sock.setblocking(False)
        deadline = time.monotonic() + timeout
        read_after = time.monotonic() + read_delay
        view = memoryview(out)
        try:
            while len(frames) < nframes:
                now = time.monotonic()
                if now >= deadline:
                    raise socket.timeout("pump: %d of %d frames after %.1f s, %d bytes unsent" % (
                        len(frames), nframes, timeout, len(view)))
                want_r = now >= read_after
                rl = [sock] if want_r else []
                wl = [sock] if len(view) else []
                pending = isinstance(sock, ssl.SSLSocket) and sock.pending()
                if not pending:
                    wait = min(deadline - now, 0.05 if not want_r else deadline - now)
                    if not rl and not wl:
                        time.sleep(min(0.01, max(0, read_after - now)))
                        continue
                    r, w, _ = select.select(rl, wl, [], min(wait, 0.2))
                else:
                    r, w = [sock], []
                if w and len(view):
                    try:
                        n = sock.send(view[:65536])
                        view = view[n:]
                    except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                        pass
                if r and want_r:
                    while True:
                        try:
                            chunk = sock.recv(65536)
                        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                            break
                        except (ConnectionResetError, ssl.SSLError) as e:
                            raise ConnectionClosed("pump: %s after %d frames" % (e, len(frames)))
                        if not chunk:
                            raise ConnectionClosed("pump: EOF after %d of %d frames" % (
                                len(frames), nframes))
                        self.buf += chunk
                        if not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
                            break
                    while len(self.buf) >= HEADER_LEN:
                        length = struct.unpack(">H", self.buf[2:4])[0]
                        if len(self.buf) < HEADER_LEN + length:
                            break
                        frames.append(Frame(self.buf[:HEADER_LEN + length]))
                        self.buf = self.buf[HEADER_LEN + length:]
        finally:
            sock.setblocking(True)
            sock.settimeout(self.timeout)
        return frames


def describe(f):
    """Short text for a response frame in failure messages."""
    if f is None:
        return "no response"
    if f.error is not None:
        return "error 0x%02x (id %d)" % (f.error, f.id)
    return repr(f)


def ping_ok(client, payload=b"alive", timeout=5.0):
    """True if a ping on client gets the matching pong."""
    try:
        id = client.new_id()
        client.send(encode(OP_PING, payload, id=id))
        f = client.recv_frame(timeout)
        return f.id == id and f.opcode == OP_PONG and f.payload == payload
    except (OSError, ConnectionClosed, DecodeError):
        return False


def sign_request(tk, hname="sha256", msg=b"keyway e2e", pss=False):
    """(opcode, payload) for a signature with key tk over msg."""
    if tk.kind == "ed25519":
        return OP_ED25519, msg
    d = digest_of(hname, msg)
    if tk.kind == "rsa":
        return (RSA_PSS_OPS[hname] if pss else RSA_PKCS1_OPS[hname]), d
    return ECDSA_OPS[hname], d


def verify_sig(tk, op, payload, sig):
    """None if sig is a valid signature by tk for request (op, payload), else why not."""
    try:
        if op == OP_ED25519:
            tk.pub.verify(sig, payload)
        elif op in RSA_PKCS1_OPS.values():
            h = [k for k, v in RSA_PKCS1_OPS.items() if v == op][0]
            verify_rsa_pkcs1(tk.pub, h, payload, sig)
        elif op in RSA_PSS_OPS.values():
            h = [k for k, v in RSA_PSS_OPS.items() if v == op][0]
            verify_rsa_pss(tk.pub, h, payload, sig)
        elif op in ECDSA_OPS.values():
            h = [k for k, v in ECDSA_OPS.items() if v == op][0]
            verify_ecdsa(tk.pub, h, payload, sig)
        else:
            return "not a signing op 0x%02x" % op
    except Exception as e:
        return "%s: %s" % (type(e).__name__, e or "invalid signature")
    return None


def signs_with(client, tk, hname="sha256", msg=b"probe"):
    """Sign via client with key tk (by SKI); return (ok, frame)."""
    op, payload = sign_request(tk, hname, msg)
    f = client.request(op, payload, ski=tk.ski)
    if f.opcode != OP_RESPONSE or f.payload is None:
        return False, f
    return verify_sig(tk, op, payload, f.payload) is None, f


def setup(tmp, names, fmts=None):
    """A PKI under tmp/pki and keys under tmp/keys: (pki, keys_dir, {name: TestKey})."""
    pki = PKI(os.path.join(tmp, "pki"))
    keys_dir = os.path.join(tmp, "keys")
    return pki, keys_dir, make_keys(keys_dir, names, fmts)
