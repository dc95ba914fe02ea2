# SPDX-License-Identifier: MIT
"""Fixtures for the integration tests: the real uppercased binary, started on
loopback in a private temporary directory, checked from outside.

Environment:
  UPPERCASED_BUILD  absolute build directory (binary: $UPPERCASED_BUILD/uppercased);
                    default: <repo>/build
  UPPERCASED_ASAN=1 the binary is an ASan/UBSan build: RSS assertions are
                    skipped, ASAN_OPTIONS is set for the daemon, and a test
                    fails when the daemon's stderr shows a sanitizer report.

Every daemon started here is killed by its PID at teardown (and, for the
process model, the children it had, by their PIDs).  Every wait is bounded.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BUILD = os.environ.get("UPPERCASED_BUILD") or os.path.join(REPO, "build")
BINARY = os.path.join(BUILD, "uppercased")
ASAN = os.environ.get("UPPERCASED_ASAN", "") not in ("", "0")
# The process model's fork helper (daemon/fork-helper.h), and its workers'
# argv[0].
FORKER_NAME = b"uppercased-forker"
ACTIVATE = os.path.join(HERE, "activate.py")

READY_TIMEOUT = 10.0
STOP_TIMEOUT = 15.0
SOCK_TIMEOUT = 5.0

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")

# (id, model, extra command-line arguments)
MODELS = [
    ("event", "event", []),
    ("thread", "thread", []),
    ("process", "process", []),
    ("event-t2", "event", ["-t", "2"]),
]


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes a few seconds (still run by default)")


# --------------------------------------------------------------------------
# small helpers usable from the tests

def free_port():
    """A port free for both TCP and UDP on 127.0.0.1."""
    for _ in range(50):
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            try:
                u.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
        finally:
            t.close()
            u.close()
    raise RuntimeError("no free port found")


def wait_for(cond, timeout=5.0):
    """Polls cond() until it holds or timeout seconds pass; its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def recv_exact(sock, n, timeout=SOCK_TIMEOUT):
    """Reads exactly n bytes (or fails): returns what arrived, which may be
    shorter on EOF or when the overall timeout expires."""
    buf = b""
    deadline = time.monotonic() + timeout
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock.settimeout(min(left, SOCK_TIMEOUT))
        try:
            chunk = sock.recv(n - len(buf))
        except socket.timeout:
            break
        if not chunk:
            break
        buf += chunk
    return buf


def recv_until_eof(sock, timeout=SOCK_TIMEOUT, limit=16 << 20):
    """Reads until EOF.  Returns (data, how) with how in "eof", "reset",
    "timeout" or "limit"."""
    buf = b""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return buf, "timeout"
        sock.settimeout(min(left, SOCK_TIMEOUT))
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return buf, "timeout"
        except ConnectionResetError:
            return buf, "reset"
        if not chunk:
            return buf, "eof"
        buf += chunk
        if len(buf) > limit:
            return buf, "limit"


def expect_open(sock, wait=0.4):
    """Asserts the server neither sends anything nor closes within `wait`."""
    sock.settimeout(wait)
    try:
        data = sock.recv(4096)
    except socket.timeout:
        return
    finally:
        sock.settimeout(SOCK_TIMEOUT)
    raise AssertionError("expected an open, quiet connection, got %r" % (data,))


def upper(b):
    """The reference: Python's str.upper() on UTF-8, invalid bytes passed
    through unchanged."""
    return b.decode("utf-8", "surrogateescape").upper().encode("utf-8", "surrogateescape")


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return False
    state = stat[stat.rindex(")") + 2:].split()[0]
    return state not in ("Z", "X")


