"""AbelianAdd / AbelianMul: the group laws and lane-sum order independence, bit-exactly."""

import itertools

import numpy as np
import pytest
from hypothesis import given, strategies as st

from fpxint_hw import (Lanes, SeriesFormat, abelian_add, abelian_mul, abelian_neg, expand,
                       lane_sum, tree_sum, zero_like)
from fpxint_hw.errors import WidthError
from fpxint_hw.series import Series

formats = st.builds(SeriesFormat, bits=st.integers(2, 8), terms=st.integers(1, 4),
                    scale=st.sampled_from(["pow2", "free"]), signed=st.booleans())


@st.composite
def frame_series(draw, count=3, shape=(3, 4)):
    """``count`` series on one frame (format, shape, scales) with random in-range digits."""
    fmt = draw(formats)
    scale = np.float64(draw(st.floats(1e-3, 1e3)))
    out = []
    for _ in range(count):
        seed = draw(st.integers(0, 2**32 - 1))
        digits = np.random.default_rng(seed).integers(fmt.qmin, fmt.qmax + 1,
                                                      (fmt.terms,) + shape)
        out.append(Series(fmt, digits.astype(np.int64), np.asarray(scale)))
    return out


def same(a: Series, b: Series) -> None:
    np.testing.assert_array_equal(a.digits, b.digits)
    assert a.fmt == b.fmt and np.array_equal(a.scale, b.scale)


@given(frame_series())
def test_add_is_commutative_and_associative(s):
    a, b, c = s
    same(abelian_add(a, b), abelian_add(b, a))
    same(abelian_add(abelian_add(a, b), c), abelian_add(a, abelian_add(b, c)))


@given(frame_series(count=1))
def test_identity_and_inverse(s):
    (a,) = s
    same(abelian_add(a, zero_like(a)), a)
    zero = abelian_add(a, abelian_neg(a))
    assert not zero.digits.any()
    same(abelian_neg(abelian_neg(a)), a)


@given(frame_series())
def test_add_is_a_homomorphism_of_the_represented_values(s):
    a, b, _ = s
    np.testing.assert_array_equal(abelian_add(a, b).combined(), a.combined() + b.combined())


@given(frame_series(count=3), formats, st.integers(0, 2**32 - 1))
def test_mul_distributes_over_add(s, wfmt, seed):
    b, c, _ = s
    x = np.random.default_rng(seed).standard_normal(b.shape)
    w = expand(x if wfmt.signed else np.abs(x), wfmt)
    left = abelian_mul(w, abelian_add(b, c))
    right = abelian_add(abelian_mul(w, b), abelian_mul(w, c))
    np.testing.assert_array_equal(left.values, right.values)
    assert left.weights == right.weights


@given(frame_series(count=2, shape=(3, 5)), st.integers(0, 2**32 - 1))
def test_mul_lane_sum_is_the_product_of_combined_integers(s, seed):
    a, b = s
    p = abelian_mul(a, b)
    if p.width > 64:   # e.g. two 4-term 8-bit unsigned series: refused, never wrapped
        with pytest.raises(WidthError):
            lane_sum(p)
        return
    np.testing.assert_array_equal(lane_sum(p), a.combined() * b.combined())
    # matmul: (3, 5) @ (5, 3)
    bt = Series(b.fmt, np.ascontiguousarray(b.digits.transpose(0, 2, 1)), b.scale)
    pm = abelian_mul(a, bt, op="matmul")
    if pm.width > 64:
        with pytest.raises(WidthError):
            lane_sum(pm)
        return
    expected = np.array(a.combined().astype(object).dot(bt.combined().astype(object)),
                        dtype=np.int64)
    np.testing.assert_array_equal(lane_sum(pm), expected)


def random_tree(draw, leaves):
    if len(leaves) == 1:
        return leaves[0] if draw(st.booleans()) else (leaves[0],)
    cut = draw(st.integers(1, len(leaves) - 1))
    return (random_tree(draw, leaves[:cut]), random_tree(draw, leaves[cut:]))


