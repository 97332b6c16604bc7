"""The golden operators the conv/matmul oracles do not reach, against external formulations.

* The residual add ``clamp(round_shift((a - za) ma + (b - zb) mb, n) + z, lo, hi)`` against a
  model of ONNX integer ops (int64 Sub/Mul/Add, Cast to double, Mul by ``2^-n``, Round,
  Max/Min) in onnx.reference and onnxruntime. Exact while ``|sum| < 2^53``: the cast and the
  scaling by a power of two are then exact and Round rounds the exact value half to even
  (``Floor(v + 0.5)`` for half-up, exact for the same reason). onnxruntime's QLinearAdd
  requantizes in float32 (known off by one, ORACLES.md), so it is not used.
* Average and global average pooling (a window sum times ``m0``, one rounding) against
  AveragePool / GlobalAveragePool followed by Round, on the integers as floats, both values
  of ``count_include_pad``. Exact when the divisor ``c`` is a power of two (``m0 2^-n = 1/c``
  exactly, and the float division is exact), or odd: ``sum / c`` is then never a tie but is
  at least ``1/(2c)`` from one, which neither the multiplier's error ``|sum| |m0 2^-n -
  1/c|`` (checked) nor the float division (float64 in onnx.reference; float32 in
  onnxruntime, exact enough for ``|sum| < 2^21``) can cross.
* The digit split (``split_integer`` and the float splitter) against formulations that
  share nothing with its loop: positional digits, a closed form in exact rationals, and an
  exhaustive search over all digit tuples.
* A conv layer of the program on a zero-point grid (an odd input zero point, padded with
  it; an odd output zero point) against QLinearConv with scales that are not powers of two
  but whose product ``x_scale w_scale / y_scale = M0 2^-n`` is exact in float32.
  onnx.reference multiplies in float64 (exact while ``|acc M0| < 2^53``) but adds the output
  zero point before rounding: with an odd one it differs from the program exactly at ties,
  as predicted there. onnxruntime multiplies ``float32(acc)`` (exact while ``|acc M0| <
  2^24``), rounds and then adds the zero point, as the program does: equal everywhere.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from oracles import (TensorProto, graph_model, helper, one_node_model, ort, run_onnxruntime,
                     run_reference)

from fpxint_hw import golden
from fpxint_hw.errors import InputError
from fpxint_hw.float_exec import FloatExecutor, to_nchw, to_nhwc
from fpxint_hw.graph import AvgPool, GlobalAvgPool, Graph, Input
from fpxint_hw.intsim import Simulator
from fpxint_hw.quant import expand_graph, for_array
from fpxint_hw.quant import program as P
from fpxint_hw.series import expand, split_integer
from fpxint_hw.spec import SeriesFormat, load_array_spec
from fpxint_hw.tile import Requant
from nethelpers import ZERO_POINT_INPUT, tiny_graph, zero_point_graph

needs_ort = pytest.mark.skipif(ort is None, reason="onnxruntime not installed")
ORACLES = [pytest.param(run_reference, id="onnx.reference"),
           pytest.param(run_onnxruntime, id="onnxruntime", marks=needs_ort)]


# -- the residual add -----------------------------------------------------------------------

def add_oracle(a, b, *, za, zb, ma, mb, shift, zp, lo, hi, mode):
    """``(model, feed)``: the requantized add of int64 ``a``, ``b`` in ONNX integer ops."""
    mk = helper.make_node
    nodes = [mk("Sub", ["a", "za"], ["da"]), mk("Mul", ["da", "ma"], ["pa"]),
             mk("Sub", ["b", "zb"], ["db"]), mk("Mul", ["db", "mb"], ["pb"]),
             mk("Add", ["pa", "pb"], ["s"]), mk("Cast", ["s"], ["sf"], to=TensorProto.DOUBLE),
             mk("Mul", ["sf", "step"], ["v"])]
    if mode == "rne":
        nodes.append(mk("Round", ["v"], ["r"]))
    else:
        nodes += [mk("Add", ["v", "half"], ["vh"]), mk("Floor", ["vh"], ["r"])]
    nodes += [mk("Cast", ["r"], ["ri"], to=TensorProto.INT64), mk("Add", ["ri", "zp"], ["yz"]),
              mk("Max", ["yz", "lo"], ["y1"]), mk("Min", ["y1", "hi"], ["y"])]
    i64 = np.int64
    consts = {"za": i64(za), "zb": i64(zb), "ma": i64(ma), "mb": i64(mb), "zp": i64(zp),
              "lo": i64(lo), "hi": i64(hi), "step": np.float64(2.0 ** -shift),
              "half": np.float64(0.5)}
    return graph_model(nodes, [("a", np.asarray(a, i64)), ("b", np.asarray(b, i64))], "y",
                       TensorProto.INT64, consts)


def _ties(s, shift):
    """How many of the exact sums ``s`` sit exactly half way between two outputs."""
    return 0 if shift == 0 else int(np.sum(np.asarray(s) % (1 << shift) == 1 << (shift - 1)))


@pytest.mark.parametrize("run", ORACLES)
@pytest.mark.parametrize("mode", ["rne", "half_up"])
@pytest.mark.parametrize("seed", range(12))
def test_add_requant_vs_onnx_integer_ops(seed, mode, run):
    """Random grids (odd zero points included), 31-bit multipliers and shifts up to 40;
    every third case with small multipliers and shifts, so that many sums are exact ties."""
    rng = np.random.default_rng(seed)
    signed = seed % 2 == 0
    lo_in, hi_in = (-127, 127) if signed else (0, 255)
    a = rng.integers(lo_in, hi_in + 1, size=(2, 3, 5, 4))
    b = rng.integers(lo_in, hi_in + 1, size=(2, 3, 5, 4))
    a[0, 0, 0] = lo_in
    b[0, 0, 0] = hi_in
    za, zb = (0, 0) if signed else (int(v) for v in rng.integers(0, 256, 2))
    if seed % 3 == 0:
        shift = int(rng.integers(1, 4))
        ma, mb = (int(v) * 2 + 1 for v in rng.integers(0, 4, 2))      # odd: ties
    else:
        shift = int(rng.integers(20, 41))
        ma, mb = (int(v) for v in rng.integers(1, 1 << 31, 2))
    zp = int(rng.integers(-5, 6)) if signed else int(rng.integers(0, 256))
    lo, hi = (-127, 127) if signed else (0, 255)
    s = (a - za) * ma + (b - zb) * mb
    assert np.abs(s).max() < 2 ** 53                       # the oracle's exactness condition
    got = golden.add_requant(a, b, ma, mb, shift, lo, hi, zp, mode, a_zero_point=za,
                             b_zero_point=zb)
    model, feed = add_oracle(a, b, za=za, zb=zb, ma=ma, mb=mb, shift=shift, zp=zp, lo=lo,
                             hi=hi, mode=mode)
    np.testing.assert_array_equal(got, run(model, feed))
    if seed % 3 == 0:
        assert _ties(s, shift) > 10


def _program_adds():
    """The residual adds of real programs, with their input and output grids."""
    cases = []
    for name, graph, rng, compile_ in [
            ("zero-points", zero_point_graph(), ZERO_POINT_INPUT,
             lambda g, r: for_array(g, load_array_spec("default"), input_range=r)),
            ("tiny", tiny_graph(), None,
             lambda g, r: expand_graph(g, SeriesFormat(4, 3, per_channel=True),
                                       SeriesFormat(4, 2), mode="half_up")),
            ("tiny-free", tiny_graph(), None,
             lambda g, r: for_array(g, load_array_spec("free")))]:
        prog = compile_(graph, rng)
        cases += [pytest.param(prog, q, id=f"{name}-{q.name}")
                  for q in prog.layers if isinstance(q, P.Add)]
    return cases


@pytest.mark.parametrize("run", ORACLES)
@pytest.mark.parametrize("prog,q", _program_adds())
def test_program_adds_vs_onnx_integer_ops(prog, q, run):
    """A residual add of a real program, in golden (from the input tensors' zero points) and
    in the simulator (from the program's folded ``offset``), equals the oracle built from the
    input tensors' zero points, on integers across each input's whole range."""
    tensors = prog.tensors()
    ta, tb = (tensors[i] for i in q.inputs)
    rng = np.random.default_rng(0)
    a = rng.integers(ta.lo, ta.hi + 1, size=(2, 4, 6, 6))
    b = rng.integers(tb.lo, tb.hi + 1, size=(2, 4, 6, 6))
    a[0, 0, 0, :3], b[0, 0, 0, :3] = [ta.lo, ta.hi, ta.zero_point], [tb.hi, tb.lo, tb.zero_point]
    model, feed = add_oracle(a, b, za=ta.zero_point, zb=tb.zero_point, ma=q.ma, mb=q.mb,
                             shift=q.shift, zp=q.out.zero_point, lo=q.out.lo, hi=q.out.hi,
                             mode=q.mode)
    want = run(model, feed)
    np.testing.assert_array_equal(golden.run_layer(q, [a, b], tensors), want)
    sim = Simulator(prog).run_layer(q, [to_nhwc(a.astype(np.int32)),
                                        to_nhwc(b.astype(np.int32))])
    np.testing.assert_array_equal(to_nchw(sim), want)


# -- average and global average pooling ------------------------------------------------------

def pool_oracle(x, op, attrs, dtype):
    """``(model, feed)``: ``Round(op(x))`` on the integers ``x`` as floats of ``dtype``."""
    nodes = [helper.make_node(op, ["x"], ["m"], **attrs), helper.make_node("Round", ["m"], ["y"])]
    elem = TensorProto.DOUBLE if dtype == np.float64 else TensorProto.FLOAT
    return graph_model(nodes, [("x", np.asarray(x, dtype))], "y", elem, opset=17)


def _pool_program(shape, kernel, stride, pads, include, signed):
    """A lowered ``Input -> AvgPool -> GlobalAvgPool``; returns the program, its pool layers
    and the pool input's grid."""
    nodes = (Input(name="x", shape=shape),
             AvgPool(name="ap", inputs=("x",), kernel=kernel, stride=stride, padding=pads,
                     count_include_pad=include),
             GlobalAvgPool(name="gap", inputs=("ap",)))
    graph = Graph(nodes, {}, name="pools")
    prog = expand_graph(graph, SeriesFormat(4, 2), SeriesFormat(4, 2),
                        input_range=(-1.0, 1.0) if signed else (0.0, 1.0))
    return prog, prog.layer("ap"), prog.layer("gap"), prog.tensors()["x"]


def _check_divisor(q, reach, count):
    """The exactness condition of the module docstring for a pool layer whose window sums
    are at most ``reach`` in magnitude."""
    assert count & (count - 1) == 0 or count % 2 == 1, f"divisor {count}: no exact oracle"
    err = Fraction(q.m0, 1 << q.shift) - Fraction(1, count)
    assert count & (count - 1) or err == 0
    assert reach * abs(err) < Fraction(1, 2 * count)


POOLS = [  # input (C, H, W), kernel, stride, (top, left, bottom, right)
    ((3, 7, 6), (2, 2), (2, 2), (0, 0, 1, 1)),
    ((2, 6, 7), (3, 3), (1, 1), (1, 1, 1, 1)),
    ((2, 7, 9), (2, 4), (2, 1), (1, 0, 0, 2)),
    ((2, 9, 8), (3, 5), (2, 2), (1, 2, 1, 2)),
    ((1, 5, 5), (1, 3), (1, 2), (0, 1, 0, 1)),
]


@pytest.mark.parametrize("run,dtype", [
    pytest.param(run_reference, np.float64, id="onnx.reference"),
    pytest.param(run_onnxruntime, np.float32, id="onnxruntime", marks=needs_ort)])
@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
@pytest.mark.parametrize("shape,kernel,stride,pads", POOLS)
def test_average_pool_counting_padding_vs_averagepool(shape, kernel, stride, pads, signed,
                                                      run, dtype):
    """``count_include_pad=1``: golden's window sum of the zero-padded input times the
    program's ``m0 2^-n`` equals Round(AveragePool) on the integers."""
    prog, ap, _, grid = _pool_program(shape, kernel, stride, pads, True, signed)
    x = np.random.default_rng(sum(shape)).integers(grid.lo, grid.hi + 1, size=(2, *shape))
    x[0, 0, 0, :2] = [grid.lo, grid.hi]
    _check_divisor(ap, kernel[0] * kernel[1] * max(-grid.lo, grid.hi), kernel[0] * kernel[1])
    got = golden.run_layer(ap, [x], prog.tensors())
    model, feed = pool_oracle(x, "AveragePool", dict(kernel_shape=list(kernel),
                                                     strides=list(stride), pads=list(pads),
                                                     count_include_pad=1), dtype)
    np.testing.assert_array_equal(got, run(model, feed))


@pytest.mark.parametrize("run,dtype", [
    pytest.param(run_reference, np.float64, id="onnx.reference"),
    pytest.param(run_onnxruntime, np.float32, id="onnxruntime", marks=needs_ort)])
@pytest.mark.parametrize("include", [0, 1])
def test_average_pool_without_padding_either_count_mode(include, run, dtype):
    """Without padding both ``count_include_pad`` values divide by the kernel area; a pool
    that excludes padding then lowers and equals either oracle."""
    prog, ap, _, grid = _pool_program((3, 8, 9), (3, 3), (2, 2), (0, 0, 0, 0), bool(include),
                                      True)
    x = np.random.default_rng(7).integers(grid.lo, grid.hi + 1, size=(2, 3, 8, 9))
    got = golden.run_layer(ap, [x], prog.tensors())
    model, feed = pool_oracle(x, "AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2],
                                                     count_include_pad=include), dtype)
    np.testing.assert_array_equal(got, run(model, feed))


def test_average_pool_excluding_padding_is_refused_not_miscounted():
    """``count_include_pad=0`` with padding divides border windows by fewer taps: the
    lowering refuses it (naming the layer) rather than divide by the kernel area, which
    the oracle shows differs on the border."""
    with pytest.raises(InputError, match="'ap'.*excludes padding"):
        _pool_program((2, 6, 6), (3, 3), (1, 1), (1, 1, 1, 1), False, False)
    prog, ap, _, grid = _pool_program((2, 6, 6), (3, 3), (1, 1), (1, 1, 1, 1), True, False)
    x = np.random.default_rng(3).integers(100, grid.hi + 1, size=(1, 2, 6, 6))
    include = golden.run_layer(ap, [x], prog.tensors())
    model, feed = pool_oracle(x, "AveragePool", dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                                                     count_include_pad=0), np.float64)
    exclude = run_reference(model, feed)
    np.testing.assert_array_equal(include[..., 1:-1, 1:-1], exclude[..., 1:-1, 1:-1])
    assert np.all(include[..., 0, :] < exclude[..., 0, :])          # a border divides by 6


