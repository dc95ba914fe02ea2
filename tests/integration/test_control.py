# SPDX-License-Identifier: MIT
"""The control socket and uppercasectl, against the real daemon, in every
worker model (the `daemon` fixture is parametrised over event, thread,
process and event -t 2).

The ctl binary is $UPPERCASED_BUILD/uppercasectl; every call is bounded."""

import json
import os
import re
import shutil
import socket
import stat
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import BUILD, SOCK_TIMEOUT, expect_open, recv_exact, recv_until_eof, upper

CTL = os.path.join(BUILD, "uppercasectl")
CTL_TIMEOUT = 30
UDP_MAX = 65507


# --------------------------------------------------------------------------
# helpers

def ctl(path, *args, user=None, binary=CTL, timeout=CTL_TIMEOUT):
    """Runs uppercasectl -s path args...; user: a privilege-dropping prefix
    (["setpriv", ...]).  Returns the CompletedProcess, text decoded."""
    if not os.access(binary, os.X_OK):
        pytest.fail("uppercasectl not found: %s (set UPPERCASED_BUILD)" % binary)
    cmd = (user or []) + [binary, "-s", path] + list(args)
    return subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout, cwd="/", env=dict(os.environ, LC_ALL="C"))


def ctl_ok(daemon, *args):
    p = ctl(daemon.control, *args)
    assert p.returncode == 0, "uppercasectl %s: exit %d, stderr %r" % (args, p.returncode, p.stderr)
    assert p.stderr == "", p.stderr
    return p.stdout


def ctl_json(daemon, *args):
    out = ctl_ok(daemon, "--json", *args)
    assert out.endswith("\n") and out.count("\n") == 1, out
    return json.loads(out)


def stats(daemon):
    return ctl_json(daemon, "stats")


def wait_stats(daemon, pred, timeout=5.0):
    """Polls stats until pred(stats) holds; returns the last stats."""
    deadline = time.monotonic() + timeout
    while True:
        s = stats(daemon)
        if pred(s) or time.monotonic() >= deadline:
            return s
        time.sleep(0.05)


def control_raw(path, data, timeout=SOCK_TIMEOUT):
    """Speaks the wire protocol directly (as socat would): sends data, reads
    up to the final "OK" or "ERROR ..." line, or EOF."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(data)
        return read_reply(s)


def read_reply(s):
    buf = b""
    while not re.search(rb"(^|\n)(OK|ERROR[^\n]*)\n\Z", buf):
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf


def invalid_count(b):
    """Bytes Python's surrogateescape decoding cannot map: the reference
    for the daemon's invalid_utf8 counter."""
    return sum(1 for ch in b.decode("utf-8", "surrogateescape") if 0xDC80 <= ord(ch) <= 0xDCFF)


def tcp_session(daemon, payloads):
    """One TCP connection: every payload echoed upper-cased, then a
    half-close and EOF from the server.  Returns (bytes in, bytes out)."""
    s = daemon.tcp_connect()
    try:
        for p in payloads:
            s.sendall(p)
            want = upper(p)
            assert recv_exact(s, len(want)) == want, p
        s.shutdown(socket.SHUT_WR)
        assert recv_until_eof(s) == (b"", "eof")
    finally:
        s.close()
    return sum(len(p) for p in payloads), sum(len(upper(p)) for p in payloads)


def delta(after, before, *keys):
    a, b = after, before
    for k in keys:
        a, b = a[k], b[k]
    return a - b


@pytest.fixture
def own_daemon(model, daemon_factory):
    """A daemon of the test's own, in each worker model, for tests that
    change its settings or count from zero (the `daemon` fixture is shared
    by the tests that only look)."""
    m, args = model
    return daemon_factory(model=m, args=args)


# --------------------------------------------------------------------------
# stats

