"""Exact operand planes: every split reconstructs its integers, every plan's products add up
to the exact pair products (against a plain int64 matmul), and the planner picks the plan
the format needs (1 GEMM for W4x2/A4x2, 3 for W4x3/A4x3 by Karatsuba, W8x1 by the CPU)."""

from __future__ import annotations

import numpy as np
import pytest

from fpxint_hw.intsim.cpu import Int8Gemm
from fpxint_hw.intsim.planes import balanced_planes, plan_gemm, unsigned_planes

SATURATING = Int8Gemm(pair_saturates=True, u8u8=False)
SATURATING_U8U8 = Int8Gemm(pair_saturates=True, u8u8=True)
VNNI = Int8Gemm(pair_saturates=False, u8u8=True)


@pytest.mark.parametrize("u_hi,bits", [(0, 8), (255, 8), (256, 8), (4095, 8), (4095, 6),
                                       (65535, 7), (1022, 5)])
def test_unsigned_planes_reconstruct_every_value(u_hi, bits):
    u = np.arange(u_hi + 1, dtype=np.int64)
    planes = unsigned_planes(u_hi, bits)
    total = np.zeros_like(u)
    for shift, mbits, top in planes:
        p = u >> shift
        if mbits:
            p &= (1 << mbits) - 1
        assert p.min() >= 0 and p.max() == top <= (1 << bits) - 1
        total += p << shift
    np.testing.assert_array_equal(total, u)
    assert planes[-1][1] == 0 and all(m == bits for _, m, _ in planes[:-1])


@pytest.mark.parametrize("bits,lo,hi", [(7, -64, 64), (8, -128, 127), (6, -32, 31), (4, -8, 8)])
def test_balanced_planes_reconstruct_and_stay_in_range(bits, lo, hi):
    w = np.arange(-5000, 5001, dtype=np.int64).reshape(-1, 1)
    planes = balanced_planes(w, bits, lo, hi)
    np.testing.assert_array_equal(sum(p << (bits * j) for j, p in enumerate(planes)), w)
    for p in planes[:-1]:
        assert p.min() >= -(1 << (bits - 1)) and p.max() <= (1 << (bits - 1)) - 1
    assert planes[-1].min() >= lo and planes[-1].max() <= hi
    # a matrix already in range is its own single plane
    assert len(balanced_planes(np.array([[lo, hi]]), bits, lo, hi)) == 1


def _evaluate(plan, vals, w_groups):
    """The pair products as the plan computes them, in plain int64 numpy."""
    out = [plan.corrections[i].copy() if plan.corrections[i] is not None
           else np.zeros(w_groups[0].shape[1], np.int64) for i in range(len(plan.pairs))]
    out = [np.broadcast_to(c, (vals[0].shape[0], c.size)).copy() for c in out]
    for p in plan.products:
        a = plan.acts[p.act]
        ops = a.value(vals[a.group])
        if plan.backend == "ort":
            assert ops.min() >= 0 and ops.max() <= a.hi <= 255   # a uint8 operand
        out[p.pair] += p.coef * (ops @ plan.weights[p.weight].values)
    return out


CASES = [   # (activation ranges, weight max |w|, pairs)
    ([(0, 255)], 63, None),                        # W4x2 / unsigned A4x2
    ([(-63, 63)], 63, None),                       # W4x2 / signed A4x2
    ([(0, 4095)], 511, None),                      # W4x3 / A4x3
    ([(-511, 511)], 511, None),                    # W4x3 / signed A4x3
    ([(0, 255)], 127, None),                       # W8x1 / A8x1
    ([(0, 65535)], 4095, None),                    # W4x4 / A4x4
    ([(0, 15), (0, 15)], 7, None),                 # lanes: two activation terms
    ([(0, 4095)], 7, [(0, 0), (1, 0), (2, 0)]),    # model: three weight terms
]


