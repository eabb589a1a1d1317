"""keyway provider in an unmodified nginx 1.22 (Debian's), as an operator
would set it up: OPENSSL_CONF points at an openssl.cnf that activates the
keyway and default providers, the KEYWAY_* settings come from the
environment (with nginx's `env` directives), and ssl_certificate_key names
a KEYWAY KEY reference PEM -- in its own file, and after the certificate in
a combined file. nginx's master loads the keys, its forked workers sign;
curl must get a 200 over TLS 1.3, TLS 1.2 ECDHE and TLS 1.2 RSA key
exchange. Skipped (77) when nginx or curl is not installed.
"""

import os
import shutil
import signal
import subprocess
import time

import kwharness
import kwprov
import kwtest

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK)
                                  else None)
CURL = shutil.which("curl")


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def body(c):
    if NGINX is None or CURL is None:
        kwprov.skip("nginx or curl not installed (scripts/deps.sh installs them)")
    with kwtest.TempDir("kw-prov-nginx-") as tmp, kwprov.Setup(tmp, names=("rsa2048", "p256")) \
            as s:
        prefix = os.path.join(tmp, "nginx")
        for d in ("conf", "logs", "tmp"):
            os.makedirs(os.path.join(prefix, d))
        os.chmod(tmp, 0o755)  # workers run as nobody and read nothing but what the master gave them
        combined = write(os.path.join(tmp, "combined-p256.pem"),
                         open(s.certs["p256"]).read() + open(s.refs["p256"]).read())
        cnf = write(os.path.join(tmp, "openssl.cnf"),
                    "openssl_conf = init\n[init]\nproviders = provs\n"
                    "[provs]\nkeyway = keyway_sect\ndefault = default_sect\n"
                    "[keyway_sect]\nmodule = %s\nactivate = 1\n"
                    "[default_sect]\nactivate = 1\n" % os.path.join(s.prov_dir, "keyway.so"))
        port_rsa, port_ec = kwprov.free_port(), kwprov.free_port()
        temps = "".join("    %s_temp_path %s;\n" % (t, os.path.join(prefix, "tmp", t))
                        for t in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        conf = write(os.path.join(prefix, "conf", "nginx.conf"), """
daemon off;
master_process on;
worker_processes 2;
pid %(prefix)s/logs/nginx.pid;
error_log %(prefix)s/logs/error.log info;
env OPENSSL_CONF;
env KEYWAY_SERVERS;
env KEYWAY_CA;
env KEYWAY_CLIENT_CERT;
env KEYWAY_CLIENT_KEY;
env KEYWAY_TIMEOUT_MS;
events { worker_connections 64; }
http {
    access_log off;
    ssl_protocols TLSv1.2 TLSv1.3;  # 1.22's default lacks TLSv1.3
%(temps)s
    server {
        listen 127.0.0.1:%(port_rsa)d ssl;
        server_name localhost;
        ssl_ciphers ECDHE-RSA-AES128-GCM-SHA256:AES128-GCM-SHA256;
        ssl_certificate %(rsa_cert)s;
        ssl_certificate_key %(rsa_ref)s;
        location / { return 200 "keyway rsa\\n"; }
    }
    server {
        listen 127.0.0.1:%(port_ec)d ssl;
        server_name localhost;
        ssl_certificate %(combined)s;
        ssl_certificate_key %(combined)s;
        location / { return 200 "keyway p256\\n"; }
    }
}
""" % {"prefix": prefix, "temps": temps, "port_rsa": port_rsa, "port_ec": port_ec,
       "rsa_cert": s.certs["rsa2048"], "rsa_ref": s.refs["rsa2048"], "combined": combined})

        env = s.env(OPENSSL_CONF=cnf)
        t = subprocess.run([NGINX, "-t", "-p", prefix, "-c", conf, "-e", os.path.join(
            prefix, "logs", "error.log")], capture_output=True, text=True, env=env, timeout=30)
        c.check(t.returncode == 0, "nginx -t accepts the reference PEM keys", t.stderr[-600:])

        # The nginx.conf of docs/provider.md, with this test's paths and port.
        doc = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs",
                                "provider.md")).read()
        documented = doc.split("```nginx\n", 1)[1].split("```", 1)[0]
        documented = (documented.replace("user www-data;\n", "")
                      .replace("/run/nginx.pid", os.path.join(prefix, "logs", "doc.pid"))
                      .replace("/var/log/nginx/", os.path.join(prefix, "logs", ""))
                      .replace("listen 443 ssl;", "listen 127.0.0.1:%d ssl;" % port_ec)
                      .replace("/etc/ssl/example.com.pem", combined)
                      .replace("/etc/ssl/example.com.key", combined)
                      .replace("http {\n", "http {\n" + temps, 1))
        doc_conf = write(os.path.join(prefix, "conf", "doc.conf"), documented)
        t = subprocess.run([NGINX, "-t", "-p", prefix, "-c", doc_conf, "-e", os.path.join(
            prefix, "logs", "error.log")], capture_output=True, text=True, env=env, timeout=30)
        c.check(t.returncode == 0, "nginx -t accepts docs/provider.md's nginx.conf", t.stderr[-600:])

        nginx = kwharness.Process([NGINX, "-p", prefix, "-c", conf, "-e",
                                   os.path.join(prefix, "logs", "error.log")], env=env,
                                  log=os.path.join(tmp, "nginx.out")).start()
        try:
            def curl(port, args, what, want):
                out = None
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline and nginx.alive():
                    out = subprocess.run(
                        [CURL, "-sS", "--max-time", "10", "--cacert", s.pki.ca_file,
                         "--resolve", "localhost:%d:127.0.0.1" % port, "-w", " %{http_code}",
                         "https://localhost:%d/" % port] + args,
                        capture_output=True, text=True, timeout=20)
                    if out.returncode != 7:  # 7: not listening yet
                        break
                    time.sleep(0.1)
                c.check(out is not None and out.returncode == 0 and
                        " ".join(out.stdout.split()) == want + " 200",
                        what + ": curl gets 200", "" if out is None else out.stdout + out.stderr)

            curl(port_rsa, ["--tlsv1.3"], "RSA key, TLS 1.3 (RSA-PSS)", "keyway rsa")
            curl(port_rsa, ["--tlsv1.2", "--tls-max", "1.2", "--ciphers",
                            "ECDHE-RSA-AES128-GCM-SHA256"], "RSA key, TLS 1.2 ECDHE-RSA",
                 "keyway rsa")
            curl(port_rsa, ["--tlsv1.2", "--tls-max", "1.2", "--ciphers", "AES128-GCM-SHA256"],
                 "RSA key, TLS 1.2 RSA key exchange", "keyway rsa")
            curl(port_ec, ["--tlsv1.3"], "P-256 key after its certificate, TLS 1.3",
                 "keyway p256")
            curl(port_ec, ["--tlsv1.2", "--tls-max", "1.2", "--curves", "prime256v1"],
                 "P-256 key after its certificate, TLS 1.2 ECDHE-ECDSA over P-256", "keyway p256")
            # Several handshakes, spread over both workers.
            ok = 0
            for _ in range(12):
                r = subprocess.run([CURL, "-sS", "--max-time", "10", "--cacert", s.pki.ca_file,
                                    "--resolve", "localhost:%d:127.0.0.1" % port_ec,
                                    "-o", "/dev/null", "-w", "%{http_code}",
                                    "https://localhost:%d/" % port_ec],
                                   capture_output=True, text=True, timeout=20)
                ok += r.stdout == "200"
            c.eq(ok, 12, "12 new connections in a row get 200")
        finally:
            nginx.stop(signal.SIGQUIT)  # graceful: the workers finish, then the master exits
        errlog = open(os.path.join(prefix, "logs", "error.log")).read()
        bad = [l for l in errlog.splitlines() if "[emerg]" in l or "[alert]" in l or
               "[crit]" in l]
        c.check(not bad, "nginx logged no emerg/alert/crit", "\n".join(bad[-5:]))


if __name__ == "__main__":
    kwtest.run_main("provider_nginx", body)
