#!/usr/bin/python3
"""Both /metrics pages as the real Prometheus reads them.

keywayd and keyway-proxy (keys on that keywayd) serve their pages after some
handshakes; `promtool check metrics` accepts both, except the missing `_total`
of the gokeyless-compatible counter names (keyless_*), kept for dashboards
written for gokeyless. Then a Prometheus server, a child of this test with its
own data directory and a 1 s scrape interval, scrapes both: its HTTP API must
report both targets up and show the signature and handshake counters moving
between two scrapes, and runs every query of docs/grafana-dashboard.json. Skipped (77) when Debian's prometheus package is absent.
"""

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request

import kwharness
import kwprov
import kwtest
from kwproxy import Checker, Proxy, concurrent_gets, skip_without_proxy

skip_without_proxy()
PROMTOOL, PROMETHEUS = shutil.which("promtool"), shutil.which("prometheus")
if not PROMTOOL or not PROMETHEUS:
    kwharness.skip("promtool/prometheus not installed (Debian package prometheus)")

c = Checker()
tmp = tempfile.mkdtemp(prefix="kw-prometheus-")
SIGN_COUNTER = 'keyless_requests{opcode=~"Op.*Sign.*"}'
HANDSHAKES = "keyway_proxy_handshakes_total"


def page(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10) as r:
        return r.read().decode()


def promtool_problems(text):
    """promtool's complaints about one exposition page, one per line."""
    out = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                         text=True, timeout=60)
    lines = [l for l in (out.stdout + out.stderr).splitlines() if l.strip()]
    return out.returncode, lines


def allowed(problem):
    """Only gokeyless' own counter names may lack the _total suffix."""
    name = problem.split()[0]
    return name.startswith("keyless_") and '"_total" suffix' in problem


def query(port, expr):
    url = "http://127.0.0.1:%d/api/v1/query?%s" % (port, urllib.parse.urlencode({"query": expr}))
    with urllib.request.urlopen(url, timeout=10) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise RuntimeError("query %s: %s" % (expr, body))
    return body["data"]["result"]


def scalar_sum(port, expr):
    res = query(port, "sum(%s)" % expr)
    return float(res[0]["value"][1]) if res else None


def dashboard_queries():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs",
                        "grafana-dashboard.json")
    with open(path) as f:
        dash = json.load(f)
    return [t["expr"] for panel in dash["panels"] for t in panel["targets"]]


def wait(cond, seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.5)
    return cond()


s = kwprov.Setup(tmp, names=("p256",))
s.kd = kwtest.Keywayd(s.pki, os.path.join(tmp, "keys"), tmp, metrics=True)
prom = None
try:
    with s:
        flags = ["--servers", s.server(), "--ca", s.pki.ca_file,
                 "--client-cert", s.pki.client_cert_file, "--client-key", s.pki.client_key_file]
        with Proxy(s.uris["p256"], s.certs["p256"], *flags) as p:
            errors = concurrent_gets(p.port, s.pki.ca_file, 2, 3)
            c.check(not errors, "handshakes through the proxy with a keyserver key", errors[:3])

            for name, port in (("keywayd", s.kd.metrics_port), ("keyway-proxy", p.mport)):
                rc, problems = promtool_problems(page(port))
                bad = [l for l in problems if not allowed(l)]
                c.check(not bad, "promtool check metrics accepts %s's page" % name, bad[:10])
                if not problems:
                    c.eq(rc, 0, "promtool exits 0 on %s's clean page" % name)

            pport = kwharness.free_port()
            cfg = os.path.join(tmp, "prometheus.yml")
            with open(cfg, "w") as f:
                f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                        "scrape_configs:\n"
                        "  - job_name: keywayd\n    static_configs:\n"
                        "      - targets: ['127.0.0.1:%d']\n"
                        "  - job_name: keyway-proxy\n    static_configs:\n"
                        "      - targets: ['127.0.0.1:%d']\n" % (s.kd.metrics_port, p.mport))
            log = open(os.path.join(tmp, "prometheus.log"), "w")
            prom = subprocess.Popen([PROMETHEUS, "--config.file", cfg,
                                     "--storage.tsdb.path", os.path.join(tmp, "tsdb"),
                                     "--web.listen-address", "127.0.0.1:%d" % pport],
                                    stdout=log, stderr=subprocess.STDOUT)

            def both_up():
                try:
                    r = query(pport, "up")
                except OSError:
                    return None
                up = {x["metric"]["job"]: x["value"][1] for x in r}
                return up if up.get("keywayd") == "1" and up.get("keyway-proxy") == "1" else None

            up = wait(both_up, 60)
            c.check(up, "Prometheus reports both targets up", up)

            def sample():
                try:
                    return scalar_sum(pport, SIGN_COUNTER), scalar_sum(pport, HANDSHAKES)
                except OSError:
                    return None, None

            before = wait(lambda: sample() if None not in sample() else None, 30)
            c.check(before, "Prometheus holds the signature and handshake counters", before)
            if before:
                errors = concurrent_gets(p.port, s.pki.ca_file, 2, 4)
                c.check(not errors, "more handshakes", errors[:3])
                after = wait(lambda: (lambda a: a if a[0] and a[1] and a[0] > before[0]
                                      and a[1] > before[1] else None)(sample()), 30)
                c.check(after, "signatures and handshakes moved between scrapes (%s -> %s)"
                        % (before, after))

            # The shipped Grafana dashboard: every query is valid PromQL over
            # metrics the two pages really have.
            pages = page(s.kd.metrics_port) + page(p.mport)
            for expr in dashboard_queries():
                try:
                    query(pport, expr.replace("$__rate_interval", "1m"))
                    ok, why = True, ""
                except (OSError, RuntimeError) as e:
                    ok, why = False, str(e)
                c.check(ok, "dashboard query runs: " + expr, why)
                names = [n for n in re.findall(r"\b(keyway_[a-z_]+|keyless_[a-z_]+)", expr)]
                missing = [n for n in names if re.sub(r"_(bucket|count|sum)$", "", n) not in pages]
                c.check(not missing, "dashboard query names served metrics: " + expr, missing)
finally:
    if prom:
        prom.terminate()
        try:
            prom.wait(timeout=20)
        except subprocess.TimeoutExpired:
            prom.kill()
    shutil.rmtree(tmp, ignore_errors=True)
c.done()