@pytest.mark.parametrize("a_ranges,wmax,pairs", CASES)
@pytest.mark.parametrize("int8", [SATURATING, SATURATING_U8U8, VNNI], ids=["sat", "u8u8", "vnni"])
@pytest.mark.parametrize("backends", [("ort",), ("f64",), ("int",)])
def test_every_plan_adds_up_to_the_exact_products(a_ranges, wmax, pairs, int8, backends):
    rng = np.random.default_rng(wmax)
    k, n = 37, 5
    n_w = 3 if pairs and len(pairs) == 3 else 1
    w_groups = [rng.integers(-wmax, wmax + 1, size=(k, n)) for _ in range(n_w)]
    w_groups[0][0, 0], w_groups[0][1, 0] = wmax, -wmax            # the extremes occur
    vals = [np.concatenate([rng.integers(lo, hi + 1, size=(6, k)),
                            np.full((1, k), lo), np.full((1, k), hi)]) for lo, hi in a_ranges]
    plan, _ = plan_gemm(a_ranges, w_groups, pairs, backends=backends, int8=int8)
    assert plan is not None and plan.ok
    got = _evaluate(plan, vals, w_groups)
    for i, (gw, ga) in enumerate(plan.pairs):
        np.testing.assert_array_equal(got[i], vals[ga] @ w_groups[gw],
                                      err_msg=f"{plan.describe()}, pair {(gw, ga)}")


def test_every_candidate_scheme_adds_up_too():
    """Karatsuba at each radix, both plane widths, uint8 x uint8: each one's algebra."""
    from fpxint_hw.intsim import planes as pl
    rng = np.random.default_rng(3)
    w = rng.integers(-511, 512, size=(29, 4))
    lay = pl._Layer([(0, 4095)], [w], [(0, 0)], 29, "t", [1], 0)
    v = rng.integers(0, 4096, size=(9, 29))
    # 12-bit activations: u0 + u1 fits uint8 at radix 2^5..2^7, not at 2^4 or 2^8
    assert pl._karatsuba(lay, SATURATING, 4) is None and pl._karatsuba(lay, SATURATING, 8) is None
    built = [pl._karatsuba(lay, SATURATING, t) for t in (5, 6, 7)]
    built += [pl._planes(lay, SATURATING, b, "u8s8") for b in (7, 8)]
    w8 = rng.integers(-128, 128, size=(29, 4))
    lay8 = pl._Layer([(0, 255)], [w8], [(0, 0)], 29, "t", [1], 0)
    built.append(pl._planes(lay8, SATURATING_U8U8, 8, "u8u8"))
    assert all(b is not None for b in built)
    for plan in built:
        ww = w8 if plan.scheme == "u8u8" else w
        vv = rng.integers(0, 256, size=(9, 29)) if plan.scheme == "u8u8" else v
        np.testing.assert_array_equal(_evaluate(plan, [vv], [ww])[0], vv @ ww,
                                      err_msg=plan.describe())


@pytest.mark.parametrize("a_range,wmax,int8,scheme,gemms", [
    ((0, 255), 63, SATURATING, "planes", 1),          # W4x2/A4x2: one int8 GEMM
    ((0, 4095), 511, SATURATING, "karatsuba", 3),     # W4x3/A4x3: three, not four
    ((0, 4095), 511, VNNI, "karatsuba", 3),
    ((0, 255), 127, SATURATING, "planes", 2),         # W8x1/A8x1 without VNNI: 2 planes...
    ((0, 255), 127, SATURATING_U8U8, "u8u8", 1),      # ... or one uint8 x uint8 GEMM
    ((0, 255), 127, VNNI, "planes", 1),               # with VNNI: the full int8 range
    ((0, 127), 127, SATURATING, "planes", 1),         # 7-bit activations take 8-bit weights
])
def test_the_planner_picks_the_fewest_gemms(a_range, wmax, int8, scheme, gemms):
    w = np.full((16, 3), wmax, np.int64)
    w[1] = -wmax
    plan, _ = plan_gemm([a_range], [w], backends=("ort",), int8=int8)
    assert (plan.scheme, plan.gemms) == (scheme, gemms), plan.describe()


def test_auto_takes_int8_over_float_and_float_where_int8_costs_more():
    w = np.full((16, 3), 63, np.int64)
    plan, _ = plan_gemm([(0, 255)], [w], int8=SATURATING)
    assert plan.backend == "ort"
    plan, _ = plan_gemm([(0, 255)], [w], int8=SATURATING, backends=("f32", "f64", "int"))
    assert plan.backend == "f32"
