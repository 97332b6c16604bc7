"""Strict YAML: the scalars YAML 1.2 and YAML 1.1 agree on are read as written; the rest,
duplicate keys, aliases, empty and non-regular files are refused with the file and line."""

from __future__ import annotations

import math

import pytest

from fpxint_hw.errors import FormatError
from fpxint_hw.yamlfile import MAX_BYTES, read_yaml


def _read(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return read_yaml(p, "a test file")


def test_plain_scalars_read_as_written(tmp_path):
    got = _read(tmp_path, "a: true\nb: 12\nc: -3\nd: 1.5\ne: 1e-3\nf: .inf\ng: 'yes'\n"
                          "h: '0x10'\ni: 0\nj: [4x4, pow2]\nk: null\n")
    assert got == {"a": True, "b": 12, "c": -3, "d": 1.5, "e": 1e-3, "f": math.inf,
                   "g": "yes", "h": "0x10", "i": 0, "j": ["4x4", "pow2"], "k": None}


@pytest.mark.parametrize("text,words", [
    ("a: yes", "'yes' is a YAML 1.1 boolean"), ("a: Off", "'Off'"),
    ("a: 0x10", "'0x10'"), ("a: 010", "'010'"), ("a: 1_000", "'1_000'"),
    ("a: 1:30", "'1:30'"), ("a: 1_0.5", "'1_0.5'"),
    ("a: 1\nb: 2\na: 3", "line 3: duplicate key 'a'"),
    ("a: &x 1\nb: *x", "anchors"), ("a: [1", "not valid YAML"), ("", "empty"),
])
def test_surprises_are_refused_with_the_line(tmp_path, text, words):
    with pytest.raises(FormatError, match="c.yaml") as exc:
        _read(tmp_path, text)
    assert words in str(exc.value)


def test_files_that_are_not_small_regular_text_are_refused(tmp_path):
    import os
    with pytest.raises(FormatError, match="no such file"):
        read_yaml(tmp_path / "none.yaml", "x")
    with pytest.raises(FormatError, match="not a regular file"):
        read_yaml(tmp_path, "x")
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(FormatError, match="not a regular file"):
        read_yaml(tmp_path / "fifo", "x")
    (tmp_path / "big.yaml").write_text("#" * MAX_BYTES + "\n")
    with pytest.raises(FormatError, match="bytes"):
        read_yaml(tmp_path / "big.yaml", "x")
    (tmp_path / "ok.yaml").write_text("a: 1\n" + "#" * (MAX_BYTES - 6) + "\n")
    assert read_yaml(tmp_path / "ok.yaml", "x") == {"a": 1}      # just fits
    (tmp_path / "bin.yaml").write_bytes(b"a: \xff\xfe")
    with pytest.raises(FormatError, match="not UTF-8"):
        read_yaml(tmp_path / "bin.yaml", "x")
