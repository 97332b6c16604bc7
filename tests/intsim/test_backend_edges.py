"""Every exactness condition a layer's GEMM plan rests on, at its edge: the case that just
fits is given that backend, plane split or kernel; one over is refused by it (and the planner
moves on). The float32 bound and this machine's 16-bit pair bound are shown tight: one over,
the arithmetic really is wrong."""

from __future__ import annotations

import numpy as np
import pytest

from fpxint_hw.errors import WidthError
from fpxint_hw.intsim.cpu import PAIR_LIMIT, Int8Gemm, self_test
from fpxint_hw.intsim.gemm import OrtMatMul, choose_backend, have_ort, plan_layer
from fpxint_hw.intsim.planes import _karatsuba, _Layer, plan_gemm
from fpxint_hw.intsim.widths import combine_kernel, int8_product_rows

SATURATING = Int8Gemm(pair_saturates=True, u8u8=False)
SATURATING_U8U8 = Int8Gemm(pair_saturates=True, u8u8=True)
VNNI = Int8Gemm(pair_saturates=False, u8u8=True)
needs_ort = pytest.mark.skipif(not have_ort(), reason="onnxruntime is not installed")


def _col(total: int, k: int = 1) -> list[np.ndarray]:
    """One weight column of ``k`` rows whose absolute sum is ``total``."""
    w = np.zeros((k, 1), dtype=np.int64)
    w[0, 0] = total
    return [w]


def _fits(rows) -> bool:
    return all(r.ok for r in rows)


# -- the raw backends: float32, float64, the int64 kernel --------------------------------------

@pytest.mark.parametrize("name,limit", [("f32", 2 ** 24), ("f64", 2 ** 53),
                                        ("int", 2 ** 63)])
