"""keyway quic end to end: `initial`, `protect` and `unprotect` reproduce
RFC 9001 Appendix A.1-A.3 and A.5 through the command line with every
engine this machine has, and agree on random packets of every cipher with
an independent implementation of RFC 9001 §5 written here with
python3-cryptography. Flipped bits and hostile packets exit 1, never crash.

KEYWAY_CLI names the binary; without it the test is skipped (exit 77).
"""

import os
import random
import subprocess
import sys

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

CLI = os.environ.get("KEYWAY_CLI")
VECTORS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "unit", "quic",
                       "rfc9001_vectors.txt")
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def kw(*args):
    r = subprocess.run([CLI, "quic", *args], capture_output=True, text=True, timeout=30)
    return r.returncode, r.stdout, r.stderr


def load_vectors():
    v = {}
    with open(VECTORS) as f:
        for line in f:
            if "=" in line and not line.startswith("#"):
                k, _, val = line.strip().partition("=")
                v[k] = val
    return v


# --- an independent RFC 9001 §5 packet protection ---------------------------

SUITES = {  # name: (hash, secret length, key length, aead, header protection)
    "aes-128-gcm": (hashes.SHA256(), 32, 16, AESGCM, "aes"),
    "aes-256-gcm": (hashes.SHA384(), 48, 32, AESGCM, "aes"),
    "chacha20-poly1305": (hashes.SHA256(), 32, 32, ChaCha20Poly1305, "chacha"),
}


def expand_label(h, secret, label, length):
    full = b"tls13 " + label
    info = length.to_bytes(2, "big") + bytes([len(full)]) + full + b"\x00"
    return HKDFExpand(algorithm=h, length=length, info=info).derive(secret)


def protect(cipher, secret, header, payload, pn):
    h, _, klen, aead, hp_kind = SUITES[cipher]
    key = expand_label(h, secret, b"quic key", klen)
    iv = expand_label(h, secret, b"quic iv", 12)
    hp = expand_label(h, secret, b"quic hp", klen)
    nonce = bytes(a ^ b for a, b in zip(iv, pn.to_bytes(12, "big")))
    ct = aead(key).encrypt(nonce, payload, header)
    pn_len = (header[0] & 3) + 1
    pn_off = len(header) - pn_len
    sample = (header + ct)[pn_off + 4:pn_off + 20]
    if hp_kind == "aes":
        enc = Cipher(algorithms.AES(hp), modes.ECB()).encryptor()
        mask = enc.update(sample)
    else:
        enc = Cipher(algorithms.ChaCha20(hp, sample), mode=None).encryptor()
        mask = enc.update(b"\x00" * 5)
    out = bytearray(header + ct)
    out[0] ^= mask[0] & (0x0F if out[0] & 0x80 else 0x1F)
    for i in range(pn_len):
        out[pn_off + i] ^= mask[1 + i]
    return bytes(out)


def engines():
    found = []
    for e in ("evp", "ipsec-mb"):
        rc, _, err = kw("protect", "--cipher", "aes-128-gcm", "--secret", "00" * 32,
                        "--header", "40" + "00" * 8 + "01", "--payload", "00" * 20,
                        "--engine", e)
        if rc == 0:
            found.append(e)
        else:
            print("engine %s not available here: %s" % (e, err.strip()))
    return found


def test_vectors(v, engine):
    rc, out, _ = kw("initial", "--dcid", v["dcid"])
    want = "".join("%s=%s\n" % (n, v[n]) for n in (
        "client_initial_secret", "server_initial_secret", "client_key", "client_iv",
        "client_hp", "server_key", "server_iv", "server_hp"))
    check(rc == 0 and out == want, "initial: A.1 secrets, keys, ivs and hp keys")
    cases = [("a2", "aes-128-gcm", v["client_initial_secret"], 8, 1),
             ("a3", "aes-128-gcm", v["server_initial_secret"], 0, 0),
             ("a5", "chacha20-poly1305", v["a5_secret"], 0, 654360563)]
    for name, cipher, secret, dcid_len, largest in cases:
        rc, out, err = kw("protect", "--cipher", cipher, "--secret", secret,
                          "--header", v[name + "_header"], "--payload", v[name + "_payload"],
                          "--pn", v[name + "_pn"], "--engine", engine)
        check(rc == 0 and out == v[name + "_packet"] + "\n",
              "%s protect %s byte for byte (%s)" % (engine, name, err.strip()))
        rc, out, err = kw("unprotect", "--cipher", cipher, "--secret", secret,
                          "--packet", v[name + "_packet"], "--dcid-len", str(dcid_len),
                          "--largest-pn", str(largest), "--engine", engine)
        want = "header=%s\npn=%s\npayload=%s\n" % (v[name + "_header"], v[name + "_pn"],
                                                  v[name + "_payload"])
        check(rc == 0 and out == want, "%s unprotect %s (%s)" % (engine, name, err.strip()))
    # Without --pn the header's truncated packet number is the nonce's (A.2: 2).
    rc, out, _ = kw("protect", "--cipher", "aes-128-gcm", "--secret", v["client_initial_secret"],
                    "--header", v["a2_header"], "--payload", v["a2_payload"], "--engine", engine)
    check(rc == 0 and out == v["a2_packet"] + "\n", "%s protect a2 with the default pn" % engine)


