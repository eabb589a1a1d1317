"""`keyway ping` names the real cause when it cannot ask any keyserver: an
OpenSSL configuration file it cannot open (the file, where its name came from
and the OS error text), a syntax error in it (FILE:LINE), a keyway section that
exists but is not linked from `providers` (the section and the exact line to
add), a client certificate or key file that is missing (the file and the
setting that named it: its openssl.cnf key or KEYWAY_* variable). Each exits
non-zero with the cause on its first line; nothing is contacted.

KEYWAY_CLI names the binary; without it the test is skipped (exit 77).
"""

import os
import subprocess

import kwharness

INIT = "openssl_conf = init\n[init]\nproviders = provs\n[provs]\ndefault = dflt\n[dflt]\nactivate = 1\n"


def ping(cli, args, **env_over):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("KEYWAY_") and k != "OPENSSL_CONF"}
    env.update(env_over)
    rc, out = kwharness.run_once([cli, "ping"] + args, env=env)
    return rc, (out.splitlines() or [""])[0]


def body(c):
    cli = os.environ.get("KEYWAY_CLI")
    if not cli:
        kwharness.skip("KEYWAY_CLI not set")
    with kwharness.TempDir() as tmp:
        missing = os.path.join(tmp, "missing.cnf")
        rc, first = ping(cli, ["--openssl-conf", missing])
        c.check(rc == 1 and "--openssl-conf '%s': cannot open: No such file or directory" % missing
                in first, "--openssl-conf FILE that does not exist: named with errno text", first)
        rc, first = ping(cli, [], OPENSSL_CONF=missing)
        c.check(rc == 1 and "OPENSSL_CONF '%s': cannot open: No such file or directory" % missing
                in first, "OPENSSL_CONF naming a missing file: named with errno text", first)
        # A file that cannot be opened wins even when KEYWAY_SERVERS would do:
        # OpenSSL itself would fail on it.
        rc, first = ping(cli, ["--openssl-conf", missing], KEYWAY_SERVERS="unix:" + tmp + "/s")
        c.check(rc == 1 and "cannot open" in first, "unreadable config reported first", first)

        bad = os.path.join(tmp, "bad.cnf")
        with open(bad, "w") as f:
            f.write("openssl_conf = init\n[init]\nproviders = provs\n[provs\n")
        rc, first = ping(cli, ["--openssl-conf", bad])
        c.check(rc == 1 and ("%s:4: syntax error" % bad) in first,
                "a syntax error is named by FILE:LINE", first)

        unlinked = os.path.join(tmp, "unlinked.cnf")
        with open(unlinked, "w") as f:
            f.write(INIT + "[keyway_sect]\nmodule = keyway.so\nservers = 127.0.0.1:1\n")
        rc, first = ping(cli, ["--openssl-conf", unlinked])
        c.check(rc == 1 and "section [keyway_sect] is not linked from [provs]" in first and
                "add the line 'keyway = keyway_sect' to [provs]" in first,
                "an unlinked keyway section: which section and the line to add", first)
        named = os.path.join(tmp, "named.cnf")
        with open(named, "w") as f:
            f.write(INIT + "[keyway]\nservers = 127.0.0.1:1\n")
        rc, first = ping(cli, ["--openssl-conf", named])
        c.check(rc == 1 and "section [keyway] is not linked from [provs]" in first and
                "'keyway = keyway'" in first,
                "an unlinked section named keyway: the line to add", first)

        nocert = os.path.join(tmp, "nocert.cnf")
        cert = os.path.join(tmp, "client.pem")
        key = os.path.join(tmp, "client.key")
        with open(nocert, "w") as f:
            f.write(INIT.replace("default = dflt", "default = dflt\nkeyway = kw") +
                    "[kw]\nservers = 127.0.0.1:1\nca = %s\nclient_cert = %s\nclient_key = %s\n"
                    % (cert, cert, key))
        rc, first = ping(cli, ["--openssl-conf", nocert])
        c.check(rc == 1 and ("client_cert '%s': cannot open: No such file or directory" % cert)
                in first, "a missing client_cert: the file and the openssl.cnf key", first)
        rc, first = ping(cli, [], KEYWAY_SERVERS="127.0.0.1:1", KEYWAY_CA=cert,
                         KEYWAY_CLIENT_CERT=cert, KEYWAY_CLIENT_KEY=key, OPENSSL_CONF=named)
        c.check(rc == 1 and ("KEYWAY_CLIENT_CERT '%s': cannot open: No such file or directory"
                             % cert) in first,
                "a missing client certificate from the environment: the variable", first)
        with open(cert, "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
        rc, first = ping(cli, [], KEYWAY_SERVERS="127.0.0.1:1", KEYWAY_CA=cert,
                         KEYWAY_CLIENT_CERT=cert, KEYWAY_CLIENT_KEY=key, OPENSSL_CONF=named)
        c.check(rc == 1 and ("KEYWAY_CLIENT_KEY '%s': cannot open: No such file or directory"
                             % key) in first,
                "a missing client key: the file and the variable", first)
        # Both files there, the certificate not PEM: the setting, the file and plain words.
        subprocess.run(["openssl", "genpkey", "-algorithm", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-out", key], check=True,
                       capture_output=True, timeout=30)
        ca = os.path.join(tmp, "ca.pem")
        subprocess.run(["openssl", "req", "-x509", "-key", key, "-out", ca, "-subj", "/CN=ca",
                        "-days", "2"], check=True, capture_output=True, timeout=30)
        with open(cert, "w") as f:
            f.write("not a certificate\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEYWAY_")}
        env.update(KEYWAY_SERVERS="127.0.0.1:1", KEYWAY_CA=ca, KEYWAY_CLIENT_CERT=cert,
                   KEYWAY_CLIENT_KEY=key, OPENSSL_CONF=named)
        rc, out = kwharness.run_once([cli, "ping"], env=env)
        c.check(rc == 1 and "client_cert" in out and cert in out and
                "not a PEM certificate" in out and "routines" not in out,
                "a client certificate that is not PEM: named, in plain words", out)


kwharness.run_main("keyway ping causes", body)
