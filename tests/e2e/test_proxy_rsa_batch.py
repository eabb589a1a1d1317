"""keyway-proxy --backend threads with multi-buffer RSA batches: concurrent
TLS 1.3 handshakes on a local RSA-2048 key whose signatures the crypto thread
computes in batches (each client's TLS stack verifies the CertificateVerify
signature with the certificate's public key: a handshake that completes is a
signature that verified), the batch counters in /metrics, --rsa-batch off,
and the lanes sent to OpenSSL when too few are queued to pay a batch.

KEYWAY_RSA_BATCH_MIN_LANES fixes the threshold the proxy would otherwise
measure, so the same counts hold on a CPU without AVX-512 IFMA (where a
batch computes its lanes with OpenSSL).
"""

import os
import shutil
import tempfile

from kwproxy import Checker, Proxy, concurrent_gets, make_cert, skip_without_proxy

skip_without_proxy()
c = Checker()
tmp = tempfile.mkdtemp(prefix="kw-proxy-rsa-batch-")
key, crt = make_cert(tmp, "rsa", "rsa")
CLIENTS, EACH = 8, 4
N = CLIENTS * EACH


def run_case(flag, min_lanes):
    env = dict(os.environ, KEYWAY_RSA_BATCH_MIN_LANES=str(min_lanes))
    with Proxy(key, crt, "--workers", "1", "--backend", "threads", "--rsa-batch", flag,
               env=env) as p:
        errors = concurrent_gets(p.port, crt, CLIENTS, EACH)
        m = p.metrics()
        c.eq(p.stop(), 0, "exit 0 on SIGTERM: --rsa-batch %s" % flag)
    what = "--rsa-batch %s, batches from %d lanes" % (flag, min_lanes)
    c.eq(errors, [], "every handshake completed, its signature verified: " + what)
    c.eq(m.get("keyway_proxy_handshakes_total"), float(N), "%d handshakes: %s" % (N, what))
    c.check(any(k.startswith("keyway_proxy_info") and 'rsa_batch="%s"' % flag in k for k in m),
            "keyway_proxy_info says rsa_batch=%s" % flag)
    return (m.get("keyway_proxy_rsa_batches_total"), m.get("keyway_proxy_rsa_batch_lanes_total"),
            m.get("keyway_proxy_rsa_batch_fallbacks_total"))


batches, lanes, fallbacks = run_case("on", 1)
c.check(batches is not None and 1 <= batches <= N, "batches ran: %s" % batches)
c.eq(lanes, float(N), "every signature was a lane of a batch")
c.eq(fallbacks, 0.0, "none went to OpenSSL alone")

batches, lanes, fallbacks = run_case("off", 1)
c.eq((batches, lanes, fallbacks), (0.0, 0.0, 0.0), "--rsa-batch off: no batch, no lane")

# Never worth it (9 lanes: more than a batch holds): every signature goes to OpenSSL.
batches, lanes, fallbacks = run_case("on", 9)
c.eq((batches, lanes, fallbacks), (0.0, 0.0, float(N)),
     "too few lanes: each signature computed by OpenSSL, counted")

shutil.rmtree(tmp, ignore_errors=True)
c.done()
