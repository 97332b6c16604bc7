"""The fast simulator against the golden model on the mobile-network ops (lookup tables, SE
gate multiply, concat, scale, pad): equal integers in every layer, every path, both gate
orders, signed and unsigned grids, two formats; and their rows in the width analysis."""

from __future__ import annotations

import numpy as np
import pytest

from fpxint_hw import golden
from fpxint_hw.errors import WidthError
from fpxint_hw.intsim import Simulator, WidthConfig, analyze_widths
from fpxint_hw.quant import expand_graph
from fpxint_hw.spec import SeriesFormat

from mobilehelpers import MOBILE_KINDS, mobile_graph

FORMATS = [(SeriesFormat(4, 2, per_channel=True), SeriesFormat(4, 2)),
           (SeriesFormat(4, 3, per_channel=True), SeriesFormat(4, 3))]


@pytest.mark.parametrize("w_fmt,a_fmt", FORMATS, ids=["W4x2A4x2", "W4x3A4x3"])
@pytest.mark.parametrize("seed,gate_first,signed,mode", [
    (0, False, False, "rne"), (1, True, False, "half_up"), (2, True, True, "rne"),
    (3, False, True, "half_up")])
def test_every_mobile_layer_matches_golden(w_fmt, a_fmt, seed, gate_first, signed, mode):
    g = mobile_graph(seed, gate_first)
    prog = expand_graph(g, w_fmt, a_fmt, "layer", signed_activations=signed, mode=mode)
    assert set(MOBILE_KINDS) <= {q.kind for q in prog.layers}
    x = 1.5 * np.random.default_rng(seed).standard_normal((3, *g.input_shape)).astype(np.float32)
    gout, genv = golden.run_program(prog, x, capture=True)
    for path in ("combined", "lanes"):
        out, env = Simulator(prog, path=path).run(x, capture=True)
        for q in prog.layers:
            np.testing.assert_array_equal(env[q.name], genv[q.name],
                                          err_msg=f"layer {q.name!r} ({q.kind}) differs")
        np.testing.assert_array_equal(out, gout)
    # the lookups really see much of their tables (not a constant corner)
    assert len(np.unique(genv["hs"])) > 10 and len(np.unique(genv["se_mul"])) > 10


def test_model_level_program_with_mobile_ops_matches_golden():
    g = mobile_graph(4)
    prog = expand_graph(g, *FORMATS[0], "model")
    x = np.random.default_rng(4).standard_normal((2, *g.input_shape)).astype(np.float32)
    np.testing.assert_array_equal(Simulator(prog).run(x)[0], golden.run_program(prog, x)[0])


def test_width_analysis_bounds_mul_concat_and_scale():
    g = mobile_graph(0)
    prog = expand_graph(g, *FORMATS[1], "layer")
    rows = analyze_widths(prog)
    t = prog.tensors()
    by_layer = {}
    for r in rows:
        by_layer.setdefault(r.layer, []).append(r)
    mul = prog.layer("se_mul")
    steps = [max(map(abs, t[i].steps)) for i in mul.inputs]
    (row,) = [r for r in by_layer["se_mul"] if "product" in r.node]
    assert row.bound == steps[0] * steps[1] * mul.m0 + (1 << (mul.shift - 1))
    assert len([r for r in by_layer["cat"] if "input" in r.node]) == 2
    assert any("scale" in r.node for r in by_layer["sc"])
    # each of these rows fits a width of exactly what it needs and is refused one bit less
    mine = [(i, r) for i, r in enumerate(rows)
            if r.layer in ("se_mul", "cat", "sc") and "storage" not in r.node]
    assert len(mine) == 4
    for i, r in mine:
        assert analyze_widths(prog, WidthConfig(acc_bits=r.needed), check=False)[i].ok
        assert not analyze_widths(prog, WidthConfig(acc_bits=r.needed - 1), check=False)[i].ok


@pytest.mark.parametrize("runtime", ["ort", "reference"])
def test_int_onnx_export_of_mobile_ops_equals_golden(runtime):
    """The integer ONNX export (tables as Gather on constant int64 tables) run by
    onnxruntime / onnx.reference gives golden's integers in every layer."""
    pytest.importorskip("onnx")
    if runtime == "ort":
        pytest.importorskip("onnxruntime")
    from fpxint_hw.io.int_onnx import int_onnx_model, run_int_onnx
    for seed, gate_first in ((0, False), (1, True)):
        g = mobile_graph(seed, gate_first)
        prog = expand_graph(g, *FORMATS[0], "layer")
        x = np.random.default_rng(seed).standard_normal((2, *g.input_shape)).astype(np.float32)
        gout, genv = golden.run_program(prog, x, capture=True)
        env = run_int_onnx(int_onnx_model(prog), x, runtime, layers=True)
        for q in prog.layers:
            np.testing.assert_array_equal(env[q.name], genv[q.name], err_msg=q.name)
        np.testing.assert_array_equal(env["int_output"], gout)


def test_qdq_export_refuses_mobile_ops_naming_the_layer():
    pytest.importorskip("onnx")
    from fpxint_hw.errors import InputError
    from fpxint_hw.io.qdq_onnx import qdq_onnx_model
    prog = expand_graph(mobile_graph(0), *FORMATS[0], "layer")
    with pytest.raises(InputError, match=r"layer 'hs' is a 'lookup' \(graph op 'hardswish'\)"):
        qdq_onnx_model(prog)
