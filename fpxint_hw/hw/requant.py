"""The per-column output unit: bias, multiplier ``M0``, rounding shift, clamp, split into terms.

Exactly :func:`fpxint_hw.golden.requantize` followed by
:func:`fpxint_hw.series.split_integer`, pipelined so that no stage holds more than a short
carry chain or about three LUT levels::

    acc_in --(+ bias)--[acc]--(x M0: DSP tiles + adder tree)--[prod] (product_stages)
        --(shift by 16s, sticky bits in groups)--[A]--(shift by 4s, sticky groups)--[B]
        --(shift by 1s, sticky groups)--[C]--(round-up bit, range flags)--[D]
        --(+ round-up + zero point)--[E]
        --(compare with lo, hi)--[F]--(select)--[G]--(split into out_terms digits)--[digits]

The exact accumulator (bias included) travels along, so every output beat carries ``acc``,
``out`` and ``digits`` of one vector.

Rounding (fixed by :attr:`ArraySpec.rounding`): shifting ``x`` with one zero bit appended
below (``2x``) right by ``s`` leaves ``q = x >> s`` above the guard bit ``g = x[s-1]``; the
sticky bit ``t`` is the OR of ``2x``'s bits below ``s``, that is of ``x[s-2:0]``. The result
is ``q + 1`` when ``g and (t or half-up or q odd)`` (``q`` odd: round half to even); ``s = 0``
never rounds. A shift wider than the product gives the same result as a shift by its width,
so it is saturated there. The zero point and the clamp work on the low ``out_width + 3``
bits of ``q``; a ``q`` outside that range saturates directly to ``lo`` or ``hi``.

The configuration inputs (``bias`` .. ``hi``) are per-pass constants: the unit carries them
over :data:`CONST_HOPS` registers (and then registers a decoded copy of the shift: saturated
shift and sticky mask), so they must be stable :data:`CONST_LEAD` cycles before the first
accumulator of a pass arrives.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..spec import MAX_SHIFT, ArraySpec
from . import layouts
from .multiplier import pipelined_product, product_stages
from .pipe import KEEP, delay
from .split import split_terms

__all__ = ["CONST_LEAD", "BIAS_STAGES", "ROUND_STAGES", "ZERO_POINT_STAGES", "CLAMP_STAGES",
           "SPLIT_STAGES", "m0_stages", "out_stages", "OutputUnit", "shift_config",
           "round_stages", "round_shift_hw"]

#: The bias add (register ``acc1``), the first of the unit's stages (:func:`out_stages`).
BIAS_STAGES = 1

#: Bits of the shift amount decoded by one shifter stage: a 4-way select per result bit,
#: one LUT level and a slice mux on ECP5.
SHIFT_STEP = 2

#: Shifter stages of a shift by ``0 .. MAX_SHIFT``.
SHIFT_STEPS = -(-MAX_SHIFT.bit_length() // SHIFT_STEP)

#: Pipeline stages of the rounding shift (:func:`round_stages`): the shifter stages, then
#: the round-up bit and range flags.
ROUND_STAGES = SHIFT_STEPS + 1

#: The zero-point add after the rounding shift (register ``total``).
ZERO_POINT_STAGES = 1

#: The clamp: the compares with ``lo`` and ``hi`` (``below``, ``above``), then the select
#: (``clamped``).
CLAMP_STAGES = 2

#: The output registers (``out``, ``digits``, ``acc``) after the split into terms.
SPLIT_STAGES = 1

#: Register stages of :func:`shift_config`.
SHIFT_DECODE_STAGES = 3

#: Result bits of the rounding shifters per copy of the shift amount.
SHIFT_GROUP = 8

#: Registers between the unit's constant inputs (bias, shift, zero point, clamp range) and
#: their use.
CONST_HOPS = 2

#: Cycles the constant inputs must be stable before the first accumulator of a pass arrives
#: (the bias is added in the first stage; the shift's decode is done before the product is,
#: checked in :class:`OutputUnit`).
CONST_LEAD = CONST_HOPS


def _hold(m: Module, value, name: str, sync: bool):
    """``value`` in a named Signal: registered (``sync``) or combinational."""
    sig = Signal(value.shape(), name=name)
    if sync:
        m.d.sync += sig.eq(value)
    else:
        m.d.comb += sig.eq(value)
    return sig


def shift_config(m: Module, shift, width: int, name: str = "rs", sync: bool = True):
    """``(s, mask)``: the shift (``0 .. MAX_SHIFT``) saturated at ``width`` and the sticky mask
    ``2^s - 1`` over ``width + 1`` bits, decoded once per pass (in
    :data:`SHIFT_DECODE_STAGES` registers when ``sync``; the mask is ready a stage early)."""
    if len(shift) > MAX_SHIFT.bit_length():
        raise ValueError(f"shift_config: shift has {len(shift)} bits, more than the "
                         f"{MAX_SHIFT.bit_length()} that hold 0..{MAX_SHIFT}")
    # Static, but still timed: each of the ~60 mask bits is `shift > i`, so the shift would
    # drive a compare per bit. Stage 1 registers thermometer codes of its 8s and its
    # remainder, stage 2 combines three of their bits per compare, stage 3 saturates s
    # (when saturated, width < shift fits the shift's width).
    eights, rest = shift[3:], shift[:3]
    groups = range(width // 8 + 1)
    shift_d = _hold(m, shift, f"{name}_shift", sync)
    e_gt = _hold(m, Cat(*(eights > k for k in groups)), f"{name}_e_gt", sync)
    e_eq = _hold(m, Cat(*(eights == k for k in groups)), f"{name}_e_eq", sync)
    r_gt = _hold(m, Cat(*(rest > r for r in range(8))), f"{name}_r_gt", sync)

    def greater(i: int):                                       # shift > i
        return e_gt[i // 8] | (e_eq[i // 8] & r_gt[i % 8])

    over = _hold(m, greater(width), f"{name}_over", sync)
    mask = _hold(m, Cat(*(greater(i) for i in range(width)), Const(0, 1)), f"{name}_mask", sync)
    shift_dd = _hold(m, shift_d, f"{name}_shift_d", sync)
    s = _hold(m, Mux(over, width, shift_dd)[:len(shift)], f"{name}_s", sync)
    return s, mask


def _by_groups(m: Module, bits, reduce, name: str, sync: bool):
    """``reduce`` (e.g. ``Value.any``) of each 4 consecutive bits of ``bits``, one bit each:
    a LUT level or two, so a wide reduction can be cut by a register."""
    return _hold(m, Cat(*(reduce(bits[i:i + 4]) for i in range(0, len(bits), 4))), name, sync)


def _shift_by_groups(m: Module, x, amount, step: int, name: str, sync: bool):
    """``x >> (amount << step)`` (``amount`` a per-pass constant), built per group of
    :data:`SHIFT_GROUP` result bits, each with its own kept register copy of ``amount``
    when ``sync``, so that no register drives every bit of a wide shifter."""
    groups = []
    for lo in range(0, len(x), SHIFT_GROUP):
        hi = min(lo + SHIFT_GROUP, len(x))
        if sync:
            amount_g = Signal(amount.shape(), name=f"{name}_amount{lo // SHIFT_GROUP}",
                              attrs=KEEP)
            m.d.sync += amount_g.eq(amount)
        else:
            amount_g = amount
        groups.append((x >> Cat(Const(0, step), amount_g))[lo:hi])
    return _hold(m, Cat(*groups).as_signed(), name, sync)


def round_stages(m: Module, x, s, mask, width: int, narrow: int, mode: str,
                 name: str = "rs", sync: bool = True):
    """Rounding shift of a signed ``width``-bit ``x`` by ``s`` (see :func:`shift_config`), in
    :data:`ROUND_STAGES` register stages when ``sync`` (combinational otherwise).

    Returns ``(low, up, fits, negative)``: the low ``narrow`` bits of ``q = x >> s`` (signed),
    the round-up bit, whether ``q`` fits ``narrow`` bits (logic after the last register, to be
    registered by the caller), and the sign of ``q``; the rounded result is ``q + up``.
    """
    x2 = Cat(Const(0, 1), x).as_signed()                      # 2x: guard bit lands at bit 0
    # the shift by s, SHIFT_STEP bits of s per stage from the top; alongside, the sticky
    # bits under the mask are OR-ed by groups of 4, a LUT level per stage
    shifted, sticky = x2, x2.as_unsigned() & mask
    for k, lo in enumerate(reversed(range(0, SHIFT_STEPS * SHIFT_STEP, SHIFT_STEP))):
        shifted = _shift_by_groups(m, shifted, s[lo:lo + SHIFT_STEP], lo, f"{name}_shift{k}",
                                   sync)
        sticky = _by_groups(m, sticky, Value.any, f"{name}_sticky{k}", sync)
    q = shifted[1:].as_signed()
    guard = shifted[0]
    up = guard & (sticky.any() | (1 if mode == "half_up" else q[0]))
    # q fits `narrow` bits when its high bits are all 0 or all 1: register one flag pair per
    # group of 4 bits here, and combine the flags after the register
    high = q[narrow - 1:]
    zeros = _by_groups(m, high, lambda g: g == 0, f"{name}_zeros", sync)
    ones = _by_groups(m, high, Value.all, f"{name}_ones", sync)
    return (_hold(m, q[:narrow].as_signed(), f"{name}_low", sync),
            _hold(m, up, f"{name}_up", sync),
            zeros.all() | ones.all(),
            _hold(m, q[-1], f"{name}_neg", sync))


def round_shift_hw(m: Module, x, shift, width: int, mode: str, name: str = "rs"):
    """``round_shift(x, shift, mode)`` for a signed ``width``-bit ``x`` and a runtime shift,
    combinational (the logic of the output unit's rounding stages without the registers).

    Returns a ``signed(width)`` signal.
    """
    s, mask = shift_config(m, shift, width, name, sync=False)
    low, up, _, _ = round_stages(m, x, s, mask, width, width, mode, name, sync=False)
    r = Signal(signed(width), name=f"{name}_r")
    m.d.comb += r.eq(low + up)
    return r


def m0_stages(spec: ArraySpec) -> int:
    """Cycles of the unit's ``acc x M0`` product (18x18 DSP tiles, then a registered adder
    tree: :func:`~fpxint_hw.hw.multiplier.product_stages` of a signed ``acc_width`` and an
    unsigned ``m0_bits`` operand)."""
    return product_stages(spec.acc_width, True, spec.m0_bits, False)


def out_stages(spec: ArraySpec) -> int:
    """Cycles of :class:`OutputUnit` from ``acc_in`` to ``acc``/``out``/``digits``: bias add,
    :func:`m0_stages`, the rounding shift (:data:`ROUND_STAGES`), zero point, clamp compares
    and select, output registers after the split."""
    return (BIAS_STAGES + m0_stages(spec) + ROUND_STAGES + ZERO_POINT_STAGES + CLAMP_STAGES
            + SPLIT_STAGES)


class OutputUnit(wiring.Component):
    """Requantization and split of one column, :func:`out_stages` cycles deep.

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

        # The per-pass constants come from registers that may sit far from this unit (which
        # is placed by its DSP blocks); CONST_HOPS registers carry them over, so no adder or
        # compare starts with that long route.
        bias, zero_point, lo, hi, shift = (delay(m, getattr(self, f), CONST_HOPS, f"{f}_hop")
                                           for f in ("bias", "zero_point", "lo", "hi", "shift"))
        acc1 = Signal(signed(spec.acc_width), name="acc1")     # the spec sizes acc + bias
        m.d.sync += acc1.eq(self.acc_in + bias)
        prod = pipelined_product(m, acc1, self.m0, "m0mul", platform)

        # Saturate early: a shifted value that does not fit `narrow` bits lies beyond every
        # clamp bound even after the round-up bit and the zero point are added, so only
        # `narrow`-bit adders and comparators are needed (short carry chains).
        narrow = min(pw, spec.out_width + 3)
        # the shift amounts' copies (a register after the decode) hold the pass's shift when
        # its first product reaches the shifter, BIAS_STAGES + m0_stages cycles after its
        # accumulator
        assert (CONST_HOPS + SHIFT_DECODE_STAGES + 1
                <= CONST_LEAD + BIAS_STAGES + m0_stages(spec)), spec
        s, mask = shift_config(m, shift, pw)
        low, up, fits, neg = round_stages(m, prod, s, mask, pw, narrow, spec.rounding)

        total = _hold(m, low + up + zero_point, "total", True)
        # the two compares, then the select, one stage each; a compare is the sign of an
        # exact difference, the top sum bit of one carry chain with no logic after it
        below = _hold(m, (total - lo)[-1], "below", True)
        above = _hold(m, (hi - total)[-1], "above", True)
        total_d = delay(m, total, 1, "total_d")
        fits_d, neg_d = delay(m, fits, 2, "fits_d"), delay(m, neg, 2, "neg_d")
        low_end = Mux(fits_d, below, neg_d)
        high_end = Mux(fits_d, above, ~neg_d)
        out = _hold(m, Mux(low_end, lo, Mux(high_end, hi, total_d)), "clamped", True)

        digits = split_terms(m, out, spec.out_range, spec.out_fmt, "split")
        # acc1 is the bias stage's register; the output registers follow the delay line
        acc_d = delay(m, acc1, out_stages(spec) - BIAS_STAGES - SPLIT_STAGES, "acc_d")
        m.d.sync += [self.out.eq(out), self.acc.eq(acc_d)]
        m.d.sync += [self.digits[k].eq(d) for k, d in enumerate(digits)]
        return m
