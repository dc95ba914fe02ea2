# SPDX-License-Identifier: MIT
"""UDP behaviour of the real daemon, in every worker model."""

import socket
import time

import pytest

from conftest import SOCK_TIMEOUT, free_port, recv_exact, upper
from test_control import stats

UDP_MAX = 65507


def test_udp_ciao(daemon):
    assert daemon.udp_exchange(b"ciao") == b"CIAO"


def test_udp_empty_datagram(daemon):
    assert daemon.udp_exchange(b"") == b""


def test_seed_udp_client(daemon):
    """The lab's UDP client, as the students wrote it (with a timeout)."""
    from socket import AF_INET, SOCK_DGRAM
    serverName = "localhost"
    serverPort = daemon.port
    clientSocket = socket.socket(AF_INET, SOCK_DGRAM)
    clientSocket.settimeout(SOCK_TIMEOUT)
    try:
        message = "Inserisci lettere: perché no?"
        clientSocket.sendto(message.encode("utf-8"), (serverName, serverPort))
        modifiedMessage, serverAddress = clientSocket.recvfrom(2048)
        modifiedMessage = modifiedMessage.decode("utf-8")
        assert modifiedMessage == "INSERISCI LETTERE: PERCHÉ NO?"
        assert serverAddress == ("127.0.0.1", serverPort)
    finally:
        clientSocket.close()


@pytest.mark.parametrize("text", ["perché ß ΐ", "ﬁne straße ǰ", "日本語 😀 𐐨 ǅ", "\n.\n", "."])
def test_udp_unicode(daemon, text):
    """Full case mapping; and "." means nothing special on UDP."""
    assert daemon.udp_exchange(text.encode()) == text.upper().encode()


@pytest.mark.parametrize("payload", [b"\xff\xfeabc\xc0", b"ok \xf0\x9f\x98", b"\xe2\x82 x\x80"])
def test_udp_invalid_utf8(daemon, payload):
    assert daemon.udp_exchange(payload) == upper(payload)


def test_udp_oversized_reply_cut_at_char_boundary(daemon):
    text = "ΐ" * 30000
    data = text.encode()
    assert len(data) == 60000
    full = text.upper().encode()
    assert len(full) == 180000
    reply = daemon.udp_exchange(data, bufsize=200000)
    assert len(reply) <= UDP_MAX
    assert len(reply) >= UDP_MAX - 3, len(reply)      # cut as late as possible
    assert full.startswith(reply)
    reply.decode("utf-8")                             # not inside a character
    # And the daemon is still serving.
    assert daemon.udp_exchange(b"dopo") == b"DOPO"


def test_udp_large_fits(daemon):
    """A large datagram whose reply still fits is answered whole."""
    data = b"abcdefgh" * 8000       # 64000 bytes
    assert daemon.udp_exchange(data, bufsize=70000) == data.upper()


def test_udp_log_line_per_datagram(daemon):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(SOCK_TIMEOUT)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        for i, msg in enumerate([b"ciao", "però".encode(), b""]):
            s.sendto(msg, ("127.0.0.1", daemon.port))
            reply, _ = s.recvfrom(2048)
            assert reply == upper(msg)
    want = [
        "udp datagram from 127.0.0.1 port %d: 4 bytes in, 4 bytes out" % port,
        "udp datagram from 127.0.0.1 port %d: 5 bytes in, 5 bytes out" % port,
        "udp datagram from 127.0.0.1 port %d: 0 bytes in, 0 bytes out" % port,
    ]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [l for l in daemon.log_lines() if ("port %d:" % port) in l]
        if len(lines) >= 3:
            break
        time.sleep(0.05)
    assert lines == want, daemon.log()


def test_udp_many_datagrams_and_clients(daemon):
    socks = []
    try:
        for _ in range(3):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(SOCK_TIMEOUT)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        for i in range(40):
            for j, s in enumerate(socks):
                s.sendto(b"client %d msg %d" % (j, i), ("127.0.0.1", daemon.port))
            for j, s in enumerate(socks):
                reply, _ = s.recvfrom(2048)
                assert reply == b"CLIENT %d MSG %d" % (j, i)
    finally:
        for s in socks:
            s.close()


def test_udp_and_tcp_same_port(daemon):
    s = daemon.tcp_connect()
    s.sendall(b"tcp\n")
    assert recv_exact(s, 4) == b"TCP\n"
    assert daemon.udp_exchange(b"udp") == b"UDP"
    s.sendall(b"ancora\n")
    assert recv_exact(s, 7) == b"ANCORA\n"
    s.close()


def test_udp_unreachable_peer_not_fatal(daemon):
    """A client that vanishes before the reply (the lab's exercise 1b): the
    send error is not fatal."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    for _ in range(20):
        s.sendto(b"x" * 1000, ("127.0.0.1", daemon.port))
    s.close()
    time.sleep(0.2)
    assert daemon.running()
    assert daemon.udp_exchange(b"vivo") == b"VIVO"


def test_udp_bursts_answered_datagram_by_datagram(daemon_factory, model):
    """A client that sends a burst before reading (the replies of a run to
    one peer leave as one GSO send): one reply per datagram, each its own
    datagram, for IPv4 and IPv6 clients of a dual-stack socket; sizes end
    runs, and 1500 bytes is past a GSO segment."""
    m, args = model
    port = free_port()
    d = daemon_factory(model=m, args=args, start=False, udp=["[::]:%d" % port])
    d.port = port
    d.start(retry_in_use=False)
    sizes = [16] * 40 + [9, 16, 16, 0, 16, 1500, 1500, 1500, 7]
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.settimeout(SOCK_TIMEOUT)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            s.connect((host, d.port))
            sent = [(b"burst %d " % i + b"x" * n)[:n] for i, n in enumerate(sizes)]
            for data in sent:
                s.send(data)
            got = [s.recv(65536) for _ in sent]
            # In order from one reader; with -t2, two loops read the socket.
            assert sorted(got) == sorted(data.upper() for data in sent), family
    udp = stats(d)["udp"]
    assert udp["datagrams"] == 2 * len(sizes)
    assert udp["bytes_out"] == 2 * sum(sizes)
    assert udp["send_errors"] == 0
