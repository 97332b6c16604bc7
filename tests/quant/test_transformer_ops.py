"""The transformer ops of the integer program (MatMul, Softmax, LayerNorm, Gelu, Scale and
Linear on sequences), each in the golden model against an independent reference written
here with Python ints and Fractions; their errors against the float ops; width edges."""

import math
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from fpxint_hw import golden
from fpxint_hw.errors import InputError, WidthError
from fpxint_hw.float_exec import FloatExecutor
from fpxint_hw.quant import expand_graph
from fpxint_hw.quant import program as P
from fpxint_hw.quant.lower import matmul_requant
from fpxint_hw.spec import SeriesFormat

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from transformer_helpers import F, H, T, tiny_encoder, tiny_inputs  # noqa: E402

FORMATS = [(SeriesFormat(4, 2, per_channel=True), SeriesFormat(4, 2)),
           (SeriesFormat(8, 2, per_channel=True), SeriesFormat(8, 2))]
IDS = ["W4x2-A4x2", "W8x2-A8x2"]


def _round(x: Fraction, mode: str) -> int:
    """Round half to even (Python's round of a Fraction) or half up."""
    return round(x) if mode == "rne" else math.floor(x + Fraction(1, 2))


def _program(fmts, mode="rne", zero_points=False):
    w, a = fmts
    return expand_graph(tiny_encoder(), w, a, mode=mode, zero_points=zero_points)


def _golden_env(prog, x=None):
    return golden.run_program(prog, tiny_inputs() if x is None else x, capture=True)[1]


@pytest.mark.parametrize("mode,zero_points", [("rne", False), ("half_up", True)])
@pytest.mark.parametrize("fmts", FORMATS, ids=IDS)
def test_matmul_is_the_exact_per_head_sum_requantized_once(fmts, mode, zero_points):
    prog = _program(fmts, mode, zero_points)
    assert not zero_points or any(prog.tensors()[i].zero_point
                                  for i in prog.layer("scores").inputs)
    env = _golden_env(prog)
    for name in ("scores", "context"):
        q = prog.layer(name)
        qa, qb = (prog.tensors()[i] for i in q.inputs)
        a, b = env[q.inputs[0]], env[q.inputs[1]]
        out = env[name]
        n, t, _ = a.shape
        s = b.shape[1]
        d = (a.shape[2] if q.transpose_b else b.shape[2]) // H
        inner = d if q.transpose_b else s
        for i in range(n):
            for r in range(t):
                for h in range(H):
                    for c in range(s if q.transpose_b else d):
                        if q.transpose_b:
                            acc = sum((int(a[i, r, h * d + j]) - qa.zero_point)
                                      * (int(b[i, c, h * d + j]) - qb.zero_point)
                                      for j in range(d))
                            col = h * s + c
                        else:
                            acc = sum((int(a[i, r, h * s + j]) - qa.zero_point)
                                      * (int(b[i, j, h * d + c]) - qb.zero_point)
                                      for j in range(inner))
                            col = h * d + c
                        v = _round(Fraction(acc * q.m0, 2 ** q.shift), mode) + q.out.zero_point
                        assert out[i, r, col] == min(max(v, q.out.lo), q.out.hi), (name, i, r, col)
        # the multiplier is the real ratio of the units, to 2^-29
        real = qa.unit * qb.unit / q.out.unit
        assert abs(q.m0 / 2 ** q.shift - real) <= real * 2.0 ** -29


