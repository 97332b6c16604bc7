"""The golden integer model: slow, obviously correct, written straight from docs/numerics.md.

Everything here computes on Python integers (numpy ``object`` arrays), so no width can wrap;
the fast simulator and the generated hardware are checked against these functions.
"""

from __future__ import annotations

import numpy as np

from .intops import round_shift
from .series import split_integer
from .tile import GemmTile, TileResult

__all__ = ["reference_tile", "requantize"]


def _as_pyint(a) -> np.ndarray:
    return np.asarray(a).astype(object)


def requantize(acc, multiplier, shift: int, lo: int, hi: int, zero_point: int = 0,
               mode: str = "rne") -> np.ndarray:
    """``clamp(round_shift(acc * M0, shift, mode) + zero_point, lo, hi)`` on Python integers.

    ``acc`` is ``(M, N)`` and ``multiplier`` ``(N,)`` (broadcast over rows); returns int64.
    """
    acc = _as_pyint(acc)
    prod = acc * _as_pyint(multiplier)
    out = np.empty(prod.shape, dtype=object)
    for idx, v in np.ndenumerate(prod):
        out[idx] = min(max(round_shift(int(v), shift, mode) + zero_point, lo), hi)
    return out.astype(np.int64)


def reference_tile(tile: GemmTile) -> TileResult:
    """Compute a tile exactly: lane products, weighted lane sum, bias, requantization, split."""
    w = _as_pyint(tile.weights)
    a = _as_pyint(tile.acts)
    acc = np.zeros((tile.m, tile.n), dtype=object)
    mask = tile.mask
    for k, wk in enumerate(tile.w_fmt.lane_weights):
        for j, aj in enumerate(tile.a_fmt.lane_weights):
            if mask[k, j]:
                acc = acc + (wk * aj) * a[j].dot(w[k])
    acc = acc + _as_pyint(tile.bias)[None, :]
    rq = tile.requant
    out = requantize(acc, rq.multiplier, rq.shift, rq.lo, rq.hi, rq.zero_point, rq.mode)
    digits = None if tile.out_fmt is None else split_integer(out, tile.out_fmt)
    if any(abs(int(v)) >= 1 << 63 for v in acc.ravel()):
        raise OverflowError("reference_tile: accumulator leaves int64; the tile's formats are "
                            "too wide for any int64 simulator")
    return TileResult(acc.astype(np.int64), out, digits)
