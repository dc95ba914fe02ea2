# SPDX-License-Identifier: MIT
"""Connections that survive a restart, through a file descriptor store.

StoreDaemon stands in for systemd: it activates the daemon with its
listening sockets, keeps what the daemon stores with FDSTORE=1 (by FDNAME),
drops what it removes with FDSTOREREMOVE=1, answers BARRIER=1, and on
restart passes the store back after the listening sockets, as systemd does
(the real thing is checked by tests/system/run with systemctl restart).  On
a plain stop it closes the store, as systemd does.
"""

import array
import glob
import os
import random
import select
import signal
import socket
import time

import pytest

from conftest import ASAN, SOCK_TIMEOUT, Daemon, recv_exact, recv_until_eof, upper
from test_control import control_raw
from test_valgrind import VALGRIND

HANDOVER_MODELS = [("event", []), ("thread", []), ("event", ["-t", "2"])]
HANDOVER_IDS = ["event", "thread", "event-t2"]


class StoreDaemon(Daemon):
    def __init__(self, store_max=1025, **kw):
        env = dict(kw.pop("env_extra", {}) or {})
        env["FDSTORE"] = str(store_max)
        super().__init__(activate=True, env_extra=env, **kw)
        self.store = []                 # [(name, fd)], as systemd keeps them

    def _read_notify(self):
        while not self._stop_reader:
            try:
                data, anc, _, _ = self._notify.recvmsg(65536, socket.CMSG_SPACE(253 * 4))
            except socket.timeout:
                continue
            except OSError:
                return
            fds = array.array("i")
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
            if not data and not fds:
                continue
            msg = data.decode("utf-8", "replace")
            self._handle(msg.split("\n"), list(fds))
            with self._cond:
                self.notifications.append(msg)
                self._cond.notify_all()

    def _handle(self, lines, fds):
        fields = dict(line.split("=", 1) for line in lines if "=" in line)
        name = fields.get("FDNAME", "stored")
        with self._cond:
            if fields.get("FDSTORE") == "1":
                self.store.extend((name, fd) for fd in fds)
                fds = []
            if fields.get("FDSTOREREMOVE") == "1":
                for n, fd in [x for x in self.store if x[0] == name]:
                    os.close(fd)
                    self.store.remove((n, fd))
        # BARRIER=1 and anything else: closing the descriptor is the answer.
        for fd in fds:
            os.close(fd)

    def stored_names(self):
        with self._cond:
            return sorted(n for n, _ in self.store)

    def inherited_fds(self):
        with self._cond:
            return tuple(fd for _, fd in self.store)

    def command(self):
        cmd = super().command()
        with self._cond:
            stored = ["--stored=%d:%s" % (fd, n) for n, fd in self.store]
        # After activate.py's own options, before "--".
        i = cmd.index("--")
        return cmd[:i] + stored + cmd[i:]

    def restart(self, timeout=15.0):
        """systemctl restart: stop, keep the store, start with it."""
        code = self.stop(timeout=timeout)
        assert code == 0, self.log()
        since = len(self.notifications)
        self.start(wait_ready=False)
        self.wait_ready(since=since)

    def stop_plain(self, timeout=15.0):
        """systemctl stop: the store is closed once the service is dead."""
        code = self.stop(timeout=timeout)
        with self._cond:
            for _, fd in self.store:
                os.close(fd)
            self.store = []
        return code

    def cleanup(self):
        super().cleanup()
        with self._cond:
            for _, fd in self.store:
                os.close(fd)
            self.store = []


@pytest.fixture
def store_daemon(request):
    made = []

    def make(model="event", args=(), **config):
        d = StoreDaemon(model=model, args=args, **config)
        made.append(d)
        d.start()
        return d

    yield make
    failed = getattr(request.node, "rep_failed", True)
    for d in made:
        d.cleanup()
        if failed:
            print("---- daemon stderr:\n" + d.log(everything=True)[-6000:])
        rep = d.sanitizer_report()
        assert rep is None, rep


def control(d, command):
    return control_raw(d.activate_control, command.encode() + b"\n").decode()


def stats(d):
    lines = control(d, "stats").splitlines()
    return dict(line.split(" ", 1) for line in lines if " " in line)


def connect(d):
    c = socket.create_connection(("127.0.0.1", d.port), timeout=SOCK_TIMEOUT)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return c


@pytest.mark.parametrize("model,args", HANDOVER_MODELS, ids=HANDOVER_IDS)
def test_restart_keeps_the_session(store_daemon, model, args):
    """A client in the middle of a line and of a character keeps its
    connection: what the old instance held back is finished by the new."""
    d = store_daemon(model, args)
    c = connect(d)
    c.sendall(b"ciao\n")
    assert recv_exact(c, 5) == b"CIAO\n"
    # "perch" and the first byte of "é": the daemon holds that byte back.
    c.sendall("perch".encode() + b"\xc3")
    assert recv_exact(c, 5) == b"PERCH"

    d.restart()
    assert "handed over for a restart" in d.log(everything=True)
    # The new instance took everything back and out of the store.
    assert d.wait_log("resumed after a restart")
    deadline = time.monotonic() + 5
    while d.stored_names() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert d.stored_names() == [], d.notifications

    c.sendall(b"\xa9 ciao\n")
    want = "É CIAO\n".encode()
    assert recv_exact(c, len(want)) == want
    st = stats(d)
    assert st["tcp.resumed"] == "1" and st["tcp.active"] == "1", st
    c.sendall(b".\n")
    assert recv_until_eof(c) == (b"", "eof")
    c.close()


