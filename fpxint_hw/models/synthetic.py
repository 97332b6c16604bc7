"""Deterministic synthetic weights (NOT pretrained) for any builder-defined network.

Convolutions get He-normal weights (std ``sqrt(2 / fan_in)``), linear layers normal weights of
std ``1 / sqrt(fan_in)``, biases zero. Batch-norm affine parameters are drawn (gamma in
[0.8, 1.2], or [0.2, 0.5] on the last BN of a residual branch so the residual stream grows
slowly as in trained ResNets; beta ~ N(0, 0.1)), and the running statistics are *calibrated*:
one float pass over a seeded batch of smooth random images sets each BN's running mean and
variance to those of its input, so every BN output has the chosen per-channel mean and scale
and activations stay in a realistic range through the whole depth. Everything derives from
``seed`` through numpy's PCG64 generator.
"""

from __future__ import annotations

import numpy as np

from ..graph import BatchNorm, Graph
from .builder import GraphBuilder

__all__ = ["synthetic_weights", "calibration_batch"]


def calibration_batch(shape: tuple[int, ...], n: int = 2, seed: int = 0) -> np.ndarray:
    """``n`` smooth random images of per-sample ``shape``, roughly zero mean, unit variance.

    Sums of a few bilinearly upsampled noise octaves (spatially correlated like photos after
    normalisation); float32, shape ``(n, *shape)``.
    """
    rng = np.random.default_rng(seed)
    if len(shape) != 3:
        return rng.standard_normal((n, *shape)).astype(np.float32)
    c, h, w = shape
    out = np.zeros((n, c, h, w), np.float64)
    for octave in (4, 16, 64):
        g = rng.standard_normal((n, c, min(octave, h), min(octave, w)))
        ys = np.linspace(0, g.shape[2] - 1, h)
        xs = np.linspace(0, g.shape[3] - 1, w)
        y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
        y1, x1 = np.minimum(y0 + 1, g.shape[2] - 1), np.minimum(x0 + 1, g.shape[3] - 1)
        fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
        a = g[:, :, y0][:, :, :, x0] * (1 - fx) + g[:, :, y0][:, :, :, x1] * fx
        bb = g[:, :, y1][:, :, :, x0] * (1 - fx) + g[:, :, y1][:, :, :, x1] * fx
        out += a * (1 - fy) + bb * fy
    out = (out - out.mean()) / out.std()
    return out.astype(np.float32)


def synthetic_weights(builder: GraphBuilder, seed: int = 0,
                      calib: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Seeded weights for every parameter ``builder`` records (torch-style names).

    Parameters
    ----------
    builder : GraphBuilder
        The network definition.
    seed : int
        Seed of all draws (weights and the calibration batch).
    calib : array (N, *input_shape), optional
        Calibration batch; default :func:`calibration_batch` of 2 images.
    """
    from ..float_exec import FloatExecutor

    rng = np.random.default_rng(seed)
    w: dict[str, np.ndarray] = {}
    for name, shp in builder.shapes.items():
        if name.endswith(".running_mean"):
            w[name] = np.zeros(shp, np.float32)
        elif name.endswith(".running_var"):
            w[name] = np.ones(shp, np.float32)
        elif len(shp) == 4:
            fan_in = shp[1] * shp[2] * shp[3]
            w[name] = (rng.standard_normal(shp) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        elif len(shp) == 2:
            w[name] = (rng.standard_normal(shp) / np.sqrt(shp[1])).astype(np.float32)
        else:
            w[name] = np.zeros(shp, np.float32)
    for node in builder.nodes:
        if isinstance(node, BatchNorm):
            c = builder.shapes[node.weight][0]
            lo, hi = (0.2, 0.5) if node.name in builder.branch_ends else (0.8, 1.2)
            w[node.weight] = rng.uniform(lo, hi, c).astype(np.float32)
            w[node.bias] = (0.1 * rng.standard_normal(c)).astype(np.float32)
    graph = builder.graph(w, source="synthetic weights", fold_bn=False)
    if calib is None:
        calib = calibration_batch(graph.input_shape, 2, seed)
    feeds = {n.inputs[0]: n for n in graph.nodes if isinstance(n, BatchNorm)}

    def hook(node, value):
        bn = feeds.get(node.name)
        if bn is not None:
            axes = tuple(range(value.ndim - 1))
            w[bn.mean] = value.mean(axis=axes, dtype=np.float64).astype(np.float32)
            w[bn.var] = value.var(axis=axes, dtype=np.float64).astype(np.float32)

    FloatExecutor(graph, params=w).run(calib, hook=hook)
    return w
