"""Transposed convolutions (zero insertion, padding, a convolution) and nearest upsampling in
the integer program: golden against loops written here, the fast simulator and the
int-onnx export against golden, zero points on the unsigned default array, and the
deconvolution's convolution on the RTL."""

from __future__ import annotations

import numpy as np
import pytest

from fpxint_hw import golden
from fpxint_hw.graph import Conv2d, Graph, Input, Pad, Relu, Upsample, ZeroInsert
from fpxint_hw.intsim import Simulator
from fpxint_hw.quant import expand_graph, for_array
from fpxint_hw.spec import SeriesFormat, load_array_spec

FORMATS = [(SeriesFormat(4, 2, per_channel=True), SeriesFormat(4, 2)),
           (SeriesFormat(4, 3, per_channel=True), SeriesFormat(4, 3))]


def decoder_graph(seed: int = 0) -> Graph:
    """conv -> (signed) -> 2x3 zero insertion -> pad -> conv (a deconvolution) -> ReLU ->
    nearest 2x upsampling -> conv: a segmentation-style decoder."""
    rng = np.random.default_rng(seed)
    p = {f"{n}.w": rng.standard_normal(s) * 0.4 for n, s in
         (("c0", (4, 3, 3, 3)), ("dc", (5, 4, 3, 3)), ("c1", (3, 5, 3, 3)))}
    p.update({f"{n}.b": 0.2 * rng.standard_normal(c) for n, c in (("c0", 4), ("dc", 5),
                                                                  ("c1", 3))})
    conv = dict(weight="{}.w", bias="{}.b")
    nodes = [Input(name="x", shape=(3, 5, 4)),
             Conv2d(name="c0", inputs=("x",), padding=1,
                    **{k: v.format("c0") for k, v in conv.items()}),
             ZeroInsert(name="spread", inputs=("c0",), stride=(2, 3)),
             Pad(name="pad", inputs=("spread",), padding=(2, 2, 3, 2)),
             Conv2d(name="dc", inputs=("pad",), **{k: v.format("dc") for k, v in conv.items()}),
             Relu(name="r", inputs=("dc",)),
             Upsample(name="up", inputs=("r",), scale=(2, 2)),
             Conv2d(name="c1", inputs=("up",), padding=1,
                    **{k: v.format("c1") for k, v in conv.items()})]
    return Graph(tuple(nodes), p, name="decoder")


def test_golden_zero_insert_and_upsample_equal_loops():
    x = np.random.default_rng(0).integers(-9, 9, (2, 3, 4, 5))
    z = golden.zero_insert2d(x, (2, 3), 7)
    u = golden.upsample2d(x, (3, 2))
    assert z.shape == (2, 3, 7, 13) and u.shape == (2, 3, 12, 10)
    for n, c, i, j in np.ndindex(*z.shape):
        want = x[n, c, i // 2, j // 3] if i % 2 == 0 and j % 3 == 0 else 7
        assert z[n, c, i, j] == want
    for n, c, i, j in np.ndindex(*u.shape):
        assert u[n, c, i, j] == x[n, c, i // 3, j // 2]


@pytest.mark.parametrize("w_fmt,a_fmt", FORMATS, ids=["W4x2A4x2", "W4x3A4x3"])
@pytest.mark.parametrize("mode", ["rne", "half_up"])
def test_simulator_equals_golden_on_a_decoder(w_fmt, a_fmt, mode):
    g = decoder_graph(1)
    prog = expand_graph(g, w_fmt, a_fmt, "layer", mode=mode)
    x = np.random.default_rng(1).standard_normal((2, *g.input_shape)).astype(np.float32)
    gout, genv = golden.run_program(prog, x, capture=True)
    for path in ("combined", "lanes"):
        out, env = Simulator(prog, path=path).run(x, capture=True)
        for q in prog.layers:
            np.testing.assert_array_equal(env[q.name], genv[q.name], err_msg=q.name)
        np.testing.assert_array_equal(out, gout)


def test_zero_points_through_the_deconvolution_on_the_default_array():
    """c0's output may be negative: on the unsigned default array it gets a zero point that
    the zero insertion writes into its gaps (real 0), so every conv fits the array, and the
    dequantized zero insertion is the float one of its dequantized input."""
    g = decoder_graph(2)
    prog = for_array(g, load_array_spec("default"))
    t = prog.tensors()
    assert not prog.target.misfits
    z = t["c0"].zero_point
    assert z > 0 and t["spread"].zero_point == z
    x = np.random.default_rng(2).standard_normal((2, *g.input_shape)).astype(np.float32)
    gout, genv = golden.run_program(prog, x, capture=True)
    out, env = Simulator(prog).run(x, capture=True)
    for q in prog.layers:
        np.testing.assert_array_equal(env[q.name], genv[q.name], err_msg=q.name)
    real_in = t["c0"].real(genv["c0"])
    want = np.zeros((2, 4, 9, 10))
    want[:, :, ::2, ::3] = real_in
    np.testing.assert_array_equal(t["spread"].real(genv["spread"]), want)


@pytest.mark.parametrize("runtime", ["ort", "reference"])
def test_int_onnx_export_of_the_decoder_equals_golden(runtime):
    pytest.importorskip("onnx")
    if runtime == "ort":
        pytest.importorskip("onnxruntime")
    from fpxint_hw.io.int_onnx import int_onnx_model, run_int_onnx
    g = decoder_graph(3)
    prog = for_array(g, load_array_spec("default"))
    x = np.random.default_rng(3).standard_normal((2, *g.input_shape)).astype(np.float32)
    gout, genv = golden.run_program(prog, x, capture=True)
    env = run_int_onnx(int_onnx_model(prog), x, runtime, layers=True)
    for q in prog.layers:
        np.testing.assert_array_equal(env[q.name], genv[q.name], err_msg=q.name)


def test_the_deconvolution_runs_on_the_rtl():
    from fpxint_hw.flow.network import run_network
    from fpxint_hw.flow.verilator import build, verilator_missing
    if verilator_missing():
        pytest.skip(f"Verilator unusable: {verilator_missing()}")
    spec = load_array_spec("small")
    g = decoder_graph(4)
    prog = for_array(g, spec)
    x = np.random.default_rng(4).standard_normal((1, *g.input_shape)).astype(np.float32)
    run = run_network(prog, x, build(spec))
    assert run.mismatch is None and run.outputs_equal
    assert {lay.node for lay in run.layers} == {"c0", "dc", "c1"}
