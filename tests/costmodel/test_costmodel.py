"""Cost models: the cycle model against the RTL's measured cycles, the area model's fit."""

import dataclasses

import numpy as np
import pytest

from fpxint_hw.costmodel import (area_features, back_to_back, fit_area_model, gemm_cycles,
                                 network_cycles, pass_cycles, resnet50_layers)
from fpxint_hw.costmodel.area import nnls_small
from fpxint_hw.hw import timing
from fpxint_hw.spec import ArraySpec, load_array_spec


# -- cycle model ---------------------------------------------------------------------------

def test_gemm_cycles_by_hand():
    spec = ArraySpec(rows=4, cols=4, depth=64)

    def interval(m):            # one pass's weight load, vectors and datapath, back to back
        return 4 + m + timing.datapath_latency(spec)

    drain = timing.latency(spec) - timing.datapath_latency(spec)
    # K = 9 -> 3 chunks of <= 4 rows, N = 5 -> 2 column blocks: 6 passes of 10 vectors
    g = gemm_cycles(spec, 10, 9, 5)
    assert g.passes == 6
    assert g.cycles == 6 * interval(10) + drain
    assert g.macs == 10 * 9 * 5
    assert g.utilisation == pytest.approx(450 / (g.cycles * 16))
    # M cut into chunks of 4: 4 + 4 + 2 vectors, each chunk its own 6 passes
    t = gemm_cycles(spec, 10, 9, 5, m_tile=4)
    assert t.passes == 18
    assert t.cycles == 6 * (2 * interval(4) + interval(2)) + drain
    # groups repeat the passes
    assert gemm_cycles(spec, 10, 9, 5, groups=3).cycles == 3 * 6 * interval(10) + drain


def test_one_row_array_loads_in_two_cycles():
    spec = ArraySpec(rows=1, cols=2, depth=8)
    # K = 3 on one row: 3 chained passes; the config beat takes effect a cycle after it
    # arrives, so even one weight row takes 2 cycles, which also hides the FIFO drain
    assert timing.load_cycles(spec) == 2
    g = gemm_cycles(spec, 5, 3, 2)
    assert g.cycles == 3 * (2 + 5 + timing.datapath_latency(spec)) + 2


def test_reduction_longer_than_depth_is_cut():
    spec = ArraySpec(rows=4, cols=4, depth=8)
    # K = 20 with depth 8: segments 8 + 8 + 4 -> 2 + 2 + 1 row chunks
    assert gemm_cycles(spec, 3, 20, 4).passes == 5


def test_rejects_empty_gemm():
    with pytest.raises(ValueError, match="m must be"):
        gemm_cycles(ArraySpec(), 0, 4, 4)
    with pytest.raises(ValueError):
        pass_cycles(ArraySpec(), 0)


def test_resnet50_shapes():
    layers = resnet50_layers()
    assert len(layers) == 54                            # 53 convolutions + the classifier
    # the published figure for ResNet-50 at 224x224: 4.09 G multiply-accumulates
    assert sum(s.macs for s in layers) == pytest.approx(4.09e9, rel=0.002)
    first = layers[0]
    assert (first.m, first.k, first.n) == (112 * 112, 3 * 7 * 7, 64)
    assert (layers[-1].m, layers[-1].k, layers[-1].n) == (1, 2048, 1000)
    two = resnet50_layers(batch=2)
    assert two[0].m == 2 * first.m and two[-1].m == 2


def test_network_cycles_throughput():
    spec = load_array_spec("default")
    nc = network_cycles(spec, resnet50_layers(), fmax_mhz=100.0)
    assert nc.cycles == sum(g.cycles for g in nc.layers) - 2 * (len(nc.layers) - 1)
    assert 0.0 < nc.utilisation <= 1.0
    # at most one multi-term MAC per PE per cycle
    assert nc.cycles >= nc.macs / (spec.rows * spec.cols)
    assert nc.images_per_second == pytest.approx(100e6 / nc.cycles)
    assert network_cycles(spec, resnet50_layers()).images_per_second is None


def _tiles(spec, shapes, seed=0):
    from fpxint_hw.hw.vectors import random_tile
    rng = np.random.default_rng(seed)
    return [random_tile(spec, m, rng, k=k, n=n) for m, k, n in shapes]


def test_cycle_model_equals_amaranth_rtl():
    """The model's cycles equal the cycles the generated hardware takes in simulation."""
    from fpxint_hw.hw.driver import run_tiles_amaranth
    spec = dataclasses.replace(load_array_spec("tiny"), depth=8)
    shapes = [(3, 2, 2), (5, 5, 3), (1, 1, 1), (4, 4, 4), (2, 7, 1)]
    run = run_tiles_amaranth(spec, _tiles(spec, shapes))
    model = [gemm_cycles(spec, m, k, n) for m, k, n in shapes]
    assert run.cycles == back_to_back(spec, model)
    assert len(run.passes) == sum(g.passes for g in model)
    sizes = [m for (m, k, n), g in zip(shapes, model) for _ in range(g.passes)]
    assert [p.total for p in run.passes] == [pass_cycles(spec, m) for m in sizes]


