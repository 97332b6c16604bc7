"""Fast tile execution and tile extraction from real layers (for RTL replay).

:func:`run_tile` has the call shape of :func:`fpxint_hw.golden.reference_tile` and returns the
identical :class:`~fpxint_hw.tile.TileResult`. :func:`extract_tiles` cuts a conv/linear layer
of an integer program, on a given input, into ``K x N`` GEMM tiles whose expected results are
what the layer computes.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError, WidthError
from ..intops import round_shift_bound
from ..quant import program as P
from ..series import split_integer
from ..tile import GemmTile, Requant, TileResult
from . import kernels
from .executor import Simulator, to_nhwc

__all__ = ["run_tile", "layer_tiles", "extract_tiles"]


def run_tile(tile: GemmTile) -> TileResult:
    """Compute a tile exactly (same semantics and result as ``golden.reference_tile``).

    Each active lane ``(k, j)`` is one int64 Numba GEMM of the digit matrices, scaled by
    ``m_k n_j`` and added in int64; the bound ``sum_lanes m_k n_j K max|q_k| max|p_j| +
    max|bias|`` and its product with ``max M0`` (plus the rounding constant) are checked
    against int64 first.

    Raises
    ------
    WidthError
        When the tile's accumulator or requantization product could leave int64.
    """
    w = tile.weights.astype(np.int64)
    a = tile.acts.astype(np.int32)
    mw, na = tile.w_fmt.lane_weights, tile.a_fmt.lane_weights
    mask = tile.mask
    bound = int(np.abs(tile.bias).max()) if tile.bias.size else 0
    for k in range(len(mw)):
        for j in range(len(na)):
            if mask[k, j]:
                wk = int(np.abs(w[k]).sum(axis=0).max()) if w[k].size else 0
                aj = int(np.abs(a[j]).max()) if a[j].size else 0
                bound += mw[k] * na[j] * wk * aj
    rq = tile.requant
    half = (1 << (rq.shift - 1)) if rq.shift else 0
    product = max((round_shift_bound(bound, int(p)) * int(m)
                   for m, p in zip(rq.multiplier, rq.pre_shift)), default=0)
    if bound >= 1 << 63 or product + half >= 1 << 63:
        raise WidthError(f"tile: accumulator bound {bound} (times M0, plus the rounding "
                         f"constant) leaves int64")
    acc = np.zeros((tile.m, tile.n), dtype=np.int64)
    part = np.empty((tile.m, tile.n), dtype=np.int64)
    for k in range(len(mw)):
        wk = np.ascontiguousarray(w[k])
        for j in range(len(na)):
            if mask[k, j]:
                kernels.gemm_i64(np.ascontiguousarray(a[j]), wk, part)
                acc += np.int64(mw[k] * na[j]) * part
    acc += tile.bias[None, :]
    out = np.empty((tile.m, tile.n), dtype=np.int32)
    kernels.requant_rows(acc, np.zeros(tile.n, dtype=np.int64), rq.multiplier, rq.shift, rq.lo,
                         rq.hi, rq.zero_point, rq.mode == "half_up", out, rq.pre_shift)
    out = out.astype(np.int64)
    digits = None if tile.out_fmt is None else split_integer(out, tile.out_fmt)
    return TileResult(acc, out, digits)


def layer_tiles(program, layer: str, xi: np.ndarray, sim: Simulator) -> list[GemmTile]:
    """A conv/linear ``layer`` on its integer input ``xi`` as whole-layer GEMM tiles.

    ``xi`` is the layer's input as the simulator holds it (channels-last int32: NHWC, or
    ``(N, F)`` / ``(N, T, F)`` for a linear layer, whose ``N * T`` tokens are the rows). One tile per conv group (a depthwise conv of C channels
    is C tiles of one column): ``M = N * Ho * Wo`` im2col rows of the group's input
    channels, ``K = kh * kw * C/g`` in (kh, kw, C) order, ``N = O/g``, with the group's
    bias and requantization; a final layer without requantization gets acc-only constants
    (its exact accumulator is the output). Each tile's exact result equals the layer's
    output for its channels.
    """
    q = program.layer(layer)
    if not isinstance(q, P.GemmOp):
        raise InputError(f"layer_tiles: layer {layer!r} is a {q.kind}, not a conv or linear")
    xin = program.layer(q.inputs[0]).out
    plan = sim.plans[q.name]
    wd = q.w_matrix()
    groups = q.groups if isinstance(q, P.Conv) else 1
    og = q.out_channels // groups
    rq = q.requant
    tiles = []
    for g in range(groups):
        cols = plan.im2col(np.asarray(xi, dtype=np.int32), np.int32, g, xin.zero_point)
        cols = cols.reshape(-1, cols.shape[-1])          # a sequence's tokens are rows too
        n0, n1 = g * og, (g + 1) * og
        if rq is not None:
            req = rq.columns(n0, n1)
        else:
            req = Requant.acc_only(og, program.mode)
        tiles.append(GemmTile(q.w_fmt, xin.fmt, wd[:, :, n0:n1].astype(np.int8),
                              split_integer(cols, xin.fmt).astype(np.int16), q.bias[n0:n1],
                              req, None if rq is None else q.out.fmt, q.lane_mask))
    return tiles


def extract_tiles(program, layer: str, x: np.ndarray, tile_k: int, tile_n: int,
                  rows: int = 16, sim: Simulator | None = None):
    """Cut conv/linear ``layer`` of ``program``, run on float batch ``x``, into GEMM tiles.

    The layer's input integers (from the fast simulator) are split into their activation
    terms and laid out as im2col rows ``(T_a, M, K)`` (first ``rows`` output positions of the
    batch); the weight terms as ``(T_w, K, N)`` in the same (kh, kw, C) order
    (:func:`layer_tiles`). Tiles cover ``K`` in steps of ``tile_k`` and the output channels
    in steps of ``tile_n``.

    When ``tile_k`` covers the whole reduction, each tile carries the layer's bias and
    requantization, so its expected ``acc`` and ``out`` equal the layer's own values for those
    outputs. When K is cut, the first K-slice carries the bias and the others none: only the
    accumulators are meaningful (they add up to the layer's), not the requantized outputs.

    Returns a list of ``(GemmTile, info)`` with info ``{"layer", "k0", "n0", "rows",
    "full_k"}``. Grouped convolutions are not supported (InputError).
    """
    q = program.layer(layer)
    if not isinstance(q, P.GemmOp):
        raise InputError(f"extract_tiles: layer {layer!r} is a {q.kind}, not a conv or linear")
    if isinstance(q, P.Conv) and q.groups != 1:
        raise InputError(f"extract_tiles: layer {layer!r} is grouped (groups={q.groups}); "
                         f"only groups=1 layers cut into GEMM tiles")
    if tile_k < 1 or tile_n < 1 or rows < 1:
        raise InputError(f"extract_tiles: tile shape {tile_k}x{tile_n} and rows {rows} must be "
                         f">= 1")
    sim = sim or Simulator(program)
    _, env = sim.run(x, capture=True)
    (whole,) = layer_tiles(program, layer, to_nhwc(env[q.inputs[0]]), sim)
    acts = whole.acts[:, :rows]
    tiles = []
    for n0 in range(0, whole.n, tile_n):
        n1 = min(whole.n, n0 + tile_n)
        req = whole.requant.columns(n0, n1)
        for k0 in range(0, whole.k, tile_k):
            k1 = min(whole.k, k0 + tile_k)
            bias = whole.bias[n0:n1] if k0 == 0 else np.zeros(n1 - n0, dtype=np.int64)
            tile = GemmTile(whole.w_fmt, whole.a_fmt, whole.weights[:, k0:k1, n0:n1],
                            acts[:, :, k0:k1], bias, req, whole.out_fmt, whole.lane_mask)
            tiles.append((tile, {"layer": layer, "k0": k0, "n0": n0, "rows": int(acts.shape[1]),
                                 "full_k": k0 == 0 and k1 == whole.k}))
    return tiles
