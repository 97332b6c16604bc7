"""The per-column output unit: bias, multiplier ``M0``, rounding shift, clamp, split into terms.

Exactly :func:`fpxint_hw.golden.requantize` followed by
:func:`fpxint_hw.series.split_integer`, in four registered stages::

    acc_in --(+ bias)--[acc]--(* M0)--[prod]--(round_shift, + zero_point, clamp)--[out]
        --(split into out_terms digits)--[digits]

The accumulator and the output travel along with the later stages, so every output beat
carries ``acc`` (exact, bias included), ``out`` and ``digits`` of one vector.

Rounding (fixed by :attr:`ArraySpec.rounding`): with ``q = prod >> s``, the guard bit
``g = prod[s-1]`` and the sticky bit ``t = OR(prod[s-2:0])``, the result is ``q + 1`` when
``g and (t or half-up or q odd)`` (``q`` odd: round half to even); ``s = 0`` never rounds.
Shifts wider than the product give the same result as a shift by its width (0), so the
shift is saturated there. The zero point and the clamp work on the low ``out_width + 3``
bits of ``q``; a ``q`` outside that range saturates directly to ``lo`` or ``hi``.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..spec import ArraySpec
from . import layouts
from .split import split_terms

__all__ = ["OutputUnit", "round_parts", "round_shift_hw"]


def round_parts(m: Module, x, shift, width: int, mode: str, name: str = "rs"):
    """``(q, up)`` with ``round_shift(x, shift, mode) == q + up`` for a signed ``width``-bit
    ``x`` and a runtime ``shift``: ``q = x >> s`` and the round-up bit from the guard bit
    (bit ``s - 1``) and the sticky bit (OR of the bits below it), without comparators.
    """
    s = Signal(range(width + 1), name=f"{name}_s")
    m.d.comb += s.eq(Mux(shift > width, width, shift))
    q = Signal(signed(width), name=f"{name}_q")
    m.d.comb += q.eq(x >> s)
    cut = Signal(range(width + 1), name=f"{name}_cut")          # s - 1 (unused when s = 0)
    m.d.comb += cut.eq(s - 1)
    guard = Signal(name=f"{name}_guard")
    m.d.comb += guard.eq((s != 0) & x.as_unsigned().bit_select(cut, 1))
    below = Cat(*(s > i + 1 for i in range(width)))      # bits below the guard bit
    sticky = Signal(name=f"{name}_sticky")
    m.d.comb += sticky.eq((x.as_unsigned() & below) != 0)
    up = Signal(name=f"{name}_up")
    m.d.comb += up.eq(guard & (sticky | (1 if mode == "half_up" else q[0])))
    return q, up


def round_shift_hw(m: Module, x, shift, width: int, mode: str, name: str = "rs"):
    """``round_shift(x, shift, mode)`` for a signed ``width``-bit ``x`` and a runtime shift.

    Returns a ``signed(width)`` signal (combinational).
    """
    q, up = round_parts(m, x, shift, width, mode, name)
    r = Signal(signed(width), name=f"{name}_r")
    m.d.comb += r.eq(q + up)
    return r


class OutputUnit(wiring.Component):
    """Requantization and split of one column, :attr:`ArraySpec.out_stages` cycles deep.

    Parameters
    ----------
    spec : ArraySpec

    Members
    -------
    acc_in : In(signed(acc_width))
        The column sum from the array (partial sums of earlier passes included).
    bias : In(signed(bias_width))
    m0 : In(unsigned(m0_bits))
    shift : In(unsigned(shift_width))
    zero_point : In(signed(zp_width))
    lo, hi : In(out_shape)
        Clamp range, ``lo <= hi``.
    acc : Out(signed(acc_width))
        ``acc_in + bias``.
    out : Out(out_shape)
        ``clamp(round_shift(acc * m0, shift) + zero_point, lo, hi)``.
    digits : Out(out_terms)
        ``out`` split into the output format's digits.
    """

    def __init__(self, spec: ArraySpec):
        if not isinstance(spec, ArraySpec):
            raise TypeError(f"OutputUnit: spec must be an ArraySpec, got {spec!r}")
        self.spec = spec
        oshape = layouts.out_shape(spec)
        super().__init__({
            "acc_in": In(signed(spec.acc_width)),
            "bias": In(signed(spec.bias_width)),
            "m0": In(unsigned(spec.m0_bits)),
            "shift": In(unsigned(spec.shift_width)),
            "zero_point": In(signed(spec.zp_width)),
            "lo": In(oshape),
            "hi": In(oshape),
            "acc": Out(signed(spec.acc_width)),
            "out": Out(oshape),
            "digits": Out(layouts.out_terms(spec)),
        })

    def elaborate(self, platform):
        spec = self.spec
        m = Module()
        oshape = layouts.out_shape(spec)
        pw = spec.product_width

        acc1 = Signal(signed(spec.acc_width), name="acc1")
        m.d.sync += acc1.eq(self.acc_in + self.bias)

        prod = Signal(signed(pw), name="prod")
        acc2 = Signal(signed(spec.acc_width), name="acc2")
        m.d.sync += [prod.eq(acc1 * self.m0), acc2.eq(acc1)]

        # Saturate early: a shifted value that does not fit `narrow` bits lies beyond every
        # clamp bound even after the round-up bit and the zero point are added, so only
        # `narrow`-bit adders and comparators are needed (short carry chains).
        q, up = round_parts(m, prod, self.shift, pw, spec.rounding)
        narrow = min(pw, spec.out_width + 3)
        high = q[narrow - 1:]
        fits = (high == 0) | (high == (1 << len(high)) - 1)
        total = Signal(signed(narrow + 2), name="total")
        m.d.comb += total.eq(q[:narrow].as_signed() + up + self.zero_point)
        clamped = Mux(total < self.lo, self.lo, Mux(total > self.hi, self.hi, total))
        out3 = Signal(oshape, name="out3")
        acc3 = Signal(signed(spec.acc_width), name="acc3")
        m.d.sync += [
            out3.eq(Mux(fits, clamped, Mux(q[-1], self.lo, self.hi))),
            acc3.eq(acc2),
        ]

        digits = split_terms(m, out3, spec.out_range, spec.out_fmt, "split")
        m.d.sync += [self.out.eq(out3), self.acc.eq(acc3)]
        m.d.sync += [self.digits[k].eq(d) for k, d in enumerate(digits)]
        return m