@pytest.mark.parametrize("model,args", HANDOVER_MODELS, ids=HANDOVER_IDS)
def test_restart_with_replies_unread(store_daemon, model, args):
    """A peer that is not reading when the restart comes: the replies the
    old instance could not send travel with the connection; not a byte is
    lost or doubled."""
    d = store_daemon(model, args)
    rnd = random.Random(7)
    words = ["ciao", "perché", "straße", "ΐ", "naïve", "x" * 50]
    data = b"".join((" ".join(rnd.choice(words) for _ in range(12)) + "\n").encode()
                    for _ in range(60000))
    c = connect(d)
    c.setblocking(False)
    sent = 0
    # Fill both directions: the daemon stops reading once its replies wait.
    stalled_since = None
    while sent < len(data):
        _, w, _ = select.select([], [c], [], 0.2)
        if not w:
            stalled_since = stalled_since or time.monotonic()
            if time.monotonic() - stalled_since > 0.5:
                break
            continue
        stalled_since = None
        try:
            sent += c.send(data[sent:sent + 65536])
        except BlockingIOError:
            pass
    assert sent < len(data), "the daemon never pushed back"

    d.restart()
    expected = upper(data)
    got = bytearray()
    deadline = time.monotonic() + 30
    while len(got) < len(expected) and time.monotonic() < deadline:
        want_write = [c] if sent < len(data) else []
        r, w, _ = select.select([c], want_write, [], 0.5)
        if r:
            chunk = c.recv(1 << 20)
            assert chunk, "connection closed after %d of %d bytes" % (len(got), len(expected))
            got += chunk
        if w:
            try:
                sent += c.send(data[sent:sent + 65536])
            except BlockingIOError:
                pass
    assert len(got) == len(expected)
    assert bytes(got) == expected
    assert stats(d)["tcp.resumed"] == "1"
    c.setblocking(True)
    c.sendall(b".\n")
    assert recv_until_eof(c) == (b"", "eof")


@pytest.mark.parametrize("model,args", HANDOVER_MODELS, ids=HANDOVER_IDS)
def test_many_connections_survive_two_restarts(store_daemon, model, args):
    n = 200
    d = store_daemon(model, args)
    conns = [connect(d) for _ in range(n)]
    for i, c in enumerate(conns):
        c.sendall(b"before %d\n" % i)
    for i, c in enumerate(conns):
        assert recv_exact(c, len(b"before %d\n" % i)) == b"BEFORE %d\n" % i
    for round_ in range(2):
        d.restart()
        assert stats(d)["tcp.resumed"] == str(n)
        for i, c in enumerate(conns):
            c.sendall(b"after %d %d\n" % (round_, i))
        for i, c in enumerate(conns):
            line = b"after %d %d\n" % (round_, i)
            assert recv_exact(c, len(line)) == upper(line)
    assert "Resumed %d of %d connection(s)" % (n, n) in d.log()
    for c in conns:
        c.close()


def test_plain_stop_answers_then_closes(store_daemon):
    """systemctl stop: the reply to a line sent just before is delivered,
    then the connection ends when systemd drops its store."""
    d = store_daemon("event")
    c = connect(d)
    c.sendall(b"ciao\n")
    assert recv_exact(c, 5) == b"CIAO\n"
    c.sendall(b"ultima\n")
    assert d.stop_plain() == 0
    assert recv_until_eof(c) == (b"ULTIMA\n", "eof")


def settled(value, interval=0.2, timeout=10.0):
    """value() once two readings interval apart agree."""
    deadline = time.monotonic() + timeout
    last = value()
    while time.monotonic() < deadline:
        time.sleep(interval)
        now = value()
        if now == last:
            return now
        last = now
    return last


