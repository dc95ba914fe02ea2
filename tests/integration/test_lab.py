# SPDX-License-Identifier: MIT
"""Keeps docs/lab.md true: follows the guide against the real daemon and
client, section by section, and compares every output the guide pastes
with what its command prints now.

The guide is read generically: its fenced blocks in order, ```console
blocks split into commands ("$ " or "# ") and their outputs, plain ```
blocks (what terminal 1 prints, the terminals of a session) by their place
in their section.  Blocks under a line "**[systemd]**" are not run.  Every
other pasted output has a key ("3 $ uppercase -u localhost ciao #2",
"3 listing 0") and an owner in OUTPUTS below: the test that compares it.
test_every_output_has_an_owner fails when the guide pastes an output no
test compares, and each test fails unless it compared all it owns.  So
re-pasting a changed output is all a change of wording needs, and drift
fails.

The comparison is exact, line by line, after norm(): runs of blanks are one
blank (column widths follow the numbers), and what differs from run to run
is masked: PIDs, client ports, times and durations.  Commands are
translated to the test daemon (its free port for 12000, a port with nothing
on it for 12001, its control socket, its PID), outputs back.  Every wait is
bounded; the only processes signalled are the ones started here, by PID."""

import os
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

from conftest import BUILD, REPO, free_port, wait_for
from test_client import Terminal

GUIDE_PATH = os.path.join(REPO, "docs", "lab.md")
SHIPPED_CONFIG = os.path.join(REPO, "etc", "uppercased.conf")
CMD_TIMEOUT = 30
SYSTEMD_MARK = "**[systemd]**"


# ------------------------------------------------------------ the guide, read

class Block:
    def __init__(self, kind, lines, section, systemd):
        self.kind, self.lines, self.section, self.systemd = kind, lines, section, systemd


def parse_guide(text):
    """The fenced blocks, in order."""
    blocks, section, lines, i, since = [], 0, text.splitlines(), 0, []
    while i < len(lines):
        line = lines[i]
        m = re.match(r"^## (\d+)\.", line)
        if m:
            section = int(m.group(1))
        m = re.match(r"^```(\w*)$", line)
        if not m:
            since.append(line)
            i += 1
            continue
        j = i + 1
        while lines[j] != "```":
            j += 1
        blocks.append(Block(m.group(1) or "listing", lines[i + 1:j], section, SYSTEMD_MARK in since))
        since, i = [], j + 1
    return blocks


def console_items(block):
    """[(command, output lines)] of a console block."""
    items = []
    for line in block.lines:
        if line.startswith(("$ ", "# ")):
            items.append((line[2:], []))
        else:
            assert items, "output before any command in a console block: %r" % line
            items[-1][1].append(line)
    return items


def pasted_outputs(text):
    """{key: lines} for every output the guide pastes outside [systemd]
    blocks: the non-empty output of a command, every plain listing."""
    outputs, seen, listings = {}, {}, {}
    for b in parse_guide(text):
        if b.systemd:
            continue
        if b.kind == "console":
            for cmd, out in console_items(b):
                n = seen.get((b.section, cmd), 0)
                seen[(b.section, cmd)] = n + 1
                if out:
                    outputs["%d $ %s%s" % (b.section, cmd, " #%d" % n if n else "")] = out
        elif b.kind == "listing":
            n = listings.get(b.section, 0)
            listings[b.section] = n + 1
            outputs["%d listing %d" % (b.section, n)] = b.lines
    return outputs


