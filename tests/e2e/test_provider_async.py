"""The keyway provider inside OpenSSL's ASYNC_JOBs.

- `openssl s_server -async` (fd mode) with RSA and ECDSA keyway keys: many
  handshakes, each completes; KEYWAY_STATS_FILE shows the pauses and the
  eventfd wake-ups. (s_server re-calls SSL_accept in a loop while a job
  waits: a storm of spurious resumes, each of which must pause again.)
- provider_async (tests/e2e/provider_async.c): many concurrent handshakes
  in SSL_MODE_ASYNC in one thread, through a keyway-relay adding 2.5 ms
  each way, in callback mode (SSL_CTX_set_async_callback) and fd mode:
  every handshake completes, callback_wakeups == pauses - spurious_resumes
  - eagain and eventfds_created == 0 in callback mode; spurious resumes
  forced (SSL_do_handshake called again at once) and a full backend forced
  (max_inflight 2) with both paths counted; servers freed while their job
  is paused (as HAProxy does; in callback mode also while waiting in the
  capacity queue) without harm -- no callback for a freed SSL -- and the
  process's open descriptors back to where they were;
- the same driver with the provider built in and polling = external: a
  keyless backend bound to the thread (on the driver's own loop), a threads
  backend with a wrapped local key (a 2-slot ring: full), the inline
  backend, and a wrapped key with no backend;
- TLS 1.2 RSA key exchange: the premaster decrypted asynchronously.
"""

import os
import socket
import ssl
import subprocess
import time

import kwharness
import kwprov
import kwtest

N = 300


def driver():
    d = os.environ.get("KEYWAY_ASYNC_DRIVER")
    if not d or not os.access(d, os.X_OK):
        kwprov.skip("KEYWAY_ASYNC_DRIVER not set (got %r)" % d)
    return d


def s_server_async(c, s, name, n):
    stats = os.path.join(s.tmp, "stats-s_server-%s" % name)
    port = kwprov.free_port()
    cmd = [kwprov.OPENSSL, "s_server"] + s.provider_args() + [
        "-accept", "127.0.0.1:%d" % port, "-key", s.refs[name], "-cert", s.certs[name],
        "-naccept", str(n), "-async"]
    log_path = os.path.join(s.tmp, "s_server-async-%s.log" % name)
    srv = kwharness.Process(cmd, env=s.env(KEYWAY_STATS_FILE=stats), log=log_path,
                            stdin=subprocess.PIPE).start()
    ok = 0
    try:
        srv.wait_ready(lambda: "ACCEPT" in srv.log_text(), 10)
        ctx = ssl.create_default_context(cafile=s.pki.ca_file)
        for _ in range(n):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=20) as so:
                    with ctx.wrap_socket(so, server_hostname="localhost") as t:
                        t.sendall(b"hello\n")
                        ok += 1
            except (OSError, ssl.SSLError) as e:
                c.fail("s_server -async %s: handshake failed: %s" % (name, e))
                break
        srv.proc.stdin.close()
        srv.wait(30)
    finally:
        srv.kill()  # s_server is not ours: its exit code is not held to 0
    st = kwprov.read_stats(stats)
    out = srv.log_text()
    c.check(ok == n, "s_server -async %s: %d of %d handshakes complete" % (name, ok, n),
            out[-800:])
    c.check(sorted(st) == sorted(kwprov.STATS_NAMES),
            "s_server -async %s: KEYWAY_STATS_FILE has the ten counters" % name, repr(st))
    c.check(st.get("ops_submitted", 0) >= n and st.get("pauses", 0) >= n,
            "s_server -async %s: every handshake paused (%s)" % (name, st))
    c.check(st.get("fd_wakeups", 0) >= n and st.get("eventfds_created", 0) >= 1 and
            st.get("callback_wakeups", -1) == 0,
            "s_server -async %s: fd mode, woken through eventfds" % name)
    c.eq(st.get("pauses", 0) - st.get("spurious_resumes", 0) - st.get("eagain", 0),
         st.get("fd_wakeups", -1), "s_server -async %s: one wake-up per pause that "
         "was not spurious" % name)


