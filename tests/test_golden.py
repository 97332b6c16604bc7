"""Golden integer operators against external integer oracles (ORACLES.md): zero mismatches.

Oracles: ``onnx.reference`` ConvInteger / MatMulInteger / QLinearConv (NumPy, float64
requantization) and onnxruntime ConvInteger / MatMulInteger / QLinearConv (CPU). Every case
stays inside the conditions under which the oracle is exact: int32 accumulators, and for
QLinearConv ``x_scale = y_scale = 1``, ``w_scale = M0 * 2^-n`` exact in float32 with
``M0 < 2^24`` and an even output zero point (onnxruntime: power-of-two ``w_scale`` and
``|acc| <= 2^24``). tests/test_oracles.py covers the add, the pools, the digit split and
zero-point convs with non-power-of-two scales; tests/oracles.py holds the shared helpers.
"""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from oracles import TensorProto, cpu_has_vnni as _cpu_has_vnni, ort  # noqa: E402
from oracles import one_node_model as _model, run_onnxruntime as _run_ort  # noqa: E402
from oracles import run_reference as _run_ref  # noqa: E402

from fpxint_hw import golden  # noqa: E402
from fpxint_hw.errors import WidthError  # noqa: E402


def _conv_case(rng, extreme: bool):
    """A random conv geometry and signed b-bit operands (b in 2..8, narrow range)."""
    groups = int(rng.choice([1, 1, 2, 3]))
    cg = int(rng.integers(1, 4))
    og = int(rng.integers(1, 4))
    kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    dh, dw = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    sh, sw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    pads = [int(v) for v in rng.integers(0, 3, size=4)]          # top, left, bottom, right
    h = int(rng.integers(dh * (kh - 1) + 1, 10))
    w = int(rng.integers(dw * (kw - 1) + 1, 10))
    n = int(rng.integers(1, 3))
    bx, bw = int(rng.integers(2, 9)), int(rng.integers(2, 9))
    qx, qw = (1 << (bx - 1)) - 1, (1 << (bw - 1)) - 1
    if extreme:
        x = rng.choice([-qx, qx], size=(n, groups * cg, h, w))
        wt = rng.choice([-qw, qw], size=(groups * og, cg, kh, kw))
    else:
        x = rng.integers(-qx, qx + 1, size=(n, groups * cg, h, w))
        wt = rng.integers(-qw, qw + 1, size=(groups * og, cg, kh, kw))
    attrs = dict(strides=[sh, sw], dilations=[dh, dw], group=groups, kernel_shape=[kh, kw],
                 pads=[pads[0], pads[1], pads[2], pads[3]])
    return x, wt, attrs, bx


CONV_CASES = 60


@pytest.mark.parametrize("seed", range(CONV_CASES))
def test_conv2d_vs_onnx_reference_conv_integer(seed):
    rng = np.random.default_rng(seed)
    x, w, attrs, _ = _conv_case(rng, extreme=seed % 3 == 0)
    model, feed = _model("ConvInteger", [("x", x.astype(np.int8)), ("w", w.astype(np.int8))],
                         attrs, TensorProto.INT32)
    expected = _run_ref(model, feed)
    got = golden.conv2d(x, w, stride=attrs["strides"], padding=attrs["pads"],
                        dilation=attrs["dilations"], groups=attrs["group"])
    np.testing.assert_array_equal(got, expected)