@pytest.mark.parametrize("count_attr", [None, 0, 1])
def test_imported_average_pool_keeps_onnx_count_include_pad(count_attr):
    """ONNX AveragePool counts padding only with ``count_include_pad=1`` (the default is 0):
    the imported graph's float output equals onnx.reference's, and only a pool that counts
    padding lowers, with golden's integers equal to Round(AveragePool) on the grid."""
    from fpxint_hw.io.onnx_import import onnx_to_graph

    attrs = dict(kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1])
    if count_attr is not None:
        attrs["count_include_pad"] = count_attr
    x = np.random.default_rng(5).integers(0, 256, size=(2, 2, 7, 6)).astype(np.float32)
    model, feed = one_node_model("AveragePool", [("x", x)], attrs, TensorProto.FLOAT,
                                 opset=17)
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    graph = onnx_to_graph(model, source="pool.onnx")
    np.testing.assert_allclose(FloatExecutor(graph)(x), run_reference(model, feed),
                               rtol=1e-6)
    if not count_attr:
        with pytest.raises(InputError, match="excludes padding"):
            expand_graph(graph, SeriesFormat(4, 2), SeriesFormat(4, 2),
                         input_range=(0.0, 255.0))
        return
    prog = expand_graph(graph, SeriesFormat(4, 2), SeriesFormat(4, 2),
                        input_range=(0.0, 255.0))
    q = prog.quantize_input(x)
    assert prog.layers[0].out.unit == 1.0 and np.array_equal(q, x)   # the grid holds x
    model_i, feed_i = pool_oracle(q, "AveragePool", attrs, np.float64)
    np.testing.assert_array_equal(golden.run_program(prog, x)[0], run_reference(model_i, feed_i))