def run_driver(c, s, what, args, servers, env_over=None, builtin=False, local=None,
               name="p256", n=N):
    stats = os.path.join(s.tmp, "stats-%d" % time.monotonic_ns())
    cmd = [driver(), "--cert", s.certs[name], "--ca", s.pki.ca_file, "-n", str(n)]
    cmd += ["--key", s.keys[name].path, "--local"] if local else ["--key", s.refs[name]]
    if not builtin and not local:
        cmd += ["--provider-dir", s.prov_dir]
    cmd += args
    over = {"KEYWAY_STATS_FILE": stats, "KEYWAY_CONNECTIONS": "1"}
    over.update(env_over or {})
    env = s.env(servers=servers, **over)
    if (builtin or local) and "--abandon" not in args and "LD_PRELOAD" in env:
        # Our own program, sanitizer built in: hold it to leak checks too.
        env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=1"
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)
    dt = time.monotonic() - t0
    lines = dict(l.split(" ", 1) for l in p.stdout.splitlines() if " " in l)
    st = kwprov.read_stats(stats)
    detail = "exit %d\n" % p.returncode + p.stdout[-1500:] + p.stderr[-1500:] + \
        "\nstats: %r" % st
    c.check(p.returncode == 0, "%s: every handshake completes (%.1f s: %s)" % (
        what, dt, lines.get("done", "?")), detail)
    fds = lines.get("fds", "").split()
    c.check(len(fds) == 2 and fds[0] == fds[1],
            "%s: open descriptors back to where they were (%s)" % (what, " -> ".join(fds)),
            detail)
    return st, lines, detail


