"""The simulator's data-movement kernels against plain numpy: the plane split with padding,
im2col, the input quantization (ties included), the combining kernels and their one-thread
twins, max pooling in narrow dtypes."""

from __future__ import annotations

import numpy as np
import pytest

from fpxint_hw import golden
from fpxint_hw.intsim import kernels
from fpxint_hw.intsim.planes import ActOperand


def _op_table(acts):
    n = len(acts)
    shift, mask = np.zeros((n, 2), np.int64), np.zeros((n, 2), np.int64)
    for i, a in enumerate(acts):
        for j, (s, bits, _) in enumerate(a.parts):
            shift[i, j], mask[i, j] = s, ((1 << bits) - 1) if bits else 0xFFFFFFFF
    return (np.array([a.group for a in acts], np.int64),
            np.array([a.offset for a in acts], np.int64), shift, mask)


@pytest.mark.parametrize("lo,hi", [(0, 4095), (-511, 511), (-2 ** 31, 2 ** 31 - 1)])
def test_split_planes_equals_the_operands_and_pads_with_their_fill(lo, hi):
    rng = np.random.default_rng(lo & 0xFF)
    v = rng.integers(lo, hi + 1, size=(2, 3, 4, 5), dtype=np.int64)
    v.flat[:2] = lo, hi
    acts = [ActOperand(0, lo, ((0, 6, 1),), 0, 63), ActOperand(0, lo, ((6, 0, 1),), 0, 0),
            ActOperand(0, lo, ((0, 6, 1), (6, 0, 1)), 0, 0)]
    fill = np.array([7, 8, 9], np.int64)
    out = np.empty((3, 2, 3 + 1 + 2, 4 + 2 + 0, 5), dtype=np.int64)
    kernels.split_planes(v.astype(np.int32)[None], *_op_table(acts), fill, 1, 2, out)
    for a, f, got in zip(acts, fill, out):
        want = np.full(got.shape, f, np.int64)
        want[:, 1:4, 2:6] = a.value(v)
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("geom", [(3, 3, 1, 1, 1, 1), (7, 7, 2, 2, 1, 1), (1, 1, 2, 2, 1, 1),
                                  (3, 3, 1, 2, 2, 1), (3, 2, 2, 1, 1, 2)])
@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("pads", [(0, 0, 0, 0), (1, 2, 3, 1), (3, 3, 3, 3)],
                         ids=["padded-before", "uneven", "wider-than-a-tap"])
def test_im2col_rows_equals_numpy_windows_of_the_padded_operand(geom, groups, pads):
    """The kernel pads as it gathers: equal to numpy's windows of the operand padded with
    each operand's fill (np.pad), for every geometry, group and padding."""
    kh, kw, sh, sw, dh, dw = geom
    pt, pl, pb, pr = pads
    rng = np.random.default_rng(kh * 10 + kw)
    a, n, h, w, c = 2, 2, 11, 12, 6
    planes = rng.integers(0, 256, size=(a, n, h, w, c)).astype(np.uint8)
    fill = np.array([7, 250], np.uint8)
    padded = np.stack([np.pad(p, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=f)
                       for p, f in zip(planes, fill)])
    hp, wp = h + pt + pb, w + pl + pr
    ho = (hp - dh * (kh - 1) - 1) // sh + 1
    wo = (wp - dw * (kw - 1) - 1) // sw + 1
    cg = c // groups
    for g in range(groups):
        want = np.stack([padded[:, :, i * dh:i * dh + sh * (ho - 1) + 1:sh,
                                j * dw:j * dw + sw * (wo - 1) + 1:sw, g * cg:(g + 1) * cg]
                         for i in range(kh) for j in range(kw)], axis=4)
        want = want.reshape(a, n * ho * wo, kh * kw * cg)
        for fn in (kernels.im2col_rows, kernels.im2col_rows_serial):
            r0, rows = 3, n * ho * wo - 5                    # a chunk of rows
            out = np.empty((a, rows, kh * kw * cg), np.uint8)
            fn(planes.reshape(a, n, h, w * c), c, pt, pl, fill, ho, wo, kh, kw, sh, sw, dh,
               dw, g * cg, r0, out)
            np.testing.assert_array_equal(out, want[:, r0:r0 + rows])


def test_quantize_kernel_equals_quantize_input_at_ties():
    from fpxint_hw.quant.program import QTensor
    from fpxint_hw.spec import SeriesFormat
    t = QTensor(SeriesFormat(4, 2, signed=False), 0.125, 0, 255, 128)
    k = np.arange(-1200, 1200)
    x = ((k + 0.5) * 0.125 / 1).astype(np.float32) / 8      # every value a tie of x / unit
    x = np.concatenate([x, np.float32([-1e9, 1e9, 0.0, 0.0625, 0.1875])])
    x = np.resize(x, 2 * 3 * 5 * 81).reshape(2, 3, 5, 81)
    want = np.clip(np.rint(x.astype(np.float64) / t.unit) + t.zero_point, t.lo, t.hi)
    out = np.empty((2, 5, 81, 3), np.uint8)
    kernels.quantize_nhwc(x, t.unit, float(t.zero_point), t.lo, t.hi, out)
    np.testing.assert_array_equal(out, want.transpose(0, 2, 3, 1))


@pytest.mark.parametrize("name", ["combine_requant", "combine_requant_i32", "combine_requant_p32"])
def test_combining_kernels_and_their_twins_equal_golden_requantize(name):
    rng = np.random.default_rng(5)
    m, c = 37, 9
    bufs = tuple(rng.integers(-2 ** 12, 2 ** 12, size=(m, 2 * c)).astype(np.int32)
                 for _ in range(3))
    t_buf = np.array([0, 1, 2, 0], np.int64)
    t_col = np.array([0, c, 3, c], np.int64)
    t_coef = np.array([1, -63, 64, 4032], np.int64)
    bias = rng.integers(-1000, 1000, size=c)
    mult = rng.integers(1, 2 ** 31, size=c)
    acc = bias + sum(int(f) * bufs[b][:, o:o + c].astype(np.int64)
                     for b, o, f in zip(t_buf, t_col, t_coef))
    for shift, half_up in ((38, False), (33, True), (1, False)):
        want = golden.requantize(acc, mult, shift, -100, 200, 3,
                                 "half_up" if half_up else "rne")
        for fn in (getattr(kernels, name), getattr(kernels, name + "_serial")):
            out = np.empty((m, c), np.int16)
            pre = (np.zeros(c, np.int64),) if name == "combine_requant" else ()
            fn(bufs, t_buf, t_col, t_coef, bias, mult, *pre, shift, -100, 200, 3, half_up, out)
            np.testing.assert_array_equal(out, want, err_msg=f"{fn}, shift {shift}")


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16])
def test_maxpool_in_narrow_dtypes_equals_golden(dtype):
    info = np.iinfo(dtype)
    rng = np.random.default_rng(1)
    x = rng.integers(info.min, info.max + 1, size=(2, 3, 9, 10)).astype(dtype)
    want = golden.maxpool2d(x.astype(np.int64), (3, 3), (2, 2), (1, 1, 1, 1))
    xh = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    out = np.empty((2, want.shape[2], want.shape[3], 3), dtype)
    kernels.maxpool_nhwc(xh, 3, 3, 2, 2, 1, 1, out)
    np.testing.assert_array_equal(out.transpose(0, 3, 1, 2), want)
