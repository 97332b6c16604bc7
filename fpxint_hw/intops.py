"""Integer primitives: the one place that defines rounding, saturation and widths.

Every other part of the toolkit (series expansion, the golden model, the Numba simulator and
the RTL generators) follows these definitions. All functions accept Python ints and numpy
integer arrays; array results keep the input dtype.

Examples
--------
>>> round_shift(5, 1)          # 2.5 -> 2 (ties to even)
2
>>> round_shift(5, 1, "half_up")
3
>>> clamp(300, 8)
127
>>> width_for_interval(-128, 127)
8
>>> accumulator_width(64, 4, 4)    # 64 products of narrow-range signed 4-bit operands
13
"""

from __future__ import annotations

import numbers

import numpy as np

from .errors import WidthError

__all__ = [
    "ROUNDING_MODES",
    "round_shift",
    "round_div",
    "round_shift_bound",
    "clamp",
    "int_range",
    "width_for_interval",
    "product_interval",
    "dot_interval",
    "odd_part",
    "acc_intervals",
    "accumulator_width",
    "check_width",
]

#: Rounding modes of :func:`round_shift`: ``"rne"`` rounds ties to even (ONNX QuantizeLinear,
#: QLinearConv), ``"half_up"`` rounds ties towards +infinity (TOSA, free in hardware).
ROUNDING_MODES = ("rne", "half_up")


def _check_shift(n):
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, numbers.Integral) or n < 0:
        raise ValueError(f"round_shift: shift n must be an integer >= 0, got {n!r}")
    return int(n)


def _check_mode(mode):
    if mode not in ROUNDING_MODES:
        raise ValueError(f"round_shift: mode must be one of {ROUNDING_MODES}, got {mode!r}")


def _round_shift_int(x: int, n: int, mode: str) -> int:
    if n == 0:
        return x
    q = x >> n                      # floor(x / 2^n), exact for Python ints
    rem = x - (q << n)              # 0 <= rem < 2^n
    half = 1 << (n - 1)
    if rem > half or (rem == half and (mode == "half_up" or q & 1)):
        q += 1
    return q


def round_shift(x, n, mode: str = "rne"):
    """Round ``x / 2**n`` to an integer, exactly.

    Parameters
    ----------
    x : int or numpy integer array
        Value(s) to shift; any magnitude for Python ints, the dtype's range for arrays.
    n : int
        Right shift, ``n >= 0``. ``n = 0`` returns ``x`` unchanged; any ``n`` beyond the
        width of ``x`` is allowed (the result is then 0 or -1).
    mode : {"rne", "half_up"}
        ``"rne"``: ties to even (default). ``"half_up"``: ties towards +infinity.

    Returns
    -------
    int or numpy array of the same dtype as ``x``.
    """
    n = _check_shift(n)
    _check_mode(mode)
    if isinstance(x, (bool, np.bool_)):
        raise TypeError(f"round_shift: x must be an integer, got {x!r}")
    if isinstance(x, numbers.Integral):
        return type(x)(_round_shift_int(int(x), n, mode)) if isinstance(x, np.integer) \
            else _round_shift_int(x, n, mode)
    arr = np.asarray(x)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"round_shift: x must have an integer dtype, got {arr.dtype}")
    if n == 0:
        return arr.copy()
    bits = arr.dtype.itemsize * 8
    if n >= bits - 1:
        # Shifts this wide leave |x / 2^n| <= 1: compute on Python ints, keep the dtype.
        flat = [_round_shift_int(int(v), n, mode) for v in arr.ravel()]
        return np.array(flat, dtype=arr.dtype).reshape(arr.shape)
    q = arr >> n
    rem = arr - (q << n)
    half = arr.dtype.type(1 << (n - 1))
    if mode == "half_up":
        up = rem >= half
    else:
        up = (rem > half) | ((rem == half) & ((q & 1) == 1))
    return q + up.astype(arr.dtype)


def round_shift_bound(bound: int, n: int) -> int:
    """A bound of ``|round_shift(x, n)|`` over ``|x| <= bound`` (either rounding mode):
    ``ceil(bound / 2^n)``, at most one above the largest such value; exact integer
    arithmetic, for Python ints ``bound >= 0``, ``0 <= n``."""
    return -(-int(bound) >> int(n))


def round_div(x, d: int, mode: str = "rne"):
    """Round ``x / d`` to an integer exactly, for a positive integer divisor ``d``.

    ``mode`` is ``"rne"`` (ties to even), ``"half_up"`` (ties towards +infinity) or
    ``"floor"``. Accepts Python ints and numpy integer arrays (same dtype out); for a
    power-of-two ``d`` it equals :func:`round_shift` (the rounding modes it shares).
    """
    if isinstance(d, bool) or not isinstance(d, numbers.Integral) or d < 1:
        raise ValueError(f"round_div: divisor d must be an integer >= 1, got {d!r}")
    if mode not in ROUNDING_MODES + ("floor",):
        raise ValueError(f"round_div: mode must be rne, half_up or floor, got {mode!r}")
    d = int(d)
    scalar = isinstance(x, numbers.Integral)
    arr = x if scalar else np.asarray(x)
    q = arr // d
    if mode == "floor":
        return q
    rem2 = 2 * (arr - q * d)            # compare 2*rem with d: no fractions needed
    if scalar:
        up = rem2 > d or (rem2 == d and (mode == "half_up" or q & 1))
        return type(x)(q + int(up))
    up = (rem2 > d) | ((rem2 == d) & ((mode == "half_up") | ((q & 1) == 1)))
    return q + up.astype(arr.dtype)


