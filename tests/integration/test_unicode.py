# SPDX-License-Identifier: MIT
"""Differential test of the protocol core against Python's str.upper().

The contract (SPEC.md, "What uppercase means") is Python 3's
    data.decode('utf-8', 'surrogateescape').upper()
        .encode('utf-8', 'surrogateescape')
for any bytes.  build/tests/upcase-filter runs stdin through daemon/upcase.c;
its output must be exactly that, for every Unicode scalar value, for any
split of the input into feeds (-s SEED), and for invalid UTF-8.

Python 3.11 (Debian 12) has Unicode 14, as libunistring 1.0 does.
"""

import os
import random
import subprocess
import unicodedata

import pytest

SEPARATOR = "\n"


def filter_path():
    build = os.environ.get("UPPERCASED_BUILD")
    if not build:
        pytest.skip("UPPERCASED_BUILD is not set")
    path = os.path.join(build, "tests", "upcase-filter")
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is missing; build it first (make)")
    return path


def run_filter(data, *args):
    proc = subprocess.run([filter_path(), *args], input=data,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stdout


def python_upper(data):
    return (data.decode("utf-8", "surrogateescape").upper()
            .encode("utf-8", "surrogateescape"))


def scalar_values():
    return [cp for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF]


@pytest.fixture(scope="module")
def all_scalars():
    """Every scalar value, each followed by a newline, and its upper case."""
    text = "".join(chr(cp) + SEPARATOR for cp in scalar_values())
    return text.encode("utf-8"), text.upper().encode("utf-8")


def describe_differences(data, got, want, limit=5):
    """The first code points whose mapping differs, readably.

    The input, the expected and the actual output split alike at the
    separator (no character upper-cases to or from "\\n"), so the pieces
    line up until the first difference in the number of separators."""
    pieces = data.split(SEPARATOR.encode())
    lines = []
    for piece, g, w in zip(pieces, got.split(b"\n"), want.split(b"\n")):
        if g == w:
            continue
        chars = piece.decode("utf-8", "surrogateescape")
        names = ", ".join(f"U+{ord(c):04X} {unicodedata.name(c, '?')}"
                          for c in chars)
        lines.append(f"{names}: got {g!r}, want {w!r}")
        if len(lines) == limit:
            break
    if not lines:
        lines.append(f"lengths differ: got {len(got)}, want {len(want)}")
    return "\n".join(lines)


def assert_same(data, got, want):
    if got != want:
        pytest.fail("output differs from str.upper():\n"
                    + describe_differences(data, got, want))


def test_every_scalar_value(all_scalars):
    data, want = all_scalars
    assert_same(data, run_filter(data), want)


@pytest.mark.parametrize("seed", [1, 20240601])
def test_every_scalar_value_split(all_scalars, seed):
    data, want = all_scalars
    assert_same(data, run_filter(data, "-s", str(seed)), want)


def test_expansion_bound():
    """UPCASE_OUT_MAX(n) = 3n + 16 assumes no character's upper case is
    more than 3 times its length in UTF-8."""
    worst = max(scalar_values(),
                key=lambda cp: len(chr(cp).upper().encode())
                / len(chr(cp).encode()))
    c = chr(worst)
    assert len(c.upper().encode()) <= 3 * len(c.encode()), hex(worst)


def random_bytes(rng, chars, multibyte):
    """ASCII, valid characters and bytes that are often invalid UTF-8."""
    out = bytearray()
    for _ in range(rng.randrange(0, 60)):
        kind = rng.random()
        if kind < 0.35:
            out += bytes([rng.randrange(0x80)])
        elif kind < 0.65:
            out += rng.choice(chars).encode()
        elif kind < 0.85:
            out += bytes([rng.randrange(0x80, 0x100)])
        else:
            # A multi-byte character cut short, or its bytes shuffled.
            enc = bytearray(rng.choice(multibyte).encode())
            if rng.random() < 0.5:
                enc = enc[:rng.randrange(1, len(enc))]
            else:
                rng.shuffle(enc)
            out += enc
    return bytes(out)


@pytest.fixture(scope="module")
def interesting_chars():
    """Cased characters, special casing, and a spread of the rest."""
    rng = random.Random(7)
    scalars = scalar_values()
    chars = [chr(cp) for cp in scalars if chr(cp).upper() != chr(cp)]
    chars += list("ßﬁﬃΐΰᾷŉǰ€😀\u0345")
    chars += [chr(rng.choice(scalars)) for _ in range(500)]
    return chars, [c for c in chars if ord(c) >= 0x80]


def test_random_bytes(interesting_chars):
    chars, multibyte = interesting_chars
    rng = random.Random(12000)
    for i in range(300):
        data = random_bytes(rng, chars, multibyte)
        args = ["-s", str(i)] if i % 2 else []
        got = run_filter(data, *args)
        want = python_upper(data)
        assert got == want, (f"input {data!r} ({' '.join(args)}):\n"
                             f" got  {got!r}\n want {want!r}")
