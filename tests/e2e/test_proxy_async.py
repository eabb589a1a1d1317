"""keyway-proxy's asynchronous path with local keys: --backend threads wraps
the key as a keyway key, so the built-in provider turns each handshake's
signature into an op on the worker's crypto threads, paused inside the
handshake's ASYNC job. Every notification and polling mode, async on and
off, with concurrent clients, and counters proving which path ran --
pauses, wake-ups through the async queue or wait fds, polls by trigger, a
full backend and a bounded job pool. --backend inline is the baseline that
offloads nothing.
"""

import shutil
import tempfile

from kwproxy import Checker, Proxy, concurrent_gets, make_cert, skip_without_proxy

skip_without_proxy()
c = Checker()
tmp = tempfile.mkdtemp(prefix="kw-proxy-async-")
keys = {k: make_cert(tmp, k, k) for k in ("ec", "rsa", "rsa4096")}
CLIENTS, EACH = 16, 8
N = CLIENTS * EACH




def trig(m, t):
    return m['keyway_proxy_polls_total{trigger="%s"}' % t]


def scenario(what, kind, args, checks, offloaded=True):
    key, crt = keys[kind]
    with Proxy(key, crt, "--workers", "1", "--keepalive-timeout", "0", *args) as p:
        errors = concurrent_gets(p.port, crt, CLIENTS, EACH)
        c.check(not errors, "%s: %d handshakes, no errors" % (what, N), errors[:3])
        m = p.metrics()
        c.eq(m["keyway_proxy_handshakes_total"], float(N), what + ": handshakes counted")
        c.eq(m["keyway_provider_ops_submitted_total"], float(N if offloaded else 0),
             what + (": one offloaded op each" if offloaded else ": nothing offloaded"))
        c.eq(m['keyway_proxy_inflight_ops{kind="asym"}'], 0.0, what + ": none left in flight")
        for desc, ok in checks(m):
            c.check(ok, "%s: %s" % (what, desc), {k: v for k, v in m.items() if v and
                                                    ("poll" in k or "async" in k or "wait" in k)})
        c.eq(p.stop(), 0, what + ": clean exit")


def paused_all(m):
    return m["keyway_proxy_async_pauses_total"] >= N


for kind in ("ec", "rsa"):
    scenario("threads, callback, heuristic (%s)" % kind, kind, ["--backend", "threads"],
             lambda m: [("every handshake paused", paused_all(m)),
                        ("woken through the async queue, no fd",
                         m['keyway_proxy_async_wakeups_total{via="queue"}'] == N and
                         m['keyway_proxy_async_wakeups_total{via="fd"}'] == 0),
                        ("heuristic or wake-up polls only",
                         trig(m, "wakeup") + trig(m, "timeliness") + trig(m, "threshold") > 0
                         and trig(m, "busy") == 0),
                        ("polled ops == ops", m["keyway_proxy_polled_ops_total"] == N)])

scenario("threads, fd, heuristic", "ec", ["--backend", "threads", "--notify", "fd"],
         lambda m: [("woken through wait fds, no queue",
                     m['keyway_proxy_async_wakeups_total{via="fd"}'] == N and
                     m['keyway_proxy_async_wakeups_total{via="queue"}'] == 0)])
scenario("threads, callback, timer", "ec",
         ["--backend", "threads", "--poll", "timer", "--poll-interval-us", "300"],
         lambda m: [("timer polls only", trig(m, "timer") > 0 and trig(m, "wakeup") == 0 and
                     trig(m, "busy") == 0 and trig(m, "timeliness") == 0)])
scenario("threads, fd, busy", "ec", ["--backend", "threads", "--notify", "fd", "--poll", "busy"],
         lambda m: [("busy polls only", trig(m, "busy") > 0 and trig(m, "wakeup") == 0 and
                     trig(m, "timer") == 0)])
scenario("threads, threshold 1", "ec", ["--backend", "threads", "--poll-threshold", "1"],
         lambda m: [("threshold or timeliness polls",
                     trig(m, "threshold") + trig(m, "timeliness") > 0)])
# The backend must be the bottleneck by construction, whatever the machine:
# one crypto thread taking milliseconds per RSA-4096 signature, a ring of
# two, and sixteen clients whose own side of a handshake costs far less.
scenario("threads, 1 crypto thread, full ring", "rsa4096",
         ["--backend", "threads", "--crypto-threads", "1", "--ring-size", "2"],
         lambda m: [("backend full: connections waited for capacity",
                     m["keyway_proxy_capacity_waits_total"] > 0)])
scenario("threads, job pool of 1", "rsa4096", ["--backend", "threads", "--async-jobs", "1"],
         lambda m: [("connections waited for a job",
                     m["keyway_proxy_async_job_waits_total"] > 0)])
scenario("threads, async off (blocking offload)", "ec", ["--backend", "threads", "--async", "off"],
         lambda m: [("never paused", m["keyway_proxy_async_pauses_total"] == 0)])
scenario("inline, async on", "ec", ["--backend", "inline"],
         lambda m: [("no offload: never paused",
                     m["keyway_proxy_async_pauses_total"] == 0 and
                     m["keyway_proxy_polled_ops_total"] == 0)], offloaded=False)

shutil.rmtree(tmp)
c.done()
