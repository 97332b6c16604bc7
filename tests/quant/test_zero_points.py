"""Zero points: an unsigned array computes signed tensors exactly.

A tensor that may be negative gets the unsigned format with a mid-range zero point when every
reader is a conv, linear layer or add; the simulator equals golden on such programs (padding
holds the zero point, the bias and the add offset fold it in), the grid dequantizes to the
float values within a step, the array's misfits of the signed kinds are gone, and the logits
are no less faithful than with signed grids.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fpxint_hw import golden
from fpxint_hw.errors import FormatError
from fpxint_hw.intops import acc_intervals
from fpxint_hw.float_exec import to_nhwc
from fpxint_hw.intsim import Simulator, layer_tiles, run_tile
from fpxint_hw.quant import (Add, Conv, GemmOp, Linear, MaxPool, expand_graph, for_array,
                             program_options)
from fpxint_hw.spec import SeriesFormat, load_array_spec
from fpxint_hw.workflows.network import input_range, load_inputs, load_network

from nethelpers import ZERO_POINT_INPUT, need_efficientnet_weights, ref_conv, zero_point_graph

FORMATS = [
    (SeriesFormat(4, 2, per_channel=True), SeriesFormat(4, 2)),
    (SeriesFormat(4, 3, per_channel=True), SeriesFormat(4, 3)),
    (SeriesFormat(3, 3, "free", per_channel=True), SeriesFormat(2, 4, "free")),
    (SeriesFormat(8, 1, per_channel=True), SeriesFormat(8, 1)),
    (SeriesFormat(2, 1, per_channel=True), SeriesFormat(5, 2)),
]


def _inputs(n=3, seed=0):
    """Inputs a little beyond the input range on both sides (so the input clamp is hit)."""
    lo, hi = ZERO_POINT_INPUT
    shape = zero_point_graph().input_shape
    return np.random.default_rng(seed).uniform(lo - 0.2, hi + 0.2, (n, *shape)).astype(np.float32)


def _program(w_fmt=FORMATS[0][0], a_fmt=FORMATS[0][1], **kw):
    return expand_graph(zero_point_graph(), w_fmt, a_fmt, input_range=ZERO_POINT_INPUT,
                        zero_points=True, **kw)


@pytest.fixture(scope="module")
def default_prog():
    return for_array(zero_point_graph(), load_array_spec("default"),
                     input_range=ZERO_POINT_INPUT)


def test_zero_points_only_where_every_reader_takes_them(default_prog):
    prog = default_prog
    t = prog.tensors()
    lo, hi = load_array_spec("default").a_fmt.combined_range
    # read by convs, linears, adds, or by a global pool / flatten whose reader takes it
    for name in ("x", "c1", "dw", "cl", "fc1", "add3", "add4"):
        assert not t[name].fmt.signed and t[name].zero_point == (lo + hi + 1) // 2 == 128
        assert lo <= t[name].lo < t[name].zero_point < t[name].hi <= hi
    assert t["gap1"].zero_point == t["add3"].zero_point           # the pool keeps it
    assert t["fl"].zero_point == t["add4"].zero_point             # and the flatten
    assert t["s3"].fmt.signed and t["s3"].zero_point == 0         # read by a max pool
    for name in ("r2", "rd2"):                                # ReLU: unsigned, no zero point
        assert not t[name].fmt.signed and t[name].zero_point == 0 and t[name].lo == 0
    # the signed Clip fused into add1 clamps in stored integers around the zero point
    cl = t["cl"]
    assert cl.real_range[0] == pytest.approx(-1.0, abs=cl.unit / 2)
    assert prog.layer("cl").offset != 0
    add4 = prog.layer("add4")                 # gap1 brings its zero point, gap2 none
    assert add4.offset == -add4.ma * t["gap1"].zero_point


def test_plain_expand_graph_and_signed_arrays_have_no_zero_points():
    for prog in (expand_graph(zero_point_graph(), *FORMATS[0], input_range=ZERO_POINT_INPUT),
                 for_array(zero_point_graph(), load_array_spec("signed"),
                           input_range=ZERO_POINT_INPUT)):
        assert all(q.out is None or q.out.zero_point == 0 for q in prog.layers)
        assert all(q.offset == 0 for q in prog.layers if q.kind == "add")
    assert not program_options(load_array_spec("signed")).zero_points
    assert program_options(load_array_spec("default")).zero_points


@pytest.mark.parametrize("w_fmt,a_fmt", FORMATS)
@pytest.mark.parametrize("mode", ["rne", "half_up"])
def test_simulator_equals_golden_with_zero_points(w_fmt, a_fmt, mode):
    """Every layer, every path and backend, lane orders: the same integers as golden."""
    prog = _program(w_fmt, a_fmt, mode=mode)
    assert sum(q.out is not None and q.out.zero_point != 0 for q in prog.layers) >= 5
    x = _inputs()
    gout, genv = golden.run_program(prog, x, capture=True)
    runs = [dict(path=p) for p in ("combined", "lanes", "model")]
    runs += [dict(backend=b) for b in ("int", "f64")] + [dict(path="lanes", lane_order=3)]
    for kw in runs:
        out, env = Simulator(prog, **kw).run(x, capture=True)
        for q in prog.layers:
            np.testing.assert_array_equal(env[q.name], genv[q.name],
                                          err_msg=f"{kw}: layer {q.name!r} ({q.kind})")
        np.testing.assert_array_equal(out, gout)


def test_model_level_program_with_zero_points_equals_golden():
    prog = _program(*FORMATS[1], level="model")
    x = _inputs()
    gout, _ = golden.run_program(prog, x)
    np.testing.assert_array_equal(Simulator(prog)(x), gout)


def test_mnist_resnet_for_default_equals_golden():
    graph, info = load_network("mnist-resnet")
    x, _, _ = load_inputs(graph, info, 2, None)
    prog = for_array(graph, load_array_spec("default"), input_range=input_range(info))
    assert any(q.out is not None and q.out.zero_point for q in prog.layers)
    gout, genv = golden.run_program(prog, x, capture=True)
    out, env = Simulator(prog).run(x, capture=True)
    for q in prog.layers:
        np.testing.assert_array_equal(env[q.name], genv[q.name], err_msg=q.name)
    np.testing.assert_array_equal(out, gout)


def test_zero_point_grid_dequantizes_within_a_step(default_prog):
    """Each layer's dequantized output is its float operation on its dequantized inputs
    (expanded weights, float bias, real zero padding), clamped to the grid, within half a
    step plus the bias's own rounding (half an accumulator step) and the multiplier's error:
    the zero points, the padding and the folded bias are exact in real terms."""
    prog = default_prog
    t = prog.tensors()
    x = _inputs()
    _, env = Simulator(prog).run(x, capture=True)
    xin = t["x"]
    inside = (x >= ZERO_POINT_INPUT[0]) & (x <= ZERO_POINT_INPUT[1])
    err = np.abs(xin.real(env["x"]) - x)[inside]
    assert err.max() <= xin.unit / 2 * (1 + 1e-9)
    assert prog.quantize_input(np.zeros(1))[0] == xin.zero_point
    z = t["cl"].zero_point
    assert dataclasses.replace(prog, output="cl").dequantize_output(np.array([[z]])) == 0
    checked = set()
    for q in prog.layers:
        if q.out is None or not isinstance(q, (GemmOp, Add)):
            continue
        ins = [t[i].real(env[i]) for i in q.inputs]
        tol = np.float64(0.0)
        if isinstance(q, Add):
            ref = ins[0] + ins[1]
        else:
            shape = (1, -1) + (1,) * (env[q.name].ndim - 2)
            tol = (q.w_unit * t[q.inputs[0]].unit / 2).reshape(shape)
            node = prog.graph.node(q.node)
            w = q.w_combined() * q.w_unit.reshape((-1,) + (1,) * (q.w_digits.ndim - 2))
            b = prog.graph.params[node.bias].astype(np.float64)
            if isinstance(q, Conv):
                ref = ref_conv(ins[0], w, None, q.stride, q.padding, q.dilation, q.groups)
                ref += b.reshape(1, -1, 1, 1)
            else:
                ref = ins[0] @ w.T + b
        got = q.out.real(env[q.name])
        want = np.clip(ref, *q.out.real_range)
        assert np.all(np.abs(got - want) <= (q.out.unit / 2 + tol) * (1 + 1e-6)), q.name
        checked.add(q.name)
    assert {"c1", "dw", "cl", "r2", "rd2", "fc1"} <= checked


def test_accumulator_bounds_hold_with_zero_point_inputs(default_prog):
    """The stored-value accumulator interval (``[lo, hi]`` inputs, folded bias) that the
    requantization, the width analysis and the array check use holds every accumulator of
    a zero-point input, padded taps included, on extreme inputs."""
    prog = default_prog
    t = prog.tensors()
    rng = np.random.default_rng(5)
    _, env = golden.run_program(prog, _inputs(4), capture=True)
    for q in prog.gemm_layers():
        xin = t[q.inputs[0]]
        if not xin.zero_point:
            continue
        xs = rng.choice([xin.lo, xin.hi], size=env[q.inputs[0]].shape)
        bare = dataclasses.replace(q, requant=None)
        acc = golden.run_layer(bare, [xs], t)
        mins, maxes = acc_intervals(q.w_combined(), xin.lo, xin.hi, q.bias)
        acc = np.moveaxis(acc, 1, -1).reshape(-1, q.out_channels)
        assert np.all(acc >= np.array(mins)) and np.all(acc <= np.array(maxes)), q.name


def test_tiles_of_zero_point_layers_replay(default_prog):
    """The tile cutter's im2col pads with the zero point: every layer's tiles (the hardware's
    input) compute the simulator's layer, in the tile runner and in golden, and the array's
    pass planner takes them."""
    from fpxint_hw.hw.program import check_tile
    prog = default_prog
    spec = load_array_spec("default")
    sim = Simulator(prog)
    _, env = sim.run(_inputs(2), capture=True)
    for q in prog.gemm_layers():
        if q.name in prog.target.misfits:
            continue
        xi = to_nhwc(env[q.inputs[0]])
        tiles = layer_tiles(prog, q.name, xi, sim)
        outs = []
        for g, tile in enumerate(tiles):
            res = run_tile(tile)
            ref = golden.reference_tile(tile)
            np.testing.assert_array_equal(res.acc, ref.acc)
            np.testing.assert_array_equal(res.out, ref.out)
            check_tile(spec, tile, f"{q.name}[{g}]")
            outs.append(res.out if q.requant is not None else res.acc)
        want = sim.run_layer(q, [xi]).reshape(-1, q.out_channels)
        np.testing.assert_array_equal(np.concatenate(outs, axis=1), want, err_msg=q.name)


def test_program_refuses_a_pool_on_a_zero_point_tensor(default_prog):
    prog = default_prog
    layers = list(prog.layers)
    i = next(k for k, q in enumerate(layers) if q.name == "mp")
    layers[i] = MaxPool(name="mp", inputs=("cl",), out=prog.tensors()["cl"], node="mp",
                        kernel=(3, 3), stride=(1, 1), padding=(1, 1, 1, 1))
    with pytest.raises(FormatError, match="zero point"):
        dataclasses.replace(prog, layers=tuple(layers))


@pytest.mark.parametrize("model", ["mnist-resnet", "resnet50", "efficientnet-lite0"])
def test_for_array_default_leaves_no_signed_misfits(model):
    if model == "efficientnet-lite0":
        need_efficientnet_weights()
    graph, info = load_network(model)
    prog = for_array(graph, load_array_spec("default"), input_range=input_range(info))
    signed = {k: v for k, v in prog.target.misfits.items() if " signed " in v}
    assert not signed, signed
    t = prog.tensors()
    shifted = [q for q in prog.gemm_layers() if t[q.inputs[0]].zero_point
               or (q.out is not None and q.out.zero_point)]
    assert shifted, "no layer reads or writes a zero-point tensor: nothing was tested"
    assert all(isinstance(q, (Conv, Linear)) for q in shifted)


def test_fidelity_on_mnist_resnet_is_no_worse_than_signed_grids():
    """The logit SQNR of the default array's program with zero points against the same
    options with signed grids (the program before zero points): no worse than 0.5 dB."""
    from fpxint_hw.workflows.simulate import run_simulation
    graph, info = load_network("mnist-resnet")
    x, labels, _ = load_inputs(graph, info, 200, None)
    spec = load_array_spec("default")
    rng = input_range(info)
    (zp,), _, ref = run_simulation(graph, x, spec=spec, per_term=False, in_range=rng,
                                   labels=labels)
    (signed,), _, _ = run_simulation(graph, x, dataclasses.replace(spec.w_fmt, per_channel=True),
                                     spec.a_fmt, per_term=False, in_range=rng, labels=labels,
                                     ref=ref)
    assert zp["logit_sqnr_db"] >= signed["logit_sqnr_db"] - 0.5, (zp, signed)