TCP_SESSIONS = [
    [b"hello world\n", b"caf\xc3\xa9 stra\xc3\x9fe\n"],
    [b"bad \xff\xfe bytes\n", b"x\xc3(y\n"],
    [b"no newline at the end"],
]
UDP_PAYLOADS = [b"ciao", b"udp \xff\n", b"\x80\x80abc", b"", "perché ß ΐ".encode()]


def test_stats_match_traffic(own_daemon, model):
    before = stats(own_daemon)
    assert before["tcp"]["active"] == 0

    tcp_in = tcp_out = 0
    for session in TCP_SESSIONS:
        i, o = tcp_session(own_daemon, session)
        tcp_in += i
        tcp_out += o
    udp_in = udp_out = 0
    for p in UDP_PAYLOADS:
        reply = own_daemon.udp_exchange(p)
        assert reply == upper(p)
        udp_in += len(p)
        udp_out += len(reply)
    # One reply larger than a datagram: cut, and counted as truncated.
    big = "ŉ".encode() * 30000
    reply = own_daemon.udp_exchange(big, bufsize=65536)
    assert 65000 < len(reply) <= UDP_MAX and reply == upper(big)[:len(reply)]
    udp_in += len(big)
    udp_out += len(reply)
    invalid = sum(invalid_count(p) for s in TCP_SESSIONS for p in s) + \
        sum(invalid_count(p) for p in UDP_PAYLOADS)
    assert invalid == 6

    n = len(TCP_SESSIONS)
    after = wait_stats(own_daemon, lambda s: delta(s, before, "tcp", "closed_eof") >= n
                       and s["tcp"]["active"] == 0
                       and delta(s, before, "udp", "datagrams") >= len(UDP_PAYLOADS) + 1)
    assert delta(after, before, "tcp", "accepted") == n
    assert delta(after, before, "tcp", "closed_eof") == n
    assert delta(after, before, "tcp", "closed_idle") == 0
    assert delta(after, before, "tcp", "rejected") == 0
    assert after["tcp"]["active"] == 0
    assert delta(after, before, "tcp", "bytes_in") == tcp_in
    assert delta(after, before, "tcp", "bytes_out") == tcp_out
    assert delta(after, before, "udp", "datagrams") == len(UDP_PAYLOADS) + 1
    assert delta(after, before, "udp", "bytes_in") == udp_in
    assert delta(after, before, "udp", "bytes_out") == udp_out
    assert delta(after, before, "udp", "truncated") == 1
    assert delta(after, before, "udp", "send_errors") == 0
    assert delta(after, before, "invalid_utf8") == invalid


def test_stats_json_keys(daemon, model):
    s = stats(daemon)
    assert isinstance(s["version"], str) and re.match(r"^\d+\.\d+", s["version"])
    assert s["pid"] == daemon.pid
    assert s["model"] == model[0]
    assert isinstance(s["uptime_seconds"], (int, float)) and 0 <= s["uptime_seconds"] < 600
    for k in ("active", "accepted", "rejected", "closed_idle", "bytes_in", "bytes_out"):
        assert isinstance(s["tcp"][k], int) and s["tcp"][k] >= 0, k
    for k in ("datagrams", "bytes_in", "bytes_out", "truncated", "send_errors"):
        assert isinstance(s["udp"][k], int) and s["udp"][k] >= 0, k
    assert isinstance(s["invalid_utf8"], int)
    assert s["timeouts"] == {"idle": 300, "write": 30, "shutdown": 10}


def test_status(daemon, model):
    st = ctl_json(daemon, "status")
    assert st["pid"] == daemon.pid
    assert st["model"] == model[0]
    assert st["state"] == "running"
    assert st["socket_activated"] is False
    assert "tcp 127.0.0.1:%d" % daemon.port in st["listen"]
    assert "udp 127.0.0.1:%d" % daemon.port in st["listen"]
    if "-t" in model[1]:
        assert st["threads"] == 2
    text = ctl_ok(daemon, "status")
    assert re.search(r"^Worker model: +%s$" % model[0], text, re.M), text
    assert re.search(r"^Uptime: +(\d+[dhm] )*\d+s$", text, re.M), text
    text = ctl_ok(daemon, "stats")
    for heading in ("TCP", "UDP", "Other", "Timeouts"):
        assert re.search(r"^%s$" % heading, text, re.M), text
    assert re.search(r"^  idle +300 s$", text, re.M), text