@pytest.mark.parametrize("mode", ["rne", "half_up"])
@pytest.mark.parametrize("fmts", FORMATS, ids=IDS)
def test_softmax_is_the_exp_table_over_its_integer_sum(fmts, mode):
    prog = _program(fmts, mode)
    env = _golden_env(prog)
    q = prog.layer("probs")
    qin = prog.tensors()[q.inputs[0]]
    x, out = env[q.inputs[0]], env["probs"]
    assert q.out.unit == pytest.approx(1.0 / q.out.hi) and q.out.lo == 0
    blk = x.shape[2] // q.groups
    for i, r in np.ndindex(x.shape[:2]):
        for g in range(q.groups):
            vals = [int(v) for v in x[i, r, g * blk:(g + 1) * blk]]
            top = max(vals)
            # the table entry recomputed independently: round(exp(-u d) 2^E), ties to even
            e = [round(math.exp(-qin.unit * (top - v)) * 2 ** q.exp_bits) for v in vals]
            for j, ej in enumerate(e):
                ref = _round(Fraction(ej * q.out.hi, sum(e)), mode)
                assert out[i, r, g * blk + j] == ref
    # the error it adds: within one output step of the float softmax of its integer input
    z = qin.real(x).reshape(x.shape[0], x.shape[1], q.groups, blk)
    ref = np.exp(z - z.max(axis=3, keepdims=True))
    ref /= ref.sum(axis=3, keepdims=True)
    got = q.out.real(out).reshape(ref.shape)
    assert np.max(np.abs(got - ref)) <= q.out.unit * (0.5 + 2.0 ** -8)


@pytest.mark.parametrize("mode,zero_points", [("rne", False), ("half_up", True)])
@pytest.mark.parametrize("fmts", FORMATS, ids=IDS)
def test_layernorm_is_the_integer_normalisation_with_an_exact_root(fmts, mode, zero_points):
    prog = _program(fmts, mode, zero_points)
    env = _golden_env(prog)
    g = prog.graph
    for name in ("ln0", "ln1", "ln2"):
        q = prog.layer(name)
        qin = prog.tensors()[q.inputs[0]]
        x, out = env[q.inputs[0]], env[name]
        for i, r in np.ndindex(x.shape[:2]):
            vals = [int(v) for v in x[i, r]]
            f = len(vals)
            tot = sum(vals)
            c = [_round(Fraction(f * v - tot, 2 ** q.pre_shift), mode) for v in vals]
            root = max(1, math.isqrt(sum(ci * ci for ci in c) * 4 ** q.sqrt_bits + q.eps_int))
            for j in range(f):
                v = _round(Fraction(c[j] * int(q.gain[j]) + int(q.offset[j]) * root,
                                    root * 2 ** q.frac_bits), mode) + q.out.zero_point
                assert out[i, r, j] == min(max(v, q.out.lo), q.out.hi), (name, i, r, j)
        # against the float LayerNorm of the dequantized input: one output step (rounding
        # and the constants' bits), where the output grid does not clamp
        n = g.node(name)
        xr = qin.real(x)
        mu = xr.mean(axis=2, keepdims=True)
        ref = ((xr - mu) / np.sqrt(((xr - mu) ** 2).mean(axis=2, keepdims=True) + n.eps)
               * g.params[n.weight] + g.params[n.bias])
        lo, hi = q.out.real_range
        inside = (ref > lo) & (ref < hi)
        assert np.max(np.abs(q.out.real(out) - ref)[inside]) <= 1.01 * q.out.unit


@pytest.mark.parametrize("fmts", FORMATS, ids=IDS)
def test_gelu_table_is_the_rounded_erf_gelu(fmts):
    prog = _program(fmts)
    q = prog.layer("gelu")
    qin = prog.tensors()[q.inputs[0]]
    assert isinstance(q, P.Lookup) and q.fn == "gelu"
    for k in range(q.table.shape[1]):
        xv = qin.unit * (q.index_lo + k - qin.zero_point)
        gv = xv * (1 + math.erf(xv / math.sqrt(2))) / 2
        ref = min(max(round(gv / q.out.unit) + q.out.zero_point, q.out.lo), q.out.hi)
        assert q.table[0, k] == ref


