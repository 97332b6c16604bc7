"""Integer primitives against exact rational arithmetic."""

from fractions import Fraction
import math

import numpy as np
import pytest

from fpxint_hw.errors import WidthError
from fpxint_hw.intops import (accumulator_width, check_width, clamp, dot_interval, int_range,
                              odd_part, round_div, round_shift, round_shift_bound,
                              width_for_interval)


def exact_round(value: Fraction, mode: str) -> int:
    """Round a rational exactly: the definition the primitives must follow."""
    lo = math.floor(value)
    frac = value - lo
    if mode == "floor":
        return lo
    if frac > Fraction(1, 2):
        return lo + 1
    if frac == Fraction(1, 2):
        if mode == "half_up" or lo % 2:
            return lo + 1
    return lo


ALL_12BIT = np.arange(-(1 << 11), 1 << 12, dtype=np.int64)   # signed and unsigned 12-bit


@pytest.mark.parametrize("mode", ["rne", "half_up"])
def test_round_shift_exhaustive_12bit_arrays(mode):
    for n in range(0, 15):
        expected = [exact_round(Fraction(int(x), 1 << n), mode) for x in ALL_12BIT]
        np.testing.assert_array_equal(round_shift(ALL_12BIT, n, mode), expected)


@pytest.mark.parametrize("mode", ["rne", "half_up"])
def test_round_shift_exhaustive_12bit_python_ints(mode):
    for n in range(0, 15):
        for x in range(-(1 << 11), 1 << 12, 7):
            assert round_shift(x, n, mode) == exact_round(Fraction(x, 1 << n), mode), (x, n)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64])
@pytest.mark.parametrize("mode", ["rne", "half_up"])
def test_round_shift_extremes_of_each_dtype(dtype, mode):
    info = np.iinfo(dtype)
    xs = np.array([info.min, info.min + 1, -1, 0, 1, info.max - 1, info.max], dtype=dtype)
    for n in list(range(0, info.bits + 3)) + [100]:
        got = round_shift(xs, n, mode)
        assert got.dtype == dtype
        expected = [exact_round(Fraction(int(x), 1 << n), mode) for x in xs]
        np.testing.assert_array_equal(got.astype(np.int64), expected)


def test_round_shift_negative_ties():
    # -2.5 -> -2 (even), -1.5 -> -2 (even), -0.5 -> 0; half_up: -2, -1, 0
    assert [round_shift(x, 1) for x in (-5, -3, -1)] == [-2, -2, 0]
    assert [round_shift(x, 1, "half_up") for x in (-5, -3, -1)] == [-2, -1, 0]


def test_round_shift_rejects_bad_arguments():
    with pytest.raises(ValueError, match="shift n"):
        round_shift(3, -1)
    with pytest.raises(ValueError, match="mode"):
        round_shift(3, 1, "banker")
    with pytest.raises(TypeError):
        round_shift(np.array([1.5]), 1)


@pytest.mark.parametrize("mode", ["rne", "half_up", "floor"])
def test_round_div_matches_exact_division(mode):
    xs = np.arange(-600, 600, dtype=np.int64)
    for d in list(range(1, 40)) + [254, 196, 1 << 10]:
        expected = [exact_round(Fraction(int(x), d), mode) for x in xs]
        np.testing.assert_array_equal(round_div(xs, d, mode), expected)
        assert [round_div(int(x), d, mode) for x in xs[::13]] == expected[::13]


def test_round_div_equals_round_shift_for_powers_of_two():
    xs = np.arange(-4096, 4096, dtype=np.int64)
    for n in range(0, 13):
        for mode in ("rne", "half_up"):
            np.testing.assert_array_equal(round_div(xs, 1 << n, mode), round_shift(xs, n, mode))


def test_int_range_and_clamp():
    assert int_range(4) == (-8, 7)
    assert int_range(4, narrow=True) == (-7, 7)
    assert int_range(4, signed=False) == (0, 15)
    xs = np.arange(-300, 300, dtype=np.int64)
    for bits in range(1, 10):
        for signed in (True, False):
            lo, hi = int_range(bits, signed)
            np.testing.assert_array_equal(clamp(xs, bits, signed), np.minimum(np.maximum(xs, lo), hi))
            assert clamp(-1000, bits, signed) == lo and clamp(1000, bits, signed) == hi
    assert clamp(np.array([-128, 127], dtype=np.int8), 4, narrow=True).tolist() == [-7, 7]


def test_width_for_interval_is_minimal():
    for lo in range(-70, 70):
        for hi in range(lo, 70, 3):
            w = width_for_interval(lo, hi, signed=True)
            assert -(1 << (w - 1)) <= lo and hi <= (1 << (w - 1)) - 1
            if w > 1:   # one bit less would not do
                assert lo < -(1 << (w - 2)) or hi > (1 << (w - 2)) - 1
            if lo >= 0:
                u = width_for_interval(lo, hi, signed=False)
                assert hi < (1 << u) and (u == 1 or hi >= (1 << (u - 1)))
    with pytest.raises(ValueError):
        width_for_interval(3, 2)


@pytest.mark.parametrize("a_bits,b_bits", [(2, 2), (3, 4), (4, 4), (2, 5)])
@pytest.mark.parametrize("narrow", [True, False])
def test_accumulator_width_matches_brute_force(a_bits, b_bits, narrow):
    a_lo, a_hi = int_range(a_bits, narrow=narrow)
    b_lo, b_hi = int_range(b_bits, narrow=narrow)
    products = [x * y for x in range(a_lo, a_hi + 1) for y in range(b_lo, b_hi + 1)]
    for k in (1, 2, 3, 7, 64, 1000):
        need = width_for_interval(k * min(products), k * max(products), signed=True)
        assert accumulator_width(k, a_bits, b_bits, narrow=narrow) == need
    # the textbook rule for full-range operands: N + M + floor(log2 K)
    if not narrow:
        for k in (1, 2, 3, 64, 1000):
            assert accumulator_width(k, a_bits, b_bits, narrow=False) \
                == a_bits + b_bits + int(math.floor(math.log2(k)))


def test_check_width_names_the_quantity():
    check_width(-128, 127, 8, "layer1 acc")
    with pytest.raises(WidthError, match=r"layer1 acc.*need 9 signed bits, only 8"):
        check_width(-129, 127, 8, "layer1 acc")
    assert dot_interval(3, (-1, 2), (-3, 1)) == (-18, 9)


def test_odd_part_recomposes_every_nonzero_integer():
    for c in range(-300, 301):
        if c == 0:
            with pytest.raises(ValueError, match="no odd part"):
                odd_part(c)
            continue
        odd, shift = odd_part(c)
        assert odd % 2 == 1 and shift >= 0 and odd << shift == c


@pytest.mark.parametrize("mode", ["rne", "half_up"])
def test_round_shift_bound_covers_every_rounded_value_and_is_nearly_tight(mode):
    """``round_shift_bound(b, n)`` is at least every ``|round_shift(x, n)|`` with ``|x| <= b``
    (found by trying every x) and at most one more than the largest."""
    for n in range(0, 5):
        for b in range(0, 70):
            worst = max(abs(round_shift(x, n, mode)) for x in range(-b, b + 1))
            assert worst <= round_shift_bound(b, n) <= worst + 1, (b, n)
            if n == 0:
                assert round_shift_bound(b, n) == b
