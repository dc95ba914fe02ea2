# SPDX-License-Identifier: MIT
"""Keeps docs/lab.md true: runs the guide's commands that need no systemd
against the real daemon and client, and checks that they still do what the
guide shows.

Each command is taken as the guide writes it (the test fails if the guide no
longer contains it), then translated: the test daemon's free port for
12000, a port with nothing on it for 12001, the daemon's private control
socket for uppercasectl, the daemon's PID for the one in the guide.  Where
the guide pastes an output that does not depend on timing, the output must
match it exactly (ports translated back).  Every wait is bounded; the only
processes signalled are the ones started here, by PID."""

import os
import re
import signal
import socket
import subprocess
import time

import pytest

from conftest import BUILD, REPO, free_port
from test_client import Terminal

GUIDE_PATH = os.path.join(REPO, "docs", "lab.md")
CMD_TIMEOUT = 30


@pytest.fixture(scope="module")
def guide():
    with open(GUIDE_PATH, encoding="utf-8") as f:
        return f.read()


def version():
    with open(os.path.join(REPO, "VERSION")) as f:
        return f.read().strip()


def guide_outputs(guide, cmd):
    """For each place the guide shows "$ cmd" (or "# cmd"), the lines after
    it up to the next command or the end of the block."""
    lines = guide.splitlines()
    found = []
    for i, line in enumerate(lines):
        if line in ("$ " + cmd, "# " + cmd):
            out = []
            for l in lines[i + 1:]:
                if l.startswith(("$ ", "# ", "```")):
                    break
                out.append(l)
            found.append(out)
    if not found:
        raise AssertionError("docs/lab.md no longer shows the command: %s" % cmd)
    return found


def guide_output(guide, cmd, nth=0):
    return guide_outputs(guide, cmd)[nth]


class Lab:
    """Runs guide commands against one daemon, translated."""

    def __init__(self, daemon, tmp_path):
        self.d = daemon
        self.noport = free_port()
        self.cwd = str(tmp_path)

    def translate(self, cmd):
        d = self.d
        cmd = re.sub(r"\b12000\b", str(d.port), cmd)
        cmd = re.sub(r"\b12001\b", str(self.noport), cmd)
        cmd = re.sub(r"\buppercasectl\b", "uppercasectl -s %s" % d.control, cmd)
        if d.proc is not None:
            cmd = re.sub(r"\bkill -(STOP|CONT) \d+", r"kill -\1 %d" % d.pid, cmd)
            cmd = re.sub(r"(-p|--ppid) \d+$", r"\1 %d" % d.pid, cmd)

        # uppercase [OPTIONS] [HOST [PORT]]: make the port explicit.
        def add_port(m):
            opts, host, port = m.group(1) or "", m.group(2), m.group(3)
            return "uppercase%s%s%s" % (opts, host or " localhost", port or " %d" % d.port)
        return re.sub(r"\buppercase\b((?:\s+-(?:w\s+\S+|[-\w]+))*)"
                      r"(\s+(?:localhost|::1|127\.0\.0\.1))?(\s+\d+\b)?", add_port, cmd)

    def untranslate(self, text):
        text = text.replace(str(self.d.port), "12000")
        return text.replace(str(self.noport), "12001")

    def run(self, guide, cmd, timeout=CMD_TIMEOUT):
        """Runs a command the guide shows; returns its output (stdout and
        stderr, in order), ports translated back."""
        guide_output(guide, cmd)
        env = dict(os.environ)
        env["PATH"] = BUILD + os.pathsep + env.get("PATH", "")
        p = subprocess.run(["bash", "-c", "{ %s\n} 2>&1" % self.translate(cmd)],
                           stdout=subprocess.PIPE, cwd=self.cwd, env=env, timeout=timeout)
        return self.untranslate(p.stdout.decode("utf-8", "replace"))

    def check(self, guide, cmd, nth=0):
        """Runs cmd and compares its output with the guide's (its nth
        showing), exactly."""
        out = self.run(guide, cmd)
        assert out.splitlines() == guide_output(guide, cmd, nth), out
        return out


@pytest.fixture
def lab(tmp_path):
    def make(daemon):
        return Lab(daemon, tmp_path)
    return make


