"""The accelerator top: one GEMM pass per weight load, streams in and out.

::

    w_in  (rows beats) --[2]--> weight shift chain of the SystolicArray
    cfg_in (1 beat) --[1]--> lane masks (a register chain down the rows), output constants
                             (a chain of stages along the columns)
    a_in  (M beats) ------> SystolicArray ---> OutputUnit x cols ---> output FIFO ---> o_out
                             |___ valid bit, datapath_latency cycles ___|

The datapath never stalls. Results enter an output FIFO whose head is ``o_out``; ``a_in`` is
ready only while fewer than ``fifo_depth`` vectors are accepted and not yet delivered
(credits), so the FIFO never overflows however long the sink waits, and no clock enable has
to reach every register of the array. ``w_in`` and ``cfg_in`` are accepted only while no
vector is in the datapath (results may still wait in the FIFO) and take priority over
``a_in``; vectors also wait the one cycle after a config beat. An accepted vector's result
is valid :func:`latency` cycles later when the FIFO is empty; results leave in order. The
pass-level figures built on these (load, tile and pass cycles) are in
:mod:`fpxint_hw.hw.timing`.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Shape, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..spec import ArraySpec
from . import layouts
from .array import SystolicArray, array_latency
from .fifo import FIFO_STAGES, OutputFifo
from .pipe import delay
from .requant import OutputUnit, out_stages

__all__ = ["Accelerator", "accelerator_signature", "TOP_NAME", "INPUT_STAGES", "CONFIG_CYCLES",
           "CREDIT_SLACK", "datapath_latency", "latency", "fifo_depth"]

#: Module name of the exported top in Verilog (and of the top cell in synthesis).
TOP_NAME = "fpxint_array"

#: Registers between the input handshakes and the datapath, on the weight rows, the
#: activation vectors and their valid bit (the first is the handshake's ``a_fire`` register).
INPUT_STAGES = 2

#: Cycles from a pass's config beat to its first vector at the earliest: the beat, then the
#: cycle ``cfg_pending`` holds ``a_in`` back while the beat's registered copy loads.
CONFIG_CYCLES = 2

#: Output FIFO entries beyond one per cycle of :func:`latency` (the credit check is
#: registered and counts ``a_in``'s handshake a cycle late). An always-ready sink sees one
#: result per cycle with any slack >= 1 (``tests/hw/test_timing.py`` measures the rate
#: and the FIFO's capacity).
CREDIT_SLACK = 3


def datapath_latency(spec: ArraySpec) -> int:
    """Cycles from an accepted activation vector to its result entering the output FIFO:
    :data:`INPUT_STAGES`, the array (:func:`~fpxint_hw.hw.array.array_latency`) and the
    output units (:func:`~fpxint_hw.hw.requant.out_stages`)."""
    return INPUT_STAGES + array_latency(spec) + out_stages(spec)


def latency(spec: ArraySpec) -> int:
    """Cycles from accepting an activation vector to its result being valid at ``o_out``
    (an empty FIFO): :func:`datapath_latency` plus
    :data:`~fpxint_hw.hw.fifo.FIFO_STAGES`."""
    return datapath_latency(spec) + FIFO_STAGES


def fifo_depth(spec: ArraySpec) -> int:
    """Entries of the output FIFO: a credit for every vector in flight, :func:`latency` plus
    :data:`CREDIT_SLACK`, so that an always-ready sink sees one result per cycle."""
    return latency(spec) + CREDIT_SLACK


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

    The per-pass configuration never needs an enable or a data net across the whole array:
    the lane mask enters the array with every vector and travels with its activations; the
    output constants flow along one register stage per column that loads every cycle, and
    column j copies its constants from stage j as the beat passes, in place before the
    first vector of the pass gets there. ``cfg`` must hold the beat in the cycle
    ``cfg_load`` is high.
    """

    def __init__(self, spec: ArraySpec):
        self.spec = spec
        super().__init__({
            "load": In(1),
            "w_row": In(layouts.weight_row(spec)),
            "cfg": In(layouts.config(spec)),
            "cfg_load": In(1),
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
        # The lane mask enters the array with each vector (it travels with the activations);
        # it is copied from a registered beat a cycle after cfg_load, in time for the first
        # vector (vectors wait the cycle after a config beat). Its load strobe is a kept copy
        # of its own: the array's input and column 0's output unit lie far apart.
        load_at = [self.cfg_load]                  # cfg_load delayed by 0 .. cols cycles
        for k in range(spec.cols):
            load_at.append(delay(m, load_at[-1], 1, f"cfg_load{k + 1}"))
        mask = Signal(spec.lanes, init=(1 << spec.lanes) - 1, name="lane_mask")
        beat_mask = delay(m, self.cfg.lane_mask, 1, "cfg_mask")
        with m.If(delay(m, self.cfg_load, 1, "mask_load", keep=True)):
            m.d.sync += mask.eq(beat_mask)
        m.d.comb += array.mask.eq(mask)
        # Output constants: the beat flows along a chain of registers, one per column, that
        # load every cycle (no enable) and drop what the columns before them took; column j
        # takes its constants from stage j as the beat passes (an enable for its own unit).
        shared = ("shift", "zero_point", "lo", "hi")
        flow = {("bias", c): self.cfg.bias[c] for c in range(spec.cols)}
        flow.update({("m0", c): self.cfg.m0[c] for c in range(spec.cols)})
        flow.update({(f, None): self.cfg[f] for f in shared})
        for j in range(spec.cols):
            m.submodules[f"out_{j}"] = unit = OutputUnit(spec)
            stage = {}
            for (f, c), value in flow.items():
                if c is None or c >= j:
                    name = f"cfg{j}_{f}" + ("" if c is None else f"{c}")
                    stage[(f, c)] = delay(m, value, 1, name)
            with m.If(load_at[j + 1]):
                m.d.sync += [unit.bias.eq(stage[("bias", j)]), unit.m0.eq(stage[("m0", j)])]
                m.d.sync += [getattr(unit, f).eq(stage[(f, None)]) for f in shared]
            flow = stage
            m.d.comb += [
                unit.acc_in.eq(array.acc[j]),
                self.result.acc[j].eq(unit.acc), self.result.out[j].eq(unit.out),
                self.result.digits[j].eq(unit.digits),
            ]
        depth = array_latency(spec) + out_stages(spec)      # the array and the output units
        m.d.comb += self.out_valid.eq(delay(m, self.in_valid, depth, "valid"))
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
        depth = fifo_depth(spec)
        m.submodules.fifo = fifo = OutputFifo(Shape.cast(layouts.result(spec)).width, depth)

        # Credits: a vector is accepted only while the FIFO has room for every vector in
        # flight, so the datapath never has to stop (no stall net across the whole array).
        # The counters count a_in's handshake one cycle late (a_fire_r), so that no adder
        # sits behind it; the flags they feed are registered and allow for that one vector.
        a_fire = self.a_in.valid & self.a_in.ready
        o_fire = self.o_out.valid & self.o_out.ready
        a_fire_r = delay(m, a_fire, 1, "a_fire")          # also the datapath's valid bit
        outstanding = Signal(range(depth + 1))             # accepted before last cycle, not out
        in_datapath = Signal(range(depth + 1))             # the same, not yet in the FIFO
        credit = Signal(init=1)                            # room even if last cycle accepted one
        empty = Signal(init=1)                             # in_datapath == 0
        cfg_pending = Signal()                             # a config beat loads next cycle
        m.d.sync += [outstanding.eq(outstanding + a_fire_r - o_fire),
                     in_datapath.eq(in_datapath + a_fire_r - dp.out_valid),
                     # next count + 1 < fifo_depth, and next count == 0
                     credit.eq(_by_step(a_fire_r, o_fire, outstanding <= depth - 3,
                                        outstanding <= depth - 2, outstanding <= depth - 1)),
                     empty.eq(_by_step(a_fire_r, dp.out_valid, 0, in_datapath == 0,
                                       in_datapath == 1))]
        idle = empty & ~a_fire_r                           # no vector in the datapath
        m.d.comb += [
            self.busy.eq(~idle),
            self.w_in.ready.eq(idle),
            self.cfg_in.ready.eq(idle),
            self.a_in.ready.eq(credit & ~cfg_pending & ~self.w_in.valid & ~self.cfg_in.valid),
        ]

        # The config beat passes one register (placed by the handshake logic) into
        # _Datapath. Vectors wait the one cycle after it, so every pass loads in at least
        # CONFIG_CYCLES cycles (timing.load_cycles), which also covers a chained pass's wait
        # for the previous results on a one-row array; a vector still reaches the array
        # after the beat, over its own INPUT_STAGES registers.
        cfg_fire = self.cfg_in.valid & self.cfg_in.ready
        m.d.sync += cfg_pending.eq(cfg_fire)

        # Inputs pass INPUT_STAGES (two) registers before the datapath (short nets from the
        # handshake logic, then a hop to the array), and vectors one more on entry to the
        # array, so a vector accepted right after the last weight beat reaches row 0 two
        # cycles after that beat has shifted in: the PEs' weight multiples follow their
        # weights a cycle later.
        w_load = self.w_in.valid & self.w_in.ready
        m.d.comb += [
            dp.load.eq(delay(m, w_load, INPUT_STAGES, "w_load")),
            dp.w_row.eq(delay(m, self.w_in.payload, INPUT_STAGES, "w_row")),
            dp.in_valid.eq(delay(m, a_fire_r, INPUT_STAGES - 1, "a_valid")),
            dp.vec.eq(delay(m, self.a_in.payload, INPUT_STAGES, "a_beat")),
            dp.cfg.eq(delay(m, self.cfg_in.payload, 1, "cfg_beat")),
            dp.cfg_load.eq(delay(m, cfg_fire, 1, "cfg_fire")),
            fifo.w_en.eq(dp.out_valid),
            fifo.w_data.eq(dp.result.as_value()),
            self.o_out.valid.eq(fifo.r_valid),
            self.o_out.payload.eq(fifo.r_data),
            fifo.r_ready.eq(self.o_out.ready),
        ]
        return m


def _by_step(up, down, plus, same, minus):
    """The flag of a counter after a step of ``up - down``: ``plus``, ``same`` or ``minus``,
    each computed on the counter before the step (a compare with a constant, no adder)."""
    return Mux(up & ~down, plus, Mux(~up & down, minus, same))
