# SPDX-License-Identifier: MIT
"""Smoke test of the benchmark tools (bench/, built by `make all`): a short
uppercase-bench run in every mode against the real daemon (event model),
and against echo-ref with --echo.  Every reply is verified by the tool;
here we check it found no error, did some work, and that --json parses.
And bench/run --models (make bench-models) in a tiny form: every model at
every number of connections, with figures."""

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

from conftest import ASAN, BUILD, REPO, Daemon, free_port

BENCH = os.path.join(BUILD, "bench", "uppercase-bench")
ECHO = os.path.join(BUILD, "bench", "echo-ref")
RUN_TIMEOUT = 30


def bench(port, *args, pid=None):
    """Runs uppercase-bench --json; returns (exit status, parsed JSON, stderr)."""
    if not os.access(BENCH, os.X_OK):
        pytest.fail("%s not built (make all builds it)" % BENCH)
    cmd = [BENCH] + list(args) + ["-P", str(port), "--json", "-q"]
    if pid is not None:
        cmd += ["--server-pid", str(pid)]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=RUN_TIMEOUT)
    out = p.stdout.decode()
    assert out.strip(), "no output from %s; stderr: %s" % (cmd, p.stderr.decode())
    return p.returncode, json.loads(out), p.stderr.decode()


@pytest.fixture(scope="module")
def event_daemon():
    d = Daemon(model="event", rate=100, burst=200)
    try:
        d.start()
        yield d
    finally:
        d.cleanup()
        rep = d.sanitizer_report()
        if rep is None:
            shutil.rmtree(d.dir, ignore_errors=True)
        else:
            pytest.fail("sanitizer report in the daemon's stderr:\n" + rep, pytrace=False)


SHORT = ["-d", "0.5", "-w", "0.1"]

MODES = [
    ("tcp", ["tcp", "-c", "16"] + SHORT),
    ("pipelined", ["tcp", "-c", "16", "-p", "16"] + SHORT),
    ("connect", ["connect", "-c", "8"] + SHORT),
    ("udp", ["udp", "-c", "32", "--timeout", "2000"] + SHORT),
    ("udp-no-gso", ["udp", "-c", "32", "--timeout", "2000", "--no-gso"] + SHORT),
    ("udp-large", ["udp", "-c", "32", "-s", "3000", "--timeout", "2000"] + SHORT),
    ("stream", ["stream", "-b", "4M", "-d", "5"]),
    ("idle", ["idle", "-c", "100", "-d", "0.3"]),
    ("busy", ["busy", "-c", "50"] + SHORT),
]


@pytest.mark.parametrize("args", [m[1] for m in MODES], ids=[m[0] for m in MODES])
def test_bench_mode_against_daemon(event_daemon, args):
    code, r, err = bench(event_daemon.port, *args, pid=event_daemon.pid)
    assert code == 0, (r, err)
    assert r["ok"] is True
    assert r["errors_total"] == 0, r["errors"]
    assert r["errors"]["wrong"] == 0
    assert r["mode"] == args[0]
    assert r["echo"] is False
    if args[0] == "stream":
        assert r["bytes_in"] == 4 << 20, r
        assert r["mb_per_s"] > 0
    else:
        assert r["requests"] > 0
        assert r["req_per_s"] > 0
        assert r["latency_us"]["p50"] > 0
        assert r["latency_us"]["p99"] >= r["latency_us"]["p50"]
    if args[0] == "udp":
        # Batches go as GSO messages (21 of 3,000 bytes in one) unless told
        # otherwise; either way every reply was checked above.
        assert r["udp"]["gso"] is ("--no-gso" not in args), r["udp"]
    if args[0] == "tcp":
        # Every connection had its first reply before the warm-up began.
        assert r["tcp"]["serving_at_start"] == 16, r["tcp"]
    if args[0] == "busy":
        b = r["busy"]
        assert b["peers_open"] == 50 and b["peers_open_end"] == 50, b
        assert b["peer_mb_per_s"] > 0 and b["peer_reads"] > 0
        assert b["roundtrip_us"]["samples"] > 0 and b["connect_us"]["samples"] > 0, b
        assert b["connect_us"]["p99"] >= b["connect_us"]["p50"] > 0
    if args[0] == "idle":
        assert r["idle"]["opened"] == 100
        assert r["idle"]["open_end"] == 100
        if not ASAN:
            assert r["idle"]["rss_held_kib"] > 0
    # The server's CPU time was read from /proc.
    assert r["server"] is not None and r["server"]["pid"] == event_daemon.pid
    assert r["server"]["cpu_s"] >= 0
    assert event_daemon.running()


