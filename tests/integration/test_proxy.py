# SPDX-License-Identifier: MIT
"""Proxied listeners (uppercased.conf(5), "proxy"; uppercased(8), --proxy-tcp):
every connection starts with a PROXY protocol header (v1 or v2) from a
trusted balancer, and the client it names is the client everywhere: the
log, the per-source limits, uppercasectl connections, the hand-over.  In
every worker model.

The "balancer" here is the test itself, on 127.0.0.1; the clients it names
are documentation addresses (192.0.2.0/24, 198.51.100.0/24)."""

import json
import socket
import struct
import time

import pytest

from conftest import SOCK_TIMEOUT, free_port, recv_exact, recv_until_eof
from test_control import ctl, ctl_json, ctl_ok, stats, wait_stats
from test_handover import control, store_daemon  # noqa: F401 (a fixture)

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v1(src, sport, dst="10.0.0.1", dport=12000):
    fam = "TCP6" if ":" in src else "TCP4"
    return ("PROXY %s %s %s %d %d\r\n" % (fam, src, dst, sport, dport)).encode()


def v2(src, sport, dst="10.0.0.1", dport=12000, tlvs=b""):
    if ":" in src:
        fam, addrs = 0x21, socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
    else:
        fam, addrs = 0x11, socket.inet_aton(src) + socket.inet_aton(dst)
    body = addrs + struct.pack("!HH", sport, dport) + tlvs
    return V2_SIG + bytes([0x21, fam]) + struct.pack("!H", len(body)) + body


V2_LOCAL = V2_SIG + bytes([0x20, 0x00]) + b"\x00\x00"
V1_UNKNOWN = b"PROXY UNKNOWN\r\n"


def proxied(model, daemon_factory, **config):
    """A daemon with a proxied listener on 127.0.0.1 (trusting loopback
    unless told otherwise), its port in d.proxy_port."""
    port = free_port()
    config.setdefault("proxy_trusted", ["127.0.0.0/8"])
    d = daemon_factory(model[0], model[1], proxy_listen=["127.0.0.1:%d" % port], **config)
    d.proxy_port = port
    return d