@pytest.mark.parametrize("model,args", HANDOVER_MODELS, ids=HANDOVER_IDS)
def test_plain_stop_delivers_to_a_slow_reader(store_daemon, model, args):
    """A stop drains as without a store before handing over: a peer behind
    on reading when the stop comes, with input not read yet either, still
    gets every reply if it reads within the second a hand-over waits (the
    store may be closed next, by a plain stop)."""
    d = store_daemon(model, args)
    data = b"".join(b"riga %d del lettore lento\n" % i for i in range(200000))
    c = socket.socket()
    # Small buffers on our side: its replies back up after little data.
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32768)
    c.connect(("127.0.0.1", d.port))
    c.setblocking(False)
    sent = 0
    while sent < len(data):
        _, w, _ = select.select([], [c], [], 0.5)
        if not w:
            break                       # both directions are full
        sent += c.send(data[sent:sent + 65536])
    # With its replies unread, the daemon stops reading: what it has read
    # settles below what was sent.  (Whether the sender is pushed back too
    # depends on the kernel: Linux 6.x lets a receive buffer grow to 32 MiB.)
    read = settled(lambda: int(stats(d)["tcp.bytes_in"]))
    assert read < sent, "the daemon read all %d bytes with its replies unread" % sent
    d.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    want = upper(data[:sent])
    got = bytearray()
    c.settimeout(SOCK_TIMEOUT)
    while len(got) < len(want):
        chunk = c.recv(1 << 20)
        if not chunk:
            break
        got += chunk
    assert bytes(got) == want
    assert d.stop_plain() == 0
    assert recv_until_eof(c) == (b"", "eof")


def test_store_too_small_closes_the_rest(store_daemon):
    """Two places for connections (and one for the state): two resume, the
    others are closed as on a stop, after their replies."""
    d = store_daemon("event", store_max=3, max_connections=8)
    assert "fewer than max_connections" in d.log()
    conns = [connect(d) for _ in range(4)]
    for c in conns:
        c.sendall(b"x\n")
        assert recv_exact(c, 2) == b"X\n"
    d.restart()
    assert "Failed to hand over connection" in d.log(everything=True)
    alive = 0
    for c in conns:
        try:
            c.sendall(b"y\n")
            reply = recv_exact(c, 2, timeout=2)
        except OSError:
            reply = b""
        alive += reply == b"Y\n"
    assert alive == 2
    assert stats(d)["tcp.resumed"] == "2"


def test_process_model_closes_on_restart(store_daemon):
    d = store_daemon("process")
    assert "process model closes connections on restart" in d.log()
    c = connect(d)
    c.sendall(b"ciao\n")
    assert recv_exact(c, 5) == b"CIAO\n"
    d.restart()
    assert recv_until_eof(c) == (b"", "eof")
    assert stats(d)["tcp.resumed"] == "0"


def test_lost_state_resumes_fresh(store_daemon, tmp_path):
    """A stored connection whose state is unreadable is still served, from a
    fresh state, under the id its name gives."""
    d = store_daemon("thread")
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    client = socket.create_connection(lsock.getsockname(), timeout=SOCK_TIMEOUT)
    server_side, _ = lsock.accept()
    lsock.close()
    garbage = os.memfd_create("garbage")
    os.write(garbage, b"not a state file")
    d.stop_plain()
    with d._cond:
        d.store = [("conn-77", os.dup(server_side.fileno())), ("state", garbage)]
    server_side.close()
    d.start()
    assert d.wait_log("resuming them without it")
    client.sendall(b"ciao\n")
    assert recv_exact(client, 5) == b"CIAO\n"
    assert "id=77 " in control(d, "connections")
    client.close()


def test_no_store_no_handover(daemon_factory):
    """Without $FDSTORE (no store configured), a stop closes as before and
    nothing is sent to the store."""
    d = daemon_factory("event")
    c = connect(d)
    c.sendall(b"ciao\n")
    assert recv_exact(c, 5) == b"CIAO\n"
    assert d.stop() == 0
    assert recv_until_eof(c) == (b"", "eof")
    assert not any(f.startswith("FDSTORE") for f in d.notify_fields())


@pytest.mark.skipif(ASAN, reason="valgrind cannot run an ASan build")
@pytest.mark.skipif(VALGRIND is None, reason="valgrind is not installed (make deps installs it)")
@pytest.mark.parametrize("model", ["event", "thread"])
def test_handover_under_valgrind(store_daemon, model, tmp_path):
    """Both sides of a hand-over (storing, then resuming with held-back
    bytes and a closed and a resumed connection) leak nothing and make no
    memory error."""
    logs = str(tmp_path / "valgrind")
    d = store_daemon(model, wrapper=[
        VALGRIND, "--leak-check=full", "--show-leak-kinds=definite,indirect",
        "--errors-for-leak-kinds=definite,indirect", "--log-file=%s.%%p" % logs])
    kept, closed = connect(d), connect(d)
    kept.sendall(b"ciao perch\xc3")
    assert recv_exact(kept, 10) == b"CIAO PERCH"
    d.restart(timeout=60)
    closed.sendall(b"fine\n.\n")
    assert recv_until_eof(closed) == (b"FINE\n", "eof")
    kept.sendall(b"\xa9\n")
    assert recv_exact(kept, 3) == "É\n".encode()
    assert d.stop(timeout=60) == 0, d.log()
    reports = glob.glob(logs + ".*")
    assert len(reports) == 2, reports
    for path in reports:
        text = open(path).read()
        assert "ERROR SUMMARY: 0 errors" in text, text
        assert "definitely lost: " not in text or "definitely lost: 0 bytes" in text, text
