# SPDX-License-Identifier: MIT
"""A stop whose worker threads are slow to end (issue 11, item 2).

A worker thread can still be finishing with its connection when the
shutdown timeout has passed (its close entry waiting on a slow journal or
terminal, say).  The daemon must then end without tearing down what such
a thread still uses (the shared area, the model's memory): exit status 0,
no crash, no sanitizer report.

tests/shim/slow-worker-exit.c makes it happen on cue: worker threads take
2.5 s to close a connection, and exit() waits 1.5 s before it runs, so a
thread that outlives the stop wakes while the process is still there."""

import os
import signal
import subprocess
import time

import pytest

from conftest import ASAN, BUILD, Daemon, SANITIZER_MARKERS, recv_exact

SHIM = os.path.join(BUILD, "tests", "slow-worker-exit.so")
DAEMONS = 20                 # stopped at once, 20 times out of 20
CONNS = 3


def shim_env():
    env = {"LD_PRELOAD": SHIM, "SLOW_CLOSE_MSEC": "2500", "SLOW_EXIT_MSEC": "1500"}
    if ASAN:
        # The shim is loaded before the ASan runtime; it intercepts nothing
        # ASan needs.
        env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0:verify_asan_link_order=0"
    return env


@pytest.mark.slow
@pytest.mark.parametrize("model", ["thread", "event"])
def test_stop_with_slow_workers(model):
    if not os.path.exists(SHIM):
        pytest.fail("%s not built (make builds it)" % SHIM)
    daemons, socks = [], []
    try:
        for _ in range(DAEMONS):
            d = Daemon(model=model, shutdown="1s", env_extra=shim_env())
            daemons.append(d)
            d.start()
            for _ in range(CONNS):
                s = d.tcp_connect()
                s.sendall(b"ciao\n")
                assert recv_exact(s, 5) == b"CIAO\n"
                socks.append(s)
        t0 = time.monotonic()
        for d in daemons:
            d.send_signal(signal.SIGTERM)
        codes = []
        for d in daemons:
            try:
                d.proc.wait(15)
            except subprocess.TimeoutExpired:
                pass
            codes.append(d.proc.poll())
        took = time.monotonic() - t0
        reports = [d.log(everything=True) for d in daemons
                   if any(m in d.log(everything=True) for m in SANITIZER_MARKERS)]
        assert not reports, reports[0][-4000:]
        bad = [(d.pid, c, d.log(everything=True)[-1500:]) for d, c in zip(daemons, codes) if c != 0]
        assert not bad, "%d of %d stops failed (pid, exit status, log): %r" % (len(bad), DAEMONS, bad[:2])
        for d in daemons:
            assert "did not end" in d.log(everything=True), d.log(everything=True)[-1500:]
        print("%s: %d daemons stopped with slow workers, all exit 0, in %.1f s" % (model, DAEMONS, took))
    finally:
        for s in socks:
            s.close()
        for d in daemons:
            d.cleanup()