def stats(lab, guide=None):
    """uppercasectl stats, human output, as {label: value}."""
    env = dict(os.environ)
    p = subprocess.run([os.path.join(BUILD, "uppercasectl"), "-s", lab.d.control, "stats"],
                       stdout=subprocess.PIPE, env=env, timeout=CMD_TIMEOUT, check=True)
    got = {}
    for line in p.stdout.decode().splitlines():
        m = re.match(r"^  (\S.*?)\s{2,}(\S+(?: B)?)$", line)
        if m:
            got.setdefault(m.group(1), m.group(2))
    return got


def wait_for(cond, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def start_session(args=()):
    t = Terminal(list(args))
    t.read_until(b"> ")
    return t


def say(t, line, reply):
    t.type(line.encode() + b"\n")
    t.read_until(reply.encode() + b"\r\n> ")


def connection_rows(lab):
    out = subprocess.run([os.path.join(BUILD, "uppercasectl"), "-s", lab.d.control, "connections"],
                         stdout=subprocess.PIPE, timeout=CMD_TIMEOUT, check=True).stdout.decode()
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "CLIENT", "AGE", "IDLE", "IN", "OUT", "WORKER"], out
    return [l.split() for l in lines[1:]]


# --------------------------------------------------------------- the guide

def test_systemd_commands_are_marked(guide):
    """Every systemctl/journalctl command sits under a [systemd] mark: they
    are the ones not run for the guide."""
    for m in re.finditer(r"```console\n(.*?)```", guide, re.S):
        block = m.group(1)
        if re.search(r"^[$#] .*\b(systemctl|journalctl)\b", block, re.M):
            before = guide[max(0, m.start() - 600):m.start()]
            assert "**[systemd]**" in before, block


def test_hundred_py_is_in_the_guide(guide):
    assert extract_hundred(guide).startswith("# hundred.py")


# --------------------------------------------------------------- 1 and 2

def test_start_and_stop_lines(guide, daemon_factory):
    d = daemon_factory(model="event")
    running = "uppercased %s running: event model, " % version()
    assert "\n%stcp [::]:12000, udp [::]:12000\n" % running in guide
    assert d.wait_log(running) is not None, d.log()
    assert d.stop(signal.SIGINT) == 0
    assert d.log().splitlines()[-2:] == ["Interrupted, stopping: finishing 0 connection(s)",
                                         "Stopped"]
    assert "Interrupted, stopping: finishing 0 connection(s)\nStopped\n" in guide


def test_ss_shows_the_sockets_and_the_backlog(guide, daemon_factory, lab):
    L = lab(daemon_factory(model="event"))
    out = L.run(guide, "ss -aut 'sport = :12000'").splitlines()
    rows = {l.split()[0]: l.split() for l in out[1:]}
    assert rows["udp"][1] == "UNCONN", out
    assert rows["tcp"][1:4] == ["LISTEN", "0", "128"], out


def test_socket_activation_without_systemd(guide, daemon_factory, lab, tmp_path):
    """Section 2: systemd-socket-activate holds the socket, then execs
    uppercased on the first client, same PID."""
    cmd = "systemd-socket-activate -l 12000 uppercased -c etc/uppercased.conf"
    guide_output(guide, cmd)
    activate = "/usr/bin/systemd-socket-activate"
    if not os.access(activate, os.X_OK):
        pytest.skip("systemd-socket-activate is not installed")
    d = daemon_factory(model="event", start=False)
    d.port = free_port()
    d.write_config()
    L = lab(d)
    env = dict(os.environ, PATH=BUILD + os.pathsep + os.environ.get("PATH", ""))
    for k in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET"):
        env.pop(k, None)
    log = open(tmp_path / "activate.log", "wb")
    p = subprocess.Popen([activate, "-l", "127.0.0.1:%d" % d.port, os.path.join(BUILD, "uppercased"),
                          "-c", d.conf], stdout=log, stderr=log, env=env)
    try:
        def holder():
            out = subprocess.run(["ss", "-ltpn", "sport = :%d" % d.port], stdout=subprocess.PIPE,
                                 timeout=CMD_TIMEOUT).stdout.decode()
            m = re.search(r'users:\(\("([^"]+)",pid=(\d+)', out)
            return (m.group(1), int(m.group(2))) if m else None
        assert wait_for(lambda: holder() is not None), "activator not listening"
        assert holder() == ("systemd-socket-", p.pid)
        assert L.run(guide, "uppercase localhost ciao") == "CIAO\n"
        assert wait_for(lambda: holder() == ("uppercased", p.pid)), holder()
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
        log.close()
    text = (tmp_path / "activate.log").read_text()
    assert "running: event model, socket activated, tcp 127.0.0.1:%d" % d.port in text, text