def test_random(engine, rng):
    for cipher, (_, slen, _, _, _) in SUITES.items():
        for i in range(6):
            secret = bytes(rng.getrandbits(8) for _ in range(slen))
            pn_len = 1 + i % 4
            pn = rng.randrange(1 << 30)
            trunc = (pn & ((1 << (8 * pn_len)) - 1)).to_bytes(pn_len, "big")
            payload = bytes(rng.getrandbits(8) for _ in range(rng.randrange(4, 1300)))
            if i % 2:
                body = pn_len + len(payload) + 16
                header = bytes([0xE0 | (pn_len - 1)]) + b"\x00\x00\x00\x01" + b"\x08" + \
                    bytes(8) + b"\x00" + (0x4000 | body).to_bytes(2, "big") + trunc
            else:
                header = bytes([0x40 | (pn_len - 1)]) + bytes(8) + trunc
            want = protect(cipher, secret, header, payload, pn)
            rc, out, err = kw("protect", "--cipher", cipher, "--secret", secret.hex(),
                              "--header", header.hex(), "--payload", payload.hex(),
                              "--pn", str(pn), "--engine", engine)
            check(rc == 0 and out.strip() == want.hex(),
                  "%s %s random packet %d matches the independent seal %s" %
                  (engine, cipher, i, err.strip()))
            rc, out, _ = kw("unprotect", "--cipher", cipher, "--secret", secret.hex(),
                            "--packet", want.hex(), "--dcid-len", "8",
                            "--largest-pn", str(max(pn - 5, 0)), "--engine", engine)
            check(rc == 0 and out == "header=%s\npn=%d\npayload=%s\n" %
                  (header.hex(), pn, payload.hex()), "%s %s random packet %d opens" %
                  (engine, cipher, i))
            bad = bytearray(want)
            bad[rng.randrange(len(bad))] ^= 1 << rng.randrange(8)
            rc, _, _ = kw("unprotect", "--cipher", cipher, "--secret", secret.hex(),
                          "--packet", bad.hex(), "--dcid-len", "8",
                          "--largest-pn", str(max(pn - 5, 0)), "--engine", engine)
            check(rc == 1, "%s %s a flipped bit exits 1" % (engine, cipher))


def test_hostile(engine, rng):
    secret = "11" * 32
    packets = ["", "c0", "40", "c000000001", "c0000000011400", "c00000000108" + "00" * 8,
               "c000000001000000" + "7fffffff", "c0000000010000" + "44ff" + "00" * 10,
               "40" + "00" * 27, "ff" * 30, "00" * 60, "c0000000010000" + "ffffffffffffffff"]
    packets += [bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 80))).hex()
                for _ in range(20)]
    crashed = 0
    for p in packets:
        rc, _, _ = kw("unprotect", "--cipher", "aes-128-gcm", "--secret", secret, "--packet",
                      p, "--dcid-len", "8", "--largest-pn", "0", "--engine", engine)
        crashed += rc not in (1,)
    check(crashed == 0, "%s: %d hostile packets all exit 1" % (engine, len(packets)))
    rc, _, _ = kw("unprotect", "--cipher", "aes-128-gcm", "--secret", "zz", "--packet", "00",
                  "--dcid-len", "8", "--largest-pn", "0")
    check(rc == 1, "bad hex exits 1")
    rc, _, _ = kw("protect", "--cipher", "rot13", "--secret", secret, "--header", "4000",
                  "--payload", "00")
    check(rc == 1, "an unknown cipher exits 1")


def test_bench():
    import json
    keys = {"pkts_per_sec", "host_cpu_ns_per_pkt", "total_cpu_ns_per_pkt", "p50_ns", "p99_ns",
            "out_of_order", "engine", "sched", "batch", "size", "workers", "conns"}
    for args in (["--sched", "inline"], ["--sched", "sjbsq", "--batch", "8", "--open"],
                 ["--sched", "jsq", "--workers", "2", "--conns", "4", "--rate", "20000"]):
        rc, out, err = kw("bench", "--engine", "evp", "--seconds", "1", "--json", *args)
        try:
            j = json.loads(out)
        except ValueError:
            j = {}
        check(rc == 0 and set(j) == keys and j["pkts_per_sec"] > 0 and j["sched"] == args[1],
              "bench %s: one JSON object with the documented keys %s" % (" ".join(args),
                                                                        err.strip()))
    rc, _, _ = kw("bench", "--engine", "nope", "--seconds", "1")
    check(rc == 2, "bench with an unknown engine is a usage error")


def main():
    if not CLI:
        print("KEYWAY_CLI not set: skipped")
        return 77
    v = load_vectors()
    rng = random.Random(9001)
    found = engines()
    check("evp" in found, "the evp engine is always there")
    for e in found:
        test_vectors(v, e)
        test_random(e, rng)
        test_hostile(e, rng)
    test_bench()
    print("%d failure(s)" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
