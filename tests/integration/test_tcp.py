# SPDX-License-Identifier: MIT
"""TCP behaviour of the real daemon, in every worker model (the `daemon`
fixture is parametrised over event, thread, process and event -t 2)."""

import re
import socket
import threading
import time

import pytest

from conftest import expect_open, recv_exact, recv_until_eof, upper


# ---------------------------------------------------------------- seed clients

def test_seed_oneshot_client(daemon):
    """The lab's one-shot TCP client: "ciao" without a newline, one recv."""
    clientSocket = daemon.tcp_connect()
    port = clientSocket.getsockname()[1]
    sentence = "ciao"
    clientSocket.send(sentence.encode("utf-8"))
    modifiedSentence = clientSocket.recv(1024)
    assert modifiedSentence == b"CIAO"
    # The server does not wait for a newline, and does not close after the
    # reply: it is the client that closes.
    expect_open(clientSocket, 0.5)
    assert daemon.wait_log("tcp connection from 127.0.0.1 port %d" % port) is not None
    clientSocket.close()
    c = daemon.wait_close(port)
    assert c is not None, daemon.log()
    assert (c["reason"], c["bytes_in"], c["bytes_out"]) == ("eof", 4, 4), c["line"]


def test_log_lines_exact(daemon):
    """The stderr texts of a TCP open and close, exactly."""
    s = daemon.tcp_connect()
    port = s.getsockname()[1]
    s.sendall(b"hello world\n")
    assert recv_exact(s, 12) == b"HELLO WORLD\n"
    s.sendall(b".\n")
    assert recv_until_eof(s) == (b"", "eof")
    s.close()
    c = daemon.wait_close(port)
    assert c is not None, daemon.log()
    assert c["reason"] == "quit"
    assert c["bytes_out"] == 12
    assert c["bytes_in"] in (12, 14), c["line"]   # with or without the "." line
    assert 0 <= c["seconds"] < 10
    assert re.search(r", \d+\.\d{3} s$", c["line"]), c["line"]
    opens = [l for l in daemon.log_lines() if l == "tcp connection from 127.0.0.1 port %d" % port]
    assert len(opens) == 1, daemon.log()
    closes = [l for l in daemon.log_lines() if ("port %d closed" % port) in l]
    assert len(closes) == 1, daemon.log()


# ------------------------------------------------------------ persistent session

def test_persistent_session(daemon):
    s = daemon.tcp_connect()
    port = s.getsockname()[1]
    msgs = [b"ciao\n", b"buongiorno a tutti\n", b"x\n", b"\n", b"Mixed Case 123!?\n",
            b"a" * 3000 + b"\n"]
    out = 0
    for m in msgs:
        s.sendall(m)
        got = recv_exact(s, len(m))
        assert got == m.upper(), (m, got)
        out += len(m)
    s.sendall(b".\n")
    data, how = recv_until_eof(s)
    assert (data, how) == (b"", "eof")
    s.close()
    c = daemon.wait_close(port)
    assert c is not None, daemon.log()
    assert c["reason"] == "quit", c["line"]
    assert c["bytes_out"] == out, c["line"]


def test_dot_crlf_quits(daemon):
    s = daemon.tcp_connect()
    port = s.getsockname()[1]
    s.sendall(b"uno\r\n")
    assert recv_exact(s, 5) == b"UNO\r\n"
    s.sendall(b".\r\n")
    assert recv_until_eof(s) == (b"", "eof")
    s.close()
    c = daemon.wait_close(port)
    assert c is not None and c["reason"] == "quit", daemon.log()


def test_dot_first_line_quits(daemon):
    s = daemon.tcp_connect()
    port = s.getsockname()[1]
    s.sendall(b".\n")
    assert recv_until_eof(s) == (b"", "eof")
    s.close()
    c = daemon.wait_close(port)
    assert c is not None and c["reason"] == "quit", daemon.log()
    assert c["bytes_out"] == 0


@pytest.mark.parametrize("line", [b". \n", b"a.\n", b".x\n", b"..\n", b" .\n",
                                  b".\r.\n", b"a\n.b\n", b"...\r\n"])
def test_dot_variants_are_text(daemon, line):
    s = daemon.tcp_connect()
    s.sendall(line)
    assert recv_exact(s, len(line)) == line.upper()
    # Still open and serving.
    s.sendall(b"ok\n")
    assert recv_exact(s, 3) == b"OK\n"
    s.close()


