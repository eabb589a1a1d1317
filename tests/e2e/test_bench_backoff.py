#!/usr/bin/python3
"""keyway-bench backs off when the keyserver answers with errors: against a
key keywayd does not hold (no matching SKI), 2 s with 4 connections of 64
requests in flight send fewer than 20,000 requests in all (keywayd's own
counter, not the bench's), instead of the hundreds of thousands a second it
sent before. The errors are counted and named (key not found), the back-off
is announced, and the exit status is 1. Then a good key on the same keywayd
runs without errors and more than twice the requests: good answers never
back off.
Skipped (77) without KEYWAY_BENCH."""

import json
import os
import subprocess
import sys
import urllib.request

import kwtest as kw

BOUND = 20000  # requests in 2 s: the bound (533k errors/s before)


def requests_total(port):
    """All keyless requests keywayd has counted, every opcode."""
    total = 0.0
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("keyless_requests{"):
                total += float(line.split()[-1])
    return total


def bench(args, timeout=30):
    p = subprocess.run([os.environ["KEYWAY_BENCH"]] + args, stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def main(c):
    if not os.environ.get("KEYWAY_BENCH"):
        print("KEYWAY_BENCH not set: keyway-bench not built; skipping")
        sys.exit(77)
    with kw.TempDir() as tmp:
        pki, keys_dir, keys = kw.setup(tmp, ["p256"])
        stranger = os.path.join(tmp, "stranger.key")
        kw.write_key(stranger, kw.gen_key("p256"))
        with kw.Keywayd(pki, keys_dir, tmp, unix=True, metrics=True, workers=1,
                        listen=False, base_args=["--keys", keys_dir]) as kd:
            load = ["--server", "unix:" + kd.unix_path, "--op", "ecdsa-sha256",
                    "--connections", "4", "--depth", "64", "--duration", "2"]
            before = requests_total(kd.metrics_port)
            rc, out, err = bench(load + ["--key", stranger])
            sent = bad = requests_total(kd.metrics_port) - before
            c.eq(rc, 1, "a key keywayd does not hold: exit 1")
            c.check(0 < sent < BOUND, "in 2 s keywayd saw %d requests (bound %d)" % (sent, BOUND),
                    err[-500:])
            c.check("key not found" in err, "the keyserver's error is named", err[-500:])
            c.check("backing off" in err, "the back-off is announced", err[-500:])
            c.check("keyserver error 0x" in err, "the errors are counted in the summary",
                    err[-500:])

            rc, out, err = bench(load + ["--key", stranger, "--json"])
            try:
                j = json.loads(out)
            except ValueError:
                j = {}
            c.check(0 < j.get("errors", 0) < BOUND and j.get("ops") == 0,
                    "--json: the errors counted, no ops", "%s %s" % (out, err[-300:]))

            rc, out, err = bench(load + ["--key", keys["p256"].path, "--json"])
            try:
                j = json.loads(out)
            except ValueError:
                j = {}
            c.check(rc == 0 and j.get("errors") == 0 and j.get("ops", 0) > 2 * bad,
                    "a key keywayd holds: no errors, no back-off, %d ops (> 2 x %d)" % (
                        j.get("ops", 0), bad),
                    "rc=%s %s %s" % (rc, out, err[-300:]))
            c.check(kd.alive(), "keywayd still running")


if __name__ == "__main__":
    kw.run_main("keyway-bench backs off on errors", main)
