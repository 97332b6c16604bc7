"""The processing element: one stationary weight, ``w_terms x a_terms`` basis lanes.

Dataflow (one cycle per arrow, registers marked ``[]``)::

    w_in --[w]--> w_out            (weights shift down the column while w_load is high)
    a_in --[a]--> a_out            (activation digits move one PE to the right per cycle)
    a_in x w --> lane products --[mult_reg]--> weighted (shift / constant) --> adder tree
         --[tree_reg]--> + psum_in --[psum]--> psum_out

With ``combine: column`` there is no tree: each lane keeps its own partial sum
(``psum_out.l<lane> = psum_in.l<lane> + product``) and the column bottom combines them.
A lane whose ``mask`` bit is 0 contributes 0. Timing: the products of the activation that
arrives at cycle t are added to the ``psum_in`` of cycle ``t + pe_stages - 1`` and appear at
``psum_out`` in cycle ``t + pe_stages`` (:attr:`ArraySpec.pe_stages`).
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..spec import ArraySpec
from . import layouts
from .layouts import shape_for_interval
from .tree import adder_tree, weighted

__all__ = ["ProcessingElement"]


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
        Lane enables, bit ``l = k * a_terms + j``.
    a_in : In(act_terms)
        Activation digits from the left.
    a_out : Out(act_terms)
        ``a_in`` one cycle later (to the right).
    psum_in : In(psum_layout)
        Partial sum from above.
    psum_out : Out(psum_layout)
        Registered partial sum including this PE's lanes.
    """

    def __init__(self, spec: ArraySpec):
        if not isinstance(spec, ArraySpec):
            raise TypeError(f"ProcessingElement: spec must be an ArraySpec, got {spec!r}")
        self.spec = spec
        super().__init__({
            "w_load": In(1),
            "w_in": In(layouts.weight_terms(spec)),
            "w_out": Out(layouts.weight_terms(spec)),
            "mask": In(spec.lanes),
            "a_in": In(layouts.act_terms(spec)),
            "a_out": Out(layouts.act_terms(spec)),
            "psum_in": In(layouts.psum_layout(spec)),
            "psum_out": Out(layouts.psum_layout(spec)),
        })

    def elaborate(self, platform):
        spec = self.spec
        m = Module()

        w = Signal(layouts.weight_terms(spec), name="w")
        with m.If(self.w_load):
            m.d.sync += w.eq(self.w_in)
        a = Signal(layouts.act_terms(spec), name="a")
        m.d.sync += a.eq(self.a_in)
        m.d.comb += [self.w_out.eq(w), self.a_out.eq(a)]

        prange = spec.digit_product_range
        products = []
        for k in range(spec.w_terms):
            for j in range(spec.a_terms):
                lane = k * spec.a_terms + j
                p = Signal(shape_for_interval(*prange), name=f"p{k}_{j}")
                m.d.comb += p.eq(Mux(self.mask[lane], w[k] * self.a_in[j], 0))
                if spec.mult_reg:
                    preg = Signal(p.shape(), name=f"p{k}_{j}_r")
                    m.d.sync += preg.eq(p)
                    p = preg
                products.append(p)

        if spec.combine == "column":
            for lane, p in enumerate(products):
                key = f"l{lane}"
                m.d.sync += self.psum_out[key].eq(self.psum_in[key] + p)
            return m

        shifts = spec.scale == "pow2"
        terms = [weighted(p, prange, wt, shifts) for p, wt in zip(products, spec.lane_weights)]
        s, srange = adder_tree(m, terms, "tree")
        if spec.tree_reg:
            sreg = Signal(shape_for_interval(*srange), name="tree_r")
            m.d.sync += sreg.eq(s)
            s = sreg
        m.d.sync += self.psum_out.eq(self.psum_in + s)
        return m