@pytest.mark.parametrize("run,dtype", [
    pytest.param(run_reference, np.float64, id="onnx.reference"),
    pytest.param(run_onnxruntime, np.float32, id="onnxruntime", marks=needs_ort)])
@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
@pytest.mark.parametrize("hw", [(2, 2), (4, 4), (8, 4), (3, 3), (5, 5), (7, 7), (3, 5)])
def test_global_average_pool_vs_globalaveragepool(hw, signed, run, dtype):
    """golden's spatial sum times the program's ``m0 2^-n`` equals Round(GlobalAveragePool)
    for divisors that are powers of two (4, 16, 32) or odd (9, 15, 25, 49)."""
    prog, _, gap, grid = _pool_program((4, *hw), (1, 1), (1, 1), (0, 0, 0, 0), True, signed)
    x = np.random.default_rng(hw[0] * 10 + hw[1]).integers(grid.lo, grid.hi + 1,
                                                          size=(3, 4, *hw))
    x[0, 0], x[0, 1] = grid.hi, grid.lo
    _check_divisor(gap, hw[0] * hw[1] * max(-grid.lo, grid.hi), hw[0] * hw[1])
    got = golden.run_layer(gap, [x], prog.tensors())
    model, feed = pool_oracle(x, "GlobalAveragePool", {}, dtype)
    np.testing.assert_array_equal(got, run(model, feed))


