"""The keyserver fleet's bad days, through the provider (provider_fleet.c
signing continuously, every signature verified; provider_async.c for TLS
handshakes):

- both keywayd down (SIGKILL, then SIGSTOP) without fallback keys: each
  operation fails cleanly, none takes longer than timeout_ms (+ slack);
- the same with fallback_keys: every operation succeeds, `fallbacks` counts
  them, one log line says so (not one per operation);
- a group-readable fallback key is refused, naming the setting and the fix;
- TCP and unix: keyservers mixed, the TCP one killed: every operation succeeds;
- keyway-relay at 5 ms (one keyserver killed meanwhile) and at 200 ms each
  way in front of both: every operation succeeds;
- TLS handshakes (external and internal polling, in ASYNC_JOBs) while one
  keyserver is killed: every handshake completes.
"""

import os
import re
import signal
import subprocess
import threading
import time

import kwfleet
import kwharness
import kwprov
import kwtest

TIMEOUT_MS = 1000
SLACK_MS = 1500  # a loaded CI machine's scheduling, not the provider's


def both_down(c, tmp, how, fallback):
    with kwfleet.Fleet(tmp) as f:
        def down():
            for kd in (f.a, f.b):
                if how == "SIGKILL":
                    f.sigkill(kd)
                else:
                    kd.proc.send_signal(signal.SIGSTOP)

        env = {"KEYWAY_TIMEOUT_MS": str(TIMEOUT_MS), "KEYWAY_ATTEMPT_TIMEOUT_MS": "300"}
        stats = os.path.join(tmp, "stats-%d" % time.monotonic_ns())
        env["KEYWAY_STATS_FILE"] = stats
        if fallback:
            env["KEYWAY_FALLBACK_KEYS"] = f.fallback_dir()
        rep = f.run(5, [(2, down)], **env)
        what = "both keyservers %s, %s fallback keys" % (how, "with" if fallback else "without")
        print(what + ":\n" + rep.text())
        if rep.total is None:
            c.fail(what + ": the driver reported", rep.text())
            return
        ok, fail, mx, fmx = rep.total
        if fallback:
            c.check(fail == 0 and rep.ok_from(3) > 0,
                    "%s: every operation succeeds, signatures verified (%d ok)" % (what, ok),
                    rep.text())
            st = kwprov.read_stats(stats)
            c.check(rep.stats["fallbacks"] > 0 and rep.stats["fallbacks"] <= ok and
                    st.get("fallbacks") == rep.stats["fallbacks"] and
                    st.get("retries") == rep.stats["retries"] and
                    st.get("failovers") == rep.stats["failovers"],
                    "%s: fallbacks counted (%d), KEYWAY_STATS_FILE agrees" % (
                        what, rep.stats["fallbacks"]), repr(st))
            c.check(mx < TIMEOUT_MS + SLACK_MS,
                    "%s: slowest operation %.0f ms, within timeout_ms=%d" % (what, mx,
                                                                             TIMEOUT_MS))
            n = len(re.findall(r"using the local fallback keys", rep.stderr))
            c.eq(n, 1, "%s: one log line on entering fallback" % what)
        else:
            c.check(rep.fails_from(3) > 0 and rep.ok_from(4) == 0,
                    "%s: operations fail (%d)" % (what, fail), rep.text())
            c.check(fmx < TIMEOUT_MS + SLACK_MS,
                    "%s: each failure is clean and bounded: slowest %.0f ms (timeout_ms=%d)" % (
                        what, fmx, TIMEOUT_MS), rep.text())
            c.check("keyserver" in rep.stderr and "kwp_key_op" in rep.stderr,
                    "%s: the failures say why" % what, rep.stderr[-800:])


def bad_fallback(c, tmp):
    with kwfleet.Fleet(tmp) as f:
        d = os.path.join(tmp, "fallback-open")
        os.makedirs(d, exist_ok=True)
        k = os.path.join(d, "p256.key")
        with open(f.s.keys["p256"].path, "rb") as src, open(k, "wb") as dst:
            dst.write(src.read())
        os.chmod(k, 0o644)
        rep = f.run(1, KEYWAY_FALLBACK_KEYS=d)
        c.check(rep.total is not None and rep.total[0] == 0 and rep.total[1] > 0,
                "group-readable fallback key: operations refused", rep.text())
        c.check("KEYWAY_FALLBACK_KEYS" in rep.stderr and "chmod 600" in rep.stderr,
                "group-readable fallback key: the error names the setting and the fix",
                rep.stderr[-800:])


