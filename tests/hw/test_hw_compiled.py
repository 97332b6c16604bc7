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


def test_zero_point_tiles_on_amaranth_sim():
    """Tiles of layers that read zero-point tensors (a signed input padded with its zero
    point into a zero-point output, the classifier on a zero-point tensor) replay
    bit-exactly on the generated hardware."""
    import numpy as np
    from fpxint_hw.hw.driver import run_tiles_amaranth
    from nethelpers import ZERO_POINT_INPUT, zero_point_graph

    spec = load_array_spec("small")
    graph = zero_point_graph()
    prog = for_array(graph, spec, name="small", input_range=ZERO_POINT_INPUT)
    x = np.random.default_rng(0).uniform(*ZERO_POINT_INPUT, (1, *graph.input_shape))
    sim = Simulator(prog)
    tiles = []
    for name in ("c1", "fc2"):
        q = prog.layer(name)
        assert name not in prog.target.misfits and prog.tensors()[q.inputs[0]].zero_point
        tile, _ = extract_tiles(prog, name, x.astype(np.float32), q.reduction, spec.cols, 3,
                                sim)[0]
        tiles.append(tile)
    # output position (0, 0) of c1: its first kernel tap is padding, which holds z
    acts = sum(w * tiles[0].acts[j] for j, w in enumerate(spec.a_fmt.lane_weights))
    c = graph.input_shape[0]
    assert np.all(acts[0, :c] == prog.tensors()["x"].zero_point)
    assert tiles[0].requant.zero_point == prog.tensors()["c1"].zero_point != 0
    _check(tiles, run_tiles_amaranth(spec, tiles).results)
