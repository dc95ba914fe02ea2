# SPDX-License-Identifier: MIT
"""Fault injection, connection side (issue 7, item 5), in every worker model
(the `model` fixture): peers that drop, reset, half-close, never read or
trickle, and random bytes on both protocols.  The signal side (SIGKILL,
SIGHUP storms, SIGTERM with hundreds of connections open) is in
test_faults_signals.py, and the daemon under valgrind in test_valgrind.py.

Already covered elsewhere, not repeated here: a single peer that never reads
(write timeout, a second client served, RSS bound: test_lifecycle.py), a
half-close with the replies owed delivered and reason eof, large or small
(test_tcp.py), running out of descriptors in accept() (test_limits.py).

Mass tests spread their clients over SOURCES (127.0.0.2-33), so that a
per-source connection limit does not decide their outcome.  The figures are
the same on the AddressSanitizer build (UPPERCASED_ASAN=1), which runs these
tests about as fast; only the RSS bounds are skipped there."""

import os
import random
import resource
import selectors
import socket
import struct
import threading
import time

import pytest

from conftest import ASAN, SOCK_TIMEOUT, recv_exact, recv_until_eof, upper
from test_control import stats, wait_stats

SOURCES = ["127.0.0.%d" % n for n in range(2, 34)]
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
UDP_MAX = 65507


def make(daemon_factory, model, **config):
    """A daemon of the test's own, with backlog room for the bursts of
    connections these tests open.  (Its clients, on loopback, are exempt
    from the per-source limits, as shipped.)"""
    m, args = model
    config.setdefault("backlog", 1024)
    return daemon_factory(model=m, args=args, **config)


def raise_nofile(n):
    """Makes sure this process (and the daemons it starts) may open n
    descriptors; raises the hard limit too when root."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < n:
        if hard != resource.RLIM_INFINITY and hard < n and os.geteuid() == 0:
            hard = n
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, hard))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert soft == resource.RLIM_INFINITY or soft >= n, "RLIMIT_NOFILE %d < %d" % (soft, n)


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def pss_kib(d):
    """Memory of the daemon and its children, shared pages divided among
    the processes sharing them (Pss): summing RSS would count the pages a
    forked child shares with its parent once per child."""
    total = 0
    for pid in [d.pid] + d.descendants():
        try:
            with open("/proc/%d/smaps_rollup" % pid) as f:
                total += sum(int(l.split()[1]) for l in f if l.startswith("Pss:"))
        except OSError:
            pass        # just exited
    return total


def connect_from(d, source, timeout=SOCK_TIMEOUT):
    """A TCP client bound to source (an address in 127.0.0.0/8)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # The port is chosen at connect() then, with the destination known.
        s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.bind((source, 0))
        s.settimeout(timeout)
        s.connect(("127.0.0.1", d.port))
    except Exception:
        s.close()
        raise
    return s


def spread_connect(d, n):
    return [connect_from(d, SOURCES[i % len(SOURCES)]) for i in range(n)]


def reset(s):
    """Closes with an RST: SO_LINGER {on, 0}."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def exchange(s, msg, timeout=SOCK_TIMEOUT):
    s.sendall(msg)
    want = upper(msg)
    got = recv_exact(s, len(want), timeout)
    assert got == want, (msg, got)


def ping_pong(d, rounds=20):
    """A fresh client's round trips; returns their latencies in seconds."""
    lat = []
    s = d.tcp_connect(nodelay=True)
    try:
        for i in range(rounds):
            t = time.monotonic()
            exchange(s, b"ping %d perch\xc3\xa9\n" % i)
            lat.append(time.monotonic() - t)
    finally:
        s.close()
    return lat


