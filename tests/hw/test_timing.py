"""fpxint_hw.hw.timing against cycles measured on the generated hardware in amaranth.sim.

Every test sends one value (an impulse) into a component, or tiles into the whole
accelerator, and finds by observation the cycle in which it comes out; only the expected
figure comes from hw.timing. The measurement never reads a stage constant.
"""

import dataclasses

import numpy as np
import pytest
from amaranth.hdl import Value
from amaranth.sim import Simulator

from fpxint_hw.errors import FormatError
from fpxint_hw.hw import timing
from fpxint_hw.hw.array import SystolicArray
from fpxint_hw.hw.driver import run_tiles_amaranth
from fpxint_hw.hw.fifo import OutputFifo
from fpxint_hw.hw.pe import ProcessingElement
from fpxint_hw.hw.requant import CONST_LEAD, OutputUnit
from fpxint_hw.hw.top import Accelerator
from fpxint_hw.hw.vectors import random_tile
from fpxint_hw.spec import ArraySpec, load_array_spec

from hw.hwcheck import assert_tile_equal

#: Specs that exercise every term of the figures: PE registers, tree levels, column
#: combine, several DSP tiles in the M0 product, one row, non-square.
SPECS = [
    ArraySpec(rows=3, cols=4),
    ArraySpec(rows=4, cols=2, mult_reg=False),
    ArraySpec(rows=2, cols=5, tree_reg=True),
    ArraySpec(rows=2, cols=2, tree_reg=True, w_terms=3, a_terms=1, a_bits=5, a_signed=True),
    ArraySpec(rows=4, cols=3, combine="column"),
    ArraySpec(rows=1, cols=3, tree_reg=True),
    ArraySpec(rows=2, cols=1, depth=4608, m0_bits=31),
]
IDS = ["default", "no-mult-reg", "tree-reg", "tree-reg-odd", "column", "one-row", "four-tiles"]


