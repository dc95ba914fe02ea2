# SPDX-License-Identifier: MIT
"""Resource limits of the daemon itself: out of descriptors in accept(),
the descriptor budget under a low limit, the watchdog and the control
socket out of descriptors."""
import os
import re
import selectors
import socket
import subprocess
import time

import pytest

from conftest import BINARY, SOCK_TIMEOUT, recv_exact
from test_control import stats


def cpu_ticks(pid):
    fields = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])      # utime + stime


def test_out_of_descriptors_pauses_accept(daemon_factory, model):
    """With no descriptor left, accept() fails with EMFILE: the daemon must
    neither spin nor lose the connection, and serves it once descriptors are
    back."""
    m, args = model
    d = daemon_factory(model=m, args=args)
    soft, hard = subprocess.run(["prlimit", "--pid", str(d.pid), "--nofile", "-o", "SOFT,HARD",
                                 "--noheadings"], capture_output=True, text=True,
                                check=True).stdout.split()
    # A limit of 3: every new descriptor fails (the ones open stay usable),
    # whatever the daemon holds at this moment (sd_notify() opens one
    # briefly, for instance).
    subprocess.run(["prlimit", "--pid", str(d.pid), "--nofile=3:%s" % hard], check=True)
    c = socket.create_connection(("127.0.0.1", d.port), timeout=SOCK_TIMEOUT)
    try:
        c.sendall(b"ciao")
        assert d.wait_log("pausing accepts", timeout=5), d.log()
        ticks = cpu_ticks(d.pid)
        time.sleep(1.0)
        used = cpu_ticks(d.pid) - ticks
        assert used < 20, "the daemon used %d ticks in 1 s while out of descriptors" % used
        subprocess.run(["prlimit", "--pid", str(d.pid), "--nofile=%s:%s" % (soft, hard)], check=True)
        c.settimeout(5)
        assert c.recv(16) == b"CIAO"
    finally:
        c.close()
    # Still serving normally afterwards.
    with socket.create_connection(("127.0.0.1", d.port), timeout=SOCK_TIMEOUT) as s:
        s.sendall(b"dopo")
        assert s.recv(16) == b"DOPO"


# --------------------------------------------------------------------------
# the descriptor budget (uppercased(8), DESCRIPTORS)


def limits_of(pid):
    """(soft, hard) RLIMIT_NOFILE of pid."""
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return int(soft), int(hard)
    raise AssertionError("no 'Max open files' in /proc/%d/limits" % pid)


def cpu_seconds(pid):
    """utime + stime of pid and of the children it reaped, in seconds."""
    fields = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def test_descriptor_limit_raised(daemon_factory):
    """The soft RLIMIT_NOFILE is raised to the hard one at start (systemd
    starts services with 1024:524288)."""
    d = daemon_factory(model="event", wrapper=["prlimit", "--nofile=256:4096"])
    assert limits_of(d.pid) == (4096, 4096)
    assert "descriptor limit" not in d.log()


def test_check_config_says_when_connections_do_not_fit(tmp_path):
    """-n names the numbers when max_connections does not fit the limit the
    daemon would run with; the configuration is still OK."""
    conf = tmp_path / "u.conf"
    conf.write_text('workers: { max_connections = 1024; };\n')
    p = subprocess.run(["prlimit", "--nofile=64:64", BINARY, "-n", "-c", str(conf)],
                       capture_output=True, text=True, timeout=10)
    assert p.returncode == 0 and p.stdout == "configuration OK: %s\n" % conf, p
    assert re.fullmatch(r"warning: The descriptor limit 64 leaves \d+ for connections, fewer than "
                        r"max_connections 1024 \(about \d+ of the daemon's own, 16 spare, \d+ for control "
                        r"clients\): .*LimitNOFILE=.*\n", p.stderr), p.stderr
    conf.write_text('workers: { max_connections = 10; };\n')
    p = subprocess.run(["prlimit", "--nofile=64:64", BINARY, "-n", "-c", str(conf)],
                       capture_output=True, text=True, timeout=10)
    assert (p.returncode, p.stdout, p.stderr) == (0, "configuration OK: %s\n" % conf, "")


def hold_tcp(d, n):
    """n connections to d; those past the budget wait in the backlog."""
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.settimeout(SOCK_TIMEOUT)
        s.connect(("127.0.0.1", d.port))
        socks.append(s)
    return socks


def hold_control(d, n):
    """Up to n silent control connections (the listen backlog may refuse
    some at once: connect() to a UNIX socket does not wait)."""
    socks = []
    for _ in range(n):
        s = socket.socket(socket.AF_UNIX)
        s.setblocking(False)
        try:
            s.connect(d.control)
        except BlockingIOError:
            s.close()
            continue
        socks.append(s)
    return socks