def collect(socks, timeout, limit=16 << 20):
    """Reads all the sockets to their end at once (bounded by timeout).
    Returns [(data, how)], how in "eof", "reset", "timeout", "limit"."""
    sel = selectors.DefaultSelector()
    bufs = [bytearray() for _ in socks]
    how = ["timeout"] * len(socks)
    for i, s in enumerate(socks):
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, i)
    deadline = time.monotonic() + timeout
    left_open = len(socks)
    while left_open and time.monotonic() < deadline:
        for key, _ in sel.select(min(0.2, max(0.0, deadline - time.monotonic()))):
            i = key.data
            try:
                chunk = socks[i].recv(65536)
            except BlockingIOError:
                continue
            except ConnectionResetError:
                chunk = None
            if chunk:
                bufs[i] += chunk
                if len(bufs[i]) <= limit:
                    continue
            how[i] = "eof" if chunk == b"" else "reset" if chunk is None else "limit"
            sel.unregister(socks[i])
            left_open -= 1
    sel.close()
    return [(bytes(b), h) for b, h in zip(bufs, how)]


def closed_total(st):
    return sum(v for k, v in st["tcp"].items() if k.startswith("closed_"))


def delta(after, before, key):
    return after["tcp"][key] - before["tcp"][key]


# -------------------------------------------- 1. dropped in the middle of a line

# Half lines: no newline; some end in a held-back "." or half a character.
HALF_LINES = [b"mezza ri", b"perch\xc3", b"caf\xc3\xa9 e ", b"\xff\xfe ab", b"abc\r",
              b".", b"\x00\x00x", b"x" * 3000]
# Those whose reply comes at once, whole (nothing held back).
PROMPT_LINES = [b"mezza ri", b"caf\xc3\xa9 e ", b"\xff\xfe ab", b"abc\r", b"x" * 3000]


def drop_wave(d, n, rng):
    """n connections at once, each dropped in the middle of a line: a
    quarter reset (SO_LINGER {1,0}) with the reply unread, a quarter closed
    with the reply unread, a quarter closed after reading it, a quarter
    dropped before sending a byte."""
    socks = spread_connect(d, n)
    for i, s in enumerate(socks):
        if i % 4 == 2:
            exchange(s, rng.choice(PROMPT_LINES))
        elif i % 4 != 3:
            s.sendall(rng.choice(HALF_LINES))
    for i, s in enumerate(socks):
        if i % 4 == 0:
            reset(s)
        else:
            s.close()


