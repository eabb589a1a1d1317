#!/usr/bin/python3
"""The Unix-socket listener (no TLS): created mode 0660 by default, --unix-mode
and --unix-group honoured, requests (including pipelined ones) served, a stale
socket file replaced, a live one left alone, the socket removed on exit."""

import grp
import os
import socket
import stat

import kwtest as kw


def main(c):
    with kw.TempDir() as tmp:
        pki, keys_dir, keys = kw.setup(tmp, ["rsa2048", "p256", "ed25519"])
        path = os.path.join(tmp, "keywayd.sock")

        with c.section("default mode, requests, unlink on exit"):
            with kw.Keywayd(pki, keys_dir, tmp, unix=path) as kd:
                st = os.stat(path)
                c.check(stat.S_ISSOCK(st.st_mode), "--unix creates a socket at %s" % path)
                c.eq(oct(stat.S_IMODE(st.st_mode)), oct(0o660), "default socket mode is 0660")
                with kd.connect_unix() as cl:
                    c.check(kw.ping_ok(cl), "ping over the Unix socket")
                    for tk in keys.values():
                        ok, f = kw.signs_with(cl, tk)
                        c.check(ok, "%s signature over the Unix socket verifies" % tk.name,
                                kw.describe(f))
                    f = cl.request(kw.OP_RSA_SHA256, bytes(32), ski=os.urandom(20))
                    c.eq(f.error, kw.ERR_KEY_NOT_FOUND, "unknown SKI over the Unix socket -> 0x02")
                    c.check(not kw.check_response_shape(f), "Unix-socket responses padded to 1024")
                    out = b"".join(kw.encode(kw.OP_PING, b"%d" % i, id=i) for i in range(300))
                    frames = cl.pump(out, 300, timeout=20)
                    c.check(sorted(f.id for f in frames) == list(range(300)) and
                            all(f.payload == b"%d" % f.id for f in frames),
                            "300 pipelined pings over the Unix socket answered once each")
                    # Malformed frame closes only that connection.
                    with kd.connect_unix() as bad:
                        bad.send(kw.frame(kw.item(kw.TAG_OPCODE, b"\xf1\xf1"), id=9))
                        closed, got = bad.expect_closed(5)
                        c.check(closed and not got, "malformed frame on the Unix socket: closed, "
                                "no reply")
                    c.check(kw.ping_ok(cl), "the other Unix connection still works")
                with kd.connect() as tcl:
                    c.check(kw.ping_ok(tcl), "the TCP listener works alongside the Unix socket")
            c.eq(kd.returncode, 0, "keywayd exits 0 on SIGTERM")
            c.check(not os.path.exists(path), "Unix socket unlinked on exit")

        with c.section("--unix-mode and --unix-group"):
            # --unix-mode 0600 and --unix-group
            group = None
            if os.geteuid() == 0:
                for g in ("nogroup", "daemon", "users"):
                    try:
                        group = grp.getgrnam(g)
                        break
                    except KeyError:
                        pass
            if group is None:
                group = grp.getgrgid(os.getegid())
            with kw.Keywayd(pki, keys_dir, tmp, unix=path,
                            extra=["--unix-mode", "0600", "--unix-group", group.gr_name]) as kd:
                st = os.stat(path)
                c.eq(oct(stat.S_IMODE(st.st_mode)), oct(0o600), "--unix-mode 0600 honoured")
                c.eq(st.st_gid, group.gr_gid, "--unix-group %s honoured" % group.gr_name)
                with kd.connect_unix() as cl:
                    c.check(kw.ping_ok(cl), "ping over the 0600 socket")
            c.check(not os.path.exists(path), "Unix socket unlinked on exit")

        with c.section("stale socket replaced"):
            # A stale socket (nothing listening) is replaced.
            if os.path.exists(path):
                os.unlink(path)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(path)
            s.close()
            c.check(os.path.exists(path), "stale socket file in place before start")
            try:
                with kw.Keywayd(pki, keys_dir, tmp, unix=path) as kd:
                    with kd.connect_unix() as cl:
                        c.check(kw.ping_ok(cl), "stale socket replaced: keywayd serves on it")
            except kw.KeywaydError as e:
                c.fail("keywayd starts over a stale socket file", str(e))

        with c.section("live socket left alone"):
            # A live socket (something answers) is left alone: start-up error, exit 2.
            live = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                if os.path.exists(path):
                    os.unlink(path)
                live.bind(path)
                live.listen(4)
                ino = os.stat(path).st_ino
                kd = kw.Keywayd(pki, keys_dir, tmp, unix=path)
                try:
                    kd.start()
                    c.fail("keywayd refuses a Unix path another server listens on",
                           "it started and serves")
                    kd.stop()
                except kw.KeywaydError as e:
                    c.eq(kd.returncode, 2, "keywayd refuses a live Unix socket with exit 2")
                    c.check(path in kd.stderr_text() or os.path.basename(path) in kd.stderr_text(),
                            "the message names the socket path", kd.stderr_text().strip()[-300:])
                c.check(os.path.exists(path) and os.stat(path).st_ino == ino,
                        "the live socket file is left in place")
                probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                probe.settimeout(2)
                try:
                    probe.connect(path)
                    c.check(True, "the live socket still accepts connections")
                except OSError as e:
                    c.fail("the live socket still accepts connections", str(e))
                finally:
                    probe.close()
            finally:
                live.close()


if __name__ == "__main__":
    kw.run_main("keywayd Unix socket", main)
