"""The systolic array: ``rows x cols`` processing elements with input skew and output de-skew.

::

    vec.acts[0] -[in]-------------> PE(0,0) -> PE(0,1) -> ... -> PE(0,cols-1)
    vec.acts[1] -[in]-[1]---------> PE(1,0) -> PE(1,1) -> ...        |
      ...                             |          |                  v
    vec.acts[i] -[in]-[i regs]----> PE(i,0) ->  ...             (psum down)
                                      v          v
                         column j bottom: [combine (column mode)] -[cols-1-j regs]-> acc[j]

    vec.psum[j] -[in]-[j + pe_stages - 1 regs]-> top of column j (partial sum of earlier passes)

The last register of row i's chain (the entry register for row 0) is one kept copy per
weight term (``layouts.act_copies``), as in every PE, so that no register drives a whole
first-column PE.

Row i is delayed by i cycles so that the activation of vector m reaches PE(i, j) in cycle
``c + 1 + i + j`` (c: the cycle ``vec`` is presented) together with the partial sum of the
same vector from PE(i-1, j). Column j therefore finishes ``j`` cycles after column 0, and the
output de-skew delays it by ``cols - 1 - j`` cycles: every ``acc[j]`` of one vector appears
in the same cycle, :func:`array_latency` cycles after ``vec``.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..spec import ArraySpec
from . import layouts
from .pe import ProcessingElement, pe_stages
from .pipe import KEEP, delay
from .tree import adder_tree, weighted

__all__ = ["ENTRY_STAGES", "COMBINE_STAGES", "combine_stages", "array_latency",
           "SystolicArray"]

#: The register stage that samples ``vec`` on entry to the array (the first register of
#: every row's skew chain and of every column's partial-sum chain).
ENTRY_STAGES = 1

#: The registered lane combine at the bottom of each column (``combine: column``).
COMBINE_STAGES = 1


def combine_stages(spec: ArraySpec) -> int:
    """Cycles of the column-bottom lane combine: :data:`COMBINE_STAGES` with
    ``combine: column``, else 0 (the PEs combine their lanes)."""
    return COMBINE_STAGES if spec.combine == "column" else 0


def array_latency(spec: ArraySpec) -> int:
    """Cycles from ``vec`` to its de-skewed column sums ``acc``: the entry register, the
    row skew (``rows - 1``), the last row's PE (:func:`~fpxint_hw.hw.pe.pe_stages`), the
    column combine, and the hop along the row plus the de-skew (``cols - 1``)."""
    return (ENTRY_STAGES + (spec.rows - 1) + pe_stages(spec) + combine_stages(spec)
            + (spec.cols - 1))


class SystolicArray(wiring.Component):
    """The PE grid with skew, weight shift chain, column combine and de-skew.

    Parameters
    ----------
    spec : ArraySpec

    Members
    -------
    load : In(1)
        Shift the weight rows down by one and put ``w_row`` into row 0 (``rows`` loads fill
        the array; the first row sent ends in row ``rows - 1``).
    w_row : In(weight_row)
        Weights of one array row, ``cols`` weights of ``w_terms`` digits.
    mask : In(lanes)
        Lane enables, sampled with ``vec``: they travel with the vector's activations
        through the skew and along the rows, so no net spans the array.
    vec : In(act_vector)
        Activation vector and preloaded partial sums, sampled every cycle.
    acc : Out(ArrayLayout(signed(acc_width), cols))
        Column sums of the vector presented :func:`array_latency` cycles earlier.
    """

    def __init__(self, spec: ArraySpec):
        if not isinstance(spec, ArraySpec):
            raise TypeError(f"SystolicArray: spec must be an ArraySpec, got {spec!r}")
        self.spec = spec
        super().__init__({
            "load": In(1),
            "w_row": In(layouts.weight_row(spec)),
            "mask": In(spec.lanes),
            "vec": In(layouts.act_vector(spec)),
            "acc": Out(data.ArrayLayout(signed(spec.acc_width), spec.cols)),
        })

    def elaborate(self, platform):
        spec = self.spec
        m = Module()
        # Every PE on an anti-diagonal sees the same mask value at the same time: its
        # registers are kept apart, or synthesis merges them into one that drives PEs
        # across the whole array. Each row has its own chain of 1 + row registers, so the
        # one that feeds the row's first PE (its products' sync resets) can sit by it.

        pes = [[ProcessingElement(spec) for _ in range(spec.cols)] for _ in range(spec.rows)]
        for i, row in enumerate(pes):
            for j, pe in enumerate(row):
                m.submodules[f"pe_{i}_{j}"] = pe
                m.d.comb += pe.w_load.eq(self.load)
                m.d.comb += pe.w_in.eq(self.w_row[j] if i == 0 else pes[i - 1][j].w_out)
                if j == 0:
                    acts = self._row_input(m, spec, self.vec.acts[i], i)
                    row_mask = delay(m, self.mask, 1 + i, f"skew_mask{i}", keep=True)
                    m.d.comb += [pe.a_in.eq(acts), pe.mask.eq(row_mask)]
                else:
                    m.d.comb += [pe.a_in.eq(row[j - 1].a_out), pe.mask.eq(row[j - 1].mask_out)]
                if i > 0:
                    m.d.comb += pe.psum_in.eq(pes[i - 1][j].psum_out)

        for j in range(spec.cols):
            top = delay(m, self.vec.psum[j], ENTRY_STAGES + j + pe_stages(spec) - 1,
                        f"skew_col{j}")
            pe0 = pes[0][j]
            if spec.combine == "pe":
                m.d.comb += pe0.psum_in.eq(top)
            else:
                m.d.comb += pe0.psum_in[f"l{spec.unit_lane}"].eq(top)

            bottom = pes[-1][j].psum_out
            if spec.combine == "column":
                bottom = self._combine(m, spec, bottom, j)
            m.d.comb += self.acc[j].eq(delay(m, bottom, spec.cols - 1 - j, f"deskew_col{j}"))
        return m

    @staticmethod
    def _row_input(m: Module, spec: ArraySpec, acts, i: int):
        """Row ``i``'s activation delayed by ``ENTRY_STAGES + i`` registers, the last one a
        kept copy per weight term."""
        last = delay(m, acts, ENTRY_STAGES + i - 1, f"skew_row{i}")
        copies = Signal(layouts.act_copies(spec), name=f"skew_row{i}_copies", attrs=KEEP)
        m.d.sync += [copies[k].eq(last) for k in range(spec.w_terms)]
        return copies

    @staticmethod
    def _combine(m: Module, spec: ArraySpec, lanes, j: int):
        """Weighted sum of one column's lane sums, registered (``combine: column``)."""
        ranges = layouts.psum_ranges(spec)
        terms = []
        for lane, wt in enumerate(spec.lane_weights):
            name = f"l{lane}"
            terms.append(weighted(lanes[name], ranges[name], wt, spec.scale == "pow2"))
        total, _ = adder_tree(m, terms, f"combine{j}")
        # The tree's interval also covers impossible lane combinations; the true sum of a
        # tile with K <= depth lies in acc_range, which acc_width holds.
        acc = Signal(signed(spec.acc_width), name=f"combine{j}_r")
        m.d.sync += acc.eq(total)
        return acc
