"""The requantization pre-shift (host only): the fewest bits that leave a full-width M0 in
int64, proved at its edge; golden, the Numba kernel and an exact rational reference agree on
it; arrays refuse it."""

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
    rq = derive_requant([0.37, 1e-3], bound, -100, 100, pre_shift=True)
    p = rq.pre_shift
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
    np.testing.assert_allclose(rq.multiplier * 2.0 ** -(p + rq.shift), [0.37, 1e-3],
                               rtol=2.0 ** -10)


def test_without_pre_shift_the_multiplier_narrows():
    rq = derive_requant([0.37], (1 << 52) - 1, -100, 100)
    assert rq.pre_shift == 0 and int(rq.multiplier.max()) < 1 << 11


def test_round_shift_bound_is_tight():
    for b in (0, 1, 7, 8, 9, (1 << 40) + 3):
        for n in (0, 1, 3, 17):
            worst = max(abs(_round_half_even(Fraction(v, 1 << n))) for v in (-b, b))
            assert worst <= round_shift_bound(b, n) <= worst + 1


def test_golden_kernel_and_rationals_agree_with_a_pre_shift():
    rng = np.random.default_rng(0)
    pre, shift = 9, 20
    # |round_shift(acc, 9)| * M0 < 2^62: inside the kernel's int64 (the width analysis's job)
    acc = rng.integers(-(1 << 40), 1 << 40, size=(64, 3), dtype=np.int64)
    acc[:4, 0] = [(1 << 40) - 1, -(1 << 40), 3 << (pre - 1), -(5 << (pre - 1))]   # ties
    mult = np.array([(1 << 31) - 1, 12345, 1], dtype=np.int64)
    want = np.empty(acc.shape, dtype=np.int64)
    for (m, c), v in np.ndenumerate(acc):
        s = _round_half_even(Fraction(int(v), 1 << pre))
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
