# SPDX-License-Identifier: MIT
"""Per-source limits (uppercased.conf(5), "limits"), in every worker model:
concurrent TCP connections per source, the UDP rate per source, the UDP
loop guard; their counters, their log lines, and their change on reload;
the exempt sources, loopback as shipped.

127.0.0.0/8 is all loopback: 127.0.0.2 and 127.0.0.3 are other sources.
The tests of a limit set exempt = [] (the shipped list exempts all of
loopback); the loop guard applies to exempt sources too."""

import re
import socket
import time

import pytest

from conftest import SOCK_TIMEOUT, free_port, recv_until_eof
from test_control import ctl_ok as ctl, stats, wait_stats


# --------------------------------------------------------------------------
# helpers

def reload_with(d, **settings):
    """Rewrites the config with settings changed (and kept for later
    rewrites), and reloads it."""
    d.config.update(settings)
    d.write_config()
    assert ctl(d, "reload") == "configuration reloaded\n"


def connect(d, source="127.0.0.1", host="127.0.0.1"):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(SOCK_TIMEOUT)
    s.bind((source, 0))
    s.connect((host, d.port))
    return s


def served(s, text=b"ciao"):
    """The connection is served: text in, text uppercased out."""
    s.sendall(text)
    data = b""
    while len(data) < len(text):
        chunk = s.recv(64)
        assert chunk, "closed after %r" % data
        data += chunk
    assert data == text.upper()


def assert_rejected(d, s):
    """The daemon closed s at once, and logged it with the per-source reason."""
    port = s.getsockname()[1]
    data, how = recv_until_eof(s, timeout=5)
    assert data == b"" and how in ("eof", "reset"), (data, how)
    line = "tcp connection from %s port %d rejected: per-source limit reached" % (
        s.getsockname()[0], port)
    assert d.wait_log(line) is not None, d.log()


def udp_socket(source="127.0.0.1", port=0):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind((source, port))
    return u


def replies(u, wait):
    """Datagrams arriving on u within `wait` seconds of quiet."""
    got = []
    u.settimeout(wait)
    while True:
        try:
            data, _ = u.recvfrom(65536)
        except socket.timeout:
            return got
        got.append(data)


def privileged_udp_socket():
    """A UDP socket on 127.0.0.1 with a free source port below 1024 (needs
    root, or CAP_NET_BIND_SERVICE)."""
    for port in range(1023, 900, -1):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(("127.0.0.1", port))
            return u
        except PermissionError:
            u.close()
            pytest.skip("binding a port below 1024 needs root")
        except OSError:
            u.close()
    pytest.skip("no free UDP port below 1024")


def make(daemon_factory, model, **config):
    """A daemon for a test of the limits: no source exempt, unless said."""
    m, args = model
    config.setdefault("exempt", [])
    return daemon_factory(model=m, args=args, **config)


# --------------------------------------------------------------------------
# TCP: concurrent connections per source

def test_tcp_per_source_limit(daemon_factory, model):
    """tcp_per_source = 3: a fourth connection from 127.0.0.1 is closed at
    once, counted and logged, while other sources are still served; a
    closed connection makes room again."""
    d = make(daemon_factory, model, tcp_per_source=3)
    mine = [connect(d) for _ in range(3)]
    try:
        for s in mine:
            served(s)
        extra = connect(d)
        assert_rejected(d, extra)
        extra.close()
        for s in mine:
            served(s, b"ancora")        # the three are not disturbed
        other = connect(d, source="127.0.0.2")
        served(other)
        st = wait_stats(d, lambda s: s["tcp"]["rejected_per_source"] == 1)
        assert st["tcp"]["rejected_per_source"] == 1
        assert st["tcp"]["rejected"] == 1
        assert st["tcp"]["active"] == 4
        assert st["limits"]["tcp_per_source"] == 3

        # One of them closes: once it is released, 127.0.0.1 has room.
        mine.pop().close()
        assert wait_stats(d, lambda s: s["tcp"]["active"] == 3)["tcp"]["active"] == 3
        again = connect(d)
        mine.append(again)
        served(again)
        other.close()
    finally:
        for s in mine:
            s.close()


