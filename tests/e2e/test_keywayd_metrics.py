#!/usr/bin/python3
"""--metrics: Prometheus text on /metrics with gokeyless v1.17.6 names:
keyless_requests{opcode="<Go constant>"} counting what was sent, and the
keyless_request_exec_duration_per_opcode / keyless_request_total_duration_per_opcode
histograms by type and error with 15 buckets from 100 us doubling, plus +Inf."""

import os
import re
import time
import urllib.error
import urllib.request

import kwtest as kw

LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)(\s+\d+)?$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def scrape(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
        return r.status, r.headers.get("Content-Type", ""), r.read().decode()


def parse(text):
    """[(name, {labels}, value)] and {name: type}; raises on an unparsable line."""
    samples, types = [], {}
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split()
            if len(parts) >= 4 and parts[1] == "TYPE":
                types[parts[2]] = parts[3]
            continue
        m = LINE.match(line)
        if not m:
            raise ValueError("unparsable metrics line: %r" % line)
        labels = dict(LABEL.findall(m.group(2) or ""))
        samples.append((m.group(1), labels, float(m.group(3))))
    return samples, types


def value(samples, name, **labels):
    vals = [v for n, l, v in samples if n == name and all(l.get(k) == w for k, w in labels.items())]
    return sum(vals) if vals else None


def main(c):
    with kw.TempDir() as tmp:
        pki, keys_dir, keys = kw.setup(tmp, ["rsa2048", "p256", "ed25519"])
        rsa, p256, ed = keys["rsa2048"], keys["p256"], keys["ed25519"]
        with kw.Keywayd(pki, keys_dir, tmp, metrics=True, workers=2) as kd:
            status, ctype, text = scrape(kd.metrics_port)
            c.eq(status, 200, "GET /metrics answers 200")
            c.check(ctype.startswith("text/plain"), "Content-Type is text/plain (%s)" % ctype)
            try:
                parse(text)
                c.check(True, "exposition text parses")
            except ValueError as e:
                c.fail("exposition text parses", str(e))
            try:
                urllib.request.urlopen("http://127.0.0.1:%d/nope" % kd.metrics_port, timeout=5)
                c.fail("other paths answer 404")
            except urllib.error.HTTPError as e:
                c.eq(e.code, 404, "other paths answer 404")

            N_RSA, N_EC, N_ED, N_PING, N_ERR = 7, 5, 3, 4, 2
            with kd.connect() as cl:
                for i in range(N_RSA):
                    ok, f = kw.signs_with(cl, rsa, "sha256", b"m%d" % i)
                    if not ok:
                        c.fail("RSA signature for the metrics run", kw.describe(f))
                for i in range(N_EC):
                    kw.signs_with(cl, p256, "sha384", b"e%d" % i)
                for i in range(N_ED):
                    kw.signs_with(cl, ed, "sha256", b"d%d" % i)
                for i in range(N_PING):
                    kw.ping_ok(cl)
                for i in range(N_ERR):
                    cl.request(kw.OP_RSA_SHA256, bytes(32), ski=os.urandom(20))

            # Metrics may be recorded just after the answer is written: poll briefly.
            deadline = time.monotonic() + 3
            while True:
                status, ctype, text = scrape(kd.metrics_port)
                samples, types = parse(text)
                if value(samples, "keyless_requests", opcode="OpPing") == N_PING or \
                        time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            c.eq(types.get("keyless_requests"), "counter", "keyless_requests is a counter")
            c.eq(value(samples, "keyless_requests", opcode="OpRSASignSHA256"), N_RSA + N_ERR,
                 'keyless_requests{opcode="OpRSASignSHA256"} counts the RSA-SHA256 requests sent')
            c.eq(value(samples, "keyless_requests", opcode="OpECDSASignSHA384"), N_EC,
                 'keyless_requests{opcode="OpECDSASignSHA384"}')
            c.eq(value(samples, "keyless_requests", opcode="OpEd25519Sign"), N_ED,
                 'keyless_requests{opcode="OpEd25519Sign"}')
            c.eq(value(samples, "keyless_requests", opcode="OpPing"), N_PING,
                 'keyless_requests{opcode="OpPing"}')
            c.check(value(samples, "keyless_requests", opcode="OpRSASignSHA512") in (None, 0),
                    "no count for an opcode never sent")

            for h in ["keyless_request_exec_duration_per_opcode",
                      "keyless_request_total_duration_per_opcode"]:
                c.eq(types.get(h), "histogram", "%s is a histogram" % h)
                b = [(l, v) for n, l, v in samples if n == h + "_bucket"]
                c.check(b and all("type" in l and "error" in l and "le" in l for l, _ in b),
                        "%s_bucket has type, error and le labels" % h)
                rsa_ok = [(l, v) for l, v in b if l.get("type") == "rsa" and
                          l.get("error") == "no error"]
                les = sorted({l["le"] for l, _ in rsa_ok}, key=lambda s: float(s))
                want = [0.0001 * 2 ** i for i in range(15)]
                fin = [float(x) for x in les if x != "+Inf"]
                c.check(len(fin) == 15 and all(abs(a - w) < 1e-9 for a, w in zip(fin, want)) and
                        "+Inf" in les,
                        "%s: 15 buckets 100us..1.6384s doubling, plus +Inf" % h, "le=%s" % les)
                inf = value(samples, h + "_bucket", type="rsa", error="no error", le="+Inf")
                c.eq(inf, N_RSA, '%s{type="rsa",error="no error"} +Inf bucket counts the RSA '
                     'successes' % h)
                cnt = value(samples, h + "_count", type="rsa", error="no error")
                c.eq(cnt, N_RSA, "%s_count for rsa/no error" % h)
                vals = [v for l, v in sorted(rsa_ok, key=lambda lv: float(lv[0]["le"]))]
                c.check(vals == sorted(vals), "%s buckets are cumulative" % h)
                s = value(samples, h + "_sum", type="rsa", error="no error")
                c.check(s is not None and 0 < s < 10, "%s_sum is a plausible number of seconds "
                        "(%s)" % (h, s))
                c.eq(value(samples, h + "_count", type="ecdsa", error="no error"), N_EC,
                     "%s_count for ecdsa" % h)
                c.eq(value(samples, h + "_count", type="ed25519", error="no error"), N_ED,
                     "%s_count for ed25519" % h)
                errs = [l.get("error") for n, l, v in samples
                        if n == h + "_count" and l.get("type") == "rsa" and
                        l.get("error") != "no error" and v > 0]
                c.check(errs == ["key not found due to no matching SKI/SNI/ServerIP"],
                        "%s: the key-not-found requests carry error=\"key not found due to no "
                        "matching SKI/SNI/ServerIP\"" % h, "error labels %s" % errs)


if __name__ == "__main__":
    kw.run_main("keywayd metrics", main)
