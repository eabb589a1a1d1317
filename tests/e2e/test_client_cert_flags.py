"""One flag name for the client certificate across the tools: keyway-proxy,
keyway-bench and keyway ping all take --client-cert FILE --client-key FILE
(--ca FILE for the keyservers' CA), as the provider's client_cert/client_key
settings are named; keyway-bench still accepts its older --tls-cert and
--tls-key. Checked against a keywayd over mutual TLS: keyway-bench under both
names, keyway ping with the certificate only on its command line (the
provider's settings carry none: without the flags it fails).

Needs KEYWAY_BENCH, KEYWAY_CLI and KEYWAY_PROVIDER_DIR (skipped, 77, without).
"""

import os
import subprocess

import kwharness
import kwprov
import kwtest

TIMEOUT = 30


def run(argv, env=None):
    return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, env=env,
                          stdin=subprocess.DEVNULL)


def main(c):
    bench = os.environ.get("KEYWAY_BENCH")
    if not bench:
        kwharness.skip("KEYWAY_BENCH not set")
    proxy = os.environ.get("KEYWAY_PROXY")
    with kwtest.TempDir("kw-flags-") as tmp, kwprov.Setup(tmp, names=("p256",)) as s:
        helps = [("keyway-bench", [bench, "--help"]), ("keyway ping", [s.cli, "ping", "--help"])]
        if proxy:
            helps.append(("keyway-proxy", [proxy, "--help"]))
        for name, argv in helps:
            out = run(argv).stdout
            c.check("--client-cert FILE" in out and "--client-key FILE" in out and
                    "--ca FILE" in out, "%s --help: --client-cert, --client-key, --ca" % name,
                    out)

        pki = s.pki
        cert = ["--client-cert", pki.client_cert_file, "--client-key", pki.client_key_file]
        old = ["--tls-cert", pki.client_cert_file, "--tls-key", pki.client_key_file]
        load = ["--server", s.server(), "--ca", pki.ca_file, "--op", "ecdsa-sha256", "--key",
                s.keys["p256"].path, "--duration", "1", "--depth", "4"]
        for what, flags in (("--client-cert/--client-key", cert),
                            ("the old --tls-cert/--tls-key", old)):
            r = run([bench] + flags + load)
            c.eq(r.returncode, 0, "keyway-bench with %s: exit 0" % what)
            if r.returncode != 0:
                print(r.stderr[-500:])
        r = run([bench, "--client-cert", pki.client_cert_file] + load)
        c.check(r.returncode == 2 and "--client-cert and --client-key go together" in r.stderr,
                "keyway-bench: --client-cert alone is refused by its name", r.stderr[-300:])

        # The provider's settings name the keyserver and CA but no client certificate.
        env = s.env(KEYWAY_CLIENT_CERT=None, KEYWAY_CLIENT_KEY=None)
        r = s.run_cli(["ping"], env=env)
        c.check(r.returncode == 1 and "FAIL" in r.stdout,
                "keyway ping without a client certificate fails", r.stdout + r.stderr)
        r = s.run_cli(["ping"] + cert, env=env)
        c.check(r.returncode == 0 and r.stdout.startswith("ok "),
                "keyway ping --client-cert --client-key: ok", r.stdout + r.stderr)
        env = s.env(KEYWAY_CA=None)
        r = s.run_cli(["ping", "--ca", pki.ca_file], env=env)
        c.check(r.returncode == 0 and r.stdout.startswith("ok "), "keyway ping --ca: ok",
                r.stdout + r.stderr)


if __name__ == "__main__":
    kwtest.run_main("client certificate flags", main)
