"""Activation ranges: the Laplace (and Laplace-mixture) squared-error optimum against
numerical integration, the mixture taken exactly above its resolution threshold, ranges that
widen with the resolution while the step still shrinks, residual joins bounded whatever the
correlation, and the provable cap (a proven tensor is never clamped)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from fpxint_hw.errors import FormatError, InputError
from fpxint_hw.float_exec import FloatExecutor
from fpxint_hw.graph import Add, BatchNorm, Conv2d, Graph, Input, Linear, Relu
from fpxint_hw.quant import FixedRanges, StatisticalRanges, expand_graph
from fpxint_hw.quant.ranges import (WIDE_TAILS, WIDE_TAILS_ABOVE, _laplace_tail,
                                    laplace_mse_clip)
from fpxint_hw.spec import SeriesFormat

from nethelpers import tiny_graph


def _laplace_pdf(x, mu, b):
    return np.exp(-np.abs(x - mu) / b) / (2 * b)


def _integral(f, x):
    return float(np.sum((f[1:] + f[:-1]) * np.diff(x)) / 2)


@pytest.mark.parametrize("d", [-3.0, -0.4, 0.0, 0.7, 4.0])
def test_laplace_tail_is_the_clipped_squared_error(d):
    b = 0.8
    y = np.linspace(-60, 60, 400_001)
    want = _integral(np.maximum(y - d, 0.0) ** 2 * _laplace_pdf(y, 0.0, b), y)
    assert float(_laplace_tail(np.array(d), b)) == pytest.approx(want, rel=1e-6, abs=1e-12)


def _mse_by_integration(alpha, means, stds, levels, two_sided, spread=((1.0, 1.0),)):
    """Mean over channels of E[(clamp(x) - x)^2] by quadrature (x a Laplace scale mixture
    with ``(factor, probability)`` pairs ``spread``), plus the rounding noise."""
    total = 0.0
    for mu, sd in zip(means, stds):
        b = sd / math.sqrt(2)
        top = max(f for f, _ in spread)
        x = np.linspace(mu - 80 * b * top, mu + 80 * b * top, 400_001)
        lo = -alpha if two_sided else -np.inf
        err = (np.clip(x, lo, alpha) - x) ** 2
        pdf = sum(p * _laplace_pdf(x, mu, f * b) for f, p in spread)
        total += _integral(err * pdf, x)
    return total / len(means) + (alpha / levels) ** 2 / 12


@pytest.mark.parametrize("levels,two_sided,shift", [(15, False, 0.0), (255, False, 0.0),
                                                     (4095, True, 0.0), (4095, True, -2.0),
                                                     (65535, False, 0.0)])
def test_mse_clip_minimises_the_expected_error(levels, two_sided, shift):
    means, stds = np.array([0.3, -0.2, 1.0]) + shift, np.array([1.0, 0.5, 2.0])
    a = laplace_mse_clip(means, stds, levels, two_sided)
    at = _mse_by_integration(a, means, stds, levels, two_sided)
    for f in (0.97, 1.03):                    # 3 % either way costs more
        assert _mse_by_integration(a * f, means, stds, levels, two_sided) > at


@pytest.mark.parametrize("levels,two_sided", [(511, True), (4095, False), (65535, True)])
def test_mixture_clip_minimises_the_mixture_error_and_is_wider(levels, two_sided):
    means, stds = np.array([0.3, -0.2, 1.0]), np.array([1.0, 0.5, 2.0])
    a = laplace_mse_clip(means, stds, levels, two_sided, spread=WIDE_TAILS)
    at = _mse_by_integration(a, means, stds, levels, two_sided, WIDE_TAILS)
    for f in (0.97, 1.03):
        assert _mse_by_integration(a * f, means, stds, levels, two_sided, WIDE_TAILS) > at
    assert a > 1.1 * laplace_mse_clip(means, stds, levels, two_sided)


def test_rule_takes_the_wide_tails_exactly_above_the_threshold():
    rule = StatisticalRanges(_bn_relu_graph(), "mse")
    grid = SeriesFormat(4, 3, signed=False)
    mu, sd = rule.stats["r"][2]                       # the ReLU's pre-activation moments
    for levels, spread in ((WIDE_TAILS_ABOVE, ((1.0, 1.0),)),
                           (WIDE_TAILS_ABOVE + 1, WIDE_TAILS)):
        want = laplace_mse_clip(mu, sd, levels, two_sided=False, spread=spread)
        assert rule("r", grid, levels=levels) == (0.0, want)


def _bn_relu_graph(c=6):
    """x -> conv -> BatchNorm -> ReLU with known BatchNorm moments (beta, |gamma|)."""
    rng = np.random.default_rng(1)
    p = {"w": rng.standard_normal((c, 3, 3, 3)) * 0.3, "g": np.linspace(0.5, 2.0, c),
         "b": np.linspace(-0.5, 0.5, c), "m": np.zeros(c), "v": np.ones(c)}
    nodes = (Input(name="x", shape=(3, 8, 8)),
             Conv2d(name="c", inputs=("x",), weight="w", padding=1),
             BatchNorm(name="bn", inputs=("c",), weight="g", bias="b", mean="m", var="v"),
             Relu(name="r", inputs=("bn",)))
    return Graph(nodes, p, name="bnrelu")


def test_mse_range_widens_with_terms_while_the_step_shrinks():
    rule = StatisticalRanges(_bn_relu_graph(), "mse")
    his, steps = [], []
    for t in range(1, 7):
        grid = SeriesFormat(4, t, signed=False)
        lo, hi = rule("r", grid)
        assert lo == 0.0
        his.append(hi)
        steps.append(hi / grid.combined_range[1])
    assert all(a < b for a, b in zip(his, his[1:])), his
    # a term buys 4 bits: at most 2 of them go to headroom, so the step shrinks >= 4x
    assert all(b <= a / 4 for a, b in zip(steps, steps[1:])), steps


def test_sigma_rule_is_mean_plus_z_std_at_any_resolution():
    g = _bn_relu_graph()
    rule = StatisticalRanges(g, "sigma", range_sigmas=3.0)
    want = float(np.max(g.params["b"] + 3.0 * np.abs(g.params["g"])))
    for t in (1, 4):
        assert rule("r", SeriesFormat(4, t, signed=False)) == (0.0, pytest.approx(want))
    with pytest.raises(FormatError, match="range rule"):
        StatisticalRanges(g, "max")


def test_residual_join_std_bounds_correlated_branches():
    """A join of a branch with itself doubles its std: the mse rule's bound (sum of stds)
    covers it, the independence rule (root sum of squares) does not."""
    g = _bn_relu_graph()
    nodes = g.nodes + (Add(name="twice", inputs=("bn", "bn")),)
    g2 = Graph(nodes, g.params, name="twice")
    x = np.random.default_rng(0).standard_normal((64, 3, 8, 8)).astype(np.float32)
    seen = {}
    FloatExecutor(g2).run(x, hook=lambda n, v: seen.__setitem__(n.name, v))
    actual = float(seen["twice"].reshape(-1, 6).std(0).max())
    bn_std = float(seen["bn"].reshape(-1, 6).std(0).max())
    grid = SeriesFormat(4, 3)
    mse = StatisticalRanges(g2, "mse")
    sigma = StatisticalRanges(g2, "sigma", range_sigmas=1.0)
    assert mse.stats["twice"][1].max() == pytest.approx(2 * np.abs(g.params["g"]).max())
    assert sigma.stats["twice"][1].max() == pytest.approx(
        math.sqrt(2) * np.abs(g.params["g"]).max())
    assert actual == pytest.approx(2 * bn_std, rel=1e-4)
    assert mse("twice", grid)[1] > sigma("twice", grid)[1]


def test_fixed_ranges_name_the_missing_node():
    with pytest.raises(InputError, match="'nope'"):
        FixedRanges({"a": (0, 1)})("nope", SeriesFormat())


def _inputs_in_range(shape, lo, hi, n, seed=0):
    """Inputs that reach the corners of the input range (uniform, plus all-lo/all-hi and
    random signs at the extremes)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(lo, hi, (n, *shape))
    x[0], x[1] = lo, hi
    x[2:6] = np.where(rng.random((4, *shape)) < 0.5, lo, hi)
    return x.astype(np.float32)


