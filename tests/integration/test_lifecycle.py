# SPDX-License-Identifier: MIT
"""Timeouts, limits, backpressure, signals and reloads, in every worker
model (the `model` fixture), plus the process model's dead children."""

import os
import re
import signal
import socket
import time

import pytest

from conftest import (ASAN, config_text, expect_open, proc_state, recv_exact,
                      recv_until_eof, upper)
from test_control import stats, wait_stats


def make(daemon_factory, model, **config):
    m, args = model
    return daemon_factory(model=m, args=args, **config)


def exchange(s, msg):
    s.sendall(msg)
    got = recv_exact(s, len(upper(msg)))
    assert got == upper(msg)


# ------------------------------------------------------------------- idle

@pytest.mark.slow
def test_idle_timeout_closes(daemon_factory, model):
    """idle = 1s: a connection that went quiet, and one that never sent
    anything, both get EOF after about a second."""
    d = make(daemon_factory, model, idle="1s")
    s = d.tcp_connect()
    port = s.getsockname()[1]
    exchange(s, b"ciao\n")
    q = d.tcp_connect()
    qport = q.getsockname()[1]
    t0 = time.monotonic()
    data, how = recv_until_eof(s, timeout=5)
    elapsed = time.monotonic() - t0
    assert (data, how) == (b"", "eof")
    assert 0.7 <= elapsed <= 3.5, elapsed
    assert recv_until_eof(q, timeout=5) == (b"", "eof")
    assert time.monotonic() - t0 <= 3.5
    s.close()
    q.close()
    c = d.wait_close(port)
    assert c is not None, d.log()
    assert c["reason"] == "idle", c["line"]
    assert (c["bytes_in"], c["bytes_out"]) == (5, 5)
    c = d.wait_close(qport)
    assert c is not None, d.log()
    assert (c["reason"], c["bytes_in"], c["bytes_out"]) == ("idle", 0, 0), c["line"]


@pytest.mark.slow
def test_idle_timeout_spares_active_connection(daemon_factory, model):
    d = make(daemon_factory, model, idle="1s")
    s = d.tcp_connect()
    port = s.getsockname()[1]
    t0 = time.monotonic()
    i = 0
    while time.monotonic() - t0 < 2.1:
        exchange(s, b"tick %d\n" % i)
        i += 1
        time.sleep(0.3)
    assert i >= 6
    exchange(s, b"still here\n")
    assert d.wait_close(port, timeout=0) is None
    # Meanwhile the once-a-second STATUS= followed the connection count.
    statuses = [f for f in d.notify_fields() if f.startswith("STATUS=")]
    assert any(re.search(r"\b1 connection\b", st) for st in statuses), statuses
    assert model[0] in statuses[-1], statuses
    s.close()


# ---------------------------------------------------- a peer that never reads

def stuff_peer(d, seconds=3.0, during=None):
    """Connects a client that sends without ever reading, for `seconds`
    (non-blocking, bounded).  Returns (socket, client port, bytes sent, peak
    RSS in KiB).  during(elapsed) is called along the way."""
    s = d.tcp_connect()
    port = s.getsockname()[1]
    s.setblocking(False)
    chunk = ("ab" + "ΐ" * 7).encode() * 4000        # 64000 bytes in, ~180000 out
    sent = 0
    peak = d.rss_kib()
    t0 = time.monotonic()
    last_sample = 0.0
    while time.monotonic() - t0 < seconds and sent < (256 << 20):
        try:
            sent += s.send(chunk)
        except BlockingIOError:
            time.sleep(0.01)
        except (BrokenPipeError, ConnectionResetError):
            break
        now = time.monotonic()
        if now - last_sample >= 0.1:
            peak = max(peak, d.rss_kib())
            last_sample = now
        if during is not None:
            during(now - t0)
    peak = max(peak, d.rss_kib())
    return s, port, sent, peak


