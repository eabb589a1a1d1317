#!/usr/bin/python3
"""keyway-bench against keywayd, one second per operation: --json output has
the documented fields, every operation runs without errors over mTLS and over
the Unix socket, --key accepts a certificate, a public or a private key, a key
the server doesn't hold is counted as errors (exit 1), and keywayd's metrics
agree with what the bench reports. Skipped (77) without KEYWAY_BENCH."""

import json
import os
import subprocess
import sys
import time
import urllib.request

from cryptography.hazmat.primitives import serialization

import kwtest as kw

FIELDS = ["ops", "errors", "seconds", "ops_per_sec", "p50_us", "p90_us", "p99_us", "p999_us"]


def bench(args, timeout=30):
    p = subprocess.run([os.environ["KEYWAY_BENCH"]] + args, stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=timeout)
    out, err = p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
    try:
        return p.returncode, json.loads(out), err
    except ValueError:
        return p.returncode, None, "stdout %r stderr %r" % (out[-300:], err[-300:])


def requests_metric(port, opcode):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith('keyless_requests{opcode="%s"}' % opcode):
                return float(line.split()[-1])
    return 0.0


def main(c):
    if not os.environ.get("KEYWAY_BENCH"):
        print("KEYWAY_BENCH not set: keyway-bench not built; skipping")
        sys.exit(77)
    with kw.TempDir() as tmp:
        pki, keys_dir, keys = kw.setup(tmp, ["rsa2048", "p256", "ed25519"])
        # --key forms: public key PEM, certificate, private key.
        pub = os.path.join(tmp, "p256.pub.pem")
        with open(pub, "wb") as f:
            f.write(keys["p256"].pub.public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
        _, rsa_cert = kw.make_leaf(pki.ca_key, pki.ca, "rsa.example", True, key=keys["rsa2048"].key)
        rsa_cert_file = kw.write_cert(os.path.join(tmp, "rsa.pem"), rsa_cert)
        ops = [("ping", keys["p256"].path, "OpPing"),
               ("rsa-pkcs1-sha256", rsa_cert_file, "OpRSASignSHA256"),
               ("rsa-pss-sha256", keys["rsa2048"].path, "OpRSAPSSSignSHA256"),
               ("ecdsa-sha256", pub, "OpECDSASignSHA256"),
               ("ed25519", keys["ed25519"].path, "OpEd25519Sign"),
               ("rsa-decrypt", keys["rsa2048"].path, "OpRSADecrypt")]
        with kw.Keywayd(pki, keys_dir, tmp, unix=True, metrics=True, workers=2) as kd:
            tls = ["--server", "127.0.0.1:%d" % kd.port, "--tls-cert", pki.client_cert_file,
                   "--tls-key", pki.client_key_file, "--ca", pki.ca_file]
            for op, keyfile, opname in ops:
                before = requests_metric(kd.metrics_port, opname)
                rc, j, err = bench(tls + ["--op", op, "--key", keyfile, "--connections", "2",
                                          "--depth", "16", "--duration", "1", "--verify-every",
                                          "8", "--json"])
                if not c.check(rc == 0 and j is not None, "bench %s over mTLS: exit 0, JSON" % op,
                               "rc=%s %s" % (rc, err)):
                    continue
                missing = [k for k in FIELDS if k not in j]
                c.check(not missing, "bench %s: JSON has %s" % (op, ", ".join(FIELDS)),
                        "missing %s in %s" % (missing, j))
                if missing:
                    continue
                c.check(j["ops"] > 0 and j["errors"] == 0,
                        "bench %s: %d ops (%.0f/s), no errors" % (op, j["ops"], j["ops_per_sec"]),
                        str(j))
                c.check(abs(j["ops_per_sec"] * j["seconds"] - j["ops"]) <= max(2, 0.02 * j["ops"]),
                        "bench %s: ops_per_sec = ops / seconds" % op, str(j))
                c.check(0 < j["p50_us"] <= j["p90_us"] <= j["p99_us"] <= j["p999_us"],
                        "bench %s: latency percentiles ordered" % op, str(j))
                time.sleep(0.1)
                after = requests_metric(kd.metrics_port, opname)
                c.check(after - before >= j["ops"],
                        "bench %s: keywayd counted at least the bench's %d ops (%d)" % (
                            op, j["ops"], after - before))

            for op, keyfile in [("ping", keys["p256"].path), ("ecdsa-sha256", keys["p256"].path)]:
                rc, j, err = bench(["--server", "unix:" + kd.unix_path, "--op", op, "--key", keyfile,
                                    "--duration", "1", "--json"])
                c.check(rc == 0 and j and j["ops"] > 0 and j["errors"] == 0,
                        "bench %s over the Unix socket" % op, "rc=%s %s %s" % (rc, j, err))

            stranger = os.path.join(tmp, "stranger.key")
            kw.write_key(stranger, kw.gen_key("p256"))
            rc, j, err = bench(tls + ["--op", "ecdsa-sha256", "--key", stranger, "--duration", "1",
                                      "--json"])
            c.check(rc == 1 and j is not None and j.get("errors", 0) > 0,
                    "bench with a key keywayd does not hold: errors counted, exit 1",
                    "rc=%s %s %s" % (rc, j, err[-200:]))
            c.check(kd.alive(), "keywayd still running after the bench runs")


if __name__ == "__main__":
    kw.run_main("keyway-bench against keywayd", main)