def test_tcp_per_source_reload(daemon_factory, model):
    """The limit applies on reload; connections opened while there was no
    limit count too, and are not closed by it."""
    d = make(daemon_factory, model, tcp_per_source=0)
    mine = [connect(d) for _ in range(3)]
    try:
        for s in mine:
            served(s)
        reload_with(d, tcp_per_source=2)
        assert stats(d)["limits"]["tcp_per_source"] == 2
        extra = connect(d)
        assert_rejected(d, extra)
        extra.close()
        for s in mine:
            served(s, b"aperta")
        reload_with(d, tcp_per_source=4)
        more = connect(d)
        mine.append(more)
        served(more)
        extra = connect(d)
        assert_rejected(d, extra)
        extra.close()
        assert stats(d)["tcp"]["rejected_per_source"] == 2
    finally:
        for s in mine:
            s.close()


def test_tcp_per_source_mapped_and_ipv6(daemon_factory):
    """On a dual-stack [::] socket an IPv4 client is counted by its IPv4
    address; an IPv6 client is another source."""
    d = daemon_factory(model="event", start=False, tcp_per_source=1, exempt=[])
    d.port = free_port()
    d.config["tcp"] = ["[::]:%d" % d.port]
    d.write_config()
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    d.start()
    first = connect(d)
    try:
        served(first)
        extra = connect(d)
        assert_rejected(d, extra)
        extra.close()
        v6 = connect(d, source="::1", host="::1")
        served(v6)
        v6.close()
        # The log names the mapped client as plain IPv4 (assert_rejected
        # checked "from 127.0.0.1"), and the count is one source.
        assert stats(d)["tcp"]["rejected_per_source"] == 1
    finally:
        first.close()


# --------------------------------------------------------------------------
# UDP: rate per source

RATE, BURST = 5, 3


def send_burst(u, d, n):
    for i in range(n):
        u.sendto(b"dato %d" % i, ("127.0.0.1", d.port))


def test_udp_rate_limit(daemon_factory, model):
    """udp_rate = 5, udp_burst = 3: of a quick burst of 12 the first 3 are
    answered (maybe one more, if 200 ms pass), the rest dropped, counted
    and logged; other sources are unaffected; after a pause answers
    resume; a reload to 0 lifts the limit."""
    d = make(daemon_factory, model, udp_rate=RATE, udp_burst=BURST)
    u, other = udp_socket(), udp_socket("127.0.0.2")
    try:
        start = time.monotonic()
        send_burst(u, d, 12)
        got = replies(u, 0.5)
        st = wait_stats(d, lambda s: s["udp"]["datagrams"] == 12)
        elapsed = time.monotonic() - start
        answered = len(got)
        assert BURST <= answered <= BURST + 1 + int(RATE * elapsed), (answered, elapsed)
        # With several readers (-t 2) any of them may be answered first.
        assert set(got) <= {b"DATO %d" % i for i in range(12)}, got
        assert st["udp"]["datagrams"] == 12                     # received, all of them
        assert st["udp"]["rate_limited"] == 12 - answered
        assert st["udp"]["loop_dropped"] == 0
        assert st["udp"]["bytes_out"] == sum(len(r) for r in got)
        port = u.getsockname()[1]
        dropped = [l for l in d.log_lines()
                   if l == "udp datagram from 127.0.0.1 port %d dropped: rate limit" % port]
        assert len(dropped) == 12 - answered, d.log()
        assert st["limits"]["udp_rate"] == RATE and st["limits"]["udp_burst"] == BURST

        # Another source has its own bucket.
        other.sendto(b"altro", ("127.0.0.1", d.port))
        assert replies(other, 2.0)[:1] == [b"ALTRO"]

        # Time refills the bucket: 0.5 s is 2.5 datagrams at 5/s.
        time.sleep(0.5)
        u.sendto(b"dopo", ("127.0.0.1", d.port))
        assert replies(u, 2.0)[:1] == [b"DOPO"]

        reload_with(d, udp_rate=0)
        assert stats(d)["limits"]["udp_rate"] == 0
        send_burst(u, d, 12)
        got = []
        deadline = time.monotonic() + 5
        while len(got) < 12 and time.monotonic() < deadline:
            got += replies(u, 0.5)
        assert len(got) == 12
    finally:
        u.close()
        other.close()


