# SPDX-License-Identifier: MIT
"""The control socket cannot be taken, nor used to pin the daemon's memory
or its main loop (issue 11, item 5): whatever other control clients do,
root's uppercasectl stats answers within a second, the daemon's memory
stays bounded, and new TCP clients are served at once.

Every place taken: the newcomer takes the place of the least recently
active client of the user holding the most places (uppercasectl(8),
Limits).  The connection list, the one reply that grows with the load, is
written as the client reads it."""

import json
import socket
import time

import pytest

from conftest import ASAN, SOCK_TIMEOUT, recv_exact, skip_if_asan
from test_control import ctl, stats, wait_stats
from test_faults import collect, pss_kib, raise_nofile, reset, spread_connect

PLACES = 64


def control_clients(d, n, send=b""):
    """n control connections, each having sent `send` (nothing: silent)."""
    socks = []
    for _ in range(n):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # Blocking: a UNIX connect() with a timeout fails at once when the
        # listen backlog is full, instead of waiting its turn.
        s.connect(d.control)
        s.settimeout(SOCK_TIMEOUT)
        if send:
            s.sendall(send)
        socks.append(s)
    return socks


def timed_stats(d):
    """Root's uppercasectl stats: (seconds, exit status, stderr)."""
    t0 = time.monotonic()
    p = ctl(d.control, "stats")
    return time.monotonic() - t0, p.returncode, p.stderr


def answer_all(socks):
    """Every connection answers a line: its worker runs.  The daemon counts
    a connection active once admitted, and the process model's helper may
    still be forking the end of a burst."""
    for s in socks:
        s.sendall(b"x\n")
    for s in socks:
        assert recv_exact(s, 2) == b"X\n"


def new_client_latencies(d, tries=5):
    """The connect + reply of a few fresh TCP clients, in seconds, sorted."""
    took = []
    for i in range(tries):
        t0 = time.monotonic()
        with socket.create_connection(("127.0.0.1", d.port), timeout=SOCK_TIMEOUT) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(b"nuovo %d\n" % i)
            assert recv_exact(s, 8) == b"NUOVO %d\n" % i
        took.append(time.monotonic() - t0)
        time.sleep(0.05)
    return sorted(took)


def test_silent_clients_do_not_lock_out(daemon_factory):
    """64 control clients that never send anything: uppercasectl answers
    at once, taking the place of the least recently active."""
    d = daemon_factory(model="event")
    squatters = control_clients(d, PLACES)
    try:
        took, code, err = timed_stats(d)
        assert code == 0 and took < 1.0, (took, code, err)
        # The oldest squatter made room, and was told why.
        data, how = collect(squatters[:1], 2)[0]
        assert data == b"ERROR closed to make room for another control client\n" and how == "eof", (data, how)
        assert d.wait_log("All 64 control client places are taken: closing the least recently active "
                          "client of uid 0", timeout=2), d.log()
    finally:
        for s in squatters:
            s.close()


def test_idle_clients_do_not_lock_out(daemon_factory):
    """64 control clients that asked once and then idle (each renewing its
    60 s before the last): uppercasectl answers at once, more than once."""
    d = daemon_factory(model="event")
    idlers = control_clients(d, PLACES, b"help\n")
    try:
        for s in idlers:
            reply = b""
            while not reply.endswith(b"OK\n"):
                reply += s.recv(4096)
        for _ in range(3):
            took, code, err = timed_stats(d)
            assert code == 0 and took < 1.0, (took, code, err)
    finally:
        for s in idlers:
            s.close()


@pytest.mark.slow
@pytest.mark.parametrize("model", ["event", "thread", "process"])
def test_unread_connection_lists(daemon_factory, model):
    """With 5,000 connections open and served, 64 control clients ask for
    the connection list thirty times each and never read: root's stats
    answers within a second, the daemon's memory grows by less than 64 MiB,
    and new TCP clients' connect and reply take under 50 ms (the median of
    five; the thread and process models accept on the main loop, which
    serves the control socket too).  The worst of the five only has to stay
    under 250 ms: a locked-out accept would take seconds, while a 2-vCPU
    VM's scheduling puts a few in a hundred past 50 ms, old code and new
    (bench/run --busy measures the p99)."""
    conns = 5000
    raise_nofile(conns + 512)
    d = daemon_factory(model=model, max_connections=conns + 100, max_workers=conns + 100,
                       backlog=1024)
    held = spread_connect(d, conns)
    readers = []
    try:
        st = wait_stats(d, lambda st: st["tcp"]["active"] == conns, timeout=30)
        assert st["tcp"]["active"] == conns, st["tcp"]
        answer_all(held)
        before = pss_kib(d)
        readers = control_clients(d, PLACES, b"connections\n" * 30)
        time.sleep(1.0)
        took, code, err = timed_stats(d)
        assert code == 0 and took < 1.0, (took, code, err)
        took = new_client_latencies(d)
        median, worst = took[len(took) // 2], took[-1]
        assert median < (0.25 if ASAN else 0.05), "new TCP clients took %s s" % took
        assert worst < (1.0 if ASAN else 0.25), "new TCP clients took %s s" % took
        if not ASAN:
            grown = (pss_kib(d) - before) / 1024.0
            assert grown < 64, "the daemon grew by %.1f MiB" % grown
    finally:
        for s in readers:
            s.close()
        # Reset: thousands of TIME_WAITs would use up the ports of the
        # tests that follow.
        for s in held:
            reset(s)


def test_connection_list_complete_when_read(daemon_factory):
    """Written a part at a time, the list read to its end is whole: every
    connection once, then OK."""
    raise_nofile(3000)
    d = daemon_factory(model="event", max_connections=3000, backlog=1024)
    held = spread_connect(d, 2500)
    try:
        wait_stats(d, lambda st: st["tcp"]["active"] == 2500, timeout=30)
        p = ctl(d.control, "--json", "connections")
        assert p.returncode == 0, p.stderr
        ids = [c["id"] for c in json.loads(p.stdout)["connections"]]
        assert len(ids) == 2500 and len(set(ids)) == 2500
    finally:
        for s in held:
            reset(s)
