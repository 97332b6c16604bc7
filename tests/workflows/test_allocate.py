"""Per-layer allocation of terms: the cost it minimises, that it meets its target as measured
by the simulator, and that it is never dearer than the cheapest uniform term count."""

from __future__ import annotations

import numpy as np
import pytest

from fpxint_hw.errors import InputError
from fpxint_hw.float_exec import FloatExecutor
from fpxint_hw.graph import Conv2d, Linear, fold_batchnorm
from fpxint_hw.intsim import Simulator
from fpxint_hw.quant import expand_graph
from fpxint_hw.series import sqnr_db
from fpxint_hw.spec import SeriesFormat
from fpxint_hw.workflows.allocate import allocate, lane_macs

from nethelpers import tiny_graph


def _macs_by_hand(graph):
    """MACs of every conv/linear layer from the float graph's weight and output shapes."""
    g = fold_batchnorm(graph)
    out = {}
    for n in g.nodes:
        w = g.params.get(getattr(n, "weight", None))
        if isinstance(n, Conv2d):
            out[n.name] = int(np.prod(w.shape)) * n.shape[1] * n.shape[2]
        elif isinstance(n, Linear):
            out[n.name] = int(np.prod(w.shape))
    return out


def test_lane_macs_counts_every_lane_product():
    g = tiny_graph()
    macs = _macs_by_hand(g)
    for tw, ta in ((1, 1), (3, 2)):
        prog = expand_graph(g, SeriesFormat(4, tw, per_channel=True), SeriesFormat(4, ta),
                            "layer", input_range=(-1, 1))
        assert lane_macs(prog) == sum(macs.values()) * tw * ta


@pytest.fixture(scope="module")
def task():
    g = tiny_graph()
    x = np.random.default_rng(0).uniform(-1, 1, (32, *g.input_shape)).astype(np.float32)
    return g, x, FloatExecutor(g)(x)


def test_allocation_meets_its_target_and_beats_uniform(task):
    g, x, ref = task
    al = allocate(g, x, ref, max_terms=4, target_sqnr_db=35.0, in_range=(-1, 1))
    assert al.met
    # re-measured independently of the search: the written formats give the figure
    prog = expand_graph(g, SeriesFormat(4, 4, per_channel=True), SeriesFormat(4, 4), "layer",
                        overrides=al.overrides, input_range=(-1, 1))
    got = sqnr_db(ref, Simulator(prog).logits(x))
    assert got >= 35.0 and got == pytest.approx(al.measured["logit_sqnr_db"])
    assert lane_macs(prog) == al.lane_macs
    cheapest = min(u["lane_macs"] for u in al.uniform if u["logit_sqnr_db"] >= 35.0)
    assert al.lane_macs <= cheapest
    assert [u["terms"] for u in al.uniform] == [1, 2, 3, 4]


def test_unreachable_target_is_reported_not_met(task):
    g, x, ref = task
    al = allocate(g, x, ref, max_terms=2, target_sqnr_db=200.0, in_range=(-1, 1))
    assert not al.met


def test_target_needs_exactly_one_goal(task):
    g, x, ref = task
    with pytest.raises(InputError, match="exactly one"):
        allocate(g, x, ref, target_sqnr_db=10.0, target_accuracy=0.5)
    with pytest.raises(InputError, match="labelled"):
        allocate(g, x, ref, target_accuracy=0.5)