def test_udp_rate_limit_across_readers(daemon_factory):
    """Event model with two loops (both read the UDP socket): one bucket
    per source, whichever loop reads the datagram."""
    d = daemon_factory(model="event", args=["-t", "2"], udp_rate=1, udp_burst=10, exempt=[])
    u = udp_socket()
    try:
        send_burst(u, d, 40)
        got = replies(u, 0.5)
        st = wait_stats(d, lambda s: s["udp"]["datagrams"] == 40)
        assert 10 <= len(got) <= 12, len(got)
        assert st["udp"]["rate_limited"] == 40 - len(got)
    finally:
        u.close()


# --------------------------------------------------------------------------
# UDP: the loop guard

def test_loop_guard_privileged_port(daemon_factory, model):
    """A datagram from a port below 1024 is not answered: counted and
    logged.  With the guard off (a reload) it is answered."""
    d = make(daemon_factory, model)
    u = privileged_udp_socket()
    port = u.getsockname()[1]
    try:
        u.sendto(b"eco", ("127.0.0.1", d.port))
        assert replies(u, 0.5) == []
        st = wait_stats(d, lambda s: s["udp"]["loop_dropped"] == 1)
        assert st["udp"]["loop_dropped"] == 1
        assert st["udp"]["datagrams"] == 1 and st["udp"]["bytes_out"] == 0
        assert st["limits"]["udp_loop_guard"] is True
        assert d.wait_log("udp datagram from 127.0.0.1 port %d dropped: "
                          "loop guard (privileged source port)" % port) is not None, d.log()

        reload_with(d, udp_loop_guard=False)
        assert stats(d)["limits"]["udp_loop_guard"] is False
        u.sendto(b"eco", ("127.0.0.1", d.port))
        assert replies(u, 2.0)[:1] == [b"ECO"]
    finally:
        u.close()


def test_loop_guard_own_ports(daemon_factory, model):
    """A datagram whose source port is one of the daemon's own UDP ports
    (another instance answering) is not answered, whichever of them.
    The sender binds 127.0.0.2 with that port: the daemon listens on
    127.0.0.1 only, so no port sharing is needed."""
    m, args = model
    d = daemon_factory(model=m, args=args, start=False)
    d.port = free_port()
    second = free_port()
    while second == d.port:
        second = free_port()
    d.config["udp"] = ["127.0.0.1:%d" % d.port, "127.0.0.1:%d" % second]
    d.write_config()
    d.start()
    senders = [udp_socket("127.0.0.2", d.port), udp_socket("127.0.0.2", second)]
    try:
        for s in senders:
            s.sendto(b"eco", ("127.0.0.1", d.port))
            s.sendto(b"eco", ("127.0.0.1", second))
        for s in senders:
            assert replies(s, 0.3) == []
        st = wait_stats(d, lambda s: s["udp"]["loop_dropped"] == 4)
        assert st["udp"]["loop_dropped"] == 4
        assert st["udp"]["bytes_out"] == 0
        for p in (d.port, second):
            line = "udp datagram from 127.0.0.2 port %d dropped: loop guard (source is our own port)" % p
            assert d.wait_log(line) is not None, d.log()
        # Any other port of that address is served as usual.
        u = udp_socket("127.0.0.2")
        u.sendto(b"eco", ("127.0.0.1", second))
        assert replies(u, 2.0)[:1] == [b"ECO"]
        u.close()
    finally:
        for s in senders:
            s.close()


# --------------------------------------------------------------------------
# stats in every format