def int_range(bits: int, signed: bool = True, narrow: bool = False) -> tuple[int, int]:
    """Inclusive integer range ``(lo, hi)`` of a ``bits``-wide format.

    ``narrow`` (signed only) drops the most negative value so that the range is symmetric:
    ``[-(2^(b-1) - 1), 2^(b-1) - 1]``, the range of signed series terms.
    """
    if isinstance(bits, bool) or not isinstance(bits, numbers.Integral) or bits < 1:
        raise ValueError(f"int_range: bits must be an integer >= 1, got {bits!r}")
    bits = int(bits)
    if not signed:
        return 0, (1 << bits) - 1
    hi = (1 << (bits - 1)) - 1
    return (-hi if narrow else -hi - 1), hi


def clamp(x, bits: int, signed: bool = True, narrow: bool = False):
    """Saturate ``x`` to the range of a ``bits``-wide integer (see :func:`int_range`)."""
    lo, hi = int_range(bits, signed, narrow)
    if isinstance(x, numbers.Integral) and not isinstance(x, np.integer):
        return min(max(x, lo), hi)
    arr = np.asarray(x)
    info = np.iinfo(arr.dtype)
    return np.clip(arr, max(lo, info.min), min(hi, info.max)).astype(arr.dtype)


def width_for_interval(lo: int, hi: int, signed: bool | None = None) -> int:
    """Smallest two's-complement width (bits) holding every integer in ``[lo, hi]``.

    With ``signed=None`` an interval with ``lo >= 0`` is given an unsigned width and any other
    a signed one; ``signed=True`` forces a signed width (a sign bit even for ``lo >= 0``).
    The empty-magnitude interval ``[0, 0]`` needs 1 bit.
    """
    lo, hi = int(lo), int(hi)
    if lo > hi:
        raise ValueError(f"width_for_interval: empty interval [{lo}, {hi}]")
    if signed is None:
        signed = lo < 0
    if not signed:
        if lo < 0:
            raise ValueError(f"width_for_interval: unsigned width for negative lo={lo}")
        return max(1, hi.bit_length())
    # signed b bits hold [-2^(b-1), 2^(b-1) - 1]
    return 1 + max(hi.bit_length() if hi > 0 else 0, (-lo - 1).bit_length() if lo < 0 else 0)


def product_interval(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    """Interval of ``x * y`` for ``x`` in ``a`` and ``y`` in ``b`` (inclusive integer bounds)."""
    corners = [a[0] * b[0], a[0] * b[1], a[1] * b[0], a[1] * b[1]]
    return min(corners), max(corners)


def odd_part(c: int) -> tuple[int, int]:
    """``(odd, shift)`` with ``c == odd << shift`` and ``odd`` odd, for an integer ``c != 0``."""
    if c == 0:
        raise ValueError("odd_part: 0 has no odd part")
    shift = (c & -c).bit_length() - 1
    return c >> shift, shift


def dot_interval(k: int, a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    """Interval of a sum of ``k`` products ``x_i * y_i`` with ``x_i`` in ``a``, ``y_i`` in ``b``."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"dot_interval: k must be an integer >= 1, got {k!r}")
    lo, hi = product_interval(a, b)
    return int(k) * lo, int(k) * hi


def acc_intervals(weights, lo: int, hi: int, bias=None) -> tuple[list[int], list[int]]:
    """Per output channel, the tight interval of ``sum_i w[c, i] x_i + bias[c]`` over every
    input ``x_i`` in ``[lo, hi]`` (``lo <= 0 <= hi``): ``(mins, maxes)`` as Python ints.

    ``weights`` is an integer array ``(O, ...)`` (the reduction axes flattened). Each product
    lies in ``[min(w lo, w hi), max(w lo, w hi)]``, an interval holding 0, so every partial
    sum over a subset of the reduction (a chained pass of the array) lies inside it too.
    """
    w = np.asarray(weights)
    w = w.reshape(w.shape[0], -1)
    wmax = int(np.abs(w).max()) if w.size else 0
    exact64 = wmax * max(abs(int(lo)), abs(int(hi))) * max(1, w.shape[1]) < (1 << 62)
    w = w.astype(np.int64 if exact64 else object)
    a, b = w * int(lo), w * int(hi)
    mins = [int(v) for v in np.minimum(a, b).sum(axis=1)]
    maxes = [int(v) for v in np.maximum(a, b).sum(axis=1)]
    if bias is not None:
        bias = [int(v) for v in np.asarray(bias).ravel()]
        mins = [v + c for v, c in zip(mins, bias)]
        maxes = [v + c for v, c in zip(maxes, bias)]
    return mins, maxes


def accumulator_width(k: int, a_bits: int, b_bits: int, a_signed: bool = True,
                      b_signed: bool = True, narrow: bool = True) -> int:
    """Signed width (bits) that holds any sum of ``k`` products of the given operand formats.

    ``narrow`` applies to signed operands (the symmetric range of series terms). The result
    is exact: some choice of operands needs every bit of it.
    """
    a = int_range(a_bits, a_signed, narrow and a_signed)
    b = int_range(b_bits, b_signed, narrow and b_signed)
    return width_for_interval(*dot_interval(k, a, b), signed=True)


def check_width(lo: int, hi: int, bits: int, what: str) -> None:
    """Raise :class:`WidthError` unless the signed interval ``[lo, hi]`` fits ``bits``.

    ``what`` names the quantity (layer, node) for the message.
    """
    need = width_for_interval(lo, hi, signed=True)
    if need > bits:
        raise WidthError(
            f"{what}: values in [{lo}, {hi}] need {need} signed bits, only {bits} available; "
            "use fewer terms or bits, or a wider accumulator")