# Who compares each output: the test's name, or why nothing can (said in the
# guide too).
OUTPUTS = {
    "1 listing 0": "test_sections_1_to_6",
    "1 $ uppercased -c etc/uppercased.conf": "test_sections_1_to_6",
    "2 $ ss -aut 'sport = :12000'": "test_sections_1_to_6",
    "2 $ ss -autp 'sport = :12000'": "test_sections_1_to_6",
    "2 $ netstat -aut | grep -w 12000": "test_sections_1_to_6",
    "2 $ systemd-socket-activate -l 12000 uppercased -c etc/uppercased.conf": "test_socket_activation_without_systemd",
    "2 $ ss -ltp 'sport = :12000'": "test_socket_activation_without_systemd",
    "2 $ ss -ltp 'sport = :12000' #1": "test_socket_activation_without_systemd",
    "2 $ uppercase localhost ciao": "test_socket_activation_without_systemd",
    "2 listing 0": "test_socket_activation_without_systemd",
    "3 $ uppercase -u localhost ciao": "test_sections_1_to_6",
    "3 $ uppercase -u localhost ciao #1": "test_sections_1_to_6",
    "3 $ uppercase -u localhost ciao #2": "test_sections_1_to_6",
    "3 $ uppercase localhost ciao mondo": "test_sections_1_to_6",
    "3 $ uppercase ::1 ciao": "test_sections_1_to_6",
    "3 listing 0": "test_sections_1_to_6",
    "4 $ uppercase -u localhost 12001 ciao; echo \"exit status $?\"": "test_sections_1_to_6",
    "4 $ uppercase localhost 12001 ciao; echo \"exit status $?\"": "test_sections_1_to_6",
    "4 $ uppercasectl status | grep PID": "test_sections_1_to_6",
    "4 $ time uppercase -u localhost ciao": "test_sections_1_to_6",
    "4 $ uppercase -w 3 localhost ciao; echo \"exit status $?\"": "test_sections_1_to_6",
    "4 listing 0": "test_sections_1_to_6",
    "5 $ uppercasectl stats | sed -n '/^UDP/,/^$/p'": "test_sections_1_to_6",
    "5 $ uppercase -u localhost ancora vivo": "test_sections_1_to_6",
    "5 listing 0": "test_sections_1_to_6",
    "6 $ uppercase localhost ciao": "test_sections_1_to_6",
    "6 $ uppercase -n localhost ciao | od -c": "test_sections_1_to_6",
    "6 listing 0": "test_sections_1_to_6",
    "6 $ uppercase": "test_sections_1_to_6",
    "6 $ echo \"exit status $?\"": "test_sections_1_to_6",
    "6 listing 1": "test_sections_1_to_6",
    "6 $ printf 'ciao\\nbuongiorno\\n.\\nquesta riga non arriva\\n' | uppercase": "test_sections_1_to_6",
    "6 listing 2": "test_sections_1_to_6",
    "7 $ uppercasectl connections": "test_several_clients_at_once[event]",
    "7 $ uppercasectl connections #1": "test_several_clients_at_once[event]",
    "7 $ uppercasectl stats | sed -n '/^TCP/,/^$/p'": "test_several_clients_at_once[event]",
    "7 listing 0": "test_several_clients_at_once[event]",
    "7 listing 1": "test_several_clients_at_once[event]",
    "7 $ uppercasectl connections #2": "test_several_clients_at_once[thread]",
    "7 $ ps -T -o pid,spid,comm -p 19450": "test_several_clients_at_once[thread]",
    "7 $ uppercasectl connections #3": "test_several_clients_at_once[process]",
    "7 $ ps -o pid,ppid,comm --ppid 19520": "test_several_clients_at_once[process]",
    "7 $ ps -o pid,ppid,comm --ppid 19521": "test_several_clients_at_once[process]",
    "8 $ grep -E '^ *(backlog|max_workers) =' /tmp/backlog.conf": "test_backlog",
    "8 $ ss -lnt 'sport = :12000'": "test_backlog",
    "8 $ uppercase localhost secondo; echo \"exit status $?\"": "test_backlog",
    "8 $ uppercase localhost terzo; echo \"exit status $?\"": "test_backlog",
    "8 $ ss -lnt 'sport = :12000' #1": "test_backlog",
    "8 $ uppercasectl stats | grep -E 'active|accepted|rejected'": "test_backlog",
    "8 $ uppercasectl status | grep PID": "test_backlog",
    "8 $ for i in 1 2 3 4; do uppercase -w 3 localhost client $i & sleep 0.2; done; sleep 1; ss -tn 'dport = :12000'; ss -lnt 'sport = :12000'; wait": "test_backlog",
    "8 $ uppercasectl stats | grep -E 'active|accepted|rejected|closed'": "test_backlog",
    "9 $ uppercasectl status | grep PID": "test_hundred_one_byte_sends",
    "9 $ uppercasectl stats | grep -E 'accepted|received|sent' | head -3": "test_hundred_one_byte_sends",
    "9 $ python3 hundred.py": "test_hundred_one_byte_sends",
    "9 $ python3 hundred.py 0.01": "test_hundred_one_byte_sends",
    "9 $ uppercasectl stats | grep -E 'accepted|received|sent' | head -3 #1": "test_hundred_one_byte_sends",
    "9 listing 0": "test_hundred_one_byte_sends",
    # strace's view of the server's reads, as counted by awk: how many reads
    # merged depends on timing; the test checks that the totals hold.
    "9 $ awk '$NF ~ /^[0-9]+$/ { print \"read\", $NF, \"bytes\" }' /tmp/recv.txt | sort | uniq -c | sort -rn": "test_hundred_one_byte_sends",
    "9 $ awk '$NF ~ /^[0-9]+$/ { print \"read\", $NF, \"bytes\" }' /tmp/recv.txt | sort | uniq -c | sort -rn #1": "test_hundred_one_byte_sends",
    "10 $ uppercasectl status | grep -E 'PID|model|Connections'": "test_event_model_threads",
    "10 $ ps -T -o pid,spid,comm -p 22013": "test_event_model_threads",
    "10 $ uppercasectl connections": "test_process_model_worker_dies_alone",
    "10 $ uppercasectl stats | grep -E 'active|died'": "test_process_model_worker_dies_alone",
    "10 listing 0": "test_process_model_worker_dies_alone",
    "10 listing 1": "test_process_model_worker_dies_alone",
}

