"""A real browser over HTTP/3: headless Chromium loads a page from keyway-proxy --upstream
over QUIC only (--origin-to-force-quic-on, the server's SPKI pinned), and the page fetches a
10 MB body through the relay and checks its SHA-256 in JavaScript. Chromium's net log must
show a QUIC v1 session, HTTP/3 response headers and no TCP connection to the port; the
proxy's counters must show that Keyway's engine protected the packets Chromium opened.
Skipped (exit 77) when chromium-headless-shell is not installed.
"""

import base64
import hashlib
import json
import os
import random
import shutil
import socketserver
import subprocess
import tempfile
import threading

import kwharness
from kwproxy import Checker, make_cert, skip_without_proxy
from kwquic import QuicProxy

skip_without_proxy()
CHROMIUM = shutil.which("chromium-headless-shell") or shutil.which("chromium")
if CHROMIUM is None:
    kwharness.skip("chromium-headless-shell is not installed (scripts/deps.sh installs it)")
c = Checker()
tmp = tempfile.mkdtemp(prefix="kw-quic-chromium-")
key, crt = make_cert(tmp, "ec", "ec")
BIG = random.Random(2).randbytes(10 * 1000 * 1000)
BIG_SHA = hashlib.sha256(BIG).hexdigest()

# SHA-256 in plain JavaScript (FIPS 180-4) over a synchronous XHR's binary string: the
# synchronous request holds the load event, so --dump-dom waits for the result.
PAGE = b"""<!doctype html><html><head><title>h3</title><script>
function sha256(b) {
  var K = [], H = [0x6a09e667,0xbb67ae85,0x3c6ef372,0xa54ff53a,0x510e527f,0x9b05688c,
           0x1f83d9ab,0x5be0cd19], p = 2, n = 0;
  while (n < 64) { var q = true; for (var d = 2; d * d <= p; d++) if (p % d == 0) q = false;
    if (q) { K[n++] = (Math.pow(p, 1/3) % 1) * 4294967296 | 0; } p++; }
  var l = b.length, m = new Uint8Array(((l + 9 + 63) >> 6) << 6);
  m.set(b); m[l] = 0x80; var dv = new DataView(m.buffer);
  dv.setUint32(m.length - 8, Math.floor(l / 536870912)); dv.setUint32(m.length - 4, l << 3);
  var w = new Int32Array(64);
  for (var o = 0; o < m.length; o += 64) {
    for (var i = 0; i < 16; i++) w[i] = dv.getInt32(o + 4 * i);
    for (i = 16; i < 64; i++) {
      var x = w[i-15], y = w[i-2];
      var s0 = (x>>>7|x<<25)^(x>>>18|x<<14)^(x>>>3), s1 = (y>>>17|y<<15)^(y>>>19|y<<13)^(y>>>10);
      w[i] = (w[i-16] + s0 + w[i-7] + s1) | 0; }
    var a=H[0],b2=H[1],c=H[2],d2=H[3],e=H[4],f=H[5],g=H[6],h=H[7];
    for (i = 0; i < 64; i++) {
      var t1 = (h + ((e>>>6|e<<26)^(e>>>11|e<<21)^(e>>>25|e<<7)) + ((e&f)^(~e&g)) + K[i] + w[i])|0;
      var t2 = (((a>>>2|a<<30)^(a>>>13|a<<19)^(a>>>22|a<<10)) + ((a&b2)^(a&c)^(b2&c)))|0;
      h=g; g=f; f=e; e=(d2+t1)|0; d2=c; c=b2; b2=a; a=(t1+t2)|0; }
    H[0]=(H[0]+a)|0; H[1]=(H[1]+b2)|0; H[2]=(H[2]+c)|0; H[3]=(H[3]+d2)|0;
    H[4]=(H[4]+e)|0; H[5]=(H[5]+f)|0; H[6]=(H[6]+g)|0; H[7]=(H[7]+h)|0; }
  return H.map(function (v) { return ('00000000' + (v >>> 0).toString(16)).slice(-8); }).join('');
}
var x = new XMLHttpRequest();
x.open('GET', '/big', false);
x.overrideMimeType('text/plain; charset=x-user-defined');
x.send();
var s = x.responseText, u = new Uint8Array(s.length);
for (var i = 0; i < s.length; i++) u[i] = s.charCodeAt(i) & 0xff;
var result = 'status=' + x.status + ' length=' + u.length + ' sha256=' + sha256(u);
</script></head><body><script>document.body.textContent = result;</script></body></html>
"""


