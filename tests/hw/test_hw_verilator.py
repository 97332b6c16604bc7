"""The exported Verilog under Verilator (C++ harness in sim/) against the golden model."""

import dataclasses
import itertools

import numpy as np
import pytest

from fpxint_hw.spec import ArraySpec, load_array_spec
from fpxint_hw.flow.verilator import build, run_tiles_verilator, run_tiles_verilator_timed, \
    verilator_missing
from fpxint_hw.golden import reference_tile
from fpxint_hw.hw import timing
from fpxint_hw.hw.program import mismatches
from fpxint_hw.hw.vectors import random_requant, random_tile

from hw.hwcheck import assert_tile_equal, spread

pytestmark = pytest.mark.skipif(verilator_missing() is not None,
                                reason=f"Verilator unusable: {verilator_missing()}")


@pytest.fixture(scope="module")
def tiny_model():
    return build(load_array_spec("tiny"))


@pytest.fixture(scope="module")
def small_model():
    return build(load_array_spec("small"))


def test_tiny_exhaustive_every_weight_matrix_and_vector(tiny_model):
    """All 3^8 weight matrices of the 2x2 array (2 terms of {-1, 0, 1} per PE) against all
    4^4 activation vectors (2 rows x 2 terms of {0..3}): 1.68 M vectors, zero mismatches."""
    spec = tiny_model.spec
    wf, af = spec.w_fmt, spec.a_fmt
    adig = np.array(list(itertools.product(range(af.qmin, af.qmax + 1),
                                           repeat=af.terms * spec.rows)))
    acts = adig.reshape(-1, spec.rows, af.terms).transpose(2, 0, 1)
    rng = np.random.default_rng(0)
    base = random_tile(spec, 1, rng)
    tiles = []
    for i, wd in enumerate(itertools.product(range(wf.qmin, wf.qmax + 1),
                                             repeat=wf.terms * spec.rows * spec.cols)):
        w = np.array(wd).reshape(spec.rows, spec.cols, wf.terms).transpose(2, 0, 1)
        tiles.append(random_requant(spec, dataclasses.replace(base, weights=w, acts=acts), rng,
                                    ties=i % 2 == 0))
    assert len(tiles) == 6561 and tiles[0].m == 256
    run = run_tiles_verilator_timed(spec, tiles, model=tiny_model)
    bad = []
    for i, (t, r) in enumerate(zip(tiles, run.results)):
        bad += mismatches(spec, reference_tile(t), r, f"weights #{i}", limit=2)
    assert not bad, "\n".join(bad[:20])
    assert spread(run.results[:50]) > 4
    assert run.cycles == len(tiles) * timing.pass_interval(spec, 256) + timing.FIFO_STAGES


@pytest.mark.parametrize("ready,valid", [(1.0, 1.0), (0.6, 0.8), (0.25, 0.5)])
def test_small_random_tiles(small_model, ready, valid):
    """Random 4x4-array tiles with K up to the depth (chained passes) and N up to 10."""
    spec = small_model.spec
    rng = np.random.default_rng(int(ready * 100))
    tiles = []
    for i in range(30):
        mask = rng.random((spec.w_terms, spec.a_terms)) < 0.8 if i % 4 == 0 else None
        tiles.append(random_tile(spec, int(rng.integers(1, 40)), rng,
                                 k=int(rng.integers(1, spec.reduction_depth + 1)),
                                 n=int(rng.integers(1, 11)), lane_mask=mask))
    results = run_tiles_verilator(spec, tiles, model=small_model, ready=ready, valid=valid,
                                  seed=7)
    for i, (t, r) in enumerate(zip(tiles, results)):
        assert_tile_equal(t, r, f"tile {i}")


def test_small_cycles_equal_the_spec_formula(small_model):
    spec = small_model.spec
    rng = np.random.default_rng(4)
    tiles = [random_tile(spec, m, rng) for m in (1, 5, 100)]
    run = run_tiles_verilator_timed(spec, tiles, model=small_model)
    for t, p in zip(tiles, run.passes):
        assert p.latency == timing.latency(spec)
        assert p.total == timing.tile_cycles(spec, t.m)


def test_chained_partial_sums_come_from_the_hardware(small_model):
    """A long-K tile equals the golden model; cutting its K differently changes nothing."""
    spec = small_model.spec
    rng = np.random.default_rng(12)
    tile = random_tile(spec, 16, rng, k=spec.reduction_depth, n=spec.cols)
    assert tile.k > spec.rows
    (got,) = run_tiles_verilator(spec, [tile], model=small_model)
    assert_tile_equal(tile, got)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["default", "signed", "column", "free", "halfup", "big"])
def test_shipped_arrays_random_tiles(name):
    spec = load_array_spec(name)
    model = build(spec)
    rng = np.random.default_rng(len(name))
    tiles = [random_tile(spec, 64, rng, k=int(rng.integers(1, min(spec.reduction_depth,
                                                                   6 * spec.rows) + 1)),
                         n=int(rng.integers(1, 2 * spec.cols + 1))) for _ in range(12)]
    results = run_tiles_verilator(spec, tiles, model=model, ready=0.7, valid=0.9)
    for i, (t, r) in enumerate(zip(tiles, results)):
        assert_tile_equal(t, r, f"{name} tile {i}")


@pytest.mark.slow
def test_non_square_free_column_array():
    spec = ArraySpec(rows=5, cols=3, combine="column", scale="free", a_signed=True,
                     out_signed=True, w_terms=3, a_terms=2, depth=40, rounding="half_up")
    model = build(spec)
    rng = np.random.default_rng(1)
    tiles = [random_tile(spec, 50, rng, k=int(rng.integers(1, 41)), n=int(rng.integers(1, 8)))
             for _ in range(20)]
    for i, (t, r) in enumerate(zip(tiles, run_tiles_verilator(spec, tiles, model=model,
                                                              ready=0.5))):
        assert_tile_equal(t, r, f"tile {i}")