MASKS = [
    (re.compile(r"pid=\d+"), "pid=#"),
    (re.compile(r"fd=\d+"), "fd=#"),
    (re.compile(r"\b\d+/(uppercased|systemd)"), r"#/\1"),
    (re.compile(r"\bport (?!1200[01]\b)\d+"), "port #"),
    (re.compile(r"((?:\d{1,3}\.){3}\d{1,3}|localhost|\]):(?!1200[01]\b)\d+\b"), r"\1:#"),
    (re.compile(r"\b\d+\.\d{3} s\b"), "# s"),              # a connection's duration
    (re.compile(r"\b\d+\.\ds\b"), "#s"),                    # AGE, IDLE
    (re.compile(r"\b\dm\d+\.\d{3}s\b"), "#m#s"),            # time(1)
    (re.compile(r"^(PID:\s+)\d+$"), r"\1#"),
    (re.compile(r"^\s*\d+\s+\d+\s+uppercased(-fork)?$"), r"# # uppercased\1"),      # ps
    (re.compile(r"(\d B\s+)[1-9]\d*$"), r"\1#"),            # WORKER: a thread id, a PID
    (re.compile(r"\bprocess \d+\b"), "process #"),
]


def norm(lines):
    out = []
    for line in lines:
        for pattern, repl in MASKS:
            line = pattern.sub(repl, line)
        out.append(re.sub(r"[ \t]+", " ", line).strip())
    return out


class Guide:
    """The guide's pasted outputs, and which of them this test compared."""

    def __init__(self, text):
        self.text = text
        self.outputs = pasted_outputs(text)
        self.compared = set()

    def has(self, cmd):
        return any(cmd in (l[2:] for l in b.lines if l.startswith(("$ ", "# ")))
                   for b in parse_guide(self.text) if b.kind == "console")

    def compare(self, key, actual, unordered=False):
        assert key in self.outputs, "docs/lab.md pastes no output for %s" % key
        want, got = norm(self.outputs[key]), norm(actual)
        if unordered:
            want, got = sorted(want), sorted(got)
        assert got == want, "docs/lab.md, %s:\n--- pasted\n%s\n--- now\n%s" % (
            key, "\n".join(self.outputs[key]), "\n".join(actual))
        self.compared.add(key)

    def all_compared(self, owner):
        missing = sorted(k for k, o in OUTPUTS.items() if o == owner and k not in self.compared)
        assert not missing, "%s compared no output for: %s" % (owner, missing)


@pytest.fixture
def guide():
    with open(GUIDE_PATH, encoding="utf-8") as f:
        return Guide(f.read())


def version():
    with open(os.path.join(REPO, "VERSION")) as f:
        return f.read().strip()


# ------------------------------------------------------------ the guide's commands

class Lab:
    """Runs guide commands against one daemon, translated, in a directory
    of its own holding etc/uppercased.conf."""

    def __init__(self, daemon, tmp_path):
        self.d = daemon
        self.noport = free_port()
        self.cwd = str(tmp_path)
        self.pid_in_guide = None
        if not os.path.exists(os.path.join(self.cwd, "etc")):
            shutil.copytree(os.path.join(REPO, "etc"), os.path.join(self.cwd, "etc"))

    def translate(self, cmd):
        d = self.d
        cmd = cmd.replace("/tmp/", self.cwd + "/")
        cmd = re.sub(r"\b12000\b", str(d.port), cmd)
        cmd = re.sub(r"\b12001\b", str(self.noport), cmd)
        cmd = re.sub(r"\buppercasectl\b", "uppercasectl -s %s" % d.control, cmd)
        if d.proc is not None:
            cmd = re.sub(r"\bkill -(STOP|CONT) \d+", r"kill -\1 %d" % d.pid, cmd)
            # In the guide 19521 is the process model's fork helper.
            helper = d.fork_helper()
            if helper is not None and re.search(r"--ppid 19521$", cmd):
                cmd = re.sub(r"--ppid 19521$", "--ppid %d" % helper, cmd)
            else:
                cmd = re.sub(r"(-p|--ppid) \d+$", r"\1 %d" % d.pid, cmd)

        # uppercase [OPTIONS] [HOST [PORT]]: make the port explicit.
        def add_port(m):
            opts, host, port = m.group(1) or "", m.group(2), m.group(3)
            return "uppercase%s%s%s" % (opts, host or " localhost", port or " %d" % d.port)
        return re.sub(r"\buppercase\b((?:\s+-(?:w\s+\S+|[-\w]+))*)"
                      r"(\s+(?:localhost|::1|127\.0\.0\.1))?(\s+\d+\b)?", add_port, cmd)

    def untranslate(self, text):
        text = text.replace(self.d.control, "/run/uppercased/control.sock")
        text = text.replace(self.cwd + "/", "/tmp/")
        text = re.sub(r"\b%d\b" % self.d.port, "12000", text)
        return re.sub(r"\b%d\b" % self.noport, "12001", text)

    def run(self, guide, cmd, timeout=CMD_TIMEOUT):
        """Runs a command the guide shows; returns its output (stdout and
        stderr, in order), translated back."""
        assert guide.has(cmd), "docs/lab.md no longer shows the command: %s" % cmd
        env = dict(os.environ, LC_ALL="C")
        env["PATH"] = BUILD + os.pathsep + env.get("PATH", "")
        p = subprocess.run(["bash", "-c", "{ %s\n} 2>&1" % self.translate(cmd)],
                           stdout=subprocess.PIPE, cwd=self.cwd, env=env, timeout=timeout)
        return self.untranslate(p.stdout.decode("utf-8", "replace"))

    def check(self, guide, section, cmd, nth=0, unordered=False):
        """Runs cmd and compares its output with the guide's.  A listing of
        sockets (ss, netstat) is taken again when it differs: the kernel
        writes /proc/net/tcp* in pieces, and a socket may go missing from
        one reading while others come and go."""
        key = "%d $ %s%s" % (section, cmd, " #%d" % nth if nth else "")
        sockets = re.match(r"^(ss|netstat) ", cmd) is not None
        attempts = 3 if sockets else 1
        for attempt in range(attempts):
            out = self.run(guide, cmd)
            lines = out.splitlines()
            # Tests run in parallel on one machine leave closed connections
            # (TIME_WAIT) to ports that one of ours may have now.
            if sockets and not any("TIME" in l for l in guide.outputs.get(key, [])):
                lines = [l for l in lines if not re.search(r"\bTIME[-_]WAIT\b", l)]
            try:
                guide.compare(key, lines, unordered=unordered)
                return out
            except AssertionError:
                if attempt == attempts - 1:
                    raise
                time.sleep(0.2)

    def log_since(self, mark):
        """The daemon's lines since mark (a count of lines), translated."""
        return self.untranslate(self.d.log(everything=True)).splitlines()[mark:]

    def log_mark(self):
        return len(self.d.log(everything=True).splitlines())


