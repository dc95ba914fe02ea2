# SPDX-License-Identifier: MIT
"""uppercasectl's operator commands against the real daemon, in every
worker model: help COMMAND, kill ID, reset, the refresh mode (-i), the
access tiers (reading for the socket's group, changing for root and
control.admin_group), and clear messages for bad values."""

import grp
import os
import re
import shutil
import socket
import subprocess
import time
import uuid

import pytest

from conftest import recv_until_eof
from test_control import (CTL, CTL_TIMEOUT, control_raw, ctl, ctl_json, ctl_ok, privilege_drop, public_ctl,
                          stats, wait_stats)

assert public_ctl  # a fixture, used by name below


@pytest.fixture
def own_daemon(model, daemon_factory):
    m, args = model
    return daemon_factory(model=m, args=args)


def connection_ids(daemon):
    return [c["id"] for c in ctl_json(daemon, "connections")["connections"]]


# --------------------------------------------------------------------------
# help COMMAND

def test_help_command_needs_no_daemon():
    p = subprocess.run([CTL, "-s", "/nonexistent", "help", "kill"], capture_output=True, text=True,
                       timeout=CTL_TIMEOUT)
    assert p.returncode == 0 and p.stderr == "", p
    assert p.stdout.startswith("Usage: uppercasectl [OPTIONS] kill ID\n\nclose connection ID"), p.stdout
    assert "needs root or group uppercased-admin" in p.stdout
    # Any unambiguous prefix, as for the commands themselves.
    p2 = subprocess.run([CTL, "help", "ki"], capture_output=True, text=True, timeout=CTL_TIMEOUT)
    assert p2.stdout == p.stdout
    p = subprocess.run([CTL, "help", "bogus"], capture_output=True, text=True, timeout=CTL_TIMEOUT)
    assert p.returncode == 2 and p.stderr.startswith("uppercasectl: unknown command 'bogus'\n"), p


def test_help_command_on_the_wire(daemon):
    reply = control_raw(daemon.control, b"help kill\n").decode()
    assert re.match(r"^help kill ID +close connection ID .*\nOK\n$", reply), reply
    assert control_raw(daemon.control, b"help nope\n") == b"ERROR unknown command 'nope', try 'help'\n"


# --------------------------------------------------------------------------
# bad values

@pytest.mark.parametrize("args,message", [
    (["timeout", "idle", "-5"], "invalid timeout value '-5': a duration cannot be negative"),
    (["kill", "-3"], "invalid connection id '-3' (a number, see 'connections')"),
    (["kill", "abc"], "invalid connection id 'abc' (a number, see 'connections')"),
    (["-i", "0", "stats"], "invalid interval '0'"),
    (["-i", "1", "--json", "stats"], "-i/--interval redraws the human output only"),
])
def test_bad_values_say_what_is_wrong(tmp_path, args, message):
    p = ctl(str(tmp_path / "none.sock"), *args)
    assert p.returncode == 2, p
    assert p.stderr.startswith("uppercasectl: %s" % message), p.stderr
    assert "invalid option" not in p.stderr


# --------------------------------------------------------------------------
# kill

def test_kill_closes_after_replies(own_daemon, model):
    d = own_daemon
    s = d.tcp_connect()
    try:
        s.sendall(b"ciao\n")
        assert s.recv(100) == b"CIAO\n"
        port = s.getsockname()[1]
        [cid] = connection_ids(d)
        out = ctl_ok(d, "kill", str(cid))
        assert out == "connection %d killed: it closes once the replies it owes are sent\n" % cid
        # The daemon closes its side: the client sees the end of the replies.
        assert recv_until_eof(s) == (b"", "eof")
    finally:
        s.close()
    st = wait_stats(d, lambda x: x["tcp"]["closed_killed"] == 1)
    assert st["tcp"]["closed_killed"] == 1 and st["tcp"]["active"] == 0, st
    line = d.wait_log("Connection %d from 127.0.0.1 port %d killed by uid %d (pid " % (cid, port, os.getuid()))
    assert line is not None, d.log()
    assert d.wait_log("tcp connection from 127.0.0.1 port %d closed (killed): 5 bytes in, 5 bytes out"
                      % port) is not None, d.log()
    # Unknown, or gone: one line, exit 1.
    p = ctl(d.control, "kill", str(cid))
    assert p.returncode == 1 and p.stderr == "uppercasectl: no connection %d (see 'connections')\n" % cid, p