def run(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


async def impulse(ctx, values, clear, came_out, limit=200):
    """Set ``values`` (``(signal, value)``) for one clock edge, then ``clear`` them; return
    the clock edges from the one that samples them to the first after which ``came_out()``
    holds."""
    for sig, v in values:
        ctx.set(sig, v)
    for n in range(1, limit + 1):
        await ctx.tick()
        if n == 1:
            for sig, _ in values:
                ctx.set(sig, clear)
        if came_out():
            return n
    raise AssertionError(f"nothing came out within {limit} cycles")


# -- the accelerator: handshakes sampled by the driver ---------------------------------------

@pytest.mark.parametrize("spec", SPECS + [load_array_spec("tiny"), load_array_spec("small")],
                         ids=IDS + ["tiny", "small"])
def test_measured_pass_cycles_equal_the_timing_figures(spec):
    """Latency (accepted vector to its result), load, tile and pass cycles of back-to-back
    passes, measured at the stream ports; a pass of more vectors than the FIFO holds runs at
    one vector per cycle, so the FIFO gives every vector in flight a credit."""
    rng = np.random.default_rng(2)
    sizes = (1, 7, 20, 2 * timing.fifo_depth(spec) + 5)
    tiles = [random_tile(spec, m, rng) for m in sizes]
    run = run_tiles_amaranth(spec, tiles)
    for i, (t, r) in enumerate(zip(tiles, run.results)):
        assert_tile_equal(t, r, f"tile {i}")
    assert len(run.passes) == len(tiles)
    for t, p in zip(tiles, run.passes):
        assert p.latency == timing.latency(spec)
        assert p.first_in - p.load == timing.load_cycles(spec)
        assert p.last_in - p.first_in == t.m - 1          # one vector per cycle, no stall
        assert p.last_out - p.first_out == t.m - 1
        assert p.total == timing.tile_cycles(spec, t.m)
    for t, p, nxt in zip(tiles, run.passes, run.passes[1:]):
        assert nxt.load - p.load == timing.pass_interval(spec, t.m)
    assert run.cycles == sum(timing.pass_interval(spec, t.m) for t in tiles) \
        + timing.FIFO_STAGES


def test_fifo_takes_every_vector_it_gives_a_credit_for():
    """With the sink stalled, the array accepts exactly ``fifo_depth`` vectors (the FIFO's
    entries: every one gets a credit, none overflows); all of them come out when the sink
    reads again."""
    spec = load_array_spec("tiny")
    dut = Accelerator(spec)
    depth = timing.fifo_depth(spec)

    async def bench(ctx):
        for port, beats in ((dut.w_in, spec.rows), (dut.cfg_in, 1)):
            ctx.set(port.valid, 1)
            while beats:
                if ctx.get(port.ready):
                    beats -= 1
                await ctx.tick()
                if not beats:
                    ctx.set(port.valid, 0)
        ctx.set(dut.a_in.valid, 1)
        accepted = 0
        for _ in range(3 * depth):
            accepted += ctx.get(dut.a_in.ready)
            await ctx.tick()
        ctx.set(dut.a_in.valid, 0)
        assert accepted == depth
        ctx.set(dut.o_out.ready, 1)
        delivered = 0
        for _ in range(3 * depth):
            delivered += ctx.get(dut.o_out.valid)
            await ctx.tick()
        assert delivered == accepted

    run(dut, bench)


# -- the components: an impulse in, the cycle it comes out -----------------------------------

@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_pe_stages_measured(spec):
    """A single activation reaches ``psum_out`` ``pe_stages`` cycles after ``a_in``."""
    dut = ProcessingElement(spec)

    async def bench(ctx):
        ctx.set(dut.mask, (1 << spec.lanes) - 1)
        for k in range(spec.w_terms):
            ctx.set(dut.w_in[k], 1)
        ctx.set(dut.w_load, 1)
        await ctx.tick()
        ctx.set(dut.w_load, 0)
        await ctx.tick().repeat(3)                       # weights and their multiples settle
        n = await impulse(ctx, [(dut.a_in[k][j], 1) for k in range(spec.w_terms)
                                for j in range(spec.a_terms)], 0,
                          lambda: ctx.get(Value.cast(dut.psum_out)) != 0)
        assert n == timing.pe_stages(spec)

    run(dut, bench)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
@pytest.mark.parametrize("through", ["acts", "psum"])
def test_array_latency_measured(spec, through):
    """A single vector (activations, or a preloaded partial sum) reaches every column's
    ``acc`` in the same cycle, ``array_latency`` cycles after ``vec``."""
    dut = SystolicArray(spec)

    def accs(ctx):
        return [ctx.get(dut.acc[j]) for j in range(spec.cols)]

    async def bench(ctx):
        ctx.set(dut.mask, (1 << spec.lanes) - 1)
        for j in range(spec.cols):
            for k in range(spec.w_terms):
                ctx.set(dut.w_row[j][k], 1)
        ctx.set(dut.load, 1)
        await ctx.tick().repeat(spec.rows)
        ctx.set(dut.load, 0)
        await ctx.tick().repeat(3)
        assert accs(ctx) == [0] * spec.cols
        if through == "acts":
            values = [(dut.vec.acts[i][t], 1) for i in range(spec.rows)
                      for t in range(spec.a_terms)]
        else:
            values = [(dut.vec.psum[j], j + 1) for j in range(spec.cols)]
        n = await impulse(ctx, values, 0, lambda: any(accs(ctx)))
        assert all(accs(ctx)), f"the columns are not de-skewed: {accs(ctx)}"
        assert n == timing.array_latency(spec)

    run(dut, bench)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_out_stages_measured(spec):
    """A single accumulator reaches ``acc``, ``out`` and ``digits`` ``out_stages`` cycles
    after ``acc_in`` (M0 = 1, no shift, the whole output range)."""
    dut = OutputUnit(spec)
    lo, hi = spec.out_range

    async def bench(ctx):
        for port, v in ((dut.m0, 1), (dut.shift, 0), (dut.zero_point, 0), (dut.bias, 0),
                        (dut.lo, lo), (dut.hi, hi), (dut.acc_in, lo)):
            ctx.set(port, v)
        await ctx.tick().repeat(CONST_LEAD + 30)        # constants in, pipeline full of lo
        assert ctx.get(dut.out) == lo and ctx.get(dut.acc) == lo
        base = ctx.get(Value.cast(dut.digits))
        outputs = {"acc": lambda: ctx.get(dut.acc) == lo + 1,
                   "out": lambda: ctx.get(dut.out) == lo + 1,
                   "digits": lambda: ctx.get(Value.cast(dut.digits)) != base}
        for what, came_out in outputs.items():
            n = await impulse(ctx, [(dut.acc_in, lo + 1)], lo, came_out)
            assert n == timing.out_stages(spec), what
            await ctx.tick().repeat(30)                  # the impulse leaves the pipeline

    run(dut, bench)


def test_fifo_stages_measured():
    """An entry written into the empty output FIFO is valid at ``r_data`` ``FIFO_STAGES``
    cycles later."""
    dut = OutputFifo(8, 4)

    async def bench(ctx):
        ctx.set(dut.r_ready, 1)
        await ctx.tick().repeat(2)
        ctx.set(dut.w_data, 0x5A)
        n = await impulse(ctx, [(dut.w_en, 1)], 0, lambda: ctx.get(dut.r_valid))
        assert ctx.get(dut.r_data) == 0x5A
        assert n == timing.FIFO_STAGES

    run(dut, bench)


# -- the figures' shape (by hand) ----------------------------------------------------------

def test_figures_by_hand():
    s = ArraySpec(rows=5, cols=3)
    assert timing.tile_cycles(s, 10) - timing.tile_cycles(s, 1) == 9   # one vector per cycle
    assert timing.tile_cycles(s, 1) == timing.load_cycles(s) + 1 + timing.latency(s)
    # tree_reg: 4 lanes x 2 activation slices = 8 tree terms, three registered levels
    slower = dataclasses.replace(s, tree_reg=True)
    assert timing.tree_levels(slower) == 3
    assert timing.latency(slower) == timing.latency(s) + 3
    assert timing.latency(dataclasses.replace(s, w_terms=3, tree_reg=True)) \
        == timing.latency(s) + 4                                          # 12 terms
    assert timing.tree_levels(dataclasses.replace(s, combine="column")) == 0
    # acc x M0 in 18x18 tiles: 3 registers in the DSP block and one after it, then one
    # register per adder-tree level
    assert timing.m0_stages(ArraySpec(rows=2, cols=1, m0_bits=8)) == 4                # 1 tile
    assert timing.m0_stages(ArraySpec(rows=2, cols=1, m0_bits=18, acc_bits=19)) == 5  # 2 tiles
    assert timing.m0_stages(ArraySpec(rows=2, cols=1, m0_bits=31, depth=4608)) == 6   # 4 tiles
    assert timing.latency(dataclasses.replace(s, rows=6)) == timing.latency(s) + 1
    assert timing.latency(dataclasses.replace(s, cols=4)) == timing.latency(s) + 1
    assert timing.load_cycles(ArraySpec(rows=1, cols=2)) == 2 and timing.load_cycles(s) == 5
    with pytest.raises(FormatError, match=r"tile_cycles\.m .*got 0"):
        timing.tile_cycles(s, 0)
    with pytest.raises(FormatError, match=r"pass_interval\.m .*got 1.5"):
        timing.pass_interval(s, 1.5)


def test_summary_adds_the_latencies_after_the_widths():
    spec = load_array_spec("tiny")
    s = timing.summary(spec)
    keys = list(s)
    assert keys[keys.index("out_width") + 1:][:2] == ["latency", "load_cycles"]
    assert s["latency"] == timing.latency(spec) and s["load_cycles"] == timing.load_cycles(spec)
    assert {k: v for k, v in s.items() if k not in ("latency", "load_cycles")} == spec.summary()
