"""How ``fpxint`` ends: user errors (exit 2, one line), bugs (traceback, exit 1), Ctrl-C (130)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from fpxint_hw import cli
from fpxint_hw.cli import main

REPORT = "internal error (a bug): please report it with the command line and the traceback"


def _user_error(argv, capsys) -> str:
    """Run ``argv``; assert exit 2 with one error line and no traceback; return the line."""
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert "Traceback" not in err and REPORT not in err
    assert err.startswith(f"fpxint {argv[0]}: error: ")
    return err


def test_a_missing_input_file_is_a_user_error(tmp_path, capsys):
    err = _user_error(["expand", str(tmp_path / "none.npz"), "-o", str(tmp_path / "o.npz")],
                      capsys)
    assert "none.npz: no such file" in err


def test_an_os_error_is_a_user_error_and_keeps_the_old_output(tmp_path, capsys, monkeypatch):
    import errno
    import os
    np.savez(tmp_path / "a.npz", w=np.ones(4, np.float32))
    (tmp_path / "o.npz").write_bytes(b"previous result")

    def full(*_):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(os, "replace", full)
    err = _user_error(["expand", str(tmp_path / "a.npz"), "-o", str(tmp_path / "o.npz")],
                      capsys)
    assert "No space left on device" in err
    assert (tmp_path / "o.npz").read_bytes() == b"previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz", "o.npz"]


def test_an_output_in_a_missing_folder_is_written_there(tmp_path, capsys):
    np.savez(tmp_path / "a.npz", w=np.ones(4, np.float32))
    out = tmp_path / "no" / "such" / "dir" / "o.npz"
    assert main(["expand", str(tmp_path / "a.npz"), "-o", str(out)]) == 0
    assert out.is_file()


def test_a_bad_field_is_a_user_error(tmp_path, capsys):
    np.savez(tmp_path / "a.npz", w=np.ones(4, np.float32))
    err = _user_error(["expand", str(tmp_path / "a.npz"), "-o", str(tmp_path / "o.npz"),
                       "--bits", "99"], capsys)
    assert "bits" in err and "99" in err


def test_a_missing_tool_is_a_user_error_with_the_install_command(tmp_path, capsys,
                                                                monkeypatch):
    from test_graph import small_graph

    from fpxint_hw.io.onnx_export import save_onnx
    save_onnx(small_graph(np.random.default_rng(0)), tmp_path / "m.onnx")
    monkeypatch.setitem(sys.modules, "onnx", None)     # import onnx now fails
    err = _user_error(["run", "--model", str(tmp_path / "m.onnx")], capsys)
    assert "m.onnx" in err and "pip install onnx" in err


def test_simulate_backend_ort_without_onnxruntime(capsys, monkeypatch):
    """The case that used to blame exactness: now it names the missing package."""
    from fpxint_hw.intsim import gemm
    monkeypatch.setattr(gemm, "_ort", None)           # as if `import onnxruntime` had failed
    err = _user_error(["simulate", "--model", "mnist-resnet", "--backend", "ort",
                       "--images", "2"], capsys)
    assert "pip install onnxruntime" in err and "exact" not in err


def test_verify_zero_random_tiles_is_a_user_error(capsys):
    err = _user_error(["verify", "--spec", "default", "--random", "0"], capsys)
    assert "--random must be >= 1, got 0" in err


def test_an_internal_error_prints_the_traceback_and_asks_for_a_report(monkeypatch, capsys):
    from fpxint_hw.commands import plot

    def broken(args):
        return 1 // 0

    monkeypatch.setattr(plot, "main", broken)          # register() picks it up as func
    rc = main(["plot", "somewhere"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "Traceback (most recent call last)" in err and "ZeroDivisionError" in err
    assert "in broken" in err                          # the frame that failed is shown
    assert err.rstrip().splitlines()[-1] == f"fpxint plot: {REPORT} above"


def test_ctrl_c_exits_130_without_a_traceback(monkeypatch, capsys):
    from fpxint_hw.commands import plot

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(plot, "main", interrupted)
    assert main(["plot", "somewhere"]) == 130
    err = capsys.readouterr().err
    assert "fpxint plot: interrupted" in err and "Traceback" not in err


def test_argparse_errors_keep_argparse_behaviour(capsys):
    with pytest.raises(SystemExit) as e:
        main(["expand"])                               # IN.npz and -o are required
    assert e.value.code == 2
    assert "usage: fpxint expand" in capsys.readouterr().err


def test_exit_statuses():
    assert (cli.EXIT_OK, cli.EXIT_BUG, cli.EXIT_USER, cli.EXIT_INTERRUPTED) == (0, 1, 2, 130)