@pytest.mark.slow
def test_peer_that_never_reads(daemon_factory, model):
    d = make(daemon_factory, model, write="2s", idle="300s")
    served = []

    def second_client(elapsed):
        if not served and elapsed >= 1.0:
            # A second client is served normally meanwhile.
            c2 = d.tcp_connect()
            exchange(c2, b"second client\n")
            c2.close()
            assert d.udp_exchange(b"udp too") == b"UDP TOO"
            served.append(elapsed)

    t0 = time.monotonic()
    s, port, sent, _ = stuff_peer(d, 3.0, second_client)
    if not served:
        second_client(99)
    # Backpressure: the daemon stopped reading, so the sender got stuck
    # once the socket buffers (a few MB at most) were full.
    assert sent < (64 << 20), "sent %d bytes to a peer that never reads" % sent
    # The stuck connection is closed by the write timeout.
    c = d.wait_close(port, timeout=15)
    assert c is not None, "not closed within 15 s: " + d.log()[-2000:]
    assert c["reason"] == "write", c["line"]
    assert time.monotonic() - t0 < 15
    s.close()
    # And the daemon is fine.
    c3 = d.tcp_connect()
    exchange(c3, b"after\n")
    c3.close()


@pytest.mark.slow
def test_peer_that_never_reads_memory_bounded(daemon_factory, model):
    if ASAN:
        pytest.skip("RSS growth is not meaningful under AddressSanitizer")
    d = make(daemon_factory, model, write="30s", idle="300s")
    time.sleep(0.1)
    base = d.rss_kib()
    s, port, sent, peak = stuff_peer(d, 1.5)
    assert sent < (64 << 20), "sent %d bytes to a peer that never reads" % sent
    assert peak - base < 32 * 1024, "RSS grew from %d to %d KiB" % (base, peak)
    s.close()


# ----------------------------------------------------------- max_connections

def test_max_connections(daemon_factory, model):
    d = make(daemon_factory, model, max_connections=2)
    a = d.tcp_connect()
    exchange(a, b"uno\n")
    b = d.tcp_connect()
    exchange(b, b"due\n")
    c = d.tcp_connect()
    t0 = time.monotonic()
    try:
        c.sendall(b"tre\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    data, how = recv_until_eof(c, timeout=5)
    assert data == b""
    assert how in ("eof", "reset"), how
    assert time.monotonic() - t0 < 2.0
    cport = c.getsockname()[1]
    c.close()
    assert d.wait_log("tcp connection from 127.0.0.1 port %d rejected: connection limit reached" % cport,
                      timeout=5), d.log()
    # The first two keep working.
    exchange(a, b"ancora uno\n")
    exchange(b, b"ancora due\n")
    # Once one goes, a new client gets its place.
    aport = a.getsockname()[1]
    a.close()
    assert d.wait_close(aport) is not None, d.log()
    ok = False
    for _ in range(10):
        n = d.tcp_connect()
        try:
            n.sendall(b"nuovo\n")
            got = recv_exact(n, 6, timeout=2)
        except (BrokenPipeError, ConnectionResetError):
            got = b""
        n.close()
        if got == b"NUOVO\n":
            ok = True
            break
        time.sleep(0.2)
    assert ok, d.log()
    exchange(b, b"sempre due\n")
    b.close()


# ------------------------------------------------------------------ signals

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_stop_with_reply_in_flight(daemon_factory, model, sig):
    d = make(daemon_factory, model, shutdown="5s")
    s = d.tcp_connect()
    exchange(s, b"warm up\n")           # accepted (and, process model, forked)
    payload = "ciao mondo, perché no?\n".encode() * 400   # ~9.6 kB
    s.sendall(payload)
    t0 = time.monotonic()
    d.send_signal(sig)
    data, how = recv_until_eof(s, timeout=10)
    assert how == "eof", how
    assert len(data) == len(upper(payload))
    assert data == upper(payload)
    s.close()
    code = d.stop(sig=0, timeout=10)    # just wait
    assert code == 0, d.log()
    assert time.monotonic() - t0 < 5 + 3
    assert d.wait_notify("STOPPING=1", timeout=1) is not None, d.notifications


@pytest.mark.slow
def test_stop_closes_idle_connections(daemon_factory, model):
    d = make(daemon_factory, model, shutdown="2s")
    s = d.tcp_connect()
    port = s.getsockname()[1]
    exchange(s, b"ciao\n")
    t0 = time.monotonic()
    d.send_signal(signal.SIGTERM)
    data, how = recv_until_eof(s, timeout=6)
    assert data == b""
    assert how in ("eof", "reset")
    code = d.stop(sig=0, timeout=10)
    assert code == 0, d.log()
    assert time.monotonic() - t0 < 2 + 3
    c = d.wait_close(port, timeout=1)
    assert c is not None, d.log()
    assert c["reason"] == "shutdown", c["line"]
    # Nothing listens any more.
    with pytest.raises(ConnectionRefusedError):
        d.tcp_connect().close()


@pytest.mark.slow
def test_stop_waits_for_slow_reader(daemon_factory, model):
    """A reply that takes a while to deliver: the stop waits for it (within
    the shutdown timeout), then exits 0."""
    d = make(daemon_factory, model, shutdown="4s")
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)   # a small window
    s.settimeout(5)
    s.connect(("127.0.0.1", d.port))
    exchange(s, b"warm up\n")
    # 30 kB in (fits in the daemon's receive buffer), 90 kB out (does not
    # fit in what the kernel buffers): the daemon owes most of the reply
    # when it is told to stop.
    payload = ("ΐ" * 30 + "\n").encode() * 500
    s.sendall(payload)
    time.sleep(0.1)
    t0 = time.monotonic()
    d.send_signal(signal.SIGTERM)
    time.sleep(0.5)                                    # not reading yet
    data, how = recv_until_eof(s, timeout=8)
    assert how == "eof", how
    assert data == upper(payload)
    s.close()
    code = d.stop(sig=0, timeout=10)
    assert code == 0, d.log()
    assert time.monotonic() - t0 < 4 + 2


