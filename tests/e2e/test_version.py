"""Every program answers --version with one line and exit 0: its name, Keyway's
version, the revision ("git HASH" or "package VERSION"), the OpenSSL library
it runs with and the features built in; --help lists --version. The keyway
tool answers both `keyway --version` and `keyway SUB --version`.

Standard library only, with kwharness for the checks. The programs come
from KEYWAYD, KEYWAY_PROXY, KEYWAY_CLI, KEYWAY_BENCH, KEYWAY_RELAY and KEYWAY_H3;
without KEYWAYD the test is skipped (exit 77).
"""

import os
import re
import subprocess
import sys

import kwharness

TIMEOUT = 20.0

LINE = re.compile(
    r"^(?P<name>[a-z0-9-]+) (?P<version>\d+\.\d+\.\d+) "
    r"\((?:git [0-9a-f]{7,40}|package [0-9A-Za-z.+~:-]+)\) "
    r"OpenSSL (?P<openssl>\d+\.\d+\.\d+\S*); features: (?P<features>\S.*)\n$"
)


def run(argv):
    return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT,
                          stdin=subprocess.DEVNULL)


def openssl_version():
    """The version of the library the programs load, as `openssl version -v` reports it."""
    p = run(["openssl", "version", "-v"])
    m = re.search(r"Library: OpenSSL (\S+)", p.stdout) or re.search(r"OpenSSL (\S+)", p.stdout)
    return m.group(1) if m else None


def main():
    if not os.environ.get("KEYWAYD"):
        kwharness.skip("KEYWAYD not set")
    c = kwharness.Checker("program --version")
    check = c.check
    programs = [("keywayd", os.environ["KEYWAYD"])]
    for name, env in (("keyway-proxy", "KEYWAY_PROXY"), ("keyway", "KEYWAY_CLI"),
                      ("keyway-bench", "KEYWAY_BENCH"), ("keyway-relay", "KEYWAY_RELAY"),
                      ("keyway-h3", "KEYWAY_H3")):
        if os.environ.get(env):
            programs.append((name, os.environ[env]))
        else:
            print("note: %s not set, %s not checked" % (env, name))
    ossl = openssl_version()
    versions = set()
    for name, path in programs:
        argvs = [[path, "--version"]]
        if name == "keyway":
            argvs.append([path, "ping", "--version"])
        else:
            # --version wins over anything that would fail, as --help does.
            argvs.append([path, "--no-such-option", "--version"])
        for argv in argvs:
            what = " ".join([name] + argv[1:])
            p = run(argv)
            check(p.returncode == 0, "%s exits 0 (got %d, stderr %r)" % (what, p.returncode,
                                                                            p.stderr))
            m = LINE.match(p.stdout)
            check(m is not None, "%s prints one version line: %r" % (what, p.stdout))
            check(p.stderr == "", "%s writes nothing to stderr" % what)
            if m is None:
                continue
            check(m.group("name") == name, "%s names itself (%s)" % (what, m.group("name")))
            check(ossl is None or m.group("openssl") == ossl,
                  "%s names the OpenSSL it runs with (%s, openssl says %s)"
                  % (what, m.group("openssl"), ossl))
            check("backend-keyless" in m.group("features"), "%s lists its features" % what)
            versions.add(p.stdout.split(" ", 1)[1])
        h = run([path, "--help"])
        check(h.returncode == 0 and "--version" in h.stdout, "%s --help lists --version" % name)
    check(len(versions) == 1, "every program prints the same version, revision and features")
    return c.verdict()


if __name__ == "__main__":
    sys.exit(main())
