# SPDX-License-Identifier: MIT
"""uppercase(1), the lab's client, against the real daemon on loopback.

The client binary is $UPPERCASED_BUILD/uppercase.  Every client run is
bounded by a subprocess timeout; the only processes killed are the ones
started here, by their PID."""

import os
import pty
import random
import select
import signal
import socket
import subprocess
import time

import pytest

from conftest import BUILD, REPO, free_port, upper

CLIENT = os.path.join(BUILD, "uppercase")
RUN_TIMEOUT = 60


def client_env():
    env = dict(os.environ)
    env["LC_ALL"] = "C"
    return env


def run(args, input=b"", timeout=RUN_TIMEOUT, stdin=None):
    """Runs uppercase with args; returns (exit status, stdout, stderr as
    text, seconds taken).  stdin: a file to read instead of input."""
    if not os.access(CLIENT, os.X_OK):
        pytest.fail("client binary not found: %s (set UPPERCASED_BUILD)" % CLIENT)
    t = time.monotonic()
    kw = dict(stdin=stdin) if stdin is not None else dict(input=input)
    p = subprocess.run([CLIENT] + [str(a) for a in args], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout, env=client_env(), **kw)
    return p.returncode, p.stdout, p.stderr.decode("utf-8", "replace"), time.monotonic() - t


def ok(args, **kw):
    rc, out, err, _ = run(args, **kw)
    assert (rc, err) == (0, ""), (args, rc, err)
    return out


def has_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


class Terminal:
    """uppercase on a pseudo-terminal, so that isatty(0) holds."""

    def __init__(self, args):
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen([CLIENT] + [str(a) for a in args], stdin=slave,
                                     stdout=slave, stderr=slave, close_fds=True,
                                     env=client_env())
        os.close(slave)
        self.seen = b""

    def read_until(self, what, timeout=5.0):
        """Reads until `what` (bytes) follows everything read before; returns
        what was read up to and including it, or fails."""
        deadline = time.monotonic() + timeout
        while what not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no %r on the terminal within %.1f s; got %r"
                                     % (what, timeout, self.seen))
            r, _, _ = select.select([self.master], [], [], min(left, 0.2))
            if r:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:         # EIO: the client has gone
                    chunk = b""
                if not chunk:
                    raise AssertionError("terminal closed before %r; got %r" % (what, self.seen))
                self.seen += chunk
        i = self.seen.index(what) + len(what)
        got, self.seen = self.seen[:i], self.seen[i:]
        return got

    def rest(self, timeout=2.0):
        """Everything until the client closes its end (bounded)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.master], [], [], 0.1)
            if r:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                self.seen += chunk
            elif self.proc.poll() is not None:
                break
        got, self.seen = self.seen, b""
        return got

    def type(self, data):
        os.write(self.master, data)

    def wait(self, timeout=5.0):
        return self.proc.wait(timeout)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        os.close(self.master)


@pytest.fixture
def terminal():
    made = []

    def make(args):
        t = Terminal(args)
        made.append(t)
        return t

    yield make
    for t in made:
        t.close()


@pytest.fixture
def event_daemon(daemon_factory):
    return daemon_factory(model="event")


def silent_udp_port():
    """A UDP socket bound on loopback that never answers: datagrams to it
    are neither answered nor refused."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    return s


def unused_port():
    """A port with nothing listening, TCP or UDP (as far as can be known)."""
    return free_port()


# ------------------------------------------------------------------ one-shot

def test_oneshot_tcp(daemon):
    assert ok(["127.0.0.1", daemon.port, "ciao", "mondo"]) == b"CIAO MONDO\n"
    close = daemon.wait_log("closed (eof): 10 bytes in, 10 bytes out")
    assert close is not None, daemon.log()


def test_oneshot_tcp_newline(daemon):
    assert ok(["-n", "127.0.0.1", daemon.port, "ciao"]) == b"CIAO\n"
    assert daemon.wait_log("closed (eof): 5 bytes in, 5 bytes out") is not None, daemon.log()


def test_oneshot_udp(daemon):
    assert ok(["-u", "127.0.0.1", daemon.port, "straße", "perché"]) == "STRASSE PERCHÉ\n".encode()
    assert daemon.wait_log("udp datagram from 127.0.0.1 port ") is not None, daemon.log()


