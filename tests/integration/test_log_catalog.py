# SPDX-License-Identifier: MIT
"""The journal catalog (catalog/uppercased.catalog) and the MESSAGE_IDs of
daemon/log.h: journalctl accepts the file, every ID has an entry and every
entry an ID, make install puts it where journalctl looks, and the daemon's
entries carry the IDs in the journal (a stand-in journald in a private
mount namespace, tests/integration/journal_ns.py)."""

import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import BUILD, HERE, REPO

CATALOG = os.path.join(REPO, "catalog", "uppercased.catalog")
LOG_H = os.path.join(REPO, "daemon", "log.h")
JOURNAL_NS = os.path.join(HERE, "journal_ns.py")


def log_ids():
    """{LOG_ID_NAME: id} from daemon/log.h."""
    with open(LOG_H) as f:
        text = f.read()
    ids = dict(re.findall(r'^#define (LOG_ID_\w+)\s+"([^"]*)"', text, re.M))
    assert ids, "no LOG_ID_ in daemon/log.h"
    return ids


def journalctl_catalog(tmp_path):
    """journalctl --update-catalog on a copy of the file under a root of
    its own (no PID 1 needed), then --dump-catalog: {id: (headers, body)}."""
    if not shutil.which("journalctl"):
        pytest.skip("journalctl is not installed")
    root = tmp_path / "root"
    (root / "usr/lib/systemd/catalog").mkdir(parents=True)
    shutil.copy(CATALOG, root / "usr/lib/systemd/catalog" / "uppercased.catalog")
    p = subprocess.run(["journalctl", "--root", str(root), "--update-catalog"],
                       capture_output=True, text=True, timeout=30)
    assert (p.returncode, p.stderr) == (0, ""), p
    assert (root / "var/lib/systemd/catalog/database").exists()
    p = subprocess.run(["journalctl", "--root", str(root), "--dump-catalog"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p
    entries = {}
    for chunk in re.split(r"^-- ", p.stdout, flags=re.M)[1:]:
        head, _, body = chunk.partition("\n\n")
        lines = head.splitlines()
        headers = dict(l.split(": ", 1) for l in lines[1:])
        entries[lines[0].strip()] = (headers, body.strip())
    return entries


def test_catalog_is_accepted_by_journalctl(tmp_path):
    entries = journalctl_catalog(tmp_path)
    assert entries
    for mid, (headers, body) in entries.items():
        assert re.fullmatch(r"[0-9a-f]{32}", mid), mid
        assert headers.get("Defined-By") == "uppercased", (mid, headers)
        assert headers.get("Subject"), (mid, headers)
        assert "man:uppercased(8)" in headers.get("Documentation", "").split(), (mid, headers)
        assert len(body.split()) >= 20, (mid, body)     # an explanation, not a stub


def test_every_message_id_has_an_entry_and_back(tmp_path):
    ids = log_ids()
    entries = journalctl_catalog(tmp_path)
    assert sorted(ids.values()) == sorted(entries), (ids, sorted(entries))
    assert len(set(ids.values())) == len(ids), ids
    # Each ID is used: a daemon source logs with it.
    sources = ""
    for path in glob.glob(os.path.join(REPO, "daemon", "*.c")):
        with open(path) as f:
            sources += f.read()
    for name in ids:
        assert re.search(r"\b%s\b" % name, sources), "%s is not used in daemon/" % name


def test_catalog_documented_in_uppercased_8():
    with open(os.path.join(REPO, "man", "uppercased.8")) as f:
        page = f.read()
    for mid in log_ids().values():
        assert mid in page, mid
    assert "/usr/lib/systemd/catalog/uppercased.catalog" in page


def test_make_install_installs_the_catalog(tmp_path):
    dest = tmp_path / "dest"
    p = subprocess.run(["make", "-s", "install", "DESTDIR=%s" % dest, "PREFIX=/usr",
                        "BUILD=%s" % BUILD], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    installed = dest / "usr/lib/systemd/catalog/uppercased.catalog"
    assert installed.read_bytes() == open(CATALOG, "rb").read()
    assert oct(installed.stat().st_mode & 0o777) == "0o644"


# ------------------------------------------------ the entries in the journal

def namespaces_work():
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    p = subprocess.run(["unshare", "-m", "--propagation", "private", "mount", "-t", "tmpfs",
                        "tmpfs", "/run"], capture_output=True, timeout=10)
    return p.returncode == 0


def read_journal(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


def wait_entry(path, pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for e in read_journal(path):
            if pred(e):
                return e
        time.sleep(0.05)
    return None


def connect_from(source, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(5)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def test_journal_entries_carry_the_message_ids(daemon_factory, tmp_path):
    """Started, refused (per source, then max_connections), closed, reload
    done and refused, stopping: each entry in the journal with its
    MESSAGE_ID, and the client fields beside it."""
    if not namespaces_work():
        pytest.skip("needs root and mount namespaces (unshare -m)")
    ids = log_ids()
    out = str(tmp_path / "journal.jsonl")
    d = daemon_factory(model="event", max_connections=2, tcp_per_source=1, exempt=[],
                       wrapper=["unshare", "-m", "--propagation", "private",
                                sys.executable, JOURNAL_NS, out, "--"])

    def entry(mid, **fields):
        e = wait_entry(out, lambda e: e.get("MESSAGE_ID") == mid and
                       all(e.get(k) == v for k, v in fields.items()))
        assert e is not None, (mid, fields, read_journal(out))
        return e

    started = entry(ids["LOG_ID_STARTED"])
    assert started["MESSAGE"].startswith("uppercased "), started
    assert started["SYSLOG_IDENTIFIER"] == "uppercased"
    a = connect_from("127.0.0.1", d.port)
    b = connect_from("127.0.0.1", d.port)              # a second from the same source
    per_source = entry(ids["LOG_ID_REJECTED_PER_SOURCE"])
    assert per_source["MESSAGE"].endswith("rejected: per-source limit reached"), per_source
    assert per_source["REMOTE_ADDR"] == "127.0.0.1"
    b.close()
    c = connect_from("127.0.0.2", d.port)
    e = connect_from("127.0.0.3", d.port)              # a third connection: over max_connections
    over = entry(ids["LOG_ID_REJECTED_CONNECTIONS"], REMOTE_ADDR="127.0.0.3")
    assert over["MESSAGE"].endswith("rejected: connection limit reached"), over
    e.close()
    a.sendall(b"ciao\n.\n")
    assert a.recv(100) == b"CIAO\n"
    a.close()
    closed = entry(ids["LOG_ID_CONN_CLOSED"], REMOTE_ADDR="127.0.0.1", CLOSE_REASON="quit")
    assert closed["PROTOCOL"] == "tcp" and closed["BYTES_IN"] == "7", closed
    c.close()

    os.kill(d.pid, signal.SIGHUP)
    reloaded = entry(ids["LOG_ID_RELOADED"])
    assert reloaded["MESSAGE"] == "Configuration reloaded from %s" % d.conf, reloaded
    with open(d.conf, "a") as f:
        f.write("workers: { model = \"sideways\"; };\n")
    os.kill(d.pid, signal.SIGHUP)
    refused = entry(ids["LOG_ID_RELOAD_REFUSED"])
    assert refused["PRIORITY"] == "3", refused
    assert refused["MESSAGE"].startswith("Reload failed, keeping the old configuration: %s:" % d.conf)

    assert d.stop() == 0
    stopping = entry(ids["LOG_ID_STOPPING"])
    assert stopping["MESSAGE"] == "Terminated, stopping: finishing 0 connection(s)", stopping
    # Entries without an ID have none: the open of a connection, "Stopped".
    for e in read_journal(out):
        if e["MESSAGE"] == "Stopped" or re.fullmatch(r"tcp connection from \S+ port \d+", e["MESSAGE"]):
            assert "MESSAGE_ID" not in e, e
