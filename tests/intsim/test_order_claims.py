"""The claims that lane order and thread count never change a bit, made falsifiable: each
order and thread count really reaches the GEMM plans, and a perturbed run is reported."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from fpxint_hw.intsim import Simulator
from fpxint_hw.quant import expand_graph
from fpxint_hw.spec import SeriesFormat

from nethelpers import tiny_graph

ORDERS = (None, "reverse", 7, 11)


@pytest.fixture(scope="module")
def case():
    g = tiny_graph(5)
    prog = expand_graph(g, SeriesFormat(3, 3, per_channel=True), SeriesFormat(3, 3), "layer")
    x = np.random.default_rng(2).standard_normal((3, *g.input_shape)).astype(np.float32)
    return prog, x


class _Spy:
    """Wraps a GEMM plan: records the lane-pair order and the Numba threads of each call."""

    def __init__(self, plan, seen, name):
        self.plan, self.seen, self.name = plan, seen, name

    def __call__(self, x, order, *rest):
        self.seen.append((self.name, tuple(order), numba.get_num_threads()))
        return self.plan(x, order, *rest)


def _spied_run(sim, x):
    seen = []
    for name in list(sim.plans):
        sim.plans[name] = _Spy(sim.plans[name], seen, name)
    return sim(x), seen


def differing(runs: dict) -> list:
    """The keys of ``runs`` whose integers differ from the first run's (exact comparison)."""
    (first, ref), *rest = runs.items()
    return [k for k, out in rest if out.shape != ref.shape or not np.array_equal(out, ref)]


def test_every_order_and_thread_count_reaches_the_plans_and_gives_the_same_bits(case):
    prog, x = case
    saved = numba.get_num_threads()
    runs, used = {}, {}
    try:
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            for order in ORDERS:
                sim = Simulator(prog, path="lanes", threads=threads, lane_order=order)
                runs[threads, order], seen = _spied_run(sim, x)
                assert {t for _, _, t in seen} == {threads}
                used[threads, order] = {name: o for name, o, _ in seen}
    finally:
        numba.set_num_threads(saved)
    assert differing(runs) == []
    multi = [n for n, o in used[1, None].items() if len(o) > 1]
    assert multi, "no layer with more than one lane pair: the claim would be vacuous"
    for name in multi:
        base = used[1, None][name]
        assert used[1, "reverse"][name] == base[::-1]
        assert sorted(used[1, 7][name]) == sorted(base)
        assert len({used[1, order][name] for order in ORDERS}) > 1


def test_a_perturbed_run_is_reported_as_a_mismatch(case):
    """The comparison can fail: dropping one lane pair of one layer (an order that loses a
    term), or changing one integer of the output, is reported."""
    prog, x = case
    runs = {"reference": Simulator(prog, path="lanes")(x)}
    sim = Simulator(prog, path="lanes", lane_order="reverse")
    name = next(n for n, o in sim.orders.items() if len(o) > 1)
    sim.orders[name] = sim.orders[name][1:]
    runs["one pair dropped"] = sim(x)
    changed = runs["reference"].copy()
    changed.flat[changed.size // 2] += 1
    runs["one integer changed"] = changed
    assert differing(runs) == ["one pair dropped", "one integer changed"]
