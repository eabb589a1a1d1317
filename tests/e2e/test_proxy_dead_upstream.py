"""keyway-proxy --upstream logs a dead upstream as a warning, rate limited.

Five clients in a row meet an upstream that refuses connections: the proxy
logs one warning naming the upstream (not five), and holds the others back
until 10 s have passed since the first; a client after that logs a second
warning counting the four held back.
"""

import re
import tempfile
import time

from kwproxy import Checker, Proxy, closed_by_peer, free_port, make_cert, skip_without_proxy, \
    tls_connect, wait_for

skip_without_proxy()
c = Checker()
tmp = tempfile.mkdtemp(prefix="kw-proxy-dead-")
key, crt = make_cert(tmp, "ec", "ec")
dead = free_port()
upstream = "127.0.0.1:%d" % dead


def warnings(p):
    return re.findall(r"upstream %s: [^\n]*" % re.escape(upstream), p.stderr())


with Proxy(key, crt, "--workers", "2", "--access-log", "off",
           mode=["--upstream", upstream]) as p:
    start = time.monotonic()
    for i in range(5):
        s = tls_connect(p.port, crt)
        c.check(closed_by_peer(s), "refused upstream: client %d closed" % i)
        s.close()
    first = time.monotonic() - start
    got = warnings(p)
    if first < 9:  # all five within one interval (generous: 10 s)
        c.eq(len(got), 1, "five refused connects inside 10 s: one warning")
    c.check(got and "refused" in got[0].lower(), "the warning says the connect was refused: %r"
            % got[:1])
    # After the interval, the next failure logs again with the count held back.
    time.sleep(max(0.0, 10.5 - (time.monotonic() - start)))
    s = tls_connect(p.port, crt)
    c.check(closed_by_peer(s), "refused upstream: client after 10 s closed")
    s.close()
    c.check(wait_for(lambda: len(warnings(p)) >= 2, 10), "a second warning after 10 s")
    got = warnings(p)
    if first < 9:
        c.check(len(got) == 2 and "4 more failures" in got[1],
                "the second warning counts the 4 held back: %r" % got)

c.done()
