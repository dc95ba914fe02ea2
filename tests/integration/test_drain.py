# SPDX-License-Identifier: MIT
"""Drain for a balancer, and metrics from many instances (issue 13, items
3 and 4), against the real daemon:

  - uppercasectl drain / ready: the state in status (human and JSON) and
    stats, one journal line per change with the caller's uid, idempotent,
    kept across a reload, not across a restart; new connections are still
    served, open ones go on;
  - the HAProxy agent-check listener (--agent, agent.listen, a passed
    socket named "agent"): one line per connection, "up ready" or
    "drain", "drain" while stopping; counted;
  - -n names FILE:LINE for a bad agent.listen or instance.name;
  - the instance name (instance.name, default the host name) in status and
    as the label uppercased_instance of every Prometheus series: three
    daemons' files in one node_exporter textfile directory do not collide.

Every wait is bounded; only processes started here are signalled, by PID."""

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

from conftest import BINARY, SOCK_TIMEOUT, Daemon, free_port, recv_exact, recv_until_eof
from test_control import ctl_json, ctl_ok

CI = os.environ.get("CI", "") == "true"
PROMTOOL = shutil.which("promtool")
NODE_EXPORTER = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
DRAIN_MODELS = ["event", "thread", "process"]


def agent_ask(port, send=b"", timeout=SOCK_TIMEOUT, late=0):
    """One agent-check, as HAProxy makes it: connect, maybe send its
    agent-send string (late seconds after the connect), read to EOF."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        time.sleep(late)
        if send:
            s.sendall(send)
        data, how = recv_until_eof(s, timeout=timeout)
        assert how == "eof", (data, how)
        return data
    finally:
        s.close()


def hostname_label():
    name = re.sub(r"[^A-Za-z0-9._:-]", "_", socket.gethostname())[:64]
    return name or "localhost"


def need(tool, what):
    if tool:
        return
    if CI:
        pytest.fail("%s not installed (tools/install-deps installs it)" % what)
    pytest.skip("%s not installed" % what)


# --------------------------------------------------------------------------
# drain and ready

@pytest.mark.parametrize("model", DRAIN_MODELS)
def test_drain_and_ready(daemon_factory, model):
    agent_port = free_port()
    d = daemon_factory(model=model, args=["--agent", "127.0.0.1:%d" % agent_port])
    uid = os.geteuid()

    st = ctl_json(d, "status")
    assert st["balancer"] == "ready"
    assert st["instance"] == hostname_label()
    assert st["agent"] == ["tcp 127.0.0.1:%d" % agent_port]
    assert agent_ask(agent_port) == b"up ready\n"
    assert agent_ask(agent_port, send=b"backend/srv1\n") == b"up ready\n"

    # A session open before the drain goes on after it.
    old = d.tcp_connect()
    old.sendall(b"prima\n")
    assert recv_exact(old, 6) == b"PRIMA\n"

    d.mark()
    out = ctl_ok(d, "drain")
    assert out.startswith("Draining: the agent-check answers drain;"), out
    assert d.wait_log("Draining, asked by uid %d (pid " % uid)
    out = ctl_ok(d, "drain")
    assert out.startswith("Already draining:"), out
    assert ctl_json(d, "drain") == {"balancer": "draining", "changed": False}
    time.sleep(0.2)
    assert len([l for l in d.log_lines() if l.startswith("Draining, asked by")]) == 1, d.log()

    assert agent_ask(agent_port) == b"drain\n"
    assert agent_ask(agent_port, send=b"x" * 100) == b"drain\n"
    old.sendall(b"dopo\n")
    assert recv_exact(old, 5) == b"DOPO\n"
    # Not refused: the balancer stops sending, the daemon still serves.
    new = d.tcp_connect()
    new.sendall(b"nuova\n")
    assert recv_exact(new, 6) == b"NUOVA\n"
    new.close()
    old.close()

    assert re.search(r"^Balancer:\s+draining$", ctl_ok(d, "status"), re.M)
    assert ctl_json(d, "status")["balancer"] == "draining"
    s = ctl_json(d, "stats")
    assert s["draining"] is True
    assert s["agent"]["checks"] >= 4
    assert 'uppercased_draining{uppercased_instance="%s"} 1' % hostname_label() in \
        ctl_ok(d, "--prometheus", "stats")

    # A reload keeps it.
    d.send_signal(signal.SIGHUP)
    assert d.wait_log("Configuration reloaded")
    assert ctl_json(d, "status")["balancer"] == "draining"
    assert agent_ask(agent_port) == b"drain\n"

    out = ctl_ok(d, "ready")
    assert out.startswith("Ready: the agent-check answers ready;"), out
    assert d.wait_log("Ready, asked by uid %d (pid " % uid)
    assert ctl_ok(d, "ready").startswith("Already ready:")
    assert agent_ask(agent_port) == b"up ready\n"
    assert ctl_json(d, "stats")["draining"] is False


def test_agent_send_after_the_answer(daemon_factory):
    """HAProxy's agent-send string may come after the daemon answered, or
    be longer than one read: the daemon reads all of it before it closes,
    so the close is a FIN after the answer, never a reset that could
    destroy the answer on its way."""
    agent_port = free_port()
    d = daemon_factory(agent=["127.0.0.1:%d" % agent_port])
    long = b"backend/srv1 " * 400 + b"\n"
    assert agent_ask(agent_port, send=b"backend/srv1\n", late=0.05) == b"up ready\n"
    # All of it there before the daemon looks: frozen while it comes.
    d.send_signal(signal.SIGSTOP)
    try:
        s = socket.create_connection(("127.0.0.1", agent_port), timeout=SOCK_TIMEOUT)
        s.sendall(long)
    finally:
        d.send_signal(signal.SIGCONT)
    data, how = recv_until_eof(s)
    s.close()
    assert (data, how) == (b"up ready\n", "eof")
    assert ctl_json(d, "stats")["agent"]["checks"] == 2


def test_restart_starts_ready(daemon_factory):
    agent_port = free_port()
    d = daemon_factory(agent=["127.0.0.1:%d" % agent_port])
    ctl_ok(d, "drain")
    assert agent_ask(agent_port) == b"drain\n"
    assert d.stop() == 0
    since = len(d.notifications)
    d.start(wait_ready=False)
    d.wait_ready(since=since)
    assert ctl_json(d, "status")["balancer"] == "ready"
    assert agent_ask(agent_port) == b"up ready\n"


def test_stopping_answers_drain(daemon_factory):
    """While it stops (here: a connection gets its first-request grace)
    the agent answers drain, so HAProxy sends nothing new."""
    agent_port = free_port()
    d = daemon_factory(agent=["127.0.0.1:%d" % agent_port], shutdown="10s")
    held = d.tcp_connect()
    time.sleep(0.1)
    since = len(d.notifications)
    d.send_signal(signal.SIGTERM)
    assert d.wait_notify("STOPPING=1", since=since) is not None
    assert agent_ask(agent_port) == b"drain\n"
    held.close()
    assert d.proc.wait(15) == 0


def test_agent_listen_is_restart_only(daemon_factory):
    a1, a2 = free_port(), free_port()
    d = daemon_factory(agent=["127.0.0.1:%d" % a1])
    assert ctl_json(d, "status")["agent"] == ["tcp 127.0.0.1:%d" % a1]
    d.mark()
    d.write_config(agent=["127.0.0.1:%d" % a2])
    d.send_signal(signal.SIGHUP)
    assert d.wait_log("agent.listen changed; it takes effect at the next restart")
    assert agent_ask(a1) == b"up ready\n"


def test_agent_socket_activated(daemon_factory):
    """A passed stream socket named "agent" is the agent-check listener,
    not a TCP service socket."""
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(16)
    agent_port = lsock.getsockname()[1]

    class AgentActivated(Daemon):
        def inherited_fds(self):
            return (lsock.fileno(),)

        def command(self):
            cmd = super().command()
            i = cmd.index("--")
            return cmd[:i] + ["--stored=%d:agent" % lsock.fileno()] + cmd[i:]

    d = AgentActivated(activate=True)
    try:
        d.start()
        lsock.close()
        d.control = d.activate_control          # the passed one, for uppercasectl
        st = ctl_json(d, "status")
        assert st["socket_activated"] is True
        assert st["agent"] == ["tcp 127.0.0.1:%d" % agent_port]
        assert "tcp 127.0.0.1:%d" % agent_port not in st["listen"]
        assert agent_ask(agent_port) == b"up ready\n"
        ctl_ok(d, "drain")
        assert agent_ask(agent_port) == b"drain\n"
        # The service socket is still the service.
        c = d.tcp_connect()
        c.sendall(b"ciao\n")
        assert recv_exact(c, 5) == b"CIAO\n"
        c.close()
    finally:
        d.cleanup()
        shutil.rmtree(d.dir, ignore_errors=True)


# --------------------------------------------------------------------------
# -n and the command line

def check_config(tmp_path, conf_text, *args):
    """uppercased -n on conf_text: (the file's path, the CompletedProcess)."""
    path = str(tmp_path / "u.conf")
    with open(path, "w") as f:
        f.write(conf_text)
    return path, subprocess.run([BINARY, "-n", "-c", path] + list(args), capture_output=True, text=True,
                                timeout=30, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("text,line,message", [
    ('agent: {\n  listen = [ "127.0.0.1:1",\n    "nowhere:2" ];\n};\n', 3,
     'agent.listen[1]: invalid address "nowhere:2"'),
    ('\ninstance: {\n  name = "two words";\n};\n', 3, 'instance.name: invalid instance name "two words"'),
])
def test_check_config_errors(tmp_path, text, line, message):
    path, p = check_config(tmp_path, text)
    assert p.returncode == 1, p
    assert p.stderr.startswith("%s:%d: %s" % (path, line, message)), p.stderr


def test_check_config_agent_options(tmp_path):
    path, p = check_config(tmp_path, 'agent: { listen = [ "127.0.0.1:12001" ]; };\ninstance: { name = "web-1"; };\n')
    assert p.returncode == 0 and p.stdout == "configuration OK: %s\n" % path, p
    _, p = check_config(tmp_path, "", "--agent", "127.0.0.1:12001", "--agent", "[::1]:12001")
    assert p.returncode == 0, p
    _, p = check_config(tmp_path, "", "--agent", "nowhere:1")
    assert p.returncode == 2 and "invalid address 'nowhere:1'" in p.stderr, p
    _, p = check_config(tmp_path, "", "--tcp", "127.0.0.1:12000", "--agent", "127.0.0.1:12000")
    assert p.returncode == 1 and "agent address 127.0.0.1:12000 is a TCP listen address too" in p.stderr, p
    p = subprocess.run([BINARY, "--help"], capture_output=True, text=True, timeout=30)
    assert "--agent ADDR:PORT" in p.stdout


# --------------------------------------------------------------------------
# the instance name

def test_instance_name_reload(daemon_factory):
    d = daemon_factory(instance="web-1")
    assert ctl_json(d, "status")["instance"] == "web-1"
    assert re.search(r"^Instance:\s+web-1$", ctl_ok(d, "status"), re.M)
    assert ctl_json(d, "stats")["instance"] == "web-1"
    d.mark()
    d.write_config(instance="")
    d.send_signal(signal.SIGHUP)
    assert d.wait_log("Instance name changed from web-1 to %s" % hostname_label())
    assert ctl_json(d, "status")["instance"] == hostname_label()


def prometheus_files(daemon_factory, names, directory):
    for name in names:
        d = daemon_factory(instance=name)
        s = d.tcp_connect()
        s.sendall(b"ciao\n")
        assert recv_exact(s, 5) == b"CIAO\n"
        s.close()
        with open(os.path.join(directory, "uppercased-%s.prom" % name), "w") as f:
            f.write(ctl_ok(d, "--prometheus", "stats"))


def test_prometheus_three_instances_promtool(daemon_factory, tmp_path):
    need(PROMTOOL, "promtool (Debian package prometheus)")
    prometheus_files(daemon_factory, ["web-1", "web-2", "web-3"], str(tmp_path))
    merged = ""
    for name in sorted(os.listdir(str(tmp_path))):
        text = open(os.path.join(str(tmp_path), name)).read()
        p = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True,
                           timeout=30)
        assert p.returncode == 0, p.stdout + p.stderr
        merged += text
    # Every sample carries the label; the three label sets differ.
    samples = [l for l in merged.splitlines() if l and not l.startswith("#")]
    assert all('uppercased_instance="' in l for l in samples), samples
    accepted = [l for l in samples if l.startswith("uppercased_tcp_connections_accepted_total")]
    assert sorted(accepted) == ['uppercased_tcp_connections_accepted_total{uppercased_instance="web-%d"} 1' % i
                                for i in (1, 2, 3)]
    series = [l.rsplit(" ", 1)[0] for l in samples]
    assert len(series) == len(set(series))


def test_prometheus_node_exporter_textfile(daemon_factory, tmp_path):
    """Three daemons' files in one textfile directory, read by Debian's
    node_exporter: every series kept, no "collected before" error."""
    need(NODE_EXPORTER, "prometheus-node-exporter")
    directory = str(tmp_path)
    prometheus_files(daemon_factory, ["web-1", "web-2", "web-3"], directory)
    port = free_port()
    log = open(os.path.join(directory, "node_exporter.log.txt"), "w+")
    proc = subprocess.Popen([NODE_EXPORTER, "--web.listen-address=127.0.0.1:%d" % port,
                             "--collector.disable-defaults", "--collector.textfile",
                             "--collector.textfile.directory=%s" % directory],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        body, deadline = None, time.monotonic() + 15
        while body is None:
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
                    body = r.read().decode()
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    log.seek(0)
                    pytest.fail("node_exporter did not answer: %s" % log.read())
                time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(10)
    log.seek(0)
    logged = log.read()
    log.close()
    assert "collected before" not in body + logged, body + logged
    assert re.search(r"^node_textfile_scrape_error 0$", body, re.M), body
    for i in (1, 2, 3):
        assert 'uppercased_tcp_connections_accepted_total{uppercased_instance="web-%d"} 1' % i in body
        assert re.search(r'^uppercased_info\{.*uppercased_instance="web-%d".*\} 1$' % i, body, re.M)