def test_stop_refuses_new_connections(daemon_factory, model):
    """Once stopping, a daemon that bound its own sockets stops listening:
    a new client is refused at once (a balancer tries another instance)
    rather than queued in the backlog, to be reset when the daemon exits.
    A client that never reads keeps the stop going until the shutdown
    timeout."""
    d = make(daemon_factory, model, shutdown="3s", write="30s")
    s = stuff_peer(d, 0.5)[0]
    d.send_signal(signal.SIGTERM)
    assert d.wait_log("stopping: finishing")
    time.sleep(0.2)
    t0 = time.monotonic()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", d.port), timeout=2).close()
    assert time.monotonic() - t0 < 1
    assert d.running()
    assert d.stop(sig=0, timeout=10) == 0, d.log()
    s.close()


@pytest.mark.parametrize("listener", ["direct", "proxied"])
def test_stop_serves_the_backlog(daemon_factory, model, listener):
    """Connections the kernel completed before the stop, waiting in the
    listen backlog with their request sent (a balancer forwards at once,
    and cannot send elsewhere what it has forwarded), are taken and
    answered, not reset when the listener is shut.  The daemon is stopped
    (SIGSTOP) while they queue, so that they are in the backlog when it
    sees the SIGTERM."""
    from test_proxy import proxied, v2

    d = proxied(model, daemon_factory) if listener == "proxied" else make(daemon_factory, model)
    port = d.proxy_port if listener == "proxied" else d.port
    queued = []
    d.send_signal(signal.SIGSTOP)
    try:
        for i in range(8):
            q = socket.create_connection(("127.0.0.1", port), timeout=5)
            head = v2("192.0.2.%d" % (i + 1), 40000 + i) if listener == "proxied" else b""
            q.sendall(head + b"in coda %d\n" % i)
            queued.append(q)
        d.send_signal(signal.SIGTERM)
    finally:
        d.send_signal(signal.SIGCONT)
    for i, q in enumerate(queued):
        assert recv_exact(q, 10) == b"IN CODA %d\n" % i, i
        q.close()
    assert d.stop(sig=0, timeout=10) == 0, d.log()


def test_stop_keeps_passed_sockets_listening(daemon_factory):
    """Socket activated, the listening socket is systemd's: it keeps
    queuing, for the next instance (a restart)."""
    d = daemon_factory("event", activate=True, shutdown="3s", write="30s")
    s = stuff_peer(d, 0.5)[0]
    d.send_signal(signal.SIGTERM)
    assert d.wait_log("stopping: finishing")
    time.sleep(0.2)
    queued = socket.create_connection(("127.0.0.1", d.port), timeout=2)
    assert d.running()
    assert d.stop(sig=0, timeout=10) == 0, d.log()
    queued.close()
    s.close()


