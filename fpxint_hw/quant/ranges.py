"""Activation ranges: the real interval each tensor of a network is expected to cover.

A range is asked for per tensor *and grid*: ``rule(name, grid, levels=None)`` returns the
real ``(lo, hi)`` for an activation grid of format ``grid`` (its largest integer, ``2^(bT) -
1`` for an unsigned T-term activation, is the resolution; ``levels`` gives it instead for a
grid that is not the format's own, e.g. 127 steps either side of the zero point of an
unsigned ``[0, 255]``). Finer grids afford wider ranges, which is what lets the layer-level
series keep converging as terms are added (docs/theory.md section 5).

Calibration-free rules (:class:`StatisticalRanges`) start from per-channel means and standard
deviations propagated through the graph: a BatchNorm's ``beta`` and ``|gamma|`` give them for
the normalised pre-activation; a layer without one uses ``mean = b + W mu`` and
``var = W^2 sigma^2``; ReLU uses the rectified-Gaussian moments. From them

* ``"mse"`` (the default): the range that minimises the expected squared error of the
  tensor -- clipping plus rounding on the grid -- when every channel has Laplace tails with
  its mean and standard deviation; a residual join's standard deviation is the sum of its
  branches' (a bound whatever their correlation). It widens with the resolution. On grids
  finer than 8 bits (:data:`WIDE_TAILS_ABOVE`) the tails are a mixture
  (:data:`WIDE_TAILS`) that allows a channel to spread twice as wide as its statistics say:
  there a mis-estimated spread, not rounding, is what the error is made of;
* the mobile-network ops: a one-input function ``f`` (HardSigmoid, HardSwish, Sigmoid,
  LeakyRelu, PRelu, Gelu) gives the Gaussian moments of ``f(X)`` (Gauss-Hermite); a
  Scale ``w mean + b`` and ``|w| std``; a Mul the moments of a product of independent
  factors; a Concat its inputs' channels side by side; a Pad keeps its input's. The lowering
  then caps each range at the op's provable interval (``[0, 1]`` after a HardSigmoid);
* the transformer ops: a LayerNorm resets to ``(beta, |gamma|)`` like a BatchNorm; a Softmax
  block of S values has mean ``1/S`` and the spread of a one-hot row; a MatMul the moments
  of a sum of ``inner`` products of independent factors (per head);
* ``"sigma"``: ``mean_c +- z std_c`` over the channels (``z = range_sigmas``), whatever the
  resolution, with a residual join's variances added as if independent (the rule before
  ``"mse"``; tighter at one term).

:class:`FixedRanges` serves given ranges, e.g. the min/max of :func:`calibrated_ranges`. The
lowering caps every range at the tensor's provable interval bound (quant/lower.py).
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from ..errors import FormatError, InputError
from ..spec import SeriesFormat
from ..graph import (Add, BatchNorm, Clip, Concat, Conv2d, Flatten, Gelu, Graph, HardSigmoid,
                     HardSwish, Input, LayerNorm, LeakyRelu, Linear, MatMul, Mul, PRelu, Relu,
                     Scale, Sigmoid, Slice, Softmax, channels)

__all__ = ["RANGE_RULES", "StatisticalRanges", "FixedRanges", "activation_ranges",
           "calibrated_ranges", "laplace_mse_clip", "WIDE_TAILS", "WIDE_TAILS_ABOVE"]

#: The calibration-free range rules (see the module docstring); the first is the default.
RANGE_RULES = ("mse", "sigma")

#: ``(spread factor, probability)`` of the Laplace scale mixture the ``"mse"`` rule assumes
#: on fine grids: a channel spreads as its statistics say with probability 0.9, twice as
#: wide with 0.1 (statistics from other data than the inputs; docs/theory.md section 4).
WIDE_TAILS = ((1.0, 0.9), (2.0, 0.1))
#: Grids with more levels than this (finer than 8 bits: from three 4-bit terms on) take
#: :data:`WIDE_TAILS`; coarser ones one Laplace, where rounding dominates the error and the
#: wider range would cost more than it protects.
WIDE_TAILS_ABOVE = 256
#: One Laplace with the statistics' spread.
_ONE_LAPLACE = ((1.0, 1.0),)


def _phi(z):
    return np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)


def _Phi(z):
    from math import erf
    return 0.5 * (1.0 + np.vectorize(erf)(z / math.sqrt(2.0)))


def _relu_moments(mu, sd):
    """Mean and standard deviation of max(X, 0) for X ~ N(mu, sd^2), per channel."""
    sd = np.maximum(sd, 1e-12)
    z = mu / sd
    p, d = _Phi(z), _phi(z)
    m1 = mu * p + sd * d
    m2 = (mu * mu + sd * sd) * p + mu * sd * d
    return m1, np.sqrt(np.maximum(m2 - m1 * m1, 0.0))


def _moments(graph: Graph, input_std: float, correlated_joins: bool) -> dict[str, tuple]:
    """Per-channel ``(mean, std, pre)`` for every node; ``pre`` is the pre-activation
    ``(mean, std)`` of a ReLU/Clip node (None elsewhere). A residual join's std is the sum of
    its branches' (``correlated_joins``: true whatever their correlation) or their root sum
    of squares (true when independent)."""
    st: dict[str, tuple] = {}
    p = graph.params
    for n in graph.nodes:
        if isinstance(n, Input):
            c = channels(n.shape)                   # F of a (T, F) sequence
            st[n.name] = (np.zeros(c), np.full(c, float(input_std)), None)
            continue
        mu, sd = st[n.inputs[0]][:2] if n.inputs else (None, None)
        if isinstance(n, (BatchNorm, LayerNorm)):
            st[n.name] = (p[n.bias].astype(np.float64), np.abs(p[n.weight].astype(np.float64)),
                          None)
        elif isinstance(n, (Conv2d, Linear)):
            w = p[n.weight].astype(np.float64)
            b = p[n.bias].astype(np.float64) if n.bias is not None else 0.0
            if isinstance(n, Conv2d):
                g = n.groups
                o, cg = w.shape[:2]
                mu_in = mu.reshape(g, cg)
                var_in = (sd ** 2).reshape(g, cg)
                grp = np.arange(o) // (o // g)
                mean = b + np.einsum("ocij,oc->o", w, mu_in[grp])
                var = np.einsum("ocij,oc->o", w * w, var_in[grp])
            else:
                mean = b + w @ mu
                var = (w * w) @ (sd ** 2)
            st[n.name] = (mean, np.sqrt(var), None)
        elif isinstance(n, Relu):
            m, s = _relu_moments(mu, sd)
            st[n.name] = (m, s, (mu, sd))
        elif isinstance(n, Clip):
            m, s = _relu_moments(mu, sd) if n.lo >= 0 else (mu, sd)
            st[n.name] = (np.minimum(m, n.hi), s, (mu, sd))
        elif isinstance(n, Add):
            (m1, s1), (m2, s2) = st[n.inputs[0]][:2], st[n.inputs[1]][:2]
            # any correlation: std(X + Y) <= std(X) + std(Y); independent: the root sum
            sd = s1 + s2 if correlated_joins else np.sqrt(s1 * s1 + s2 * s2)
            st[n.name] = (m1 + m2, sd, None)
        elif isinstance(n, Flatten):
            shp = graph.node(n.inputs[0]).shape
            rep = int(np.prod(shp[1:])) if len(shp) == 3 else 1
            st[n.name] = (np.repeat(mu, rep), np.repeat(sd, rep), None)
        elif isinstance(n, Softmax):
            # in [0, 1], mean 1/S; the spread of a peaked (one-hot) row: sqrt(p (1 - p))
            s = graph.node(n.name).shape[-1] // n.groups
            c = mu.shape[0]
            st[n.name] = (np.full(c, 1.0 / s), np.full(c, math.sqrt((1.0 / s) * (1 - 1.0 / s))),
                          None)
        elif isinstance(n, MatMul):
            st[n.name] = _matmul_moments(graph, n, st[n.inputs[0]][:2], st[n.inputs[1]][:2]) \
                + (None,)
        elif isinstance(n, (HardSigmoid, HardSwish, Sigmoid, LeakyRelu, PRelu, Gelu)):
            st[n.name] = _elementwise_moments(n, p, mu, sd) + (None,)
        elif isinstance(n, Scale):
            w = np.broadcast_to(p[n.weight].astype(np.float64).reshape(-1), mu.shape)
            b = (np.broadcast_to(p[n.bias].astype(np.float64).reshape(-1), mu.shape)
                 if n.bias is not None else 0.0)
            st[n.name] = (w * mu + b, np.abs(w) * sd, None)
        elif isinstance(n, Mul):
            (m1, s1), (m2, s2) = st[n.inputs[0]][:2], st[n.inputs[1]][:2]
            # independent factors: Var(XY) = s1^2 s2^2 + s1^2 m2^2 + s2^2 m1^2
            st[n.name] = (m1 * m2, np.sqrt(s1 * s1 * s2 * s2 + s1 * s1 * m2 * m2
                                           + s2 * s2 * m1 * m1), None)
        elif isinstance(n, Slice) and len(graph.node(n.inputs[0]).shape) == 3:
            st[n.name] = (mu[n.start:n.stop], sd[n.start:n.stop], None)    # channels
        elif isinstance(n, Concat):
            st[n.name] = (np.concatenate([st[i][0] for i in n.inputs]),
                          np.concatenate([st[i][1] for i in n.inputs]), None)
        else:                                   # pools, pad: keep the moments
            st[n.name] = (mu, sd, None)
    return st


def _matmul_moments(graph: Graph, n, a, b):
    """Per output feature ``(mean, std)`` of a per-head :class:`MatMul`: a sum of ``inner``
    products of independent factors (``Var(XY) = sx^2 sy^2 + sx^2 my^2 + sy^2 mx^2``)."""
    (ma, sa), (mb, sb) = a, b
    h = n.heads
    if n.transpose_b:                  # (T, H*d) x (S, H*d) -> (T, H*S): per head, all s
        s_len = graph.node(n.inputs[1]).shape[0]
        mean = (ma * mb).reshape(h, -1).sum(axis=1)
        var = (sa * sa * sb * sb + sa * sa * mb * mb + sb * sb * ma * ma).reshape(h, -1).sum(axis=1)
        return np.repeat(mean, s_len), np.sqrt(np.repeat(var, s_len))
    s_len = graph.node(n.inputs[1]).shape[0]      # (T, H*S) x (S, H*d) -> (T, H*d)
    ma, sa = ma.reshape(h, s_len, 1), sa.reshape(h, s_len, 1)
    mb, sb = mb.reshape(h, 1, -1), sb.reshape(h, 1, -1)
    mean = (ma * mb).sum(axis=1)
    var = (sa * sa * sb * sb + sa * sa * mb * mb + sb * sb * ma * ma).sum(axis=1)
    return mean.reshape(-1), np.sqrt(var.reshape(-1))


def _elementwise_function(n, params, channels: int):
    """The float function of a one-input elementwise node, on arrays ``(channels, ...)``."""
    if isinstance(n, HardSigmoid):
        return lambda x: np.clip(n.alpha * x + n.beta, 0.0, 1.0)
    if isinstance(n, HardSwish):
        return lambda x: x * np.clip(x / 6.0 + 0.5, 0.0, 1.0)
    if isinstance(n, Sigmoid):
        return lambda x: 0.5 * (1.0 + np.tanh(0.5 * x))
    if isinstance(n, Gelu):
        erf = np.vectorize(math.erf, otypes=[np.float64])
        return lambda x: 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))
    slope = (np.float64(n.alpha) if isinstance(n, LeakyRelu)
             else np.broadcast_to(params[n.slope].astype(np.float64).reshape(-1),
                                  (channels,)).reshape(-1, 1))
    return lambda x: np.where(x >= 0, x, slope * x)


#: Gauss-Hermite nodes and weights (probabilists', 64 points) for Gaussian expectations.
_HERMITE = np.polynomial.hermite_e.hermegauss(64)


def _elementwise_moments(n, params, mu, sd):
    """``(mean, std)`` of ``f(X)`` for a one-input function ``f`` and ``X ~ N(mu, sd^2)`` per
    channel, as the rectified-Gaussian moments of a ReLU are (64-point Gauss-Hermite
    quadrature: the kinks of the hard functions cost a few parts in a thousand)."""
    x, w = _HERMITE
    w = w / w.sum()
    f = _elementwise_function(n, params, mu.shape[0])
    vals = f(mu.reshape(-1, 1) + sd.reshape(-1, 1) * x)
    m1 = vals @ w
    m2 = (vals * vals) @ w
    return m1, np.sqrt(np.maximum(m2 - m1 * m1, 0.0))


def _laplace_tail(d, b):
    """``E[(Y - d)_+^2]`` for ``Y ~ Laplace(0, b)``: the squared error a clamp at ``d`` leaves
    on one side (any real ``d``)."""
    dp = np.maximum(d, 0.0)
    above = b * b * np.exp(-dp / b)
    below = d * d + 2 * b * b - b * b * np.exp(np.minimum(d, 0.0) / b)
    return np.where(d >= 0, above, below)


def laplace_mse_clip(mean, std, levels: int, two_sided: bool,
                     spread=_ONE_LAPLACE) -> float:
    """The clamp ``alpha > 0`` that minimises the expected squared error of one tensor on a
    grid of ``levels`` steps of ``alpha / levels`` (``[0, alpha]`` one-sided, ``[-alpha,
    alpha]`` two-sided), when channel ``c`` is Laplace with ``mean[c]`` and ``std[c]``: the
    mean over channels of the clipping error, plus the rounding noise
    ``(alpha / levels)^2 / 12``. Grows with ``levels``: a finer grid affords more headroom.

    ``spread``: ``(factor, probability)`` pairs of a scale mixture (probabilities summing to
    1): channel ``c`` is Laplace with standard deviation ``factor * std[c]`` with that
    probability (:data:`WIDE_TAILS`); the default is one Laplace.
    """
    mean = np.asarray(mean, dtype=np.float64).reshape(-1, 1)
    b = np.maximum(np.asarray(std, dtype=np.float64).reshape(-1, 1), 1e-12) / math.sqrt(2)
    top = float(np.max(np.abs(mean) + 80 * b * max(f for f, _ in spread)))

    def error(alpha):
        clip = 0.0
        for factor, prob in spread:
            side = _laplace_tail(alpha - mean, factor * b)
            if two_sided:
                side = side + _laplace_tail(alpha + mean, factor * b)
            clip = clip + prob * side
        return clip.mean(axis=0) + (alpha / levels) ** 2 / 12.0

    alpha = np.geomspace(top * 1e-5, top, 96)          # coarse, then around the best
    i = int(np.argmin(error(alpha)))
    alpha = np.geomspace(alpha[max(i - 1, 0)], alpha[min(i + 1, alpha.size - 1)], 96)
    return float(alpha[int(np.argmin(error(alpha)))])


class StatisticalRanges:
    """Calibration-free ranges (no data): ``ranges(name, grid, levels=None) -> (lo, hi)``.

    Parameters
    ----------
    graph : Graph
        The *unfolded* graph when it has BatchNorms (their ``beta`` and ``|gamma|`` are the
        pre-activation moments).
    rule : {"mse", "sigma"}
        See the module docstring.
    range_sigmas : float > 0
        The ``"sigma"`` rule's ``z``.
    input_std : float > 0
        Standard deviation assumed for every input channel (zero mean: normalised images).
    """

    def __init__(self, graph: Graph, rule: str = "mse", range_sigmas: float = 4.0,
                 input_std: float = 1.0):
        if rule not in RANGE_RULES:
            raise FormatError(f"range rule must be one of {', '.join(RANGE_RULES)}, got "
                              f"{rule!r}")
        self.graph, self.rule, self.z = graph, rule, float(range_sigmas)
        self.stats = _moments(graph, input_std, correlated_joins=rule == "mse")
        self.alias: dict[str, str] = {}

    def __call__(self, name: str, grid: SeriesFormat,
                 levels: int | None = None) -> tuple[float, float]:
        levels = grid.combined_range[1] if levels is None else int(levels)
        name = self.alias.get(name, name)
        if name not in self.stats:
            raise InputError(f"no activation statistics for node {name!r}")
        mu, sd, pre = self.stats[name]
        node = self.graph.node(name)
        one_sided = pre is not None and (isinstance(node, Relu) or node.lo >= 0)
        if one_sided:
            mu, sd = pre
        if self.rule == "mse":
            tails = WIDE_TAILS if levels > WIDE_TAILS_ABOVE else _ONE_LAPLACE
            a = laplace_mse_clip(mu, sd, levels, two_sided=not one_sided, spread=tails)
            lo, hi = (0.0, a) if one_sided else (-a, a)
        elif one_sided:
            lo, hi = 0.0, float(np.max(mu + self.z * sd))
        else:
            lo, hi = float(np.min(mu - self.z * sd)), float(np.max(mu + self.z * sd))
        if one_sided and isinstance(node, Clip):
            hi = min(hi, node.hi)
        return lo, max(hi, 1e-6)


class FixedRanges:
    """Given real ranges, whatever the resolution: ``ranges(name, grid, levels) -> (lo, hi)``."""

    def __init__(self, ranges: Mapping[str, tuple[float, float]]):
        self.ranges = {k: (float(v[0]), float(v[1])) for k, v in ranges.items()}
        self.alias: dict[str, str] = {}

    def __call__(self, name: str, grid: SeriesFormat,
                 levels: int | None = None) -> tuple[float, float]:
        key = self.alias.get(name, name)
        if key not in self.ranges:
            raise InputError(f"no activation range for node {name!r}")
        return self.ranges[key]


def activation_ranges(graph: Graph, range_sigmas: float = 4.0,
                      input_std: float = 1.0) -> dict[str, tuple[float, float]]:
    """The ``"sigma"`` rule's real range ``(lo, hi)`` of every node's output (no data needed):
    a ReLU/Clip output over ``[0, max_c(mean_c + z std_c)]`` of its input (capped at the
    Clip's upper bound), any other tensor over ``mean_c +- z std_c``."""
    rule = StatisticalRanges(graph, "sigma", range_sigmas, input_std)
    grid = SeriesFormat(2, 1)
    return {n.name: rule(n.name, grid) for n in graph.nodes}


def calibrated_ranges(graph: Graph, x: np.ndarray) -> dict[str, tuple[float, float]]:
    """Real range ``(min, max)`` of every node's output over the float batch ``x``."""
    from ..float_exec import FloatExecutor
    ranges = {}

    def hook(node, val):
        ranges[node.name] = (float(val.min()), float(val.max()))

    FloatExecutor(graph).run(x, hook=hook)
    return ranges
