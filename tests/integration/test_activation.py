# SPDX-License-Identifier: MIT
"""Command line, start-up errors and socket activation."""

import os
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from conftest import (ASAN, BINARY, REPO, SOCK_TIMEOUT, config_text,
                      free_port, recv_exact, socket_ports)


def run(args, timeout=10, env_extra=None):
    """Runs the binary to completion (bounded; killed by PID on timeout).
    Returns (exit code, stdout, stderr)."""
    if not os.access(BINARY, os.X_OK):
        pytest.fail("daemon binary not found: %s" % BINARY)
    env = {k: v for k, v in os.environ.items()
           if k not in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET",
                        "JOURNAL_STREAM", "WATCHDOG_USEC")}
    env["LC_ALL"] = "C"
    if ASAN:
        env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0"
    if env_extra:
        env.update(env_extra)
    p = subprocess.Popen([BINARY] + list(args), stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.kill(p.pid, signal.SIGKILL)
        out, err = p.communicate(timeout=5)
        pytest.fail("%s did not exit within %d s; stderr:\n%s"
                    % (args, timeout, err.decode(errors="replace")))
    out = out.decode("utf-8", "replace")
    err = err.decode("utf-8", "replace")
    for m in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
        assert m not in err, err
    return p.returncode, out, err


@pytest.fixture
def tmpdir_short():
    d = tempfile.mkdtemp(prefix="upc-", dir="/tmp")
    yield d
    import shutil
    shutil.rmtree(d, ignore_errors=True)


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def good_config(tmp, port=None, **kw):
    port = port or free_port()
    return write(os.path.join(tmp, "good.conf"),
                 config_text(port, os.path.join(tmp, "control.sock"), **kw)), port


def error_lines(err):
    return [l for l in err.splitlines() if l.strip()]


# --------------------------------------------------------------- -n, -V, -h

def test_check_config_ok(tmpdir_short):
    conf, port = good_config(tmpdir_short)
    code, out, err = run(["-n", "-c", conf])
    assert code == 0, err
    assert "configuration OK" in out + err
    # -n binds nothing.
    assert not os.path.exists(os.path.join(tmpdir_short, "control.sock"))


def test_check_config_long_option(tmpdir_short):
    conf, _ = good_config(tmpdir_short, model="process")
    code, out, err = run(["--check-config", "-c", conf])
    assert code == 0, err
    assert "configuration OK" in out + err


def test_check_config_shipped_example():
    conf = os.path.join(REPO, "etc", "uppercased.conf")
    if not os.path.exists(conf):
        pytest.skip("etc/uppercased.conf not written yet")
    code, out, err = run(["-n", "-c", conf])
    assert code == 0, err
    assert "configuration OK" in out + err


def test_check_config_syntax_error(tmpdir_short):
    text = config_text(free_port(), os.path.join(tmpdir_short, "c.sock"))
    lines = text.splitlines()
    lines.insert(2, 'broken: { x = = 1; };')
    conf = write(os.path.join(tmpdir_short, "bad.conf"), "\n".join(lines) + "\n")
    code, out, err = run(["-n", "-c", conf])
    assert code == 1, (out, err)
    assert "configuration OK" not in out + err
    assert "%s:3:" % conf in out + err, (out, err)
    assert len(error_lines(err)) == 1, err


@pytest.mark.parametrize("setting,line", [
    ('workers: {\n  threads = 1;\n  model = "sideways";\n};', 3),
    ('timeouts: {\n  idle = "soon";\n};', 2),
    ('listen: {\n  backlog = 128;\n  tcp = [ "127.0.0.1:99999" ];\n};', 3),
    ('workers: {\n  max_connections = "many";\n};', 2),
], ids=["model", "idle", "port", "type"])
def test_check_config_bad_value(tmpdir_short, setting, line):
    conf = write(os.path.join(tmpdir_short, "bad.conf"), setting + "\n")
    code, out, err = run(["-n", "-c", conf])
    assert code == 1, (out, err)
    assert "%s:%d:" % (conf, line) in out + err, (out, err)
    assert len(error_lines(err)) == 1, err


def test_missing_config_file(tmpdir_short):
    conf = os.path.join(tmpdir_short, "nope.conf")
    code, out, err = run(["-n", "-c", conf])
    assert code == 1
    assert conf in err
    code, out, err = run(["-c", conf])
    assert code == 1
    assert conf in err
    assert len(error_lines(err)) == 1, err


def test_unknown_option_is_usage_error():
    code, out, err = run(["--no-such-option"])
    assert code == 2
    assert "usage" in err.lower(), err
    assert out == ""


def test_bad_model_is_rejected(tmpdir_short):
    conf, _ = good_config(tmpdir_short)
    code, out, err = run(["-n", "-c", conf, "-m", "sideways"])
    assert code in (1, 2), (code, err)
    assert "sideways" in err


def test_version():
    with open(os.path.join(REPO, "VERSION")) as f:
        version = f.read().strip()
    for opt in ("-V", "--version"):
        code, out, err = run([opt])
        assert code == 0
        assert version in out, (out, err)


def test_help():
    code, out, err = run(["--help"])
    assert code == 0
    assert "usage" in out.lower(), out
    for opt in ("-c", "-m", "--tcp", "--udp", "-n"):
        assert opt in out, opt


# ------------------------------------------------------------ start-up errors

def test_tcp_port_in_use(tmpdir_short):
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    port = blocker.getsockname()[1]
    try:
        conf = write(os.path.join(tmpdir_short, "u.conf"),
                     config_text(port, os.path.join(tmpdir_short, "c.sock"),
                                 udp=["127.0.0.1:%d" % free_port()]))
        code, out, err = run(["-c", conf])
    finally:
        blocker.close()
    assert code == 1, (code, err)
    errors = [l for l in err.splitlines() if l.startswith("error:")]
    assert len(errors) == 1, err
    assert "127.0.0.1:%d" % port in errors[0], err
    # It did not leave its control socket behind.
    assert not os.path.exists(os.path.join(tmpdir_short, "c.sock"))


def test_udp_port_in_use(tmpdir_short):
    blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    blocker.bind(("127.0.0.1", 0))
    port = blocker.getsockname()[1]
    try:
        conf = write(os.path.join(tmpdir_short, "u.conf"),
                     config_text(free_port(), os.path.join(tmpdir_short, "c.sock"),
                                 udp=["127.0.0.1:%d" % port]))
        code, out, err = run(["-c", conf])
    finally:
        blocker.close()
    assert code == 1, (code, err)
    errors = [l for l in err.splitlines() if l.startswith("error:")]
    assert len(errors) == 1, err
    assert "127.0.0.1:%d" % port in errors[0], err


# ------------------------------------------------- command-line overrides

def test_command_line_listen_overrides_config(daemon_factory):
    """--tcp/--udp replace the config's lists."""
    q = free_port()
    p = free_port()
    while p == q:
        p = free_port()
    d = daemon_factory(start=False, tcp=["127.0.0.1:%d" % q], udp=["127.0.0.1:%d" % q])
    d.args = ["--tcp", "127.0.0.1:%d" % p, "--udp", "127.0.0.1:%d" % p]
    d.start(retry_in_use=False)
    d.port = p
    s = d.tcp_connect()
    s.sendall(b"override\n")
    assert recv_exact(s, 9) == b"OVERRIDE\n"
    s.close()
    assert d.udp_exchange(b"override") == b"OVERRIDE"
    with pytest.raises(ConnectionRefusedError):
        d.tcp_connect(port=q).close()


def test_binds_exactly_configured_ports(daemon):
    ports = socket_ports(daemon.pid)
    listening = {p for proto, ip, p, st in ports if proto.startswith("tcp") and st == "0A"}
    udp = {p for proto, ip, p, st in ports if proto.startswith("udp")}
    assert listening == {daemon.port}, ports
    assert udp == {daemon.port}, ports


# ------------------------------------------------------- socket activation

def activated(daemon_factory, model, names="tcp:udp:control"):
    """A daemon started through activate.py on a port P, with a config that
    names another port Q.  Returns (daemon, Q)."""
    m, args = model
    q = free_port()
    d = daemon_factory(model=m, args=args, activate=True, activate_names=names,
                       avoid_ports={q}, start=False,
                       tcp=["127.0.0.1:%d" % q], udp=["127.0.0.1:%d" % q])
    d.start(retry_in_use=False)
    return d, q


@pytest.mark.parametrize("names", ["tcp:udp:control", ""], ids=["named", "unnamed"])
def test_socket_activation(daemon_factory, model, names):
    d, q = activated(daemon_factory, model, names)
    p = d.port
    assert p != q
    # TCP and UDP on the passed port P work.
    s = d.tcp_connect()
    s.sendall("attivato perché sì\n".encode())
    exp = "ATTIVATO PERCHÉ SÌ\n".encode()
    assert recv_exact(s, len(exp)) == exp
    s.close()
    assert d.udp_exchange(b"udp attivato") == b"UDP ATTIVATO"
    # Nothing on the configured port Q.
    with pytest.raises(ConnectionRefusedError):
        d.tcp_connect(port=q).close()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.settimeout(1.0)
        u.connect(("127.0.0.1", q))
        u.send(b"anyone?")
        with pytest.raises((ConnectionRefusedError, socket.timeout)):
            u.recv(100)
    # The daemon (same pid as the launcher) holds sockets on P only.
    ports = socket_ports(d.pid)
    listening = {pp for proto, ip, pp, st in ports if proto.startswith("tcp") and st == "0A"}
    udp = {pp for proto, ip, pp, st in ports if proto.startswith("udp")}
    assert listening == {p}, ports
    assert udp == {p}, ports
    # It did not create the configured control socket either.
    assert not os.path.exists(d.control)
    assert os.path.exists(d.activate_control)


def test_socket_activation_control_answers(daemon_factory):
    """The passed UNIX socket is the control socket: it answers a line."""
    d, q = activated(daemon_factory, ("event", []))
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.settimeout(SOCK_TIMEOUT)
    try:
        c.connect(d.activate_control)
        c.sendall(b"status\n")
        data = c.recv(4096)
    finally:
        c.close()
    assert data != b"", "no answer on the activated control socket"


def test_activation_without_control_socket_binds_none(tmpdir_short):
    """Passed only a TCP socket, the daemon serves it and creates no control
    socket of its own (it binds nothing itself)."""
    conf, port = good_config(tmpdir_short)
    control = os.path.join(tmpdir_short, "control.sock")
    p = free_port()
    log = open(os.path.join(tmpdir_short, "stderr"), "w+")
    env = {k: v for k, v in os.environ.items() if k not in ("JOURNAL_STREAM", "NOTIFY_SOCKET")}
    proc = subprocess.Popen(["systemd-socket-activate", "-l", "127.0.0.1:%d" % p,
                             BINARY, "-c", conf], stdout=log, stderr=log, env=env)
    try:
        reply = b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and reply != b"CIAO":
            try:
                with socket.create_connection(("127.0.0.1", p), timeout=SOCK_TIMEOUT) as s:
                    s.sendall(b"ciao")
                    s.shutdown(socket.SHUT_WR)
                    reply = s.recv(16)
            except OSError:
                time.sleep(0.1)
        assert reply == b"CIAO"
        log.seek(0)
        text = log.read()
        assert "No control socket was passed" in text, text
        assert not os.path.exists(control)
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        log.close()


def test_check_config_says_built_in_defaults(tmpdir_short):
    """-n without a file says what it checked: the built-in defaults, since
    the default path does not exist (a lab machine without the package)."""
    code, out, err = run(["-h"])
    default = [l for l in out.splitlines() if "--config FILE" in l][0]
    path = default.split("(default ", 1)[1].rstrip(")")
    if os.path.exists(path):
        pytest.skip("%s exists here" % path)
    code, out, err = run(["-n"])
    assert code == 0, err
    assert out == "configuration OK: built-in defaults (no %s)\n" % path, out


def test_check_config_names_the_file(tmpdir_short):
    conf, _ = good_config(tmpdir_short)
    code, out, err = run(["-n", "-c", conf])
    assert (code, out) == (0, "configuration OK: %s\n" % conf), (out, err)


def test_control_option_ignored_when_activated_is_said(daemon_factory, tmpdir_short):
    """--control given to a socket-activated daemon: one warning at start,
    and the passed socket stays the control socket."""
    other = os.path.join(tmpdir_short, "other.sock")
    d, q = activated(daemon_factory, ("event", ["--control", other]))
    d.wait_log("running: event model, socket activated")
    warning = "warning: --control ignored: socket activated, the control socket is the one passed"
    lines = d.log().splitlines()
    assert lines.count(warning) == 1, d.log()
    assert not os.path.exists(other)
    assert os.path.exists(d.activate_control)