@st.composite
def lanes_and_orders(draw):
    a_fmt, b_fmt = draw(formats), draw(formats)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    a = Series(a_fmt, rng.integers(a_fmt.qmin, a_fmt.qmax + 1, (a_fmt.terms, 6)), np.float64(1))
    b = Series(b_fmt, rng.integers(b_fmt.qmin, b_fmt.qmax + 1, (b_fmt.terms, 6)), np.float64(1))
    lanes = abelian_mul(a, b)
    order = draw(st.permutations(range(lanes.count)))
    tree = random_tree(draw, list(draw(st.permutations(range(lanes.count)))))
    mask = draw(st.lists(st.booleans(), min_size=lanes.count, max_size=lanes.count))
    return lanes, order, tree, mask


@given(lanes_and_orders())
def test_every_order_and_tree_shape_gives_the_identical_integer(case):
    lanes, order, tree, mask = case
    if lanes.width > 64:
        with pytest.raises(WidthError):
            tree_sum(lanes, tree)
        return
    exact = [sum(int(w) * int(lanes.values[l, i]) for l, w in enumerate(lanes.weights))
             for i in range(lanes.shape[0])]
    np.testing.assert_array_equal(lane_sum(lanes), exact)
    np.testing.assert_array_equal(lane_sum(lanes, order=order), exact)
    np.testing.assert_array_equal(tree_sum(lanes, tree), exact)
    # switching lanes off leaves exactly the sum of the others
    kept = [sum(int(w) * int(lanes.values[l, i]) for l, w in enumerate(lanes.weights) if mask[l])
            for i in range(lanes.shape[0])]
    np.testing.assert_array_equal(lane_sum(lanes, order=order, mask=mask), kept)


def test_all_permutations_of_a_small_product():
    fmt = SeriesFormat(bits=3, terms=2, scale="free")
    rng = np.random.default_rng(0)
    a = Series(fmt, rng.integers(-3, 4, (2, 50)), np.float64(0.5))
    lanes = abelian_mul(a, a)
    ref = lane_sum(lanes)
    for order in itertools.permutations(range(4)):
        np.testing.assert_array_equal(lane_sum(lanes, order=order), ref)


def test_mul_value_is_the_product_of_values():
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((4, 8)), rng.standard_normal((8, 3))
    a = expand(x, SeriesFormat(bits=4, terms=3, per_channel=True))
    b = expand(y, SeriesFormat(bits=4, terms=2))
    p = abelian_mul(a, b, op="matmul")
    np.testing.assert_allclose(p.value(), a.reconstruct() @ b.reconstruct(), rtol=1e-12, atol=1e-12)


def test_non_isomorphic_series_are_refused():
    x = np.ones((2, 3))
    a = expand(x, SeriesFormat(terms=2))
    with pytest.raises(ValueError, match="formats differ"):
        abelian_add(a, expand(x, SeriesFormat(terms=3)))
    with pytest.raises(ValueError, match="scales differ"):
        abelian_add(a, expand(2 * x, SeriesFormat(terms=2)))
    with pytest.raises(ValueError, match="contracted axis"):
        abelian_mul(expand(x, SeriesFormat(per_channel=True), axis=1),
                    expand(x.T, SeriesFormat()), op="matmul")


def test_widths_are_checked_before_adding():
    big = Lanes(np.zeros((2, 3), dtype=np.int64), (1 << 40, 1 << 40),
                ((-(1 << 22), 1 << 22),) * 2)
    with pytest.raises(WidthError, match=r"partial sum after lane 1.*need 65 signed bits"):
        lane_sum(big)
    with pytest.raises(WidthError, match="tree_sum node"):
        tree_sum(big, (0, 1))
    assert lane_sum(big, mask=[True, False]).tolist() == [0, 0, 0]


def test_lane_sum_rejects_bad_orders_and_trees():
    lanes = Lanes(np.zeros((3, 2), dtype=np.int64), (1, 2, 4), ((0, 1),) * 3)
    with pytest.raises(ValueError, match="permutation"):
        lane_sum(lanes, order=[0, 0, 1])
    with pytest.raises(ValueError, match="exactly once"):
        tree_sum(lanes, ((0, 1), 1))
    with pytest.raises(ValueError, match="out of range"):
        tree_sum(lanes, (0, 1, 5))
