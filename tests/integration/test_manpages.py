# SPDX-License-Identifier: MIT
"""Every page in man/ lints clean, with mandoc (-Tlint: every message,
style included) and with groff (-ww: every warning), and the examples of
uppercased(8) with characters that change length when upper-cased render
as those characters, under man-db (groff, then col) and under mandoc."""

import glob
import os
import re
import shutil
import subprocess
import unicodedata

import pytest

from conftest import REPO

PAGES = sorted(glob.glob(os.path.join(REPO, "man", "*.[1-8]")))
UTF8 = dict(os.environ, LC_ALL="C.UTF-8", MANWIDTH="80")


def need(tool):
    if not shutil.which(tool):
        pytest.skip("%s is not installed (make deps)" % tool)


def test_there_are_pages():
    assert {os.path.basename(p) for p in PAGES} >= {
        "uppercased.8", "uppercased.conf.5", "uppercasectl.8", "uppercase.1"}


@pytest.mark.parametrize("page", PAGES, ids=os.path.basename)
def test_mandoc_lint(page):
    need("mandoc")
    p = subprocess.run(["mandoc", "-Tlint", "-W", "all", page], capture_output=True, text=True,
                       timeout=60)
    assert p.stdout + p.stderr == "", p.stdout + p.stderr


@pytest.mark.parametrize("page", PAGES, ids=os.path.basename)
def test_groff_warnings(page):
    need("groff")
    p = subprocess.run(["groff", "-ww", "-man", "-Tutf8", "-z", page], capture_output=True,
                       text=True, timeout=60, env=UTF8)
    assert (p.returncode, p.stdout + p.stderr) == (0, ""), p.stdout + p.stderr


def plain(text):
    """Terminal output without its overstrikes (bold: c BS c; underline:
    _ BS c)."""
    return re.sub(r".\x08", "", text)


def rendered_by_man(page):
    need("man")
    p = subprocess.run(["man", "-l", page], capture_output=True, timeout=60, env=UTF8)
    assert p.returncode == 0, p.stderr
    return plain(p.stdout.decode("utf-8"))


def rendered_by_mandoc(page):
    need("mandoc")
    p = subprocess.run(["mandoc", "-Tutf8", page], capture_output=True, timeout=60, env=UTF8)
    assert p.returncode == 0, p.stderr
    return plain(p.stdout.decode("utf-8"))


# Characters the page shows as examples of the mapping, each with what it
# becomes, in NFC: renderers may write a character in another of its
# canonically equivalent forms (groff writes U+0390 as U+1FD3), never as
# another letter.
EXAMPLES = [
    ("\u00df", "SS"),
    ("\ufb01", "FI"),
    ("\u0390", "\u0399\u0308\u0301"),
]


@pytest.mark.parametrize("render", [rendered_by_man, rendered_by_mandoc], ids=["man-db", "mandoc"])
def test_case_mapping_examples_render(render):
    page = os.path.join(REPO, "man", "uppercased.8")
    text = unicodedata.normalize("NFC", render(page))
    for before, after in EXAMPLES:
        shown = "%s becomes %s" % (unicodedata.normalize("NFC", before), unicodedata.normalize("NFC", after))
        assert shown in re.sub(r"\s+", " ", text), (shown, [l for l in text.splitlines() if "becomes" in l])
