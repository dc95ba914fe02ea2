#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""A minimal systemd-style socket activation launcher, for the tests.

  activate.py --port P --control PATH [--names tcp:udp:control]
              [--proxy-port P2] [--stored FD:NAME ...] -- DAEMON ARGS...

Creates a TCP listening socket and a UDP socket on 127.0.0.1:P and a UNIX
stream listening socket at PATH, puts them on fds 3, 4, 5, sets LISTEN_FDS=3,
LISTEN_FDNAMES and LISTEN_PID (its own pid), and execs the daemon, which
keeps the pid.  --proxy-port adds a TCP listening socket on 127.0.0.1:P2
as fd 6 (name it "proxy" in --names).  --stored passes descriptors it
inherited as well, after those, the way systemd passes its file
descriptor store.
"""

import argparse
import fcntl
import os
import socket
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--control", required=True)
    ap.add_argument("--names", default="tcp:udp:control")
    ap.add_argument("--backlog", type=int, default=128)
    ap.add_argument("--proxy-port", type=int)
    ap.add_argument("--stored", action="append", default=[], metavar="FD:NAME")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    if not cmd:
        ap.error("no command")

    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind(("127.0.0.1", a.port))
    tcp.listen(a.backlog)

    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", a.port))

    if os.path.exists(a.control):
        os.unlink(a.control)
    ctl = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ctl.bind(a.control)
    ctl.listen(16)
    sockets = [tcp, udp, ctl]

    if a.proxy_port:
        proxied = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        proxied.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        proxied.bind(("127.0.0.1", a.proxy_port))
        proxied.listen(a.backlog)
        sockets.append(proxied)

    # Move them out of the way first, so that dup2 onto 3..5 cannot clobber
    # one of them, then onto 3, 4, 5 (inheritable, not close-on-exec).
    stored = [item.split(":", 1) for item in a.stored]
    high = [fcntl.fcntl(s.fileno(), fcntl.F_DUPFD_CLOEXEC, 1024) for s in sockets]
    for s in sockets:
        s.close()
    for fd, _ in stored:
        high.append(fcntl.fcntl(int(fd), fcntl.F_DUPFD_CLOEXEC, 1024))
        os.close(int(fd))
    for i, fd in enumerate(high):
        os.dup2(fd, 3 + i, inheritable=True)
        os.close(fd)

    env = dict(os.environ)
    env["LISTEN_FDS"] = str(len(high))
    if a.names:
        env["LISTEN_FDNAMES"] = ":".join([a.names] + [name for _, name in stored])
    else:
        env.pop("LISTEN_FDNAMES", None)
    env["LISTEN_PID"] = str(os.getpid())
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(cmd[0], cmd, env)


if __name__ == "__main__":
    main()