# --------------------------------------------------------------------------
# connections

def test_connections_lists_client(daemon):
    s = daemon.tcp_connect()
    try:
        port = s.getsockname()[1]
        s.sendall(b"hi\n")
        assert recv_exact(s, 3) == b"HI\n"
        text = ctl_ok(daemon, "conn")
        lines = text.splitlines()
        assert re.match(r"^ID +CLIENT +AGE +IDLE +IN +OUT +WORKER$", lines[0]), text
        assert any(re.search(r"\b127\.0\.0\.1:%d\b" % port, l) for l in lines[1:]), text
        # The counters of a connection may trail the reply by a moment.
        deadline = time.monotonic() + 5
        while True:
            conns = ctl_json(daemon, "connections")["connections"]
            mine = [c for c in conns if c["port"] == port]
            assert len(mine) == 1, conns
            c = mine[0]
            if c["bytes_out"] == 3 or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        assert c["address"] == "127.0.0.1"
        assert c["peer"] == "127.0.0.1:%d" % port
        assert c["protocol"] == "tcp"
        assert isinstance(c["id"], int) and c["id"] > 0
        assert c["bytes_in"] == 3 and c["bytes_out"] == 3
        assert 0 <= c["idle"] <= c["age"] < 60
    finally:
        s.close()
    # Gone from the list once closed.
    deadline = time.monotonic() + 5
    while any(c["port"] == port for c in ctl_json(daemon, "connections")["connections"]):
        assert time.monotonic() < deadline, "closed connection still listed"
        time.sleep(0.05)


# --------------------------------------------------------------------------
# timeouts

def test_timeout_idle_closes_open_connection(own_daemon):
    s = own_daemon.tcp_connect()
    port = s.getsockname()[1]
    s.sendall(b"x\n")
    assert recv_exact(s, 2) == b"X\n"
    expect_open(s, 0.3)
    t0 = time.monotonic()
    out = ctl_ok(own_daemon, "timeout", "idle", "1")
    assert out == "idle  1 s\n"
    data, how = recv_until_eof(s, timeout=5)
    elapsed = time.monotonic() - t0
    s.close()
    assert (data, how) == (b"", "eof"), how
    assert elapsed < 2.5, "closed after %.2f s" % elapsed
    c = own_daemon.wait_close(port)
    assert c is not None, own_daemon.log()
    assert c["reason"] == "idle", c["line"]
    assert stats(own_daemon)["tcp"]["closed_idle"] == 1


def test_timeout_write_get_set(own_daemon):
    assert ctl_ok(own_daemon, "timeout", "write", "250ms") == "write  0.25 s\n"
    assert ctl_json(own_daemon, "timeout", "write") == {"write": 0.25}
    assert ctl_ok(own_daemon, "timeout", "write") == "write  0.25 s\n"
    assert ctl_json(own_daemon, "timeout") == {"idle": 300, "write": 0.25, "shutdown": 10}
    assert stats(own_daemon)["timeouts"]["write"] == 0.25
    line = own_daemon.wait_log(re.compile(r"Timeout write set to 0\.25 s by uid %d\b" % os.geteuid()))
    assert line is not None, own_daemon.log()
    # 0 turns it off; other units.
    assert ctl_ok(own_daemon, "t", "shutdown", "0") == "shutdown  off\n"
    assert ctl_json(own_daemon, "timeout", "idle", "5m") == {"idle": 300}
    assert ctl_json(own_daemon, "timeout", "idle", "1.5") == {"idle": 1.5}
    assert ctl_ok(own_daemon, "timeout") == "idle       1.5 s\nwrite     0.25 s\nshutdown   off\n"


