"""kwharness - how every end-to-end helper runs the programs it tests.

One way each to: pick a free port on a loopback address, start a program with
its output in a log file, wait until it is ready (a condition polled against a
deadline, never a fixed sleep), stop it (SIGTERM, a bounded wait, then
SIGKILL), and read its log for AddressSanitizer / UndefinedBehaviorSanitizer
reports. What goes wrong in any run (a sanitizer report, death by a signal, a
non-zero exit after SIGTERM, no exit after SIGTERM) is collected in PROBLEMS,
and Checker.verdict() turns that list into one failed check, so a test cannot
pass while one of its programs misbehaved.

Standard library only; kwtest, kwprov, kwproxy, kwrelay and kwfleet build on
it.
"""

import contextlib
import os
import re
import shutil
from signal import SIGTERM
import socket
import subprocess
import sys
import tempfile
import time
import traceback

# Problems seen in any program run of this script; Checker.verdict() fails on them.
PROBLEMS = []
SANITIZER_RE = re.compile(r"AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|"
                          r"runtime error:|ThreadSanitizer")


def free_port(host="127.0.0.1"):
    """A TCP port free on host at the time of the call (bind to port 0, close)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def accepts(port, host="127.0.0.1"):
    """True if something accepts a TCP connection on host:port now."""
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


def wait_until(cond, timeout, interval=0.02):
    """Polls cond() until it returns a true value or timeout seconds have
    passed; returns cond()'s last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


def note_output(what, text, returncode=None, expect_zero=False):
    """Adds to PROBLEMS what text (a program's output) and returncode show:
    a sanitizer report, death by a signal, or (expect_zero: SIGTERM was sent)
    a non-zero exit."""
    m = SANITIZER_RE.search(text or "")
    if m:
        i = text.find(m.group(0))
        PROBLEMS.append("%s: sanitizer report: %s" % (what, text[max(0, i - 200):i + 600]))
    if returncode is not None and returncode < 0:
        PROBLEMS.append("%s: killed by signal %d" % (what, -returncode))
    elif expect_zero and returncode not in (0, None):
        PROBLEMS.append("%s: exit %s after SIGTERM" % (what, returncode))


def sanitizer_env(so_path):
    """Environment additions for a stock program (openssl, nginx, HAProxy)
    loading so_path when that was built with AddressSanitizer: the runtime
    preloaded, leak checks off (those programs are not ours to hold to it)."""
    try:
        out = subprocess.run(["ldd", so_path], capture_output=True, text=True, timeout=10).stdout
    except Exception:  # noqa: BLE001 - no ldd: not a sanitizer build we can detect
        return {}
    if "libasan" not in out:
        return {}
    cc = shutil.which("cc") or shutil.which("gcc")
    lib = subprocess.run([cc, "-print-file-name=libasan.so"], capture_output=True, text=True,
                         timeout=10).stdout.strip()
    return {"LD_PRELOAD": lib, "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1",
            "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}


def own_program_env(env):
    """env (from a sanitizer_env() caller) made fit for a program of ours that
    has the sanitizers built in: nothing preloaded, leak checks on."""
    if "LD_PRELOAD" in env:
        env.pop("LD_PRELOAD")
        env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=1"
    return env


def run_once(args, what=None, timeout=10.0, env=None):
    """Runs args to completion (killed after timeout s); returns (exit code, or
    None if it had to be killed, and its combined output). A sanitizer report
    or death by a signal goes to PROBLEMS."""
    p = subprocess.Popen(list(args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, env=env)
    try:
        out, _ = p.communicate(timeout=timeout)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate(timeout=5)
        rc = None
    out = out.decode("utf-8", "replace")
    note_output(what or " ".join(args), out, rc)
    return rc, out


class Process:
    """A program under test with stdout and stderr in a log file.

        p = Process([exe, ...], what="keywayd").start()
        p.wait_ready(lambda: "listening" in p.log_text(), 10) or fail
        ...
        rc = p.stop()      # SIGTERM, stop_timeout s, SIGKILL; output checked

    log: the log file's path (default: a temporary file, removed by stop()).
    stdout=subprocess.PIPE keeps stdout apart (p.proc.stdout, text) for a
    program whose output the test reads line by line; only stderr is logged.
    """

    def __init__(self, args, what=None, env=None, log=None, stdout=None,
                 stdin=subprocess.DEVNULL, stop_timeout=10.0):
        self.args = [str(a) for a in args]
        self._what = what
        self.env = env
        self.own_log = log is None
        if log is None:
            fd, log = tempfile.mkstemp(prefix="kw-%s-" % os.path.basename(self.args[0]),
                                       suffix=".log")
            os.close(fd)
        self.log_path = log
        self.pipe_stdout = stdout == subprocess.PIPE
        self.stdin = stdin
        self.stop_timeout = stop_timeout
        self.proc = None
        self.returncode = None
        self.term_sent = False
        self.noted = False
        self._log = None
        self._text = None

    @property
    def what(self):
        """How reports name this run: what, or the command line."""
        return self._what or " ".join([os.path.basename(self.args[0])] + self.args[1:])

    def start(self):
        self.returncode, self.term_sent, self.noted, self._text = None, False, False, None
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            self.args, stdin=self.stdin,
            stdout=subprocess.PIPE if self.pipe_stdout else self._log, stderr=self._log,
            env=self.env, text=self.pipe_stdout or None)
        return self

    def __enter__(self):
        return self if self.proc is not None else self.start()

    def __exit__(self, *exc):
        self.stop()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, cond, timeout=10.0):
        """True once cond() holds; False if the program exits first or
        timeout s pass."""
        state = wait_until(lambda: "ready" if cond() else (None if self.alive() else "exited"),
                           timeout)
        return state == "ready"

    def log_text(self):
        if self._text is not None:
            return self._text
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def wait_log(self, pattern, timeout=5.0, start=0):
        """The first match of regex pattern in the log (from offset start),
        or None after timeout s."""
        return wait_until(lambda: re.search(pattern, self.log_text()[start:]), timeout)

    def signal(self, sig):
        if self.alive():
            if sig == SIGTERM:
                self.term_sent = True
            self.proc.send_signal(sig)

    def wait(self, timeout):
        """The exit code, or None if still running after timeout s."""
        try:
            self.returncode = self.proc.wait(timeout=timeout)
            return self.returncode
        except subprocess.TimeoutExpired:
            return None

    def kill(self):
        """SIGKILL on purpose (not a problem to report); the log is still
        read for sanitizer reports."""
        if self.alive():
            self.proc.kill()
            self.wait(5)
        self.note(killed=True)

    def stop(self, sig=SIGTERM):
        """Sends sig (SIGTERM), waits stop_timeout s, then SIGKILLs. Returns
        the exit code (negative: a signal). A program that outlives the
        wait, dies of a signal, exits non-zero after SIGTERM or wrote a
        sanitizer report is noted in PROBLEMS."""
        if self.proc is None:
            return None
        if self.alive():
            self.term_sent = self.term_sent or sig == SIGTERM
            self.proc.send_signal(sig)
            if self.wait(self.stop_timeout) is None:
                PROBLEMS.append("%s (pid %d) did not exit within %.0f s of signal %d" % (
                    self.what, self.proc.pid, self.stop_timeout, sig))
                self.proc.kill()
                self.wait(5)
        self.returncode = self.proc.poll()
        self.note()
        return self.returncode

    def note(self, killed=False):
        """Checks the output once, then closes (and, if temporary, removes) the log."""
        if self.noted or self.proc is None:
            return
        self.noted = True
        self.returncode = self.proc.poll()
        text = self.log_text()
        note_output(self.what, text, None if killed else self.returncode,
                    expect_zero=self.term_sent)
        if self._log is not None:
            self._log.close()
        if self.own_log:
            self._text = text
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.log_path)