def proc_state(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()[0]


def socket_ports(pid):
    """Internet sockets held by pid: a set of (proto, ip_hex, port, state)
    where proto is tcp/tcp6/udp/udp6 and state the hex state of
    /proc/net/* (0A = LISTEN for TCP, 07 = unconnected UDP)."""
    inodes = set()
    fddir = "/proc/%d/fd" % pid
    for fd in os.listdir(fddir):
        try:
            link = os.readlink(os.path.join(fddir, fd))
        except OSError:
            continue
        m = re.match(r"socket:\[(\d+)\]", link)
        if m:
            inodes.add(m.group(1))
    found = set()
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        try:
            with open("/proc/%d/net/%s" % (pid, proto)) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10:
                continue
            ip_hex, port_hex = fields[1].split(":")
            if fields[9] in inodes:
                found.add((proto, ip_hex, int(port_hex, 16), fields[3]))
    return found


# --------------------------------------------------------------------------
# the daemon

SHIPPED_CONFIG = os.path.join(REPO, "etc", "uppercased.conf")

# config_text() keyword -> (group, setting) of the configuration file.
SETTINGS = {
    "tcp": ("listen", "tcp"), "udp": ("listen", "udp"), "backlog": ("listen", "backlog"),
    "control": ("control", "path"), "group": ("control", "group"),
    "admin_group": ("control", "admin_group"),
    "model": ("workers", "model"), "threads": ("workers", "threads"),
    "max_connections": ("workers", "max_connections"), "max_workers": ("workers", "max_workers"),
    "idle": ("timeouts", "idle"), "write": ("timeouts", "write"), "shutdown": ("timeouts", "shutdown"),
    "clients": ("log", "clients"), "rate": ("log", "rate"), "burst": ("log", "burst"),
    "tcp_per_source": ("limits", "tcp_per_source"), "udp_rate": ("limits", "udp_rate"),
    "udp_burst": ("limits", "udp_burst"), "udp_loop_guard": ("limits", "udp_loop_guard"),
    "exempt": ("limits", "exempt"),
    "proxy_listen": ("proxy", "listen"), "proxy_trusted": ("proxy", "trusted"),
    "proxy_timeout": ("proxy", "timeout"),
    "agent": ("agent", "listen"), "instance": ("instance", "name"),
}


def libconfig_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, (list, tuple)):
        return "[ %s ]" % ", ".join('"%s"' % x for x in v)
    return '"%s"' % v


def config_text(port, control, **kw):
    """The shipped configuration, etc/uppercased.conf, for a daemon on
    127.0.0.1:port with its control socket at control (group "": the test
    machine has no group uppercased).  Keyword arguments change single
    settings (SETTINGS: tcp/udp as lists of "ADDR:PORT", durations as
    strings, exempt as a list of prefixes); extra= is appended verbatim.

    Everything else is exactly as shipped: a test changes only the setting
    it is about."""
    values = {"tcp": ["127.0.0.1:%d" % port], "udp": ["127.0.0.1:%d" % port],
              "control": control, "group": ""}
    values.update((k, v) for k, v in kw.items() if k != "extra")
    wanted = {SETTINGS[k]: libconfig_value(v) for k, v in values.items()}
    lines, group = ["# tests/integration/conftest.py: etc/uppercased.conf, changed: %s"
                    % ", ".join("%s.%s" % g for g in sorted(wanted))], None
    with open(SHIPPED_CONFIG) as f:
        for line in f.read().splitlines():
            m = re.match(r"^(\w+):\s*\{", line)
            if m:
                group = m.group(1)
            m = re.match(r"^(\s*)(\w+)\s*=.*;\s*$", line)
            if m and (group, m.group(2)) in wanted:
                line = "%s%s = %s;" % (m.group(1), m.group(2), wanted.pop((group, m.group(2))))
            lines.append(line)
    assert not wanted, "not in %s: %s" % (SHIPPED_CONFIG, wanted)
    if kw.get("extra"):
        lines.append(kw["extra"])
    return "\n".join(lines) + "\n"


class DaemonStartError(Exception):
    pass