def test_oneshot_udp_newline(event_daemon):
    """With -n the datagram ends in "\\n", and so does the reply: no second
    newline is added."""
    assert ok(["-u", "-n", "127.0.0.1", event_daemon.port, "ciao"]) == b"CIAO\n"
    assert event_daemon.wait_log(": 5 bytes in, 5 bytes out") is not None


@pytest.mark.parametrize("text", ["perché così", "ﬁne ß ΐ ǰ", "日本語 😀 𐐨 ǅ", "Ωμέγα Grüße"])
def test_oneshot_unicode(event_daemon, text):
    want = (text.upper() + "\n").encode()
    assert ok(["127.0.0.1", event_daemon.port, text]) == want
    assert ok(["-u", "127.0.0.1", event_daemon.port, text]) == want


def test_oneshot_invalid_utf8_passes_through(event_daemon):
    word = b"ok\xff\xc3caf\xc3\xa9"
    assert ok(["127.0.0.1", event_daemon.port, os.fsdecode(word)]) == upper(word) + b"\n"


def test_oneshot_empty_text(event_daemon):
    """An empty TEXT is sent as nothing (TCP) or an empty datagram (UDP);
    the empty reply prints as an empty line."""
    assert ok(["127.0.0.1", event_daemon.port, ""]) == b"\n"
    assert ok(["-u", "127.0.0.1", event_daemon.port, ""]) == b"\n"


def test_oneshot_words_that_look_like_options(event_daemon):
    """After HOST, everything is TEXT."""
    assert ok(["127.0.0.1", event_daemon.port, "-n", "--udp", "-5"]) == b"-N --UDP -5\n"


def test_oneshot_dot_gets_no_reply(event_daemon):
    """"." alone ends the session at the server: no reply, and no error."""
    assert ok(["127.0.0.1", event_daemon.port, "."]) == b"\n"
    assert ok(["-n", "127.0.0.1", event_daemon.port, "."]) == b"\n"


def test_oneshot_large_text_both_directions(event_daemon):
    """A TEXT much larger than the socket buffers: the reply is read while
    the message is still being sent, so neither side waits for ever."""
    words = ["perché-ß-ΐ-%d-" % i + "x" * 100000 for i in range(8)]
    text = " ".join(words)
    out = ok(["127.0.0.1", event_daemon.port] + words, timeout=60)
    assert out == (text.upper() + "\n").encode()


def test_udp_text_too_long(event_daemon):
    rc, out, err, _ = run(["-u", "127.0.0.1", event_daemon.port, "x" * 65508])
    assert (rc, out) == (1, b"")
    assert err == "uppercase: 65508 bytes do not fit in a UDP datagram (at most 65507)\n"
    assert ok(["-u", "127.0.0.1", event_daemon.port, "x" * 65507]) == b"X" * 65507 + b"\n"


def test_default_port_is_12000():
    """Without PORT the client goes to 12000: shown by the error when
    nothing listens there (skipped when something does)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", 12000))
        except OSError:
            pytest.skip("port 12000 is in use here")
        rc, out, err, _ = run(["-4", "127.0.0.1", "ciao"])
    assert rc == 1
    assert err == "uppercase: cannot connect to 127.0.0.1:12000: Connection refused\n"


# ------------------------------------------------------------------ no server

def test_udp_no_server_refused():
    port = unused_port()
    rc, out, err, took = run(["-u", "127.0.0.1", port, "ciao"], timeout=10)
    assert (rc, out) == (1, b"")
    assert err == "uppercase: 127.0.0.1:%d refused (nothing listening)\n" % port
    assert took < 2 + 1


def test_udp_no_reply_default_timeout():
    with silent_udp_port() as s:
        port = s.getsockname()[1]
        rc, out, err, took = run(["-u", "localhost", port, "ciao"], timeout=10)
    assert (rc, out) == (1, b"")
    assert err == "uppercase: no reply from localhost:%d within 2 s\n" % port
    assert 2 - 0.1 <= took < 2 + 1, took


@pytest.mark.parametrize("arg,shown,seconds", [("1", "1", 1.0), ("500ms", "0.5", 0.5),
                                               ("1.5s", "1.5", 1.5)])
def test_udp_no_reply_timeout_option(arg, shown, seconds):
    with silent_udp_port() as s:
        port = s.getsockname()[1]
        rc, out, err, took = run(["-u", "-w", arg, "127.0.0.1", port, "x"], timeout=10)
    assert rc == 1
    assert err == "uppercase: no reply from 127.0.0.1:%d within %s s\n" % (port, shown)
    assert seconds - 0.1 <= took < seconds + 1, took


def test_udp_piped_no_server_fails_at_first_line():
    port = unused_port()
    rc, out, err, took = run(["-u", "127.0.0.1", port], input=b"a\nb\n", timeout=10)
    assert (rc, out) == (1, b"")
    assert "refused (nothing listening)" in err
    assert took < 3


def test_tcp_no_server_refused():
    port = unused_port()
    rc, out, err, took = run(["127.0.0.1", port, "ciao"], timeout=10)
    assert (rc, out) == (1, b"")
    assert err == "uppercase: cannot connect to 127.0.0.1:%d: Connection refused\n" % port
    assert took < 3


def test_tcp_no_server_stream_and_terminal(terminal):
    port = unused_port()
    rc, out, err, _ = run(["127.0.0.1", port], input=b"x\n", timeout=10)
    assert (rc, err) == (1, "uppercase: cannot connect to 127.0.0.1:%d: Connection refused\n" % port)
    t = terminal(["127.0.0.1", port])
    assert t.wait() == 1
    assert b"uppercase: cannot connect to 127.0.0.1:%d: Connection refused" % port in t.rest()


def test_tcp_server_that_never_answers():
    """A listening socket nobody accept()s: the kernel completes the
    handshake, the reply never comes."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        port = s.getsockname()[1]
        rc, out, err, took = run(["-w", "1", "127.0.0.1", port, "ciao"], timeout=10)
    assert (rc, out) == (1, b"")
    assert err == "uppercase: no reply from 127.0.0.1:%d within 1 s\n" % port
    assert 0.9 <= took < 2 + 1, took


