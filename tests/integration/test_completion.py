"""The bash completions (completions/uppercasectl, completions/uppercase),
loaded into bash with bash-completion as an interactive shell has them,
against the built programs: COMP_WORDS/COMP_CWORD set, the completion
function called, COMPREPLY read back.  The commands, their arguments and the
options come from the programs' --help at completion time, the connection
ids from the daemon: a made-up command in the help completes too."""
import os
import shutil
import stat
import subprocess
import tempfile

import pytest

from conftest import BUILD, REPO

BASH_COMPLETION = "/usr/share/bash-completion/bash_completion"
COMPLETIONS = os.path.join(REPO, "completions")

pytestmark = pytest.mark.skipif(not os.path.exists(BASH_COMPLETION),
                                reason="bash-completion is not installed (make deps installs it)")

SCRIPT = r'''
source "$1" || exit 1
source "$2" || exit 1
shift 2
COMP_WORDS=("$@")
COMP_CWORD=$(($# - 1))
COMP_LINE="$*"
COMP_POINT=${#COMP_LINE}
COMPREPLY=()
f=$(complete -p "$1" | sed -E 's/.* -F ([^ ]+) .*/\1/')
"$f" "$1" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
printf '%s\n' "${COMPREPLY[@]}"
'''


def complete(*words, path=BUILD):
    """COMPREPLY for the last of words (the command line so far), the
    program found on PATH in path."""
    program = words[0]
    env = dict(os.environ, PATH=path + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin"))
    p = subprocess.run(["bash", "--norc", "--noprofile", "-c", SCRIPT, "_", BASH_COMPLETION,
                        os.path.join(COMPLETIONS, program)] + list(words),
                       capture_output=True, text=True, env=env, timeout=30)
    assert p.returncode == 0 and p.stderr == "", p
    return [w for w in p.stdout.split("\n") if w]


def test_uppercasectl_commands_from_help():
    assert complete("uppercasectl", "ti") == ["timeout"]
    assert complete("uppercasectl", "st") == ["status", "stats"]
    every = complete("uppercasectl", "")
    assert {"status", "stats", "connections", "timeout", "reload", "help"} <= set(every), every
    # Each one is a command of the help's "Commands" list.
    out = subprocess.run([os.path.join(BUILD, "uppercasectl"), "--help"],
                         capture_output=True, text=True).stdout
    for c in every:
        assert "\n  %s " % c in out, c


def test_uppercasectl_timeout_names():
    assert complete("uppercasectl", "timeout", "") == ["idle", "write", "shutdown"]
    assert complete("uppercasectl", "timeout", "w") == ["write"]
    # A prefix names the command, as uppercasectl accepts it.
    assert complete("uppercasectl", "tim", "") == ["idle", "write", "shutdown"]
    # After the name, a value: nothing to offer.
    assert complete("uppercasectl", "timeout", "idle", "") == []
    # Options before the command are skipped, with their arguments.
    assert complete("uppercasectl", "-j", "-s", "/tmp/x.sock", "timeout", "s") == ["shutdown"]


def test_uppercasectl_options():
    opts = complete("uppercasectl", "-")
    assert {"-s", "--socket", "-j", "--json", "--prometheus", "-h", "--help", "-V", "--version"} <= set(opts), opts
    assert complete("uppercasectl", "--so") == ["--socket"]
    assert complete("uppercasectl", "--json", "sta") == ["status", "stats"]


@pytest.fixture
def grown_ctl():
    """An uppercasectl whose help has grown a command, "frob ID": a wrapper
    that adds it to the real help and passes everything else on."""
    d = tempfile.mkdtemp(prefix="upc-compl-", dir="/tmp")
    path = os.path.join(d, "uppercasectl")
    with open(path, "w") as f:
        f.write('#!/bin/sh\n'
                'if [ "$1" = --help ]; then\n'
                '    %s --help | sed "/^  help /i\\\\\n  frob ID                 a command the completion has never seen"\n'
                '    exit 0\n'
                'fi\n'
                'exec %s "$@"\n' % (os.path.join(BUILD, "uppercasectl"), os.path.join(BUILD, "uppercasectl")))
    os.chmod(path, stat.S_IRWXU)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_new_command_and_connection_ids(grown_ctl, daemon_factory):
    """A command the help lists is completed, and so are the ids of its ID
    argument, whatever the command."""
    assert "frob" in complete("uppercasectl", "", path=grown_ctl)
    assert complete("uppercasectl", "fr", path=grown_ctl) == ["frob"]
    assert complete("uppercasectl", "ki") == ["kill"]
    d = daemon_factory()
    # No daemon reachable: no id, no error.
    assert complete("uppercasectl", "-s", d.dir + "/nothing.sock", "kill", "", path=grown_ctl) == []
    socks = [d.tcp_connect() for _ in range(3)]
    try:
        for s in socks:
            s.sendall(b"x")
            assert s.recv(1) == b"X"
        ids = complete("uppercasectl", "-s", d.control, "frob", "", path=grown_ctl)
        assert complete("uppercasectl", "-s", d.control, "kill", "") == ids
        out = subprocess.run([os.path.join(BUILD, "uppercasectl"), "-s", d.control, "connections"],
                             capture_output=True, text=True).stdout
        listed = [line.split()[0] for line in out.splitlines()[1:]]
        assert len(ids) == 3 and ids == listed, (ids, out)
        assert complete("uppercasectl", "--socket=" + d.control, "kill", ids[0][0], path=grown_ctl) == \
            [i for i in ids if i.startswith(ids[0][0])]
    finally:
        for s in socks:
            s.close()


def test_uppercase_options():
    opts = complete("uppercase", "-")
    assert {"-u", "--udp", "-w", "--timeout", "-4", "-6", "-n", "-h", "--help", "-V", "--version"} <= set(opts), opts
    assert complete("uppercase", "--u") == ["--udp"]
    # The argument of -w is a duration: nothing offered.
    assert complete("uppercase", "-w", "") == []
    assert complete("uppercase", "-u", "-w", "2", "--t") == ["--timeout"]
    # Options come before HOST: none after it.
    assert complete("uppercase", "localhost", "-") == []