def test_timeout_bad_input(daemon):
    for args, message in ((["timeout", "bogus"], "unknown timeout 'bogus' (idle, write, shutdown)"),
                          (["timeout", "idle", "abc"], "invalid timeout value 'abc'")):
        p = ctl(daemon.control, *args)
        assert p.returncode == 2, p
        assert p.stdout == ""
        assert p.stderr.startswith("uppercasectl: " + message), p.stderr
        assert p.stderr.endswith("\nTry 'uppercasectl --help'.\n"), p.stderr
    # The daemon checks too, for socat users: ERROR, nothing changed.
    assert control_raw(daemon.control, b"timeout idle abc\n").startswith(b"ERROR invalid timeout value")
    assert control_raw(daemon.control, b"timeout nope\n").startswith(b"ERROR unknown timeout")
    assert ctl_json(daemon, "timeout") == {"idle": 300, "write": 30, "shutdown": 10}


@pytest.mark.parametrize("args, message", [
    (["timeout", "bogus", "5"], "unknown timeout 'bogus'"),
    (["timeout", "idle", "abc"], "invalid timeout value 'abc'"),
    (["timeout", "idle", "--", "-1"], "invalid timeout value '-1'"),
    (["timeout", "idle", "1y"], "invalid timeout value '1y'"),
    (["timeout", "idle", "169h"], "too large"),
    (["timeout", "idle", "1", "2"], "takes at most 2 arguments"),
    (["timeout", "idle 1"], "invalid argument 'idle 1'"),
    (["st"], "ambiguous command 'st': status, stats"),
    (["frobnicate"], "unknown command 'frobnicate'"),
    (["stats", "now"], "'stats' takes no arguments"),
    (["--prometheus", "status"], "no Prometheus output"),
    (["--json", "--prometheus", "stats"], "cannot be combined"),
    (["--frobnicate", "stats"], "unrecognized option '--frobnicate'"),
])
def test_usage_errors_need_no_daemon(tmp_path, args, message):
    """Checked before connecting: exit 2 even with no daemon at all."""
    p = ctl(str(tmp_path / "nonexistent.sock"), *args)
    assert p.returncode == 2, p
    assert p.stdout == ""
    lines = p.stderr.splitlines()
    assert lines[0].startswith("uppercasectl: ") and message in lines[0], p.stderr
    assert lines[1:] == ["Try 'uppercasectl --help'."], p.stderr


# --------------------------------------------------------------------------
# reload

def test_reload(own_daemon):
    own_daemon.write_config(idle="42s")
    assert ctl_ok(own_daemon, "reload") == "configuration reloaded\n"
    assert ctl_json(own_daemon, "timeout", "idle") == {"idle": 42}
    assert ctl_json(own_daemon, "reload") == {"reloaded": True}

    good = open(own_daemon.conf).read()
    broken = good + "\ntimeouts: { idle = ;\n"
    own_daemon.write_config(text=broken)
    p = ctl(own_daemon.control, "reload")
    assert p.returncode == 1, p
    assert p.stdout == ""
    assert len(p.stderr.splitlines()) == 1, p.stderr
    assert p.stderr.startswith("uppercasectl: ")
    assert re.search(r"uppercased\.conf:\d+", p.stderr), p.stderr
    # Still serving, with the configuration it had.
    assert own_daemon.udp_exchange(b"still here") == b"STILL HERE"
    s = own_daemon.tcp_connect()
    s.sendall(b"ok\n")
    assert recv_exact(s, 3) == b"OK\n"
    s.close()
    assert ctl_json(own_daemon, "timeout", "idle") == {"idle": 42}
    assert own_daemon.running()


# --------------------------------------------------------------------------
# concurrency and misbehaving control clients

