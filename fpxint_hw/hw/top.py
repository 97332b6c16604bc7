"""The accelerator top: one GEMM pass per weight load, streams in and out.

::

    w_in  (rows beats) ---> weight shift chain of the SystolicArray
    cfg_in (1 beat) ------> bias, M0, shift, zero point, clamp range, lane mask registers
    a_in  (M beats) ------> SystolicArray ---> OutputUnit x cols ---> o_out (M beats)
                             |__________ valid bit, latency cycles __|

Every register of the datapath (skew, PEs, de-skew, output units and the valid pipeline)
advances only while ``o_out`` can move (``~o_out.valid | o_out.ready``): back-pressure
freezes the whole pipeline, so nothing is lost and no buffer is needed. ``w_in`` and
``cfg_in`` are accepted only while no vector is in flight, and take priority over ``a_in``:
a host presents the next pass's weights once the last vector of the current pass has been
accepted. An accepted vector's result is valid :attr:`ArraySpec.latency` cycles later
(without stalls); results leave in order.
"""

from __future__ import annotations

from amaranth.hdl import Module, Shape, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..spec import ArraySpec
from . import layouts
from .array import SystolicArray
from .fifo import OutputFifo
from .pipe import delay
from .requant import OutputUnit

__all__ = ["Accelerator", "accelerator_signature", "TOP_NAME"]

#: Module name of the exported top in Verilog.
TOP_NAME = "fpxint_array"


def accelerator_signature(spec: ArraySpec) -> wiring.Signature:
    """The port signature of :class:`Accelerator` for ``spec`` (without elaborating it)."""
    return wiring.Signature({
        "w_in": In(stream.Signature(layouts.weight_row(spec))),
        "cfg_in": In(stream.Signature(layouts.config(spec))),
        "a_in": In(stream.Signature(layouts.act_vector(spec))),
        "o_out": Out(stream.Signature(layouts.result(spec))),
        "busy": Out(1),
    })


class _Datapath(wiring.Component):
    """Array, output units and the valid pipeline; it never stalls.

    The per-pass configuration reaches row ``i`` of the array and column ``j`` of the output
    units through ``i + 1`` and ``j + 1`` registers: each copy drives one row or column
    (short nets) and is in place before the first vector of a pass gets there.
    """

    def __init__(self, spec: ArraySpec):
        self.spec = spec
        super().__init__({
            "load": In(1),
            "w_row": In(layouts.weight_row(spec)),
            "cfg": In(layouts.config(spec)),
            "in_valid": In(1),
            "vec": In(layouts.act_vector(spec)),
            "out_valid": Out(1),
            "result": Out(layouts.result(spec)),
        })

    def elaborate(self, platform):
        spec = self.spec
        m = Module()
        m.submodules.array = array = SystolicArray(spec)
        m.d.comb += [array.load.eq(self.load), array.w_row.eq(self.w_row),
                     array.vec.eq(self.vec)]
        for i in range(spec.rows):
            m.d.comb += array.mask[i].eq(delay(m, self.cfg.lane_mask, i + 1, f"mask_row{i}"))
        for j in range(spec.cols):
            m.submodules[f"out_{j}"] = unit = OutputUnit(spec)
            cfg = {f: delay(m, self.cfg[f], j + 1, f"{f}_col{j}")
                   for f in ("shift", "zero_point", "lo", "hi")}
            m.d.comb += [
                unit.acc_in.eq(array.acc[j]),
                unit.bias.eq(self.cfg.bias[j]), unit.m0.eq(self.cfg.m0[j]),
                unit.shift.eq(cfg["shift"]), unit.zero_point.eq(cfg["zero_point"]),
                unit.lo.eq(cfg["lo"]), unit.hi.eq(cfg["hi"]),
                self.result.acc[j].eq(unit.acc), self.result.out[j].eq(unit.out),
                self.result.digits[j].eq(unit.digits),
            ]
        m.d.comb += self.out_valid.eq(delay(m, self.in_valid, spec.datapath_latency, "valid"))
        return m


class Accelerator(wiring.Component):
    """One GEMM tile engine (``K <= rows``, ``N <= cols``, any M) with stream ports.

    Parameters
    ----------
    spec : ArraySpec

    Members
    -------
    w_in : In(stream.Signature(weight_row))
        ``rows`` beats per pass, the last array row first (row ``rows - 1`` .. 0).
    cfg_in : In(stream.Signature(config))
        One beat per pass: per-column bias and M0, shift, zero point, clamp range, lane mask.
    a_in : In(stream.Signature(act_vector))
        One beat per activation vector (row of A) with the preloaded partial sums.
    o_out : Out(stream.Signature(result))
        One beat per vector, in order: ``acc``, ``out`` and ``digits`` of every column.
    busy : Out(1)
        A vector is in flight (``w_in`` and ``cfg_in`` wait).
    """

    def __init__(self, spec: ArraySpec):
        if not isinstance(spec, ArraySpec):
            raise TypeError(f"Accelerator: spec must be an ArraySpec, got {spec!r}")
        self.spec = spec
        super().__init__(accelerator_signature(spec))

    def elaborate(self, platform):
        spec = self.spec
        m = Module()
        m.submodules.datapath = dp = _Datapath(spec)
        m.submodules.fifo = fifo = OutputFifo(Shape.cast(layouts.result(spec)).width,
                                              spec.fifo_depth)

        # Credits: a vector is accepted only while the FIFO has room for every vector in
        # flight, so the datapath never has to stop (no stall net across the whole array).
        outstanding = Signal(range(spec.fifo_depth + 1))     # accepted, not yet delivered
        in_datapath = Signal(range(spec.fifo_depth + 1))     # accepted, not yet in the FIFO
        a_fire = self.a_in.valid & self.a_in.ready
        o_fire = self.o_out.valid & self.o_out.ready
        m.d.sync += [outstanding.eq(outstanding + a_fire - o_fire),
                     in_datapath.eq(in_datapath + a_fire - dp.out_valid)]
        idle = in_datapath == 0
        cfg_pending = Signal()                               # a config beat loads next cycle
        m.d.comb += [
            self.busy.eq(~idle),
            self.w_in.ready.eq(idle),
            self.cfg_in.ready.eq(idle),
            self.a_in.ready.eq((outstanding < spec.fifo_depth) & ~cfg_pending
                               & ~self.w_in.valid & ~self.cfg_in.valid),
        ]

        # The config beat is registered before it loads (the enable of the wide config
        # register then comes straight from a flip-flop); vectors wait for that one cycle.
        cfg = Signal(layouts.config(spec), init={"lane_mask": (1 << spec.lanes) - 1})
        cfg_beat = Signal(layouts.config(spec))
        m.d.sync += [cfg_pending.eq(self.cfg_in.valid & self.cfg_in.ready),
                     cfg_beat.eq(self.cfg_in.payload)]
        with m.If(cfg_pending):
            m.d.sync += cfg.eq(cfg_beat)

        # The weight load is registered once: a vector accepted right after the last weight
        # beat reaches row 0 one cycle after that beat has shifted in.
        m.d.sync += [dp.load.eq(self.w_in.valid & self.w_in.ready),
                     dp.w_row.eq(self.w_in.payload)]
        m.d.comb += [
            dp.cfg.eq(cfg),
            dp.in_valid.eq(a_fire),
            dp.vec.eq(self.a_in.payload),
            fifo.w_en.eq(dp.out_valid),
            fifo.w_data.eq(dp.result.as_value()),
            self.o_out.valid.eq(fifo.r_valid),
            self.o_out.payload.eq(fifo.r_data),
            fifo.r_ready.eq(self.o_out.ready),
        ]
        return m
