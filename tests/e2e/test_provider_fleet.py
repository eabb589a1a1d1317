"""Two keywayd behind the provider while signatures run continuously in four
threads (provider_fleet.c, every signature verified with the public key):

- one keywayd SIGKILLed: no operation fails; restarted on the same port, it
  signs again (its own request counter grows);
- one SIGSTOPped (silent, connections open) with timeout_ms=5000 and
  attempt_timeout_ms=300: no operation fails and the slowest one stays far
  below timeout_ms -- the attempt timeout and a second keyserver saved it,
  not the deadline; after SIGCONT it signs again;
- one drained with SIGTERM: no operation fails.
"""

import signal
import time

import kwfleet
import kwprov
import kwtest


def killed(c, f):
    acts = [(2, lambda: f.sigkill(f.b))]
    restarted = {}

    def restart():
        nb = f.keywayd(port=f.b.port)
        nb.start()
        restarted["kd"] = nb
        f.b = nb

    acts.append((3, restart))
    rep = f.run(8, acts)
    print("SIGKILL:\n" + rep.text())
    c.eq(rep.returncode, 0, "SIGKILL: the driver ran")
    c.check(rep.total is not None and rep.total[1] == 0 and rep.total[0] > 0,
            "SIGKILL: no operation failed (%s ok)" % (rep.total and rep.total[0]), rep.text())
    c.check(all(o > 0 for s, o, _, _, _ in rep.secs if s >= 2),
            "SIGKILL: signatures went on every second after the kill", rep.text())
    c.check(rep.stats is not None and rep.stats["retries"] >= 1,
            "SIGKILL: the operations it swallowed were retried (%s)" % rep.stats)
    nb = restarted.get("kd")
    c.check(nb is not None and kwfleet.sign_requests(nb) > 0,
            "SIGKILL: the keyserver restarted on the same port signs again (%s requests)" %
            (nb and kwfleet.sign_requests(nb)))


def stopped(c, f):
    seen = {}

    def stop():
        f.a.proc.send_signal(signal.SIGSTOP)

    def cont():
        f.a.proc.send_signal(signal.SIGCONT)

    def after_cont():
        seen["after_cont"] = kwfleet.sign_requests(f.a)

    rep = f.run(8, [(2, stop), (4, cont), (5, after_cont)],
                KEYWAY_TIMEOUT_MS="5000", KEYWAY_ATTEMPT_TIMEOUT_MS="300")
    print("SIGSTOP:\n" + rep.text())
    end = kwfleet.sign_requests(f.a)
    c.check(rep.total is not None and rep.total[1] == 0 and rep.total[0] > 0,
            "SIGSTOP: no operation failed (%s ok)" % (rep.total and rep.total[0]), rep.text())
    mx = rep.total[2] if rep.total else None
    print("SIGSTOP: slowest signature %s ms (attempt_timeout_ms 300, timeout_ms 5000)" % mx)
    c.check(mx is not None and mx < 5000,
            "SIGSTOP: every operation finished before timeout_ms (slowest %s ms): the retry "
            "saved them, not the deadline" % mx)
    c.check(rep.stats is not None and rep.stats["failovers"] >= 1,
            "SIGSTOP: failovers counted (%s)" % rep.stats)
    c.check("after_cont" in seen and end > seen["after_cont"],
            "SIGSTOP: after SIGCONT the keyserver signs again (%s -> %s requests)" % (
                seen.get("after_cont"), end))


def drained(c, f):
    def term():
        f.a.term_sent = True
        f.a.proc.send_signal(signal.SIGTERM)

    rep = f.run(9, [(2, term)])
    print("SIGTERM:\n" + rep.text())
    c.check(rep.total is not None and rep.total[1] == 0 and rep.total[0] > 0,
            "SIGTERM drain: no operation failed (%s ok)" % (rep.total and rep.total[0]),
            rep.text())
    rc = f.a.wait(10)
    c.eq(rc, 0, "SIGTERM drain: keywayd exited 0")
    print("drained keywayd's last words:\n" + "\n".join(f.a.stderr_text().splitlines()[-6:]))
    c.check(all(o > 0 for s, o, _, _, _ in rep.secs if s >= 2),
            "SIGTERM drain: signatures went on every second", rep.text())


def body(c):
    kwfleet.driver()
    with kwtest.TempDir("kw-fleet-") as tmp:
        with kwfleet.Fleet(tmp) as f:
            killed(c, f)
        with kwfleet.Fleet(tmp) as f:
            stopped(c, f)
        with kwfleet.Fleet(tmp) as f:
            drained(c, f)


if __name__ == "__main__":
    kwtest.run_main("provider_fleet", body)