def served_count(socks, wait=0.5):
    """How many of socks answer a line within `wait` seconds (all asked at
    once: those in the listen backlog do not answer)."""
    sel = selectors.DefaultSelector()
    for s in socks:
        s.sendall(b"x\n")
        sel.register(s, selectors.EVENT_READ)
    n, deadline = 0, time.monotonic() + wait
    while time.monotonic() < deadline:
        for key, _ in sel.select(max(0.0, deadline - time.monotonic())):
            sel.unregister(key.fileobj)
            n += key.fileobj.recv(8) == b"X\n"
    sel.close()
    return n


@pytest.mark.slow
def test_low_descriptor_limit(daemon_factory, model):
    """Under a hard limit of 64 descriptors, 100 TCP and 80 control
    connections: the daemon says at start how many connections fit, serves
    that many (the rest wait in the listen backlog, none refused), uses
    under 0.05 s of CPU a second, answers uppercasectl, and once the
    connections close serves a new client within a second."""
    m, args = model
    d = daemon_factory(model=m, args=args, wrapper=["prlimit", "--nofile=64:64"])
    if m != "process":
        assert d.wait_log("The descriptor limit 64 leaves", timeout=2), d.log()
    tcp = hold_tcp(d, 100)
    control = hold_control(d, 80)
    try:
        time.sleep(0.5)
        before = cpu_seconds(d.pid)
        time.sleep(2.0)
        used = (cpu_seconds(d.pid) - before) / 2.0
        assert used < 0.05, "%.3f s of CPU a second with the descriptors taken" % used
        t0 = time.monotonic()
        st = stats(d)
        assert time.monotonic() - t0 < 1.0
        assert st["tcp"]["rejected"] == 0, st["tcp"]
        served = served_count(tcp)
        if m == "process":
            assert served == 100        # children hold the connections
        else:
            assert 10 <= served < 64 and st["tcp"]["active"] == served, (served, st["tcp"])
            assert d.wait_log("pausing accepts", timeout=2), d.log()
        for s in tcp:
            s.close()
        tcp = []
        t0 = time.monotonic()
        with socket.create_connection(("127.0.0.1", d.port), timeout=SOCK_TIMEOUT) as s:
            s.sendall(b"dopo\n")
            assert recv_exact(s, 5) == b"DOPO\n"
        took = time.monotonic() - t0
        assert took < 1.0, "served %.2f s after the descriptors came back" % took
    finally:
        for s in tcp + control:
            s.close()


def test_control_out_of_descriptors_pauses(daemon_factory, model):
    """With no descriptor left, the control listener pauses as TCP does: no
    spin while control clients wait, and uppercasectl answers once
    descriptors are back."""
    m, args = model
    d = daemon_factory(model=m, args=args)
    soft, hard = limits_of(d.pid)
    subprocess.run(["prlimit", "--pid", str(d.pid), "--nofile=3:%d" % hard], check=True)
    waiting = hold_control(d, 5)
    try:
        assert d.wait_log("Failed to accept a control connection, pausing", timeout=5), d.log()
        before = cpu_seconds(d.pid)
        time.sleep(1.0)
        used = cpu_seconds(d.pid) - before
        assert used < 0.1, "%.2f s of CPU in 1 s while out of descriptors" % used
    finally:
        subprocess.run(["prlimit", "--pid", str(d.pid), "--nofile=%d:%d" % (soft, hard)], check=True)
        for s in waiting:
            s.close()
    assert stats(d)["tcp"]["active"] == 0


def test_watchdog_fed_out_of_descriptors(daemon_factory, model):
    """Out of descriptors, the watchdog is still pinged: a failed ping would
    have systemd kill the daemon and every connection with it."""
    m, args = model
    d = daemon_factory(model=m, args=args, env_extra={"WATCHDOG_USEC": "300000"})
    soft, hard = limits_of(d.pid)
    subprocess.run(["prlimit", "--pid", str(d.pid), "--nofile=3:%d" % hard], check=True)
    try:
        n = len(d.notify_fields())
        time.sleep(1.0)
        pings = [f for f in d.notify_fields()[n:] if f == "WATCHDOG=1"]
        assert len(pings) >= 3, "%d WATCHDOG=1 in 1 s out of descriptors" % len(pings)
    finally:
        subprocess.run(["prlimit", "--pid", str(d.pid), "--nofile=%d:%d" % (soft, hard)], check=True)
    assert d.running()