def body(c):
    driver()
    with kwtest.TempDir("kw-prov-async-") as tmp, \
            kwprov.Setup(tmp, names=("rsa2048", "p256")) as s:
        c.section("openssl s_server -async")
        for name in ("rsa2048", "p256"):
            s_server_async(c, s, name, 100)

        relay = kwprov.Relay(s.server(), 2.5)
        try:
            slow = relay.addr()
            c.section("internal polling, callback mode")
            st, _, d = run_driver(c, s, "callback mode", ["-c", "50"], slow)
            c.check(st.get("pauses", 0) >= N and st.get("eventfds_created", -1) == 0 and
                    st.get("fd_wakeups", -1) == 0, "callback mode: paused, no eventfd", d)
            c.eq(st.get("callback_wakeups"), st.get("pauses", 0) - st.get("spurious_resumes", 0)
                 - st.get("eagain", 0), "callback mode: callback_wakeups == pauses - "
                 "spurious_resumes - eagain")

            st, _, d = run_driver(c, s, "callback mode, spurious resumes, full backend",
                                  ["-c", "50", "--spurious"], slow,
                                  {"KEYWAY_MAX_INFLIGHT": "2"})
            c.check(st.get("spurious_resumes", 0) > 0 and st.get("eagain", 0) > 0,
                    "callback mode: spurious resumes and full-backend waits both happened", d)
            c.eq(st.get("callback_wakeups"), st.get("pauses", 0) - st.get("spurious_resumes", 0)
                 - st.get("eagain", 0), "callback mode, spurious + full: callback_wakeups == "
                 "pauses - spurious_resumes - eagain")
            c.eq(st.get("eventfds_created"), 0, "callback mode: no eventfd created")

            c.section("internal polling, fd mode")
            st, _, d = run_driver(c, s, "fd mode, spurious resumes, full backend",
                                  ["-c", "50", "--notify", "fd", "--spurious"], slow,
                                  {"KEYWAY_MAX_INFLIGHT": "2"})
            c.check(st.get("fd_wakeups", 0) >= N and st.get("callback_wakeups", -1) == 0 and
                    st.get("eventfds_created", 0) > 0 and st.get("eagain", 0) > 0 and
                    st.get("spurious_resumes", 0) > 0, "fd mode: eventfd wake-ups, spurious "
                    "resumes and full-backend waits", d)
            c.eq(st.get("fd_wakeups"), st.get("pauses", 0) - st.get("spurious_resumes", 0)
                 - st.get("eagain", 0), "fd mode: fd_wakeups == pauses - spurious_resumes - "
                 "eagain")
            st, lines, d = run_driver(c, s, "fd mode, 40 servers freed while paused",
                                      ["-c", "50", "--notify", "fd", "--abandon", "40",
                                       "--spurious"], slow, {"KEYWAY_MAX_INFLIGHT": "3"})
            c.check(lines.get("done", "").startswith("%d failed 0 abandoned 40" % (N - 40)),
                    "fd mode: the others complete after 40 paused jobs were abandoned", d)
            # Callback mode has no descriptor to close, but the same teardown: a
            # server freed while its job waits for a slot (or for its answer) must
            # never be called back, and a slot handed to it passes on.
            st, lines, d = run_driver(c, s, "callback mode, 20 servers freed in the capacity "
                                      "queue", ["-c", "40", "--notify", "cb", "--abandon", "20",
                                                "--abandon-waiting"], slow,
                                      {"KEYWAY_MAX_INFLIGHT": "2"}, n=40)
            c.check(lines.get("done", "").startswith("20 failed 0 abandoned 20") and
                    lines.get("late_callbacks") == "0",
                    "callback mode: no callback for a freed SSL; the others complete", d)
            c.eq(st.get("eventfds_created"), 0, "callback mode, freed SSLs: no eventfd created")
            st, lines, d = run_driver(c, s, "callback mode, 40 servers freed while paused",
                                      ["-c", "50", "--notify", "cb", "--abandon", "40",
                                       "--spurious"], slow, {"KEYWAY_MAX_INFLIGHT": "3"})
            c.check(lines.get("done", "").startswith("%d failed 0 abandoned 40" % (N - 40)) and
                    lines.get("late_callbacks") == "0",
                    "callback mode: the others complete after 40 paused jobs were abandoned", d)

            c.section("blocking callers (no job), several threads, max_inflight 1")
            st, _, d = run_driver(c, s, "8 threads blocking, max_inflight 1",
                                  ["--sync-threads", "8"], slow, {"KEYWAY_MAX_INFLIGHT": "1"},
                                  n=100)
            c.check(st.get("ops_submitted") == 101 and st.get("pauses") == 1,
                    "blocking callers: 100 ops, none paused (the warm-up's only)", d)

            c.section("TLS 1.2 RSA key exchange (decryption)")
            for notify in ("cb", "fd"):
                st, _, d = run_driver(c, s, "RSA key exchange, %s mode" % notify,
                                      ["-c", "30", "--tls12", "AES128-GCM-SHA256", "--spurious",
                                       "--notify", notify], slow, name="rsa2048", n=100)
                # Each decryption paused at least once; a forced early resume is spurious
                # unless the answer beat it (possible on a loaded machine), so only some are.
                sp = st.get("spurious_resumes", 0)
                c.check(st.get("pauses", 0) - sp >= 100 and sp > 0,
                        "RSA key exchange, %s mode: each decryption paused" % notify, d)

            c.section("external polling, built in")
            ext = {"KEYWAY_POLLING": "external", "KEYWAY_MAX_INFLIGHT": "3"}
            for notify in ("cb", "fd"):
                st, lines, d = run_driver(
                    c, s, "external keyless backend, %s mode" % notify,
                    ["-c", "50", "--backend", "keyless", "--spurious", "--notify", notify], slow,
                    ext, builtin=True)
                c.eq(lines.get("backend_submitted"), str(N + 1),
                     "external keyless, %s: every op went through the thread's backend" % notify)
                woken = st.get("callback_wakeups" if notify == "cb" else "fd_wakeups")
                c.check(st.get("eagain", 0) > 0 and st.get("spurious_resumes", 0) > 0 and
                        woken == st.get("pauses", 0) - st.get("spurious_resumes", 0) -
                        st.get("eagain", 0), "external keyless, %s: full backend and spurious "
                        "resumes, one wake-up per genuine pause" % notify, d)
            st, lines, d = run_driver(c, s, "wrapped local key, threads backend (2-slot ring)",
                                      ["-c", "50", "--backend", "threads", "--ring", "2",
                                       "--spurious"], slow, ext, local=True)
            c.eq(lines.get("backend_submitted"), str(N + 1),
                 "threads backend: every op went to the crypto thread")
            c.check(st.get("eagain", 0) > 0 and st.get("callback_wakeups") ==
                    st.get("pauses", 0) - st.get("spurious_resumes", 0) - st.get("eagain", 0),
                    "threads backend: full ring waits, one wake-up per genuine pause", d)
            run_driver(c, s, "wrapped local key, threads backend, fd mode, paused jobs freed",
                       ["-c", "50", "--backend", "threads", "--ring", "2", "--notify", "fd",
                        "--abandon", "20"], slow, ext, local=True)
            st, _, d = run_driver(c, s, "wrapped local key, inline backend",
                                  ["-c", "10", "--backend", "inline"], slow, ext, local=True,
                                  n=50)
            c.check(st.get("pauses", -1) == 0 and st.get("ops_submitted", 0) == 51,
                    "inline backend: computed at once, never paused", d)
            run_driver(c, s, "wrapped RSA key, no backend bound",
                       ["-c", "10", "--tls12", "AES128-GCM-SHA256"], slow, ext, local=True,
                       name="rsa2048", n=50)
        finally:
            relay.stop()


if __name__ == "__main__":
    kwtest.run_main("provider_async", body)