def test_proven_tensors_are_never_clamped():
    """At many terms the mse ranges reach the provable interval of some tensors; the float
    network's values there stay inside the grid for every input in the input range."""
    g = tiny_graph()
    prog = expand_graph(g, SeriesFormat(4, 6, per_channel=True), SeriesFormat(4, 6), "layer",
                        input_range=(-1.0, 1.0))
    assert prog.proven, "no tensor reached its bound at 6 terms"
    seen = {}
    x = _inputs_in_range(g.input_shape, -1.0, 1.0, 64)
    FloatExecutor(prog.graph).run(x, hook=lambda n, v: seen.__setitem__(n.name, v))
    for q in prog.layers:
        if q.name not in prog.proven:
            continue
        lo, hi = q.out.lo * q.out.unit, q.out.hi * q.out.unit
        v = seen[q.name]
        tol = 1e-5 * max(abs(lo), abs(hi))
        assert v.min() >= lo - tol and v.max() <= hi + tol, q.name


def test_cap_is_the_interval_bound_and_tight():
    """x in [-1, 1] -> Linear(+bias) -> ReLU: with a given range far wider, the output grid
    ends at max_c(b_c + sum_k |w_ck|), and the input x_k = sign(w_ck) reaches it."""
    rng = np.random.default_rng(4)
    w, b = rng.standard_normal((3, 5)), np.array([0.5, -2.0, 1.0])
    g = Graph((Input(name="x", shape=(5,)), Linear(name="fc", inputs=("x",), weight="w",
                                                   bias="b"),
               Relu(name="r", inputs=("fc",)), Linear(name="out", inputs=("r",), weight="w2")),
              {"w": w, "b": b, "w2": rng.standard_normal((2, 3))}, name="lin")
    prog = expand_graph(g, SeriesFormat(4, 6, per_channel=True), SeriesFormat(4, 6), "layer",
                        ranges={"x": (-1, 1), "r": (0, 1e6)})
    want = np.max(b + np.abs(w).sum(axis=1))
    q = prog.layer("r")
    assert "r" in prog.proven
    assert q.out.hi * q.out.unit == pytest.approx(want, rel=1e-4)
    c = int(np.argmax(b + np.abs(w).sum(axis=1)))
    worst = np.sign(w[c])[None].astype(np.float32)
    seen = {}
    FloatExecutor(prog.graph).run(worst, hook=lambda n, v: seen.__setitem__(n.name, v))
    assert seen["r"].max() == pytest.approx(want, rel=1e-5)