def test_stats_show_limits(daemon_factory):
    d = daemon_factory(model="event")
    st = stats(d)
    assert st["limits"] == {"tcp_per_source": 64, "udp_rate": 100, "udp_burst": 200,
                            "udp_loop_guard": True, "exempt": ["127.0.0.0/8", "::1"]}
    for k in ("rejected", "rejected_per_source"):
        assert st["tcp"][k] == 0
    for k in ("rate_limited", "loop_dropped"):
        assert st["udp"][k] == 0

    human = ctl(d, "stats")
    section = human[human.index("\nLimits\n"):]
    assert re.search(r"^  TCP per source +64$", section, re.M), human
    assert re.search(r"^  UDP rate per source +100 /s$", section, re.M), human
    assert re.search(r"^  UDP burst per source +200$", section, re.M), human
    assert re.search(r"^  UDP loop guard +on$", section, re.M), human
    assert re.search(r"^  exempt sources +127\.0\.0\.0/8, ::1$", section, re.M), human
    assert re.search(r"^  rejected per source +0$", human, re.M), human
    assert re.search(r"^  rate limited +0$", human, re.M), human
    assert re.search(r"^  dropped \(loop guard\) +0$", human, re.M), human

    # Every series carries the instance's name (test_drain.py checks it).
    prom = re.sub(r'\{uppercased_instance="[^"]*"\}', "", ctl(d, "--prometheus", "stats"))
    prom = re.sub(r'\{uppercased_instance="[^"]*",', "{", prom)
    for line in ("# TYPE uppercased_tcp_connections_rejected_per_source_total counter",
                 "uppercased_tcp_connections_rejected_per_source_total 0",
                 "# TYPE uppercased_udp_dropped_total counter",
                 'uppercased_udp_dropped_total{reason="rate_limited"} 0',
                 'uppercased_udp_dropped_total{reason="loop_dropped"} 0',
                 "# TYPE uppercased_limit_tcp_per_source gauge",
                 "uppercased_limit_tcp_per_source 64",
                 "uppercased_limit_udp_rate 100",
                 "uppercased_limit_udp_burst 200",
                 "uppercased_limit_udp_loop_guard 1"):
        assert line in prom.splitlines(), prom

    # The wire protocol itself (socat's view).
    raw = ctl(d, "--json", "stats")
    assert ('"limits":{"tcp_per_source":64,"udp_rate":100,"udp_burst":200,"udp_loop_guard":true,'
            '"exempt":["127.0.0.0/8","::1"]}') in raw


def test_shipped_defaults(daemon_factory):
    """The built-in defaults are the documented ones: 64 connections, 100
    datagrams per second with bursts of 200, the guard on, loopback
    exempt."""
    d = daemon_factory(model="event", start=False)
    d.port = free_port()
    with open(d.conf, "w") as f:
        f.write('listen: { tcp = [ "127.0.0.1:%d" ]; udp = [ "127.0.0.1:%d" ]; };\n'
                'control: { path = "%s"; group = ""; };\n' % (d.port, d.port, d.control))
    d.start()
    assert stats(d)["limits"] == {"tcp_per_source": 64, "udp_rate": 100, "udp_burst": 200,
                                  "udp_loop_guard": True, "exempt": ["127.0.0.0/8", "::1"]}


# --------------------------------------------------------------------------
# exempt sources: the lab VM, where every client is 127.0.0.1

def test_exempt_many_idle_connections(daemon_factory, model):
    """Shipped configuration, every client on 127.0.0.1: 300 idle
    connections, far over tcp_per_source = 64, and a new client is still
    served; all are counted as active, none refused."""
    m, args = model
    d = daemon_factory(model=m, args=args)
    held = []
    try:
        for _ in range(300):
            held.append(connect(d))
        newcomer = connect(d)
        held.append(newcomer)
        served(newcomer)
        st = wait_stats(d, lambda s: s["tcp"]["active"] == 301, timeout=10)
        assert st["tcp"]["active"] == 301 and st["tcp"]["rejected"] == 0, st["tcp"]
        served(held[0], b"il primo")
    finally:
        for s in held:
            s.close()


