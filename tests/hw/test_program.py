"""The host-side pass planner (hw/program.py): what the array takes, checked at its edge."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fpxint_hw.errors import InputError, WidthError
from fpxint_hw.hw.driver import run_tile_amaranth
from fpxint_hw.hw.program import check_tile, pass_count
from fpxint_hw.hw.vectors import random_tile
from fpxint_hw.spec import ArraySpec

from hw.hwcheck import assert_tile_equal


def test_tiles_of_another_format_rounding_or_range_are_refused():
    spec = ArraySpec(rows=2, cols=2)
    rng = np.random.default_rng(0)
    tile = random_tile(spec, 2, rng)
    other = ArraySpec(rows=2, cols=2, a_signed=True)
    with pytest.raises(InputError, match=r"t1: activations are 4-bit x 2 signed pow2, the "
                                         r"array takes 4-bit x 2 unsigned pow2"):
        check_tile(spec, random_tile(other, 2, rng), "t1")
    bad_mode = dataclasses.replace(tile, requant=dataclasses.replace(tile.requant,
                                                                     mode="half_up"))
    with pytest.raises(InputError, match="rounding is 'half_up', the array rounds 'rne'"):
        check_tile(spec, bad_mode)
    big_m0 = dataclasses.replace(tile, requant=dataclasses.replace(
        tile.requant, multiplier=np.array([1 << 20, 1])))
    with pytest.raises(InputError, match=r"M0 value 1048576 leaves the array's range "
                                         r"\[0, 65535\]"):
        check_tile(spec, big_m0)


def _peak_tile(spec: ArraySpec, extra: int):
    """A tile with K = depth + 1 (two chained passes) whose exact accumulator is the array's
    ``acc_range`` maximum plus ``extra``: every weight and activation digit at its largest,
    one weight of 1, the bias making up the rest."""
    wf, af = spec.w_fmt, spec.a_fmt
    depth = spec.reduction_depth
    ahi = af.combined_range[1]
    template = random_tile(spec, 2, np.random.default_rng(3), k=depth + 1)
    w = np.full((wf.terms, depth + 1, template.n), wf.qmax, np.int64)
    w[:, -1, :] = 0
    w[-1, -1, :] = 1                                  # the unit lane: combined weight 1
    acts = np.full((af.terms, template.m, depth + 1), af.qmax, np.int64)
    bias = np.full(template.n, spec.bias_range[1] - ahi + extra, np.int64)
    return dataclasses.replace(template, weights=w, acts=acts, bias=bias)


def test_accumulator_at_its_peak_runs_exactly_and_one_more_is_refused():
    """The value-based accumulator check at its edge, on the simulated hardware: a chained
    tile that reaches exactly the top of ``acc_range`` gives the exact sum; one more is a
    WidthError before anything runs."""
    spec = ArraySpec(rows=2, cols=2, w_bits=2, a_bits=2, out_bits=2)
    tile = _peak_tile(spec, 0)
    assert pass_count(spec, tile) == 2 * -(-tile.n // spec.cols)
    got = run_tile_amaranth(spec, tile)
    assert int(got.acc.max()) == spec.acc_range[1]
    assert_tile_equal(tile, got)
    with pytest.raises(WidthError, match="accumulator"):
        check_tile(spec, _peak_tile(spec, 1))


def test_longer_reduction_with_small_weights_fits():
    """K beyond the depth is no error by itself: the tile's values decide."""
    spec = ArraySpec(rows=2, cols=2, w_bits=2, a_bits=2, out_bits=2)
    tile = random_tile(spec, 2, np.random.default_rng(5), k=7)
    w = np.zeros_like(tile.weights)
    w[-1] = np.random.default_rng(6).integers(-1, 2, size=w[-1].shape)   # |combined w| <= 1
    small = dataclasses.replace(tile, weights=w, bias=np.zeros(tile.n, np.int64))
    check_tile(spec, small)
    assert_tile_equal(small, run_tile_amaranth(spec, small))