@pytest.fixture
def lab(tmp_path):
    def make(daemon):
        return Lab(daemon, tmp_path)
    return make


def quiet_port():
    """A free port that no socket uses at all, not even one in TIME_WAIT
    from an earlier test: netstat -a would list it."""
    for _ in range(20):
        port = free_port()
        out = subprocess.run(["ss", "-tuanH"], stdout=subprocess.PIPE, timeout=CMD_TIMEOUT).stdout.decode()
        if not re.search(r":%d\b" % port, out):
            return port
    return port


def shipped_daemon(daemon_factory, model="event", **config):
    """A daemon on the shipped configuration, etc/uppercased.conf, as the
    guide runs it: only the port (a free one on [::] for 12000) and the
    control socket's path (the group stays uppercased) differ."""
    d = daemon_factory(model=model, start=False)     # -m MODEL, as the guide
    d.port = quiet_port()
    with open(SHIPPED_CONFIG) as f:
        text = f.read()
    text = text.replace("12000", str(d.port)).replace("/run/uppercased/control.sock", d.control)
    for name, value in config.items():
        text, n = re.subn(r"(?m)^(\s*%s = )[^;]*;" % name, r"\g<1>%s;" % value, text)
        assert n == 1, name
    d.write_config(text=text)
    d.start(retry_in_use=False)
    return d


def group_exists(name):
    import grp
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def wait_log_lines(lab, mark, n, timeout=5.0):
    assert wait_for(lambda: len(lab.log_since(mark)) >= n, timeout), lab.log_since(mark)
    time.sleep(0.1)         # nothing more should come
    return lab.log_since(mark)


def stats(lab):
    """uppercasectl stats, human output, as {label: value}."""
    p = subprocess.run([os.path.join(BUILD, "uppercasectl"), "-s", lab.d.control, "stats"],
                       stdout=subprocess.PIPE, timeout=CMD_TIMEOUT, check=True)
    got = {}
    for line in p.stdout.decode().splitlines():
        m = re.match(r"^  (\S.*?)\s{2,}(\S+(?: B)?)$", line)
        if m:
            got.setdefault(m.group(1), m.group(2))
    return got


class Session:
    """uppercase on a terminal, typing what the guide shows; its screen as
    the guide pastes it (the prompts and the lines typed included)."""

    def __init__(self, lab, args=("localhost",)):
        self.t = Terminal(list(args) + [lab.d.port])
        self.t.read_until(b"> ")
        self.screen = "> "

    def say(self, line, reply=None):
        self.t.type(line.encode() + b"\n")
        want = (line + "\r\n" + (reply + "\r\n> " if reply is not None else "")).encode()
        got = self.t.read_until(want)
        self.screen += got.decode().replace("\r\n", "\n")

    def end(self, status):
        self.t.type(b".\n")
        assert self.t.wait() == status
        self.screen += (self.t.seen + self.t.rest()).decode().replace("\r\n", "\n")
        self.t.close()

    def lines(self, command="$ uppercase"):
        return [command] + self.screen.rstrip("\n").split("\n")


