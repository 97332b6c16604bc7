"""The requantization pre-shift (host only): per channel, the fewest bits that leave a
full-width M0 in int64, proved at its edge, and more for small multipliers so that every
channel's M0 keeps its bits; golden, the Numba kernel and an exact rational reference agree
on it; arrays refuse it."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from fpxint_hw.errors import FormatError
from fpxint_hw.golden import requantize
from fpxint_hw.intops import round_shift_bound, width_for_interval
from fpxint_hw.intsim import kernels
from fpxint_hw.quant import derive_requant
from fpxint_hw.quant.bridge import constants_misfit
from fpxint_hw.spec import load_array_spec
from fpxint_hw.tile import Requant


def _round_half_even(fr: Fraction) -> int:
    f = fr.numerator // fr.denominator
    rem = fr - f
    if rem > Fraction(1, 2) or (rem == Fraction(1, 2) and f % 2 == 1):
        return f + 1
    return f


@pytest.mark.parametrize("bound_bits", [33, 40, 52, 60])
def test_pre_shift_is_the_fewest_bits_that_fit(bound_bits):
    bound = (1 << bound_bits) - 12345
    rq = derive_requant([0.37, 0.3], bound, -100, 100, pre_shift=True)
    assert rq.pre_shift[0] == rq.pre_shift[1]                 # multipliers within 2x: no more
    p = int(rq.pre_shift[0])
    assert int(rq.multiplier.max()) >= 1 << 30                # M0 keeps 31 bits
    room = 63 - width_for_interval(-round_shift_bound(bound, p), round_shift_bound(bound, p))
    assert room >= 31
    if p:                                                     # one bit less would not do
        q = p - 1
        assert 63 - width_for_interval(-round_shift_bound(bound, q),
                                       round_shift_bound(bound, q)) < 31
    assert round_shift_bound(bound, p) * int(rq.multiplier.max()) + (1 << (rq.shift - 1)) \
        < 1 << 63
    # the scaled multiplier still means the same real ratio
    np.testing.assert_allclose(rq.multiplier * 2.0 ** -(p + rq.shift), [0.37, 0.3],
                               rtol=2.0 ** -29)


def test_small_multipliers_pre_round_more_and_keep_their_bits():
    """Channel scales spread over 2^20 (a depthwise layer's): each channel's M0 keeps 30 or
    31 significant bits, no channel pre-rounds by more error (in output steps) than the
    widest-bound channel does, and every real ratio survives to 2^-29."""
    bound = (1 << 50) - 7
    real = np.array([0.37, 0.37 * 2.0 ** -11, 0.37 * 2.0 ** -20, 0.2])
    rq = derive_requant(real, bound, -100, 100, pre_shift=True)
    p = rq.pre_shift
    fewest = int(p[0])
    assert fewest > 0 and p.tolist() == [fewest, fewest + 11, fewest + 20, fewest]
    assert int(rq.multiplier.min()) >= 1 << 29
    # the pre-rounding error of channel c is real[c] 2^(p_c - 1) output steps
    assert np.all(real * 2.0 ** (p - 1) <= real[0] * 2.0 ** (fewest - 1))
    np.testing.assert_allclose(rq.multiplier * 2.0 ** -(p + rq.shift), real, rtol=2.0 ** -29)
    for b, m, pc in zip([bound] * 4, rq.multiplier, p):      # and every product fits int64
        assert round_shift_bound(b, int(pc)) * int(m) + (1 << (rq.shift - 1)) < 1 << 63
    # a layer that needs no pre-rounding gets none, however its scales spread
    narrow = derive_requant(real, 1 << 20, -100, 100, pre_shift=True)
    assert not narrow.pre_shift.any()


def test_without_pre_shift_the_multiplier_narrows():
    rq = derive_requant([0.37], (1 << 52) - 1, -100, 100)
    assert not rq.pre_shift.any() and int(rq.multiplier.max()) < 1 << 11


def test_round_shift_bound_is_tight():
    for b in (0, 1, 7, 8, 9, (1 << 40) + 3):
        for n in (0, 1, 3, 17):
            worst = max(abs(_round_half_even(Fraction(v, 1 << n))) for v in (-b, b))
            assert worst <= round_shift_bound(b, n) <= worst + 1


def test_golden_kernel_and_rationals_agree_with_a_pre_shift():
    rng = np.random.default_rng(0)
    pre, shift = np.array([9, 3, 0], dtype=np.int64), 20
    # |round_shift(acc, pre)| * M0 < 2^62: inside the kernel's int64 (the width analysis's job)
    acc = rng.integers(-(1 << 40), 1 << 40, size=(64, 3), dtype=np.int64)
    acc[:4, 0] = [(1 << 40) - 1, -(1 << 40), 3 << 8, -(5 << 8)]          # ties at 9 bits
    acc[:2, 1] = [3 << 2, -(7 << 2)]                                     # ties at 3 bits
    mult = np.array([(1 << 21) - 1, 12345, 1], dtype=np.int64)
    want = np.empty(acc.shape, dtype=np.int64)
    for (m, c), v in np.ndenumerate(acc):
        s = _round_half_even(Fraction(int(v), 1 << int(pre[c])))
        want[m, c] = min(max(_round_half_even(Fraction(s * int(mult[c]), 1 << shift)),
                             -(1 << 30)), 1 << 30)
    gold = requantize(acc, mult, shift, -(1 << 30), 1 << 30, 0, "rne", pre)
    out = np.empty(acc.shape, dtype=np.int32)
    kernels.requant_rows(acc, np.zeros(3, dtype=np.int64), mult, shift, -(1 << 30), 1 << 30,
                         0, False, out, pre)
    assert np.array_equal(gold, want) and np.array_equal(out.astype(np.int64), want)


def test_arrays_refuse_a_pre_shift_and_requant_checks_it():
    spec = load_array_spec("default")
    why = constants_misfit(spec, spec.w_fmt, spec.a_fmt, spec.out_fmt, np.zeros(2, np.int64),
                           np.ones(2, np.int64), spec.rounding, 0, 15, 0, pre_shift=3)
    assert why is not None and "pre-rounds" in why
    with pytest.raises(FormatError, match="pre_shift"):
        Requant(np.ones(1, np.int64), 0, 0, 1, pre_shift=63)
    with pytest.raises(FormatError, match="one per channel"):
        Requant(np.ones(3, np.int64), 0, 0, 1, pre_shift=np.array([1, 2]))
