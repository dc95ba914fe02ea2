# SPDX-License-Identifier: MIT
"""Fault injection, signal side (issue 7, item 5), in every worker model:
SIGHUP storms during traffic, SIGTERM with hundreds of replies owed, and
workers killed with SIGKILL.

Only the process model has workers that can be killed on their own: a
SIGKILL to a thread kills the whole daemon.  What the thread model owes
instead, that a connection thread blocked in write holds up nobody else, is
test_faults.py::test_many_peers_that_never_read (eight threads blocked in
send() while a ping-pong client keeps its latency).  The killing of one
child with a bystander connection is test_lifecycle.py::
test_process_child_killed; here, many at once."""

import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import config_text, proc_state, recv_until_eof, upper
from test_control import stats, wait_stats
from test_faults import collect, exchange, make, raise_nofile, spread_connect


# ------------------------------------------------------------ SIGHUP storms

class Traffic:
    """Ping-pong on persistent TCP connections and UDP, each in a thread,
    every reply checked, until stop().  A pause of a millisecond between
    rounds leaves the GIL to the thread that reads the daemon's
    notifications: the daemon's sd_notify() blocks while 10 of them
    (net.unix.max_dgram_qlen) wait unread."""

    def __init__(self, d, tcp=4):
        self.d = d
        self.stopping = threading.Event()
        self.errors = []
        self.conns = [d.tcp_connect(nodelay=True) for _ in range(tcp)]
        self.threads = [threading.Thread(target=self._tcp, args=(i, s), daemon=True)
                        for i, s in enumerate(self.conns)]
        self.threads.append(threading.Thread(target=self._udp, daemon=True))
        self.rounds = [0] * len(self.threads)
        for t in self.threads:
            t.start()

    def _tcp(self, i, s):
        n = 0
        try:
            while not self.stopping.is_set():
                exchange(s, ("conn %d giro %d perché ß\n" % (i, n)).encode())
                n += 1
                self.rounds[i] = n
                time.sleep(0.001)
        except Exception as e:
            self.errors.append("tcp %d after %d rounds: %r" % (i, n, e))

    def _udp(self):
        n = 0
        try:
            while not self.stopping.is_set():
                msg = ("datagramma %d ǰ" % n).encode()
                reply = self.d.udp_exchange(msg)
                assert reply == upper(msg), (msg, reply)
                n += 1
                self.rounds[-1] = n
                time.sleep(0.001)
        except Exception as e:
            self.errors.append("udp after %d rounds: %r" % (n, e))

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(10)
        return self.rounds


def bad_config(d):
    return config_text(d.port, d.control, model=d.model) + "bogus: { x = = 1; };\n"


def storm(d, n, between=None, gap=0.002):
    for i in range(n):
        if between:
            between(i)
        d.send_signal(signal.SIGHUP)
        time.sleep(gap)


def count(d, text):
    return sum(1 for line in d.log_lines() if text in line)


def wait_count(d, text, at_least, timeout=10.0):
    deadline = time.monotonic() + timeout
    while count(d, text) < at_least and time.monotonic() < deadline:
        time.sleep(0.05)
    return count(d, text)


def systemd_state(d):
    """The last of RELOADING=1 / READY=1 the daemon sent."""
    fields = [f for f in d.notify_fields() if f in ("RELOADING=1", "READY=1")]
    return fields[-1] if fields else None