def test_unresolvable_host():
    rc, out, err, _ = run(["no-such-host.invalid", "ciao"], timeout=30)
    assert rc == 1
    assert err.startswith("uppercase: cannot resolve no-such-host.invalid: "), err
    assert err.count("\n") == 1


# ------------------------------------------------------------------ streams

def mixed_text(size, seed=4):
    """Italian, Greek and German text with multi-byte characters, newlines,
    a few "." that are not lines of their own, and invalid bytes."""
    rnd = random.Random(seed)
    words = ["perché", "così", "città", "è", "ΐ", "ελληνικά", "Ωμέγα", "straße", "Grüße",
             "ﬁne", "naïve", "ǰ", "日本語", "😀", "a.b", ".x", "ciao", "\n", "\r\n", "\t"]
    junk = [b"\xff", b"\xc3", b"\xe2\x82", b"\xf0\x9f\x98", b"\x80", b"\xc0\xaf"]
    out = bytearray()
    while len(out) < size:
        if rnd.random() < 0.02:
            out += rnd.choice(junk)
        else:
            out += rnd.choice(words).encode() + b" "
    return bytes(out[:size])


@pytest.fixture(scope="module")
def ten_mib(tmp_path_factory):
    path = tmp_path_factory.mktemp("stream") / "ten-mib.txt"
    data = mixed_text(10 << 20)
    path.write_bytes(data)
    return path, data


def test_stream_10mib_byte_exact(daemon, ten_mib):
    path, data = ten_mib
    with open(path, "rb") as f:
        rc, out, err, _ = run(["127.0.0.1", daemon.port], stdin=f, timeout=120)
    assert (rc, err) == (0, "")
    want = upper(data)
    assert len(out) == len(want)
    assert out == want


def test_stream_10mib_through_a_pipe(event_daemon, ten_mib):
    """The same, with stdin a pipe fed by another process."""
    path, data = ten_mib
    cat = subprocess.Popen(["cat", str(path)], stdout=subprocess.PIPE)
    try:
        rc, out, err, _ = run(["127.0.0.1", event_daemon.port], stdin=cat.stdout, timeout=120)
    finally:
        cat.stdout.close()
        cat.wait(10)
    assert (rc, err) == (0, "")
    assert out == upper(data)


def test_stream_is_byte_exact_without_final_newline(event_daemon):
    assert ok(["127.0.0.1", event_daemon.port], input=b"a\nb\nc") == b"A\nB\nC"
    assert ok(["127.0.0.1", event_daemon.port], input=b"") == b""


def test_stream_stops_at_dot_line(event_daemon):
    out = ok(["127.0.0.1", event_daemon.port], input=b"ciao\n.\nnot sent\n")
    assert out == b"CIAO\n"
    assert event_daemon.wait_log("closed (quit)") is not None


