#!/usr/bin/python3
"""--rsa-batch: many concurrent RSA-2048 requests through keywayd (PKCS#1 v1.5
and PSS signatures on two keys, raw decryptions) mixed with ECDSA signatures
and pings, pipelined on several connections at once so that one loop turn
reads requests of several connections. Every answer keeps its request ID,
every signature verifies with the public key, every decryption is the
PKCS#1 block of its secret; the batch counters on /metrics account for every
RSA request.

With KEYWAY_RSA_BATCH_MIN_LANES=1 every RSA request is a lane of a batch on
any CPU (without AVX-512 IFMA the batch computes its lanes with OpenSSL);
without it keywayd measures, and where the kernel runs (the
keyway_keywayd_rsa_batch_kernel gauge) pipelined requests make batches."""

import os
import random
import threading
import urllib.request

from cryptography.hazmat.primitives.asymmetric import padding

import kwharness
import kwtest as kw

CONNS, EACH = 6, 64


def build(keys, rsa_keys, n, rng):
    """n mixed requests with unique ids: {id: (kind, key, op, payload, secret)}, bytes, #RSA."""
    reqs, out, nrsa = {}, bytearray(), 0
    while len(reqs) < n:
        id = rng.getrandbits(32)
        if id in reqs:
            continue
        r = rng.random()
        if r < 0.1:
            p = os.urandom(8)
            reqs[id] = ("ping", None, kw.OP_PING, p, None)
            out += kw.encode(kw.OP_PING, p, id=id)
            continue
        if r < 0.2:
            tk = keys["p256"]
            op, payload = kw.sign_request(tk, "sha256", os.urandom(16))
            reqs[id] = ("sign", tk, op, payload, None)
            out += kw.encode(op, payload, ski=tk.ski, id=id)
            continue
        tk = rng.choice(rsa_keys)
        nrsa += 1
        if r < 0.35:
            secret = os.urandom(48)
            ct = tk.pub.encrypt(secret, padding.PKCS1v15())
            reqs[id] = ("decrypt", tk, kw.OP_RSA_DECRYPT, ct, secret)
            out += kw.encode(kw.OP_RSA_DECRYPT, ct, ski=tk.ski, id=id)
            continue
        hname = rng.choice(["sha256", "sha384", "sha512", "sha1", "md5sha1"])
        pss = r < 0.6 and hname not in ("sha1", "md5sha1")  # PSS opcodes: SHA-2 only
        op, payload = kw.sign_request(tk, hname, os.urandom(16), pss=pss)
        reqs[id] = ("sign", tk, op, payload, None)
        out += kw.encode(op, payload, ski=tk.ski, id=id)
    return reqs, bytes(out), nrsa


def check(c, what, reqs, frames):
    seen, wrong = {}, []
    for f in frames:
        seen[f.id] = seen.get(f.id, 0) + 1
        r = reqs.get(f.id)
        if r is None:
            wrong.append("unexpected id %d" % f.id)
            continue
        kind, tk, op, payload, secret = r
        if kind == "ping":
            if f.opcode != kw.OP_PONG or (f.payload or b"") != payload:
                wrong.append("id %d ping -> %s" % (f.id, kw.describe(f)))
        elif f.opcode != kw.OP_RESPONSE:
            wrong.append("id %d %s op 0x%02x -> %s" % (f.id, tk.name, op, kw.describe(f)))
        elif kind == "decrypt":
            why = kw.check_raw_decrypt(f.payload, tk.k, secret)
            if why:
                wrong.append("id %d decrypt: %s" % (f.id, why))
        else:
            why = kw.verify_sig(tk, op, payload, f.payload)
            if why:
                wrong.append("id %d %s op 0x%02x: %s" % (f.id, tk.name, op, why))
    missing = [i for i in reqs if i not in seen]
    dups = [i for i, n in seen.items() if n > 1]
    c.check(not missing and not dups, "%s: each of %d requests answered once, by its id" % (
        what, len(reqs)), "%d missing, %d duplicated" % (len(missing), len(dups)))
    c.check(not wrong, "%s: every signature verifies, every decryption is right" % what,
            "; ".join(wrong[:5]))