@pytest.mark.parametrize("hw", [(2, 3), (6, 6)])
def test_global_average_pool_with_an_even_divisor_off_ties(hw):
    """A divisor that is even but not a power of two (6, 36) has exact ties ``sum = c k +
    c/2``, which the fixed-point ``m0 2^-n ~ 1/c`` rounds by the sign of its error rather
    than to even: equal to the oracle everywhere else, half a step from the mean at a tie."""
    prog, _, gap, grid = _pool_program((8, *hw), (1, 1), (1, 1), (0, 0, 0, 0), True, True)
    x = np.random.default_rng(11).integers(-4, 5, size=(100, 8, *hw))
    got = golden.run_layer(gap, [x], prog.tensors())[..., 0, 0]
    model, feed = pool_oracle(x, "GlobalAveragePool", {}, np.float64)
    want = run_reference(model, feed)[..., 0, 0]
    sums, count = x.sum(axis=(2, 3)), hw[0] * hw[1]
    tie = sums % count == count // 2
    assert tie.sum() > 10
    np.testing.assert_array_equal(got[~tie], want[~tie])
    np.testing.assert_array_equal(np.abs(got[tie] * count - sums[tie]) * 2, count)


# -- the digit split -------------------------------------------------------------------------

def lane_weights(fmt):
    """``radix^(T-k)``, the radix from the format's definition."""
    radix = (2 ** fmt.bits if not fmt.signed else
             2 ** (fmt.bits - 1) if fmt.scale == "pow2" else 2 ** fmt.bits - 2)
    return [radix ** (fmt.terms - k) for k in range(1, fmt.terms + 1)], radix