class Daemon:
    """One uppercased process.  Construct, then start()."""

    def __init__(self, model="event", args=(), activate=False,
                 activate_names="tcp:udp:control", activate_proxy=False, avoid_ports=(),
                 env_extra=None, wrapper=(), binary=None, **config):
        self.model = model
        self.binary = binary or BINARY  # another copy of the daemon
        self.args = list(args)
        self.wrapper = list(wrapper)    # e.g. valgrind and its options
        self.activate = activate
        self.activate_names = activate_names
        self.activate_proxy = activate_proxy    # a proxied listener too: self.proxy_port
        self.proxy_port = None
        self.avoid_ports = set(avoid_ports)
        self.env_extra = dict(env_extra or {})
        self.config = dict(config)
        self.dir = tempfile.mkdtemp(prefix="upc-", dir="/tmp")
        self.conf = os.path.join(self.dir, "uppercased.conf")
        self.control = os.path.join(self.dir, "control.sock")
        self.notify_path = os.path.join(self.dir, "notify.sock")
        self.stderr_path = os.path.join(self.dir, "stderr.log")
        self.proc = None
        self.port = None
        self.log_mark = 0
        self.notify_mark = 0
        self.exit_code = None
        self.known_children = set()
        self.notifications = []
        self._cond = threading.Condition()
        self._stop_reader = False
        self._reader = None
        self._notify = None
        self._stderr_file = None

    # ---- set-up -----------------------------------------------------------

    def write_config(self, text=None, **overrides):
        """Writes the config file: the given text, or the generated one with
        the constructor's settings updated by overrides."""
        if text is None:
            cfg = dict(self.config)
            cfg.update(overrides)
            cfg.setdefault("model", self.model)
            text = config_text(self.port, self.control, **cfg)
        with open(self.conf + ".tmp", "w") as f:
            f.write(text)
        os.rename(self.conf + ".tmp", self.conf)
        return text

    def _open_notify(self):
        if self._notify is not None:
            return
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.bind(self.notify_path)
        s.settimeout(0.2)
        self._notify = s
        self._reader = threading.Thread(target=self._read_notify, daemon=True)
        self._reader.start()

    def _read_notify(self):
        while not self._stop_reader:
            try:
                data = self._notify.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            if not data:
                continue
            msg = data.decode("utf-8", "replace")
            with self._cond:
                self.notifications.append(msg)
                self._cond.notify_all()

    def inherited_fds(self):
        """Descriptors the daemon inherits besides stdio (subclasses)."""
        return ()

    def command(self):
        cmd = self.wrapper + [self.binary, "-c", self.conf, "-m", self.model] + self.args
        if self.activate:
            cmd = [sys.executable, ACTIVATE, "--port", str(self.activate_port),
                   "--control", self.activate_control,
                   "--names", self.activate_names] + (
                       ["--proxy-port", str(self.proxy_port)] if self.activate_proxy else []) + ["--"] + cmd
        return cmd

    def env(self):
        env = {k: v for k, v in os.environ.items()
               if k not in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES",
                            "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID",
                            "JOURNAL_STREAM", "INVOCATION_ID")}
        env["NOTIFY_SOCKET"] = self.notify_path
        env["LC_ALL"] = "C"
        if ASAN:
            env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0"
            env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        env.update(self.env_extra)
        return env

    def start(self, wait_ready=True, retry_in_use=True):
        if not os.access(BINARY, os.X_OK):
            pytest.fail("daemon binary not found or not executable: %s "
                        "(set UPPERCASED_BUILD)" % BINARY)
        self._open_notify()
        for attempt in range(2):
            if self.port is None or attempt > 0:
                self.port = free_port()
                while self.port in self.avoid_ports:
                    self.port = free_port()
            if self.activate_proxy and (self.proxy_port is None or attempt > 0):
                self.proxy_port = free_port()
            if self.activate:
                self.activate_port = self.port
                self.activate_control = os.path.join(self.dir, "activated.sock")
                if os.path.exists(self.activate_control):
                    os.unlink(self.activate_control)
            if not os.path.exists(self.conf) or attempt > 0:
                self.write_config()
            if self._stderr_file is not None:
                self._stderr_file.close()
            self._stderr_file = open(self.stderr_path, "ab")
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                         stdout=self._stderr_file, stderr=self._stderr_file,
                                         env=self.env(), cwd=self.dir,
                                         pass_fds=self.inherited_fds())
            if not wait_ready:
                return self
            try:
                self.wait_ready()
                return self
            except DaemonStartError:
                in_use = "in use" in self.log().lower()
                if attempt == 0 and retry_in_use and in_use and self.proc.poll() is not None:
                    continue
                raise
        return self

    def wait_ready(self, timeout=READY_TIMEOUT, since=0):
        """Waits for READY=1 among the notifications from index `since`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if any("READY=1" in m.split("\n") for m in self.notifications[since:]):
                    return
                if self.proc.poll() is not None:
                    self.exit_code = self.proc.returncode
                    raise DaemonStartError(
                        "daemon exited with %r before READY=1; stderr:\n%s"
                        % (self.proc.returncode, self.log()))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DaemonStartError("no READY=1 within %.0f s; stderr:\n%s"
                                           % (timeout, self.log()))
                self._cond.wait(min(left, 0.1))

    def wait_notify(self, field, since=0, timeout=10.0):
        """Waits for a notification containing the line `field` (e.g.
        "STOPPING=1"; a field ending in "=" matches any value).  Returns its
        index in self.notifications, or None on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i in range(since, len(self.notifications)):
                    for line in self.notifications[i].split("\n"):
                        if line == field or (field.endswith("=") and line.startswith(field)):
                            return i
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(min(left, 0.1))

    def notify_fields(self):
        with self._cond:
            return [line for m in self.notifications for line in m.split("\n")]

    # ---- properties and probes ---------------------------------------------

    @property
    def pid(self):
        return self.proc.pid

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def log_bytes(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read()
        except OSError:
            return b""

    def mark(self):
        """From now on log(), log_lines() and wait_log() only see what the
        daemon writes after this point (used when a daemon is shared by
        several tests)."""
        self.log_mark = len(self.log_bytes())
        self.notify_mark = len(self.notifications)

    def log(self, everything=False):
        """The daemon's stderr so far (since the last mark())."""
        data = self.log_bytes()
        if not everything:
            data = data[self.log_mark:]
        return data.decode("utf-8", "replace")

    def log_lines(self):
        return self.log().splitlines()

    def wait_log(self, substring, timeout=5.0):
        """Waits until stderr contains substring (a str, or a compiled regex
        searched per line).  Returns the first matching line, or None."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.log_lines():
                if isinstance(substring, str):
                    if substring in line:
                        return line
                elif substring.search(line):
                    return line
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)

    CLOSE_RE = (r"^tcp connection from 127\.0\.0\.1 port %d closed \((\w+)\): "
                r"(\d+) bytes in, (\d+) bytes out, (\d+(?:\.\d+)?) s$")

    def wait_close(self, client_port, timeout=5.0):
        """Waits for the close line of the client at client_port; returns
        dict(reason, bytes_in, bytes_out, seconds) or None."""
        rx = re.compile(self.CLOSE_RE % client_port)
        line = self.wait_log(rx, timeout)
        if line is None:
            return None
        m = rx.search(line)
        return dict(reason=m.group(1), bytes_in=int(m.group(2)),
                    bytes_out=int(m.group(3)), seconds=float(m.group(4)), line=line)

    @staticmethod
    def _kids(pid):
        kids = set()
        try:
            tasks = os.listdir("/proc/%d/task" % pid)
        except OSError:
            return kids
        for t in tasks:
            try:
                with open("/proc/%d/task/%s/children" % (pid, t)) as f:
                    kids.update(int(x) for x in f.read().split())
            except OSError:
                pass
        return kids

    @staticmethod
    def _argv0(pid):
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                return os.path.basename(f.read().split(b"\0")[0])
        except OSError:
            return None

    def fork_helper(self):
        """The process model's fork helper (uppercased-forker), or None."""
        for k in sorted(self._kids(self.pid)):
            if self._argv0(k) == FORKER_NAME:
                return k
        return None

    def wait_fork_helper(self, timeout=5.0):
        """The fork helper, looked for until it shows: a single read of
        /proc's children lists once missed it in CI."""
        assert wait_for(lambda: self.fork_helper() is not None, timeout), \
            "no %s under the daemon: %s" % (FORKER_NAME.decode(), self.log())
        return self.fork_helper()

    def children(self):
        """The workers: the daemon's child processes, and the fork
        helper's, not the helper itself (descendants() has it too)."""
        kids = self._kids(self.pid)
        helper = self.fork_helper()
        if helper is not None:
            kids.discard(helper)
            kids |= self._kids(helper)
            self.known_children.add(helper)
        self.known_children.update(kids)
        return sorted(kids)

    def descendants(self):
        """Every process under the daemon: workers and the fork helper."""
        kids = set(self.children())
        helper = self.fork_helper()
        if helper is not None:
            kids.add(helper)
        return sorted(kids)

    @staticmethod
    def _vmrss(pid):
        try:
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def rss_kib(self):
        total = self._vmrss(self.pid)
        if self.model == "process":
            for c in self.descendants():
                total += self._vmrss(c)
        return total

    # ---- clients ------------------------------------------------------------

    def tcp_connect(self, port=None, nodelay=False, timeout=SOCK_TIMEOUT):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(timeout)
        if nodelay:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            s.connect(("127.0.0.1", port or self.port))
        except Exception:
            s.close()
            raise
        return s

    def udp_exchange(self, data, port=None, timeout=SOCK_TIMEOUT, bufsize=65536):
        """Sends one datagram from a fresh socket, returns the reply."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(timeout)
            s.bind(("127.0.0.1", 0))
            s.sendto(data, ("127.0.0.1", port or self.port))
            reply, addr = s.recvfrom(bufsize)
            assert addr == ("127.0.0.1", port or self.port), addr
            return reply

    # ---- stopping -------------------------------------------------------------

    def send_signal(self, sig):
        os.kill(self.pid, sig)

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        """Sends sig, waits up to timeout, returns the exit code (negative
        for a signal) or None if it did not exit."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            if self.model == "process":
                self.children()
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                return None
        self.exit_code = self.proc.returncode
        return self.exit_code

    def sanitizer_report(self, everything=True):
        text = self.log(everything)
        for m in SANITIZER_MARKERS:
            if m in text:
                return text
        return None

    def cleanup(self):
        """Kills whatever is left, by PID; closes the notify socket."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.children()
                # A graceful stop first, so that LeakSanitizer can report.
                try:
                    os.kill(self.pid, signal.SIGTERM)
                    self.proc.wait(5)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    pass
            if self.proc.poll() is None:
                self.children()
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    pass
            self.exit_code = self.proc.returncode
            for c in self.known_children:
                # Only the daemon's own (former) children, if still alive and
                # still children of nobody but init: kill by PID.
                if pid_alive(c):
                    try:
                        with open("/proc/%d/cmdline" % c, "rb") as f:
                            cmd = f.read().split(b"\0")[0]
                    except OSError:
                        continue
                    if os.path.basename(cmd) in (b"uppercased", FORKER_NAME) or cmd == BINARY.encode():
                        try:
                            os.kill(c, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
        self._stop_reader = True
        if self._reader is not None:
            # Wake the reader at once instead of waiting for its timeout.
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as w:
                    w.sendto(b"", self.notify_path)
            except OSError:
                pass
            self._reader.join(2)
        if self._notify is not None:
            self._notify.close()
        if self._stderr_file is not None:
            self._stderr_file.close()


@pytest.fixture(scope="session", params=MODELS, ids=[m[0] for m in MODELS])
def model(request):
    """(model, extra args) for every worker model, plus event with -t 2."""
    return request.param[1], list(request.param[2])


def _dump(d, everything=False):
    """Shown by pytest under "Captured stdout teardown" of a failed test."""
    tail = d.log(everything).splitlines()[-60:]
    print("---- daemon %s (%s %s, exit %r) stderr, last %d lines:"
          % (d.pid if d.proc else "-", d.model, " ".join(d.args), d.exit_code, len(tail)))
    print("\n".join(tail))
    print("---- notifications: %r" % (d.notifications[-20:],))


@pytest.fixture
def daemon_factory(request):
    """make(model=..., args=[...], **config) -> a started Daemon of its own,
    for tests that change settings, signal or kill it.  All are stopped and
    killed (by PID) at teardown; a sanitizer report in any daemon's stderr
    fails the test."""
    made = []

    def make(model="event", args=(), start=True, **config):
        """config: Daemon keyword arguments (activate=, activate_names=,
        avoid_ports=, env_extra=) and config_text() settings."""
        d = Daemon(model=model, args=args, **config)
        made.append(d)
        if start:
            d.start()
        return d

    yield make
    reports = []
    failed = getattr(request.node, "rep_failed", True)
    for d in made:
        d.cleanup()
        rep = d.sanitizer_report()
        if rep is not None:
            reports.append(rep)
        if failed:
            _dump(d, everything=True)
        elif rep is None:
            shutil.rmtree(d.dir, ignore_errors=True)
    if reports:
        pytest.fail("sanitizer report in the daemon's stderr:\n" + "\n----\n".join(reports),
                    pytrace=False)


@pytest.fixture(scope="session")
def _shared_daemons():
    pool = {}
    yield pool
    reports = []
    for d in pool.values():
        d.cleanup()
        rep = d.sanitizer_report()
        if rep is not None:
            reports.append(rep)
        else:
            shutil.rmtree(d.dir, ignore_errors=True)
    if reports:
        pytest.fail("sanitizer report in a shared daemon's stderr (at its stop):\n"
                    + "\n----\n".join(reports), pytrace=False)


@pytest.fixture
def daemon(model, _shared_daemons, request):
    """A daemon with the default test config, in each worker model.  To keep
    the suite fast it is shared by the tests that do not change, signal or
    stop it; it is killed and replaced after a test that failed, and a test
    during which it died or printed a sanitizer report fails."""
    key = (model[0], tuple(model[1]))
    d = _shared_daemons.get(key)
    if d is not None and not d.running():
        d.cleanup()
        d = None
    if d is None:
        d = Daemon(model=model[0], args=model[1])
        _shared_daemons[key] = d
        d.start()
    d.mark()
    yield d
    problems = []
    if not d.running():
        d.exit_code = d.proc.returncode
        problems.append("the daemon died during the test (exit status %r)" % d.exit_code)
    rep = d.sanitizer_report(everything=False)
    if rep is not None:
        problems.append("sanitizer report in the daemon's stderr:\n" + rep)
    if problems or getattr(request.node, "rep_failed", True):
        _dump(d)
        d.cleanup()
        del _shared_daemons[key]
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call":
        item.rep_failed = rep.failed
    elif not hasattr(item, "rep_failed"):
        item.rep_failed = rep.failed


@pytest.fixture
def asan():
    return ASAN


def skip_if_asan(reason="RSS is meaningless under AddressSanitizer"):
    if ASAN:
        pytest.skip(reason)
