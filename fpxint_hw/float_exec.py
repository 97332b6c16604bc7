"""Float32 reference executor for :class:`~fpxint_hw.graph.Graph` (numpy, im2col + BLAS).

Inputs and every returned tensor are batch-first NCHW (``(N, C, H, W)``), ``(N, F)`` or,
for sequences, ``(N, T, F)``; only 4-axis (feature map) tensors change layout inside.
Inside, feature maps are kept channels-last (NHWC) so that a convolution is one matrix
product of its im2col patches with the reordered weight and needs no transposes: a 1x1
stride-1 convolution multiplies the activation in place, a k x k one gathers k*k shifted
views, a depthwise one sums k*k shifted products, and a grouped one runs one batched
matrix product over the groups. Nothing loops over pixels or channels in Python.

Example
-------
>>> from fpxint_hw.float_exec import FloatExecutor
>>> ex = FloatExecutor(graph)                          # doctest: +SKIP
>>> logits = ex(x)                                     # doctest: +SKIP
>>> logits, acts = ex.run(x, capture="all")            # doctest: +SKIP
>>> acts["layer1.0.conv1"].shape                       # doctest: +SKIP
(1, 64, 56, 56)
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .errors import InputError
from .graph import (Add, AvgPool, BatchNorm, Clip, Concat, Conv2d, Flatten, Gelu,
                    GlobalAvgPool, Graph, HardSigmoid, HardSwish, Input, LayerNorm, LeakyRelu,
                    Linear, MatMul, MaxPool, Mul, Node, Pad, PRelu, Relu, Scale, Sigmoid,
                    Slice, Softmax, Upsample, ZeroInsert)

__all__ = ["FloatExecutor", "run_float", "float_activations", "to_nchw", "to_nhwc"]


def to_nchw(x: np.ndarray) -> np.ndarray:
    """An internal channels-last tensor as a contiguous batch-first NCHW array ((N, F) and
    (N, T, F) pass through: they are the same inside and out)."""
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if x.ndim == 4 else x


def _slice(node: Slice, x: np.ndarray) -> np.ndarray:
    """Channels (last axis of an internal NHWC map) or tokens (axis 1 of (N, T, F))."""
    if x.ndim == 4:
        return np.ascontiguousarray(x[..., node.start:node.stop])
    y = x[:, node.start] if node.squeeze else x[:, node.start:node.stop]
    return np.ascontiguousarray(y)


def to_nhwc(x: np.ndarray) -> np.ndarray:
    """An NCHW batch as a contiguous channels-last NHWC array ((N, F) and (N, T, F) pass
    through)."""
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if x.ndim == 4 else x


def _pad(x: np.ndarray, pads: tuple[int, int, int, int], value: float = 0.0) -> np.ndarray:
    """NHWC ``x`` padded by (top, left, bottom, right) pixels of ``value``."""
    pt, pl, pb, pr = pads
    if not (pt or pl or pb or pr):
        return x
    n, h, w, c = x.shape
    out = np.full((n, h + pt + pb, w + pl + pr, c), value, dtype=x.dtype)
    out[:, pt:pt + h, pl:pl + w] = x
    return out


def _taps(xp: np.ndarray, kernel, stride, dilation, out_hw):
    """Yield ``(i, j, view)``: the strided window of padded NHWC ``xp`` seen by tap (i, j)."""
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel, stride, dilation, out_hw
    for i in range(kh):
        for j in range(kw):
            yield i, j, xp[:, i * dh:i * dh + sh * (ho - 1) + 1:sh,
                           j * dw:j * dw + sw * (wo - 1) + 1:sw]


class _Conv:
    """A prepared convolution: weight reordered for the channels-last matrix product."""

    def __init__(self, node: Conv2d, w: np.ndarray, b: np.ndarray | None):
        cout, cin_g, kh, kw = w.shape
        g = node.groups
        self.node, self.kernel, self.bias = node, (kh, kw), b
        self.out_hw = node.shape[1:]
        self.depthwise = g > 1 and cin_g == 1 and cout == g
        self.pointwise = (kh, kw) == (1, 1) and node.stride == (1, 1) and not any(node.padding)
        if self.depthwise:
            self.w = np.ascontiguousarray(w[:, 0].transpose(1, 2, 0))           # (kh, kw, C)
        elif g == 1:
            self.w = np.ascontiguousarray(w.transpose(2, 3, 1, 0).reshape(-1, cout))
        else:                                                                   # (g, K/g, O/g)
            og = cout // g
            self.w = np.ascontiguousarray(
                w.reshape(g, og, cin_g, kh, kw).transpose(0, 3, 4, 2, 1)
                .reshape(g, kh * kw * cin_g, og))
        self.groups = g

    def __call__(self, x: np.ndarray) -> np.ndarray:
        node, (kh, kw), (ho, wo) = self.node, self.kernel, self.out_hw
        n, _, _, c = x.shape
        if self.depthwise:
            xp = _pad(x, node.padding)
            out = None
            for i, j, v in _taps(xp, self.kernel, node.stride, node.dilation, self.out_hw):
                if out is None:
                    out = v * self.w[i, j]
                else:
                    out += v * self.w[i, j]
        else:
            if self.pointwise:
                cols = x.reshape(n * ho * wo, c)
            else:
                xp = np.ascontiguousarray(_pad(x, node.padding))
                cols = np.empty((n, ho, wo, kh, kw, c), dtype=np.float32)
                if node.dilation[1] == 1:
                    # one copy per kernel row: a row's kw*C inputs are contiguous in NHWC
                    (sh, sw), dh = node.stride, node.dilation[0]
                    _, hp, wp, _ = xp.shape
                    e = xp.itemsize
                    for i in range(kh):
                        rows = as_strided(xp[:, i * dh:], shape=(n, ho, wo, kw * c),
                                          strides=(hp * wp * c * e, sh * wp * c * e,
                                                   sw * c * e, e), writeable=False)
                        cols[:, :, :, i] = rows.reshape(n, ho, wo, kw, c)
                else:
                    for i, j, v in _taps(xp, self.kernel, node.stride, node.dilation,
                                         self.out_hw):
                        cols[:, :, :, i, j, :] = v
                cols = cols.reshape(n * ho * wo, kh * kw * c)
            if self.groups == 1:
                out = cols @ self.w
            else:
                g = self.groups
                cg = c // g
                cols = np.ascontiguousarray(
                    cols.reshape(-1, kh * kw, g, cg).transpose(2, 0, 1, 3)).reshape(
                        g, -1, kh * kw * cg)
                out = np.matmul(cols, self.w).transpose(1, 0, 2)
            out = out.reshape(n, ho, wo, -1)
        if self.bias is not None:
            out += self.bias
        return out


def _maxpool(node: MaxPool, x: np.ndarray) -> np.ndarray:
    xp = _pad(x, node.padding, -np.inf)
    out = None
    for _, _, v in _taps(xp, node.kernel, node.stride, (1, 1), node.shape[1:]):
        if out is None:
            out = v.copy()
        else:
            np.maximum(out, v, out=out)
    return out


def _avgpool(node: AvgPool, x: np.ndarray) -> np.ndarray:
    xp = _pad(x, node.padding)
    out = None
    for _, _, v in _taps(xp, node.kernel, node.stride, (1, 1), node.shape[1:]):
        if out is None:
            out = v.copy()
        else:
            out += v
    kh, kw = node.kernel
    if node.count_include_pad or not any(node.padding):
        out *= np.float32(1.0 / (kh * kw))
    else:
        ones = _pad(np.ones((1, x.shape[1], x.shape[2], 1), np.float32), node.padding)
        cnt = sum(v for _, _, v in _taps(ones, node.kernel, node.stride, (1, 1),
                                         node.shape[1:]))
        out /= cnt
    return out


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-x))`` in float32 without overflow warnings: ``exp`` of ``-|x|``
    only, mirrored for negative ``x``."""
    e = np.exp(-np.abs(x))
    pos = np.float32(1) / (np.float32(1) + e)
    return np.where(x >= 0, pos, e * pos)


