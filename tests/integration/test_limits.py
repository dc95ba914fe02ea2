# SPDX-License-Identifier: MIT
"""Resource limits of the daemon itself: out of descriptors in accept()."""
import socket
import subprocess
import time

from conftest import SOCK_TIMEOUT


def cpu_ticks(pid):
    fields = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])      # utime + stime


def test_out_of_descriptors_pauses_accept(daemon_factory, model):
    """With no descriptor left, accept() fails with EMFILE: the daemon must
    neither spin nor lose the connection, and serves it once descriptors are
    back."""
    m, args = model
    d = daemon_factory(model=m, args=args)
    soft, hard = subprocess.run(["prlimit", "--pid", str(d.pid), "--nofile", "-o", "SOFT,HARD",
                                 "--noheadings"], capture_output=True, text=True,
                                check=True).stdout.split()
    # A limit of 3: every new descriptor fails (the ones open stay usable),
    # whatever the daemon holds at this moment (sd_notify() opens one
    # briefly, for instance).
    subprocess.run(["prlimit", "--pid", str(d.pid), "--nofile=3:%s" % hard], check=True)
    c = socket.create_connection(("127.0.0.1", d.port), timeout=SOCK_TIMEOUT)
    try:
        c.sendall(b"ciao")
        assert d.wait_log("pausing accepts", timeout=5), d.log()
        ticks = cpu_ticks(d.pid)
        time.sleep(1.0)
        used = cpu_ticks(d.pid) - ticks
        assert used < 20, "the daemon used %d ticks in 1 s while out of descriptors" % used
        subprocess.run(["prlimit", "--pid", str(d.pid), "--nofile=%s:%s" % (soft, hard)], check=True)
        c.settimeout(5)
        assert c.recv(16) == b"CIAO"
    finally:
        c.close()
    # Still serving normally afterwards.
    with socket.create_connection(("127.0.0.1", d.port), timeout=SOCK_TIMEOUT) as s:
        s.sendall(b"dopo")
        assert s.recv(16) == b"DOPO"