def wait_fds(pid, at_most, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        n = fd_count(pid)
        if n <= at_most or time.monotonic() >= deadline:
            return n
        time.sleep(0.05)


@pytest.mark.slow
def test_thousand_connections_dropped_mid_line(daemon_factory, model):
    """1,000 connections dropped mid-line, 100 at a time, a quarter of them
    reset: every one is accounted for (eof, error, or quit for a "." ended
    by the EOF), tcp.active returns to 0, the descriptors to their baseline
    and the RSS to within 4 MiB of it, and the daemon still answers."""
    n, wave = 1000, 100
    raise_nofile(4 * wave + 256)
    d = make(daemon_factory, model)
    rng = random.Random(5)
    # One wave first: thread stacks, malloc arenas, pages of the connection
    # table are allocated once and reused; the baseline is taken after.
    drop_wave(d, wave, rng)
    before = wait_stats(d, lambda st: st["tcp"]["active"] == 0, timeout=10)
    assert before["tcp"]["active"] == 0, before
    base_fds = wait_fds(d.pid, 0, timeout=0.2)
    base_rss = d.rss_kib()

    t0 = time.monotonic()
    for _ in range(n // wave):
        drop_wave(d, wave, rng)
    took = time.monotonic() - t0

    after = wait_stats(d, lambda st: st["tcp"]["active"] == 0
                       and closed_total(st) - closed_total(before) >= n, timeout=15)
    assert after["tcp"]["active"] == 0, after
    assert delta(after, before, "accepted") == n, (before, after)
    assert delta(after, before, "rejected") == 0, after
    assert closed_total(after) - closed_total(before) == n, after
    for reason in ("closed_idle", "closed_write", "closed_shutdown"):
        assert delta(after, before, reason) == 0, (reason, after)
    assert delta(after, before, "closed_eof") + delta(after, before, "closed_error") >= n // 2, after

    fds = wait_fds(d.pid, base_fds)
    assert fds <= base_fds, "%d descriptors open, %d before the drops: %r" % (
        fds, base_fds, sorted(os.readlink("/proc/%d/fd/%s" % (d.pid, f))
                              for f in os.listdir("/proc/%d/fd" % d.pid)))
    if d.model == "process":
        assert d.children() == [], d.children()
    if not ASAN:
        rss = d.rss_kib()
        assert rss - base_rss < 4096, "RSS %d KiB after %d dropped connections, %d before" % (
            rss, n, base_rss)
    print("%s: %d connections dropped in %.2f s; fds %d -> %d; RSS %d -> %d KiB"
          % (model, n, took, base_fds, fds, base_rss, d.rss_kib()))
    # Still serving, both protocols.
    s = d.tcp_connect()
    exchange(s, b"ancora vivo\n")
    s.close()
    assert d.udp_exchange(b"udp") == b"UDP"


# ---------------------------- 2. reset with a reply in flight, half-close

def stuff(socks, seconds, chunk):
    """Sends chunk over and over on every (non-blocking) socket, never
    reading, until none has taken a byte for 0.3 s or `seconds` passed.
    Returns the bytes sent on each: a prefix of chunk repeated."""
    sent = [0] * len(socks)
    t0 = last = time.monotonic()
    while time.monotonic() - t0 < seconds and time.monotonic() - last < 0.3:
        moved = False
        for i, s in enumerate(socks):
            try:
                # The stream is chunk repeated, whatever send() takes.
                sent[i] += s.send(chunk[sent[i] % len(chunk):])
                moved = True
            except BlockingIOError:
                pass
            except (BrokenPipeError, ConnectionResetError):
                pass
        if moved:
            last = time.monotonic()
        else:
            time.sleep(0.01)
    return sent


# 16 kB in, 48 kB out: replies pile up faster than requests.
BLOAT = ("ΐ" * 8000).encode()


@pytest.mark.slow
def test_reset_with_reply_in_flight(daemon_factory, model):
    """Peers that reset the connection while the daemon is blocked sending
    them replies, and peers that half-close while megabytes of replies are
    still owed and read them only afterwards: no crash, the resets counted as
    errors, the half-closes get every byte then EOF (reason eof), and a
    client alongside is served throughout."""
    d = make(daemon_factory, model, write="30s")
    other = d.tcp_connect(nodelay=True)
    exchange(other, b"prima\n")
    before = stats(d)

    resetters = [d.tcp_connect() for _ in range(8)]
    halfs = [d.tcp_connect() for _ in range(4)]
    rports = [s.getsockname()[1] for s in resetters]
    hports = [s.getsockname()[1] for s in halfs]
    for s in resetters + halfs:
        # Less queued on our side: the replies owed are the daemon's.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        s.setblocking(False)
    sent = stuff(resetters + halfs, 3.0, BLOAT)
    assert all(sent), sent
    # Every one of them is now owed replies the daemon cannot send yet.
    exchange(other, b"durante\n")
    for s in halfs:
        s.setblocking(True)
        s.shutdown(socket.SHUT_WR)
    for s in resetters:
        reset(s)
    exchange(other, b"dopo i reset\n")

    for port in rports:
        c = d.wait_close(port, timeout=5)
        assert c is not None, d.log()[-3000:]
        assert c["reason"] == "error", c["line"]
    # The half-closed ones: read now, all of it, in order.
    results = collect(halfs, timeout=30, limit=64 << 20)
    for (data, how), n in zip(results, sent[len(resetters):]):
        want = upper(BLOAT * (n // len(BLOAT)) + BLOAT[:n % len(BLOAT)])
        assert how == "eof", (how, len(data))
        assert len(data) == len(want), (len(data), len(want))
        assert data == want
    for s in halfs:
        s.close()
    for port in hports:
        c = d.wait_close(port, timeout=5)
        assert c is not None, d.log()[-3000:]
        assert c["reason"] == "eof", c["line"]

    after = wait_stats(d, lambda st: st["tcp"]["active"] == 1, timeout=5)
    assert after["tcp"]["active"] == 1, after
    assert delta(after, before, "closed_error") == len(resetters), after
    assert delta(after, before, "closed_eof") == len(halfs), after
    exchange(other, b"ancora\n")
    other.sendall(b".\n")
    assert recv_until_eof(other) == (b"", "eof")
    other.close()


# ------------------------------------------------- 3. peers that never read

@pytest.mark.slow
def test_many_peers_that_never_read(daemon_factory, model):
    """Eight peers send without ever reading (stuck replies in every model,
    a connection thread or child blocked in write for the blocking ones):
    the daemon's memory (Pss, children included) grows by less than 8 MiB,
    ping-pong clients alongside keep their latency (median under 50 ms,
    worst under 1 s), and the write timeout (1.5 s) closes every one of
    them."""
    n = 8
    d = make(daemon_factory, model, write="1.5s", idle="300s")
    lat0 = ping_pong(d, 10)
    base = pss_kib(d)
    socks = [d.tcp_connect() for _ in range(n)]
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.setblocking(False)
    lat, mem, errors, stop = [], [base], [], threading.Event()

    def pinger():
        try:
            while not stop.is_set():
                lat.extend(ping_pong(d, 5))
                mem.append(pss_kib(d))
                time.sleep(0.02)
        except Exception as e:     # reported by the main thread
            errors.append(e)

    t = threading.Thread(target=pinger, daemon=True)
    t.start()
    t0 = time.monotonic()
    sent = stuff(socks, 3.0, BLOAT)
    stuck_at = time.monotonic()
    mem.append(pss_kib(d))
    # Stuck: nothing moves, and the write timeout runs from here.
    closes = []
    for port in ports:
        c = d.wait_close(port, timeout=max(0.1, stuck_at + 8 - time.monotonic()))
        assert c is not None, "not closed 8 s after getting stuck: " + d.log()[-3000:]
        closes.append(c)
    closed_at = time.monotonic()
    stop.set()
    t.join(10)
    peak = max(mem)
    for s in socks:
        s.close()
    assert not errors, errors
    assert all(c["reason"] == "write" for c in closes), [c["line"] for c in closes]
    assert all(s < (64 << 20) for s in sent), sent       # backpressure
    assert closed_at - stuck_at < 1.5 + 4, closed_at - stuck_at
    lat.sort()
    assert len(lat) >= 10, lat
    median = lat[len(lat) // 2]
    assert median < 0.05 and lat[-1] < 1.0, "latency median %.1f ms, worst %.1f ms (before: %.1f ms)" % (
        median * 1e3, lat[-1] * 1e3, sorted(lat0)[len(lat0) // 2] * 1e3)
    if not ASAN:
        assert peak - base < 8 * 1024, "Pss grew from %d to %d KiB with %d stuck peers" % (base, peak, n)
    print("%s: %d stuck peers, %.1f MB sent each at most, stuck after %.2f s, closed %.2f s later; "
          "ping-pong median %.2f ms, worst %.1f ms; Pss %d -> %d KiB"
          % (model, n, max(sent) / 1e6, stuck_at - t0, closed_at - stuck_at,
             median * 1e3, lat[-1] * 1e3, base, peak))


# -------------------------------------------------------------- 4. slowloris

TRICKLE = b"slowloris-"


@pytest.mark.slow
def test_slowloris(daemon_factory, model):
    """300 connections each sending one byte per second, with idle = 3s.
    The idle timeout restarts on every byte in or out, so those that keep
    trickling stay open (for twice the idle timeout) and get every byte
    back; those that stop after two bytes are closed by it, idle seconds
    after their last byte.  Meanwhile, with all 300 connected, a new client
    is served at once.

    A trickler that does not read its replies would be closed by the write
    timeout once the socket buffers are full, but at one byte per second
    that takes weeks: on loopback the daemon's send buffer grows to 4 MB
    (tcp_wmem) and holds about 3 MB of replies before send() blocks, see
    test_many_peers_that_never_read for the write timeout itself."""
    n, idle = 300, 3.0
    raise_nofile(n + 256)
    d = make(daemon_factory, model, idle="%gs" % idle, write="30s")
    socks = spread_connect(d, n)
    index = {s.fileno(): i for i, s in enumerate(socks)}
    stoppers = set(range(0, n, 2))      # send 2 bytes, then fall silent
    sent = [bytearray() for _ in socks]
    got = [bytearray() for _ in socks]
    last_byte = [0.0] * n
    ended = [None] * n                  # (time, how)
    poller = selectors.DefaultSelector()
    for s in socks:
        s.setblocking(False)
        poller.register(s, selectors.EVENT_READ)
    t0 = time.monotonic()
    due = [t0 + (i % 10) / 10 for i in range(n)]     # staggered, 1/s each
    served = []
    run_for = 2 * idle                  # how long the keepers trickle
    while True:
        now = time.monotonic()
        stoppers_done = all(ended[i] for i in stoppers)
        if now - t0 >= run_for and (stoppers_done or now - t0 > run_for + 4):
            break
        for i in range(n):
            if ended[i] or now < due[i] or (i in stoppers and len(sent[i]) >= 2):
                continue
            b = TRICKLE[len(sent[i]) % len(TRICKLE):][:1]
            try:
                socks[i].send(b)
            except OSError:
                continue                # seen as the end by the reader
            sent[i] += b
            last_byte[i] = now
            due[i] += 1.0
        for key, _ in poller.select(0.05):
            i = index[key.fd]
            try:
                chunk = socks[i].recv(4096)
            except BlockingIOError:
                continue
            except ConnectionResetError:
                chunk = None
            if chunk:
                got[i] += chunk
                continue
            ended[i] = (time.monotonic(), "eof" if chunk == b"" else "reset")
            poller.unregister(socks[i])
        if not served and now - t0 >= 2.5:
            # A new client while all of them are connected.
            active = stats(d)["tcp"]["active"]
            assert active == n, active
            lat = ping_pong(d, 10)
            served.append(max(lat))
            assert d.udp_exchange(b"udp anche") == b"UDP ANCHE"
    poller.close()
    for s in socks:
        s.close()

    keepers = [i for i in range(n) if i not in stoppers]
    early = [(i, ended[i]) for i in keepers if ended[i]]
    assert not early, "tricklers closed: %r" % early[:10]
    short = [i for i in keepers if len(sent[i]) < run_for - 1]
    assert not short, "tricklers that sent too little: %r" % [(i, bytes(sent[i])) for i in short[:10]]
    wrong = [i for i in range(n) if bytes(got[i]) != bytes(sent[i]).upper()]
    assert not wrong, [(i, bytes(sent[i]), bytes(got[i])) for i in wrong[:10]]
    alive = [i for i in stoppers if not ended[i]]
    assert not alive, "%d silent connections not closed by the idle timeout" % len(alive)
    waits = sorted(ended[i][0] - last_byte[i] for i in stoppers)
    assert all(ended[i][1] == "eof" for i in stoppers), [ended[i] for i in stoppers][:10]
    assert waits[0] > idle - 0.25, "closed %.2f s after the last byte, idle is %.1f s" % (waits[0], idle)
    assert waits[-1] < idle + 2.5, "closed %.2f s after the last byte, idle is %.1f s" % (waits[-1], idle)
    assert served and served[0] < 1.0, served
    st = wait_stats(d, lambda st: st["tcp"]["active"] == 0, timeout=5)
    assert st["tcp"]["closed_idle"] == len(stoppers), st
    print("%s: %d tricklers for %.1f s; %d silent ones closed %.2f-%.2f s after their last byte; "
          "new client's worst round trip %.1f ms"
          % (model, n, time.monotonic() - t0, len(stoppers), waits[0], waits[-1], served[0] * 1e3))


# ------------------------------------------------------ 5. random bytes

def tcp_reference(data):
    """What the daemon sends back for data followed by the client's EOF:
    the text before the first "." line (".\\n", ".\\r\\n", or "." at the
    end), upper-cased; invalid UTF-8 passed through.  Returns (reply,
    quit)."""
    pos = 0
    while True:
        nl = data.find(b"\n", pos)
        if nl < 0:
            if data[pos:] == b".":
                return upper(data[:pos]), True
            return upper(data), False
        if data[pos:nl] in (b".", b".\r"):
            return upper(data[:pos]), True
        pos = nl + 1


def random_payload(rng, size):
    """Seeded garbage: any bytes, NUL runs, invalid UTF-8, multi-byte and
    special-cased characters, CR-only and "." lines."""
    pieces = [
        lambda: bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64))),
        lambda: b"\x00" * rng.randrange(1, 300),
        lambda: bytes([rng.randrange(0x80, 0x100)]) * rng.randrange(1, 5),
        lambda: rng.choice(["ß", "ΐ", "ﬁ", "ǰ", "perché", "straße", "日本", "😀", "ǅ"]).encode(),
        lambda: rng.choice(["ΐ", "€", "😀", "é"]).encode()[:rng.randrange(1, 3)],   # cut short
        lambda: rng.choice([b"\r", b"\r\r", b"\r\n", b"\n", b"\n\r"]),
        lambda: rng.choice([b".", b"..", b". ", b".\r", b".\r\r\n", b"\n.x", b"\n.\r.",
                            b"\n.\r\n", b"\n.\n", b".\n"]),
        lambda: bytes(rng.randrange(0x20, 0x7f) for _ in range(rng.randrange(1, 80))),
    ]
    out = bytearray()
    while len(out) < size:
        out += rng.choice(pieces)()
    return bytes(out[:size])


def send_split(s, data, rng):
    """Sends data in random pieces, sometimes with a pause between."""
    i = 0
    while i < len(data):
        k = rng.choice([1, 2, 3, 7, 100, 4096, 70000])
        s.sendall(data[i:i + k])
        i += k
        if rng.random() < 0.02:
            time.sleep(0.002)


def tcp_random_session(d, data, rng):
    """data, split at random, then EOF; returns (reply, how)."""
    s = d.tcp_connect(nodelay=True)
    try:
        err = []

        def writer():
            try:
                send_split(s, data, rng)
                s.shutdown(socket.SHUT_WR)
            except (BrokenPipeError, ConnectionResetError):
                pass    # the daemon quit at a "." line and reset the rest
            except OSError as e:
                err.append(e)

        w = threading.Thread(target=writer, daemon=True)
        w.start()
        reply = recv_until_eof(s, timeout=20, limit=64 << 20)
        w.join(10)
        assert not err, err
        return reply
    finally:
        s.close()


@pytest.mark.slow
def test_random_bytes_tcp(daemon_factory, model):
    """Seeded random streams (every byte value, NUL runs, invalid UTF-8,
    characters cut short or split across reads, CR-only lines, "." lines and
    look-alikes, a 1 MB line with no newline) each on its own connection,
    half-closed: the reply is exactly the reference (text before the first
    "." line, upper-cased as str.upper() with invalid bytes passed through),
    and the daemon keeps answering."""
    d = make(daemon_factory, model)
    rng = random.Random(20250607)
    every_byte = bytes(range(256))
    cases = [every_byte, bytes(reversed(every_byte)), b"\x00" * 5000, b"\r" * 1000 + b"abc",
             b".\r", b".", b"..\n.\r.\n", b"\xff" * 10 + b"\n.\r\n" + b"after",
             random_payload(random.Random(1), 1 << 20).replace(b"\n", b"\r")]
    cases += [random_payload(rng, rng.choice([10, 100, 1000, 20000])) for _ in range(40)]
    quits = 0
    for i, data in enumerate(cases):
        want, quit = tcp_reference(data)
        quits += quit
        got, how = tcp_random_session(d, data, rng)
        assert how in ("eof", "reset") if quit else how == "eof", (i, how)
        if got != want:
            k = next((j for j in range(min(len(got), len(want))) if got[j] != want[j]),
                     min(len(got), len(want)))
            pytest.fail("case %d (%d bytes): reply differs at byte %d: got %r, want %r, input there %r"
                        % (i, len(data), k, got[max(0, k - 20):k + 20], want[max(0, k - 20):k + 20],
                           data[max(0, k - 20):k + 20]))
    assert 0 < quits < len(cases), quits     # both kinds were exercised
    s = d.tcp_connect()
    exchange(s, b"dopo il rumore\n")
    s.close()
    assert d.udp_exchange(b"ok") == b"OK"
    st = wait_stats(d, lambda st: st["tcp"]["active"] == 0, timeout=5)
    assert st["tcp"]["closed_error"] == 0, st


def udp_reference(data):
    """The reply to one datagram: upper-cased; if longer than 65507 bytes,
    its longest prefix of whole characters (an invalid byte counting as
    one) that fits.  Returns (reply, truncated)."""
    full = upper(data)
    if len(full) <= UDP_MAX:
        return full, False
    n = 0
    for ch in full.decode("utf-8", "surrogateescape"):
        k = len(ch.encode("utf-8", "surrogateescape"))
        if n + k > UDP_MAX:
            break
        n += k
    return full[:n], True


@pytest.mark.slow
def test_random_bytes_udp(daemon_factory, model):
    """Seeded random datagrams, empty to 65507 bytes: each reply is exactly
    the upper-cased datagram, or its longest prefix that fits, cut at a
    character boundary (counted in udp.truncated); the invalid_utf8 counter
    matches what Python cannot decode; the daemon keeps answering."""
    d = make(daemon_factory, model)
    rng = random.Random(12000)
    every_byte = bytes(range(256))
    cases = [b"", every_byte, b"\x00" * 1000, b".\n", b"\n.\n", b"\xc3", "ΐ".encode() * 32753,
             b"x" * UDP_MAX, random_payload(random.Random(2), UDP_MAX)]
    cases += [random_payload(rng, rng.choice([1, 10, 100, 1000, 9000])) for _ in range(150)]
    before = stats(d)
    invalid = truncated = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.settimeout(SOCK_TIMEOUT)
        u.bind(("127.0.0.1", 0))
        for i, data in enumerate(cases):
            u.sendto(data, ("127.0.0.1", d.port))
            reply, _ = u.recvfrom(1 << 17)
            want, cut = udp_reference(data)
            invalid += sum(1 for ch in data.decode("utf-8", "surrogateescape")
                           if 0xDC80 <= ord(ch) <= 0xDCFF)
            truncated += cut
            if reply != want:
                k = next((j for j in range(min(len(reply), len(want))) if reply[j] != want[j]),
                         min(len(reply), len(want)))
                pytest.fail("datagram %d (%d bytes): reply (%d bytes) differs at byte %d: "
                            "got %r, want %r" % (i, len(data), len(reply), k,
                                                 reply[max(0, k - 10):k + 10], want[max(0, k - 10):k + 10]))
    assert truncated >= 2
    after = wait_stats(d, lambda st: st["udp"]["datagrams"] - before["udp"]["datagrams"] >= len(cases))
    assert after["udp"]["datagrams"] - before["udp"]["datagrams"] == len(cases), after
    assert after["udp"]["truncated"] - before["udp"]["truncated"] == truncated, after
    assert after["invalid_utf8"] - before["invalid_utf8"] == invalid, (invalid, after)
    assert d.udp_exchange(b"ancora") == b"ANCORA"
    s = d.tcp_connect()
    exchange(s, b"tcp pure\n")
    s.close()