class Checker:
    """Prints what each check found and keeps the failures; verdict() adds
    one check for PROBLEMS and returns the exit status."""

    def __init__(self, name=None):
        self.name = name or os.path.splitext(os.path.basename(sys.argv[0]))[0]
        self.failures = []
        self.count = 0
        self.t0 = time.monotonic()

    def check(self, cond, what, detail=""):
        self.count += 1
        if cond:
            print("ok   %s" % what, flush=True)
        else:
            msg = what + (" -- %s" % (detail,) if detail != "" else "")
            print("FAIL %s" % msg, flush=True)
            self.failures.append(msg)
        return bool(cond)

    def eq(self, got, want, what):
        return self.check(got == want, what, "expected %r, got %r" % (want, got))

    def fail(self, what, detail=""):
        return self.check(False, what, detail)

    @contextlib.contextmanager
    def section(self, name):
        """A group of checks: an exception inside is one failure, and the
        script goes on with the next section."""
        print("-- %s" % name, flush=True)
        try:
            yield
        except Exception as e:  # noqa: BLE001 - reported, with its traceback
            traceback.print_exc()
            self.fail("%s: unexpected exception" % name, "%s: %s" % (type(e).__name__, e))

    def verdict(self):
        """Exit status: 1 if any check failed or PROBLEMS is not empty."""
        self.check(not PROBLEMS, "every program run: no crash, no sanitizer report, "
                   "exit 0 after SIGTERM", "\n".join(PROBLEMS))
        secs = time.monotonic() - self.t0
        if self.failures:
            print("\n%s: %d of %d checks FAILED (%.1f s):" % (self.name, len(self.failures),
                                                           self.count, secs))
            for f in self.failures:
                print("  - " + f)
            return 1
        print("\n%s: all %d checks passed (%.1f s)" % (self.name, self.count, secs))
        return 0

    def done(self):
        """Exits the script with verdict()."""
        sys.exit(self.verdict())


def run_main(name, body):
    """Runs body(checker) and exits with its verdict; an exception is a failure."""
    c = Checker(name)
    try:
        body(c)
    except Exception as e:  # noqa: BLE001 - report, don't hide: the traceback says where
        traceback.print_exc()
        c.fail("unexpected exception", "%s: %s" % (type(e).__name__, e))
    c.done()


class TempDir:
    """mkdtemp that is removed on exit (also on failure)."""

    def __init__(self, prefix="kw-e2e-"):
        self.path = tempfile.mkdtemp(prefix=prefix)

    def __enter__(self):
        return self.path

    def __exit__(self, *exc):
        shutil.rmtree(self.path, ignore_errors=True)


def skip(why):
    """Exits with 77, ctest's SKIP_RETURN_CODE."""
    print("SKIP: " + why)
    sys.exit(77)
