"""Lookup tables of the one-input elementwise functions (HardSigmoid, HardSwish, Sigmoid,
LeakyRelu, PRelu, Gelu) and of the softmax's exponential, built once at compile time and
stored in the program.

A table covers the input tensor's whole stored range ``[lo, hi]``: entry ``i`` is the output
integer of input ``q = lo + i``,

    table[i] = clamp(round(f(u_in (q - z_in)) / u_out) + z_out, lo_out, hi_out)

with one rounding (the program's mode: ties to even, or up). HardSigmoid, HardSwish, LeakyRelu
and PRelu are computed exactly: every float32 parameter and float64 unit is a dyadic rational,
so ``f(u_in d) / u_out`` is a ratio of Python integers and its rounding is exact (the table is
the same on every platform). Sigmoid needs ``exp`` and Gelu ``erf``: they are computed in
float64 (numpy ``exp``, Python ``math.erf``), so an entry within an ulp of a rounding tie could
differ between platforms' libm; the engines share the stored table, never recompute it. The
softmax's table (:func:`exp_table`) is ``round(exp(-u d) 2^E)`` in float64 the same way.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from ..errors import WidthError

__all__ = ["MAX_TABLE_ENTRIES", "TABLE_FUNCTIONS", "function_table", "function_values",
           "check_table_size", "exp_table"]

#: Most entries one table may have (one per stored input value): 2^20 int64 entries are
#: 8 MiB; an input of more than 20 bits (e.g. three 8-bit terms) is refused.
MAX_TABLE_ENTRIES = 1 << 20

#: The graph ops lowered to a table.
TABLE_FUNCTIONS = ("hardsigmoid", "hardswish", "sigmoid", "leakyrelu", "prelu", "gelu")

_erf = np.vectorize(math.erf, otypes=[np.float64])


def _gelu(x: np.ndarray) -> np.ndarray:
    """The exact (erf) GELU in float64: ``x (1 + erf(x / sqrt 2)) / 2``."""
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def exp_table(length: int, unit: float, bits: int) -> np.ndarray:
    """``round(exp(-unit d) 2^bits)`` for ``d = 0 .. length - 1`` (int64, float64 ``exp``,
    ties to even): the softmax's exponential of a stored-integer distance below the row's
    maximum. Entry 0 is exactly ``2^bits``; the entries never increase."""
    check_table_size(0, length - 1, "softmax exp table")
    d = np.arange(int(length), dtype=np.float64)
    return np.rint(np.exp(-float(unit) * d) * 2.0 ** int(bits)).astype(np.int64)


def check_table_size(lo: int, hi: int, what: str) -> None:
    """WidthError naming ``what`` unless ``[lo, hi]`` has at most MAX_TABLE_ENTRIES values."""
    n = int(hi) - int(lo) + 1
    if n > MAX_TABLE_ENTRIES:
        raise WidthError(f"{what}: its input holds integers in [{lo}, {hi}], {n:,} values; a "
                         f"lookup table may have at most {MAX_TABLE_ENTRIES:,} (2^20) entries; "
                         f"give the input fewer bits or terms (at most 20 bits)")


def _round_ratio(num: np.ndarray, den: int, mode: str) -> np.ndarray:
    """``num / den`` rounded (``mode`` rne or half_up) for an object array of Python ints and
    an int ``den >= 1``; returns an object array."""
    q = num // den
    rem2 = 2 * (num - q * den)
    if mode == "half_up":
        up = rem2 >= den
    else:
        up = (rem2 > den) | ((rem2 == den) & ((q % 2) == 1))
    return q + up.astype(np.int64).astype(object)


def _clip_obj(v: np.ndarray, lo: int, hi: int) -> np.ndarray:
    return np.minimum(np.maximum(v, lo), hi)


def _exact(fn: str, d: np.ndarray, u_in: Fraction, u_out: Fraction, param, mode: str):
    """``round(f(u_in d) / u_out)`` exactly for the piecewise-polynomial functions."""
    un, ud = u_in.numerator, u_in.denominator
    on, od = u_out.numerator, u_out.denominator
    if fn == "hardsigmoid":
        alpha, beta = param
        a, b = alpha * u_in, beta
        t_den = a.denominator * b.denominator // math.gcd(a.denominator, b.denominator)
        t_num = d * (a.numerator * (t_den // a.denominator)) + b.numerator * (t_den // b.denominator)
        t_num = _clip_obj(t_num, 0, t_den)                   # clip(alpha x + beta, 0, 1)
        return _round_ratio(t_num * od, t_den * on, mode)
    if fn == "hardswish":
        s_num = _clip_obj(d * un + 3 * ud, 0, 6 * ud)        # (x / 6 + 1/2) 6 ud, clipped
        return _round_ratio(d * un * s_num * od, 6 * ud * ud * on, mode)
    if fn in ("leakyrelu", "prelu"):
        slope = param
        neg = np.full(d.shape, slope.numerator, dtype=object)
        neg[d >= 0] = slope.denominator
        return _round_ratio(d * un * neg * od, ud * slope.denominator * on, mode)
    raise ValueError(f"no exact table rule for {fn!r}")


def function_table(fn: str, lo: int, hi: int, zero_in: int, unit_in: float, unit_out: float,
                   zero_out: int, out_lo: int, out_hi: int, mode: str = "rne",
                   param=None) -> np.ndarray:
    """The int64 table of ``fn`` over input integers ``lo .. hi`` (see the module docstring).

    ``param``: ``(alpha, beta)`` for hardsigmoid, the slope for leakyrelu / prelu (floats),
    None otherwise. Raises WidthError for more than MAX_TABLE_ENTRIES entries.
    """
    check_table_size(lo, hi, f"{fn} table")
    d = np.arange(int(lo) - int(zero_in), int(hi) - int(zero_in) + 1, dtype=np.int64)
    if fn in ("sigmoid", "gelu"):
        x = float(unit_in) * d.astype(np.float64)
        v = (1.0 / (1.0 + np.exp(-x)) if fn == "sigmoid" else _gelu(x)) / float(unit_out)
        r = np.rint(v) if mode == "rne" else np.floor(v + 0.5)
        return np.clip(r + zero_out, out_lo, out_hi).astype(np.int64)
    if fn == "hardsigmoid":
        p = (Fraction(float(param[0])), Fraction(float(param[1])))
    elif fn in ("leakyrelu", "prelu"):
        p = Fraction(float(param))
    else:
        p = None
    r = _exact(fn, d.astype(object), Fraction(float(unit_in)), Fraction(float(unit_out)), p,
               mode)
    return _clip_obj(r + int(zero_out), int(out_lo), int(out_hi)).astype(np.int64)


def function_values(fn: str, x: np.ndarray, param=None) -> np.ndarray:
    """``f(x)`` in float64 (for the output's real interval and the table's error)."""
    x = np.asarray(x, dtype=np.float64)
    if fn == "hardsigmoid":
        return np.clip(float(param[0]) * x + float(param[1]), 0.0, 1.0)
    if fn == "hardswish":
        return x * np.clip(x / 6.0 + 0.5, 0.0, 1.0)
    if fn == "sigmoid":
        return 1.0 / (1.0 + np.exp(-x))
    if fn == "gelu":
        return _gelu(x)
    if fn in ("leakyrelu", "prelu"):
        return np.where(x >= 0, x, float(param) * x)
    raise ValueError(f"no table function {fn!r}")