def test_kill_delivers_owed_replies(own_daemon):
    """A peer that does not read: its worker is blocked on the replies it
    owes; killed, it still delivers them (a prefix of the stream, whole),
    then the end of the stream."""
    d = own_daemon
    s = d.tcp_connect()
    data = bytes(b"abcdefghij"[i % 10] for i in range(4 << 20))
    try:
        s.setblocking(False)
        sent = 0
        deadline = time.monotonic() + 5
        while sent < len(data) and time.monotonic() < deadline:
            try:
                sent += s.send(data[sent:sent + 65536])
            except BlockingIOError:
                break
        assert wait_stats(d, lambda x: x["tcp"]["bytes_out"] > 0)["tcp"]["bytes_out"] > 0
        [cid] = connection_ids(d)
        ctl_ok(d, "kill", str(cid))
        got, how = recv_until_eof(s, timeout=20)
        assert how == "eof", (how, len(got))
        assert 0 < len(got) <= sent and got == data[:len(got)].upper()
        s.close()
        # Exactly what it read: every byte received was answered.
        st = wait_stats(d, lambda x: x["tcp"]["closed_killed"] == 1)
        assert st["tcp"]["bytes_out"] == len(got), (st["tcp"], len(got))
    finally:
        s.close()


def test_kill_only_that_connection(own_daemon):
    d = own_daemon
    a, b = d.tcp_connect(), d.tcp_connect()
    try:
        for s in (a, b):
            s.sendall(b"x")
            assert s.recv(10) == b"X"
        ids = connection_ids(d)
        assert len(ids) == 2
        victim = min(ids)
        assert ctl_json(d, "kill", str(victim)) == {"killed": victim}
        a.settimeout(5)
        assert recv_until_eof(a) == (b"", "eof")
        a.close()
        wait_stats(d, lambda x: x["tcp"]["active"] == 1)
        assert connection_ids(d) == [max(ids)]
        b.sendall(b"still here")
        assert b.recv(100) == b"STILL HERE"
    finally:
        a.close()
        b.close()


# --------------------------------------------------------------------------
# reset

def test_reset_zeroes_counters_not_gauges(own_daemon):
    d = own_daemon
    d.udp_exchange(b"abc")
    held = d.tcp_connect()
    try:
        held.sendall(b"x")
        assert held.recv(10) == b"X"
        before = wait_stats(d, lambda x: x["udp"]["datagrams"] == 1)
        assert before["tcp"]["accepted"] == 1
        assert ctl_ok(d, "reset") == "counters reset\n"
        assert d.wait_log("Counters reset by uid %d (pid " % os.getuid()) is not None, d.log()
        after = stats(d)
        assert after["tcp"]["active"] == 1                  # a gauge
        assert after["tcp"]["accepted"] == 0 and after["tcp"]["bytes_in"] == 0
        assert after["udp"]["datagrams"] == 0 and after["udp"]["bytes_out"] == 0
        assert after["timeouts"] == before["timeouts"]      # settings
        assert after["uptime_seconds"] >= before["uptime_seconds"]
        assert ctl_json(d, "reset") == {"reset": True}
        # The connection's own count is its own.
        [c] = ctl_json(d, "connections")["connections"]
        assert c["bytes_in"] == 1
    finally:
        held.close()


# --------------------------------------------------------------------------
# the refresh mode

