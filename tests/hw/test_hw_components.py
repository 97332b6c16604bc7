"""Components of the array against their Python specifications, in amaranth.sim."""

import itertools

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module, Signal, signed, unsigned
from amaranth.sim import Simulator

from fpxint_hw.golden import requantize
from fpxint_hw.intops import round_shift
from fpxint_hw.series import split_integer
from fpxint_hw.spec import ArraySpec, SeriesFormat
from fpxint_hw.hw.layouts import shape_for_interval
from fpxint_hw.hw.model import pe_reference
from fpxint_hw.hw.pe import ProcessingElement, pe_stages
from fpxint_hw.hw.requant import CONST_LEAD, OutputUnit, out_stages, round_shift_hw
from fpxint_hw.hw.split import magic, split_terms
from fpxint_hw.hw.tree import adder_tree, weighted


def run(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-8, if_exists=True)
    sim.add_testbench(bench)
    sim.run()




# -- adder tree ----------------------------------------------------------------------------

@pytest.mark.parametrize("order", [(0, 1, 2, 3, 4), (4, 2, 0, 3, 1), (3, 4, 1, 0, 2)])
def test_adder_tree_sums_exactly_in_any_order(order):
    """AbelianAdd: any order of the weighted lanes gives the same exact sum."""
    weights = [64, 8, 1, 16, 3]
    rng_in = (-7, 7)
    ins = [Signal(signed(4), name=f"x{i}") for i in range(5)]
    out = Signal(signed(16))

    class Tree(Elaboratable):
        def elaborate(self, platform):
            m = Module()
            terms = [weighted(ins[i], rng_in, weights[i], weights[i] & (weights[i] - 1) == 0)
                     for i in order]
            total, (lo, hi) = adder_tree(m, terms)
            assert (lo, hi) == (-7 * sum(weights), 7 * sum(weights))
            m.d.comb += out.eq(total)
            return m

    rng = np.random.default_rng(1)
    vals = list(rng.integers(-7, 8, size=(300, 5))) + [np.full(5, -7), np.full(5, 7)]

    async def bench(ctx):
        for v in vals:
            for s, x in zip(ins, v):
                ctx.set(s, int(x))
            assert ctx.get(out) == sum(int(w) * int(x) for w, x in zip(weights, v))

    run(Tree(), bench)


# -- split into output terms --------------------------------------------------------------

@pytest.mark.parametrize("form", ["arithmetic", "table"])
@pytest.mark.parametrize("fmt", [
    SeriesFormat(4, 2, "pow2", signed=False),
    SeriesFormat(4, 2, "pow2", signed=True),
    SeriesFormat(4, 2, "free", signed=True),
    SeriesFormat(3, 3, "free", signed=True),
    SeriesFormat(2, 3, "pow2", signed=False),
    SeriesFormat(3, 1, "pow2", signed=True),
])
def test_split_matches_split_integer_exhaustively(fmt, form):
    """Both hardware forms (division arithmetic, lookup table) give split_integer's digits
    for every value of the combined range; the table form is indexed by the raw bit
    pattern, so negative values exercise its sign handling (unsigned power-of-two formats
    are bit slices in both)."""
    lo, hi = fmt.combined_range
    x = Signal(shape_for_interval(lo, hi))
    outs = []

    class Split(Elaboratable):
        def elaborate(self, platform):
            m = Module()
            outs[:] = split_terms(m, x, (lo, hi), fmt,
                                  table_max=0 if form == "arithmetic" else hi - lo + 1)
            return m

    dut = Split()
    expected = split_integer(np.arange(lo, hi + 1), fmt)

    async def bench(ctx):
        for i, v in enumerate(range(lo, hi + 1)):
            ctx.set(x, v)
            got = [ctx.get(d) for d in outs]
            assert got == list(expected[:, i]), f"split({v})"

    run(dut, bench)


