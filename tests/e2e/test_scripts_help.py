"""Every scripts/*.sh and bench/*.sh answers --help (and -h) with its usage on
stdout and exit 0, without building, installing or starting anything.

The scripts are copied into a scratch tree (so anything they would create is
seen), and run with a PATH whose first directory holds stand-ins for the
tools a build or an install runs (cmake, ninja, apt-get, sudo, dpkg-query,
...): each stand-in records its name and fails. The check: exit 0, the
script's name and "usage" or its header on stdout, no stand-in called, no new
file or directory in the tree, done within a generous bound.

Standard library only, with kwharness for the checks.
"""

import glob
import os
import shutil
import stat
import subprocess

import kwharness

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
TIMEOUT = 20.0
# What a build, an install or a benchmark would run first.
STAND_INS = ["cmake", "ninja", "make", "apt-get", "apt", "sudo", "dpkg-query",
             "dpkg-buildpackage", "h2load", "nginx", "haproxy", "gnuplot", "taskset",
             "keywayd", "keyway-proxy", "keyway-bench", "keyway", "keyway-relay"]


def make_stand_ins(bindir, log):
    os.makedirs(bindir)
    for name in STAND_INS:
        path = os.path.join(bindir, name)
        with open(path, "w") as f:
            f.write("#!/bin/sh\necho %s >> '%s'\nexit 1\n" % (name, log))
        os.chmod(path, stat.S_IRWXU)


def tree(root):
    found = set()
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            found.add(os.path.relpath(os.path.join(d, n), root))
    return found


def body(c):
    with kwharness.TempDir() as tmp:
        repo = os.path.join(tmp, "repo")
        os.makedirs(repo)
        for sub in ("scripts", "bench"):
            shutil.copytree(os.path.join(ROOT, sub), os.path.join(repo, sub),
                            ignore=shutil.ignore_patterns("results", "keywayd"))
        log = os.path.join(tmp, "called")
        bindir = os.path.join(tmp, "bin")
        make_stand_ins(bindir, log)
        env = dict(os.environ, PATH=bindir + ":/usr/bin:/bin")
        scripts = sorted(glob.glob(os.path.join(repo, "scripts", "*.sh")) +
                         glob.glob(os.path.join(repo, "bench", "*.sh")))
        c.check(len(scripts) >= 10, "found the scripts", str(len(scripts)))
        for path in scripts:
            name = os.path.relpath(path, repo)
            if name == "bench/proxy-lib.sh":
                continue  # sourced by the benchmarks, not run
            for flag in ("--help", "-h"):
                before = tree(repo)
                try:
                    p = subprocess.run(["bash", path, flag], capture_output=True, text=True,
                                       timeout=TIMEOUT, env=env, cwd=repo,
                                       stdin=subprocess.DEVNULL)
                except subprocess.TimeoutExpired:
                    c.fail("%s %s: finished within %.0f s" % (name, flag, TIMEOUT))
                    continue
                c.eq(p.returncode, 0, "%s %s: exit 0" % (name, flag))
                base = os.path.basename(path)
                c.check(base in p.stdout and "\n" in p.stdout.strip(),
                        "%s %s: usage on stdout" % (name, flag), p.stdout + p.stderr)
                called = open(log).read().split() if os.path.exists(log) else []
                c.eq(called, [], "%s %s: no build, install or program run" % (name, flag))
                if os.path.exists(log):
                    os.unlink(log)
                new = sorted(tree(repo) - before)
                c.eq(new, [], "%s %s: nothing created" % (name, flag))


if __name__ == "__main__":
    kwharness.run_main("scripts --help", body)
