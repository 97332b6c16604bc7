"""The mobile-network ops in the integer program: each lookup table against an independent
Fraction reference, the lowering's constants against their real values, golden against a
Python-int reference on whole programs, and the width bounds at their edges."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from fpxint_hw import golden
from fpxint_hw.errors import WidthError
from fpxint_hw.graph import (Clip, Concat, Graph, HardSigmoid, HardSwish, Input, LeakyRelu,
                             Mul, Pad, PRelu, Relu, Scale, Sigmoid)
from fpxint_hw.quant import expand_graph
from fpxint_hw.quant import program as P
from fpxint_hw.quant.ranges import StatisticalRanges
from fpxint_hw.quant.tables import MAX_TABLE_ENTRIES, check_table_size, function_table
from fpxint_hw.spec import SeriesFormat

from mobilehelpers import MOBILE_KINDS, mobile_graph, reference_op

FORMATS = [(SeriesFormat(4, 2, per_channel=True), SeriesFormat(4, 2)),
           (SeriesFormat(4, 3, per_channel=True), SeriesFormat(4, 3))]


# -- the tables against their definitions ------------------------------------------------------

def _ref_round(f: Fraction, mode: str) -> int:
    return math.floor(f + Fraction(1, 2)) if mode == "half_up" else round(f)


def _ref_f(fn, x: Fraction, param) -> Fraction:
    """The function on exact rationals, from its ONNX definition."""
    if fn == "hardsigmoid":
        a, b = (Fraction(float(v)) for v in param)
        return min(max(a * x + b, Fraction(0)), Fraction(1))
    if fn == "hardswish":
        return x * min(max(x / 6 + Fraction(1, 2), Fraction(0)), Fraction(1))
    return x if x >= 0 else Fraction(float(param)) * x          # leakyrelu, prelu


def _ref_table(fn, lo, hi, z_in, u_in, u_out, z_out, out_lo, out_hi, mode, param):
    out = []
    for q in range(lo, hi + 1):
        if fn == "sigmoid":
            v = 1.0 / (1.0 + math.exp(-u_in * (q - z_in))) / u_out
            r = round(v) if mode == "rne" else math.floor(v + 0.5)
        else:
            x = Fraction(u_in) * (q - z_in)
            r = _ref_round(_ref_f(fn, x, param) / Fraction(u_out), mode)
        out.append(min(max(r + z_out, out_lo), out_hi))
    return np.array(out, dtype=np.int64)


TABLE_CASES = [
    # fn, param, u_in, u_out: units chosen so that many entries are exact ties
    ("hardsigmoid", (np.float32(1 / 6), 0.5), 0.25, 1 / 64),
    ("hardsigmoid", (0.2, 0.5), 0.0371, 1 / 255),
    ("hardswish", None, 0.5, 1 / 16),
    ("hardswish", None, 0.0457, 0.0313),
    ("leakyrelu", np.float32(0.1), 0.5, 1.0),
    ("leakyrelu", 0.25, 0.125, 0.5),
    ("prelu", np.float32(0.3), 0.061, 0.047),
    ("sigmoid", None, 0.05, 1 / 255),
]


@pytest.mark.parametrize("fn,param,u_in,u_out", TABLE_CASES)
@pytest.mark.parametrize("mode", ["rne", "half_up"])
def test_each_table_equals_an_exact_fraction_reference(fn, param, u_in, u_out, mode):
    rng = np.random.default_rng(hash((fn, mode)) % 2 ** 32)
    for lo, hi, z_in, z_out, out_lo, out_hi in [(-63, 63, 0, 0, -63, 63),
                                                (0, 255, 128, 3, 0, 255),
                                                (-511, 511, 0, 0, -40, 200)]:
        got = function_table(fn, lo, hi, z_in, u_in, u_out, z_out, out_lo, out_hi, mode, param)
        want = _ref_table(fn, lo, hi, z_in, u_in, u_out, z_out, out_lo, out_hi, mode, param)
        np.testing.assert_array_equal(got, want, err_msg=f"{fn} {mode} [{lo}, {hi}]")
    del rng


def test_tables_round_ties_by_the_mode():
    """LeakyRelu with u_in / u_out = 1/2: every odd step is a tie, rounded as the mode says."""
    rne = function_table("leakyrelu", 0, 7, 0, 0.5, 1.0, 0, 0, 10, "rne", 0.1)
    up = function_table("leakyrelu", 0, 7, 0, 0.5, 1.0, 0, 0, 10, "half_up", 0.1)
    assert rne.tolist() == [0, 0, 1, 2, 2, 2, 3, 4]
    assert up.tolist() == [0, 1, 1, 2, 2, 3, 3, 4]


def test_table_size_limit_at_its_edge():
    check_table_size(0, MAX_TABLE_ENTRIES - 1, "x")
    check_table_size(-(MAX_TABLE_ENTRIES // 2), MAX_TABLE_ENTRIES // 2 - 1, "x")
    with pytest.raises(WidthError, match="layer 'hs'.*1,048,577 values"):
        check_table_size(0, MAX_TABLE_ENTRIES, "layer 'hs'")


def _clipped_input_graph(head, hi_a: float, hi_b: float | None = None):
    """Input (unit 1 on unsigned 8x4) -> Clip(0, hi_a) [and Clip(0, hi_b)] -> head."""
    nodes = [Input(name="x", shape=(2, 3, 3)), Clip(name="ca", inputs=("x",), lo=0.0, hi=hi_a)]
    if hi_b is not None:
        nodes.append(Clip(name="cb", inputs=("x",), lo=0.0, hi=hi_b))
    nodes.append(head)
    return Graph(tuple(nodes), {}, name="edge")


def _edge_ranges(graph, top):
    return {n.name: (0.0, top) for n in graph.nodes}


def test_table_of_2_to_20_entries_is_built_and_one_more_refused():
    fmt = SeriesFormat(8, 3)                         # unsigned [0, 2^24 - 1], unit 1
    top = float(2 ** 24 - 1)
    for hi, ok in ((MAX_TABLE_ENTRIES - 1, True), (MAX_TABLE_ENTRIES, False)):
        g = _clipped_input_graph(LeakyRelu(name="lr", inputs=("ca",), alpha=0.5), float(hi))
        kw = dict(ranges=_edge_ranges(g, top), input_range=(0.0, top))
        if ok:
            prog = expand_graph(g, SeriesFormat(4, 2), fmt, "layer", **kw)
            q = prog.layer("lr")
            assert q.table.shape == (1, MAX_TABLE_ENTRIES)
            assert q.index_lo == 0 and q.index_hi == hi
        else:
            with pytest.raises(WidthError, match=r"layer 'lr' \(leakyrelu\).*\[0, 1048576\]"):
                expand_graph(g, SeriesFormat(4, 2), fmt, "layer", **kw)


def test_mul_product_just_inside_int64_room_runs_one_over_is_refused():
    """``|(a - za)(b - zb)|`` must leave M0 two bits in int64: below 2^60 it is compiled
    (and golden runs it at the extremes), at 2^60 it is refused before anything runs."""
    fmt = SeriesFormat(8, 4)                          # unsigned [0, 2^32 - 1], unit 1
    top = float(2 ** 32 - 1)
    w = SeriesFormat(4, 2)
    # float32 clip bounds: 2^30 and 2^30 - 2^6 are exact, their product 2^60 - 2^36
    g = _clipped_input_graph(Mul(name="m", inputs=("ca", "cb")), 2.0 ** 30, 2.0 ** 30 - 64)
    prog = expand_graph(g, w, fmt, "layer", ranges=_edge_ranges(g, 2.0 ** 60),
                        input_range=(0.0, top))
    q = prog.layer("m")
    qa, qb = prog.layer("ca").out, prog.layer("cb").out
    assert (qa.hi, qb.hi) == (2 ** 30, 2 ** 30 - 64)
    x = np.full((1, 2, 3, 3), 2.0 ** 30, dtype=np.float32)
    out, env = golden.run_program(prog, x, capture=True)
    want = reference_op(q, [env["ca"], env["cb"]], prog.tensors())
    assert env["ca"].max() == 2 ** 30 and env["cb"].max() == 2 ** 30 - 64
    np.testing.assert_array_equal(env["m"], want)
    g = _clipped_input_graph(Mul(name="m", inputs=("ca", "cb")), 2.0 ** 30, 2.0 ** 30)
    with pytest.raises(WidthError, match=r"layer 'm' \(mul: product up to 1152921504606846976\)"):
        expand_graph(g, w, fmt, "layer", ranges=_edge_ranges(g, 2.0 ** 60),
                     input_range=(0.0, top))


# -- the lowering's constants ------------------------------------------------------------------

@pytest.mark.parametrize("w_fmt,a_fmt", FORMATS)
def test_lowered_constants_match_their_real_values(w_fmt, a_fmt):
    g = mobile_graph(1)
    prog = expand_graph(g, w_fmt, a_fmt, "layer")
    t = prog.tensors()
    kinds = {q.kind for q in prog.layers}
    assert set(MOBILE_KINDS) <= kinds
    for q in prog.layers:
        if q.kind == "mul":
            ua, ub = t[q.inputs[0]].unit, t[q.inputs[1]].unit
            assert q.m0 / 2 ** q.shift == pytest.approx(ua * ub / q.out.unit, rel=2 ** -28)
        elif q.kind == "concat":
            # one shift: every multiplier within half its last bit, the largest 30+ bits
            assert max(q.multipliers) >= 2 ** 29
            for name, m in zip(q.inputs, q.multipliers):
                assert abs(m - t[name].unit / q.out.unit * 2 ** q.shift) <= 0.5
        elif q.kind == "scale":
            node = g.node(q.name)
            w = np.broadcast_to(g.params[node.weight].astype(np.float64), (8,))
            b = g.params[node.bias].astype(np.float64)
            u_in = t[q.inputs[0]].unit
            mag = np.where(w == 0, 1.0, np.abs(w))
            want_m = mag * u_in / 2 ** q.frac_bits / q.out.unit * 2.0 ** q.requant.shift
            assert q.requant.multiplier.max() >= 2 ** 29
            assert np.all(np.abs(q.requant.multiplier - want_m) <= 0.5)
            np.testing.assert_array_equal(q.sign, np.sign(w))
            # the bias on the accumulator grid, within half a step
            acc_unit = mag * u_in / 2 ** q.frac_bits
            assert np.all(np.abs(q.bias * acc_unit - b) <= acc_unit / 2 + 1e-15)
        elif q.kind == "pad":
            u = t[q.inputs[0]].unit
            assert q.value == round(Fraction(0.25) / Fraction(u))
        elif q.kind == "lookup" and q.fn in ("hardsigmoid", "sigmoid"):
            assert not q.out.fmt.signed and q.out.lo == 0     # [0, 1]: unsigned grid
            assert q.out.real_range[1] <= 1.0 + q.out.unit / 2


def test_concat_of_one_grid_passes_through_exactly():
    g = Graph((Input(name="x", shape=(2, 4, 4)), Relu(name="r", inputs=("x",)),
               Concat(name="cat", inputs=("r", "x", "r"))), {}, name="cat")
    prog = expand_graph(g, SeriesFormat(4, 2), SeriesFormat(4, 2), "layer",
                        signed_activations=True, input_range=(-2.0, 2.0))
    q = prog.layer("cat")
    assert q.multipliers == (1, 1, 1) and q.shift == 0
    x = np.random.default_rng(0).uniform(-2, 2, (2, 2, 4, 4)).astype(np.float32)
    out, env = golden.run_program(prog, x, capture=True)
    np.testing.assert_array_equal(out, np.concatenate([env["r"], env["x"], env["r"]], axis=1))


def test_pad_value_rounds_half_to_even_on_the_grid_and_clamps():
    for value, want in ((0.375, 2), (0.625, 2), (0.875, 4), (-100.0, -63), (0.0, 0)):
        g = Graph((Input(name="x", shape=(1, 2, 2)),
                   Pad(name="p", inputs=("x",), padding=1, value=value)), {}, name="pad")
        prog = expand_graph(g, SeriesFormat(4, 2), SeriesFormat(4, 2), "layer",
                            input_range=(-63 * 0.25, 63 * 0.25))     # unit 1/4
        assert prog.layers[0].out.unit == 0.25
        q = prog.layer("p")
        assert q.value == want, value
        assert q.out.lo <= q.value <= q.out.hi


# -- golden against the reference, and against the float functions ---------------------------

@pytest.mark.parametrize("w_fmt,a_fmt", FORMATS)
@pytest.mark.parametrize("seed,gate_first,signed", [(0, False, False), (1, True, True),
                                                    (2, False, True)])
def test_golden_equals_python_int_reference_on_every_mobile_op(w_fmt, a_fmt, seed, gate_first,
                                                               signed):
    g = mobile_graph(seed, gate_first)
    prog = expand_graph(g, w_fmt, a_fmt, "layer", signed_activations=signed)
    x = np.random.default_rng(seed).standard_normal((2, *g.input_shape)).astype(np.float32)
    _, env = golden.run_program(prog, x, capture=True)
    t = prog.tensors()
    seen = set()
    for q in prog.layers:
        if q.kind in MOBILE_KINDS:
            want = reference_op(q, [env[i] for i in q.inputs], t)
            np.testing.assert_array_equal(env[q.name], want, err_msg=f"{q.name} ({q.kind})")
            assert q.out.lo <= env[q.name].min() and env[q.name].max() <= q.out.hi
            seen.add(q.kind)
    assert seen == set(MOBILE_KINDS)


def test_lookup_outputs_are_the_function_within_half_a_step():
    """Each table entry: |u_out (out - z_out) - f(u_in (q - z_in))| <= u_out / 2 inside the
    output range (the one rounding the table adds)."""
    g = mobile_graph(0)
    prog = expand_graph(g, *FORMATS[1], "layer")
    t = prog.tensors()
    fns = {"hardswish": lambda x, n: x * np.clip(x / 6 + 0.5, 0, 1),
           "hardsigmoid": lambda x, n: np.clip(n.alpha * x + n.beta, 0, 1),
           "sigmoid": lambda x, n: 1 / (1 + np.exp(-x)),
           "leakyrelu": lambda x, n: np.where(x >= 0, x, n.alpha * x)}
    checked = 0
    for q in prog.layers:
        if q.kind != "lookup":
            continue
        qin, node = t[q.inputs[0]], g.node(q.name)
        x = qin.real(np.arange(q.index_lo, q.index_hi + 1))
        rows = []
        if q.fn == "prelu":
            for s in g.params[node.slope].astype(np.float64):
                rows.append(np.where(x >= 0, x, s * x))
        else:
            rows.append(fns[q.fn](x, node))
        for row, want in zip(q.table, rows):
            got = q.out.real(row)
            lo, hi = q.out.real_range
            inside = (want >= lo) & (want <= hi)
            assert np.all(np.abs(got - want)[inside] <= q.out.unit / 2 * (1 + 1e-9))
            assert np.all(got[~inside] == np.where(want[~inside] < lo, lo, hi))
            checked += 1
    assert checked >= 6


def test_statistics_pass_through_the_mobile_ops():
    g = mobile_graph(0)
    rule = StatisticalRanges(g, "mse")
    mu, sd, _ = rule.stats["cat"]
    assert mu.shape == (8,)                           # the two branches' channels
    # a one-input function: the moments of f(X), X Gaussian with the input's moments,
    # against sampling (2^20 draws per channel)
    rng = np.random.default_rng(0)
    alpha = g.node("b1_act").alpha
    funcs = {"b1": ("cat", slice(0, 4), lambda v: np.where(v >= 0, v, alpha * v)),
             "b2": ("cat", slice(4, 8), lambda v: 1 / (1 + np.exp(-v))),
             "se_fc2": ("se_gate", slice(None), lambda v: np.clip(v / 6 + 0.5, 0, 1))}
    for src, (dst, part, f) in funcs.items():
        m_in, s_in = rule.stats[src][:2]
        draws = f(m_in[:, None] + s_in[:, None] * rng.standard_normal((m_in.size, 1 << 20)))
        m_out, s_out = rule.stats[dst][0][part], rule.stats[dst][1][part]
        np.testing.assert_allclose(m_out, draws.mean(axis=1), rtol=0.01, atol=0.01 * s_in.max())
        np.testing.assert_allclose(s_out, draws.std(axis=1), rtol=0.01, atol=0.01 * s_in.max())
    w = g.params["sc.w"].astype(np.float64)
    np.testing.assert_allclose(rule.stats["sc"][1], np.abs(w) * rule.stats["cat"][1])
    for name in ("hs", "se_mul", "pr", "sc", "pad"):
        lo, hi = rule(name, SeriesFormat(4, 2))
        assert np.isfinite(lo) and np.isfinite(hi) and lo < hi


def test_hardswish_and_scale_programs_track_the_float_functions():
    """A coarse end-to-end check on real values: each mobile op's dequantized integer output
    against the float op applied to its dequantized integer input."""
    g = mobile_graph(3)
    prog = expand_graph(g, *FORMATS[1], "layer")
    x = np.random.default_rng(3).standard_normal((2, *g.input_shape)).astype(np.float32)
    _, env = golden.run_program(prog, x, capture=True)
    t = prog.tensors()
    for name, f in (("hs", lambda v: v * np.clip(v / 6 + 0.5, 0, 1)),):
        q = prog.layer(name)
        got, want = t[name].real(env[name]), f(t[q.inputs[0]].real(env[q.inputs[0]]))
        assert np.max(np.abs(got - want)) <= t[name].unit / 2 * (1 + 1e-9)
    q = prog.layer("sc")
    node = g.node("sc")
    w = g.params[node.weight].astype(np.float64).reshape(1, -1, 1, 1)
    b = g.params[node.bias].astype(np.float64).reshape(1, -1, 1, 1)
    want = np.clip(w * t["cat"].real(env["cat"]) + b, *t["sc"].real_range)
    # one output rounding, the bias's 2^-9 input steps and the multiplier's 2^-29
    assert np.max(np.abs(t["sc"].real(env["sc"]) - want)) <= t["sc"].unit * 0.51


@pytest.mark.parametrize("mode", ["rne", "half_up"])
def test_golden_mul_and_concat_round_ties_by_the_mode(mode):
    """Products that land on exact ties (m0 = 1, shift = 1): golden against the reference."""
    a = np.arange(-5, 6).reshape(1, 11, 1, 1)
    b = np.full((1, 11, 1, 1), 3)
    got = golden.mul_requant(a, b, 1, 1, -100, 100, 0, mode, b_zero_point=2)
    want = [_ref_round(Fraction(int(v), 2), mode) for v in a.ravel()]
    assert got.ravel().tolist() == want