@pytest.mark.slow
def test_sighup_storm_during_traffic(daemon_factory, model):
    """200 SIGHUPs 2 ms apart while four TCP clients and a UDP client do
    ping-pong; then 200 more while the config file flips between a valid one
    (idle 250 s) and a broken one before each signal; then one more with
    idle 251 s.  Every request is answered correctly and traffic flows
    during both storms, no connection is lost, the reloads are logged (good
    and failed), systemd is left READY, and the last config is in force."""
    d = make(daemon_factory, model)
    d.mark()
    traffic = Traffic(d)
    time.sleep(0.2)
    t0 = time.monotonic()
    before = list(traffic.rounds)
    storm(d, 200)
    assert wait_count(d, "Configuration reloaded", 1) >= 1, d.log()[-2000:]
    middle = list(traffic.rounds)

    bad = bad_config(d)

    def flip(i):
        if i % 2:
            d.write_config(text=bad)
        else:
            d.write_config(idle="250s")     # the test's settings, idle changed

    storm(d, 200, between=flip)
    after = list(traffic.rounds)
    d.write_config(idle="251s")
    d.send_signal(signal.SIGHUP)
    storm_took = time.monotonic() - t0
    final = wait_stats(d, lambda st: st["timeouts"]["idle"] == 251, timeout=10)
    deadline = time.monotonic() + 5
    while systemd_state(d) != "READY=1" and time.monotonic() < deadline:
        time.sleep(0.05)
    rounds = traffic.stop()

    assert not traffic.errors, traffic.errors
    assert d.running()
    assert all(b < m < a for b, m, a in zip(before, middle, after)), (before, middle, after)
    assert final["timeouts"]["idle"] == 251, final
    # Signals coalesce, so not one reload per signal, but many.
    reloaded = count(d, "Configuration reloaded")
    failed = count(d, "Reload failed, keeping the old configuration")
    assert 20 <= reloaded + failed <= 401, (reloaded, failed)
    assert failed >= 1 and reloaded >= 2, (reloaded, failed)
    assert all(l.startswith("error: ") for l in d.log_lines() if "Reload failed" in l)
    assert systemd_state(d) == "READY=1", d.notifications[-10:]
    # No connection lost: each still answers, then quits cleanly (counted:
    # the client log is rate limited, and the storm's UDP traffic used it).
    quits = final["tcp"]["closed_quit"]
    for s in traffic.conns:
        exchange(s, b"dopo la tempesta\n")
        s.sendall(b".\n")
        assert recv_until_eof(s) == (b"", "eof")
        s.close()
    st = wait_stats(d, lambda st: st["tcp"]["closed_quit"] == quits + len(traffic.conns))
    assert st["tcp"]["closed_quit"] == quits + len(traffic.conns), st["tcp"]
    assert st["tcp"]["closed_error"] == final["tcp"]["closed_error"], st["tcp"]
    assert d.udp_exchange(b"fine") == b"FINE"
    print("%s: 401 SIGHUPs in %.2f s, %d reloads, %d rejected; %d exchanges during"
          % (model, storm_took, reloaded, failed, sum(rounds)))


# ----------------------------------------------- SIGTERM, replies owed

