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
  client.py proxied PORT CLIENT_ADDR CLIENT_PORT TEXT
                            one TCP exchange on a proxied socket, as a
                            balancer would: a PROXY v1 header naming the
                            client, then TEXT; prints the reply
  client.py proxied-plain PORT TEXT
                            TEXT without a header: prints "closed" when the
                            daemon closes the connection without a byte
  client.py line PORT       connects, prints the first line it reads (an
                            agent-check answer)
  client.py idle N SECONDS DIR
                            N TCP connections from 127.0.0.1 ... 127.0.0.16,
                            each sending one line; once each is answered or
                            closed (or nothing changed for 3 s, or 15 s
                            passed), holds them SECONDS; writes DIR/progress
                            each second, DIR/ready when the hold begins,
                            DIR/result at the end, and prints the counts
                            (see Idle)
"""
import errno
import os
import resource
import select
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


# The idle mode: many connections that send one line each and then wait.
IDLE_SOURCES = ["127.0.0.%d" % i for i in range(1, 17)]
# Connections opening or waiting for their reply at once: fewer than the
# listen backlog (128), so that a server slow to accept never makes the
# kernel drop a SYN, which the client would only send again a second later.
IDLE_WINDOW = 64
# The opening ends when no connection has been answered or closed for
# IDLE_STALL_SECONDS (a server that stopped accepting), or after
# IDLE_OPEN_SECONDS in any case: the hold then begins anyway.
IDLE_STALL_SECONDS = 3
IDLE_OPEN_SECONDS = 15
# Linux's IP_BIND_ADDRESS_NO_PORT (Python names it only from 3.12): the
# port is chosen at connect(), unique per address pair, so each source
# address has the whole ephemeral port range to itself.
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


def errno_name(e):
    return errno.errorcode.get(e, str(e))


def idle_prepare(n):
    """Room for N sockets (root may raise the hard limit too), and ports
    enough for each source address."""
    need = n + 64
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, max(hard, need)))
        except (ValueError, OSError) as e:
            sys.exit("idle: cannot raise RLIMIT_NOFILE from %d:%d to %d: %s" % (soft, hard, need, e))
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low, high = map(int, f.read().split())
    per_source = -(-n // len(IDLE_SOURCES))
    if high - low + 1 < per_source:
        sys.exit("idle: net.ipv4.ip_local_port_range %d-%d is too small for %d connections "
                 "from each of %d addresses" % (low, high, per_source, len(IDLE_SOURCES)))


class IdleConn:
    __slots__ = ("sock", "line", "reply", "state")

    def __init__(self, sock, line):
        self.sock, self.line, self.reply, self.state = sock, line, b"", "connecting"


class Idle:
    """N connections; each ends up as one of:
      held      answered, and still open at the end
      dropped   answered, then closed by the server
      refused   closed by the server before its reply (over a limit, the
                daemon accepts and closes at once)
      pending   still open, with no reply yet (connecting or waiting)
      errors    failed otherwise (connect error, wrong reply), by errno
      unopened  not tried: the opening stalled or took too long
    max_held is the most held at once; open_s how long the opening took."""

    def __init__(self, n, workdir):
        self.n, self.workdir = n, workdir
        self.epoll = select.epoll()
        self.conns = {}
        self.counts = dict.fromkeys(("held", "refused", "dropped", "pending", "errors"), 0)
        self.why = {}
        self.opened = self.max_held = 0
        self.start = self.changed = time.monotonic()
        self.open_s = None
        self.progress_at = 0

    def summary(self):
        c = self.counts
        open_s = time.monotonic() - self.start if self.open_s is None else self.open_s
        line = " ".join("%s=%d" % kv for kv in c.items())
        line += " unopened=%d max_held=%d open_s=%.1f" % (self.n - self.opened, self.max_held, open_s)
        if self.why:
            line += " (errors: %s)" % ", ".join("%d %s" % (n, w) for w, n in sorted(self.why.items()))
        return line

    def write(self, name, text):
        """Whole files only: a reader never sees half a line."""
        path = os.path.join(self.workdir, name)
        with open(path + ".tmp", "w") as f:
            f.write(text + "\n")
        os.rename(path + ".tmp", path)

    def progress(self, phase):
        now = time.monotonic()
        if now - self.progress_at >= 1:
            self.progress_at = now
            self.write("progress", "phase=%s %s" % (phase, self.summary()))

    def open_one(self):
        i = self.opened
        self.opened += 1
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            s.bind((IDLE_SOURCES[i % len(IDLE_SOURCES)], 0))
            err = s.connect_ex(ADDR)
        except OSError as e:
            err = e.errno
        if err not in (0, errno.EINPROGRESS):
            s.close()
            self.count("errors", errno_name(err))
            return
        self.conns[s.fileno()] = IdleConn(s, b"idle %d\n" % i)
        self.counts["pending"] += 1
        self.epoll.register(s.fileno(), select.EPOLLOUT)

    def count(self, outcome, why=None):
        self.changed = time.monotonic()
        self.counts[outcome] += 1
        if why:
            self.why[why] = self.why.get(why, 0) + 1

    def end(self, c, outcome, why=None):
        """C is closed, as OUTCOME."""
        self.counts["held" if c.state == "held" else "pending"] -= 1
        self.count(outcome, why)
        del self.conns[c.sock.fileno()]
        self.epoll.unregister(c.sock)
        c.sock.close()

    def on_connected(self, c):
        err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            return self.end(c, "errors", errno_name(err))
        try:
            if c.sock.send(c.line) != len(c.line):
                return self.end(c, "errors", "short send")
        except (BrokenPipeError, ConnectionResetError):
            return self.end(c, "refused")
        c.state = "waiting"
        self.epoll.modify(c.sock, select.EPOLLIN)

    def on_readable(self, c):
        try:
            data = c.sock.recv(4096)
        except ConnectionResetError:
            data = b""
        except OSError as e:
            return self.end(c, "errors", errno_name(e.errno))
        if c.state == "held":
            # The server owes nothing more: data is an error, EOF a drop.
            return self.end(c, "errors", "unexpected data") if data else self.end(c, "dropped")
        if not data:
            return self.end(c, "refused")
        c.reply += data
        if len(c.reply) < len(c.line):
            return
        if c.reply != c.line.upper():
            return self.end(c, "errors", "wrong reply")
        c.state = "held"
        self.changed = time.monotonic()
        self.counts["pending"] -= 1
        self.counts["held"] += 1
        self.max_held = max(self.max_held, self.counts["held"])

    def poll(self, timeout):
        for fd, _ in self.epoll.poll(timeout):
            c = self.conns[fd]
            if c.state == "connecting":
                self.on_connected(c)
            else:
                self.on_readable(c)

    def opening(self):
        now = time.monotonic()
        return ((self.opened < self.n or self.counts["pending"])
                and now < self.start + IDLE_OPEN_SECONDS and now < self.changed + IDLE_STALL_SECONDS)

    def open_all(self):
        while self.opening():
            while self.counts["pending"] < IDLE_WINDOW and self.opened < self.n:
                self.open_one()
            self.poll(0.2)
            self.progress("open")
        self.open_s = time.monotonic() - self.start

    def hold(self, seconds):
        """Waits, still counting what the server closes and late replies."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.poll(max(0.0, min(1.0, end - time.monotonic())))
            self.progress("hold")

    def close_all(self):
        for c in self.conns.values():
            c.sock.close()
        self.conns.clear()
        self.epoll.close()