@pytest.mark.slow
def test_cycle_model_equals_verilator_on_resnet50_tile():
    """Tiles of ResNet-50 layer sizes (K = 3x3x64, as in layer1) on the default array in
    Verilator: the measured pass cycles equal the model."""
    from fpxint_hw.flow.verilator import run_tiles_verilator_timed, verilator_missing
    if verilator_missing():
        pytest.skip(verilator_missing())
    spec = load_array_spec("default")
    shapes = [(40, 3 * 64, 20), (7, 9, 8)]
    run = run_tiles_verilator_timed(spec, _tiles(spec, shapes, seed=3))
    model = [gemm_cycles(spec, m, k, n) for m, k, n in shapes]
    assert [p.total for p in run.passes] == [pass_cycles(spec, m) for (m, k, n), g in
                                            zip(shapes, model) for _ in range(g.passes)]
    assert run.cycles == back_to_back(spec, model)


# -- area model ----------------------------------------------------------------------------

def test_area_features_by_hand():
    spec = ArraySpec(rows=2, cols=3, w_bits=4, w_terms=2, a_bits=3, a_terms=1, out_bits=4,
                     out_terms=1, m0_bits=16)
    f = area_features(spec, lut_mult_below=10)
    assert f["multipliers"] == 2 * 3 * 2 * 4 * 3       # PEs x lanes x bit pairs
    assert f["requant"] == 3 * (spec.acc_width + spec.product_width + spec.out_width)
    narrow = dataclasses.replace(spec, m0_bits=8)
    assert area_features(narrow)["multipliers"] == f["multipliers"] + 3 * 8 * spec.acc_width
    # more terms, more of everything
    more = dataclasses.replace(spec, a_terms=2)
    g = area_features(more)
    assert all(g[k] > f[k] for k in ("multipliers", "adders", "registers"))


def test_nnls_small():
    a = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    assert nnls_small(a, a @ np.array([2.0, 3.0])) == pytest.approx([2.0, 3.0])
    # unconstrained least squares would make x[1] negative; the best x >= 0 has x[1] = 0
    b = np.array([1.0, -1.0, 0.0])
    x = nnls_small(a, b)
    assert x[1] == 0.0 and x[0] == pytest.approx(0.5)


def _known_points():
    """Six synthesis points made from known coefficients."""
    specs = [ArraySpec(rows=r, cols=r, w_bits=b, a_bits=b, out_bits=b, w_terms=t, a_terms=t,
                       out_terms=t, depth=64)
             for r, b, t in [(2, 2, 1), (2, 4, 2), (4, 3, 2), (4, 4, 1), (3, 2, 3), (4, 4, 3)]]
    true = {"multipliers": 0.9, "adders": 1.4, "requant": 2.5, "control": 120.0}
    pts = []
    for i, s in enumerate(specs):
        f = area_features(s)
        logic = true["control"] + sum(true[k] * f[k] for k in ("multipliers", "adders",
                                                                "requant"))
        pts.append((f"s{i}", s, {"luts": round(logic) - 40, "carries": 20,
                                 "ffs": round(0.8 * f["registers"] + 10)}))
    return specs, pts


def test_fit_recovers_known_coefficients():
    specs, pts = _known_points()
    model = fit_area_model(pts, "ecp5")
    err = model.errors()
    assert err["logic_mape"] < 0.01 and err["ffs_mape"] < 0.01
    assert model.logic_coef["adders"] == pytest.approx(1.4, rel=0.05)
    assert model.ff_coef["registers"] == pytest.approx(0.8, rel=0.02)
    b = model.breakdown(specs[-1])
    assert sum(v for k, v in b.items() if k != "ffs") == pytest.approx(
        model.predict(specs[-1])["logic"])


def test_fit_needs_enough_points():
    with pytest.raises(ValueError, match="at least"):
        fit_area_model([("a", ArraySpec(), {"luts": 1, "carries": 0, "ffs": 1})])


def test_fit_needs_points_for_a_leave_one_out_error():
    """4 coefficients: 6 points leave 5 in every leave-one-out fit (one more than the
    coefficients), so each point gets an out-of-sample prediction; 5 points are refused, as
    their leave-one-out fits would be exact."""
    _, pts = _known_points()
    err = fit_area_model(pts[:6], "ecp5").errors()
    assert all(p["logic_loo"] is not None for p in err["points"])
    assert err["logic_loo_mape"] is not None
    with pytest.raises(ValueError, match="at least 6 synthesis points"):
        fit_area_model(pts[:5], "ecp5")