# --------------------------------------------------------------- 3

def test_client_address_and_port_in_the_log(guide, daemon_factory, lab):
    d = daemon_factory(model="event")
    L = lab(d)
    for _ in range(3):
        assert L.check(guide, "uppercase -u localhost ciao") == "CIAO\n"
    assert L.check(guide, "uppercase localhost ciao mondo") == "CIAO MONDO\n"
    ports = [int(m.group(1)) for m in
             (re.match(r"^udp datagram from 127\.0\.0\.1 port (\d+): 4 bytes in, 4 bytes out$", l)
              for l in d.log_lines()) if m]
    # Each run is a new socket with a port the kernel picks at random: they
    # differ (two of three may meet by chance, all three practically never).
    assert len(ports) == 3 and len(set(ports)) >= 2, d.log()
    assert d.wait_log(re.compile(r"^tcp connection from 127\.0\.0\.1 port \d+ closed \(eof\): "
                                 r"10 bytes in, 10 bytes out, ")) is not None, d.log()


# --------------------------------------------------------------- 4

def test_server_that_does_not_exist(guide, daemon_factory, lab):
    L = lab(daemon_factory(model="event"))
    L.check(guide, 'uppercase -u localhost 12001 ciao; echo "exit status $?"')
    L.check(guide, 'uppercase localhost 12001 ciao; echo "exit status $?"')


def test_frozen_server_timeouts(guide, daemon_factory, lab):
    d = daemon_factory(model="event")
    L = lab(d)
    assert L.run(guide, "uppercasectl status | grep PID").split() == ["PID:", str(d.pid)]
    L.run(guide, "kill -STOP 22618")
    try:
        t = time.monotonic()
        out = L.run(guide, "time uppercase -u localhost ciao")
        took = time.monotonic() - t
        assert out.splitlines()[0] == "uppercase: no reply from localhost:12000 within 2 s", out
        assert re.search(r"^real\t0m2\.\d{3}s$", out, re.M), out
        assert 1.9 < took < 3.5, took
        L.check(guide, 'uppercase -w 3 localhost ciao; echo "exit status $?"')
    finally:
        L.run(guide, "kill -CONT 22618")
    # Thawed, it serves what waited, and carries on.
    assert d.wait_log("udp datagram from 127.0.0.1 port ") is not None, d.log()
    assert L.run(guide, "uppercase localhost ciao") == "CIAO\n"


# --------------------------------------------------------------- 5

def test_udp_client_that_leaves_early(guide, daemon_factory, lab):
    d = daemon_factory(model="event")
    L = lab(d)
    before = stats(L)
    assert L.run(guide, "printf ciao > /dev/udp/127.0.0.1/12000") == ""
    assert d.wait_log(re.compile(r"^udp datagram from 127\.0\.0\.1 port \d+: 4 bytes in, 4 bytes out$"))
    out = L.run(guide, "uppercasectl stats | sed -n '/^UDP/,/^$/p'")
    assert out.splitlines()[0] == "UDP"
    after = stats(L)
    assert int(after["datagrams"]) == int(before["datagrams"]) + 1
    assert after["send errors"] == "0", after
    L.check(guide, "uppercase -u localhost ancora vivo")


# --------------------------------------------------------------- 6

def test_tcp_oneshot_and_pipe(guide, daemon_factory, lab):
    d = daemon_factory(model="event")
    L = lab(d)
    L.check(guide, "uppercase localhost ciao", nth=-1)
    L.check(guide, "uppercase -n localhost ciao | od -c")
    assert d.wait_log("closed (eof): 5 bytes in, 5 bytes out") is not None, d.log()
    d.mark()
    L.check(guide, r"printf 'ciao\nbuongiorno\n.\nquesta riga non arriva\n' | uppercase")
    assert d.wait_log("closed (quit): 41 bytes in, 16 bytes out") is not None, d.log()