@contextlib.contextmanager
def running_echo_ref(model):
    """bench/echo-ref in model (epoll, thread, fork, udp); yields its port and pid."""
    if not os.access(ECHO, os.X_OK):
        pytest.fail("%s not built (make all builds it)" % ECHO)
    port = free_port()
    p = subprocess.Popen([ECHO, model, str(port)], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 5
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if p.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("echo-ref did not start: %s" % p.stderr.read().decode())
                time.sleep(0.05)
        yield port, p.pid
    finally:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGTERM)
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGKILL)
            p.wait(5)


@pytest.fixture
def echo_ref():
    with running_echo_ref("epoll") as r:
        yield r


def test_bench_against_echo_ref(echo_ref):
    port, pid = echo_ref
    code, r, err = bench(port, "tcp", "-c", "8", "-p", "4", "--echo", *SHORT, pid=pid)
    assert code == 0, (r, err)
    assert r["errors_total"] == 0 and r["requests"] > 0 and r["echo"] is True


def test_bench_counts_reaped_childrens_page_faults():
    """Against a fork-per-connection server, the page faults per request
    include those of the children the server reaped: every child writes to
    pages it shares with its parent, so each connection costs faults."""
    with running_echo_ref("fork") as (port, pid):
        code, r, err = bench(port, "connect", "-c", "4", "--echo", *SHORT, pid=pid)
    assert code == 0, (r, err)
    assert r["requests"] > 0
    assert r["server"]["faults_per_req"] >= 2, r["server"]


def test_bench_detects_wrong_replies(echo_ref):
    """Without --echo, an echo server's replies are wrong: reported, exit 1."""
    port, pid = echo_ref
    code, r, err = bench(port, "tcp", "-c", "2", "-d", "0.2", "-w", "0")
    assert code == 1
    assert r["ok"] is False
    assert r["errors"]["wrong"] > 0
    assert "expected" in r["wrong_example"]


def test_bench_usage_error():
    p = subprocess.run([BENCH, "nosuchmode"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=RUN_TIMEOUT)
    assert p.returncode == 2
    assert b"Usage" in p.stderr


def test_bench_run_models(tmp_path):
    """bench/run --models, 0.3 s a run: the three worker models at 1, 64 and
    1,000 connections, each with requests/s, CPU per request and p99 above
    zero and no error; every connection open before the measure; the
    Markdown table printed and, where gnuplot is, the chart written."""
    if ASAN:
        pytest.skip("1,000 connections to the process model are 1,000 ASan processes; "
                    "bench/run measures the release build")
    out = tmp_path / "results"
    p = subprocess.run([os.path.join(REPO, "bench", "run"), "--models", "--build", BUILD, "--out", str(out),
                        "--duration", "0.3", "--warmup", "0.2", "--quiet-wait", "0", "--no-retry"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    stdout, stderr = p.stdout.decode(), p.stderr.decode()
    assert p.returncode == 0, stderr
    with open(out / "models.json") as f:
        saved = json.load(f)
    assert saved["meta"]["models"] is True and saved["meta"]["reps"] == 1
    rows = saved["summary"]
    got = sorted((r["server"], r["mode"]) for r in rows)
    want = sorted((m, c) for m in ("ev1", "thread", "process") for c in ("tcp1", "tcp", "tcp1000"))
    assert got == want, got
    for r in rows:
        what = "%s %s" % (r["label"], r["mode_label"])
        assert r["failed"] == 0 and r["errors"] == 0 and r["wrong"] == 0, (what, r)
        for key in ("req_per_s", "cpu", "p99"):
            assert r[key] is not None and r[key] > 0, (what, key, r[key])
    conns = {"tcp1": 1, "tcp": 64, "tcp1000": 1000}
    for run in saved["runs"]:
        res = run["result"]
        assert res["connections"] == conns[run["mode"]], run["command"]
        assert res["tcp"]["serving_at_start"] == res["connections"], (run["command"], res["tcp"])
        assert run["other_cpu"] is not None
        # The shipped configuration: only the control socket's group differs.
        conf = [l for l in run["server_config"].splitlines() if l.strip() and not l.startswith("#")]
        assert conf == ['control: { group = ""; };'], run["server_config"]
        model = {"ev1": "event", "thread": "thread", "process": "process"}[run["server"]]
        assert " -m %s -t 1 " % model in run["server_command"], run["server_command"]
    # The table: one line per model and number of connections.
    lines = [l for l in stdout.splitlines() if re.match(r"^\| (event -t1|thread|process) \| ", l)]
    assert len(lines) == 9, stdout
    assert "1 repetition" in stdout and "Other processes on the machine used" in stdout, stdout
    png = out / "models.png"
    if shutil.which("gnuplot"):
        with open(png, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
        assert png.stat().st_size > 10000