def traffic_loop(daemon, stop, errors, rounds):
    try:
        s = daemon.tcp_connect()
        try:
            while not stop.is_set():
                s.sendall(b"traffic\n")
                assert recv_exact(s, 8) == b"TRAFFIC\n"
                assert daemon.udp_exchange(b"ping") == b"PING"
                rounds.append(1)
        finally:
            s.close()
    except Exception as e:      # reported by the test
        errors.append(e)


@pytest.mark.slow
def test_fifty_concurrent_stats_during_traffic(daemon):
    stop, errors, rounds = threading.Event(), [], []
    t = threading.Thread(target=traffic_loop, args=(daemon, stop, errors, rounds), daemon=True)
    t.start()
    try:
        procs = [subprocess.Popen([CTL, "-s", daemon.control, "--json", "stats"],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
                 for _ in range(50)]
        results = []
        for p in procs:
            try:
                out, err = p.communicate(timeout=CTL_TIMEOUT)
            except subprocess.TimeoutExpired:
                p.kill()
                out, err = p.communicate()
            results.append((p.returncode, out, err))
    finally:
        stop.set()
        t.join(10)
    for rc, out, err in results:
        assert rc == 0, (rc, err)
        s = json.loads(out)
        assert s["pid"] == daemon.pid and "tcp" in s and "udp" in s
    assert not errors, errors
    assert len(rounds) > 0


def test_silent_control_clients_do_not_stall(daemon):
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    half = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        silent.connect(daemon.control)
        half.connect(daemon.control)
        half.sendall(b"sta")
        t0 = time.monotonic()
        s = stats(daemon)
        assert time.monotonic() - t0 < 2, "stats stalled"
        assert s["pid"] == daemon.pid
        assert daemon.udp_exchange(b"udp") == b"UDP"
        c = daemon.tcp_connect()
        c.sendall(b"tcp\n")
        assert recv_exact(c, 4) == b"TCP\n"
        c.close()
        # The half line, completed, is answered.
        half.settimeout(SOCK_TIMEOUT)
        half.sendall(b"ts\n")
        reply = read_reply(half)
        assert reply.endswith(b"\nOK\n") and b"\ntcp.active " in reply, reply
    finally:
        silent.close()
        half.close()


def test_long_request_gets_error(daemon):
    reply = control_raw(daemon.control, b"x" * 600 + b"\n")
    assert reply == b"ERROR request too long (at most 512 bytes)\n", reply
    reply = control_raw(daemon.control, b"stats" + b" " * 508 + b"\n")      # 513 bytes
    assert reply.startswith(b"ERROR request too long"), reply
    reply = control_raw(daemon.control, b"stats" + b" " * 507 + b"\n")      # 512 bytes
    assert reply.endswith(b"\nOK\n") and reply.startswith(b"version "), reply
    # A NUL byte is no line end.
    assert control_raw(daemon.control, b"stats\0\n").startswith(b"ERROR request contains control")
    # Several requests on one connection, answered in order.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(SOCK_TIMEOUT)
        s.connect(daemon.control)
        s.sendall(b"timeout idle\ntimeout write\n")
        buf = b""
        while buf.count(b"OK\n") < 2:
            chunk = s.recv(4096)
            assert chunk, buf
            buf += chunk
        assert buf == b"idle 300\nOK\nwrite 30\nOK\n", buf
    assert stats(daemon)["pid"] == daemon.pid


# --------------------------------------------------------------------------
# Prometheus

PROM_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
PROM_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
PROM_SAMPLE = re.compile(r"^(%s)(\{%s(?:,%s)*\})? (\S+)$" % (PROM_NAME, PROM_LABEL, PROM_LABEL))


def test_prometheus(own_daemon, model):
    tcp_session(own_daemon, [b"abc\n"])
    own_daemon.udp_exchange(b"abc")
    wait_stats(own_daemon, lambda s: s["tcp"]["closed_eof"] == 1)
    text = ctl_ok(own_daemon, "--prometheus", "stats")
    instance = stats(own_daemon)["instance"]
    helps, types, samples = set(), {}, {}
    for line in text.splitlines():
        # Every sample carries the instance name; the rest is read without it.
        if not line.startswith("#"):
            label = 'uppercased_instance="%s"' % instance
            assert "{%s" % label in line, line
            line = line.replace("{%s}" % label, "").replace("{%s," % label, "{")
        m = re.match(r"^# HELP (%s) \S.*$" % PROM_NAME, line)
        if m:
            helps.add(m.group(1))
            continue
        m = re.match(r"^# TYPE (%s) (counter|gauge)$" % PROM_NAME, line)
        if m:
            types[m.group(1)] = m.group(2)
            continue
        m = PROM_SAMPLE.match(line)
        assert m, "bad line: %r" % line
        name = m.group(1)
        assert name in helps and name in types, "no HELP/TYPE before %r" % line
        if types[name] == "counter":
            assert name.endswith("_total"), line
        samples[name + (m.group(2) or "")] = float(m.group(3))
    assert samples['uppercased_info{version="%s",model="%s"}' % (stats(own_daemon)["version"], model[0])] == 1
    assert types["uppercased_tcp_connections_active"] == "gauge"
    assert samples["uppercased_tcp_connections_active"] == 0
    assert types["uppercased_tcp_connections_accepted_total"] == "counter"
    assert samples["uppercased_tcp_connections_accepted_total"] == 1
    assert samples['uppercased_tcp_connections_closed_total{reason="eof"}'] == 1
    assert samples['uppercased_tcp_connections_closed_total{reason="idle"}'] == 0
    # Prometheus's naming: the unit before _total.
    assert samples["uppercased_tcp_received_bytes_total"] == 4
    assert samples["uppercased_tcp_sent_bytes_total"] == 4
    assert samples["uppercased_udp_datagrams_total"] == 1
    assert samples["uppercased_udp_received_bytes_total"] == 3
    assert samples["uppercased_udp_sent_bytes_total"] == 3
    assert not [n for n in types if "bytes_received" in n or "bytes_sent" in n], types
    # Datagrams dropped: one metric, the reason in a label.
    assert types["uppercased_udp_dropped_total"] == "counter"
    assert samples['uppercased_udp_dropped_total{reason="rate_limited"}'] == 0
    assert samples['uppercased_udp_dropped_total{reason="loop_dropped"}'] == 0
    assert samples['uppercased_timeout_seconds{name="idle"}'] == 300
    assert types["uppercased_timeout_seconds"] == "gauge"
    assert 0 <= samples["uppercased_uptime_seconds"] < 600
    assert types["uppercased_start_time_seconds"] == "gauge"
    assert abs(samples["uppercased_start_time_seconds"] + samples["uppercased_uptime_seconds"] - time.time()) < 5
    promtool_check(text)


def promtool_check(text):
    """Prometheus's own linter (tools/install-deps installs it)."""
    promtool = shutil.which("promtool")
    if not promtool:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool not installed (tools/install-deps)")
        pytest.skip("promtool not installed")
    p = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True,
                       timeout=CTL_TIMEOUT)
    assert p.returncode == 0 and p.stdout == "" and p.stderr == "", (p, text)