def test_persistent_session(guide, daemon_factory):
    d = daemon_factory(model="event")
    shown = guide_output(guide, "uppercase")
    assert shown[:2] == ["> ciao", "CIAO"], shown
    t = start_session(["localhost", d.port])
    try:
        typed = [l[2:] for l in shown if l.startswith("> ")]
        assert typed == ["ciao", "buongiorno a tutti", "perché no?", "."]
        for line in typed[:-1]:
            t.type(line.encode() + b"\n")
            t.read_until(b"> ")
        t.type(b".\n")
        assert t.wait() == 0
        screen = (t.seen.decode() + t.rest().decode()).replace("\r\n", "\n")
    finally:
        t.close()
    assert d.wait_log("closed (quit): 38 bytes in, 36 bytes out") is not None, d.log()
    assert "closed (quit): 38 bytes in, 36 bytes out" in guide
    assert screen == ".\n"


# --------------------------------------------------------------- 7

@pytest.mark.parametrize("model", ["event", "thread", "process"])
def test_several_clients_at_once(guide, daemon_factory, lab, model):
    d = daemon_factory(model=model)
    L = lab(d)
    sessions = []
    try:
        A = start_session(["localhost", d.port])
        sessions.append(A)
        say(A, "primo", "PRIMO")
        B = start_session(["localhost", d.port])
        C = start_session(["localhost", d.port])
        sessions += [B, C]
        assert wait_for(lambda: len(connection_rows(L)) == 3), connection_rows(L)
        out = L.run(guide, "uppercasectl connections")
        rows = [l.split() for l in out.splitlines()[1:]]
        workers = {r[-1] for r in rows}
        if model == "event":
            assert workers == {"0"}, out
            threads = L.run(guide, "ps -T -o pid,spid,comm -p 22013").splitlines()[1:]
            assert len(threads) == 2, threads
        elif model == "thread":
            assert workers <= set(os.listdir("/proc/%d/task" % d.pid)), out
            threads = L.run(guide, "ps -T -o pid,spid,comm -p 19450").splitlines()[1:]
            assert len(threads) == 2 + 3, threads
        else:
            kids = L.run(guide, "ps -o pid,ppid,comm --ppid 19520").splitlines()[1:]
            assert {k.split()[0] for k in kids} == workers, (kids, out)
        say(B, "secondo", "SECONDO")
        A.type(b".\n")
        assert A.wait() == 0
        say(B, "ancora qui", "ANCORA QUI")
        assert wait_for(lambda: len(connection_rows(L)) == 2), connection_rows(L)
        out = L.run(guide, "uppercasectl stats | sed -n '/^TCP/,/^$/p'")
        assert out.splitlines() == guide_output(guide, "uppercasectl stats | sed -n '/^TCP/,/^$/p'")
        say(C, "terzo", "TERZO")
        for t in (B, C):
            t.type(b".\n")
            assert t.wait() == 0
    finally:
        for t in sessions:
            t.close()


# --------------------------------------------------------------- 8

def listen_queue(lab, guide):
    out = lab.run(guide, "ss -lnt 'sport = :12000'").splitlines()
    fields = out[1].split()
    assert fields[0] == "LISTEN", out
    return int(fields[1]), int(fields[2])


def test_backlog_over_worker_limit_is_rejected(guide, daemon_factory, lab):
    """One worker busy: the next connections are accepted and closed at
    once, counted as rejected; nothing waits in the queue."""
    d = daemon_factory(model="thread", backlog=1, max_workers=1)
    L = lab(d)
    assert listen_queue(L, guide) == (0, 1)
    A = start_session(["localhost", d.port])
    try:
        say(A, "primo", "PRIMO")
        L.check(guide, 'uppercase localhost secondo; echo "exit status $?"')
        L.check(guide, 'uppercase localhost terzo; echo "exit status $?"')
        assert listen_queue(L, guide) == (0, 1)
        L.check(guide, "uppercasectl stats | grep -E 'active|accepted|rejected'")
        A.type(b".\n")
        assert A.wait() == 0
    finally:
        A.close()
    lines = [l for l in d.log_lines() if l.startswith("tcp connection from")]
    rejected = [l for l in lines if l.endswith("rejected: connection limit reached")]
    opens = [l for l in lines if "closed" not in l and l not in rejected]
    assert len(opens) == 1, d.log()
    assert len(rejected) == 2, d.log()      # one line for each rejected client


