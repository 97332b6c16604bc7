"""The processing element: one stationary weight, ``w_terms x a_terms`` basis lanes.

Dataflow (one cycle per arrow, registers marked ``[]``)::

    w_in --[w]--> w_out            (weights shift down the column while w_load is high)
    a_in --[a]--> a_out            (activation digits move one PE to the right per cycle)
    a_in x w --> lane products --[mult_reg]--> weighted (shift / constant) --> adder tree
         (tree_reg: a register after every level) --> + psum_in --[psum]--> psum_out

The activation travels as one kept copy per weight term (``act_copies``): copy k feeds only
weight term k's products and the next PE's copy k, so no register fans out into a whole
PE's digit-product selects (which made the route from a first-column PE's skew register
set the clock for some placements).

With ``combine: column`` there is no tree: each lane keeps its own partial sum
(``psum_out.l<lane> = psum_in.l<lane> + product``) and the column bottom combines them.
A lane whose ``mask`` bit is 0 contributes 0. Timing: the products of the activation that
arrives at cycle t are added to the ``psum_in`` of cycle ``t + pe_stages - 1`` and appear at
``psum_out`` in cycle ``t + pe_stages`` (:func:`pe_stages`). An activation may
arrive from the second cycle after the last ``w_load`` on (the weight multiples follow the
weight register a cycle later); the accelerator top never sends one sooner.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..intops import int_range, odd_part, product_interval
from ..spec import ArraySpec
from . import layouts
from .layouts import shape_for_interval
from .pipe import KEEP
from .tree import adder_tree, levels, weighted

__all__ = ["PSUM_STAGES", "tree_terms", "tree_levels", "pe_stages", "ProcessingElement"]

#: The partial-sum register ``psum_out`` (every PE has it).
PSUM_STAGES = 1


def tree_terms(spec: ArraySpec) -> int:
    """Terms of the PE's adder tree (``combine: pe``): one per lane and activation slice
    (:attr:`ArraySpec.act_slices`); 0 with ``combine: column`` (no tree in the PE)."""
    return spec.lanes * len(spec.act_slices) if spec.combine == "pe" else 0


def tree_levels(spec: ArraySpec) -> int:
    """Adder levels of the PE's tree (:func:`~fpxint_hw.hw.tree.levels` of
    :func:`tree_terms`; 0 with ``combine: column``): register stages (cycles) with
    ``tree_reg``, combinational levels without."""
    return levels(tree_terms(spec)) if spec.combine == "pe" else 0


def pe_stages(spec: ArraySpec) -> int:
    """Cycles from a PE's activation input to its registered partial sum: the ``psum_out``
    register, the product registers (``mult_reg``) and, with ``tree_reg``, one register per
    tree level."""
    return PSUM_STAGES + int(spec.mult_reg) + (tree_levels(spec) if spec.tree_reg else 0)


def _inclusive(width: int, is_signed: bool) -> tuple[int, int]:
    """``range()`` bounds of the values of a ``width``-bit slice."""
    lo, hi = int_range(width, is_signed)
    return lo, hi + 1


class ProcessingElement(wiring.Component):
    """Weight-stationary PE with parallel basis lanes.

    Parameters
    ----------
    spec : ArraySpec

    Members
    -------
    w_load : In(1)
        Load ``w_in`` into the weight registers this cycle.
    w_in : In(weight_terms)
        Weight digits from the PE above (or the load port in row 0).
    w_out : Out(weight_terms)
        This PE's weight registers (to the PE below).
    mask : In(lanes)
        Lane enables of ``a_in`` (they travel with the activation), bit
        ``l = k * a_terms + j``.
    mask_out : Out(lanes)
        ``mask`` one cycle later (to the right, with ``a_out``).
    a_in : In(act_copies)
        Activation digits from the left, one copy per weight term (all equal).
    a_out : Out(act_copies)
        ``a_in`` one cycle later (to the right), each copy in its own kept register.
    psum_in : In(psum_layout)
        Partial sum from above.
    psum_out : Out(psum_layout)
        Registered partial sum including this PE's lanes.
    weight_multiples : dict[(int, int), Signal]
        ``(k, o)``: register holding ``o`` times weight digit ``k`` (one cycle after the
        weight register), for the odd factors ``o`` other than 1 that a 1- or 2-bit
        activation slice can take (:attr:`ArraySpec.weight_multiples`).
    """

    def __init__(self, spec: ArraySpec):
        if not isinstance(spec, ArraySpec):
            raise TypeError(f"ProcessingElement: spec must be an ArraySpec, got {spec!r}")
        self.spec = spec
        self.weight_multiples = {
            (k, o): Signal(shape_for_interval(*product_interval(spec.w_fmt.digit_range, (o, o))),
                           name=f"w{k}_x{o}".replace("-", "m"))
            for k in range(spec.w_terms) for o in spec.weight_multiples}
        super().__init__({
            "w_load": In(1),
            "w_in": In(layouts.weight_terms(spec)),
            "w_out": Out(layouts.weight_terms(spec)),
            "mask": In(spec.lanes),
            "mask_out": Out(spec.lanes),
            "a_in": In(layouts.act_copies(spec)),
            "a_out": Out(layouts.act_copies(spec)),
            "psum_in": In(layouts.psum_layout(spec)),
            "psum_out": Out(layouts.psum_layout(spec)),
        })

    def elaborate(self, platform):
        spec = self.spec
        m = Module()

        w = Signal(layouts.weight_terms(spec), name="w")
        with m.If(self.w_load):
            m.d.sync += w.eq(self.w_in)
        a = Signal(layouts.act_copies(spec), name="a", attrs=KEEP)   # copies kept apart
        mask = Signal(spec.lanes, name="mask_r", attrs=KEEP)     # see SystolicArray
        m.d.sync += [a.eq(self.a_in), mask.eq(self.mask)]
        m.d.comb += [self.w_out.eq(w), self.a_out.eq(a), self.mask_out.eq(mask)]

        if spec.combine == "column":
            prange = spec.digit_product_range
            for k in range(spec.w_terms):
                for j in range(spec.a_terms):
                    lane = k * spec.a_terms + j
                    p = self._product(m, w[k] * self.a_in[k][j], prange, lane, f"p{k}_{j}")
                    key = f"l{lane}"
                    m.d.sync += self.psum_out[key].eq(self.psum_in[key] + p)
            return m

        # With tree_reg each activation digit is cut into 1- or 2-bit slices, and a slice
        # times a weight digit is a select among multiples of the weight: no carry chain
        # between the activation and the product register. The tree adds the slices.
        slices = spec.act_slices
        shifts = spec.scale == "pow2"
        for (k, o), reg in self.weight_multiples.items():
            # shifts and one short adder (3w = 2w + w) or a negation (-w), no multiplier
            parts = [w[k].shift_left(i) for i in range(abs(o).bit_length()) if abs(o) >> i & 1]
            total = sum(parts[1:], parts[0])
            m.d.sync += reg.eq(-total if o < 0 else total)
        terms = []
        for k in range(spec.w_terms):
            for j in range(spec.a_terms):
                lane = k * spec.a_terms + j
                for i, (lo, width, sgn) in enumerate(slices):
                    prange = product_interval(spec.w_fmt.digit_range, int_range(width, sgn))
                    piece = self.a_in[k][j][lo:lo + width]
                    if width > 2:             # a whole digit (no tree_reg): a multiplier
                        value = w[k] * (piece.as_signed() if sgn else piece)
                    else:
                        # a case on the slice's raw bits (written as a tree of 2-way muxes,
                        # some three-term arrays crash yosys' ABC9 step)
                        value = Signal(shape_for_interval(*prange), name=f"v{k}_{j}_s{i}")
                        with m.Switch(piece):
                            for c in range(*_inclusive(width, sgn)):
                                with m.Case(c % (1 << width)):
                                    m.d.comb += value.eq(self._multiple(w[k], k, c))
                    name = f"p{k}_{j}" if len(slices) == 1 else f"p{k}_{j}_s{i}"
                    p = self._product(m, value, prange, lane, name)
                    terms.append(weighted(p, prange, spec.lane_weights[lane] << lo, shifts))
        s, _ = adder_tree(m, terms, "tree", registered=spec.tree_reg)
        m.d.sync += self.psum_out.eq(self.psum_in + s)
        return m

    def _multiple(self, wk, k: int, c: int):
        """``c * wk``: a shift of ``wk`` or of its odd-multiple register, or 0."""
        if c == 0:
            return 0
        odd, shift = odd_part(c)
        return (wk if odd == 1 else self.weight_multiples[k, odd]).shift_left(shift)

    def _product(self, m: Module, value, prange, lane: int, name: str):
        """``value`` (a digit product) or 0 when the lane is masked off, registered when
        ``mult_reg``."""
        p = Signal(shape_for_interval(*prange), name=name)
        m.d.comb += p.eq(Mux(self.mask[lane], value, 0))
        if self.spec.mult_reg:
            preg = Signal(p.shape(), name=f"{name}_r")
            m.d.sync += preg.eq(p)
            p = preg
        return p
