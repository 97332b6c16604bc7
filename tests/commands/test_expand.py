"""``fpxint expand`` and ``fpxint demo`` as a user runs them."""

import json
import subprocess
import sys

import numpy as np
import pytest

from fpxint_hw.cli import main
from fpxint_hw.io.npz import load_arrays


def test_expand_writes_terms_tables_and_json(tmp_path, capsys):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 4, 3, 3)).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)
    np.savez(tmp_path / "in.npz", **{"conv.weight": w, "conv.bias": b})
    rc = main(["expand", str(tmp_path / "in.npz"), "--bits", "4", "--terms", "3",
               "--per-channel", "-o", str(tmp_path / "out.npz"),
               "--json", str(tmp_path / "r.json")])
    assert rc == 0
    text = capsys.readouterr().out
    assert "conv.weight" in text and "SQNR dB" in text
    out = load_arrays(tmp_path / "out.npz")
    fmt = json.loads(str(out["__format__"]))
    assert fmt == {"bits": 4, "terms": 3, "scale": "pow2", "per_channel": True, "signed": True}
    d, s = out["conv.weight.digits"], out["conv.weight.scale"]
    assert d.shape == (3,) + w.shape and s.shape == (8, 1, 1, 1)
    recon = sum(d[k] * s / 8.0 ** k for k in range(3))
    report = json.loads((tmp_path / "r.json").read_text())
    rows = report["tensors"][0]["convergence"]
    assert [r["k"] for r in rows] == [1, 2, 3]
    assert np.max(np.abs(recon - w)) == pytest.approx(rows[-1]["max_abs_error"], rel=1e-6)
    assert all(r["max_abs_error"] <= r["bound"] * (1 + 1e-9) for r in rows)
    assert rows[0]["sqnr_db"] < rows[1]["sqnr_db"] < rows[2]["sqnr_db"]


def _error_of(argv, capsys):
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    return rc, err


def test_bad_inputs_give_one_line_errors(tmp_path, capsys):
    out = str(tmp_path / "o.npz")
    rc, err = _error_of(["expand", str(tmp_path / "missing.npz"), "-o", out], capsys)
    assert rc == 2 and "missing.npz: no such file" in err and "\n" not in err
    (tmp_path / "text.npz").write_text("hello")
    rc, err = _error_of(["expand", str(tmp_path / "text.npz"), "-o", out], capsys)
    assert rc == 2 and "text.npz: not an .npz archive" in err and "\n" not in err
    np.savez(tmp_path / "obj.npz", bad=np.array([{"a": 1}], dtype=object))
    rc, err = _error_of(["expand", str(tmp_path / "obj.npz"), "-o", out], capsys)
    assert rc == 2 and "entry 'bad' is a pickled object array" in err and "\n" not in err
    np.savez(tmp_path / "empty.npz")
    rc, err = _error_of(["expand", str(tmp_path / "empty.npz"), "-o", out], capsys)
    assert rc == 2 and "holds no arrays" in err and "\n" not in err
    np.savez(tmp_path / "nan.npz", w=np.array([1.0, np.nan]))
    rc, err = _error_of(["expand", str(tmp_path / "nan.npz"), "-o", out], capsys)
    assert rc == 2 and "entry 'w': 1 NaN or Inf" in err
    np.savez(tmp_path / "ok.npz", w=np.ones(3))
    rc, err = _error_of(["expand", str(tmp_path / "ok.npz"), "--bits", "9", "-o", out], capsys)
    assert rc == 2 and "SeriesFormat.bits must be in 2..8, got 9" in err


def test_console_script_help_and_error_without_traceback(tmp_path):
    exe = [sys.executable, "-m", "fpxint_hw.cli"]
    helptext = subprocess.run(exe + ["--help"], capture_output=True, text=True, check=True).stdout
    assert "expand" in helptext and "demo" in helptext
    r = subprocess.run(exe + ["expand", str(tmp_path / "nope.npz"), "-o", "x.npz"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "nope.npz" in r.stderr


def test_demo_prints_the_convergence_table(tmp_path, capsys):
    assert main(["demo", "--terms", "3", "--tables-only", "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "SQNR gained by each added term" in text
    report = json.loads((tmp_path / "expand_convergence.json").read_text())
    conv = report["pow2"]["tensors"][0]["convergence"]
    assert len(conv) == 3 and conv[0]["sqnr_db"] < conv[2]["sqnr_db"]
