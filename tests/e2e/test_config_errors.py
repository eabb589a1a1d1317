"""A bad value in a config file is named by FILE:LINE and its key on the first
line of output, for every program and for values the program checks after
parsing (addresses) as well as those the parser checks (numbers, booleans,
choices). The same value given as a flag is named by the flag. Exit status 2,
nothing started.

Standard library only. The programs come from KEYWAYD, KEYWAY_PROXY and
KEYWAY_RELAY; without KEYWAYD the test is skipped (exit 77).
"""

import os

import kwharness

# program env var, the other flags it needs to get as far as the bad value, the bad
# config line (line 2 of the file), the key it must name.
CASES = [
    ("KEYWAYD", ["--keys", "{tmp}", "--unix", "{tmp}/s.sock"], "listen = 24543", "listen"),
    ("KEYWAYD", ["--keys", "{tmp}", "--unix", "{tmp}/s.sock"], "metrics = unix:/x", "metrics"),
    ("KEYWAYD", ["--keys", "{tmp}"], "workers = 010x", "workers"),
    ("KEYWAY_PROXY", ["--cert", "{tmp}/c.pem", "--key", "{tmp}/k.pem", "--respond"],
     "listen = 24543", "listen"),
    ("KEYWAY_PROXY", ["--cert", "{tmp}/c.pem", "--key", "{tmp}/k.pem", "--listen",
                      "127.0.0.1:0"], "upstream = 127.0.0.1", "upstream"),
    ("KEYWAY_PROXY", ["--cert", "{tmp}/c.pem", "--key", "{tmp}/k.pem"], "async = maybe",
     "async"),
    ("KEYWAY_RELAY", ["--to", "127.0.0.1:1"], "listen = 24543", "listen"),
]


def body(c):
    if not os.environ.get("KEYWAYD"):
        kwharness.skip("KEYWAYD not set")
    with kwharness.TempDir() as tmp:
        for env, flags, line, key in CASES:
            prog = os.environ.get(env)
            if not prog:
                print("note: %s not set, case '%s' not run" % (env, line))
                continue
            conf = os.path.join(tmp, "x.conf")
            with open(conf, "w") as f:
                f.write("# a comment on line 1\n%s\n" % line)
            args = [prog] + [a.format(tmp=tmp) for a in flags] + ["--config", conf]
            rc, out = kwharness.run_once(args)
            name = "%s with '%s'" % (os.path.basename(prog), line)
            c.eq(rc, 2, "%s exits 2" % name)
            first = out.splitlines()[0] if out else ""
            c.check(("%s:2: %s: " % (conf, key)) in first,
                    "%s names %s:2 and '%s' on its first line" % (name, conf, key), first)
            # The same value as a flag is named by the flag.
            k, v = [s.strip() for s in line.split("=", 1)]
            args = [prog] + [a.format(tmp=tmp) for a in flags] + ["--%s=%s" % (k, v)]
            rc, out = kwharness.run_once(args)
            first = out.splitlines()[0] if out else ""
            c.eq(rc, 2, "%s as a flag exits 2" % name)
            c.check(("--%s: " % key) in first, "%s as a flag names --%s" % (name, key), first)


kwharness.run_main("config errors", body)
