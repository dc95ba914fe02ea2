#!/usr/bin/python3
"""Clients for the system test, run inside the container.

  client.py tcp-port TEXT   one TCP exchange; prints the client's own port
  client.py loop SECONDS    one-shot TCP and UDP requests in a loop; prints
                            how many were answered right and how many lost
  client.py session N DIR   N persistent TCP sessions, each left in the middle
                            of a line and of a character; writes DIR/ready,
                            waits for DIR/go, then finishes each line and
                            prints how many sessions got the right answer on
                            the same connection ("kept"), were closed after
                            their replies ("closed") or failed ("lost")
"""
import os
import socket
import sys
import time

ADDR = ("127.0.0.1", 12000)


def tcp_once(text, timeout=10.0):
    s = socket.create_connection(ADDR, timeout=timeout)
    try:
        port = s.getsockname()[1]
        s.sendall(text.encode())
        s.shutdown(socket.SHUT_WR)
        reply = b""
        while True:
            data = s.recv(4096)
            if not data:
                return port, reply.decode()
            reply += data
    finally:
        s.close()


def udp_once(sock, text):
    sock.sendto(text.encode(), ADDR)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data, _ = sock.recvfrom(65535)
        except socket.timeout:
            return False
        if data.decode() == text.upper():
            return True
    return False


def loop(seconds):
    counts = {"tcp_ok": 0, "tcp_lost": 0, "udp_ok": 0, "udp_lost": 0}
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        i += 1
        text = "richiesta %d" % i
        try:
            ok = tcp_once(text)[1] == text.upper()
        except OSError:
            ok = False
        counts["tcp_ok" if ok else "tcp_lost"] += 1
        counts["udp_ok" if udp_once(u, text) else "udp_lost"] += 1
        time.sleep(0.01)
    print(" ".join("%s=%d" % kv for kv in counts.items()) + " ")


def recv_exactly(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def session_open(i):
    s = socket.create_connection(ADDR, timeout=10)
    s.sendall(b"prima %d\n" % i)
    first = b"PRIMA %d\n" % i
    ok = recv_exactly(s, len(first)) == first
    # The first byte of "e-acute": the daemon holds it back for the next one.
    s.sendall(b"perch\xc3")
    return s, ok and recv_exactly(s, 5) == b"PERCH"


def session_finish(s, i):
    """After the restart: "kept", "closed" (EOF, nothing lost) or "lost"."""
    try:
        s.sendall(b"\xa9 %d\n" % i)
        want = "É %d\n" % i
        got = recv_exactly(s, len(want.encode()))
        if got == want.encode():
            s.sendall(b".\n")
            return "kept" if s.recv(1) == b"" else "lost"
        return "closed" if got == b"" else "lost"
    except OSError:
        return "lost"


def session(n, workdir):
    opened = [session_open(i) for i in range(n)]
    with open(os.path.join(workdir, "ready"), "w") as f:
        f.write("%d\n" % sum(ok for _, ok in opened))
    deadline = time.monotonic() + 60
    while not os.path.exists(os.path.join(workdir, "go")) and time.monotonic() < deadline:
        time.sleep(0.05)
    counts = {"kept": 0, "closed": 0, "lost": 0}
    for i, (s, ok) in enumerate(opened):
        counts[session_finish(s, i) if ok else "lost"] += 1
        s.close()
    print(" ".join("%s=%d" % kv for kv in counts.items()) + " ")


def main():
    if sys.argv[1] == "tcp-port":
        port, reply = tcp_once(sys.argv[2])
        if reply != sys.argv[2].upper():
            sys.exit("wrong reply %r" % reply)
        print(port)
    elif sys.argv[1] == "loop":
        loop(float(sys.argv[2]))
    elif sys.argv[1] == "session":
        session(int(sys.argv[2]), sys.argv[3])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