def load(c, kd, keys, rsa_keys):
    """CONNS connections at once, each pipelining EACH requests; returns the RSA count."""
    results = {}

    def worker(i):
        rng = random.Random(os.urandom(8))
        try:
            reqs, out, nrsa = build(keys, rsa_keys, EACH, rng)
            with kd.connect() as cl:
                results[i] = (reqs, cl.pump(out, EACH, timeout=60), nrsa, None)
        except Exception as e:  # noqa: BLE001
            results[i] = (None, None, 0, e)

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(CONNS)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(90)
    total = 0
    for i in range(CONNS):
        reqs, frames, nrsa, err = results.get(i, (None, None, 0, "did not finish"))
        if err is not None:
            c.fail("connection %d" % i, str(err))
            continue
        check(c, "connection %d" % i, reqs, frames)
        total += nrsa
    return total


def counters(kd):
    """(batches, lanes, fallbacks, kernel) from keywayd's /metrics."""
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % kd.metrics_port,
                                timeout=5) as r:
        m = {}
        for line in r.read().decode().splitlines():
            if line and not line.startswith("#"):
                name, v = line.rsplit(" ", 1)
                m[name] = float(v)
    return tuple(m.get("keyway_keywayd_rsa_" + n) for n in
                 ("batches_total", "batch_lanes_total", "batch_fallbacks_total", "batch_kernel"))


def main(c):
    with kw.TempDir() as tmp:
        pki, keys_dir, keys = kw.setup(tmp, ["rsa2048", "p256"])
        keys["rsa2048b"] = kw.add_key_file(keys_dir, "rsa2048b", "rsa2048")
        rsa_keys = [keys["rsa2048"], keys["rsa2048b"]]

        with c.section("batches on every CPU (KEYWAY_RSA_BATCH_MIN_LANES=1)"):
            os.environ["KEYWAY_RSA_BATCH_MIN_LANES"] = "1"
            try:
                with kw.Keywayd(pki, keys_dir, tmp, workers=1, metrics=True,
                                extra=["--rsa-batch", "on"]) as kd:
                    nrsa = load(c, kd, keys, rsa_keys)
                    batches, lanes, fallbacks, _ = counters(kd)
                c.eq(kd.returncode, 0, "keywayd exits 0 on SIGTERM")
            finally:
                del os.environ["KEYWAY_RSA_BATCH_MIN_LANES"]
            c.check(batches is not None and batches > 0, "batches ran: %s" % batches)
            c.eq(lanes, float(nrsa), "every RSA request was a lane")
            c.eq(fallbacks, 0.0, "none went to OpenSSL alone")
            c.check(batches is not None and batches * 8 >= nrsa and batches < nrsa,
                    "lanes shared batches (%s batches for %d requests)" % (batches, nrsa))

        with c.section("measured threshold"):
            with kw.Keywayd(pki, keys_dir, tmp, workers=1, metrics=True,
                            extra=["--rsa-batch", "on"]) as kd:
                nrsa = load(c, kd, keys, rsa_keys)
                batches, lanes, fallbacks, kernel = counters(kd)
            c.eq(kd.returncode, 0, "keywayd exits 0 on SIGTERM")
            # A sanitizer build's kernel is unoptimised and instrumented, so whether a
            # batch pays there depends on how its timing at load came out: either way
            # every request is answered (checked above), by batches or inline.
            sanitized = "LD_PRELOAD" in kwharness.sanitizer_env(kw.keywayd_binary())
            if kernel == 1 and not sanitized:
                c.eq(lanes + fallbacks, float(nrsa),
                     "every RSA request batched or sent to OpenSSL")
                c.check(batches > 0, "the IFMA kernel runs here: pipelined requests made "
                        "batches (%s, %s lanes)" % (batches, lanes))
            elif kernel == 1:
                c.check(lanes + fallbacks in (0.0, float(nrsa)),
                        "sanitizer build: RSA requests all batched (%s lanes, %s to OpenSSL) "
                        "or all inline" % (lanes, fallbacks))
            else:
                c.eq(batches, 0.0, "no IFMA kernel here: no batch pays, none ran")
                c.eq(lanes + fallbacks, 0.0, "no batch pays: RSA requests are answered inline")

        with c.section("--rsa-batch off"):
            with kw.Keywayd(pki, keys_dir, tmp, workers=1, metrics=True,
                            extra=["--rsa-batch", "off"]) as kd:
                load(c, kd, keys, rsa_keys)
                batches, lanes, fallbacks, _ = counters(kd)
            c.eq((batches, lanes, fallbacks), (0.0, 0.0, 0.0), "--rsa-batch off: nothing batched")


if __name__ == "__main__":
    kw.run_main("keywayd --rsa-batch", main)
