"""A wide multiplier pipelined like FPGA DSP blocks: 18x18 tiles with registers, then a
registered adder tree.

The operands are cut into 18-bit chunks (unsigned low chunks, a signed top chunk for a
signed operand). Every chunk pair is one *tile*: input registers, a product register and an
output register, the register set of a Lattice ECP5 ``MULT18X18D`` with ``REG_INPUTA/B``,
``REG_PIPELINE`` and ``REG_OUTPUT`` enabled, then one fabric register (:data:`TILE_STAGES`
cycles in all). The fabric register puts the route out of the DSP block and the first adder
in different cycles. The tile products, weighted by their chunk offsets, are summed
pairwise with one register per tree level; each adder only spans the bits where its
operands overlap (the low bits of the lower-offset operand pass through), so the carry
chains stay short.

A tile is plain Amaranth arithmetic unless the elaboration platform asks for a vendor
primitive (:class:`DspPrimitives`): ``flow.synth`` elaborates for ECP5 with
``DspPrimitives("ecp5")`` so that yosys keeps the registers inside the DSP blocks (it maps
multipliers to ECP5 DSPs without absorbing registers). Both forms compute the same integer
with the same latency; simulation and Verilator use the plain form.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import ClockSignal, Const, Instance, Module, Signal, Value, signed, unsigned

from ..intops import int_range, product_interval
from .layouts import shape_for_interval

__all__ = ["DSP_BITS", "TILE_STAGES", "DspPrimitives", "chunks", "product_stages",
           "pipelined_product"]

#: Operand bits of one DSP tile.
DSP_BITS = 18

#: Registers from a tile's operands to its product: input, pipeline and output register in
#: the DSP block, one fabric register after it.
TILE_STAGES = 4


@dataclass(frozen=True)
class DspPrimitives:
    """Elaboration platform that selects vendor DSP primitives for the multiplier tiles.

    Members
    -------
    family : {"ecp5"}
    min_bits : int
        A product with an operand narrower than this stays plain arithmetic (the
        synthesizer builds it from LUTs, like ``flow.synth``'s ``lut_mult_below``).
    """

    family: str
    min_bits: int = 10

    def __post_init__(self):
        if self.family != "ecp5":
            raise ValueError(f"DspPrimitives: no DSP primitive for family {self.family!r}")


def chunks(width: int, is_signed: bool) -> list[tuple[int, int, bool]]:
    """``(offset, width, signed)`` of the 18-bit chunks of a ``width``-bit operand, low first;
    only the top chunk of a signed operand is signed."""
    if width < 1:
        raise ValueError(f"chunks: width must be >= 1, got {width}")
    out, off = [], 0
    while off < width:
        w = min(DSP_BITS, width - off)
        out.append((off, w, is_signed and off + w == width))
        off += w
    return out


def _tree_levels(n: int) -> int:
    return (n - 1).bit_length()


def product_stages(a_width: int, a_signed: bool, b_width: int, b_signed: bool) -> int:
    """Cycles from the operands to the product of :func:`pipelined_product`."""
    tiles = len(chunks(a_width, a_signed)) * len(chunks(b_width, b_signed))
    return TILE_STAGES + _tree_levels(tiles)


def _ecp5_tile(m: Module, a: Value, a_signed: bool, b: Value, b_signed: bool,
               p: Signal) -> None:
    """``p = a * b`` in one ``MULT18X18D`` (three registers), then a fabric register."""
    a18 = Signal(signed(18) if a_signed else unsigned(18))
    b18 = Signal(signed(18) if b_signed else unsigned(18))
    p36 = Signal(36)
    m.d.comb += [a18.eq(a), b18.eq(b)]
    ports = {f"i_A{i}": a18[i] for i in range(18)}
    ports.update({f"i_B{i}": b18[i] for i in range(18)})
    ports.update({f"i_C{i}": Const(0, 1) for i in range(18)})
    ports.update({f"o_P{i}": p36[i] for i in range(36)})
    m.submodules += Instance(
        "MULT18X18D",
        p_REG_INPUTA_CLK="CLK0", p_REG_INPUTB_CLK="CLK0", p_REG_PIPELINE_CLK="CLK0",
        p_REG_OUTPUT_CLK="CLK0",
        i_SIGNEDA=int(a_signed), i_SIGNEDB=int(b_signed), i_SOURCEA=0, i_SOURCEB=0,
        i_CLK0=ClockSignal(), i_CE0=1, i_RST0=0, **ports)
    m.d.sync += p.eq(p36.as_signed() if (a_signed or b_signed) else p36)


def _plain_tile(m: Module, a: Value, b: Value, p: Signal, name: str) -> None:
    ar = Signal(a.shape(), name=f"{name}_a")
    br = Signal(b.shape(), name=f"{name}_b")
    pr = Signal(p.shape(), name=f"{name}_m")
    po = Signal(p.shape(), name=f"{name}_o")
    m.d.sync += [ar.eq(a), br.eq(b), pr.eq(ar * br), po.eq(pr), p.eq(po)]


def pipelined_product(m: Module, a: Value, b: Value, name: str, platform=None) -> Signal:
    """``a * b``, :func:`product_stages` cycles later, as a Signal of the exact shape.

    ``a`` and ``b`` are signed or unsigned Values of any width; ``platform`` is the
    elaboration platform (a :class:`DspPrimitives` selects vendor tiles).
    """
    sa, sb = a.shape(), b.shape()
    vendor = (isinstance(platform, DspPrimitives)
              and min(sa.width, sb.width) >= platform.min_bits)
    terms = []                           # (value, offset, (lo, hi)) of each tile product
    for ia, (oa, wa, ga) in enumerate(chunks(sa.width, sa.signed)):
        for ib, (ob, wb, gb) in enumerate(chunks(sb.width, sb.signed)):
            ca = a[oa:oa + wa].as_signed() if ga else a[oa:oa + wa]
            cb = b[ob:ob + wb].as_signed() if gb else b[ob:ob + wb]
            rng = product_interval(int_range(wa, ga), int_range(wb, gb))
            p = Signal(shape_for_interval(*rng), name=f"{name}_t{ia}{ib}")
            if vendor:
                _ecp5_tile(m, ca, ga, cb, gb, p)
            else:
                _plain_tile(m, ca, cb, p, f"{name}_t{ia}{ib}")
            terms.append((p, oa + ob, rng))
    level = 0
    while len(terms) > 1:
        terms.sort(key=lambda t: t[1])
        nxt = []
        for i in range(0, len(terms) - 1, 2):
            (x, ox, rx), (y, oy, ry) = terms[i], terms[i + 1]
            d = oy - ox                  # x's low d bits pass through unchanged
            hi_rng = (rx[0] >> d, rx[1] >> d)
            top = (hi_rng[0] + ry[0], hi_rng[1] + ry[1])
            rng = (rx[0] + (ry[0] << d), rx[1] + (ry[1] << d))
            s_top = Signal(shape_for_interval(*top), name=f"{name}_s{level}_{i // 2}_hi")
            s = Signal(shape_for_interval(*rng), name=f"{name}_s{level}_{i // 2}")
            low = Signal(max(d, 1), name=f"{name}_s{level}_{i // 2}_lo")
            m.d.sync += s_top.eq((x >> d) + y)
            if d:
                m.d.sync += low.eq(x[:d])
                m.d.comb += s.eq((s_top << d) | low)
            else:
                m.d.comb += s.eq(s_top)
            nxt.append((s, ox, rng))
        if len(terms) % 2:
            x, ox, rx = terms[-1]
            r = Signal(x.shape(), name=f"{name}_s{level}_pass")
            m.d.sync += r.eq(x)
            nxt.append((r, ox, rx))
        terms = nxt
        level += 1
    value, offset, _ = terms[0]
    rng = product_interval(int_range(sa.width, sa.signed), int_range(sb.width, sb.signed))
    out = Signal(shape_for_interval(*rng), name=f"{name}_p")
    m.d.comb += out.eq(value << offset)
    return out
