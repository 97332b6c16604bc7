"""The output FIFO: results wait here for the sink, so the datapath never has to stall.

A memory with a registered read port plus an output register, like
``amaranth.lib.fifo.SyncFIFOBuffered``, but with nothing between registers and the wide
nets: the write enable is the datapath's registered valid bit, and "not empty" is kept in
a register of its own, so the enables that fan out to every memory bit and every output bit
pass one LUT at most. There is no full check: the accelerator admits a vector only while
the FIFO has room for it and for every vector ahead of it (credits), so a write never finds
the FIFO full. A result written in cycle t can leave in cycle t + :data:`FIFO_STAGES`.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["FIFO_STAGES", "OutputFifo"]

#: Cycles from writing an entry to it being valid at ``r_data`` when the FIFO is empty and
#: the reader ready: the write (memory and the ``nonempty`` register), then the registered
#: read port.
FIFO_STAGES = 2


class OutputFifo(wiring.Component):
    """``depth`` entries of ``width`` bits; writes must never exceed the free space.

    Members
    -------
    w_en : In(1)
        Write ``w_data`` this cycle (the caller guarantees room).
    w_data : In(width)
    r_valid : Out(1)
        ``r_data`` holds the oldest entry.
    r_ready : In(1)
        The entry on ``r_data`` is taken this cycle (when ``r_valid``).
    r_data : Out(width)
    """

    def __init__(self, width: int, depth: int):
        if depth < 2:
            raise ValueError(f"OutputFifo: depth must be >= 2, got {depth}")
        self.width, self.depth = width, depth
        super().__init__({"w_en": In(1), "w_data": In(width), "r_valid": Out(1),
                          "r_ready": In(1), "r_data": Out(width)})

    def elaborate(self, platform):
        m = Module()
        depth = self.depth
        m.submodules.storage = mem = Memory(shape=self.width, depth=depth, init=[])
        wp = mem.write_port()
        rp = mem.read_port(domain="sync")             # holds its data while en is low

        head = Signal(range(depth))                   # next write address
        tail = Signal(range(depth))                   # next read address
        stored = Signal(range(depth + 1))             # entries in memory, not yet read out
        nonempty = Signal()                           # stored != 0, kept in a register

        take = nonempty & (~self.r_valid | self.r_ready)
        m.d.comb += [wp.addr.eq(head), wp.data.eq(self.w_data), wp.en.eq(self.w_en),
                     rp.addr.eq(tail), rp.en.eq(take), self.r_data.eq(rp.data)]

        with m.If(self.w_en):
            m.d.sync += head.eq(_next(head, depth))
        with m.If(take):
            m.d.sync += tail.eq(_next(tail, depth))
        m.d.sync += stored.eq(stored + self.w_en - take)
        # not empty next cycle: a write, or an entry left after this cycle's read (no adder)
        m.d.sync += nonempty.eq(self.w_en | Mux(take, stored != 1, nonempty))
        with m.If(take):
            m.d.sync += self.r_valid.eq(1)
        with m.Elif(self.r_ready):
            m.d.sync += self.r_valid.eq(0)
        return m


def _next(counter, depth: int):
    """``counter + 1`` modulo ``depth``."""
    return Mux(counter == depth - 1, 0, counter + 1)
