"""Output files: written whole or not at all (a failing writer leaves the old file and no
temporary), with an ordinary file's permissions, at exactly the path given; outputs that are
inputs or each other are refused before any work."""

from __future__ import annotations

import os

import numpy as np
import pytest

from fpxint_hw.errors import InputError
from fpxint_hw.io.npz import load_arrays, save_arrays
from fpxint_hw.outputs import atomic_path, check_paths, write_text


def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old result")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half a new res")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_a_finished_writer_replaces_with_the_usual_permissions(tmp_path):
    target = tmp_path / "new" / "out.txt"              # missing folders are made
    write_text(target, "fresh")
    assert target.read_text() == "fresh"
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask
    os.chmod(target, 0o640)                              # an existing file keeps its mode
    write_text(target, "again")
    assert target.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.txt"]


def test_arrays_go_to_exactly_the_path_given(tmp_path):
    save_arrays(tmp_path / "t.bin", {"a": np.arange(3)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.bin"]
    assert load_arrays(tmp_path / "t.bin")["a"].tolist() == [0, 1, 2]


def test_an_output_that_is_an_input_is_refused_however_spelled(tmp_path):
    src = tmp_path / "in.npz"
    src.write_bytes(b"data")
    (tmp_path / "sub").mkdir()
    link = tmp_path / "link.npz"
    link.symlink_to(src)
    hard = tmp_path / "hard.npz"
    os.link(src, hard)
    for spelled in (src, tmp_path / "sub" / ".." / "in.npz", link, hard):
        with pytest.raises(InputError, match=r"--output .*input given as input"):
            check_paths({"--output": str(spelled)}, {"input": str(src)})
    check_paths({"--output": str(tmp_path / "other.npz")}, {"input": str(src)})
    assert src.read_bytes() == b"data"


def test_two_outputs_on_one_path_and_bad_folders_are_refused(tmp_path):
    out = str(tmp_path / "x")
    with pytest.raises(InputError, match="--json .*same path as --output"):
        check_paths({"--output": out, "--json": out}, {})
    with pytest.raises(InputError, match="is a folder"):
        check_paths({"--json": str(tmp_path)}, {})
    (tmp_path / "f").write_text("")
    with pytest.raises(InputError, match="is a file, not a folder"):
        check_paths({"--json": str(tmp_path / "f" / "r.json")}, {})
    with pytest.raises(InputError, match="exists and is not a folder"):
        check_paths({"--out": str(tmp_path / "f")}, {}, folders=("--out",))
    # a folder output may be the folder it reads (plot DIR --out DIR)
    check_paths({"--out": str(tmp_path)}, {"DIR": str(tmp_path)}, folders=("--out",))