class Upstream(socketserver.StreamRequestHandler):
    def handle(self):
        line = self.rfile.readline()
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass
        path = line.split(b" ")[1] if line.count(b" ") >= 2 else b"/"
        body, ctype = (BIG, b"application/octet-stream") if path == b"/big" else \
            (PAGE, b"text/html")
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"
                         % (ctype, len(body)) + body)


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


srv = Server(("127.0.0.1", 0), Upstream)
threading.Thread(target=srv.serve_forever, daemon=True).start()
der = subprocess.run("openssl x509 -pubkey -noout -in '%s' | openssl pkey -pubin -outform der"
                     % crt, shell=True, capture_output=True, check=True).stdout
spki = base64.b64encode(hashlib.sha256(der).digest()).decode()

with QuicProxy(key, crt, "--workers", "1",
               mode=["--upstream", "127.0.0.1:%d" % srv.server_address[1]]) as p:
    with c.section("Chromium over HTTP/3 only"):
        netlog = os.path.join(tmp, "netlog.json")
        origin = "localhost:%d" % p.qport
        r = subprocess.run([CHROMIUM, "--headless", "--no-sandbox",
                            "--user-data-dir=" + os.path.join(tmp, "profile"), "--no-first-run",
                            "--disable-background-networking", "--disable-component-update",
                            "--disable-sync", "--disable-default-apps",
                            "--host-resolver-rules=MAP localhost 127.0.0.1, MAP * ~NOTFOUND",
                            "--origin-to-force-quic-on=" + origin,
                            "--ignore-certificate-errors-spki-list=" + spki,
                            "--log-net-log=" + netlog, "--dump-dom", "https://%s/" % origin],
                           capture_output=True, timeout=120)
        dom = r.stdout.decode(errors="replace")
        c.check("status=200 length=10000000 sha256=" + BIG_SHA in dom,
                "the page got the 10 MB body whole (SHA-256 in the browser)", dom[-300:])
        log = json.load(open(netlog))
        names = {v: k for k, v in log["constants"]["logEventTypes"].items()}
        events = [(names.get(e["type"], "?"), e.get("params", {})) for e in log["events"]]
        kinds = {n for n, _ in events}
        c.check(any(n == "QUIC_SESSION_VERSION_NEGOTIATED" and "RFCv1" in json.dumps(prm)
                    for n, prm in events) or
                any(n == "QUIC_SESSION" and "RFCv1" in json.dumps(prm) for n, prm in events),
                "net log: a QUIC v1 session")
        c.check("HTTP3_HEADERS_DECODED" in kinds, "net log: HTTP/3 response headers")
        tcp = [prm for n, prm in events if n.startswith("TCP_CONNECT") and
               str(p.qport) in json.dumps(prm)]
        c.check(not tcp, "net log: no TCP connection to the port", tcp[:2])
        m = p.metrics()
        c.check(m["keyway_proxy_quic_packets_protected_total"] > 5000,
                "Keyway's engine protected the packets Chromium opened",
                m["keyway_proxy_quic_packets_protected_total"])
        c.check(m["keyway_proxy_quic_packets_opened_total"] > 100 and
                m["keyway_proxy_quic_open_failures_total"] == 0,
                "Keyway's engine opened the packets Chromium sealed",
                m["keyway_proxy_quic_packets_opened_total"])
        c.check(m["keyway_proxy_quic_requests_total"] >= 2, "the page and the body relayed")
    c.eq(p.stop(), 0, "exit 0 on SIGTERM")

srv.shutdown()
c.done()