@pytest.mark.slow
def test_sigterm_with_500_connections(daemon_factory, model):
    """500 connections open, each has just sent a line whose reply is owed
    (half of them their first line, so the stop catches some before their
    first read; one in ten a line of 100 kB, more than one read, sent last
    so that the stop catches it unread), then SIGTERM: every reply arrives,
    exactly, then EOF; the daemon exits 0 well within the shutdown timeout
    (5 s), having closed every connection for reason shutdown."""
    n, shutdown = 500, 5.0
    raise_nofile(n + 256)
    # Every close entry is read: the client log is not rate limited here.
    d = make(daemon_factory, model, shutdown="5s", rate=0)
    socks = spread_connect(d, n)
    st = wait_stats(d, lambda st: st["tcp"]["active"] == n, timeout=20)
    assert st["tcp"]["active"] == n, st
    for i in range(0, n, 2):
        exchange(socks[i], b"riscaldamento %d\n" % i)
    lines = [("risposta dovuta %d perché ΐ" % i).encode() * (3000 if i % 10 == 5 else 1) + b"\n"
             for i in range(n)]
    d.mark()
    for s, line in sorted(zip(socks, lines), key=lambda sl: len(sl[1])):
        s.sendall(line)
    results = []
    reader = threading.Thread(target=lambda: results.extend(collect(socks, shutdown + 5)),
                              daemon=True)
    t0 = time.monotonic()
    d.send_signal(signal.SIGTERM)
    reader.start()
    try:
        d.proc.wait(shutdown + 5)
    except subprocess.TimeoutExpired:
        pass
    exited = time.monotonic() - t0
    reader.join(shutdown + 5)
    for s in socks:
        s.close()
    code = d.stop(sig=0, timeout=1)
    assert code == 0, (code, d.log()[-3000:])
    assert exited < shutdown, "exit %.2f s after SIGTERM, shutdown timeout %.0f s" % (exited, shutdown)
    assert len(results) == n
    bad = [(i, len(line), len(data), how) for i, ((data, how), line) in enumerate(zip(results, lines))
           if (data, how) != (upper(line), "eof")]
    assert not bad, "%d of %d replies wrong or missing (index, bytes sent, bytes back, end): %r" % (
        len(bad), n, bad[:10])
    assert d.wait_log("finishing %d connection(s)" % n, timeout=0) is not None, d.log()[:2000]
    assert count(d, "Shutdown timeout reached") == 0, d.log()[-2000:]
    closes = [l for l in d.log_lines() if re.search(r" closed \(\w+\): ", l)]
    assert len(closes) == n, len(closes)
    assert all(" closed (shutdown): " in l for l in closes), [l for l in closes if "(shutdown)" not in l][:5]
    print("%s: SIGTERM with %d replies owed: all delivered, exit 0 after %.2f s" % (model, n, exited))


# -------------------------------------------------- SIGKILL, process model

def test_process_children_killed_at_once(daemon_factory):
    """Twenty children killed in the same instant (their SIGCHLDs coalesce):
    every one is reaped and counted in workers_died, its client sees the
    connection end, the five bystanders and new clients are served."""
    d = make(daemon_factory, ("process", []))
    victims = spread_connect(d, 20)
    bystanders = spread_connect(d, 5)
    for i, s in enumerate(victims + bystanders):
        exchange(s, b"ciao %d\n" % i)
    before = stats(d)
    assert before["tcp"]["active"] == 25, before
    kids = d.children()
    assert len(kids) == 25, kids
    # Which child serves which client: the peer of its one socket.
    ports = {s.getsockname() for s in victims}
    victim_pids = [k for k in kids if child_peer(k) in ports]
    assert len(victim_pids) == 20, (victim_pids, kids)
    for k in victim_pids:
        os.kill(k, signal.SIGKILL)
    for data, how in collect(victims, 5):
        assert (data, how) in ((b"", "eof"), (b"", "reset")), (data, how)
    after = wait_stats(d, lambda st: st["tcp"]["active"] == 5, timeout=5)
    assert after["tcp"]["active"] == 5, after
    assert after["workers_died"] - before["workers_died"] == 20, after
    assert after["tcp"]["closed_error"] - before["tcp"]["closed_error"] == 20, after
    assert wait_count(d, "killed by signal 9", 20, timeout=5) == 20, d.log()[-3000:]
    for k in victim_pids:
        assert proc_state(k) is None, "child %d left in state %s" % (k, proc_state(k))
    for i, s in enumerate(bystanders):
        exchange(s, b"ancora %d\n" % i)
        s.close()
    for s in spread_connect(d, 3):
        exchange(s, b"nuovo\n")
        s.close()
    assert d.running()


def child_peer(pid):
    """The (address, port) of the client a process-model child serves: the
    remote end of its one TCP socket, from /proc/PID/net/tcp."""
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        m = re.match(r"socket:\[(\d+)\]", link)
        if m:
            inodes.add(m.group(1))
    with open("/proc/%d/net/tcp" % pid) as f:
        for line in f.read().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                ip_hex, port_hex = fields[2].split(":")
                ip = socket.inet_ntoa(bytes.fromhex(ip_hex)[::-1])
                return ip, int(port_hex, 16)
    return None
