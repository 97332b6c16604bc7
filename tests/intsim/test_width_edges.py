"""The static width analysis at its edge: each configured width that is exactly what the
program needs runs, one bit less is refused before anything runs."""

from __future__ import annotations

import pytest

from fpxint_hw.errors import WidthError
from fpxint_hw.intsim import Simulator, WidthConfig, analyze_widths
from fpxint_hw.quant import expand_graph
from fpxint_hw.spec import SeriesFormat

from nethelpers import tiny_graph


def _signed_bits(bound: int) -> int:
    """Fewest two's-complement bits holding ``[-bound, bound]`` (counted, not derived)."""
    n = 1
    while not (-(1 << (n - 1)) <= -bound and bound <= (1 << (n - 1)) - 1):
        n += 1
    return n


def _field(row) -> str:
    if row.node.startswith("lane "):
        return "lane_bits"
    return "act_bits" if row.node == "activation storage" else "acc_bits"


@pytest.fixture(scope="module")
def program():
    return expand_graph(tiny_graph(3), SeriesFormat(4, 3, per_channel=True),
                        SeriesFormat(3, 2), "layer")


def test_each_row_needs_exactly_the_bits_of_its_bound(program):
    rows = analyze_widths(program, check=False)
    assert {_field(r) for r in rows} == {"lane_bits", "acc_bits", "act_bits"}
    for r in rows:
        assert r.needed == _signed_bits(r.bound), r


@pytest.mark.parametrize("field", ["lane_bits", "acc_bits", "act_bits"])
def test_just_fits_runs_and_one_bit_less_is_refused(program, field):
    rows = [r for r in analyze_widths(program, check=False) if _field(r) == field]
    need = max(r.needed for r in rows)
    first = next(r for r in rows if r.needed == need)     # the first row over need - 1
    Simulator(program, widths=WidthConfig(**{field: need}))        # just fits: runs
    with pytest.raises(WidthError) as exc:
        Simulator(program, widths=WidthConfig(**{field: need - 1}))
    assert str(exc.value).startswith(
        f"layer {first.layer!r}, node {first.node}: values up to {first.bound} need {need} "
        f"signed bits, configured {need - 1}")
