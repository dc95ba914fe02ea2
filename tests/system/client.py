#!/usr/bin/python3
"""Clients for the system test, run inside the container.

  client.py tcp-port TEXT   one TCP exchange; prints the client's own port
  client.py loop SECONDS [STOP]
                            one-shot TCP and UDP requests, in two loops side
                            by side, for SECONDS or until the file STOP
                            exists; prints how many were answered right and
                            how many lost, and for those lost why and when
                            they were sent (seconds since the start)
  client.py connect-loop PORT SECONDS [STOP]
                            the same with one-shot TCP requests to PORT only,
                            10 a second (for the inetd socket: a process each)
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
import threading
import time

ADDR = ("127.0.0.1", 12000)


def tcp_once(text, port=ADDR[1], timeout=10.0):
    s = socket.create_connection((ADDR[0], port), timeout=timeout)
    try:
        own_port = s.getsockname()[1]
        s.sendall(text.encode())
        s.shutdown(socket.SHUT_WR)
        reply = b""
        while True:
            data = s.recv(4096)
            if not data:
                return own_port, reply.decode()
            reply += data
    finally:
        s.close()


def udp_once(sock, text):
    """None when answered right, else why not."""
    sock.sendto(text.encode(), ADDR)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data, _ = sock.recvfrom(65535)
        except socket.timeout:
            break
        except OSError as e:
            return type(e).__name__
        if data.decode() == text.upper():
            return None
    return "no reply in 5 s"


def tcp_check(text, port=ADDR[1]):
    """None when answered right, else why not."""
    try:
        reply = tcp_once(text, port)[1]
    except OSError as e:
        return type(e).__name__
    return None if reply == text.upper() else "wrong reply %r" % reply[:40]


class Tally:
    """Requests answered right and lost; for those lost, why and when they
    were sent."""

    def __init__(self, name, start):
        self.name, self.start = name, start
        self.ok, self.why, self.first, self.last = 0, {}, None, None

    def add(self, sent, failure):
        if failure is None:
            self.ok += 1
            return
        self.why[failure] = self.why.get(failure, 0) + 1
        sent -= self.start
        self.first = sent if self.first is None else self.first
        self.last = sent

    def lost(self):
        return sum(self.why.values())

    def counts(self):
        return "%s_ok=%d %s_lost=%d " % (self.name, self.ok, self.name, self.lost())

    def failures(self):
        if not self.why:
            return ""
        why = ", ".join("%d %s" % (n, w) for w, n in sorted(self.why.items()))
        return "%s: %s, from %.2f s to %.2f s" % (self.name, why, self.first, self.last)


def run_loop(seconds, stop, request, pause):
    """Calls request(i) until SECONDS pass or the file STOP appears."""
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end and not (stop and os.path.exists(stop)):
        i += 1
        request(i)
        time.sleep(pause)


def print_tallies(tallies):
    """The counts, then the failures in parentheses."""
    failures = "; ".join(t.failures() for t in tallies if t.lost())
    print("".join(t.counts() for t in tallies) + ("(%s)" % failures if failures else ""))


def loop(seconds, stop=None):
    """TCP and UDP each in a thread of its own: a lost datagram, waited for
    5 s, does not hold up the TCP requests.  UDP at 50/s at most, half the
    per-source rate limit."""
    start = time.monotonic()
    tcp, udp = Tally("tcp", start), Tally("udp", start)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def tcp_request(i):
        tcp.add(time.monotonic(), tcp_check("richiesta %d" % i))

    def udp_request(i):
        udp.add(time.monotonic(), udp_once(u, "datagramma %d" % i))

    threads = [threading.Thread(target=run_loop, args=(seconds, stop, tcp_request, 0.01)),
               threading.Thread(target=run_loop, args=(seconds, stop, udp_request, 0.02))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print_tallies([tcp, udp])


def connect_loop(port, seconds, stop=None):
    tcp = Tally("tcp", time.monotonic())

    def request(i):
        tcp.add(time.monotonic(), tcp_check("richiesta %d" % i, port))

    run_loop(seconds, stop, request, 0.1)
    print_tallies([tcp])


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
        loop(float(sys.argv[2]), *sys.argv[3:4])
    elif sys.argv[1] == "connect-loop":
        connect_loop(int(sys.argv[2]), float(sys.argv[3]), *sys.argv[4:5])
    elif sys.argv[1] == "session":
        session(int(sys.argv[2]), sys.argv[3])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