def sessions_listing(sessions):
    out = []
    for name, s in sessions:
        out.append("---- terminal %s" % name)
        out += s.lines()
    return out


# ------------------------------------------------------------ the guide itself

def test_every_output_has_an_owner(guide):
    """Every output pasted outside [systemd] blocks is compared by a test;
    every key below still names an output of the guide."""
    pasted = set(guide.outputs)
    assert sorted(pasted - set(OUTPUTS)) == [], "outputs no test compares"
    assert sorted(set(OUTPUTS) - pasted) == [], "outputs the guide no longer pastes"


def test_systemd_commands_are_marked(guide):
    """Every systemctl/journalctl command sits in a [systemd] block: those
    are the blocks not run."""
    for b in parse_guide(guide.text):
        if b.kind == "console" and not b.systemd:
            for cmd, _ in console_items(b):
                assert not re.search(r"\b(systemctl|journalctl)\b", cmd), cmd


def test_setup_installs_the_dependencies_first(guide):
    block = next(b for b in parse_guide(guide.text) if b.kind == "console")
    assert [c for c, _ in console_items(block)][:2] == ["make deps", "make"]


def test_frozen_server_is_woken_with_fg(guide):
    """A foreground server frozen by kill -STOP is a stopped job of its
    shell: the guide wakes it with fg, not a kill -CONT that would leave
    it in the background, deaf to Ctrl-C."""
    for b in parse_guide(guide.text):
        if b.kind == "console":
            assert all(not c.startswith("kill -CONT") for c, _ in console_items(b))
    assert guide.text.count("`fg`") >= 2


def test_parse_guide_examples():
    text = "## 3. x\n\n**[systemd]**\n\n```console\n$ systemctl x\n```\n\n```console\n" \
           "$ a\nA\n# a\nB\n$ b\n```\n\n```\nlog\n```\n"
    assert pasted_outputs(text) == {"3 $ a": ["A"], "3 $ a #1": ["B"], "3 listing 0": ["log"]}
    assert norm(["tcp  connection from 127.0.0.1 port 40512 closed (eof): 4 bytes in, 0.004 s"]) == \
        ["tcp connection from 127.0.0.1 port # closed (eof): 4 bytes in, # s"]
    assert norm(["uppercase: localhost:12001 refused"]) == ["uppercase: localhost:12001 refused"]


# ------------------------------------------------------------ 1 to 6: one server

def test_sections_1_to_6(guide, daemon_factory, lab):
    """One server on the shipped configuration, as a student runs it from
    section 1 to 6; the counters of section 5 count what the sections
    before it sent."""
    d = shipped_daemon(daemon_factory)
    L = lab(d)

    # 1: the start-up lines (the warning only where the group is missing).
    start = L.log_since(0)
    pasted = guide.outputs["1 $ uppercased -c etc/uppercased.conf"]
    if group_exists("uppercased"):
        pasted = [l for l in pasted if "to group uppercased" not in l]
    assert norm(start) == norm(pasted), start
    guide.compared.add("1 $ uppercased -c etc/uppercased.conf")

    # 2
    L.check(guide, 2, "ss -aut 'sport = :12000'")
    L.check(guide, 2, "ss -autp 'sport = :12000'")
    if not shutil.which("netstat"):
        pytest.skip("netstat is not installed (net-tools)")
    L.check(guide, 2, "netstat -aut | grep -w 12000")

    # 3
    mark = L.log_mark()
    for n in range(3):
        L.check(guide, 3, "uppercase -u localhost ciao", nth=n)
    L.check(guide, 3, "uppercase localhost ciao mondo")
    L.check(guide, 3, "uppercase ::1 ciao")
    guide.compare("3 listing 0", wait_log_lines(L, mark, 7))
    ports = [l.split()[5] for l in L.log_since(mark)[:3]]
    assert len(set(ports)) >= 2, ports     # a new port each time (two may meet)

    # 4
    L.check(guide, 4, 'uppercase -u localhost 12001 ciao; echo "exit status $?"')
    L.check(guide, 4, 'uppercase localhost 12001 ciao; echo "exit status $?"')
    L.check(guide, 4, "uppercasectl status | grep PID")
    mark = L.log_mark()
    L.run(guide, "kill -STOP 22618")
    try:
        t = time.monotonic()
        L.check(guide, 4, "time uppercase -u localhost ciao")
        assert 1.9 < time.monotonic() - t < 3.5
        L.check(guide, 4, 'uppercase -w 3 localhost ciao; echo "exit status $?"')
    finally:
        os.kill(d.pid, signal.SIGCONT)      # what fg does in terminal 1
    guide.compare("4 listing 0", wait_log_lines(L, mark, 3))

    # 5
    mark = L.log_mark()
    assert L.run(guide, "printf ciao > /dev/udp/127.0.0.1/12000") == ""
    wait_log_lines(L, mark, 1)
    L.check(guide, 5, "uppercasectl stats | sed -n '/^UDP/,/^$/p'")
    L.check(guide, 5, "uppercase -u localhost ancora vivo")
    guide.compare("5 listing 0", wait_log_lines(L, mark, 2))

    # 6
    mark = L.log_mark()
    L.check(guide, 6, "uppercase localhost ciao")
    L.check(guide, 6, "uppercase -n localhost ciao | od -c")
    guide.compare("6 listing 0", wait_log_lines(L, mark, 4))
    mark = L.log_mark()
    typed = [l[2:] for l in guide.outputs["6 $ uppercase"] if l.startswith("> ")]
    s = Session(L)
    for line in typed[:-1]:
        s.say(line, line.upper())
    s.end(0)
    guide.compare("6 $ uppercase", s.lines()[1:])
    guide.compare('6 $ echo "exit status $?"', ["exit status 0"])
    guide.compare("6 listing 1", wait_log_lines(L, mark, 2))
    mark = L.log_mark()
    L.check(guide, 6, r"printf 'ciao\nbuongiorno\n.\nquesta riga non arriva\n' | uppercase")
    guide.compare("6 listing 2", wait_log_lines(L, mark, 2))

    # and 1 again: Ctrl-C
    assert d.stop(signal.SIGINT) == 0
    assert d.log().splitlines()[-2:] == ["Interrupted, stopping: finishing 0 connection(s)", "Stopped"]
    assert "Interrupted, stopping: finishing 0 connection(s)\nStopped\n" in guide.text
    guide.compare("1 listing 0", d.log().splitlines()[-2:])
    guide.all_compared("test_sections_1_to_6")


