"""kwfleet - helpers for the keyserver-fleet tests: two keywayd behind the
provider, the continuous-signature driver (provider_fleet.c, env
KEYWAY_FLEET_DRIVER) and what it reports each second.

A Fleet holds a kwprov.Setup (PKI, keys, certificates, references) and two
keywayd with metrics, A and B, on free ports. The driver signs through the
built-in provider with the Setup's KEYWAY_* environment; run() starts it,
calls the scenario's actions at the given seconds, and returns its report.
"""

import os
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.request

import kwharness
import kwprov
import kwtest

SEC = re.compile(r"^sec (\d+) ok (\d+) fail (\d+) max_ms ([\d.]+) fail_max_ms ([\d.]+)$")
TOTAL = re.compile(r"^total ok (\d+) fail (\d+) max_ms ([\d.]+) fail_max_ms ([\d.]+)$")
STATS = re.compile(r"^stats retries (\d+) failovers (\d+) fallbacks (\d+)$")


def driver():
    d = os.environ.get("KEYWAY_FLEET_DRIVER")
    if not d or not os.access(d, os.X_OK):
        kwprov.skip("KEYWAY_FLEET_DRIVER not set (got %r)" % d)
    return d


def sign_requests(kd):
    """keywayd's count of signing requests (pings excluded), from its metrics."""
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % kd.metrics_port, timeout=5) as r:
        text = r.read().decode()
    n = 0
    for line in text.splitlines():
        if line.startswith("keyless_requests{") and "Ping" not in line:
            n += int(float(line.rsplit(" ", 1)[1]))
    return n


class Report:
    def __init__(self):
        self.secs = []  # (sec, ok, fail, max_ms, fail_max_ms)
        self.total = None
        self.stats = None
        self.stderr = ""
        self.returncode = None

    def fails_from(self, sec):
        """Failures counted in seconds >= sec (the second an action ran in included)."""
        return sum(f for s, _, f, _, _ in self.secs if s >= sec)

    def ok_from(self, sec):
        return sum(o for s, o, _, _, _ in self.secs if s >= sec)

    def text(self):
        lines = ["sec %d ok %d fail %d max_ms %.1f fail_max_ms %.1f" % x for x in self.secs]
        return "\n".join(lines) + "\ntotal %r stats %r\n%s" % (self.total, self.stats,
                                                                self.stderr[-1500:])


class Fleet:
    def __init__(self, tmp, name="p256", unix_b=False, extra=()):
        """unix_b: B also listens on a Unix socket (f.b.unix_path)."""
        self.tmp = tmp
        self.name = name
        self.s = kwprov.Setup(tmp, names=(name,))
        self.keys_dir = os.path.join(tmp, "keys")
        self.a = self.keywayd(extra)
        self.b = self.keywayd(extra, unix=os.path.join(tmp, "kw-b-%d.sock" % time.monotonic_ns())
                              if unix_b else None)
        self.exe = driver()

    def keywayd(self, extra=(), port=None, unix=None):
        kd = kwtest.Keywayd(self.s.pki, self.keys_dir, self.tmp, metrics=True, workers=2,
                            extra=list(extra), unix=unix)
        if port is not None:  # the same address again, as a restarted keyserver has
            i = kd.args.index("--listen")
            kd.args[i + 1] = "127.0.0.1:%d" % port
            kd.port = port
        return kd

    def __enter__(self):
        self.a.start()
        self.b.start()
        return self

    def __exit__(self, *exc):
        for kd in (self.a, self.b):
            self.cont(kd)
            kd.stop()

    @staticmethod
    def addr(kd):
        return "127.0.0.1:%d" % kd.port

    @staticmethod
    def cont(kd):
        if kd.proc is not None and kd.proc.poll() is None:
            os.kill(kd.proc.pid, signal.SIGCONT)

    @staticmethod
    def sigkill(kd):
        """SIGKILL on purpose: not a crash to report."""
        kd.kill()

    def fallback_dir(self):
        """A directory holding this Setup's key (each Fleet makes keys of its own)."""
        d = os.path.join(self.tmp, "fallback-%d" % time.monotonic_ns())
        os.makedirs(d, mode=0o700)
        dst = os.path.join(d, self.name + ".key")
        shutil.copyfile(self.s.keys[self.name].path, dst)
        os.chmod(dst, 0o600)
        return d

    def run(self, seconds, actions=(), servers=None, threads=4, **env):
        """Runs the driver for `seconds`; actions: [(second, fn)], fn called once that second
        has begun (right after the driver reported second-1)."""
        over = {"KEYWAY_CONNECTIONS": "2"}
        over.update(env)
        e = self.s.env(servers=servers or "%s,%s" % (self.addr(self.a), self.addr(self.b)),
                       **over)
        kwharness.own_program_env(e)
        cmd = [self.exe, "--key", self.s.refs[self.name], "--pub", self.s.pubs[self.name],
               "--threads", str(threads), "--seconds", str(seconds)]
        p = kwharness.Process(cmd, what="provider_fleet", env=e, stdout=subprocess.PIPE,
                              stdin=subprocess.PIPE).start()
        rep = Report()
        todo = sorted(actions, key=lambda x: x[0])
        timer = threading.Timer(seconds + 60, p.proc.kill)
        timer.start()
        try:
            while todo and todo[0][0] <= 1:
                todo.pop(0)[1]()
            for line in p.proc.stdout:
                line = line.strip()
                m = SEC.match(line)
                if m:
                    sec = int(m.group(1))
                    rep.secs.append((sec, int(m.group(2)), int(m.group(3)),
                                     float(m.group(4)), float(m.group(5))))
                    while todo and todo[0][0] <= sec + 1:
                        todo.pop(0)[1]()
                    continue
                m = TOTAL.match(line)
                if m:
                    rep.total = (int(m.group(1)), int(m.group(2)), float(m.group(3)),
                                 float(m.group(4)))
                m = STATS.match(line)
                if m:
                    rep.stats = {"retries": int(m.group(1)), "failovers": int(m.group(2)),
                                 "fallbacks": int(m.group(3))}
            rep.returncode = p.wait(30)
        finally:
            timer.cancel()
            p.stop(signal.SIGKILL)
            rep.stderr = p.log_text()
        return rep
