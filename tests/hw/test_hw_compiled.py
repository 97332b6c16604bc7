"""Tiles cut from a network compiled for a spec replay bit-exactly on that spec's hardware."""

from __future__ import annotations

import pytest

from fpxint_hw.intsim import Simulator, extract_tiles
from fpxint_hw.quant import Conv, for_array
from fpxint_hw.spec import load_array_spec
from fpxint_hw.workflows.network import input_range, load_inputs, load_network

from hw.hwcheck import assert_tile_equal

SPECS = ("big", "column", "default", "free", "halfup", "signed", "small", "tiny")


def compiled_tiles(name: str, count: int = 2, rows: int = 3):
    """``(spec, tiles)``: full-K tiles of the first layers of the MNIST ResNet compiled for
    spec ``name`` that fit it (the simulator's own inputs, ``rows`` output positions)."""
    spec = load_array_spec(name)
    graph, info = load_network("mnist-resnet")
    x, _, _ = load_inputs(graph, info, 1, None)
    prog = for_array(graph, spec, name=name, input_range=input_range(info))
    sim = Simulator(prog)
    tiles = []
    for q in prog.gemm_layers():
        if q.name in prog.target.misfits or (isinstance(q, Conv) and q.groups != 1):
            continue
        cut = extract_tiles(prog, q.name, x, q.reduction, spec.cols, rows, sim)
        tiles += [t for t, _ in cut[:1]]
        if len(tiles) == count:
            break
    assert tiles, f"no layer of the MNIST ResNet fits {name}"
    return spec, tiles


def _check(tiles, results):
    for i, (tile, got) in enumerate(zip(tiles, results)):
        assert_tile_equal(tile, got, f"tile {i}")


@pytest.mark.parametrize("name", ["tiny", "small"])
def test_compiled_tiles_on_amaranth_sim(name):
    from fpxint_hw.hw.driver import run_tiles_amaranth
    spec, tiles = compiled_tiles(name, count=1)
    _check(tiles, run_tiles_amaranth(spec, tiles).results)


@pytest.mark.slow
@pytest.mark.parametrize("name", SPECS)
def test_compiled_tiles_on_verilator(name):
    from fpxint_hw.flow.verilator import run_tiles_verilator, verilator_missing
    reason = verilator_missing()
    if reason:
        pytest.skip(reason)
    spec, tiles = compiled_tiles(name)
    _check(tiles, run_tiles_verilator(spec, tiles))
