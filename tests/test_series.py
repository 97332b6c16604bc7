"""Tensor series expansion: exactness, the error bound, convergence rates, edge cases."""

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

from fpxint_hw import InputError, SeriesFormat, expand
from fpxint_hw.series import split_integer, sqnr_db

FORMATS = [SeriesFormat(bits=b, terms=t, scale=s, signed=sg)
           for b in (2, 3, 4, 8) for t in (1, 2, 3) for s in ("pow2", "free")
           for sg in (True, False)]


def reference_digits(x: float, scale: float, fmt: SeriesFormat) -> list[int]:
    """The residual series of docs/theory.md in exact rational arithmetic."""
    if scale == 0:
        return [0] * fmt.terms
    return digits_of(Fraction(float(np.float64(x) / np.float64(scale))), fmt)  # fl64(x / s_1)


def digits_of(v: Fraction, fmt: SeriesFormat) -> list[int]:
    """Digits of ``v = x / s_1``: round (signed) or truncate (unsigned), clamp, carry on."""
    digits = []
    for _ in range(fmt.terms):
        if fmt.signed:
            q = round(v)            # Python rounds Fractions half to even
        else:
            q = math.floor(v)
        q = min(max(q, fmt.qmin), fmt.qmax)
        digits.append(q)
        v = (v - q) * fmt.radix
    return digits


def sample(shape, signed, rng, kind="normal"):
    x = {"normal": rng.standard_normal, "laplace": rng.laplace,
         "t3": lambda size: rng.standard_t(3, size=size)}[kind](size=shape).astype(np.float32)
    return x if signed else np.abs(x)


@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_digits_equal_exact_reference(fmt):
    rng = np.random.default_rng(fmt.bits * 100 + fmt.terms)
    x = sample((300,), fmt.signed, rng)
    # exact ties of the first term, and the extremes
    s1 = float(np.max(np.abs(x))) / fmt.qmax
    x[:4] = np.float32([0.5 * s1, -0.5 * s1 if fmt.signed else 1.5 * s1, 0.0, -0.0])
    s = expand(x, fmt)
    scale = float(s.scale)
    assert s.digits.shape == (fmt.terms, 300)
    for i in range(x.size):
        assert s.digits[:, i].tolist() == reference_digits(x[i], scale, fmt), i


@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_bound_holds_at_every_k_and_error_never_grows(fmt):
    rng = np.random.default_rng(7)
    for kind in ("normal", "laplace", "t3"):
        x = sample((16, 257), fmt.signed, rng, kind)
        for per_channel in (False, True):
            f = SeriesFormat(**{**fmt.to_dict(), "per_channel": per_channel})
            s = expand(x, f)
            assert s.digits.min() >= f.qmin and s.digits.max() <= f.qmax
            slack = 8 * np.finfo(np.float64).eps * np.max(np.abs(x))   # float64 evaluation
            prev = np.full(x.shape, np.inf)
            for k in range(1, f.terms + 1):
                err = np.abs(x - s.reconstruct(k))
                assert np.all(err <= s.error_bound(k) + slack), (kind, per_channel, k)
                assert np.all(err <= prev + slack), (kind, per_channel, k)
                prev = err


def settled_gains(x, fmt):
    """SQNR gains k -> k+1 (dB) for every k whose step is small next to the signal.

    Once the step s_k is at most the typical magnitude (median |x|, per channel
    for per-channel formats), the error after k terms is
    spread uniformly over a step and each further term divides it by the radix.
    """
    s = expand(x, fmt)
    sqnr = [sqnr_db(x, s.reconstruct(k)) for k in range(1, fmt.terms + 1)]
    axes = tuple(range(1, x.ndim)) if fmt.per_channel else None
    typical = np.median(np.abs(x), axis=axes, keepdims=True)
    gains = np.diff(sqnr)
    settled = [g for k, g in enumerate(gains, start=1) if np.all(s.step(k) <= typical)]
    return gains, settled


@pytest.mark.parametrize("bits,kind", [(b, k) for b in (2, 3, 4, 5, 6)
                                        for k in ("normal", "laplace", "t3")
                                        if (b, k) != (2, "t3")])
