"""Split an output integer into the digits of a series format, in combinational logic.

Hardware form of :func:`fpxint_hw.series.split_integer`: for each term k with lane weight
``m_k`` (largest first), ``q_k = clamp(round(rem / m_k), qmin, qmax)`` and
``rem -= q_k * m_k``; rounding is half-to-even for signed formats and floor for unsigned
ones. Unsigned power-of-two formats are bit slices. Any other format (signed, or free-mode
weights) whose input interval holds at most :data:`TABLE_MAX` values is a lookup table
filled from ``split_integer``: a few LUT levels, where the arithmetic below chains a
division, a rounding and a remainder per term (about 35 carry cells for free-mode W4x2).
Wider inputs use that arithmetic: division by a constant with a multiply-by-reciprocal that
is exact over the value's static interval.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Module, Mux, Signal, Value

from ..series import split_integer
from ..spec import SeriesFormat
from .layouts import shape_for_interval

__all__ = ["TABLE_MAX", "split_terms", "floor_div_const", "magic"]

#: Largest input interval (number of values) split by a lookup table.
TABLE_MAX = 1024


def magic(lo: int, hi: int, d: int) -> tuple[int, int, int]:
    """Constants ``(offset, mult, shift)`` with ``floor(x / d) == ((x + offset) * mult >> shift)
    - offset // d`` for every integer x in ``[lo, hi]`` (``d >= 1``, ``offset`` a multiple of d).

    With ``n = x + offset`` in ``[0, 2^N)``, ``shift = N + ceil(log2 d)`` and
    ``mult = ceil(2^shift / d)`` the error of the product stays below ``1/d``.
    """
    if d < 1 or lo > hi:
        raise ValueError(f"magic: need d >= 1 and lo <= hi, got d={d}, [{lo}, {hi}]")
    offset = d * (-(lo // d)) if lo < 0 else 0
    n_bits = max(1, (hi + offset).bit_length())
    shift = n_bits + (d - 1).bit_length()
    mult = -(-(1 << shift) // d)
    return offset, mult, shift


def floor_div_const(m: Module, x: Value, rng: tuple[int, int], d: int, name: str):
    """``floor(x / d)`` for a constant ``d >= 1`` and ``x`` in ``rng``; returns (value, range)."""
    lo, hi = rng
    qrng = (lo // d, hi // d)
    q = Signal(shape_for_interval(*qrng), name=name)
    if d & (d - 1) == 0:
        m.d.comb += q.eq(x >> (d.bit_length() - 1))
        return q, qrng
    offset, mult, shift = magic(lo, hi, d)
    n = Signal(shape_for_interval(lo + offset, hi + offset), name=f"{name}_n")
    m.d.comb += [n.eq(x + offset), q.eq(((n * mult) >> shift) - offset // d)]
    return q, qrng


def _digit_shape(fmt: SeriesFormat):
    return shape_for_interval(fmt.qmin, fmt.qmax) if fmt.signed \
        else shape_for_interval(0, fmt.qmax)


def _split_table(m: Module, x: Value, rng: tuple[int, int], fmt: SeriesFormat,
                 name: str) -> list[Value]:
    """The digits of every ``x`` in ``rng``, looked up by ``x``'s bit pattern (no adder in
    front of the table)."""
    lo, hi = rng
    table = split_integer(np.arange(lo, hi + 1), fmt)
    digits = [Signal(_digit_shape(fmt), name=f"{name}{k}") for k in range(fmt.terms)]
    bits = (1 << len(x)) - 1
    with m.Switch(x.as_unsigned()):
        for i, v in enumerate(range(lo, hi + 1)):
            with m.Case(v & bits):
                m.d.comb += [d.eq(int(table[k, i])) for k, d in enumerate(digits)]
    return digits


def split_terms(m: Module, x: Value, rng: tuple[int, int], fmt: SeriesFormat,
                name: str = "split", table_max: int = TABLE_MAX) -> list[Value]:
    """The ``fmt.terms`` digits of ``x`` (``x`` in ``rng``), as combinational signals; a
    lookup table when the format is not plain bit slices and ``rng`` holds at most
    ``table_max`` values."""
    slices = not fmt.signed and all(mk & (mk - 1) == 0 for mk in fmt.lane_weights)
    if not slices and rng[1] - rng[0] + 1 <= table_max:
        return _split_table(m, x, rng, fmt, name)
    rem, rrng = x, rng
    digits = []
    for k, mk in enumerate(fmt.lane_weights):
        q0, qrng = floor_div_const(m, rem, rrng, mk, f"{name}{k}_q")
        if fmt.signed and mk > 1:
            r = Signal(shape_for_interval(0, mk - 1), name=f"{name}{k}_r")
            m.d.comb += r.eq(rem - q0 * mk)
            twice = r * 2
            up = (twice > mk) | ((twice == mk) & q0[0])
            q1 = Signal(shape_for_interval(qrng[0], qrng[1] + 1), name=f"{name}{k}_rnd")
            m.d.comb += q1.eq(q0 + up)
            q0, qrng = q1, (qrng[0], qrng[1] + 1)
        digit = Signal(_digit_shape(fmt), name=f"{name}{k}")
        m.d.comb += digit.eq(Mux(q0 < fmt.qmin, fmt.qmin, Mux(q0 > fmt.qmax, fmt.qmax, q0)))
        digits.append(digit)
        nrng = (rrng[0] - fmt.qmax * mk, rrng[1] - fmt.qmin * mk)
        nrem = Signal(shape_for_interval(*nrng), name=f"{name}{k}_rem")
        m.d.comb += nrem.eq(rem - digit * mk)
        rem, rrng = nrem, nrng
    return digits