def test_interval_redraws_with_rates(own_daemon):
    d = own_daemon
    p = subprocess.Popen([CTL, "-s", d.control, "-i", "0.3", "-c", "3", "stats"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    for _ in range(10):
        d.udp_exchange(b"abc")
        time.sleep(0.05)
    out, err = p.communicate(timeout=CTL_TIMEOUT)
    assert p.returncode == 0 and err == "", (out, err)
    rounds = out.split("uppercased ")[1:]
    assert len(rounds) == 3, out
    assert "\033[" not in out           # not a terminal: no clearing
    assert not re.search(r"\d/s\n", rounds[0]), rounds[0]
    m = re.search(r"\n  datagrams +(\d+) +(\d+\.\d)/s\n", rounds[2])
    assert m, rounds[2]
    # Gauges and settings have no rate.
    assert re.search(r"\n  active connections +0\n", rounds[2]), rounds[2]
    assert re.search(r"\n  idle +300 s\n", rounds[2]), rounds[2]


# --------------------------------------------------------------------------
# the access tiers

CHANGING = [["timeout", "idle", "7"], ["reload"], ["kill", "1"], ["reset"], ["drain"], ["ready"]]
READING = [["status"], ["stats"], ["connections"], ["timeout"], ["timeout", "idle"], ["help"]]


@pytest.fixture
def admin_group():
    """A group of its own for control.admin_group (the test machine has no
    uppercased-admin), removed afterwards."""
    if os.geteuid() != 0 or not shutil.which("groupadd"):
        pytest.skip("needs root and groupadd")
    name = "upcadm%s" % uuid.uuid4().hex[:8]
    subprocess.run(["groupadd", name], check=True)
    try:
        yield name, grp.getgrnam(name).gr_gid
    finally:
        subprocess.run(["groupdel", name], check=False)


def test_tiers(model, daemon_factory, public_ctl, admin_group):
    name, gid = admin_group
    privilege_drop()
    m, args = model
    d = daemon_factory(model=m, args=args, admin_group=name)
    os.chmod(d.dir, 0o755)
    sock_gid = os.stat(d.control).st_gid
    base = ["setpriv", "--reuid=nobody", "--regid=nogroup"]
    reader = base + ["--groups=%d" % sock_gid]
    admin_only = base + ["--groups=%d" % gid]      # not in the socket's group: the ACL lets it in
    admin_primary = ["setpriv", "--reuid=nobody", "--regid=%d" % gid, "--clear-groups"]
    held = d.tcp_connect()
    try:
        held.sendall(b"x")
        assert held.recv(10) == b"X"
        for cmd in READING:
            p = ctl(d.control, *cmd, user=reader, binary=public_ctl)
            assert p.returncode == 0, (cmd, p)
        for cmd in CHANGING:
            p = ctl(d.control, *cmd, user=reader, binary=public_ctl)
            assert p.returncode == 1, (cmd, p)
            assert p.stderr == "uppercasectl: permission denied: %s%s needs root or group %s\n" % (
                cmd[0], " VALUE" if cmd[0] == "timeout" else "", name), p.stderr
        assert stats(d)["timeouts"]["idle"] == 300 and stats(d)["draining"] is False
        [cid] = connection_ids(d)
        nobody = int(subprocess.run(["id", "-u", "nobody"], capture_output=True, text=True).stdout)
        for user in (admin_only, admin_primary):
            for cmd in [["timeout", "idle", "7"], ["drain"], ["ready"], ["reset"], ["reload"]]:
                p = ctl(d.control, *cmd, user=user, binary=public_ctl)
                assert p.returncode == 0, (cmd, user, p)
            assert d.wait_log("Timeout idle set to 7 s by uid %d" % nobody) is not None, d.log()
        p = ctl(d.control, "kill", str(cid), user=admin_only, binary=public_ctl)
        assert p.returncode == 0, p
        assert recv_until_eof(held) == (b"", "eof")
        assert d.wait_log("killed by uid %d" % nobody) is not None, d.log()
    finally:
        held.close()
    # Neither group: the socket itself refuses.
    p = ctl(d.control, "stats", user=base + ["--clear-groups"], binary=public_ctl)
    assert p.returncode == 3 and "permission denied" in p.stderr, p


# --------------------------------------------------------------------------
# uppercasectl(8) keeps up

MAN = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                   "man", "uppercasectl.8")


def tool(name):
    path = shutil.which(name)
    if not path:
        if os.environ.get("CI") == "true":
            pytest.fail("%s not installed (tools/install-deps)" % name)
        pytest.skip("%s not installed" % name)
    return path


def test_man_page_lint_clean():
    p = subprocess.run([tool("mandoc"), "-Tlint", MAN], capture_output=True, text=True, timeout=CTL_TIMEOUT)
    assert p.returncode == 0 and p.stdout == "" and p.stderr == "", p
    p = subprocess.run([tool("groff"), "-ww", "-man", "-Tutf8", "-z", MAN], capture_output=True, text=True,
                       timeout=CTL_TIMEOUT)
    assert p.returncode == 0 and p.stderr == "", p


def close_reason_lists(lines):
    """The lists of close reasons on the page: ".RB ( eof ," up to the
    first item not followed by a comma."""
    lists = []
    for i, line in enumerate(lines):
        if line == ".RB ( eof ,":
            words = []
            for l in lines[i:]:
                words.append(re.sub(r"^\.R?BR? (\( )?", "", l).split()[0])
                if not l.endswith(" ,"):
                    break
            lists.append(words)
    return lists


def test_man_page_names_what_the_daemon_sends(daemon_factory):
    daemon = daemon_factory()
    with open(MAN) as f:
        man = f.read()
    lines = man.splitlines()
    # Every metric entry of the list is its own .TP paragraph.
    for i, line in enumerate(lines):
        if re.match(r"^\.B uppercased_\w+(\{.*\})?$", line) and lines[i + 1].startswith(("counter", "gauge")):
            assert lines[i - 1] == ".TP", (i, line)
    st = ctl_json(daemon, "stats")
    reasons = [k[len("closed_"):] for k in st["tcp"] if k.startswith("closed_")]
    assert "killed" in reasons and "handover" in reasons
    lists = close_reason_lists(lines)
    assert len(lists) >= 2, lists
    for words in lists:
        assert words == reasons, (words, reasons)
    for reason in reasons:
        assert ".BR tcp.closed_%s ," % reason in man, reason
    for c in ("kill", "reset", "help"):
        assert re.search(r"\n\.TP\n\.B[IR]? %s\b" % c, man), c
    status = ctl_json(daemon, "status")
    assert ".B control_protocol\n(%d)," % status["control_protocol"] in man
    assert "Control protocol:  %d\n" % status["control_protocol"] in man
    # The Prometheus names the page gives are the ones printed.
    text = ctl_ok(daemon, "--prometheus", "stats")
    for name in set(re.findall(r"^# TYPE (\w+) ", text, re.M)):
        assert re.search(r"^\.BR? (.*\" )?%s\b" % name, man, re.M), name