@pytest.mark.parametrize("scale", ["pow2", "free"])
def test_sqnr_gain_per_term_reaches_the_documented_rate(bits, scale, kind):
    # Enough terms to settle, few enough that float64 evaluation (~300 dB) is no limit.
    # Per-channel scales, the lever for heavy tails: Student-t outliers sit ~40 typical
    # magnitudes out, which 2-bit terms (ratio 2) do not reach within the 8-term limit.
    terms = min(8, max(4, 200 // (6 * bits)))
    fmt = SeriesFormat(bits=bits, terms=terms, scale=scale, per_channel=True)
    rate = 20 * math.log10(fmt.radix)   # 6.02*(b-1) dB (pow2), 20 log10(2^b - 2) dB (free)
    x = sample((1000, 100), True, np.random.default_rng(bits), kind)
    gains, settled = settled_gains(x, fmt)
    assert np.all(gains > 0)
    assert settled, gains
    assert np.all(np.array(settled) >= rate - 0.3), (gains, rate)


def test_unsigned_rate_is_b_bits_per_term():
    fmt = SeriesFormat(bits=4, terms=5, signed=False, per_channel=True)
    x = sample((1000, 100), False, np.random.default_rng(3))
    gains, settled = settled_gains(x, fmt)
    assert np.all(gains > 0) and len(settled) >= 2
    assert np.all(np.array(settled) >= 20 * math.log10(16) - 0.3), gains


def test_prefix_of_a_series_is_the_shorter_expansion():
    x = np.random.default_rng(1).standard_normal((8, 33)).astype(np.float32)
    for signed in (True, False):
        xs = x if signed else np.abs(x)
        long = expand(xs, SeriesFormat(bits=3, terms=5, signed=signed, per_channel=True))
        for k in range(1, 6):
            short = expand(xs, SeriesFormat(bits=3, terms=k, signed=signed, per_channel=True))
            np.testing.assert_array_equal(long.truncate(k).digits, short.digits)
            np.testing.assert_array_equal(long.truncate(k).reconstruct(), short.reconstruct())


@pytest.mark.parametrize("scale", ["pow2", "free"])
def test_combined_integer_and_exponent(scale):
    fmt = SeriesFormat(bits=4, terms=3, scale=scale, per_channel=True)
    x = np.random.default_rng(2).standard_normal((4, 50)).astype(np.float32)
    s = expand(x, fmt)
    n = s.combined()
    expected = sum(int(m) * s.digits[k].astype(np.int64) for k, m in enumerate(fmt.lane_weights))
    np.testing.assert_array_equal(n, expected)
    np.testing.assert_allclose(s.unit * n, s.reconstruct(), rtol=1e-15, atol=0)
    if scale == "pow2":
        assert s.exponent == 6
        np.testing.assert_array_equal(s.unit, np.ldexp(s.scale, -6))
    else:
        assert s.exponent is None


def test_per_channel_scales_follow_the_axis():
    x = np.random.default_rng(4).standard_normal((3, 5, 7)).astype(np.float32)
    x[:, 2, :] *= 100
    for axis in (0, 1, 2, -1):
        s = expand(x, SeriesFormat(per_channel=True, terms=2), axis=axis)
        ax = axis % 3
        assert s.scale.shape == tuple(x.shape[ax] if i == ax else 1 for i in range(3))
        np.testing.assert_allclose(s.channel_scales,
                                   np.max(np.abs(np.moveaxis(x, ax, 0)).reshape(x.shape[ax], -1),
                                          axis=1) / 7)
        assert s.digits.shape == (2,) + x.shape
        assert np.all(np.abs(x - s.reconstruct()) <= s.error_bound() * (1 + 1e-12))
    with pytest.raises(InputError, match="channel axis 3 out of range"):
        expand(x, SeriesFormat(per_channel=True), axis=3)


def test_zero_tensor_zero_channel_and_single_element():
    z = expand(np.zeros((4, 4)), SeriesFormat(terms=3))
    assert not z.digits.any() and float(z.scale) == 0 and not z.reconstruct().any()
    x = np.ones((3, 4), dtype=np.float32)
    x[1] = 0
    s = expand(x, SeriesFormat(per_channel=True))
    assert not s.digits[:, 1].any() and s.channel_scales[1] == 0
    np.testing.assert_array_equal(s.reconstruct(), x)
    one = expand(np.float32(-2.5), SeriesFormat(bits=2, terms=2))
    assert one.digits.tolist() == [-1, 0] and one.reconstruct() == -2.5


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_refused(bad):
    x = np.ones(10, dtype=np.float32)
    x[3] = bad
    with pytest.raises(InputError, match=r"w: 1 NaN or Inf value"):
        expand(x, SeriesFormat(), name="w")


def test_other_bad_inputs():
    with pytest.raises(InputError, match="empty tensor"):
        expand(np.zeros((0, 3)), SeriesFormat())
    with pytest.raises(InputError, match="unsigned format needs values >= 0, minimum is -1"):
        expand(np.array([1.0, -1.0]), SeriesFormat(signed=False))
    with pytest.raises(InputError, match="expected a real tensor"):
        expand(np.array(["a"]), SeriesFormat())


@given(hnp.arrays(np.float32, hnp.array_shapes(max_dims=3, max_side=6),
                  elements=st.floats(-1e6, 1e6, width=32)),
       st.sampled_from(FORMATS))
def test_bound_property(x, fmt):
    if not fmt.signed:
        x = np.abs(x)
    s = expand(x, fmt)
    slack = 8 * np.finfo(np.float64).eps * float(np.max(np.abs(x), initial=0))
    for k in range(1, fmt.terms + 1):
        assert np.all(np.abs(x - s.reconstruct(k)) <= s.error_bound(k) + slack)


@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_split_integer_inverts_the_combined_form(fmt):
    lo, hi = fmt.combined_range
    xs = np.unique(np.linspace(lo, hi, 5000).round().astype(np.int64))
    d = split_integer(xs, fmt)
    assert d.min() >= fmt.qmin and d.max() <= fmt.qmax
    np.testing.assert_array_equal(np.tensordot(np.array(fmt.lane_weights), d, 1), xs)
    # the same residual series as expand, in exact arithmetic with s_T = 1
    m1 = fmt.lane_weights[0]
    for i in range(0, xs.size, max(1, xs.size // 400)):
        assert d[:, i].tolist() == digits_of(Fraction(int(xs[i]), m1), fmt), xs[i]
    with pytest.raises(InputError, match="leave the combined range"):
        split_integer(np.array([hi + 1]), fmt)
