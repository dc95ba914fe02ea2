#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""A stand-in journald, for the tests: runs a command so that it logs to a
"journal" the test can read, without systemd.

  unshare -m --propagation private journal_ns.py OUT -- COMMAND ARGS...

In its private mount namespace it mounts a tmpfs on /run, binds a datagram
socket at /run/systemd/journal/socket (where sd_journal_send() writes,
journald's native protocol), and forks a reader that writes each entry it
receives to OUT as one JSON object per line.  Then it execs the command,
which keeps the pid, with JOURNAL_STREAM naming its stderr, as systemd sets
it for a service whose output goes to the journal.  The reader (an orphan,
not the command's child) ends when the command's pid has gone, or after
MAX_SECONDS."""

import json
import os
import socket
import struct
import subprocess
import sys
import time

SOCKET = "/run/systemd/journal/socket"
MAX_SECONDS = 300


def parse(data):
    """journald's native protocol: KEY=VALUE lines, or KEY, a newline, a
    64-bit little-endian length and the value, for values with newlines."""
    fields, i = {}, 0
    while i < len(data):
        nl = data.index(b"\n", i)
        line = data[i:nl]
        if b"=" in line:
            key, value = line.split(b"=", 1)
            i = nl + 1
        else:
            key = line
            (n,) = struct.unpack("<Q", data[nl + 1:nl + 9])
            value = data[nl + 9:nl + 9 + n]
            i = nl + 9 + n + 1
        fields[key.decode()] = value.decode("utf-8", "replace")
    return fields


def reader(sock, out, watched):
    deadline = time.monotonic() + MAX_SECONDS
    sock.settimeout(0.1)
    with open(out, "a") as f:
        while time.monotonic() < deadline:
            try:
                data = sock.recv(1 << 20)
            except socket.timeout:
                try:
                    os.kill(watched, 0)
                except ProcessLookupError:
                    return
                continue
            f.write(json.dumps(parse(data)) + "\n")
            f.flush()


def main():
    out, sep, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
    if sep != "--" or not cmd:
        sys.exit("usage: journal_ns.py OUT -- COMMAND...")
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", "/run"], check=True)
    os.makedirs(os.path.dirname(SOCKET))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(SOCKET)
    me = os.getpid()
    child = os.fork()
    if child == 0:
        if os.fork() == 0:
            os.setsid()
            reader(sock, out, me)
        os._exit(0)
    os.waitpid(child, 0)
    sock.close()
    st = os.fstat(2)
    os.environ["JOURNAL_STREAM"] = "%d:%d" % (st.st_dev, st.st_ino)
    os.execv(cmd[0], cmd)


if __name__ == "__main__":
    main()
