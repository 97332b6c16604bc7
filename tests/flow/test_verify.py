"""flow/verify.py: tiles replayed on the hardware, compared, reported; a wrong expectation and
a tile the array cannot take are reported, not hidden."""

from __future__ import annotations

import dataclasses

import numpy as np

from fpxint_hw.flow.verify import verify
from fpxint_hw.golden import reference_tile
from fpxint_hw.hw.vectors import random_tile
from fpxint_hw.spec import ArraySpec

SPEC = ArraySpec(rows=2, cols=2, w_bits=2, a_bits=2, out_bits=2)


def test_matching_tiles_pass_and_a_wrong_expectation_is_a_mismatch():
    rng = np.random.default_rng(0)
    good = random_tile(SPEC, 3, rng, k=3)
    want = reference_tile(good)
    wrong = dataclasses.replace(want, acc=want.acc + (np.arange(want.acc.size).reshape(
        want.acc.shape) == 4))
    rep = verify(SPEC, [("good", good, None), ("wrong", good, wrong)], backend="amaranth")
    by_name = {t.name: t for t in rep.tiles}
    assert by_name["good"].ok and by_name["good"].passes == 2 and by_name["good"].cycles > 0
    assert not by_name["wrong"].ok and len(by_name["wrong"].mismatches) == 1
    m, n = divmod(4, want.acc.shape[1])
    assert f"acc at row m={m}, column n={n}" in by_name["wrong"].mismatches[0]
    assert not rep.ok and rep.mismatch_count == 1


def test_a_tile_the_array_cannot_take_is_an_error_row():
    other = ArraySpec(rows=2, cols=2, w_bits=2, a_bits=2, out_bits=2, a_signed=True)
    tile = random_tile(other, 2, np.random.default_rng(1))
    rep = verify(SPEC, [("signed", tile, None)], backend="amaranth")
    assert rep.tiles[0].error and "activations are 2-bit x 2 signed" in rep.tiles[0].error
    assert not rep.ok and rep.vectors == 0