def test_stream_slow_producer_is_not_a_timeout(event_daemon):
    """Waiting for our own input is not waiting for the server: pauses in
    stdin longer than -w are fine."""
    cmd = [CLIENT, "-w", "300ms", "127.0.0.1", str(event_daemon.port)]
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=client_env())
    try:
        for line in (b"uno\n", b"due\n", b"tre"):
            p.stdin.write(line)
            p.stdin.flush()
            time.sleep(0.8)
        out, err = p.communicate(timeout=10)    # closes stdin: EOF
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(5)
    assert (p.returncode, err) == (0, b"")
    assert out == b"UNO\nDUE\nTRE"


def test_udp_piped_one_datagram_per_line(event_daemon):
    data = "ciao\n\nperché così\r\nstraße\nlast".encode()
    out = ok(["-u", "127.0.0.1", event_daemon.port], input=data)
    assert out == "CIAO\n\nPERCHÉ COSÌ\r\nSTRASSE\nLAST\n".encode()
    lines = [l for l in event_daemon.log_lines() if l.startswith("udp datagram from")]
    assert len(lines) == 5, event_daemon.log()
    # One socket, so one source port for every line.
    assert len({l.split()[5] for l in lines}) == 1, lines


def test_udp_piped_line_too_long(event_daemon):
    rc, out, err, _ = run(["-u", "127.0.0.1", event_daemon.port], input=b"ok\n" + b"x" * 70000)
    assert (rc, out) == (1, b"OK\n")
    assert err == ("uppercase: a line of standard input is too long for a UDP datagram "
                   "(at most 65507 bytes)\n")


# ------------------------------------------------------------------ terminal

def test_interactive_tcp_session(daemon, terminal):
    t = terminal(["127.0.0.1", daemon.port])
    assert t.read_until(b"> ") == b"> "
    t.type(b"ciao\n")
    assert t.read_until(b"> ") == b"ciao\r\nCIAO\r\n> "
    t.type("perché così\n".encode())
    assert t.read_until(b"> ") == "perché così\r\nPERCHÉ COSÌ\r\n> ".encode()
    t.type(b".x\n")
    assert t.read_until(b"> ") == b".x\r\n.X\r\n> "
    t.type(b".\n")
    assert t.wait() == 0
    assert t.rest() == b".\r\n"
    c = daemon.wait_log("closed (quit)")
    assert c is not None, daemon.log()
    assert ", 22 bytes out, " in c, c
    opens = [l for l in daemon.log_lines() if l.startswith("tcp connection from") and "closed" not in l]
    assert len(opens) == 1, daemon.log()     # one connection for the session


LEFT, UP = b"\x1b[D", b"\x1b[A"


def test_interactive_tcp_line_editing(event_daemon, terminal):
    """On a terminal the line can be edited (libedit): an arrow key moves
    the cursor instead of being sent; the up arrow recalls the last line."""
    d = event_daemon
    t = terminal(["127.0.0.1", d.port])
    assert t.read_until(b"> ") == b"> "
    t.type(b"cix" + LEFT + b"a\n")             # "cix", left, "a": "ciax"
    t.read_until(b"CIAX\r\n> ")
    t.type(UP + b"\n")                          # the last line again
    t.read_until(b"CIAX\r\n> ")
    t.type("perch" .encode() + "é".encode() + LEFT + b"x\n")
    t.read_until("PERCHXÉ\r\n> ".encode())
    t.type(b".\n")
    assert t.wait() == 0
    # What went out: the edited lines, no escape sequence.
    c = d.wait_log("closed (quit)")
    assert c is not None and ": 21 bytes in, 19 bytes out, " in c, d.log()


def test_interactive_udp_line_editing(event_daemon, terminal):
    t = terminal(["-u", "127.0.0.1", event_daemon.port])
    t.read_until(b"> ")
    t.type(b"uo" + LEFT + b"n\n")
    t.read_until(b"UNO\r\n> ")
    t.type(UP + b"\n")
    t.read_until(b"UNO\r\n> ")
    t.type(b".\n")
    assert t.wait() == 0
    lines = [l for l in event_daemon.log_lines() if l.startswith("udp datagram")]
    assert len(lines) == 2 and all(l.endswith(": 3 bytes in, 3 bytes out") for l in lines), lines