def connect_per_request_loop(d, seconds, clients=64):
    """`clients` threads connecting, asking once and closing, for `seconds`:
    (answered, errors)."""
    import threading
    answered, errors = [0], []
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def one(i):
        n = 0
        while time.monotonic() < end:
            try:
                s = connect(d)
                try:
                    # "." last: the daemon closes first, so the TIME_WAIT
                    # is on its side, not on one of the (few) ports left
                    # for the rest of the suite.
                    s.sendall(b"richiesta %d\n.\n" % n)
                    data, how = recv_until_eof(s)
                    assert (data, how) == (b"RICHIESTA %d\n" % n, "eof"), (data, how)
                finally:
                    s.close()
                n += 1
            except (OSError, AssertionError) as e:
                with lock:
                    errors.append(repr(e))
        with lock:
            answered[0] += n

    threads = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 30)
    return answered[0], errors


def test_exempt_connect_per_request(daemon_factory, model):
    """Shipped configuration: 64 concurrent connect-per-request clients on
    127.0.0.1 for 4 s get no error."""
    m, args = model
    d = daemon_factory(model=m, args=args)
    answered, errors = connect_per_request_loop(d, 4.0)
    assert errors == [] and answered > 64, (answered, errors[:5])
    assert stats(d)["tcp"]["rejected"] == 0


def test_exempt_udp_back_to_back(daemon_factory, model):
    """Shipped configuration: 1,000 UDP requests back to back from one
    127.0.0.1 socket (five times the burst of 200) are all answered."""
    m, args = model
    d = daemon_factory(model=m, args=args)
    u = udp_socket()
    got = set()
    try:
        for i in range(1000):
            u.sendto(b"dato %d" % i, ("127.0.0.1", d.port))
            # One reply in flight at a time: back to back, not lost to a
            # full receive buffer.
            u.settimeout(SOCK_TIMEOUT)
            got.add(u.recvfrom(64)[0])
        assert got == {b"DATO %d" % i for i in range(1000)}
        st = stats(d)
        assert st["udp"]["rate_limited"] == 0 and st["udp"]["datagrams"] == 1000, st["udp"]
    finally:
        u.close()


def test_exempt_only_the_listed_sources(daemon_factory, model):
    """exempt = [ "127.0.0.1" ]: 127.0.0.1 passes both limits, 127.0.0.2
    is held to them exactly as without the list."""
    d = make(daemon_factory, model, exempt=["127.0.0.1"], tcp_per_source=2, udp_rate=RATE,
             udp_burst=BURST)
    mine = [connect(d) for _ in range(5)]
    theirs = [connect(d, source="127.0.0.2") for _ in range(2)]
    u, v = udp_socket(), udp_socket("127.0.0.2")
    try:
        for s in mine + theirs:
            served(s)
        extra = connect(d, source="127.0.0.2")
        assert_rejected(d, extra)
        extra.close()
        send_burst(u, d, 12)
        assert len(replies(u, 0.5)) == 12
        send_burst(v, d, 12)
        assert BURST <= len(replies(v, 0.5)) <= BURST + 3
        st = wait_stats(d, lambda s: s["udp"]["datagrams"] == 24)
        assert st["tcp"]["rejected_per_source"] == 1
        assert 12 - 3 - BURST <= st["udp"]["rate_limited"] <= 12 - BURST
        assert stats(d)["limits"]["exempt"] == ["127.0.0.1"]
    finally:
        for s in mine + theirs:
            s.close()
        u.close()
        v.close()


def test_exempt_reload(daemon_factory):
    """The list is live: emptied by a reload, 127.0.0.1 is limited again
    (its open connections, counted all along, are not closed)."""
    d = daemon_factory(model="event", tcp_per_source=2)
    mine = [connect(d) for _ in range(3)]
    try:
        for s in mine:
            served(s)
        reload_with(d, exempt=[])
        assert "exempt" not in stats(d)["limits"]
        extra = connect(d)
        assert_rejected(d, extra)
        extra.close()
        for s in mine:
            served(s, b"ancora")
        reload_with(d, exempt=["127.0.0.0/8"])
        more = connect(d)
        mine.append(more)
        served(more)
    finally:
        for s in mine:
            s.close()
