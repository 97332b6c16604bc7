"""The whole accelerator in amaranth.sim against the golden model: exact results, cycles."""

import dataclasses
import itertools

import numpy as np
import pytest

from fpxint_hw.spec import ArraySpec, load_array_spec
from fpxint_hw.hw.driver import run_tile_amaranth, run_tiles_amaranth
from fpxint_hw.hw.program import pass_count, plan
from fpxint_hw.hw.vectors import random_requant, random_tile

from hw.hwcheck import assert_tile_equal, spread


def check_run(spec, tiles, **options):
    run = run_tiles_amaranth(spec, tiles, **options)
    for i, (t, r) in enumerate(zip(tiles, run.results)):
        assert_tile_equal(t, r, f"tile {i}")
    return run


def tiny_exhaustive_tiles(spec, rng):
    """Every activation vector (all digit combinations of all rows) against 9 weight tiles in
    which every PE takes every combination of its weight digits once."""
    wf, af = spec.w_fmt, spec.a_fmt
    wcombos = list(itertools.product(range(wf.qmin, wf.qmax + 1), repeat=wf.terms))
    adigits = list(itertools.product(range(af.qmin, af.qmax + 1), repeat=af.terms * spec.rows))
    acts = np.array(adigits).reshape(len(adigits), spec.rows, af.terms).transpose(2, 0, 1)
    tiles = []
    for t in range(len(wcombos)):
        w = np.zeros((wf.terms, spec.rows, spec.cols), np.int64)
        for i in range(spec.rows):
            for j in range(spec.cols):
                w[:, i, j] = wcombos[(t + i * spec.cols + j) % len(wcombos)]
        template = dataclasses.replace(random_tile(spec, 1, rng), weights=w, acts=acts)
        tiles.append(random_requant(spec, template, rng, ties=t % 2 == 0))
    return tiles


def test_tiny_exhaustive_digits():
    spec = load_array_spec("tiny")
    tiles = tiny_exhaustive_tiles(spec, np.random.default_rng(0))
    assert len(tiles) == 9 and tiles[0].m == 256
    run = check_run(spec, tiles)
    assert spread(run.results) > 4


@pytest.mark.parametrize("w_terms,a_terms", [(1, 1), (2, 3), (3, 2)])
def test_random_4x4(w_terms, a_terms):
    spec = ArraySpec(rows=4, cols=4, w_terms=w_terms, a_terms=a_terms)
    rng = np.random.default_rng(w_terms * 10 + a_terms)
    tiles = [random_tile(spec, 12, rng) for _ in range(3)]
    run = check_run(spec, tiles)
    assert spread(run.results) > 4


@pytest.mark.slow
@pytest.mark.parametrize("w_terms,a_terms", list(itertools.product((1, 2, 3), repeat=2)))
def test_random_4x4_and_8x8_all_term_counts(w_terms, a_terms):
    for n in (4, 8):
        spec = ArraySpec(rows=n, cols=n, w_terms=w_terms, a_terms=a_terms)
        rng = np.random.default_rng(n * 100 + w_terms * 10 + a_terms)
        check_run(spec, [random_tile(spec, 16, rng) for _ in range(3)])


def test_default_8x8():
    spec = load_array_spec("default")
    rng = np.random.default_rng(8)
    check_run(spec, [random_tile(spec, 10, rng), random_tile(spec, 6, rng, ties=True)])


@pytest.mark.parametrize("rows,cols", [(3, 5), (5, 2), (1, 4), (4, 1)])
def test_non_square(rows, cols):
    spec = ArraySpec(rows=rows, cols=cols, w_bits=3, a_bits=3)
    rng = np.random.default_rng(rows * 7 + cols)
    check_run(spec, [random_tile(spec, 9, rng) for _ in range(2)])


@pytest.mark.parametrize("rounding", ["rne", "half_up"])
@pytest.mark.parametrize("combine", ["pe", "column"])
def test_rounding_and_combine(rounding, combine):
    spec = ArraySpec(rows=3, cols=3, rounding=rounding, combine=combine)
    rng = np.random.default_rng(len(rounding) + len(combine))
    tiles = [random_tile(spec, 16, rng, ties=True) for _ in range(2)]
    tiles.append(random_tile(spec, 16, rng, ties=False))
    check_run(spec, tiles)


def test_ties_occur_in_the_rounding_tests():
    """The tie tiles really tell round-half-to-even from half-up (seeds of the tests above)."""
    from fpxint_hw.golden import reference_tile
    spec = ArraySpec(rows=3, cols=3)
    for seed in (len("rne") + len("pe"), len("rne") + len("column"),
                 len("half_up") + len("pe"), len("half_up") + len("column")):
        tile = random_tile(spec, 16, np.random.default_rng(seed), ties=True)
        rne = reference_tile(tile)
        up = reference_tile(dataclasses.replace(
            tile, requant=dataclasses.replace(tile.requant, mode="half_up")))
        assert np.sum(rne.out != up.out) >= 3


@pytest.mark.parametrize("spec", [
    ArraySpec(rows=2, cols=3, w_bits=3, a_bits=3),
    ArraySpec(rows=2, cols=2, combine="column", a_signed=True, scale="free", w_bits=3, a_bits=3,
              out_signed=True),
], ids=["pe", "column-free"])
def test_every_lane_mask(spec):
    """Anytime operation: each of the 2^lanes masks gives exactly the masked golden result."""
    rng = np.random.default_rng(5)
    tiles = []
    for bits in itertools.product((False, True), repeat=spec.lanes):
        mask = np.array(bits).reshape(spec.w_terms, spec.a_terms)
        tiles.append(random_tile(spec, 5, rng, lane_mask=mask))
    check_run(spec, tiles)


@pytest.mark.parametrize("ready,valid", [(0.5, 1.0), (0.3, 0.6), (0.9, 0.4)])
def test_back_pressure(ready, valid):
    spec = ArraySpec(rows=3, cols=4, w_bits=3, a_bits=3)
    rng = np.random.default_rng(int(ready * 10))
    tiles = [random_tile(spec, 20, rng, k=k, n=n) for k, n in ((3, 4), (2, 7), (3, 1))]
    run = check_run(spec, tiles, ready=ready, valid=valid, seed=3)
    free = run_tiles_amaranth(spec, tiles)
    assert run.cycles > free.cycles


def test_tiles_smaller_and_larger_than_the_array():
    spec = ArraySpec(rows=3, cols=3, depth=12)
    rng = np.random.default_rng(9)
    shapes = [(1, 1), (2, 3), (3, 2), (7, 3), (3, 8), (12, 7), (4, 4)]
    tiles = [random_tile(spec, 6, rng, k=k, n=n) for k, n in shapes]
    run = check_run(spec, tiles, ready=0.7)
    assert len(run.passes) == sum(pass_count(spec, t) for t in tiles)
    assert [len(plan(spec, t)) for t in tiles] == [pass_count(spec, t) for t in tiles]


def test_output_without_format_and_single_tile_call():
    spec = ArraySpec(rows=2, cols=2, w_bits=2, a_bits=2)
    tile = random_tile(spec, 4, np.random.default_rng(1), out_fmt=False)
    got = run_tile_amaranth(spec, tile)
    assert_tile_equal(tile, got)