@pytest.mark.skipif(ort is None, reason="onnxruntime not installed")
@pytest.mark.parametrize("seed", range(CONV_CASES))
def test_conv2d_vs_onnxruntime_conv_integer_u8(seed):
    """onnxruntime ConvInteger with each signed b-bit term stored as q + 2^(b-1) (uint8) and
    that zero point, as ORACLES.md recommends for builds that only take uint8 x uint8."""
    rng = np.random.default_rng(1000 + seed)
    x, w, attrs, bx = _conv_case(rng, extreme=seed % 3 == 0)
    off = 1 << (bx - 1)
    wz = 128
    model, feed = _model("ConvInteger",
                         [("x", (x + off).astype(np.uint8)), ("w", (w + wz).astype(np.uint8)),
                          ("xz", np.array(off, dtype=np.uint8)),
                          ("wz", np.array(wz, dtype=np.uint8))],
                         attrs, TensorProto.INT32)
    expected = _run_ort(model, feed)
    got = golden.conv2d(x, w, stride=attrs["strides"], padding=attrs["pads"],
                        dilation=attrs["dilations"], groups=attrs["group"])
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("seed", range(CONV_CASES // 2))
def test_conv2d_pad_value_vs_conv_integer_zero_point(seed):
    """Padding with the zero point z of unsigned inputs is ConvInteger with ``x_zero_point =
    z`` plus ``z sum_k w[o, k]`` (the bias the lowering folds in), in both oracles."""
    rng = np.random.default_rng(3000 + seed)
    x, w, attrs, bx = _conv_case(rng, extreme=seed % 3 == 0)
    z = int(rng.integers(1, 256))
    xu = np.clip(x + z, 0, 255).astype(np.uint8)
    model, feed = _model("ConvInteger", [("x", xu), ("w", w.astype(np.int8)),
                                         ("xz", np.array(z, dtype=np.uint8))],
                         attrs, TensorProto.INT32)
    got = golden.conv2d(xu, w, stride=attrs["strides"], padding=attrs["pads"],
                        dilation=attrs["dilations"], groups=attrs["group"], pad_value=z)
    folded = z * w.reshape(w.shape[0], -1).sum(axis=1).reshape(1, -1, 1, 1)
    np.testing.assert_array_equal(got - folded, _run_ref(model, feed))
    if ort is not None:
        np.testing.assert_array_equal(got - folded, _run_ort(model, feed))


@pytest.mark.parametrize("seed", range(30))
def test_matmul_vs_oracles(seed):
    rng = np.random.default_rng(2000 + seed)
    m, k, n = (int(v) for v in rng.integers(1, 40, size=3))
    if seed % 4 == 0:
        k = int(rng.integers(500, 3000))            # long reductions near int32's reach
    a = rng.integers(-127, 128, size=(m, k))
    b = rng.integers(-127, 128, size=(k, n))
    if seed % 3 == 0:
        a = rng.choice([-127, 127], size=(m, k))
        b = rng.choice([-127, 127], size=(k, n))
    got = golden.matmul(a, b)
    model, feed = _model("MatMulInteger", [("a", a.astype(np.int8)), ("b", b.astype(np.int8))],
                         {}, TensorProto.INT32)
    np.testing.assert_array_equal(got, _run_ref(model, feed))
    if ort is not None:
        # the fast onnxruntime pairing: uint8 activations with a zero point, int8 weights;
        # exact for any weight on a CPU with VNNI, else only for |w| <= 64 (ORACLES.md: the
        # u8 x s8 pair sums saturate 16 bits)
        if not _cpu_has_vnni():
            b = np.clip(b, -64, 64)
            got = golden.matmul(a, b)
        model, feed = _model("MatMulInteger",
                             [("a", (a + 128).astype(np.uint8)), ("b", b.astype(np.int8)),
                              ("az", np.array(128, dtype=np.uint8))], {}, TensorProto.INT32)
        np.testing.assert_array_equal(got, _run_ort(model, feed))


def _qlinear_case(rng, pow2: bool):
    x, w, attrs, _ = _conv_case(rng, extreme=False)
    o = w.shape[0]
    acc = golden.conv2d(x, w, stride=attrs["strides"], padding=attrs["pads"],
                        dilation=attrs["dilations"], groups=attrs["group"])
    bias = rng.integers(-2000, 2001, size=o)
    shift = int(rng.integers(8, 30))
    if pow2:
        mult = (1 << rng.integers(0, shift + 2, size=o)).astype(np.int64)
    else:
        mult = rng.integers(1, 1 << 23, size=o)
        # land some results exactly on ties: make M0 a multiple of 2^(shift-1) sometimes
        if rng.random() < 0.5:
            mult = (rng.integers(1, 8, size=o) << (shift - 1)).astype(np.int64)
            mult = np.minimum(mult, (1 << 24) - 1)
    w_scale = (mult.astype(np.float64) * 2.0 ** -shift).astype(np.float32)
    assert np.all(w_scale.astype(np.float64) * 2.0 ** shift == mult)   # exact in float32
    # QLinearConv rounds after adding the output zero point, the integer model before; the
    # two agree at ties only for an even zero point (RNE parity), so the oracle gets even ones.
    y_zp = 2 * int(rng.integers(-10, 11))
    return x, w, attrs, acc, bias, mult, shift, w_scale, y_zp


def _qlinear_model(x, w, attrs, bias, w_scale, y_zp):
    one = np.array(1.0, dtype=np.float32)
    zero = np.array(0, dtype=np.int8)
    return _model("QLinearConv",
                  [("x", x.astype(np.int8)), ("xs", one), ("xz", zero),
                   ("w", w.astype(np.int8)), ("ws", w_scale), ("wz", zero),
                   ("ys", one), ("yz", np.array(y_zp, dtype=np.int8)),
                   ("b", bias.astype(np.int32))], attrs, TensorProto.INT8)


def _requantize_matches(seed, pow2, run):
    """golden.requantize_channels on a QLinearConv case equals the oracle ``run``'s output."""
    rng = np.random.default_rng(seed)
    x, w, attrs, acc, bias, mult, shift, w_scale, y_zp = _qlinear_case(rng, pow2=pow2)
    model, feed = _qlinear_model(x, w, attrs, bias, w_scale, y_zp)
    expected = run(model, feed)
    got = golden.requantize_channels(acc + bias[None, :, None, None], mult, shift, -128, 127,
                                     zero_point=y_zp, mode="rne")
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("seed", range(40))
def test_requantize_vs_onnx_reference_qlinearconv(seed):
    """Round half to even with a general multiplier M0 < 2^24 (float64 inside the oracle)."""
    _requantize_matches(3000 + seed, False, _run_ref)


@pytest.mark.skipif(ort is None, reason="onnxruntime not installed")
@pytest.mark.parametrize("seed", range(40))
def test_requantize_vs_onnxruntime_qlinearconv_pow2(seed):
    """onnxruntime requantizes in float32: exact for power-of-two scales, |acc| <= 2^24."""
    _requantize_matches(4000 + seed, True, _run_ort)


def test_requantize_ties_round_half_to_even():
    """Hand-checked ties: 5/2 -> 2, 7/2 -> 4, -5/2 -> -2, -7/2 -> -4; half_up: 3, 4, -2, -3."""
    acc = np.array([[5], [7], [-5], [-7]])
    np.testing.assert_array_equal(golden.requantize(acc, [1], 1, -100, 100).ravel(),
                                  [2, 4, -2, -4])
    np.testing.assert_array_equal(golden.requantize(acc, [1], 1, -100, 100, mode="half_up")
                                  .ravel(), [3, 4, -2, -3])


def test_pooling_hand_values():
    x = np.arange(16).reshape(1, 1, 4, 4) - 8
    np.testing.assert_array_equal(golden.maxpool2d(x, 2, 2)[0, 0], [[-3, -1], [5, 7]])
    np.testing.assert_array_equal(golden.sumpool2d(x, 2, 2)[0, 0],
                                  [[-8 - 7 - 4 - 3, -6 - 5 - 2 - 1], [0 + 1 + 4 + 5, 2 + 3 + 6 + 7]])
    # padded positions never win a max, even over all-negative windows
    np.testing.assert_array_equal(golden.maxpool2d(x, 3, 2, padding=1)[0, 0], [[-3, -1], [5, 7]])
    np.testing.assert_array_equal(golden.global_sum(x), [[int(np.sum(np.arange(16) - 8))]])


def test_add_requant_single_rounding():
    # 3*1 + 1*1 = 4 -> /4 = 1 ; 3*1 + 3*1 = 6 -> 6/4 = 1.5 -> 2 (even) ; 5*1+5*1=10 -> 2.5 -> 2
    got = golden.add_requant(np.array([3, 3, 5]), np.array([1, 3, 5]), 1, 1, 2, -10, 10)
    np.testing.assert_array_equal(got, [1, 2, 2])


@pytest.mark.parametrize("seed", range(10))
def test_maxpool_vs_onnx_reference(seed):
    rng = np.random.default_rng(5000 + seed)
    k = int(rng.integers(1, 4))
    s = int(rng.integers(1, 3))
    p = int(rng.integers(0, k // 2 + 1))
    x = rng.integers(-127, 128, size=(2, 3, int(rng.integers(k, 9)), int(rng.integers(k, 9))))
    # the reference MaxPool pads with NaN, so it runs on float32 (exact for these integers)
    model, feed = _model("MaxPool", [("x", x.astype(np.float32))],
                         dict(kernel_shape=[k, k], strides=[s, s], pads=[p, p, p, p]),
                         TensorProto.FLOAT)
    np.testing.assert_array_equal(golden.maxpool2d(x, k, s, p), _run_ref(model, feed))


def test_overflow_is_refused():
    big = np.full((1, 4), 1 << 40)
    with pytest.raises(WidthError):
        golden.matmul(big, np.full((4, 1), 1 << 30))
