# SPDX-License-Identifier: MIT
"""The daemon under valgrind --leak-check=full for a short mixed run, in
each worker model (forked workers included, and the process model's fork
helper, exec'd: --trace-children): no leak, no memory error."""
import glob
import os
import shutil
import socket
import time

import pytest

from conftest import ASAN, SOCK_TIMEOUT

VALGRIND = shutil.which("valgrind")


def mixed_traffic(d):
    for data in (b"ciao perch\xc3\xa9 \xff\n.\n", b"solo eof"):
        with socket.create_connection(("127.0.0.1", d.port), timeout=SOCK_TIMEOUT) as s:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            while s.recv(4096):
                pass
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.settimeout(SOCK_TIMEOUT)
        for data in (b"udp", b"", "ΐ".encode() * 30000):
            u.sendto(data, ("127.0.0.1", d.port))
            u.recvfrom(65536)
    with socket.socket(socket.AF_UNIX) as c:
        c.settimeout(SOCK_TIMEOUT)
        c.connect(d.control)
        for req in (b"status\n", b"stats\n", b"connections\n", b"timeout idle 5s\n", b"bogus\n", b"reload\n"):
            c.sendall(req)
            reply = b""
            while not reply.endswith(b"OK\n") and b"ERROR" not in reply:
                reply += c.recv(65536)


@pytest.mark.skipif(ASAN, reason="valgrind cannot run an ASan build")
@pytest.mark.skipif(VALGRIND is None, reason="valgrind is not installed (make deps installs it)")
def test_no_leaks_or_errors_under_valgrind(daemon_factory, model, tmp_path):
    m, args = model
    logs = str(tmp_path / "valgrind")
    d = daemon_factory(model=m, args=args, wrapper=[
        VALGRIND, "--trace-children=yes", "--leak-check=full", "--show-leak-kinds=definite,indirect",
        "--errors-for-leak-kinds=definite,indirect", "--log-file=%s.%%p" % logs])
    mixed_traffic(d)
    # A connection still open at the stop, and its reply in flight.
    held = socket.create_connection(("127.0.0.1", d.port), timeout=SOCK_TIMEOUT)
    held.sendall(b"in volo")
    time.sleep(0.5)
    assert d.stop(timeout=30) == 0, d.log()
    held.close()
    reports = glob.glob(logs + ".*")
    assert reports
    for path in reports:
        text = open(path).read()
        assert "ERROR SUMMARY: 0 errors" in text, text
        assert "definitely lost: " not in text or "definitely lost: 0 bytes" in text, text
