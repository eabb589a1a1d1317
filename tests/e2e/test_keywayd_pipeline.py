#!/usr/bin/python3
"""Pipelining and connection handling: 256 mixed requests in one write, each
answered exactly once and correctly; more requests than the 1024 in-flight
limit; a client that writes thousands of requests before reading anything
(backpressure must not lose or duplicate answers); several connections at
once; idle connections closed after --idle-timeout while active ones stay."""

import os
import random
import threading
import time

import kwtest as kw


def build_batch(keys, n, rng):
    """n mixed requests with unique random ids: {id: (kind, key, op, payload)} and the bytes."""
    reqs = {}
    out = bytearray()
    ks = list(keys.values())
    while len(reqs) < n:
        id = rng.getrandbits(32)
        if id in reqs:
            continue
        r = rng.random()
        if r < 0.25:
            payload = os.urandom(rng.randrange(0, 64))
            reqs[id] = ("ping", None, kw.OP_PING, payload)
            out += kw.encode(kw.OP_PING, payload, id=id)
        elif r < 0.3:
            reqs[id] = ("error", None, kw.OP_RSA_SHA256, None)
            out += kw.encode(kw.OP_RSA_SHA256, bytes(32), ski=os.urandom(20), id=id)
        else:
            tk = rng.choice(ks)
            hname = rng.choice(["sha256", "sha384", "sha512", "md5sha1", "sha1"])
            op, payload = kw.sign_request(tk, hname, os.urandom(16))
            reqs[id] = ("sign", tk, op, payload)
            out += kw.encode(op, payload, ski=tk.ski, id=id)
    return reqs, bytes(out)


def check_answers(c, what, reqs, frames, verify=True):
    seen = {}
    wrong = []
    for f in frames:
        seen[f.id] = seen.get(f.id, 0) + 1
        r = reqs.get(f.id)
        if r is None:
            wrong.append("unexpected id %d" % f.id)
            continue
        kind, tk, op, payload = r
        if kind == "ping":
            if f.opcode != kw.OP_PONG or (f.payload or b"") != payload:
                wrong.append("id %d ping -> %s" % (f.id, kw.describe(f)))
        elif kind == "error":
            if f.error != kw.ERR_KEY_NOT_FOUND:
                wrong.append("id %d unknown SKI -> %s" % (f.id, kw.describe(f)))
        elif f.opcode != kw.OP_RESPONSE:
            wrong.append("id %d %s -> %s" % (f.id, tk.name, kw.describe(f)))
        elif verify:
            why = kw.verify_sig(tk, op, payload, f.payload)
            if why:
                wrong.append("id %d %s op 0x%02x: %s" % (f.id, tk.name, op, why))
    missing = [i for i in reqs if i not in seen]
    dups = [i for i, n in seen.items() if n > 1]
    c.check(not missing and not dups, "%s: each of %d requests answered exactly once" % (
        what, len(reqs)), "%d missing, %d duplicated" % (len(missing), len(dups)))
    c.check(not wrong, "%s: every answer correct for its id" % what,
            "; ".join(wrong[:5]) + (" (+%d more)" % (len(wrong) - 5) if len(wrong) > 5 else ""))


def pings(n, rng):
    reqs, out = {}, bytearray()
    while len(reqs) < n:
        id = rng.getrandbits(32)
        if id not in reqs:
            p = id.to_bytes(4, "big")
            reqs[id] = ("ping", None, kw.OP_PING, p)
            out += kw.encode(kw.OP_PING, p, id=id)
    return reqs, bytes(out)


def main(c):
    rng = random.Random(os.urandom(8))
    with kw.TempDir() as tmp:
        pki, keys_dir, keys = kw.setup(tmp, ["rsa2048", "p256", "p384", "ed25519"])
        with kw.Keywayd(pki, keys_dir, tmp, workers=2) as kd:
            with c.section("pipelining on one connection"):
                with kd.connect() as cl:
                    reqs, out = build_batch(keys, 256, rng)
                    frames = cl.pump(out, 256, timeout=30)
                    check_answers(c, "256 pipelined mixed requests in one write", reqs, frames)
                    closed, extra = cl.expect_closed(0.5)
                    c.check(not closed and not extra, "no extra frames after the 256 answers",
                            "closed=%s, %d extra bytes" % (closed, len(extra)))
                    c.check(all(not kw.check_response_shape(f) for f in frames),
                            "all 256 answers are 1024-byte padded frames")

                    reqs, out = pings(3000, rng)
                    frames = cl.pump(out, 3000, timeout=30)
                    check_answers(c, "3000 pipelined pings (beyond 1024 in flight)", reqs, frames)

                    # Backpressure: write for a second without reading, then read everything.
                    reqs, out = pings(6000, rng)
                    frames = cl.pump(out, 6000, timeout=40, read_delay=1.0)
                    check_answers(c, "6000 pings written before reading (backpressure)", reqs, frames)
                    c.check(kw.ping_ok(cl), "connection usable after the backpressure run")

            with c.section("four connections at once, each with its own pipelined batch"):
                results = {}

                def worker(i):
                    r = random.Random(i)
                    try:
                        with kd.connect() as cl:
                            reqs, out = build_batch(keys, 128, r)
                            results[i] = (reqs, cl.pump(out, 128, timeout=40), None)
                    except Exception as e:
                        results[i] = (None, None, e)

                threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(60)
                for i in range(4):
                    reqs, frames, err = results.get(i, (None, None, "thread did not finish"))
                    if err is not None:
                        c.fail("concurrent connection %d" % i, str(err))
                    else:
                        check_answers(c, "concurrent connection %d" % i, reqs, frames)
        c.eq(kd.returncode, 0, "keywayd exits 0 on SIGTERM")

        with c.section("idle timeout"):
            with kw.Keywayd(pki, keys_dir, tmp, extra=["--idle-timeout", "1"]) as kd:
                with kd.connect() as idle, kd.connect() as active:
                    t0 = time.monotonic()
                    alive = True
                    while time.monotonic() - t0 < 2.5:
                        alive = alive and kw.ping_ok(active)
                        time.sleep(0.3)
                    c.check(alive, "--idle-timeout 1: a connection pinging every 0.3 s stays open")
                    # 2.5 s in: past the idle timeout, well before the 5 s handshake
                    # timeout that governs a connection only until its handshake is done.
                    early, _ = idle.expect_closed(0.5)
                    c.check(early, "--idle-timeout 1: the idle timeout, not the handshake "
                            "timeout, applies once the handshake is done")
                    closed, got = idle.expect_closed(4.0)
                    c.check(closed and not got,
                            "--idle-timeout 1: an idle connection is closed",
                            "closed=%s got=%d bytes" % (closed, len(got)))
                    c.check(kw.ping_ok(active), "the active connection still works")
            c.eq(kd.returncode, 0, "keywayd exits 0 on SIGTERM")


if __name__ == "__main__":
    kw.run_main("keywayd pipelining", main)