#: 1 / sqrt(2), for GELU's erf(x / sqrt(2)).
_SQRT1_2 = 0.7071067811865476


def _erfc(z: np.ndarray) -> np.ndarray:
    """Complementary error function of float64 ``z`` with relative error < 1.2e-7 everywhere
    (Numerical Recipes' Chebyshev fit ``erfcc``; numpy has no erf): accurate in the far
    tails too, where GELU's ``x * erfc(-x / sqrt 2) / 2`` is tiny."""
    a = np.abs(z)
    t = 1.0 / (1.0 + 0.5 * a)
    poly = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (
        -0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (
            -0.82215223 + t * 0.17087277))))))))
    r = t * np.exp(-a * a + poly)
    return np.where(z >= 0, r, 2.0 - r)


def _gelu(x: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU ``x (1 + erf(x / sqrt 2)) / 2 = x erfc(-x / sqrt 2) / 2``, in float64,
    returned as float32."""
    x64 = x.astype(np.float64)
    return (0.5 * x64 * _erfc(-x64 * _SQRT1_2)).astype(np.float32)


def _softmax(x: np.ndarray, groups: int) -> np.ndarray:
    """Softmax over each of ``groups`` equal segments of the last axis, in float32 (the
    segment's max subtracted first, so exp never overflows)."""
    g = x.reshape(*x.shape[:-1], groups, x.shape[-1] // groups)
    e = np.exp(g - g.max(axis=-1, keepdims=True))
    e /= e.sum(axis=-1, keepdims=True)
    return e.reshape(x.shape)


def _layernorm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    """LayerNorm over the last axis in float32: biased variance, as torch."""
    mu = x.mean(axis=-1, keepdims=True, dtype=np.float32)
    d = x - mu
    var = np.mean(d * d, axis=-1, keepdims=True, dtype=np.float32)
    return d / np.sqrt(var + np.float32(eps)) * w + b


def _matmul_heads(node: MatMul, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """:class:`~fpxint_hw.graph.MatMul` on ``(N, T, .)`` batches: one batched product over
    (sample, head)."""
    n, t, _ = a.shape
    s, hd = b.shape[1:]
    h = node.heads
    bh = b.reshape(n, s, h, hd // h).transpose(0, 2, 1, 3)              # (N, H, S, d)
    if node.transpose_b:
        ah = a.reshape(n, t, h, hd // h).transpose(0, 2, 1, 3)          # (N, H, T, d)
        out = np.matmul(ah, bh.transpose(0, 1, 3, 2))                   # (N, H, T, S)
    else:
        ah = a.reshape(n, t, h, s).transpose(0, 2, 1, 3)                # (N, H, T, S)
        out = np.matmul(ah, bh)                                         # (N, H, T, d)
    return np.ascontiguousarray(out.transpose(0, 2, 1, 3)).reshape(n, t, -1)


class FloatExecutor:
    """Runs a graph in float32 on batches; prepares the weights once.

    Parameters
    ----------
    graph : Graph
        The network.
    params : mapping, optional
        Parameters to use instead of ``graph.params`` (same names and shapes). BatchNorm
        parameters are read from it at every run, so a caller may update them in place
        between runs (used for statistics calibration).
    """

    def __init__(self, graph: Graph, params: Mapping[str, np.ndarray] | None = None):
        self.graph = graph
        self.params = graph.params if params is None else params
        self._convs = {n.name: _Conv(n, np.asarray(self.params[n.weight], np.float32),
                                     None if n.bias is None
                                     else np.asarray(self.params[n.bias], np.float32))
                       for n in graph.nodes if isinstance(n, Conv2d)}
        self._linear = {n.name: (np.ascontiguousarray(np.asarray(self.params[n.weight],
                                                                 np.float32).T),
                                 None if n.bias is None
                                 else np.asarray(self.params[n.bias], np.float32))
                        for n in graph.nodes if isinstance(n, Linear)}
        last_use: dict[str, int] = {}
        for k, n in enumerate(graph.nodes):
            for i in n.inputs:
                last_use[i] = k
        self._last_use = last_use

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The graph's output for the batch ``x`` (N, *input_shape); float32."""
        return self.run(x)[0]

    def _check_input(self, x) -> np.ndarray:
        x = np.asarray(x)
        want = self.graph.input_shape
        if x.ndim != len(want) + 1 or tuple(x.shape[1:]) != tuple(want) or x.shape[0] < 1:
            raise InputError(f"graph {self.graph.name!r}: input of shape {x.shape}, expected "
                             f"(N, {', '.join(map(str, want))})")
        if not np.issubdtype(x.dtype, np.floating) and not np.issubdtype(x.dtype, np.integer):
            raise InputError(f"graph {self.graph.name!r}: input dtype {x.dtype} is not numeric")
        # always a private copy: later nodes may work in place on what they read
        return np.array(x.transpose(0, 2, 3, 1) if x.ndim == 4 else x, dtype=np.float32,
                        order="C", copy=True)

    def eval_node(self, node: Node, args: list[np.ndarray]) -> np.ndarray:
        """One node on internal (channels-last) tensors ``args``; returns its output."""
        if isinstance(node, Conv2d):
            return self._convs[node.name](args[0])
        if isinstance(node, Relu):
            return np.maximum(args[0], np.float32(0))
        if isinstance(node, Clip):
            return np.clip(args[0], np.float32(node.lo), np.float32(node.hi))
        if isinstance(node, Add):
            return args[0] + args[1]
        if isinstance(node, BatchNorm):
            p = self.params
            s = (np.asarray(p[node.weight], np.float32)
                 / np.sqrt(np.asarray(p[node.var], np.float32) + np.float32(node.eps)))
            t = np.asarray(p[node.bias], np.float32) - np.asarray(p[node.mean], np.float32) * s
            return args[0] * s + t
        if isinstance(node, Linear):
            w, b = self._linear[node.name]
            y = args[0] @ w
            return y + b if b is not None else y
        if isinstance(node, GlobalAvgPool):
            return args[0].mean(axis=(1, 2), keepdims=True, dtype=np.float32)
        if isinstance(node, Flatten):
            a = args[0]
            f = to_nchw(a).reshape(a.shape[0], -1)
            return f.copy() if np.may_share_memory(f, a) else f    # own memory: in-place safe
        if isinstance(node, MaxPool):
            return _maxpool(node, args[0])
        if isinstance(node, AvgPool):
            return _avgpool(node, args[0])
        if isinstance(node, HardSigmoid):
            y = args[0] * np.float32(node.alpha) + np.float32(node.beta)
            return np.clip(y, np.float32(0), np.float32(1), out=y)
        if isinstance(node, HardSwish):
            a = args[0]
            g = a * np.float32(1 / 6) + np.float32(0.5)
            return a * np.clip(g, np.float32(0), np.float32(1), out=g)
        if isinstance(node, Sigmoid):
            return _sigmoid(args[0])
        if isinstance(node, LeakyRelu):
            a = args[0]
            return np.where(a >= 0, a, a * np.float32(node.alpha))
        if isinstance(node, PRelu):
            # (1,) or (C,): the channel axis is last inside, so a (C,) slope broadcasts as is
            a = args[0]
            return np.where(a >= 0, a, a * np.asarray(self.params[node.slope], np.float32))
        if isinstance(node, Scale):
            y = args[0] * np.asarray(self.params[node.weight], np.float32)
            if node.bias is not None:
                y += np.asarray(self.params[node.bias], np.float32)
            return y
        if isinstance(node, Mul):
            # a (C, 1, 1) gate is (N, 1, 1, C) inside: numpy broadcasts it over H and W
            return args[0] * args[1]
        if isinstance(node, Concat):
            return np.concatenate(args, axis=-1)
        if isinstance(node, Pad):
            y = _pad(args[0], node.padding, np.float32(node.value))
            return y.copy() if y is args[0] else y          # own memory: in-place safe
        if isinstance(node, ZeroInsert):
            a, (sh, sw), (ho, wo) = args[0], node.stride, node.shape[1:]
            y = np.zeros((a.shape[0], ho, wo, a.shape[3]), dtype=a.dtype)
            y[:, ::sh, ::sw] = a
            return y
        if isinstance(node, Slice):
            return _slice(node, args[0])
        if isinstance(node, Upsample):
            sh, sw = node.scale
            return np.repeat(np.repeat(args[0], sh, axis=1), sw, axis=2)
        if isinstance(node, LayerNorm):
            p = self.params
            return _layernorm(args[0], np.asarray(p[node.weight], np.float32),
                              np.asarray(p[node.bias], np.float32), node.eps)
        if isinstance(node, Gelu):
            return _gelu(args[0])
        if isinstance(node, Softmax):
            return _softmax(args[0], node.groups)
        if isinstance(node, MatMul):
            return _matmul_heads(node, args[0], args[1])
        raise InputError(f"graph {self.graph.name!r}: node {node.name!r} has op {node.op!r}, "
                         f"which the float executor does not run")

    def _dies_here(self, name: str, k: int, keep: set) -> bool:
        """True when node ``k`` is the last reader of ``name`` and nobody keeps it."""
        return (self._last_use.get(name) == k and name not in keep
                and name != self.graph.output
                and sum(i == name for i in self.graph.nodes[k].inputs) == 1)

    @staticmethod
    def _eval_in_place(node: Node, args: list[np.ndarray]) -> np.ndarray:
        """ReLU / Clip / Add writing into their first input (which nobody reads later)."""
        a = args[0]
        if isinstance(node, Relu):
            return np.maximum(a, np.float32(0), out=a)
        if isinstance(node, Clip):
            return np.clip(a, np.float32(node.lo), np.float32(node.hi), out=a)
        return np.add(a, args[1], out=a)

    def run(self, x: np.ndarray, *, capture: str | Iterable[str] | None = None,
            hook: Callable[[Node, np.ndarray], None] | None = None,
            ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Run the batch ``x``; return ``(output, captured)``.

        Parameters
        ----------
        x : array (N, *graph.input_shape)
            Any real dtype; computed in float32.
        capture : "all", iterable of node names, or None
            Nodes whose outputs to return, as NCHW / (N, F) float32 arrays keyed by name.
        hook : callable(node, value), optional
            Called after each node with its internal (channels-last) output.
        """
        if capture == "all":
            keep = {n.name for n in self.graph.nodes}
        else:
            keep = set(capture or ())
            for name in keep:
                self.graph.node(name)
        env: dict[str, np.ndarray] = {}
        captured: dict[str, np.ndarray] = {}
        out_name = self.graph.output
        for k, node in enumerate(self.graph.nodes):
            if isinstance(node, Input):
                val = self._check_input(x)
            elif (hook is None and isinstance(node, (Relu, Clip, Add))
                  and self._dies_here(node.inputs[0], k, keep)):
                val = self._eval_in_place(node, [env[i] for i in node.inputs])
            else:
                val = self.eval_node(node, [env[i] for i in node.inputs])
            if hook is not None:
                hook(node, val)
            if node.name in keep:
                c = to_nchw(val)
                captured[node.name] = c.copy() if np.may_share_memory(c, val) else c
            env[node.name] = val
            for i in set(node.inputs):
                if self._last_use.get(i) == k and i != out_name:
                    del env[i]
            if node.name == out_name and node.name not in self._last_use:
                break
        return to_nchw(env[out_name]), captured


def run_float(graph: Graph, x: np.ndarray) -> np.ndarray:
    """The graph's float32 output for the batch ``x`` of shape (N, *graph.input_shape)."""
    return FloatExecutor(graph)(x)


def float_activations(graph: Graph, x: np.ndarray,
                      names: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """Outputs of the named nodes (default: every node) for the batch ``x``, NCHW / (N, F)."""
    return FloatExecutor(graph).run(x, capture="all" if names is None else names)[1]