def balancer_connect(d, source="127.0.0.1"):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(SOCK_TIMEOUT)
    s.bind((source, 0))
    s.connect(("127.0.0.1", d.proxy_port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def one_shot(d, header, text=b"ciao\n", source="127.0.0.1"):
    """Header and text in one write, half-close, read to the end."""
    s = balancer_connect(d, source)
    try:
        s.sendall(header + text)
        s.shutdown(socket.SHUT_WR)
    except OSError:
        pass        # refused at its first bytes, reset already: read says how
    data, how = recv_until_eof(s)
    port = s.getsockname()[1]
    s.close()
    return data, how, port


def logged_line(d, line):
    """line is a whole line of the daemon's log (waited for)."""
    d.wait_log(line)
    return line in d.log().splitlines()


def refused(s):
    """The daemon closed s without a byte."""
    data, how = recv_until_eof(s, timeout=10)
    return data == b"" and how in ("eof", "reset")


# --------------------------------------------------------------------------
# the header, and the client it names

def test_v1_names_the_client(model, daemon_factory):
    d = proxied(model, daemon_factory)
    data, how, port = one_shot(d, v1("192.0.2.7", 40512), b"ciao\nperch\xc3\xa9\n")
    assert (data, how) == ("CIAO\nPERCHÉ\n".encode(), "eof")
    assert logged_line(d, "tcp connection from 192.0.2.7 port 40512 via 127.0.0.1 port %d" % port)
    assert d.wait_log("tcp connection from 192.0.2.7 port 40512 via 127.0.0.1 port %d closed (eof)" % port)
    st = stats(d)
    assert (st["proxy"]["v1"], st["proxy"]["v2"], st["tcp"]["accepted"]) == (1, 0, 1), st


def test_v2_with_tlvs_names_the_client(model, daemon_factory):
    """TLVs are skipped by their length; the bytes after the header, in the
    same segment, are the client's."""
    d = proxied(model, daemon_factory)
    tlvs = b"\x04\x00\x05abcde" + b"\x01\x00\x02h2"   # PP2_TYPE_NOOP, PP2_TYPE_ALPN
    data, how, port = one_shot(d, v2("198.51.100.9", 5555, tlvs=tlvs), b"hello\n")
    assert (data, how) == (b"HELLO\n", "eof")
    assert logged_line(d, "tcp connection from 198.51.100.9 port 5555 via 127.0.0.1 port %d" % port)
    assert stats(d)["proxy"]["v2"] == 1


def test_v2_ipv6_client(model, daemon_factory):
    d = proxied(model, daemon_factory)
    data, how, port = one_shot(d, v2("2001:db8::7", 443, dst="2001:db8::1"))
    assert (data, how) == (b"CIAO\n", "eof")
    assert logged_line(d, "tcp connection from 2001:db8::7 port 443 via 127.0.0.1 port %d" % port)


def test_header_in_pieces(model, daemon_factory):
    """A header that arrives a few bytes at a time is waited for."""
    d = proxied(model, daemon_factory)
    s = balancer_connect(d)
    header = v2("192.0.2.8", 1000)
    for i in range(0, len(header), 5):
        s.sendall(header[i:i + 5])
        time.sleep(0.02)
    s.sendall(b"ciao\n")
    assert recv_exact(s, 5) == b"CIAO\n"
    s.sendall(b".\n")
    assert recv_until_eof(s) == (b"", "eof")
    assert d.wait_log("tcp connection from 192.0.2.8 port 1000 via")


def test_persistent_session_through_header(model, daemon_factory):
    d = proxied(model, daemon_factory)
    s = balancer_connect(d)
    s.sendall(v1("192.0.2.9", 2000))
    for word in (b"uno\n", b"due\n"):
        s.sendall(word)
        assert recv_exact(s, len(word)) == word.upper()
    listing = ctl_ok(d, "connections")
    assert "192.0.2.9:2000" in listing, listing
    conns = ctl_json(d, "connections")["connections"]
    assert [(c["address"], c["port"], c["via"]) for c in conns] == [
        ("192.0.2.9", 2000, "127.0.0.1:%d" % s.getsockname()[1])], conns
    s.sendall(b".\n")
    assert recv_until_eof(s) == (b"", "eof")


@pytest.mark.parametrize("header", [V2_LOCAL, V1_UNKNOWN], ids=["v2-local", "v1-unknown"])
def test_health_check_is_served_unlogged(model, daemon_factory, header):
    """HAProxy's checks (v2 LOCAL) and v1 UNKNOWN: served with the socket's
    own addresses, counted as health checks, not logged as clients."""
    d = proxied(model, daemon_factory)
    data, how, port = one_shot(d, header)
    assert (data, how) == (b"CIAO\n", "eof")
    st = wait_stats(d, lambda st: st["tcp"]["closed_eof"] == 1)
    assert st["proxy"]["health_checks"] == 1, st
    assert "port %d" % port not in d.log(), d.log()


# --------------------------------------------------------------------------
# refusals: closed unanswered, counted, logged

def test_untrusted_peer_is_refused(model, daemon_factory):
    """A peer outside proxy.trusted may not name a client: a forged header
    from it gets nothing."""
    d = proxied(model, daemon_factory, proxy_trusted=["127.0.0.2"])
    s = balancer_connect(d, source="127.0.0.3")
    port = s.getsockname()[1]
    s.sendall(v1("192.0.2.66", 1) + b"ciao\n")
    assert refused(s)
    assert d.wait_log("tcp connection from 127.0.0.3 port %d closed unanswered: "
                      "PROXY header refused: peer not in proxy.trusted" % port)
    # The trusted one is served.
    assert one_shot(d, v1("192.0.2.67", 2), source="127.0.0.2")[:2] == (b"CIAO\n", "eof")
    st = stats(d)
    assert (st["proxy"]["refused_untrusted"], st["tcp"]["accepted"]) == (1, 1), st


@pytest.mark.parametrize("first", [b"CIAO\n", b"PROXY TCP4 192.0.2.1\r\n", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n",
                                   V2_SIG + b"\x31"],
                         ids=["plain-client", "short-v1", "bad-port", "bad-v2-version"])
def test_malformed_header_is_refused(model, daemon_factory, first):
    d = proxied(model, daemon_factory)
    s = balancer_connect(d)
    port = s.getsockname()[1]
    try:
        s.sendall(first + b"ciao\n")
    except OSError:
        pass                    # already reset: refused at the first bytes
    assert refused(s)
    assert d.wait_log("tcp connection from 127.0.0.1 port %d closed unanswered: no valid PROXY header" % port)
    st = stats(d)
    assert (st["proxy"]["refused_malformed"], st["tcp"]["accepted"]) == (1, 0), st


def test_peer_ending_before_the_header_is_refused(model, daemon_factory):
    d = proxied(model, daemon_factory)
    s = balancer_connect(d)
    s.sendall(b"PROXY TCP4 192.0.2.1 ")
    s.shutdown(socket.SHUT_WR)
    t0 = time.monotonic()
    assert refused(s)
    # At once, not at the timeout.
    assert time.monotonic() - t0 < 2.5
    assert wait_stats(d, lambda st: st["proxy"]["refused_malformed"] == 1)["proxy"]["refused_malformed"] == 1


@pytest.mark.parametrize("partial", [b"", b"PROXY TCP4 192.0.2.1"], ids=["silent", "incomplete"])
def test_header_timeout(model, daemon_factory, partial):
    d = proxied(model, daemon_factory, proxy_timeout="500ms")
    s = balancer_connect(d)
    port = s.getsockname()[1]
    s.sendall(partial)
    t0 = time.monotonic()
    assert refused(s)
    took = time.monotonic() - t0
    assert 0.3 < took < 3, took
    assert d.wait_log("tcp connection from 127.0.0.1 port %d closed unanswered: "
                      "no PROXY header within 0.5 s" % port)
    assert stats(d)["proxy"]["refused_timeout"] == 1


def test_waiting_headers_do_not_stop_others(model, daemon_factory):
    """Many silent balancer connections wait; a header on another is
    served meanwhile, and the plain listener too."""
    d = proxied(model, daemon_factory)
    silent = [balancer_connect(d) for _ in range(20)]
    assert one_shot(d, v1("192.0.2.10", 10))[:2] == (b"CIAO\n", "eof")
    c = socket.create_connection(("127.0.0.1", d.port), timeout=SOCK_TIMEOUT)
    c.sendall(b"diretto\n")
    assert recv_exact(c, 8) == b"DIRETTO\n"
    c.close()
    for s in silent:
        s.close()


# --------------------------------------------------------------------------
# limits key on the real client

def test_per_source_limit_keys_on_the_named_client(model, daemon_factory):
    """Behind the balancer, one greedy client does not starve a polite one:
    the limit counts the clients the headers name, not the balancer."""
    d = proxied(model, daemon_factory, tcp_per_source=3, exempt=[])
    greedy = []
    for i in range(3):
        s = balancer_connect(d)
        s.sendall(v1("192.0.2.100", 1000 + i) + b"x\n")
        assert recv_exact(s, 2) == b"X\n"
        greedy.append(s)
    over = balancer_connect(d)
    over.sendall(v1("192.0.2.100", 1003) + b"x\n")
    assert refused(over)
    assert d.wait_log("tcp connection from 192.0.2.100 port 1003 via 127.0.0.1 port %d "
                      "rejected: per-source limit reached" % over.getsockname()[1])
    for i in range(3):
        assert one_shot(d, v2("192.0.2.200", 2000 + i))[:2] == (b"CIAO\n", "eof")
    assert stats(d)["tcp"]["rejected_per_source"] == 1
    for s in greedy:
        s.close()


def test_health_checks_are_not_limited_per_source(model, daemon_factory):
    d = proxied(model, daemon_factory, tcp_per_source=1, exempt=[])
    checks = []
    for _ in range(3):
        s = balancer_connect(d)
        s.sendall(V2_LOCAL + b"ok\n")
        assert recv_exact(s, 3) == b"OK\n"
        checks.append(s)
    # Nor do they count against the clients.
    assert one_shot(d, v1("192.0.2.11", 11))[:2] == (b"CIAO\n", "eof")
    for s in checks:
        s.close()


# --------------------------------------------------------------------------
# configuration, reload, outputs

def test_check_config_requires_trusted(tmp_path):
    from conftest import BINARY
    import subprocess
    conf = tmp_path / "u.conf"
    conf.write_text('# a proxied listener\nproxy: {\n  listen = [ "127.0.0.1:12001" ];\n};\n')
    p = subprocess.run([BINARY, "-n", "-c", str(conf)], capture_output=True, text=True, timeout=10)
    assert p.returncode == 1
    assert p.stderr == ("%s:3: proxy.listen: proxied listeners but proxy.trusted is empty: "
                        "list the balancers that may send a PROXY header\n" % conf), p.stderr
    conf.write_text('proxy: {\n  listen = [ "127.0.0.1:12001" ];\n  trusted = [ "10.0.0.0/8" ];\n'
                    '  timeout = 0;\n};\n')
    p = subprocess.run([BINARY, "-n", "-c", str(conf)], capture_output=True, text=True, timeout=10)
    assert p.returncode == 1 and "proxy.timeout is 0" in p.stderr, p.stderr
    # --proxy-tcp on the command line is checked the same way.
    conf.write_text("")
    p = subprocess.run([BINARY, "-n", "-c", str(conf), "--proxy-tcp", "127.0.0.1:12001"],
                       capture_output=True, text=True, timeout=10)
    assert p.returncode == 1 and "proxy.trusted is empty" in p.stderr, p.stderr


def test_command_line_listener(daemon_factory):
    port = free_port()
    d = daemon_factory("event", ["--proxy-tcp", "127.0.0.1:%d" % port], proxy_trusted=["127.0.0.1"])
    d.proxy_port = port
    assert one_shot(d, v1("192.0.2.12", 12))[:2] == (b"CIAO\n", "eof")
    assert "tcp 127.0.0.1:%d (PROXY protocol)" % port in ctl_ok(d, "status")


def test_reload_changes_trusted_and_timeout(daemon_factory):
    d = proxied(("event", []), daemon_factory, proxy_trusted=["192.0.2.0/24"])
    s = balancer_connect(d)
    s.sendall(v1("192.0.2.13", 13))
    assert refused(s)
    d.config.update(proxy_trusted=["127.0.0.1"], proxy_timeout="1s")
    d.write_config()
    assert ctl_ok(d, "reload") == "configuration reloaded\n"
    assert one_shot(d, v1("192.0.2.13", 13))[:2] == (b"CIAO\n", "eof")
    st = stats(d)
    assert st["proxy"]["timeout"] == 1 and st["proxy"]["trusted"] == ["127.0.0.1"], st


def test_stats_outputs(daemon_factory):
    """The counters in every output format; and only with proxied listeners."""
    d = proxied(("event", []), daemon_factory)
    one_shot(d, v1("192.0.2.14", 14))
    one_shot(d, V2_LOCAL)
    one_shot(d, b"nope\n")
    wait_stats(d, lambda st: st["proxy"]["refused_malformed"] == 1)
    human = ctl_ok(d, "stats")
    assert "PROXY protocol" in human and "health checks" in human, human
    j = json.loads(ctl(d.control, "--json", "stats").stdout)
    assert j["proxy"]["v1"] == 1 and j["proxy"]["health_checks"] == 1, j
    prom = ctl(d.control, "--prometheus", "stats").stdout
    assert 'uppercased_proxy_headers_total{' in prom and 'version="1"} 1' in prom, prom
    assert 'reason="malformed"} 1' in prom, prom
    assert "uppercased_proxy_health_checks_total" in prom


def test_no_proxy_section_without_proxied_listeners(daemon):
    assert "proxy" not in stats(daemon)
    assert "PROXY" not in ctl_ok(daemon, "stats")


# --------------------------------------------------------------------------
# socket activation, and the hand-over across a restart

def test_socket_activated_proxy_listener(daemon_factory):
    """systemd passes the proxied listener as a stream socket named "proxy"
    (FileDescriptorName=proxy); without proxy.trusted the daemon refuses to
    start rather than serve it unchecked."""
    d = daemon_factory("event", activate=True, activate_names="tcp:udp:control:proxy",
                       activate_proxy=True, proxy_trusted=["127.0.0.1"])
    assert one_shot(d, v2("192.0.2.20", 20))[:2] == (b"CIAO\n", "eof")
    assert d.wait_log("tcp connection from 192.0.2.20 port 20 via 127.0.0.1")
    # The plain listener stays plain.
    c = socket.create_connection(("127.0.0.1", d.port), timeout=SOCK_TIMEOUT)
    c.sendall(b"PROXY TCP4 192.0.2.21 10.0.0.1 21 12000\r\n")
    assert recv_exact(c, 6) == b"PROXY "
    c.close()

    bad = daemon_factory("event", start=False, activate=True, activate_names="tcp:udp:control:proxy",
                         activate_proxy=True)
    with pytest.raises(Exception):
        bad.start()
    assert ('Refusing to serve the sockets named "proxy": proxied listeners but proxy.trusted is empty'
            in bad.log(everything=True))


@pytest.mark.parametrize("model_name", ["event", "thread"])
def test_restart_keeps_the_named_client(store_daemon, model_name):
    """A proxied connection handed over across a restart is still the client
    its header named, behind the same balancer."""
    d = store_daemon(model_name, activate_names="tcp:udp:control:proxy", activate_proxy=True,
                     proxy_trusted=["127.0.0.1"])
    s = balancer_connect(d)
    s.sendall(v1("192.0.2.30", 3030) + b"prima\n")
    assert recv_exact(s, 6) == b"PRIMA\n"
    d.restart()
    assert d.wait_log("tcp connection from 192.0.2.30 port 3030 via 127.0.0.1 port %d resumed after a restart"
                      % s.getsockname()[1])
    s.sendall(b"dopo\n")
    assert recv_exact(s, 5) == b"DOPO\n"
    assert "192.0.2.30" in control(d, "connections")
    s.sendall(b".\n")
    assert recv_until_eof(s) == (b"", "eof")


def test_reload_keeps_trusted_for_passed_sockets(daemon_factory):
    """Under socket activation the file need not list the proxied sockets,
    but a reload that empties proxy.trusted is refused all the same."""
    d = daemon_factory("event", activate=True, activate_names="tcp:udp:control:proxy",
                       activate_proxy=True, proxy_trusted=["127.0.0.1"])
    d.config.update(proxy_trusted=[])
    d.write_config()
    p = ctl(d.activate_control, "reload")
    assert p.returncode != 0 and "proxy.trusted is empty" in p.stderr, (p.stdout, p.stderr)
    assert one_shot(d, v1("192.0.2.40", 40))[:2] == (b"CIAO\n", "eof")