def test_piped_escape_sequences_pass_through(event_daemon):
    """Not a terminal: no editing, the bytes go as they are."""
    data = b"cix" + LEFT + b"a\n" + UP + b"\n"
    assert ok(["127.0.0.1", event_daemon.port], input=data) == data.upper()
    assert ok(["-u", "127.0.0.1", event_daemon.port], input=data) == data.upper()


def test_interactive_tcp_ctrl_d(event_daemon, terminal):
    t = terminal(["127.0.0.1", event_daemon.port])
    t.read_until(b"> ")
    t.type(b"uno\n")
    t.read_until(b"UNO\r\n> ")
    t.type(b"\x04")
    assert t.wait() == 0
    assert event_daemon.wait_log("closed (eof): 4 bytes in, 4 bytes out") is not None, \
        event_daemon.log()


def test_interactive_tcp_server_goes_away(daemon_factory, terminal):
    """The daemon closes an idle session: the client says so and exits 1,
    without waiting for the next line."""
    d = daemon_factory(model="event", idle="1s")
    t = terminal(["127.0.0.1", d.port])
    t.read_until(b"> ")
    t.type(b"ciao\n")
    t.read_until(b"CIAO\r\n> ")
    assert t.wait(timeout=5) == 1
    assert t.rest() == b"\r\nuppercase: 127.0.0.1:%d closed the connection\r\n" % d.port
    assert d.wait_log("closed (idle)") is not None


def test_interactive_udp_session(event_daemon, terminal):
    t = terminal(["-u", "127.0.0.1", event_daemon.port])
    t.read_until(b"> ")
    t.type(b"ciao\n")
    assert t.read_until(b"> ") == b"ciao\r\nCIAO\r\n> "
    t.type("straße\n".encode())
    assert t.read_until(b"> ") == "straße\r\nSTRASSE\r\n> ".encode()
    t.type(b".\n")
    assert t.wait() == 0
    lines = [l for l in event_daemon.log_lines() if l.startswith("udp datagram")]
    assert len(lines) == 2, event_daemon.log()      # "." is not sent


def test_interactive_udp_no_server(terminal):
    port = unused_port()
    t = terminal(["-u", "127.0.0.1", port])
    t.read_until(b"> ")
    t.type(b"ciao\n")
    assert t.wait() == 1
    assert b"uppercase: 127.0.0.1:%d refused (nothing listening)" % port in t.rest()


# ------------------------------------------------------------------ IPv6

@pytest.fixture
def dual_daemon(daemon_factory):
    """A daemon on 127.0.0.1 and ::1, same port, TCP and UDP."""
    if not has_ipv6_loopback():
        pytest.skip("no IPv6 loopback here")
    d = daemon_factory(model="event", start=False)
    for _ in range(20):
        port = free_port()
        try:
            with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as a, \
                    socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as b:
                a.bind(("::1", port))
                b.bind(("::1", port))
            break
        except OSError:
            continue
    d.port = port
    both = ["127.0.0.1:%d" % port, "[::1]:%d" % port]
    d.config.update(tcp=both, udp=both)
    d.start(retry_in_use=False)
    return d


@pytest.mark.parametrize("host", ["::1", "[::1]"])
def test_ipv6_loopback(dual_daemon, host):
    d = dual_daemon
    assert ok([host, d.port, "ciao"]) == b"CIAO\n"
    assert d.wait_log("tcp connection from ::1 port ") is not None, d.log()
    assert ok(["-u", host, d.port, "ciao"]) == b"CIAO\n"
    assert d.wait_log("udp datagram from ::1 port ") is not None, d.log()


def test_host_colon_port(dual_daemon):
    """HOST:PORT and [V6]:PORT in one argument, the way uppercased's own
    --tcp takes them (it said "cannot resolve localhost:40001" before)."""
    d = dual_daemon
    assert ok(["localhost:%d" % d.port, "ciao"]) == b"CIAO\n"
    assert ok(["127.0.0.1:%d" % d.port, "42"]) == b"42\n"
    assert ok(["-u", "[::1]:%d" % d.port, "ciao"]) == b"CIAO\n"
    rc, out, err, _ = run(["localhost:%d" % unused_port(), "ciao"])
    assert (rc, out) == (1, b"")
    assert err.startswith("uppercase: cannot connect to localhost:"), err