def test_backlog_queue_of_a_frozen_server(guide, daemon_factory, lab):
    """A server that does not accept(): backlog + 1 connections complete
    and wait, later ones stay in SYN-SENT and time out."""
    d = daemon_factory(model="thread", backlog=1, max_workers=1)
    L = lab(d)
    loop = ("for i in 1 2 3 4; do uppercase -w 3 localhost client $i & sleep 0.2; done; "
            "sleep 1; ss -tn 'dport = :12000'; ss -lnt 'sport = :12000'; wait")
    L.run(guide, "kill -STOP 22860")
    try:
        out = L.run(guide, loop).splitlines()
    finally:
        L.run(guide, "kill -CONT 22860")
    states = sorted(l.split()[0] for l in out if re.match(r"^(ESTAB|FIN-WAIT-2|SYN-SENT) ", l))
    assert states == ["FIN-WAIT-2", "FIN-WAIT-2", "SYN-SENT", "SYN-SENT"], out
    listen = [l.split() for l in out if l.startswith("LISTEN")]
    assert listen and listen[0][1:3] == ["2", "1"], out
    errors = sorted(l for l in out if l.startswith("uppercase: "))
    assert errors == sorted(["uppercase: no reply from localhost:12000 within 3 s"] * 2 +
                            ["uppercase: cannot connect to localhost:12000: Connection timed out"] * 2), out
    # Thawed: both queued connections are taken, served or rejected.
    assert wait_for(lambda: int(stats(L)["accepted"]) + int(stats(L)["rejected"]) == 2), stats(L)
    assert d.running()


# --------------------------------------------------------------- 9

def extract_hundred(guide):
    m = re.search(r"```python\n(# hundred\.py.*?)```", guide, re.S)
    assert m, "docs/lab.md has no hundred.py block"
    return m.group(1)


def hundred_sizes(out):
    m = re.match(r"^100 sends, replies read in (\d+) recv: \[([\d, ]*)\]$", out.strip())
    assert m, out
    sizes = [int(x) for x in m.group(2).split(",")]
    assert len(sizes) == int(m.group(1))
    return sizes


def test_hundred_one_byte_sends(guide, daemon_factory, lab, tmp_path):
    d = daemon_factory(model="event")
    L = lab(d)
    (tmp_path / "hundred.py").write_text(extract_hundred(guide).replace("12000", str(d.port)))
    quick = hundred_sizes(L.run(guide, "python3 hundred.py"))
    paused = hundred_sizes(L.run(guide, "python3 hundred.py 0.01"))
    assert sum(quick) == 100 and sum(paused) == 100
    assert all(s > 0 for s in quick + paused)
    # With the pause the replies come (almost always) one byte at a time.
    assert len(paused) >= 50, paused
    L.check(guide, "uppercasectl stats | grep -E 'accepted|received|sent' | head -3", nth=1)
    closes = [l for l in d.log_lines() if "closed (eof): 100 bytes in, 100 bytes out" in l]
    assert len(closes) == 2, d.log()
    paused_s = float(closes[1].rsplit(", ", 1)[1][:-2])
    assert paused_s >= 1.0, closes         # 100 pauses of 10 ms


# --------------------------------------------------------------- 10

def test_process_model_worker_dies_alone(guide, daemon_factory, lab):
    d = daemon_factory(model="process")
    L = lab(d)
    A = start_session(["localhost", d.port])
    B = start_session(["localhost", d.port])
    try:
        say(A, "io sono A", "IO SONO A")
        say(B, "io sono B", "IO SONO B")
        rows = connection_rows(L)
        worker_a = int(rows[0][-1])
        guide_output(guide, "kill -KILL 22029")
        assert worker_a in d.children()
        os.kill(worker_a, signal.SIGKILL)       # a child of the daemon we started
        assert A.wait() == 1
        assert b"uppercase: localhost:%d closed the connection" % d.port in A.rest()
        say(B, "ancora qui", "ANCORA QUI")
        assert wait_for(lambda: stats(L)["workers died"] == "1"), stats(L)
        L.check(guide, "uppercasectl stats | grep -E 'active|died'")
        B.type(b".\n")
        assert B.wait() == 0
    finally:
        A.close()
        B.close()
    assert d.wait_log("warning: Worker process %d serving 127.0.0.1 port " % worker_a) is not None
    assert d.wait_log("closed (error)") is not None