def idle(n, seconds, workdir):
    idle_prepare(n)
    run = Idle(n, workdir)
    run.open_all()
    run.write("ready", run.summary())
    run.hold(seconds)
    result = run.summary()
    run.close_all()
    run.write("result", result)
    print(result)


def proxied(port, client_addr, client_port, text):
    header = "PROXY TCP4 %s %s %d %d\r\n" % (client_addr, ADDR[0], client_port, port)
    print(tcp_once(header + text, port)[1], end="")


def proxied_plain(port, text):
    s = socket.create_connection((ADDR[0], port), timeout=10)
    reply = b""
    # Refused at its first bytes, the connection may be reset before the
    # half-close or the read: any failure after the connect is "closed".
    try:
        s.sendall(text.encode())
        s.shutdown(socket.SHUT_WR)
        while True:
            data = s.recv(4096)
            if not data:
                break
            reply += data
    except OSError:
        pass
    finally:
        s.close()
    print("closed" if reply == b"" else "answered %r" % reply)


def first_line(port):
    with socket.create_connection((ADDR[0], port), timeout=10) as s:
        print(s.makefile("rb").readline().decode(), end="")


def main():
    if sys.argv[1] == "proxied":
        proxied(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5])
    elif sys.argv[1] == "proxied-plain":
        proxied_plain(int(sys.argv[2]), sys.argv[3])
    elif sys.argv[1] == "line":
        first_line(int(sys.argv[2]))
    elif sys.argv[1] == "tcp-port":
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
    elif sys.argv[1] == "idle":
        idle(int(sys.argv[2]), float(sys.argv[3]), sys.argv[4])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