@pytest.mark.parametrize("fmts", FORMATS, ids=IDS)
def test_scale_and_linear_act_per_token_on_the_feature_axis(fmts):
    prog = _program(fmts)
    env = _golden_env(prog)
    q = prog.layer("scaled")
    x, out = env["scores"], env["scaled"]
    zin = prog.tensors()["scores"].zero_point
    rq = q.requant
    assert q.sign.shape == (H * T,)                   # one per feature, not per token
    for idx in np.ndindex(x.shape):
        c = idx[-1]
        acc = int(q.sign[c]) * (int(x[idx]) - zin) * 2 ** q.frac_bits + int(q.bias[c])
        v = round(Fraction(acc * int(rq.multiplier[c]), 2 ** rq.shift)) + rq.zero_point
        assert out[idx] == min(max(v, rq.lo), rq.hi)
    lq = prog.layer("ff1")
    x, out = env["ln1"], env["ff1"]
    w = lq.w_combined()
    lrq = lq.requant
    for i, t in np.ndindex(x.shape[:2]):
        for o in range(w.shape[0]):
            acc = sum(int(w[o, j]) * int(x[i, t, j]) for j in range(w.shape[1])) + int(lq.bias[o])
            acc = _round(Fraction(acc, 2 ** int(lrq.pre_shift[o])), "rne")
            v = round(Fraction(acc * int(lrq.multiplier[o]), 2 ** lrq.shift)) + lrq.zero_point
            assert out[i, t, o] == min(max(v, lrq.lo), lrq.hi)


def test_tiny_encoder_output_converges_to_float_with_bits():
    x = tiny_inputs()
    ref = FloatExecutor(tiny_encoder())(x)
    errs = []
    for fmts in FORMATS:
        prog = _program(fmts)
        out = golden.run_program(prog, x)[0]
        errs.append(np.max(np.abs(prog.dequantize_output(out) - ref)))
    assert errs[1] < errs[0] / 8 and errs[1] < 0.05


def _qt(lo, hi, unit=1.0):
    return P.QTensor(SeriesFormat(8, 4, signed=True), unit, lo, hi)


def test_matmul_accumulator_bound_just_fits_and_one_over_is_refused():
    out = _qt(-100, 100, unit=2.0 ** 50)
    # 2^60 - 1 = (2^30 - 1)(2^30 + 1): acc * M0 keeps a 2-bit multiplier in int64
    m0, shift, bound = matmul_requant("layer 'edge'", 1, _qt(-(2 ** 30 - 1), 2 ** 30 - 1),
                                      _qt(0, 2 ** 30 + 1), out)
    assert bound == 2 ** 60 - 1 and m0 < 4 and bound * m0 + (1 << max(shift - 1, 0)) < 2 ** 63
    with pytest.raises(WidthError, match="'edge'.*accumulator up to 1152921504606846976"):
        matmul_requant("layer 'edge'", 1, _qt(-(2 ** 30), 2 ** 30), _qt(0, 2 ** 30), out)
    with pytest.raises(WidthError, match="'edge'"):            # the inner length counts too
        matmul_requant("layer 'edge'", 2, _qt(-(2 ** 30 - 1), 2 ** 30 - 1),
                       _qt(0, 2 ** 29 + 1), out)


def test_layernorm_refuses_an_eps_beyond_int64_naming_the_layer():
    from fpxint_hw.quant.lower import layernorm_constants
    qin = _qt(-100, 100, unit=1e-6)
    gamma, beta = np.ones(8), np.zeros(8)
    k = layernorm_constants("layer 'ln'", 8, qin, _qt(-127, 127, 0.01), gamma, beta, 1e-12)
    assert k["bounds"][1] < 2 ** 62 and k["frac_bits"] > 10
    with pytest.raises(WidthError, match="'ln'"):
        layernorm_constants("layer 'ln'", 8, qin, _qt(-127, 127, 0.01), gamma, beta, 1e9)


def test_integer_onnx_export_refuses_the_transformer_ops():
    pytest.importorskip("onnx")
    from fpxint_hw.io.int_onnx import int_onnx_model
    with pytest.raises(InputError, match="'ln0'.*layernorm"):
        int_onnx_model(_program(FORMATS[0]))


def test_softmax_refuses_an_input_wider_than_its_table_naming_the_layer():
    with pytest.raises(WidthError, match="'probs' \\(softmax\\).*2\\^20"):
        expand_graph(tiny_encoder(), SeriesFormat(8, 3, per_channel=True), SeriesFormat(8, 3))