def test_float_and_int_backends_at_their_bound(name, limit):
    # bound = column abs-sum x largest |activation|; activations in [0, 2]
    fits, over = _col(limit // 2 - 1), _col(limit // 2)          # bounds limit-2, limit
    assert choose_backend(name, [(0, 2)], fits, 1) == name
    with pytest.raises(WidthError, match=f"--backend {name}: not proved exact"):
        choose_backend(name, [(0, 2)], over, 1)


def test_without_int8_auto_moves_past_a_float_backend_one_over_its_bound():
    raw = ("f32", "f64", "int")
    for total, want in ((2 ** 24 - 1, "f32"), (2 ** 24, "f64"), (2 ** 53, "int")):
        plan, refused = plan_gemm([(0, 1)], _col(total), backends=raw)
        assert plan.backend == want
        assert all(not p.ok for p in refused)
    plan, _ = plan_gemm([(0, 2)], _col(2 ** 62), backends=raw)
    assert plan is None
    with pytest.raises(WidthError, match="no exact GEMM backend"):
        choose_backend("auto", [(0, 2)], _col(2 ** 62), 1)


def test_the_float32_bound_is_tight():
    """A K = 2 dot product of integers: its partial sums up to 2^24 are exact in float32;
    2^24 + 1 is not representable, so the bound cannot be one higher."""
    a = np.array([[1.0, 1.0]], dtype=np.float32)
    inside = np.array([[2.0 ** 23], [2.0 ** 23 - 1]], dtype=np.float32)   # sum 2^24 - 1
    over = np.array([[2.0 ** 24], [1.0]], dtype=np.float32)              # sum 2^24 + 1
    assert int((a @ inside)[0, 0]) == 2 ** 24 - 1
    assert int((a @ over)[0, 0]) != 2 ** 24 + 1


# -- one int8 GEMM: operand slots, the 16-bit pairs, the int32 accumulator ---------------------

def _u8s8(a_hi, w_lo, w_hi, colabs=1, sat=True):
    return int8_product_rows("l", "g", a_hi, w_lo, w_hi, colabs, 1, "u8s8", sat)


def test_the_16_bit_pair_condition_at_its_edges():
    assert PAIR_LIMIT == 2 ** 15 - 1
    assert _fits(_u8s8(255, -64, 64))                    # 2 * 255 * 64 = 32640
    assert not _fits(_u8s8(255, -64, 65))                # 33150
    assert not _fits(_u8s8(255, -65, 64))
    assert _fits(_u8s8(129, -127, 127))                  # 7-bit activations: 32766
    assert not _fits(_u8s8(130, -127, 127))              # 33020
    assert _fits(_u8s8(255, -128, 127, sat=False))       # VNNI: no pair condition


def test_the_int8_and_uint8_operand_slots_at_their_edges():
    assert _fits(_u8s8(255, -128, 127, sat=False))
    assert not _fits(_u8s8(256, 0, 1, sat=False))        # activation operand over uint8
    assert not _fits(_u8s8(255, -128, 128, sat=False))   # weight operand over int8
    assert not _fits(_u8s8(255, -129, 127, sat=False))
    u8 = int8_product_rows("l", "g", 255, -128, 127, 1, 1, "u8u8", True)
    assert _fits(u8)                                     # w + 128 in [0, 255]
    assert not _fits(int8_product_rows("l", "g", 255, -128, 128, 1, 1, "u8u8", True))
    assert not _fits(int8_product_rows("l", "g", 255, -129, 127, 1, 1, "u8u8", True))


def test_the_int32_accumulators_at_their_edges():
    k = (2 ** 31 - 1) // 255
    assert _fits(_u8s8(255, -1, 1, colabs=k))             # 255 * k <= 2^31 - 1
    assert not _fits(_u8s8(255, -1, 1, colabs=k + 1))
    k8 = (2 ** 31 - 1) // (255 * 255)                    # u8 x u8: the stored products
    assert _fits(int8_product_rows("l", "g", 255, -1, 1, 1, k8, "u8u8", True))
    assert not _fits(int8_product_rows("l", "g", 255, -1, 1, 1, k8 + 1, "u8u8", True))


# -- the planner: which split each edge gets ---------------------------------------------------

def _w(lo, hi, k=8, n=3):
    w = np.zeros((k, n), np.int64)
    w[0], w[1] = lo, hi
    return w


def _plan(a_range, w, int8, backend="ort", **kw):
    return plan_layer(backend, [a_range], [w], int8=int8, **kw)


def test_without_vnni_a_weight_one_over_64_takes_a_second_plane():
    assert _plan((0, 255), _w(-64, 64), SATURATING).gemms == 1
    assert _plan((0, 255), _w(-64, 65), SATURATING).gemms == 2
    assert _plan((0, 255), _w(-65, 64), SATURATING).gemms == 2
    # 7-bit activations take the whole int8 range in one plane; 8-bit ones do not
    assert _plan((0, 129), _w(-127, 127), SATURATING).gemms == 1
    assert _plan((0, 130), _w(-127, 127), SATURATING).gemms == 2


def test_with_vnni_the_whole_int8_range_is_one_plane():
    assert _plan((0, 255), _w(-128, 127), VNNI).gemms == 1
    assert _plan((0, 255), _w(-128, 128), VNNI).gemms == 2
    assert _plan((0, 255), _w(-129, 127), VNNI).gemms == 2
    assert _plan((0, 256), _w(-128, 127), VNNI).gemms == 2          # a second uint8 plane


def test_uint8_x_uint8_takes_8_bit_weights_and_no_more():
    plan = _plan((0, 255), _w(-128, 127), SATURATING_U8U8)
    assert (plan.scheme, plan.gemms) == ("u8u8", 1)
    assert _plan((0, 255), _w(-128, 128), SATURATING_U8U8).scheme != "u8u8"
    assert _plan((0, 255), _w(-128, 127), SATURATING).scheme == "planes"   # not detected


def test_a_long_reduction_one_over_the_int32_accumulator_takes_more_planes():
    k_max = (2 ** 31 - 1) // (255 * 64)                             # K * 255 * 64 < 2^31
    w = np.full((k_max, 1), 64, np.int64)
    assert _plan((0, 255), w, SATURATING, k=k_max).gemms == 1
    w = np.full((k_max + 1, 1), 64, np.int64)
    assert _plan((0, 255), w, SATURATING, k=k_max + 1).gemms > 1


def test_karatsuba_operand_sums_at_their_edges():
    """At radix 2^7, u0 + u1 <= 127 + (u_hi >> 7) must fit uint8, and w0 + w1 the pair
    condition next to it (|w0 + w1| <= 64 against activations up to 255)."""
    def kara(u_hi, w):
        return _karatsuba(_Layer([(0, u_hi)], [w], [(0, 0)], w.shape[0], "l", [1], 0),
                          SATURATING, 7)
    w = _w(-63 - 128, 63 + 128)                      # w0 = +-63, w1 = +-1: sums +-64
    assert kara(128 * 128 + 127, w).ok               # u0 + u1 up to 255
    assert kara(128 * 128 + 128, w) is None          # 256: not a uint8 operand
    assert not kara(128 * 128 + 127, _w(-64 - 128, 63 + 128)).ok     # a sum of -65


def test_the_int64_recombination_at_its_edge():
    w = _w(0, 1)
    assert plan_gemm([(0, 1)], [w], backends=("ort",), int8=SATURATING,
                     bias_max=2 ** 63 - 2)[0] is not None       # 1 + bias = 2^63 - 1
    plan, refused = plan_gemm([(0, 1)], [w], backends=("ort",), int8=SATURATING,
                              bias_max=2 ** 63 - 1)
    assert plan is None
    assert any("recombination" in r.node and not r.ok for p in refused for r in p.rows)


def test_the_combining_kernel_at_its_edges():
    top = 2 ** 31 - 1
    assert combine_kernel("l", top, 1, 1, False)[0] == "i32"          # int32 partial sums
    assert combine_kernel("l", top + 1, top, top, False)[0] == "p32"  # 32 x 32-bit products
    assert combine_kernel("l", top + 1, top + 1, top, False)[0] == "i64"
    assert combine_kernel("l", top + 1, top, top + 1, False)[0] == "i64"
    assert combine_kernel("l", 1, 1, 1, True)[0] == "i64"             # a pre-shift


def test_a_named_backend_not_proved_exact_is_refused_with_the_failing_node():
    with pytest.raises(WidthError, match=r"--backend ort: not proved exact for layer 'c'.*"
                                         r"recombination"):
        plan_layer("ort", [(0, 1)], [_w(0, 1)], what="layer 'c'", int8=SATURATING,
                   bias_max=2 ** 63 - 1)


# -- this machine: the pair bound is tight where it applies ------------------------------------

@needs_ort
def test_this_cpus_16_bit_pairs_are_exact_at_64_and_wrong_at_65_when_it_saturates():
    a = np.full((2, 16), 255, np.uint8)
    for w_value, exact in ((64, True), (-64, True), (65, None), (-65, None)):
        w = np.full((16, 1), w_value, np.int64)
        got = np.array_equal(OrtMatMul(w, 0, 1)(a), a.astype(np.int64) @ w)
        if exact:
            assert got, w_value
        elif not self_test()[0]:                          # a CPU whose pairs saturate
            assert not got, f"{w_value}: the 16-bit pair bound is not tight here"