def relays(c, tmp):
    with kwfleet.Fleet(tmp) as f:
        for delay in (5, 200):
            ra = kwprov.Relay(f.addr(f.a), delay)
            rb = kwprov.Relay(f.addr(f.b), delay)
            try:
                acts = [(2, lambda: f.sigkill(f.b))] if delay == 5 else []
                rep = f.run(4, acts, servers="%s,%s" % (ra.addr(), rb.addr()),
                            KEYWAY_SERVER_NAME="127.0.0.1")
                print("relay %d ms:\n%s" % (delay, rep.text()))
                c.check(rep.total is not None and rep.total[1] == 0 and rep.total[0] > 0,
                        "keyway-relay %d ms each way%s: every operation succeeds (%s ok, "
                        "slowest %s ms)" % (delay, ", one keyserver killed" if acts else "",
                                            rep.total and rep.total[0],
                                            rep.total and rep.total[2]), rep.text())
            finally:
                ra.stop()
                rb.stop()


def mixed(c, tmp):
    """servers mixes TCP and unix:; the TCP keyserver is killed."""
    with kwfleet.Fleet(tmp, unix_b=True) as f:
        rep = f.run(4, [(2, lambda: f.sigkill(f.a))],
                    servers="%s,unix:%s" % (f.addr(f.a), f.b.unix_path))
        print("TCP + unix:\n" + rep.text())
        c.check(rep.total is not None and rep.total[1] == 0 and rep.total[0] > 0 and
                rep.ok_from(3) > 0,
                "TCP and unix: keyservers, the TCP one SIGKILLed: every operation succeeds "
                "(%s ok)" % (rep.total and rep.total[0]), rep.text())


def handshakes(c, tmp):
    exe = os.environ.get("KEYWAY_ASYNC_DRIVER")
    if not exe or not os.access(exe, os.X_OK):
        print("KEYWAY_ASYNC_DRIVER not set: handshakes skipped")
        return
    for mode, args, over in (("external polling", ["--backend", "keyless"],
                              {"KEYWAY_POLLING": "external"}),
                             ("internal polling", [], {})):
        with kwfleet.Fleet(tmp) as f:
            s = f.s
            n = 1000
            cmd = [exe, "--key", s.refs["p256"], "--cert", s.certs["p256"], "--ca",
                   s.pki.ca_file, "-n", str(n), "-c", "32"] + args
            env = s.env(servers="%s,%s" % (f.addr(f.a), f.addr(f.b)), **over)
            kwharness.own_program_env(env)
            t = threading.Timer(0.3, lambda: f.sigkill(f.b))
            t0 = time.monotonic()
            t.start()
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)
            t.cancel()
            dt = time.monotonic() - t0
            lines = dict(l.split(" ", 1) for l in p.stdout.splitlines() if " " in l)
            kwharness.note_output("provider_async", p.stderr, p.returncode)
            c.check(p.returncode == 0 and lines.get("done", "").startswith("%d failed 0" % n),
                    "TLS handshakes (%s, in ASYNC_JOBs) with a keyserver SIGKILLed after 0.3 s "
                    "of %.1f s: every one completes (%s)" % (mode, dt, lines.get("done")),
                    p.stdout[-1000:] + p.stderr[-1000:])
            if dt <= 0.3:
                print("note: the handshakes were done before the kill (%.1f s)" % dt)


def body(c):
    kwfleet.driver()
    with kwtest.TempDir("kw-fleet-down-") as tmp:
        for how in ("SIGKILL", "SIGSTOP"):
            both_down(c, tmp, how, fallback=False)
            both_down(c, tmp, how, fallback=True)
        bad_fallback(c, tmp)
        mixed(c, tmp)
        relays(c, tmp)
        handshakes(c, tmp)


if __name__ == "__main__":
    kwtest.run_main("provider_fleet_down", body)