# --------------------------------------------------------------------------
# unreachable, refused

def test_unreachable_socket(tmp_path):
    path = str(tmp_path / "nonexistent.sock")
    p = ctl(path, "stats")
    assert p.returncode == 3, p
    assert p.stdout == ""
    assert p.stderr == ("uppercasectl: cannot reach uppercased at %s: No such file or directory "
                        "(is it running? try: systemctl status uppercased.socket)\n" % path)
    # A socket file left behind by a dead daemon.
    stale = str(tmp_path / "stale.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(stale)
    s.close()
    p = ctl(stale, "stats")
    assert p.returncode == 3 and "Connection refused" in p.stderr and "systemctl status" in p.stderr, p


def test_no_reply_times_out(tmp_path):
    path = str(tmp_path / "mute.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    try:
        t0 = time.monotonic()
        p = ctl(path, "stats")
        elapsed = time.monotonic() - t0
    finally:
        listener.close()
    assert p.returncode == 3, p
    assert p.stderr == "uppercasectl: no reply from uppercased at %s within 5 s\n" % path
    assert 4.5 < elapsed < 15


def privilege_drop(*extra):
    if os.geteuid() != 0:
        pytest.skip("needs root to run uppercasectl as nobody")
    if shutil.which("setpriv"):
        return ["setpriv", "--reuid=nobody", "--regid=nogroup"] + list(extra)
    if shutil.which("runuser") and not extra:
        return ["runuser", "-u", "nobody", "--"]
    pytest.skip("neither setpriv nor runuser available")


@pytest.fixture
def public_ctl():
    """A copy of uppercasectl that nobody can run, whatever the permissions
    of the build directory's parents."""
    d = tempfile.mkdtemp(prefix="upc-ctl-", dir="/tmp")
    os.chmod(d, 0o755)
    path = os.path.join(d, "uppercasectl")
    shutil.copy2(CTL, path)
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(d, ignore_errors=True)


def test_nobody_is_refused(daemon_factory, public_ctl):
    user = privilege_drop("--clear-groups")
    d = daemon_factory()
    st = os.stat(d.control)
    assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == 0, oct(st.st_mode)
    # Directory closed (0700) and then open (0755): refused either way,
    # by the directory or by the socket's own mode.
    for mode in (0o700, 0o755):
        os.chmod(d.dir, mode)
        p = ctl(d.control, "stats", user=user, binary=public_ctl)
        assert p.returncode == 3, p
        assert p.stdout == ""
        assert p.stderr == ("uppercasectl: permission denied: %s: you need to be root or in "
                            "group uppercased\n" % d.control), p.stderr
        p = ctl(d.control, "timeout", "idle", "1", user=user, binary=public_ctl)
        assert p.returncode == 3 and "permission denied" in p.stderr, p
    assert ctl_json(d, "timeout", "idle") == {"idle": 300}
    # The socket's group is what grants access, to the reading commands:
    # with it, nobody may read a timeout, not change it.
    if user[0] == "setpriv":
        member = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--groups=%d" % st.st_gid]
        p = ctl(d.control, "timeout", "idle", user=member, binary=public_ctl)
        assert p.returncode == 0 and p.stdout == "idle  300 s\n", p
        p = ctl(d.control, "timeout", "idle", "7", user=member, binary=public_ctl)
        assert p.returncode == 1, p
        assert p.stderr == ("uppercasectl: permission denied: timeout VALUE needs root or group "
                            "uppercased-admin\n"), p.stderr
        assert ctl_json(d, "timeout", "idle") == {"idle": 300}


# --------------------------------------------------------------------------
# the command line itself

def test_help_and_version():
    p = subprocess.run([CTL, "--help"], capture_output=True, text=True, timeout=CTL_TIMEOUT)
    assert p.returncode == 0 and p.stdout.startswith("Usage: uppercasectl"), p
    for c in ("status", "stats", "connections", "timeout [NAME [VALUE]]", "reload", "help"):
        assert "\n  %s " % c in p.stdout, c
    assert subprocess.run([CTL, "help"], capture_output=True, text=True).stdout == p.stdout
    p = subprocess.run([CTL, "-V"], capture_output=True, text=True, timeout=CTL_TIMEOUT)
    assert p.returncode == 0 and re.match(r"^uppercasectl \d+\.\d+", p.stdout), p
    p = subprocess.run([CTL], capture_output=True, text=True, timeout=CTL_TIMEOUT)
    assert p.returncode == 2 and p.stderr == ("uppercasectl: missing command\n"
                                              "Try 'uppercasectl --help'.\n"), p
