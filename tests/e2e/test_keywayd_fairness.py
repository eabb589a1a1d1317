#!/usr/bin/python3
"""One pipelining client must not stall its worker: with a single worker, a
connection that pipelines ~200 RSA-4096 signatures (several ms each) at once
must not hold back a ping on another connection. Requests are served with a
CPU-time budget per connection per turn, so each ping waits for at most one
slice of the flood, not for the whole batch (before, about a second)."""

import os
import random
import threading
import time

import kwtest as kw

NSIGNS = 200
PING_BOUND = 0.150  # generous: the aim is 20 ms; without the time budget, ~1 s


def main(c):
    rng = random.Random(os.urandom(8))
    with kw.TempDir() as tmp:
        pki, keys_dir, keys = kw.setup(tmp, ["rsa4096"])
        tk = keys["rsa4096"]
        with kw.Keywayd(pki, keys_dir, tmp, workers=1) as kd:
            with kd.connect(timeout=60) as a, kd.connect() as b:
                c.check(kw.ping_ok(b), "the ping connection works before the flood")
                reqs, out = {}, bytearray()
                while len(reqs) < NSIGNS:
                    id = rng.getrandbits(32)
                    if id in reqs:
                        continue
                    op, payload = kw.sign_request(tk, "sha256", os.urandom(16))
                    reqs[id] = (op, payload)
                    out += kw.encode(op, payload, ski=tk.ski, id=id)

                got = {}

                def flood():
                    # Read the answers in bulk and parse them afterwards: per-frame work
                    # here would compete with the pinging thread for the interpreter.
                    a.send(bytes(out))
                    try:
                        a._fill(NSIGNS * kw.PADDED_LEN, time.monotonic() + 60)
                        for _ in range(NSIGNS):
                            f = a.recv_frame(1)
                            got[f.id] = f
                    except Exception as e:  # reported through the count below
                        got["error"] = e

                t = threading.Thread(target=flood)
                t0 = time.monotonic()
                t.start()
                time.sleep(0.02)  # let the flood reach keywayd first
                rtts = []
                while t.is_alive() and len(rtts) < 2000:
                    s = time.monotonic()
                    ok = kw.ping_ok(b, payload=os.urandom(8), timeout=10)
                    rtts.append(time.monotonic() - s)
                    if not ok:
                        c.fail("ping during the flood", "no matching pong")
                        break
                t.join(90)
                flood_s = time.monotonic() - t0

                err = got.pop("error", None)
                c.check(err is None and len(got) == NSIGNS,
                        "all %d pipelined RSA-4096 signatures answered" % NSIGNS,
                        "%d answered, error %s" % (len(got), err))
                bad = []
                for id, (op, payload) in reqs.items():
                    f = got.get(id)
                    if f is None:
                        continue
                    why = ("%s" % kw.describe(f) if f.opcode != kw.OP_RESPONSE
                           else kw.verify_sig(tk, op, payload, f.payload))
                    if why:
                        bad.append("id %d: %s" % (id, why))
                c.check(not bad, "every signature verifies for its request id", "; ".join(bad[:5]))
                # Enough pings must overlap the flood for the bound to mean something.
                c.check(len(rtts) >= 5, "pings were sent while the flood ran",
                        "%d pings in %.2f s" % (len(rtts), flood_s))
                worst = max(rtts) if rtts else 0.0
                print("     %d pings during a %.2f s flood, worst round trip %.1f ms" % (
                    len(rtts), flood_s, worst * 1000))
                c.check(worst < PING_BOUND,
                        "worst ping round trip during the flood below %d ms" % (PING_BOUND * 1000),
                        "worst %.1f ms over %d pings (flood %.2f s)" % (
                            worst * 1000, len(rtts), flood_s))
        c.eq(kd.returncode, 0, "keywayd exits 0 on SIGTERM")


if __name__ == "__main__":
    kw.run_main("keywayd fairness", main)
