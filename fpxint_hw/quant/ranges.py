"""Activation ranges: the real interval each tensor of a network is expected to cover.

Calibration-free by default (:func:`activation_ranges`): per-channel means and standard
deviations are propagated through the graph (a BatchNorm's ``beta`` and ``|gamma|`` give them
exactly for the normalised pre-activation; a layer without one uses ``mean = b + W mu`` and
``var = W^2 sigma^2``; ReLU uses the rectified-Gaussian moments; a residual join adds the
variances of its branches as if independent), and a tensor's range is ``mean +- z * std``
over its channels. :func:`calibrated_ranges` replaces them with the min/max seen on real
inputs. docs/simulator.md states the rule.
"""

from __future__ import annotations

import math

import numpy as np

from ..graph import Add, BatchNorm, Clip, Conv2d, Flatten, Graph, Input, Linear, Relu

__all__ = ["activation_ranges", "calibrated_ranges"]


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


def _moments(graph: Graph, input_std: float) -> dict[str, tuple]:
    """Per-channel ``(mean, std, pre)`` for every node; ``pre`` is the pre-activation
    ``(mean, std)`` of a ReLU/Clip node (None elsewhere)."""
    st: dict[str, tuple] = {}
    p = graph.params
    for n in graph.nodes:
        if isinstance(n, Input):
            c = n.shape[0]
            st[n.name] = (np.zeros(c), np.full(c, float(input_std)), None)
            continue
        mu, sd = st[n.inputs[0]][:2] if n.inputs else (None, None)
        if isinstance(n, BatchNorm):
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
            st[n.name] = (m1 + m2, np.sqrt(s1 * s1 + s2 * s2), None)
        elif isinstance(n, Flatten):
            shp = graph.node(n.inputs[0]).shape
            rep = int(np.prod(shp[1:])) if len(shp) == 3 else 1
            st[n.name] = (np.repeat(mu, rep), np.repeat(sd, rep), None)
        else:                                   # pools: keep the moments
            st[n.name] = (mu, sd, None)
    return st


def activation_ranges(graph: Graph, range_sigmas: float = 4.0,
                      input_std: float = 1.0) -> dict[str, tuple[float, float]]:
    """Calibration-free real range ``(lo, hi)`` of every node's output (no data needed).

    ``graph`` should be the *unfolded* graph when it has BatchNorms (their ``beta`` and
    ``|gamma|`` are the pre-activation moments); the ranges are keyed by node name. Input
    channels are taken as zero-mean with standard deviation ``input_std`` (normalised
    images). A ReLU/Clip output ranges over ``[0, max_c(mean_c + z std_c)]`` of its input
    (capped at the Clip's upper bound); any other tensor over ``mean_c +- z std_c``.
    """
    z = float(range_sigmas)
    out = {}
    for name, (mu, sd, pre) in _moments(graph, input_std).items():
        node = graph.node(name)
        if pre is not None and (isinstance(node, Relu) or node.lo >= 0):
            hi = float(np.max(pre[0] + z * pre[1]))
            if isinstance(node, Clip):
                hi = min(hi, node.hi)
            out[name] = (0.0, max(hi, 1e-6))
        else:
            out[name] = (float(np.min(mu - z * sd)), float(np.max(mu + z * sd)))
    return out


def calibrated_ranges(graph: Graph, x: np.ndarray) -> dict[str, tuple[float, float]]:
    """Real range ``(min, max)`` of every node's output over the float batch ``x``."""
    from ..float_exec import FloatExecutor
    ranges = {}

    def hook(node, val):
        ranges[node.name] = (float(val.min()), float(val.max()))

    FloatExecutor(graph).run(x, hook=hook)
    return ranges