@pytest.mark.slow
def test_stop_gives_up_on_stuck_reader(daemon_factory, model):
    """A client that never reads cannot hold the daemon beyond the shutdown
    timeout."""
    d = make(daemon_factory, model, shutdown="1s", write="30s")
    s, port, sent, _ = stuff_peer(d, 0.5)
    t0 = time.monotonic()
    d.send_signal(signal.SIGTERM)
    code = d.stop(sig=0, timeout=5)
    elapsed = time.monotonic() - t0
    s.close()
    assert code == 0, d.log()
    assert elapsed < 1 + 2, elapsed


@pytest.mark.slow
def test_watchdog_pings(daemon_factory, model):
    m, args = model
    d = daemon_factory(model=m, args=args, start=False,
                       env_extra={"WATCHDOG_USEC": "300000"})
    d.start()
    t0 = time.monotonic()
    time.sleep(0.8)
    pings = [f for f in d.notify_fields() if f == "WATCHDOG=1"]
    assert len(pings) >= 3, "%d WATCHDOG=1 in %.1f s with WATCHDOG_USEC=300000: %r" % (
        len(pings), time.monotonic() - t0, d.notifications)
    assert d.running()


@pytest.mark.slow
def test_client_log_rate_limit_summarised(daemon_factory, model):
    """With a rate limit, what is not logged is summarised, never lost:
    logged lines + suppressed counts == datagrams."""
    m, args = model
    d = daemon_factory(model=m, args=args, rate=5, burst=5)
    n = 60
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.settimeout(5)
        u.bind(("127.0.0.1", 0))
        port = u.getsockname()[1]
        for i in range(n):
            u.sendto(b"m%d" % i, ("127.0.0.1", d.port))
            assert u.recvfrom(100)[0] == b"M%d" % i
    rx = re.compile(r"suppressed (\d+) client log entr")
    deadline = time.monotonic() + 4
    while True:
        lines = d.log_lines()
        logged = sum(1 for l in lines if ("udp datagram from 127.0.0.1 port %d:" % port) in l)
        suppressed = sum(int(rx.search(l).group(1)) for l in lines if rx.search(l))
        if logged + suppressed >= n or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert logged < n, "no rate limit: %d lines" % logged
    assert logged >= 5
    assert logged + suppressed == n, (logged, suppressed, d.log()[-3000:])


def test_status_notification_names_model(daemon, model):
    m, _ = model
    assert daemon.wait_notify("STATUS=", timeout=2) is not None, daemon.notifications
    statuses = [f for f in daemon.notify_fields() if f.startswith("STATUS=")]
    assert any(m in st for st in statuses), statuses


# ------------------------------------------------------------------ reload

def bad_syntax(d):
    good = config_text(d.port, d.control, model=d.model, idle="1s", rate=0)
    lines = good.splitlines()
    lines.append('bogus: { x = = 1; };')
    return "\n".join(lines) + "\n", len(lines)


def bad_value(d):
    bad = config_text(d.port, d.control, model=d.model, idle="1s", rate=0, write="not-a-duration")
    lines = bad.splitlines()
    return bad, 1 + lines.index('  write = "not-a-duration";')


@pytest.mark.slow
def test_sighup_bad_config_then_good(daemon_factory, model):
    sighup_bad_then_good(make(daemon_factory, model, idle="300s"), "syntax")


@pytest.mark.slow
def test_sighup_bad_value_then_good(daemon_factory):
    """A config that parses but does not validate is rejected as well (the
    reload path is common code: event model only)."""
    sighup_bad_then_good(daemon_factory(model="event", idle="300s"), "value")


def sighup_bad_then_good(d, breakage):
    held = d.tcp_connect()
    exchange(held, b"prima\n")

    text, line = (bad_syntax if breakage == "syntax" else bad_value)(d)
    d.write_config(text=text)
    d.send_signal(signal.SIGHUP)
    where = "%s:%d:" % (d.conf, line)
    l = d.wait_log(where, timeout=5)
    assert l is not None, "no error naming %s in:\n%s" % (where, d.log())
    assert l.startswith("error: "), l
    assert d.running()
    # Still serving, with the old config (idle 300 s, not the 1 s of the
    # rejected file).
    exchange(held, b"dopo il rifiuto\n")
    s = d.tcp_connect()
    exchange(s, b"nuovo\n")
    assert d.udp_exchange(b"udp") == b"UDP"
    time.sleep(1.3)
    expect_open(s, 0.1)
    exchange(s, b"ancora aperto\n")
    s.close()

    # Now a good config with idle = 1s.
    n = len(d.notifications)
    d.write_config(idle="1s")
    d.send_signal(signal.SIGHUP)
    i = d.wait_notify("RELOADING=1", since=n, timeout=5)
    assert i is not None, d.notifications
    j = d.wait_notify("READY=1", since=i, timeout=5)
    assert j is not None, d.notifications
    if j == i:
        msg = d.notifications[i].split("\n")
        assert msg.index("RELOADING=1") < msg.index("READY=1"), msg
    t = d.tcp_connect()
    port = t.getsockname()[1]
    exchange(t, b"con il nuovo idle\n")
    t0 = time.monotonic()
    assert recv_until_eof(t, timeout=5) == (b"", "eof")
    assert time.monotonic() - t0 <= 3.5
    t.close()
    c = d.wait_close(port)
    assert c is not None and c["reason"] == "idle", d.log()
    held.close()