def test_dot_inside_stream_pieces(daemon):
    """A "." line split over sends: "\\n" then "." then "\\n"."""
    s = daemon.tcp_connect(nodelay=True)
    s.sendall(b"abc\n")
    assert recv_exact(s, 4) == b"ABC\n"
    s.sendall(b".")
    time.sleep(0.05)
    expect_open(s, 0.2)            # the "." alone is held back, not answered
    s.sendall(b"y\n")              # ".y\n": ordinary text after all
    assert recv_exact(s, 3) == b".Y\n"
    s.sendall(b".")
    time.sleep(0.05)
    s.sendall(b"\n")
    assert recv_until_eof(s) == (b"", "eof")
    s.close()


def test_bytes_after_dot_not_answered(daemon):
    s = daemon.tcp_connect()
    port = s.getsockname()[1]
    s.sendall(b"prima\nseconda\n.\ndopo\nancora\n")
    data, how = recv_until_eof(s)
    assert data == b"PRIMA\nSECONDA\n"
    assert how == "eof"
    s.close()
    c = daemon.wait_close(port)
    assert c is not None and c["reason"] == "quit", daemon.log()
    assert c["bytes_out"] == 14


def test_bytes_after_dot_in_later_send_not_answered(daemon):
    s = daemon.tcp_connect()
    s.sendall(b"uno\n.\n")
    try:
        s.sendall(b"due\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    data, how = recv_until_eof(s)
    assert data == b"UNO\n"
    assert how in ("eof", "reset")
    s.close()


def test_dot_at_eof_quits(daemon):
    """A "." line ended by the client's EOF."""
    s = daemon.tcp_connect()
    s.sendall(b"fine\n.")
    s.shutdown(socket.SHUT_WR)
    assert recv_until_eof(s) == (b"FINE\n", "eof")
    s.close()


# ----------------------------------------------------------------- half-close

def test_half_close(daemon):
    s = daemon.tcp_connect()
    port = s.getsockname()[1]
    payload = b"hello\nworld\nsenza a capo"
    s.sendall(payload)
    s.shutdown(socket.SHUT_WR)
    data, how = recv_until_eof(s)
    assert (data, how) == (upper(payload), "eof")
    s.close()
    c = daemon.wait_close(port)
    assert c is not None, daemon.log()
    assert (c["reason"], c["bytes_in"], c["bytes_out"]) == ("eof", len(payload), len(payload)), c["line"]


def test_half_close_large(daemon):
    """Half-close after more data than the socket buffers hold: everything
    owed is still delivered."""
    payload = (b"the quick brown fox jumps over the lazy dog \xc3\xa8\n" * 20000)  # ~1 MB
    s = daemon.tcp_connect()
    err = []

    def writer():
        try:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
        except OSError as e:
            err.append(e)

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    data, how = recv_until_eof(s, timeout=20)
    t.join(5)
    assert not err
    assert how == "eof"
    assert len(data) == len(payload)
    assert data == upper(payload)
    s.close()


# ---------------------------------------------------------------- tiny sends

@pytest.mark.parametrize("pause", [0.0, 0.001], ids=["nopause", "pause1ms"])
def test_hundred_one_byte_sends(daemon, pause):
    text = (b"abcdefghijklmnopqrstuvwxyz0123456789" * 3)[:100]
    s = daemon.tcp_connect(nodelay=True)
    for i in range(100):
        s.send(text[i:i + 1])
        if pause:
            time.sleep(pause)
    got = recv_exact(s, 100)
    assert got == text.upper()
    expect_open(s, 0.3)         # exactly 100 bytes, nothing more
    s.close()


# ----------------------------------------------------------- several clients

def test_three_concurrent_clients(daemon):
    clients = [daemon.tcp_connect() for _ in range(3)]
    for rnd in range(4):
        msgs = [("client %d round %d ciao\n" % (i, rnd)).encode() for i in range(3)]
        for c, m in zip(clients, msgs):
            c.sendall(m)
        for c, m in zip(reversed(clients), reversed(msgs)):
            assert recv_exact(c, len(m)) == m.upper()
    # Interleaved partial lines too.
    clients[0].sendall(b"al")
    clients[1].sendall(b"be")
    clients[2].sendall(b"ga")
    clients[1].sendall(b"ta\n")
    clients[0].sendall(b"fa\n")
    clients[2].sendall(b"mma\n")
    assert recv_exact(clients[2], 6) == b"GAMMA\n"
    assert recv_exact(clients[0], 5) == b"ALFA\n"
    assert recv_exact(clients[1], 5) == b"BETA\n"
    # One quits; the others are unaffected.
    clients[1].sendall(b".\n")
    assert recv_until_eof(clients[1]) == (b"", "eof")
    for c in (clients[0], clients[2]):
        c.sendall(b"ancora\n")
        assert recv_exact(c, 7) == b"ANCORA\n"
    for c in clients:
        c.close()


def test_many_sequential_connections(daemon):
    for i in range(30):
        s = daemon.tcp_connect()
        m = b"conn %d\n" % i
        s.sendall(m)
        assert recv_exact(s, len(m)) == m.upper()
        s.close()


# ------------------------------------------------------------------- Unicode

def send_bytewise(s, data, pause=0.002):
    for i in range(len(data)):
        s.send(data[i:i + 1])
        if pause:
            time.sleep(pause)


@pytest.mark.parametrize("text", ["perché ß ΐ\n", "ﬁne ǰ ŉ straße\n", "日本語 ok ÿ ǅ\n",
                                  "emoji 😀 ǆ 𐐨\n"])
def test_multibyte_split_at_every_byte(daemon, text):
    data = text.encode("utf-8")
    expected = text.upper().encode("utf-8")
    s = daemon.tcp_connect(nodelay=True)
    send_bytewise(s, data)
    got = recv_exact(s, len(expected))
    assert got == expected
    expect_open(s, 0.2)
    s.close()


def test_multibyte_in_one_send(daemon):
    text = "Perché la ß è speciale: ΐ ﬁ ǰ — fine\n"
    s = daemon.tcp_connect()
    s.sendall(text.encode())
    expected = text.upper().encode()
    assert recv_exact(s, len(expected)) == expected
    s.close()


def test_multibyte_split_then_pause(daemon):
    """A character split across two sends with a long pause in between."""
    s = daemon.tcp_connect(nodelay=True)
    s.sendall(b"caf\xc3")
    time.sleep(0.2)
    first = recv_exact(s, 3, timeout=2)
    assert first == b"CAF"
    s.sendall(b"\xa9\n")
    assert recv_exact(s, 3) == "É\n".encode()
    s.close()


@pytest.mark.parametrize("payload", [
    b"\xff\xfeabc\xc0",
    b"caf\xc3\xa9 \xe2\x82 ok\n",
    b"\x80\x80 x \xed\xa0\x80 y \xf4\x90\x80\x80 z\n",
    b"\xc3(\xe2\x28\xa1 fine",
    b"ok \xf0\x9f\x98",
], ids=["ff-fe-abc-c0", "truncated-3byte", "cont-surrogate-toolarge", "bad-continuation", "truncated-at-eof"])
def test_invalid_utf8_passes_through(daemon, payload):
    s = daemon.tcp_connect()
    s.sendall(payload)
    s.shutdown(socket.SHUT_WR)
    data, how = recv_until_eof(s)
    assert how == "eof"
    assert data == upper(payload)
    s.close()


def test_invalid_utf8_exact_ff_fe(daemon):
    """The brief's example spelled out, bytewise too."""
    s = daemon.tcp_connect(nodelay=True)
    send_bytewise(s, b"\xff\xfeabc\xc0")
    s.shutdown(socket.SHUT_WR)
    assert recv_until_eof(s) == (b"\xff\xfeABC\xc0", "eof")
    s.close()


def test_invalid_utf8_then_more_text(daemon):
    """Invalid bytes do not disturb the session."""
    s = daemon.tcp_connect()
    s.sendall(b"\xff\xfeabc\xc0\n")
    assert recv_exact(s, 7) == b"\xff\xfeABC\xc0\n"
    s.sendall("più\n".encode())
    assert recv_exact(s, 5) == "PIÙ\n".encode()
    s.close()


def test_nul_and_control_bytes(daemon):
    payload = bytes(range(0, 128)) + b"\n"
    s = daemon.tcp_connect()
    s.sendall(payload)
    assert recv_exact(s, len(payload)) == payload.upper()
    s.close()