def test_socket_activation_without_systemd(guide, daemon_factory, lab, tmp_path):
    """Section 2: systemd-socket-activate holds the socket, then execs
    uppercased on the first client, same PID."""
    activate = shutil.which("systemd-socket-activate")
    if not activate:
        pytest.skip("systemd-socket-activate is not installed")
    d = daemon_factory(model="event", start=False)
    d.port = free_port()
    L = lab(d)
    cmd = "systemd-socket-activate -l 12000 uppercased -c etc/uppercased.conf"
    assert guide.has(cmd)
    env = dict(os.environ, PATH=BUILD + os.pathsep + os.environ.get("PATH", ""), LC_ALL="C")
    for k in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "JOURNAL_STREAM"):
        env.pop(k, None)
    log_path = tmp_path / "activate.log"
    with open(log_path, "wb") as log:
        p = subprocess.Popen(L.translate(cmd).split(), stdout=log, stderr=log, env=env, cwd=L.cwd)
    try:
        def holder():
            out = subprocess.run(["ss", "-ltpn", "sport = :%d" % d.port], stdout=subprocess.PIPE,
                                 timeout=CMD_TIMEOUT).stdout.decode()
            m = re.search(r'users:\(\("([^"]+)",pid=(\d+)', out)
            return (m.group(1), int(m.group(2))) if m else None
        assert wait_for(lambda: holder() is not None), "activator not listening"
        assert holder() == ("systemd-socket-", p.pid)
        L.check(guide, 2, "ss -ltp 'sport = :12000'")
        L.check(guide, 2, "uppercase localhost ciao")
        assert wait_for(lambda: holder() == ("uppercased", p.pid)), holder()
        L.check(guide, 2, "ss -ltp 'sport = :12000'", nth=1)
        text = lambda: L.untranslate(log_path.read_text())
        assert wait_for(lambda: "closed (eof)" in text()), text()
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
    lines = L.untranslate(log_path.read_text()).splitlines()
    guide.compare("2 $ " + cmd, lines[:1])
    guide.compare("2 listing 0", lines[1:-2])
    assert lines[-2:] == ["Terminated, stopping: finishing 0 connection(s)", "Stopped"], lines
    guide.all_compared("test_socket_activation_without_systemd")


# ------------------------------------------------------------ 7

def connection_rows(lab):
    out = subprocess.run([os.path.join(BUILD, "uppercasectl"), "-s", lab.d.control, "connections"],
                         stdout=subprocess.PIPE, timeout=CMD_TIMEOUT, check=True).stdout.decode()
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "CLIENT", "AGE", "IDLE", "IN", "OUT", "WORKER"], out
    return [l.split() for l in lines[1:]]