# ------------------------------------------------------- process model only

def wait_children(d, pred, timeout=3.0):
    deadline = time.monotonic() + timeout
    while True:
        kids = set(d.children())
        if pred(kids) or time.monotonic() >= deadline:
            return kids
        time.sleep(0.05)


def test_process_child_killed(daemon_factory):
    """A child killed with SIGKILL: its client sees the end, the death is
    logged and counted (workers_died, a close for reason error), a client
    served by another child is unaffected, new clients are served."""
    d = daemon_factory(model="process")
    bystander = d.tcp_connect()
    exchange(bystander, b"spettatore\n")
    before = set(d.children())
    s = d.tcp_connect()
    port = s.getsockname()[1]
    exchange(s, b"ciao\n")
    kids = wait_children(d, lambda k: len(k - before) >= 1)
    new = kids - before
    assert len(new) == 1, (before, kids)
    child = new.pop()
    counted = stats(d)
    os.kill(child, signal.SIGKILL)
    data, how = recv_until_eof(s, timeout=5)
    assert data == b""
    assert how in ("eof", "reset"), how
    s.close()
    l = d.wait_log("killed by signal 9", timeout=5)
    assert l is not None, d.log()
    assert l.startswith("warning: "), l
    c = d.wait_close(port)
    assert c is not None and c["reason"] == "error", d.log()
    st = wait_stats(d, lambda st: st["workers_died"] > counted["workers_died"])
    assert st["workers_died"] == counted["workers_died"] + 1, st
    assert st["tcp"]["closed_error"] == counted["tcp"]["closed_error"] + 1, st
    assert st["tcp"]["active"] == 1, st
    # The bystander's child is untouched; and new clients are served.
    exchange(bystander, b"ancora qui\n")
    bystander.close()
    t = d.tcp_connect()
    exchange(t, b"dopo\n")
    t.close()
    assert d.udp_exchange(b"udp") == b"UDP"
    # Reaped: no zombie.
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and proc_state(child) is not None:
        time.sleep(0.05)
    assert proc_state(child) is None, "child %d left in state %s" % (child, proc_state(child))
    assert child not in d.children()
    assert d.running()


def test_process_children_per_connection_and_reaped(daemon_factory):
    d = daemon_factory(model="process")
    before = set(d.children())
    socks = [d.tcp_connect() for _ in range(3)]
    for i, s in enumerate(socks):
        exchange(s, b"client %d\n" % i)
    kids = wait_children(d, lambda k: len(k - before) >= 3)
    new = kids - before
    assert len(new) == 3, (before, kids)
    for s in socks:
        s.sendall(b".\n")
        assert recv_until_eof(s) == (b"", "eof")
        s.close()
    kids = wait_children(d, lambda k: not (k & new))
    assert not (kids & new), kids
    for c in new:
        assert proc_state(c) is None, "child %d in state %s" % (c, proc_state(c))


def test_thread_model_threads_end(daemon_factory):
    d = daemon_factory(model="thread")

    def nthreads():
        return len(os.listdir("/proc/%d/task" % d.pid))

    w = d.tcp_connect()
    exchange(w, b"warm\n")
    w.close()
    time.sleep(0.3)
    base = nthreads()
    socks = [d.tcp_connect() for _ in range(5)]
    for s in socks:
        exchange(s, b"x\n")
    assert nthreads() >= base + 5 - 1
    for s in socks:
        s.close()
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and nthreads() > base:
        time.sleep(0.05)
    assert nthreads() <= base