@pytest.mark.parametrize("d", [3, 6, 7, 12, 14, 36, 196, 2744])
def test_magic_division_is_exact(d):
    for lo, hi in [(-1000, 1000), (0, 4095), (-70000, 3), (-5, -1)]:
        off, mult, sh = magic(lo, hi, d)
        x = np.arange(lo, hi + 1, dtype=object)
        assert all(((v + off) * mult >> sh) - off // d == v // d for v in x)


# -- rounding shift ----------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["rne", "half_up"])
def test_round_shift_hw_exhaustive_8bit(mode):
    width = 8
    x = Signal(signed(width))
    s = Signal(unsigned(6))
    box = {}

    class RS(Elaboratable):
        def elaborate(self, platform):
            m = Module()
            box["r"] = round_shift_hw(m, x, s, width, mode)
            return m

    async def bench(ctx):
        for v in range(-128, 128):
            for n in list(range(0, 11)) + [62]:
                ctx.set(x, v)
                ctx.set(s, n)
                assert ctx.get(box["r"]) == round_shift(v, n, mode), (v, n)

    dut = RS()
    run(dut, bench)


# -- output unit ---------------------------------------------------------------------------

@pytest.mark.parametrize("spec", [
    ArraySpec(rows=2, cols=1),
    ArraySpec(rows=2, cols=1, rounding="half_up", out_signed=True, scale="free",
              a_signed=True, m0_bits=9),
    ArraySpec(rows=2, cols=1, out_bits=3, out_terms=3),
])
def test_output_unit_matches_golden_requantize(spec):
    dut = OutputUnit(spec)
    rng = np.random.default_rng(7)
    olo, ohi = spec.out_range
    blo, bhi = spec.bias_range
    cases = []
    for i in range(400):
        acc = int(rng.integers(*spec.dot_range))
        bias = int(rng.integers(blo, bhi + 1))
        m0 = int(rng.integers(0, 1 << spec.m0_bits))
        shift = int(rng.integers(0, 6)) if i % 2 else int(rng.integers(0, 63))
        zp = int(rng.integers(-5, 6))
        lo, hi = (olo, ohi) if i % 3 else sorted(int(v) for v in rng.integers(olo, ohi + 1, 2))
        cases.append((acc, bias, m0, shift, zp, lo, hi))
    cases.append((spec.dot_range[0], blo, (1 << spec.m0_bits) - 1, 0, 0, olo, ohi))
    cases.append((spec.dot_range[1], bhi, (1 << spec.m0_bits) - 1, 62, 0, olo, ohi))

    # The configuration is static during a pass and set CONST_LEAD cycles before the first
    # accumulator arrives; each case is held for the pipeline depth.
    async def bench_static(ctx):
        for acc, bias, m0, shift, zp, lo, hi in cases:
            for port, v in ((dut.bias, bias), (dut.m0, m0), (dut.shift, shift),
                            (dut.zero_point, zp), (dut.lo, lo), (dut.hi, hi)):
                ctx.set(port, v)
            await ctx.tick().repeat(CONST_LEAD)
            ctx.set(dut.acc_in, acc)
            await ctx.tick().repeat(out_stages(spec))
            want_acc = acc + bias
            want_out = int(requantize(np.array([[want_acc]]), np.array([m0]), shift, lo, hi,
                                      zp, spec.rounding)[0, 0])
            want_digits = list(split_integer(np.array(want_out), spec.out_fmt))
            assert ctx.get(dut.acc) == want_acc
            assert ctx.get(dut.out) == want_out, (acc, bias, m0, shift, zp, lo, hi)
            assert [ctx.get(dut.digits[k]) for k in range(spec.out_terms)] == want_digits

    run(dut, bench_static)


@pytest.mark.parametrize("spec", [
    ArraySpec(rows=2, cols=1),                        # one DSP tile
    ArraySpec(rows=2, cols=1, depth=4608, m0_bits=31),   # 2 x 2 tiles and an adder tree
    ArraySpec(rows=2, cols=1, depth=3, acc_bits=18),     # acc + bias exactly 18 bits
], ids=["one-tile", "four-tiles", "acc18"])
def test_output_unit_is_pipelined_one_result_per_cycle(spec):
    """Back-to-back accumulators come out out_stages cycles later, one per cycle, with
    ``acc`` and ``out`` of the same vector in the same beat."""
    dut = OutputUnit(spec)
    rng = np.random.default_rng(3)
    accs = [int(v) for v in rng.integers(*spec.dot_range, size=50)]
    m0, shift = 12345, 9

    async def bench(ctx):
        ctx.set(dut.m0, m0)
        ctx.set(dut.shift, shift)
        ctx.set(dut.lo, spec.out_range[0])
        ctx.set(dut.hi, spec.out_range[1])
        got = []
        for t in range(len(accs) + out_stages(spec)):
            ctx.set(dut.acc_in, accs[t] if t < len(accs) else 0)
            await ctx.tick()
            if t + 1 >= out_stages(spec):
                got.append((ctx.get(dut.acc), ctx.get(dut.out)))
        want = requantize(np.array([accs]).T, np.array([m0]), shift, *spec.out_range, 0,
                          spec.rounding)[:, 0]
        assert got[:len(accs)] == list(zip(accs, want))

    run(dut, bench)


# -- processing element --------------------------------------------------------------------

PE_SPECS = [
    ArraySpec(rows=2, cols=2),
    ArraySpec(rows=2, cols=2, mult_reg=False),
    ArraySpec(rows=2, cols=2, tree_reg=True, w_terms=3, a_terms=1),
    ArraySpec(rows=2, cols=2, combine="column", a_signed=True),
    ArraySpec(rows=2, cols=2, scale="free", a_signed=True, w_terms=3, a_terms=2),
    ArraySpec(rows=2, cols=2, scale="free", combine="column", w_bits=3, a_bits=5),
    ArraySpec(rows=2, cols=2, tree_reg=True),                  # the default PE: 8 tree terms
    ArraySpec(rows=2, cols=2, tree_reg=True, scale="free", a_signed=True, a_bits=5,
              mult_reg=False),                                 # signed top slice of 1 bit
]


@pytest.mark.parametrize("spec", PE_SPECS, ids=lambda s: f"{s.combine}-{s.scale}-"
                         f"{s.w_terms}x{s.a_terms}-d{pe_stages(s)}")
def test_pe_matches_reference(spec):
    dut = ProcessingElement(spec)
    rng = np.random.default_rng(11)
    wf, af = spec.w_fmt, spec.a_fmt
    column = spec.combine == "column"

    def psum_value(port):
        if column:
            return [ctx_get(port[f"l{l}"]) for l in range(spec.lanes)]
        return ctx_get(port)

    async def bench(ctx):
        nonlocal ctx_get
        ctx_get = ctx.get
        for trial in range(4):
            w = [int(v) for v in rng.integers(wf.qmin, wf.qmax + 1, wf.terms)]
            mask = [int(v) for v in (rng.random(spec.lanes) < 0.7)] if trial else [1] * spec.lanes
            for k, v in enumerate(w):
                ctx.set(dut.w_in[k], v)
            ctx.set(dut.w_load, 1)
            ctx.set(dut.mask, sum(b << i for i, b in enumerate(mask)))
            await ctx.tick()
            ctx.set(dut.w_load, 0)
            await ctx.tick()            # activations from the second cycle after the load
            history = []
            for t in range(60):
                a = [int(v) for v in rng.integers(af.qmin, af.qmax + 1, af.terms)]
                if column:
                    psum = [int(rng.integers(-50, 50)) for _ in range(spec.lanes)]
                    for l, v in enumerate(psum):
                        ctx.set(dut.psum_in[f"l{l}"], v)
                else:
                    psum = int(rng.integers(-1000, 1000))
                    ctx.set(dut.psum_in, psum)
                for k in range(wf.terms):                 # one copy per weight term
                    for j, v in enumerate(a):
                        ctx.set(dut.a_in[k][j], v)
                history.append((a, psum))
                await ctx.tick()
                assert [ctx.get(dut.w_out[k]) for k in range(wf.terms)] == w
                assert [[ctx.get(dut.a_out[k][j]) for j in range(af.terms)]
                        for k in range(wf.terms)] == [a] * wf.terms
                d = pe_stages(spec)
                if t + 1 >= d:
                    a_old = history[t + 1 - d][0]       # activation pe_stages cycles ago
                    psum_last = history[t][1]           # partial sum of the last cycle
                    assert psum_value(dut.psum_out) == pe_reference(spec, w, a_old, psum_last,
                                                                    mask)

    ctx_get = None
    run(dut, bench)


def test_pe_reference_is_the_weighted_lane_sum():
    """The Python PE model equals the product of the combined weight and activation."""
    spec = ArraySpec(scale="free", a_signed=True)
    for w in itertools.product(range(-7, 8, 3), repeat=2):
        for a in itertools.product(range(-7, 8, 5), repeat=2):
            wc = sum(m * q for m, q in zip(spec.w_fmt.lane_weights, w))
            ac = sum(m * q for m, q in zip(spec.a_fmt.lane_weights, a))
            assert pe_reference(spec, w, a, 5, [1] * 4) == 5 + wc * ac