@pytest.mark.parametrize("model", ["event", "thread", "process"])
def test_several_clients_at_once(guide, daemon_factory, lab, model):
    d = shipped_daemon(daemon_factory, model=model)
    L = lab(d)
    mark = L.log_mark()
    nth = {"event": 0, "thread": 2, "process": 3}[model]
    A = Session(L)
    B = C = None
    try:
        A.say("primo", "PRIMO")
        B, C = Session(L), Session(L)
        assert wait_for(lambda: len(connection_rows(L)) == 3), connection_rows(L)
        time.sleep(0.2)
        L.check(guide, 7, "uppercasectl connections", nth=nth)
        if model == "thread":
            L.check(guide, 7, "ps -T -o pid,spid,comm -p 19450")
        elif model == "process":
            L.check(guide, 7, "ps -o pid,ppid,comm --ppid 19520")
            L.check(guide, 7, "ps -o pid,ppid,comm --ppid 19521")
        B.say("secondo", "SECONDO")
        A.end(0)
        B.say("ancora qui", "ANCORA QUI")
        if model == "event":
            assert wait_for(lambda: len(connection_rows(L)) == 2), connection_rows(L)
            L.check(guide, 7, "uppercasectl connections", nth=1)
            L.check(guide, 7, "uppercasectl stats | sed -n '/^TCP/,/^$/p'")
        C.say("terzo", "TERZO")
        B.end(0)
        C.end(0)
    finally:
        for s in (A, B, C):
            if s is not None and s.t.proc.poll() is None:
                s.t.close()
    if model == "event":
        guide.compare("7 listing 0", sessions_listing([("A", A), ("B", B), ("C", C)]))
        log = [l for l in wait_log_lines(L, mark, 6) if l.startswith("tcp ")]
        guide.compare("7 listing 1", log)
    guide.all_compared("test_several_clients_at_once[%s]" % model)


# ------------------------------------------------------------ 8

def test_backlog(guide, daemon_factory, lab, tmp_path):
    """One worker busy: the next connections are accepted and closed at
    once, counted as rejected; then, the server frozen, backlog + 1
    connections wait in the queue and later ones stay in SYN-SENT."""
    d = daemon_factory(model="thread", start=False)
    d.port = free_port()
    L = lab(d)
    sed = ("sed 's/backlog = 128/backlog = 1/; s/max_workers = 1024/max_workers = 1/' "
           "etc/uppercased.conf > /tmp/backlog.conf")
    assert L.run(guide, sed) == ""
    L.check(guide, 8, "grep -E '^ *(backlog|max_workers) =' /tmp/backlog.conf")
    with open(os.path.join(L.cwd, "backlog.conf")) as f:
        text = f.read()
    d.write_config(text=text.replace("12000", str(d.port)).replace("/run/uppercased/control.sock", d.control))
    d.start(retry_in_use=False)

    L.check(guide, 8, "ss -lnt 'sport = :12000'")
    A = Session(L)
    try:
        A.say("primo", "PRIMO")
        L.check(guide, 8, 'uppercase localhost secondo; echo "exit status $?"')
        L.check(guide, 8, 'uppercase localhost terzo; echo "exit status $?"')
        L.check(guide, 8, "ss -lnt 'sport = :12000'", nth=1)
        L.check(guide, 8, "uppercasectl stats | grep -E 'active|accepted|rejected'")
        A.end(0)
    finally:
        if A.t.proc.poll() is None:
            A.t.close()
    rejected = [l for l in L.log_since(0) if l.endswith("rejected: connection limit reached")]
    assert len(rejected) == 2, L.log_since(0)
    assert "`tcp connection from 127.0.0.1 port 46406 rejected:\nconnection limit reached`" in guide.text

    assert wait_for(lambda: stats(L)["active connections"] == "0")
    L.check(guide, 8, "uppercasectl status | grep PID")
    loop = ("for i in 1 2 3 4; do uppercase -w 3 localhost client $i & sleep 0.2; done; "
            "sleep 1; ss -tn 'dport = :12000'; ss -lnt 'sport = :12000'; wait")
    L.run(guide, "kill -STOP 22860")
    try:
        out = L.run(guide, loop)
    finally:
        os.kill(d.pid, signal.SIGCONT)      # fg, in terminal 1
    guide.compare("8 $ " + loop, out.splitlines(), unordered=True)
    assert wait_for(lambda: int(stats(L)["accepted"]) + int(stats(L)["rejected"]) == 5), stats(L)
    assert wait_for(lambda: stats(L)["active connections"] == "0")
    L.check(guide, 8, "uppercasectl stats | grep -E 'active|accepted|rejected|closed'")
    guide.all_compared("test_backlog")


# ------------------------------------------------------------ 9

def extract_hundred(guide):
    m = re.search(r"```python\n(# hundred\.py.*?)```", guide.text, re.S)
    assert m, "docs/lab.md has no hundred.py block"
    return m.group(1)


def hundred_sizes(out):
    m = re.match(r"^100 sends, replies read in (\d+) recv: \[([\d, ]*)\]$", out.strip())
    assert m, out
    sizes = [int(x) for x in m.group(2).split(",")]
    assert len(sizes) == int(m.group(1))
    return sizes


def read_sizes(recv_lines):
    """strace's recvfrom lines, as the guide's awk counts them: {size: n}."""
    sizes = {}
    for line in recv_lines:
        m = re.search(r"= (\d+)$", line)
        if m:
            sizes[int(m.group(1))] = sizes.get(int(m.group(1)), 0) + 1
    return sizes


