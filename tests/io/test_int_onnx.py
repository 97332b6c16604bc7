"""The integer program as ONNX: onnxruntime and onnx.reference give the simulator's integers,
every layer, bit for bit; its rounding shifts, division-free splits and int32 lane bound hold
at their edges; a changed constant is reported as its layer."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the onnx package writes the int-onnx graph")
pytest.importorskip("onnxruntime", reason="onnxruntime is one of the two runtimes compared")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from fpxint_hw import golden  # noqa: E402
from fpxint_hw.errors import InputError, WidthError  # noqa: E402
from fpxint_hw.graph import Conv2d, Flatten, Graph, Input, Linear  # noqa: E402
from fpxint_hw.intsim import Simulator  # noqa: E402
from fpxint_hw.io import int_onnx  # noqa: E402
from fpxint_hw.io.int_onnx import (OUTPUT_NAME, compare_int_outputs, int_onnx_model,  # noqa: E402
                                   layer_names, run_int_onnx)
from fpxint_hw.quant import OPS, expand_graph, for_array  # noqa: E402
from fpxint_hw.spec import SeriesFormat, load_array_spec  # noqa: E402
from fpxint_hw.workflows.network import input_range, load_inputs, load_network  # noqa: E402
from fpxint_hw.workflows.simulate import compile_terms  # noqa: E402
from nethelpers import (ZERO_POINT_INPUT, need_efficientnet_weights, tiny_graph,  # noqa: E402
                        zero_point_graph)

RUNTIMES = ("ort", "reference")


def _check_all_layers(prog, x, runtimes=RUNTIMES):
    """Every layer of ``prog`` on ``x`` in each runtime against the simulator; returns the
    model."""
    model = int_onnx_model(prog)
    out, want = Simulator(prog).run(x, capture=True)
    want[OUTPUT_NAME] = out
    names = layer_names(model) + [OUTPUT_NAME]
    assert len(names) == len(prog.layers) + 1
    for rt in runtimes:
        got = run_int_onnx(model, x, rt, layers=True)
        report = compare_int_outputs(want, got, names)
        assert report == {"layers_checked": len(names), "mismatches": 0, "first": None}, rt
        assert np.array_equal(got[OUTPUT_NAME], out)
    return model


def _ops(model) -> dict:
    found: dict[str, int] = {}
    for n in model.graph.node:
        found[n.op_type] = found.get(n.op_type, 0) + 1
    return found


def test_every_op_kind_has_a_writer():
    assert set(int_onnx.KINDS) == {op.kind for op in OPS}


# -- the rounding shifts and the division-free split -------------------------------------------

def _function_model(names, shape):
    fns = int_onnx._functions()
    nodes = [helper.make_node(n, ["x", "n"], [f"y_{n}"], domain=int_onnx.DOMAIN) for n in names]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.INT64,
                                                                     shape),
                                       helper.make_tensor_value_info("n", TensorProto.UINT64,
                                                                     [1, shape[1]])],
                          [helper.make_tensor_value_info(f"y_{n}", TensorProto.INT64, shape)
                           for n in names])
    model = helper.make_model(g, functions=fns, opset_imports=[
        helper.make_opsetid("", int_onnx.INT_ONNX_OPSET), helper.make_opsetid(int_onnx.DOMAIN, 1)])
    model.ir_version = 9
    onnx.checker.check_model(model, full_check=True)
    return model


def _run(model, feed, runtime):
    if runtime == "reference":
        from onnx.reference import ReferenceEvaluator
        return ReferenceEvaluator(model).run(None, feed)
    import onnxruntime as ort
    return ort.InferenceSession(model.SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, feed)


def _ref_shift(v: int, n: int, mode: str) -> int:
    """``v / 2^n`` rounded, from exact rationals (Python's round() ties to even)."""
    f = Fraction(v, 1 << n)
    if mode == "floor":
        return f.numerator // f.denominator
    if mode == "rne":
        return round(f)
    return (f + Fraction(1, 2)).__floor__()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_rounding_shifts_are_exact_at_ties_signs_and_int64_edges(runtime):
    shifts = [0, 1, 2, 5, 31, 61, 62]
    rng = np.random.default_rng(0)
    cols = []
    for n in shifts:
        base = [0, 1, -1, 2**62 - 1, -2**62, 2**63 - 1, -2**63 + 1]
        if n:                                   # every tie and its neighbours, both signs
            for k in (0, 1, 2, 3, -1, -2, -3, 2**(62 - n) - 1, -2**(62 - n)):
                t = k * (1 << n) + (1 << (n - 1))
                base += [t - 1, t, t + 1]
        base = [b for b in base if -2**63 < b < 2**63]
        col = np.array(base + list(rng.integers(-2**62, 2**62, 64 - len(base) % 64)),
                       dtype=np.int64)
        cols.append(col)
    size = max(len(c) for c in cols)
    x = np.stack([np.resize(c, size) for c in cols], axis=1)
    model = _function_model(list(int_onnx._SHIFT_FUNCTIONS.values()), list(x.shape))
    out = _run(model, {"x": x, "n": np.array([shifts], np.uint64)}, runtime)
    for mode, got in zip(int_onnx._SHIFT_FUNCTIONS, out):
        for c, n in enumerate(shifts):
            want = [_ref_shift(int(v), n, mode) for v in x[:, c]]
            assert got[:, c].tolist() == want, (mode, n)


@pytest.mark.parametrize("d", [3, 14, 126, 254])
def test_division_free_floor_is_exact_up_to_its_bound_and_refused_one_past(d):
    # the largest bound the magic multiplier allows for d (found here, asserted below)
    lo, hi = 1, 1 << 40
    while lo < hi:
        mid = (lo + hi + 1) // 2
        try:
            int_onnx._magic_divisor(d, mid, "t")
            lo = mid
        except WidthError:
            hi = mid - 1
    edge = lo
    int_onnx._magic_divisor(d, edge, "t")
    with pytest.raises(WidthError, match="int64"):
        int_onnx._magic_divisor(d, edge + 1, "t")
    k, m, s = int_onnx._magic_divisor(d, edge, "t")
    xs = [edge, -edge, 0, 1, -1]
    for q in (edge // d, -(edge // d), 7, -7):
        xs += [q * d - 1, q * d, q * d + 1]
    xs = [v for v in xs if abs(v) <= edge]
    # the same arithmetic the graph does, in int64 numpy (wraps if the bound were wrong)
    x = np.array(xs, dtype=np.int64)
    got = (((x + np.int64(k * d)) * np.int64(m)).astype(np.uint64) >> np.uint64(s)).astype(
        np.int64) - np.int64(k)
    assert got.tolist() == [v // d for v in xs]


def _free_split_program():
    """tiny_graph with signed free-mode activations: every signed conv input is split by
    lane weights 14^k without division."""
    return expand_graph(tiny_graph(), SeriesFormat(4, 3, "free", per_channel=True),
                        SeriesFormat(4, 3, "free"), "layer", input_range=(-2.0, 2.0),
                        mode="half_up")


# -- whole programs ----------------------------------------------------------------------------

def _inputs(graph, lo, hi, n=3, seed=1):
    rng = np.random.default_rng(seed)
    return rng.uniform(lo * 1.2, hi * 1.2, (n, *graph.input_shape)).astype(np.float32)


PROGRAMS = {
    "tiny W4x2/A4x2 rne": lambda: expand_graph(
        tiny_graph(), SeriesFormat(4, 2, per_channel=True), SeriesFormat(4, 2), "layer",
        input_range=(-2.0, 2.0)),
    "tiny W4x3/A4x3 free half_up": _free_split_program,
    "tiny W6x4/A6x4 model pre-shift": lambda: expand_graph(
        tiny_graph(), SeriesFormat(6, 4, per_channel=True), SeriesFormat(6, 4), "model",
        input_range=(-2.0, 2.0)),
    "tiny W8x1/A8x1": lambda: expand_graph(
        tiny_graph(), SeriesFormat(8, 1, per_channel=True), SeriesFormat(8, 1), "layer",
        input_range=(-2.0, 2.0)),
    "zero points, spec default": lambda: for_array(
        zero_point_graph(), load_array_spec("default"), input_range=ZERO_POINT_INPUT),
    "signed conv inputs W4x3/A4x3 free": lambda: expand_graph(
        zero_point_graph(), SeriesFormat(4, 3, "free", per_channel=True),
        SeriesFormat(4, 3, "free"), "layer", input_range=ZERO_POINT_INPUT),
}


@pytest.mark.parametrize("name", list(PROGRAMS))
def test_every_layer_equals_the_simulator_in_both_runtimes(name):
    prog = PROGRAMS[name]()
    lo, hi = ZERO_POINT_INPUT if prog.graph.name == "zero_points" else (-2.0, 2.0)
    model = _check_all_layers(prog, _inputs(prog.graph, lo, hi))
    onnx.checker.check_model(model, full_check=True)
    ops = _ops(model)
    # between the input quantization and the output: integer ops only
    float_ops = {n.name for n in model.graph.node
                 if n.op_type in ("Div", "Round") or (n.op_type == "Cast" and any(
                     a.name == "to" and a.i == TensorProto.DOUBLE for a in n.attribute))}
    first = prog.layers[0].name
    assert float_ops <= {f"{first}/f64", f"{first}/steps", f"{first}/rounded"}
    assert all(i.name.startswith(f"{first}/") for i in model.graph.initializer
               if i.data_type in (TensorProto.FLOAT, TensorProto.DOUBLE))
    assert not {"Conv", "MatMul", "Gemm", "QuantizeLinear", "DequantizeLinear"} & set(ops)
    # what each case is there for, so that none of them can quietly stop covering it
    gemms = prog.gemm_layers()
    lanes = sum(int(q.lanes_on(prog.tensors()[q.inputs[0]].fmt.terms).sum()) for q in gemms)
    assert ops["ConvInteger"] + ops["MatMulInteger"] == lanes
    if "pre-shift" in name:
        assert any(q.requant is not None and q.requant.pre_shift.any() for q in gemms)
    if "free" in name:
        assert any(n.name.endswith("/above_half") for n in model.graph.node)
    if "zero points" in name:
        assert any(t.zero_point for t in prog.tensors().values() if t is not None)
    if "half_up" in name:
        assert ops.get("RoundShiftHalfUp") and not ops.get("RoundShiftRNE")


def test_lanes_are_named_after_their_layer_and_terms():
    prog = PROGRAMS["tiny W4x3/A4x3 free half_up"]()
    model = int_onnx_model(prog)
    convs = {n.name for n in model.graph.node if n.op_type == "ConvInteger"}
    # c1 + BatchNorm + ReLU is one layer, named after the ReLU
    assert {f"r1/w{k}a{j}" for k in (1, 2, 3) for j in (1, 2, 3)} <= convs
    fc = [n for n in model.graph.node if n.op_type == "MatMulInteger"]
    assert sorted(n.name for n in fc) == sorted(f"fc/w{k}a{j}" for k in (1, 2, 3)
                                                for j in (1, 2, 3))
    # a lane reads activation term j of its input and weight term k of its layer
    lane = next(n for n in fc if n.name == "fc/w2a3")
    assert lane.input[0] == "fl/a3" and lane.input[1] == "fc/w2"


def test_switched_off_lanes_are_left_out_and_the_rest_stay_exact():
    prog = PROGRAMS["tiny W4x2/A4x2 rne"]()
    layers = list(prog.layers)
    for name, off in (("c3", [(1, 0)]), ("fc", [(0, 0), (0, 1), (1, 0), (1, 1)])):
        i = next(i for i, q in enumerate(layers) if q.name == name)
        mask = np.ones((2, 2), dtype=bool)
        for k, j in off:
            mask[k, j] = False
        layers[i] = dataclasses.replace(layers[i], lane_mask=mask)
    prog = dataclasses.replace(prog, layers=tuple(layers))
    x = _inputs(prog.graph, -2.0, 2.0)
    out, want = golden.run_program(prog, x, capture=True)     # the golden model takes masks
    want[OUTPUT_NAME] = out
    model = int_onnx_model(prog)
    names = layer_names(model) + [OUTPUT_NAME]
    for rt in RUNTIMES:
        assert compare_int_outputs(want, run_int_onnx(model, x, rt, layers=True),
                                   names)["mismatches"] == 0, rt
    nodes = {n.name for n in model.graph.node}
    assert "c3/w2a1" not in nodes and "c3/w1a1" in nodes
    assert not {f"fc/w{k}a{j}" for k in (1, 2) for j in (1, 2)} & nodes
    assert np.all(out == np.asarray(prog.layer("fc").bias)[None, :])   # acc = bias


def test_input_quantization_rounds_ties_to_even_and_clamps():
    for prog in (PROGRAMS["tiny W4x2/A4x2 rne"](), PROGRAMS["zero points, spec default"]()):
        q0 = prog.layers[0]
        unit = 2.0 ** -4                        # k + 1/2 steps are exact in float32 and float64
        qt = dataclasses.replace(q0.out, unit=unit)
        prog = dataclasses.replace(prog, layers=(dataclasses.replace(q0, out=qt),)
                                   + prog.layers[1:])
        ks = np.arange(qt.lo - qt.zero_point - 3, qt.hi - qt.zero_point + 3)
        ties = (ks + 0.5) * unit
        x = np.concatenate([ties, -ties, ties + unit / 4, [np.inf, -np.inf, 3e38, -3e38, 0.0]])
        size = int(np.prod(prog.graph.input_shape))
        batch = np.resize(x.astype(np.float32), (-(-x.size // size) * size,))
        batch = batch.reshape(-1, *prog.graph.input_shape)
        # the nearest step, ties to the even one: k + 1/2 -> k (k even) or k + 1 (k odd)
        steps = batch.reshape(-1).astype(np.float64) / unit
        low = np.floor(steps)
        with np.errstate(invalid="ignore"):     # inf - inf at the infinite inputs
            tie = steps - low == 0.5
            want = np.where(tie, low + (low % 2), np.floor(steps + 0.5))
        want = np.clip(want + qt.zero_point, qt.lo, qt.hi).astype(np.int64)
        assert tie.sum() > 20 and (want == qt.lo).any() and (want == qt.hi).any()
        model = int_onnx_model(prog)
        for rt in RUNTIMES:
            got = run_int_onnx(model, batch, rt, layers=True)[q0.name]
            assert got.reshape(-1).tolist() == want.tolist(), rt


def test_near_ties_of_a_non_power_of_two_unit_quantize_as_the_simulator():
    g, info = load_network("mnist-resnet")
    prog, _, _ = compile_terms(g, w_fmt=SeriesFormat(4, 2, per_channel=True),
                               a_fmt=SeriesFormat(4, 2), in_range=input_range(info))
    unit = prog.layers[0].out.unit
    assert unit != 2.0 ** np.round(np.log2(unit))
    # float32 inputs whose float64 quotient lies within a few ulps of k + 1/2
    near = []
    for k in range(0, 255):
        x0 = np.float32((k + 0.5) * unit)
        for step in range(-3, 4):
            v = np.float32(x0)
            for _ in range(abs(step)):
                v = np.nextafter(v, np.float32(np.sign(step) * np.inf), dtype=np.float32)
            near.append(v)
    near = np.array(near, np.float32)
    batch = np.resize(near, (int(np.ceil(near.size / 784)) * 784,)).reshape(-1, 1, 28, 28)
    model = int_onnx_model(prog)
    for rt in RUNTIMES:
        got = run_int_onnx(model, batch, rt, layers=True)[prog.layers[0].name]
        assert np.array_equal(got, prog.quantize_input(batch)), rt


# -- the real networks --------------------------------------------------------------------------

MNIST_FORMATS = {
    "W4x2/A4x2": dict(w_fmt=SeriesFormat(4, 2, per_channel=True), a_fmt=SeriesFormat(4, 2)),
    "W4x3/A4x3": dict(w_fmt=SeriesFormat(4, 3, per_channel=True), a_fmt=SeriesFormat(4, 3)),
    "spec default": dict(spec=load_array_spec("default"), spec_name="default"),
}


# (W4x2/A4x2 is checked in both runtimes by the next test before it changes a constant)
@pytest.mark.parametrize("fmt", ["W4x3/A4x3", "spec default"])
def test_mnist_resnet_on_held_out_digits_equals_the_simulator(fmt):
    g, info = load_network("mnist-resnet")
    x, _, _ = load_inputs(g, info, 4, None)       # 4 held-out digits
    prog, _, _ = compile_terms(g, in_range=input_range(info), **MNIST_FORMATS[fmt])
    model = _check_all_layers(prog, x)
    assert model.graph.output[0].name == OUTPUT_NAME


def test_a_changed_weight_digit_or_multiplier_is_reported_as_its_layer():
    g, info = load_network("mnist-resnet")
    x, _, _ = load_inputs(g, info, 4, None)
    prog, _, _ = compile_terms(g, in_range=input_range(info), **MNIST_FORMATS["W4x2/A4x2"])
    out, want = Simulator(prog).run(x, capture=True)
    want[OUTPUT_NAME] = out
    model = _check_all_layers(prog, x)
    names = layer_names(model) + [OUTPUT_NAME]
    for init_name, layer, change, rt in (
            ("layer2.0.relu1/w1", "layer2.0.relu1", lambda v: v - 1, "ort"),  # a weight digit
            ("layer1.0.conv2/scaled/m", "layer1.0.conv2", lambda v: v * 3 // 4,  # one M0
             "reference")):
        bad = onnx.ModelProto.FromString(model.SerializeToString())
        init = next(i for i in bad.graph.initializer if i.name == init_name)
        arr = numpy_helper.to_array(init).copy()
        flat = arr.reshape(-1)
        i = int(np.argmax(flat))
        flat[i] = change(flat[i])
        init.CopyFrom(numpy_helper.from_array(arr, init_name))
        report = compare_int_outputs(want, run_int_onnx(bad, x, rt, layers=True), names)
        assert report["mismatches"] >= 2, (init_name, rt)       # the layer and the output
        assert report["first"]["layer"] == layer, (init_name, rt)
        assert report["first"]["expected"] != report["first"]["got"]


# -- widths and names --------------------------------------------------------------------------

def _wide_linear(features: int):
    """An 8-bit linear layer over ``features`` inputs: every lane sums ``features``
    products of uint8 activations (up to 255) and uint8 weights ``w + 128`` (up to 255)."""
    rng = np.random.default_rng(3)
    p = {"fc.w": rng.standard_normal((2, features)), "fc.b": np.zeros(2)}
    p["fc.w"][:, 0] = 10.0                      # the largest weight: digit 127, stored 255
    nodes = (Input(name="x", shape=(features, 1, 1)), Flatten(name="fl", inputs=("x",)),
             Linear(name="fc", inputs=("fl",), weight="fc.w", bias="fc.b"))
    return expand_graph(Graph(nodes, p, name="wide"), SeriesFormat(8, 1, per_channel=True),
                        SeriesFormat(8, 1), "layer", input_range=(0.0, 1.0))


def test_lane_int32_bound_just_fits_and_one_more_product_is_refused():
    # bound per product: a w_stored + 128 a (weight zero point) = 255 * 255 + 128 * 255
    per = 255 * 255 + 128 * 255
    k_max = ((1 << 31) - 1) // per
    prog = _wide_linear(k_max)
    model = int_onnx_model(prog)               # just fits: exported, and exact at the extremes
    x = np.ones((2, k_max, 1, 1), np.float32)
    x[1] = 0.0
    _check_all_layers(prog, x)
    assert model is not None
    with pytest.raises(WidthError, match="fc/w1a1"):
        int_onnx_model(_wide_linear(k_max + 1))


def test_a_layer_named_like_the_graph_output_is_refused():
    rng = np.random.default_rng(0)
    p = {"c.w": rng.standard_normal((2, 1, 3, 3)), "fc.w": rng.standard_normal((3, 2 * 16)),
         "fc.b": np.zeros(3)}
    nodes = (Input(name="x", shape=(1, 6, 6)),
             Conv2d(name="int_output", inputs=("x",), weight="c.w"),
             Flatten(name="fl", inputs=("int_output",)),
             Linear(name="fc", inputs=("fl",), weight="fc.w", bias="fc.b"))
    prog = expand_graph(Graph(nodes, p, name="clash"), SeriesFormat(4, 2, per_channel=True),
                        SeriesFormat(4, 2), "layer", input_range=(0.0, 1.0))
    with pytest.raises(InputError, match="'int_output'"):
        int_onnx_model(prog)


def test_a_file_that_is_no_int_onnx_graph_is_refused(tmp_path):
    from fpxint_hw.io.int_onnx import load_int_onnx
    from fpxint_hw.io.onnx_export import save_onnx
    save_onnx(tiny_graph(), tmp_path / "float.onnx")
    with pytest.raises(InputError, match="not an int-onnx graph"):
        load_int_onnx(tmp_path / "float.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\x00\x01junk")
    with pytest.raises(InputError, match="junk.onnx"):
        load_int_onnx(tmp_path / "junk.onnx")


# -- slow: ImageNet-sized networks -------------------------------------------------------------

BIG = [("resnet18", "W4x2/A4x2"), ("resnet18", "W4x3/A4x3"),
       ("efficientnet-lite0", "W4x2/A4x2"), ("efficientnet-lite0", "W4x3/A4x3")]


@pytest.mark.slow
@pytest.mark.parametrize("model,fmt", BIG, ids=[f"{m}-{f}" for m, f in BIG])
def test_imagenet_networks_equal_the_simulator_in_onnxruntime(model, fmt):
    if model == "efficientnet-lite0":
        need_efficientnet_weights()
    g, info = load_network(model)
    x, _, _ = load_inputs(g, info, 2, None)
    prog, _, _ = compile_terms(g, in_range=input_range(info), **MNIST_FORMATS[fmt])
    _check_all_layers(prog, x, runtimes=("ort",))


@pytest.mark.slow
@pytest.mark.parametrize("model", ["resnet18", "efficientnet-lite0"])
def test_imagenet_networks_equal_the_simulator_in_onnx_reference_on_one_input(model):
    if model == "efficientnet-lite0":
        need_efficientnet_weights()
    g, info = load_network(model)
    x, _, _ = load_inputs(g, info, 1, None)
    prog, _, _ = compile_terms(g, in_range=input_range(info), **MNIST_FORMATS["W4x3/A4x3"])
    out = Simulator(prog)(x)
    got = run_int_onnx(int_onnx_model(prog), x, "reference")
    assert np.array_equal(got[OUTPUT_NAME], out)