def test_force_family(dual_daemon):
    d = dual_daemon
    assert ok(["-6", "::1", d.port, "sei"]) == b"SEI\n"
    assert ok(["-4", "127.0.0.1", d.port, "quattro"]) == b"QUATTRO\n"
    for args in (["-4", "::1"], ["-6", "127.0.0.1"], ["-u", "-4", "::1"]):
        rc, out, err, _ = run(args + [d.port, "x"])
        assert (rc, out) == (1, b""), args
        assert err.startswith("uppercase: cannot resolve "), err


def test_force_family_on_localhost(dual_daemon):
    """-4 and -6 pick the address "localhost" resolves to (when it has an
    IPv6 address in this machine's /etc/hosts)."""
    d = dual_daemon
    assert ok(["-4", "localhost", d.port, "x"]) == b"X\n"
    assert d.wait_log("tcp connection from 127.0.0.1 port ") is not None
    try:
        socket.getaddrinfo("localhost", d.port, socket.AF_INET6)
    except socket.gaierror:
        pytest.skip("localhost has no IPv6 address in /etc/hosts here")
    d.mark()
    assert ok(["-6", "localhost", d.port, "x"]) == b"X\n"
    assert d.wait_log("tcp connection from ::1 port ") is not None


def test_each_address_in_turn(daemon_factory):
    """localhost as ::1 and 127.0.0.1, the daemon on 127.0.0.1 only: TCP
    goes on to the next address after a refusal, and so does UDP after an
    ICMP "port unreachable"."""
    infos = socket.getaddrinfo("localhost", 1, socket.AF_UNSPEC, socket.SOCK_STREAM)
    families = [i[0] for i in infos]
    if families[:1] != [socket.AF_INET6] or socket.AF_INET not in families:
        pytest.skip("localhost is not ::1 first, then 127.0.0.1, here")
    d = daemon_factory(model="event")
    assert ok(["localhost", d.port, "x"]) == b"X\n"
    assert ok(["-u", "localhost", d.port, "x"]) == b"X\n"


# ------------------------------------------------------------------ usage

USAGE_CASES = [
    (["-x"], "invalid option -- 'x'"),
    (["--bogus"], "unrecognized option '--bogus'"),
    (["-w"], "option '-w' requires an argument"),
    (["-w", "0"], "invalid timeout '0'"),
    (["-w", "soon", "localhost"], "invalid timeout 'soon'"),
    (["-4", "-6"], "-4 and -6 cannot be combined"),
    (["12000"], "HOST '12000' looks like a port"),
    (["localhost", "70000", "x"], "invalid PORT '70000'"),
    (["localhost", "0"], "invalid PORT '0'"),
    ([""], "invalid HOST ''"),
    (["localhost:0", "x"], "invalid PORT '0' in 'localhost:0'"),
    (["localhost:ciao"], "invalid PORT 'ciao' in 'localhost:ciao'"),
]


@pytest.mark.parametrize("args,message", USAGE_CASES, ids=[" ".join(c[0]) or "empty" for c in USAGE_CASES])
def test_usage_errors(args, message):
    rc, out, err, took = run(args, timeout=10)
    assert (rc, out) == (2, b"")
    lines = err.splitlines()
    assert lines[0].startswith("uppercase: ") and message in lines[0], err
    assert lines[1].startswith("Usage: uppercase [-u|--udp] [-w|--timeout SECONDS]"), err
    assert lines[-1] == "Try 'uppercase --help'.", err
    assert took < 5


def test_help_and_version():
    out = ok(["--help"]).decode()
    assert out.startswith("Usage: uppercase [-u|--udp] [-w|--timeout SECONDS] [-4|-6] [-n]\n")
    for word in ("--udp", "--timeout", "-4, -6", "-n", "--version", "Exit status"):
        assert word in out, word
    assert ok(["-h"]).decode() == out
    with open(os.path.join(REPO, "VERSION")) as f:
        version = f.read().strip()
    assert ok(["-V"]) == ("uppercase %s\n" % version).encode()


def test_sigpipe_on_stdout_is_quiet(event_daemon, ten_mib):
    """`uppercase < big | head -c 10`: the client stops when its reader
    goes, like cat(1), without hanging."""
    path, data = ten_mib
    with open(path, "rb") as f:
        p = subprocess.Popen([CLIENT, "127.0.0.1", str(event_daemon.port)], stdin=f,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=client_env())
        head = p.stdout.read(10)
        p.stdout.close()
        try:
            p.wait(30)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(5)
    assert head == upper(data)[:10]
    assert p.returncode in (-signal.SIGPIPE, 1), p.returncode
