"""Shared checks for the hardware tests: compare hardware results with the references."""

import numpy as np
from numpy.testing import assert_array_equal

from fpxint_hw.golden import reference_tile

try:
    from fpxint_hw.intsim import run_tile as intsim_tile
except ImportError:          # the fast simulator is optional for these tests
    intsim_tile = None


def assert_tile_equal(tile, got, name="tile"):
    """``got`` equals the golden model (and the fast simulator when it is importable)."""
    refs = [("golden", reference_tile(tile))]
    if intsim_tile is not None:
        refs.append(("intsim", intsim_tile(tile)))
    for who, ref in refs:
        assert_array_equal(got.acc, ref.acc, err_msg=f"{name}: acc vs {who}")
        assert_array_equal(got.out, ref.out, err_msg=f"{name}: out vs {who}")
        if tile.out_fmt is not None:
            assert_array_equal(got.out_digits, ref.out_digits, err_msg=f"{name}: digits vs {who}")
        else:
            assert got.out_digits is None


def spread(results):
    """Fraction of distinct output values (guards against tests where everything clamps)."""
    vals = np.concatenate([r.out.ravel() for r in results])
    return len(np.unique(vals))