def test_range_never_exceeds_the_provable_interval():
    """The cap: with a huge given range, every conv/add output grid is its bound."""
    g = tiny_graph()
    folded_names = [n.name for n in g.nodes]
    prog = expand_graph(g, SeriesFormat(4, 2, per_channel=True), SeriesFormat(4, 2), "layer",
                        ranges={k: (-1e6, 1e6) for k in folded_names}, input_range=(-1, 1))
    capped = {q.name for q in prog.gemm_layers() if q.out is not None}
    assert capped and capped <= prog.proven
    for name in capped:
        assert max(abs(v) for v in prog.ranges[name]) < 1e3


def test_bias_too_wide_for_its_channel_coarsens_that_channel_only():
    """A channel with tiny weights and a real bias would need a bias wider than int64 on its
    fine accumulator grid: its weight grid is coarsened until its bias is no wider than the
    layer's widest weighted sum; the other channels keep theirs."""
    g = _bn_relu_graph()
    p = dict(g.params)
    p["w"] = p["w"].copy()
    p["w"][2] *= 1e-9
    g2 = dataclasses.replace(g, params=p)
    fw, fa = SeriesFormat(4, 6, per_channel=True), SeriesFormat(4, 6)
    prog = expand_graph(g2, fw, fa, "layer", input_range=(-1, 1))
    ref = expand_graph(g, fw, fa, "layer", input_range=(-1, 1))
    q, q0 = prog.layer("r"), ref.layer("r")
    xin = prog.tensors()["x"]
    widest = max(np.abs(q0.w_combined()[c]).sum() for c in range(6)) * xin.maxabs
    assert abs(int(q.bias[2])) <= 2 * widest          # not the 2^70 its fine grid needs
    keep = [c for c in range(6) if c != 2]
    assert np.array_equal(q.w_digits[:, keep], q0.w_digits[:, keep])
    assert q.w_unit[2] > 1e3 * q0.w_unit[2] * 1e-9
