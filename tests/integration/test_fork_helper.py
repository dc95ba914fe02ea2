# SPDX-License-Identifier: MIT
"""The process model's fork helper (daemon/fork-helper.h): a small program
without libsystemd that forks the workers, so that a connection costs the
fork of a small process, not of the daemon.  What users see: every
connection still has a process of its own, `uppercasectl connections`
names it, killing it ends one connection; what they must not see: a
connection lost because the helper was slow, stopped or killed."""

import json
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

from conftest import BUILD, recv_exact, recv_until_eof, wait_for
from test_control import ctl_json, stats


def ppid(pid):
    with open("/proc/%d/stat" % pid) as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def mapped_libraries(pid):
    with open("/proc/%d/maps" % pid) as f:
        return {os.path.basename(l.split()[-1]) for l in f if ".so" in l}


def session(d, text=b"ciao\n"):
    s = d.tcp_connect()
    s.sendall(text)
    assert recv_exact(s, len(text)) == text.upper()
    return s


def workers_listed(d):
    return sorted(c["worker"] for c in ctl_json(d, "connections")["connections"])


def test_workers_are_forked_by_the_lean_helper(daemon_factory):
    d = daemon_factory(model="process")
    sessions = [session(d) for _ in range(3)]
    try:
        helper = d.wait_fork_helper()
        assert ppid(helper) == d.pid
        workers = d.children()
        assert len(workers) == 3, workers
        assert all(ppid(w) == helper for w in workers), [(w, ppid(w)) for w in workers]
        assert workers_listed(d) == workers
        # What makes its forks cheap: none of the daemon's libraries.
        assert any(l.startswith("libsystemd") for l in mapped_libraries(d.pid))
        for pid in [helper] + workers:
            libs = mapped_libraries(pid)
            assert not any(l.startswith(("libsystemd", "libconfig", "liblz4", "libzstd", "libgcrypt"))
                           for l in libs), (pid, sorted(libs))
    finally:
        for s in sessions:
            s.close()
    assert wait_for(lambda: stats(d)["tcp"]["active"] == 0), stats(d)
    assert wait_for(lambda: d.children() == []), d.children()
    assert stats(d)["tcp"]["closed_eof"] == 3


def test_a_killed_worker_ends_its_connection_only(daemon_factory):
    d = daemon_factory(model="process")
    a, b = session(d, b"a\n"), session(d, b"b\n")
    try:
        victim = [c["worker"] for c in ctl_json(d, "connections")["connections"]
                  if c["peer"].endswith(":%d" % a.getsockname()[1])]
        assert len(victim) == 1
        os.kill(victim[0], signal.SIGKILL)
        assert recv_until_eof(a)[0] == b""
        d.wait_log("Worker process %d serving 127.0.0.1 port %d killed by signal 9"
                   % (victim[0], a.getsockname()[1]))
        b.sendall(b"ancora\n")
        assert recv_exact(b, 7) == b"ANCORA\n"
        st = stats(d)
        assert st["workers_died"] == 1, st
        assert st["tcp"]["active"] == 1, st
    finally:
        a.close()
        b.close()


def test_helper_killed_its_connections_close_new_ones_served(daemon_factory):
    d = daemon_factory(model="process")
    a = session(d)
    helper = d.wait_fork_helper()
    os.kill(helper, signal.SIGKILL)
    d.wait_log("The fork helper (PID %d) exited; its 1 connections are closed" % helper)
    assert recv_until_eof(a)[0] == b""
    a.close()
    # From now on the daemon forks the workers itself.
    b = session(d, b"dopo\n")
    try:
        workers = d.children()
        assert len(workers) == 1 and ppid(workers[0]) == d.pid, workers
        st = stats(d)
        assert st["tcp"]["closed_error"] == 1 and st["tcp"]["active"] == 1, st
    finally:
        b.close()
    assert wait_for(lambda: stats(d)["tcp"]["active"] == 0)
    assert d.running()


def test_stopped_helper_loses_no_connection(daemon_factory):
    """While the helper is stopped its socket fills (a few batches); then
    the daemon holds the next connection and stops accepting, so that the
    others wait in the listen backlog, under max_workers; once the helper
    goes on, every one is served."""
    n = 100
    d = daemon_factory(model="process")
    helper = d.wait_fork_helper()
    conns = []
    held_at = None
    os.kill(helper, signal.SIGSTOP)
    try:
        for i in range(n):
            s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
            s.sendall(b"c%d\n" % i)
            conns.append(s)
            # One at a time: each its own accept batch, its own message.
            if held_at is None and not wait_for(lambda: stats(d)["tcp"]["accepted"] == i + 1, timeout=1.0):
                held_at = i
        assert held_at is not None and held_at < 80, held_at
        time.sleep(0.3)
        st = stats(d)
        assert st["tcp"]["accepted"] == held_at and st["tcp"]["rejected"] == 0, (held_at, st)
    finally:
        os.kill(helper, signal.SIGCONT)
    try:
        for i, s in enumerate(conns):
            want = b"C%d\n" % i
            assert recv_exact(s, len(want), timeout=20) == want, i
    finally:
        for s in conns:
            s.close()
    assert wait_for(lambda: stats(d)["tcp"]["active"] == 0, timeout=20), stats(d)
    st = stats(d)
    assert st["tcp"]["accepted"] == n and st["tcp"]["closed_eof"] == n, st
    assert "Failed to hand" not in d.log()


def test_without_the_helper_the_daemon_forks(daemon_factory, tmp_path):
    """A daemon whose helper is not installed says so and serves all the
    same, forking from itself."""
    installed = "/usr/local/libexec/uppercased/uppercased-forker"
    if os.path.exists(installed):
        pytest.skip("%s is installed" % installed)
    alone = os.path.join(str(tmp_path), "uppercased")
    shutil.copy(os.path.join(BUILD, "uppercased"), alone)
    d = daemon_factory(model="process", binary=alone)
    d.wait_log("Failed to start the fork helper %s, forking workers from the daemon" % installed)
    a = session(d)
    try:
        assert d.fork_helper() is None
        workers = d.children()
        assert len(workers) == 1 and ppid(workers[0]) == d.pid
    finally:
        a.close()
    assert wait_for(lambda: stats(d)["tcp"]["active"] == 0)