def _formats(max_bits=8, max_terms=4):
    return [SeriesFormat(b, t, scale, signed=signed)
            for b in range(2, max_bits + 1) for t in range(1, max_terms + 1)
            for scale in ("pow2", "free") for signed in (True, False)
            if signed or scale == "pow2"]


@pytest.mark.parametrize("fmt", [f for f in _formats() if not f.signed], ids=str)
def test_unsigned_split_is_the_positional_digits(fmt):
    """Unsigned terms are the base-``2^b`` digits of the value: ``(x // m_k) mod 2^b``."""
    weights, radix = lane_weights(fmt)
    top = radix ** fmt.terms - 1
    rng = np.random.default_rng(fmt.bits * 10 + fmt.terms)
    x = np.unique(np.concatenate([np.arange(min(top, 4096) + 1),
                                  rng.integers(0, top + 1, 2000), [top]]))
    want = np.stack([(x // m) % radix for m in weights])
    np.testing.assert_array_equal(split_integer(x, fmt), want)


@pytest.mark.parametrize("fmt", [f for f in _formats() if f.signed], ids=str)
def test_signed_split_is_the_nearest_multiple_of_each_weight(fmt):
    """Away from the clamp (``|x| < (qmax + 1/2) m_1``) the first k signed terms are the
    multiple of ``m_k`` nearest to ``x`` (ties to even), so term k is ``N_k - radix N_(k-1)``
    with ``N_k = round(x / m_k)``: a closed form, with no running remainder (the radix is
    even, so the ties of ``x / m_k`` and of the remainder agree)."""
    weights, radix = lane_weights(fmt)
    limit = (2 * fmt.qmax + 1) * weights[0] // 2
    rng = np.random.default_rng(fmt.bits * 10 + fmt.terms + 100)
    x = np.unique(np.concatenate([np.arange(-min(limit, 300), min(limit, 300) + 1),
                                  rng.integers(-limit, limit + 1, 600)]))
    x = x[np.abs(x) * 2 < (2 * fmt.qmax + 1) * weights[0]]
    want = np.empty((fmt.terms, x.size), dtype=np.int64)
    for i, v in enumerate(x.tolist()):
        prev = 0
        for k, m in enumerate(weights):
            n_k = round(Fraction(v, m))        # Python rounds Fractions half to even
            want[k, i] = n_k - radix * prev
            prev = n_k
    np.testing.assert_array_equal(split_integer(x, fmt), want)


@pytest.mark.parametrize("fmt", [f for f in _formats(4, 3) if f.signed], ids=str)
def test_signed_split_is_the_lexicographically_nearest_representation(fmt):
    """Over the whole combined range (the clamp included), by exhaustive search: among all
    digit tuples in range whose weighted sum is ``x``, the split takes the one whose first
    term is nearest to ``x / m_1`` (ties: the even digit), then the second nearest to what is
    left, and so on."""
    weights, _ = lane_weights(fmt)
    digits = np.arange(fmt.qmin, fmt.qmax + 1)
    tuples = np.stack(np.meshgrid(*[digits] * fmt.terms, indexing="ij"), -1)
    tuples = tuples.reshape(-1, fmt.terms)
    sums = tuples @ np.array(weights)
    lo, hi = fmt.combined_range
    xs = np.arange(lo, hi + 1)
    want = np.empty((fmt.terms, xs.size), dtype=np.int64)
    for i, x in enumerate(xs):
        cand = tuples[sums == x]
        rest = np.full(len(cand), x)
        for k, m in enumerate(weights):        # narrow the candidates term by term
            dist = np.abs(2 * rest - 2 * m * cand[:, k])
            keep = dist == dist.min()
            keep &= ~(cand[:, k] % 2 == 1) | np.all(cand[keep, k] % 2 == 1)
            cand, rest = cand[keep], rest[keep] - m * cand[keep, k]
        assert len(cand) == 1
        want[:, i] = cand[0]
    np.testing.assert_array_equal(split_integer(xs, fmt), want)


@pytest.mark.parametrize("fmt", [SeriesFormat(b, t, signed=s) for b in (2, 3, 4, 6, 8)
                                 for t in (1, 2, 3, 4) for s in (True, False)], ids=str)
def test_float_split_is_the_closed_form(fmt):
    """The float splitter (``digits.split_digits`` through ``expand``) on a power-of-two
    radix: with ``v = x / s_1`` (float64), term k is ``N_k - radix N_(k-1)`` with ``N_k =
    round(v radix^(k-1))`` (signed, ties to even) or ``floor(...)`` (unsigned), in exact
    rational arithmetic; no clamp is reached since ``s_1`` maps the largest ``|x|`` to
    ``qmax``."""
    rng = np.random.default_rng(fmt.bits * 10 + fmt.terms)
    x = rng.standard_normal(600).astype(np.float32)
    if not fmt.signed:
        x = np.abs(x)
    s1 = float(np.max(np.abs(x))) / fmt.qmax
    x[:3] = np.float32([0.5 * s1, 2.5 * s1, 0.0])            # ties of the first term
    s = expand(x, fmt)
    v = x.astype(np.float64) / float(s.scale)
    _, radix = lane_weights(fmt)
    want = np.empty((fmt.terms, x.size), dtype=np.int64)
    for i, vi in enumerate(v.tolist()):
        exact, prev = Fraction(vi), 0
        for k in range(fmt.terms):
            scaled = exact * radix ** k
            n_k = round(scaled) if fmt.signed else scaled.numerator // scaled.denominator
            want[k, i] = n_k - radix * prev
            prev = n_k
    np.testing.assert_array_equal(s.digits, want)


# -- QLinearConv with zero points and non-power-of-two scales ---------------------------------

def _zp_conv_case(rng, *, max_m0: int, ties: bool):
    """A conv layer of the integer program on an unsigned ``[0, 255]`` grid with an odd
    zero point, 4-bit x 2 weights, per-channel odd ``M0``, an odd output zero point, and the
    QLinearConv that computes it: ``x_scale = c 2^-2`` and ``y_scale = c 2^-5`` (``c`` odd, not
    powers of two), ``w_scale = M0 2^-(n+3)``, so that ``x_scale w_scale / y_scale = M0 2^-n``
    exactly in float32 (``c M0 < 2^24``). ``ties``: small sums and shifts, so that many
    outputs are exact ties inside the output range. Returns ``(layer, input grid, x,
    acc * M0, shift, (model, feed))``."""
    groups = int(rng.choice([1, 2]))
    cg, og = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    c, o = groups * cg, groups * og
    kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    stride = [int(v) for v in rng.integers(1, 3, 2)]
    pads = [int(v) for v in rng.integers(0, min(kh, kw), 4)]
    attrs = dict(kernel_shape=[kh, kw], strides=stride, pads=pads, group=groups)
    zx = int(rng.integers(0, 128)) * 2 + 1
    zy = int(rng.integers(40, 90)) * 2 + 1
    spread, low = (2, 2) if ties else (128, 7)
    x = np.clip(rng.integers(zx - spread, zx + spread + 1, size=(2, c, 7, 6)), 0, 255)
    digits = rng.integers(-low, low + 1, size=(2, o, cg, kh, kw))
    if ties:
        digits[0] = 0
    w = 8 * digits[0] + digits[1]                         # the 4-bit x 2 weights, |w| <= 63
    bias = rng.integers(-20, 21, size=o) if ties else rng.integers(-3000, 3001, size=o)
    m0 = rng.integers(0, (4 if ties else max_m0) // 2, size=o) * 2 + 1
    # the exact accumulator, from ConvInteger (its own oracle)
    model, feed = one_node_model("ConvInteger", [("x", x.astype(np.uint8)),
                                                 ("w", w.astype(np.int8)),
                                                 ("xz", np.array(zx, np.uint8))],
                                 attrs, TensorProto.INT32)
    acc = run_reference(model, feed).astype(np.int64) + bias.reshape(1, -1, 1, 1)
    prod = acc * m0.reshape(1, -1, 1, 1)
    # ties: a shift of 1..2; else one that leaves the largest output about 4 x 255
    top = int(np.abs(prod).max())
    shift = int(rng.integers(1, 3)) if ties else max(1, top.bit_length() - 10)
    grid = SeriesFormat(4, 2, signed=False)
    qin = P.QTensor(grid, 1.0, 0, 255, zx)
    conv = P.Conv(name="y", inputs=("x",), node="y", out=P.QTensor(grid, 1.0, 0, 255, zy),
                  w_digits=digits.astype(np.int8), w_fmt=SeriesFormat(4, 2),
                  w_unit=np.ones(o), bias=bias - zx * w.reshape(o, -1).sum(axis=1),
                  requant=Requant(m0, shift, 0, 255, zy, "rne"),
                  stride=tuple(stride), padding=tuple(pads), groups=groups)
    cs = int(rng.choice([3, 5, 7]))
    assert cs * int(m0.max()) < 2 ** 24
    qlinear = one_node_model(
        "QLinearConv", [("x", x.astype(np.uint8)), ("xs", np.array(cs / 4, np.float32)),
                        ("xz", np.array(zx, np.uint8)), ("w", w.astype(np.int8)),
                        ("ws", (m0 * 2.0 ** -(shift + 3)).astype(np.float32)),
                        ("wz", np.zeros(o, np.int8)), ("ys", np.array(cs / 32, np.float32)),
                        ("yz", np.array(zy, np.uint8)), ("b", bias.astype(np.int32))],
        attrs, TensorProto.UINT8)
    return conv, qin, x, prod, shift, qlinear


@pytest.mark.parametrize("lanes", ["layer", "model"])
@pytest.mark.parametrize("seed", range(24))
def test_zero_point_conv_vs_onnx_reference_qlinearconv(seed, lanes):
    """onnx.reference rounds ``acc M0 2^-n + y_zp`` (float64: exact while ``|acc M0| <
    2^53``), the program ``round(acc M0 2^-n) + y_zp``: with an odd output zero point the two
    differ exactly at ties, by one, where golden's result minus the zero point is even; they
    are equal everywhere else. Odd input zero points pad with real 0 in both."""
    rng = np.random.default_rng(6000 + seed)
    conv, qin, x, prod, shift, (model, feed) = _zp_conv_case(rng, max_m0=1 << 21,
                                                             ties=seed % 2 == 0)
    assert np.abs(prod).max() < 2 ** 53
    got = golden.run_layer(conv, [x], {"x": qin}, lanes)
    want = run_reference(model, feed).astype(np.int64)
    zy = conv.out.zero_point
    tie = prod % (1 << shift) == 1 << (shift - 1)
    inside = (got > 0) & (got < 255)
    np.testing.assert_array_equal(got[~tie], want[~tie])
    np.testing.assert_array_equal(np.abs(got - want)[tie & inside], 1)
    assert np.all((got[tie & inside] - zy) % 2 == 0)
    if seed % 2 == 0:
        assert np.sum(tie & inside) > 0


@needs_ort
@pytest.mark.parametrize("seed", range(24))
def test_zero_point_conv_vs_onnxruntime_qlinearconv(seed):
    """onnxruntime requantizes ``float32(acc) * scale``, rounds half to even and then adds the
    zero point (MLAS), as the program does: equal for odd zero points and ties too, while the
    float32 product is exact (``|acc M0| < 2^24`` and the scales above)."""
    rng = np.random.default_rng(7000 + seed)
    conv, qin, x, prod, shift, (model, feed) = _zp_conv_case(rng, max_m0=1 << 5,
                                                             ties=seed % 2 == 0)
    assert np.abs(prod).max() < 2 ** 24
    got = golden.run_layer(conv, [x], {"x": qin})
    np.testing.assert_array_equal(got, run_onnxruntime(model, feed))
    if seed % 2 == 0:
        tie = prod % (1 << shift) == 1 << (shift - 1)
        assert np.sum(tie & (got > 0) & (got < 255)) > 0
