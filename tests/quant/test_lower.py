"""Whole-graph expansion: tensor level, requantization multipliers, ranges, overrides,
fidelity that improves with terms."""

from __future__ import annotations

import numpy as np
import pytest

from fpxint_hw.errors import FormatError, InputError
from fpxint_hw.quant import (LayerFormats, activation_ranges, calibrated_ranges,
                              conv_acc_interval, derive_requant, expand_graph)
from fpxint_hw.float_exec import FloatExecutor
from fpxint_hw.graph import fold_batchnorm
from fpxint_hw.intsim import Simulator
from fpxint_hw.series import sqnr_db
from fpxint_hw.spec import SeriesFormat

from nethelpers import tiny_graph


def test_tensor_level_replaces_weights_by_their_series_within_the_bound():
    g = tiny_graph()
    fmt = SeriesFormat(4, 2, per_channel=True)
    te = expand_graph(g, fmt, SeriesFormat(4, 2), "tensor")
    folded = fold_batchnorm(g)
    assert set(te.series) == {n.weight for n in folded.nodes if hasattr(n, "weight")}
    for name, s in te.series.items():
        err = np.abs(te.params[name].astype(np.float64) - folded.params[name])
        assert np.all(err <= s.error_bound() * (1 + 1e-6) + 1e-7)
    x = np.random.default_rng(0).standard_normal((2, *g.input_shape)).astype(np.float32)
    assert te.executor()(x).shape == (2, 5)


@pytest.mark.parametrize("seed", range(20))
def test_derive_requant_multiplier_is_precise_and_fits(seed):
    rng = np.random.default_rng(seed)
    real = rng.uniform(1e-6, 3.0, size=16) * 10.0 ** rng.integers(-4, 2)
    bound = int(rng.integers(1, 1 << 40))
    rq = derive_requant(real, bound, -127, 127)
    m = rq.multiplier
    assert m.max() < 1 << 31 and bound * int(m.max()) < 1 << 62
    mb = min(31, 63 - (bound.bit_length() + 1))
    assert m.max() >= 1 << (mb - 1)                       # the shift keeps max precision
    np.testing.assert_allclose(m / 2.0 ** rq.shift, real, rtol=2.0 ** -(mb - 2), atol=2.0 ** -rq.shift)


def test_conv_acc_interval_is_tight():
    w = np.array([[2, -3, 0], [-1, -1, 5]])
    # channel 0: lo=[2*-4, -3*5] -> -8-15 = -23 ; hi = 2*5 + -3*-4 = 22 ; channel 1: lo = 5*-4 + -1*5*2 = -30
    assert conv_acc_interval(w, -4, 5) == (-30, 33)
    assert conv_acc_interval(w, -4, 5, bias=[1, -2]) == (-32, 31)


def test_calibration_free_ranges_cover_observed_activations_mostly():
    g = tiny_graph()
    x = np.random.default_rng(3).standard_normal((8, *g.input_shape)).astype(np.float32)
    est = activation_ranges(g, 4.0)
    obs = calibrated_ranges(g, x)
    for name in ("r1", "r6", "r2"):
        assert est[name][0] == 0.0 and est[name][1] > 0
        assert obs[name][0] >= 0
    assert est["r6"][1] <= 6.0


def test_override_changes_only_named_layers():
    g = tiny_graph()
    base = expand_graph(g, SeriesFormat(4, 2, per_channel=True), SeriesFormat(4, 2), "layer")
    ov = expand_graph(g, SeriesFormat(4, 2, per_channel=True), SeriesFormat(4, 2), "layer",
                      overrides={"c1": LayerFormats(SeriesFormat(8, 2, per_channel=True),
                                                    SeriesFormat(8, 3)),
                                 "x": LayerFormats(None, SeriesFormat(8, 2))})
    assert ov.layer("r1").w_fmt.bits == 8 and ov.layer("r1").out.fmt.terms == 3
    assert ov.layers[0].out.fmt.bits == 8
    assert ov.layer("c3").w_fmt == base.layer("c3").w_fmt
    with pytest.raises(InputError, match="nope"):
        expand_graph(g, SeriesFormat(), SeriesFormat(), "layer",
                     overrides={"nope": LayerFormats()})
    with pytest.raises(FormatError):
        expand_graph(g, SeriesFormat(), SeriesFormat(), "bits")


def test_relu_outputs_are_unsigned_and_signed_tensors_signed():
    prog = expand_graph(tiny_graph(), SeriesFormat(4, 2, per_channel=True), SeriesFormat(4, 2),
                        "layer")
    assert not prog.layer("r1").out.fmt.signed and prog.layer("r1").out.lo == 0
    assert not prog.layer("r6").out.fmt.signed
    assert prog.layer("cl").out.fmt.signed                # add1 fused with a signed Clip
    assert prog.layer("cl").out.lo < 0 and prog.layer("cl").kind == "add"
    # ReLU6 clamps at 6 in real units
    r6 = prog.layer("r6").out
    assert abs(r6.hi * r6.unit - min(6.0, prog.ranges["r6"][1])) <= r6.unit


def test_fidelity_improves_with_terms():
    g = tiny_graph(1)
    x = np.random.default_rng(1).standard_normal((16, *g.input_shape)).astype(np.float32)
    ref = FloatExecutor(g)(x).astype(np.float64)
    s = []
    for t in (1, 2, 3):
        prog = expand_graph(g, SeriesFormat(4, t, per_channel=True), SeriesFormat(4, t), "layer",
                            calibration=x)
        s.append(sqnr_db(ref, Simulator(prog).logits(x)))
    assert s[0] < s[1] < s[2]
    assert s[2] > 25.0


def test_an_activation_grid_maps_its_largest_magnitude_to_its_top_integer():
    """The step of a grid is range / top integer: the given input range and the given range
    of a ReLU output each end exactly on the grid's last level (255 for 4-bit x 2 terms)."""
    g = tiny_graph()
    ranges = dict(activation_ranges(g, 4.0), r1=(0.0, 3.0))
    prog = expand_graph(g, SeriesFormat(4, 2, per_channel=True), SeriesFormat(4, 2), "layer",
                        input_range=(0.0, 1.0), ranges=ranges)
    first = prog.layers[0].out
    assert (first.lo, first.hi) == (0, 255) and first.unit == 1.0 / 255
    relu = [q.out for q in prog.layers if "r1" in (q.name, q.node)]
    assert relu and relu[0].hi == 255 and relu[0].unit * 255 == pytest.approx(3.0, rel=1e-12)


def test_the_sigma_rule_defaults_to_four_standard_deviations():
    g = tiny_graph()
    fmts = (SeriesFormat(4, 2, per_channel=True), SeriesFormat(4, 2))

    def units(**kw):
        prog = expand_graph(g, *fmts, "layer", range_rule="sigma", **kw)
        return [q.out.unit for q in prog.layers if q.out is not None]

    assert units() == units(range_sigmas=4.0)
    assert units() != units(range_sigmas=3.5)