def awk_counts(lines):
    counts = {}
    for l in lines:
        n, _, size, _ = l.split()
        counts[int(size)] = int(n)
    return counts


def test_hundred_one_byte_sends(guide, daemon_factory, lab, tmp_path):
    """The two runs of hundred.py, strace watching the server's reads as the
    guide does; what merges depends on timing: the shapes and the totals
    are compared, and everything else exactly."""
    d = shipped_daemon(daemon_factory)
    L = lab(d)
    (tmp_path / "hundred.py").write_text(extract_hundred(guide).replace("12000", str(d.port)))
    L.check(guide, 9, "uppercasectl status | grep PID")
    L.check(guide, 9, "uppercasectl stats | grep -E 'accepted|received|sent' | head -3")
    mark = L.log_mark()
    awk = "awk '$NF ~ /^[0-9]+$/ { print \"read\", $NF, \"bytes\" }' /tmp/recv.txt | sort | uniq -c | sort -rn"
    for n, cmd in enumerate(["python3 hundred.py", "python3 hundred.py 0.01"]):
        strace = None
        if shutil.which("strace") and os.geteuid() == 0:
            strace = subprocess.Popen(["strace", "-f", "-qq", "-e", "trace=recvfrom", "-o",
                                       str(tmp_path / "recv.txt"), "-p", str(d.pid)],
                                      stderr=subprocess.DEVNULL)
            time.sleep(0.5)
        try:
            out = L.run(guide, cmd)
        finally:
            if strace:
                strace.send_signal(signal.SIGINT)
                strace.wait(10)
        sizes = hundred_sizes(out)
        shown = hundred_sizes("\n".join(guide.outputs["9 $ " + cmd]))
        assert sum(sizes) == sum(shown) == 100 and all(s > 0 for s in sizes), out
        if n == 1:
            assert len(sizes) >= 50, sizes          # with the pause, (almost) one at a time
            assert shown == [1] * 100
        guide.compared.add("9 $ " + cmd)
        key = "9 $ %s%s" % (awk, " #1" if n else "")
        pasted = awk_counts(guide.outputs[key])
        assert sum(k * v for k, v in pasted.items()) == 100 and pasted[0] == 1, pasted
        if strace:
            got = awk_counts(L.run(guide, awk).splitlines())
            assert sum(k * v for k, v in got.items()) == 100 and got.get(0) == 1, got
        guide.compared.add(key)
    L.check(guide, 9, "uppercasectl stats | grep -E 'accepted|received|sent' | head -3", nth=1)
    log = wait_log_lines(L, mark, 4)
    guide.compare("9 listing 0", log)
    paused_s = float(log[3].rsplit(", ", 1)[1][:-2])
    assert paused_s >= 1.0, log             # 100 pauses of 10 ms
    guide.all_compared("test_hundred_one_byte_sends")


# ------------------------------------------------------------ 10

def test_event_model_threads(guide, daemon_factory, lab):
    d = shipped_daemon(daemon_factory)
    L = lab(d)
    sessions = [Session(L) for _ in range(3)]
    try:
        assert wait_for(lambda: len(connection_rows(L)) == 3)
        L.check(guide, 10, "uppercasectl status | grep -E 'PID|model|Connections'")
        L.check(guide, 10, "ps -T -o pid,spid,comm -p 22013")
        for s in sessions:
            s.end(0)
    finally:
        for s in sessions:
            if s.t.proc.poll() is None:
                s.t.close()
    guide.all_compared("test_event_model_threads")


def test_process_model_worker_dies_alone(guide, daemon_factory, lab):
    d = shipped_daemon(daemon_factory, model="process")
    L = lab(d)
    mark = L.log_mark()
    A, B = Session(L), Session(L)
    try:
        A.say("io sono A", "IO SONO A")
        B.say("io sono B", "IO SONO B")
        L.check(guide, 10, "uppercasectl connections")
        worker_a = int(connection_rows(L)[0][-1])
        assert guide.has("kill -KILL 22029")
        assert worker_a in d.children()
        os.kill(worker_a, signal.SIGKILL)       # a child of the daemon we started
        A.t.read_until(b"closed the connection\r\n")    # at once, while at the prompt
        assert A.t.wait() == 1
        a_screen = "> io sono A\nIO SONO A\n> \nuppercase: localhost:%d closed the connection" % d.port
        B.say("ancora qui", "ANCORA QUI")
        assert wait_for(lambda: stats(L)["workers died"] == "1"), stats(L)
        L.check(guide, 10, "uppercasectl stats | grep -E 'active|died'")
        B.end(0)
    finally:
        for s in (A, B):
            if s.t.proc.poll() is None:
                s.t.close()
    listing = ["---- terminal A", "$ uppercase"] + L.untranslate(a_screen).split("\n") + \
        ["---- terminal B"] + B.lines()
    guide.compare("10 listing 0", listing)
    guide.compare("10 listing 1", wait_log_lines(L, mark, 4))
    guide.all_compared("test_process_model_worker_dies_alone")
