"""Random GEMM tiles that fit an ArraySpec: test vectors for the hardware checks.

Digits are uniform over the formats' ranges with a share of zeros and extremes, and the
requantization constants are drawn from the tile's own accumulators so that outputs spread
over the output range (a fifth of the tiles use a shift far too small, so that outputs
saturate). *Tie* tiles keep only the last (unit-weight) terms and a sparse set of digits, so
that the accumulators are small and a requantization with a shift of 1 or 2 meets many exact
ties (where round-half-to-even and round-half-up differ).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..spec import ArraySpec
from ..tile import GemmTile, Requant

__all__ = ["random_tile", "random_requant"]


def _digits(rng, fmt, shape):
    d = rng.integers(fmt.qmin, fmt.qmax + 1, size=shape)
    u = rng.random(shape)
    d[u < 0.15] = 0
    d[(u >= 0.15) & (u < 0.25)] = fmt.qmax
    d[(u >= 0.25) & (u < 0.3)] = fmt.qmin
    return d.astype(np.int64)


def _exact_acc(tile: GemmTile) -> np.ndarray:
    """Exact int64 accumulators of a small tile (lanes folded into combined integers)."""
    wc = np.tensordot(np.array(tile.w_fmt.lane_weights), tile.weights, axes=1)
    ac = np.tensordot(np.array(tile.a_fmt.lane_weights), tile.acts, axes=1)
    return (ac @ wc if tile.m else np.zeros((0, tile.n), np.int64)) + tile.bias


def random_requant(spec: ArraySpec, tile: GemmTile, rng: np.random.Generator,
                   ties: bool = False) -> GemmTile:
    """``tile`` with bias and requantization drawn to suit its accumulators and ``spec``."""
    n = tile.n
    blo, bhi = spec.bias_range
    dot = _exact_acc(dataclasses.replace(tile, bias=np.zeros(n, np.int64)))
    span = int(max(1, np.abs(dot).max(initial=1)))
    bscale = 8 if ties else span
    bias = rng.integers(max(blo, -bscale), min(bhi, bscale) + 1, size=n)
    olo, ohi = spec.out_range
    zlo, zhi = spec.zp_range
    mmax = (1 << spec.m0_bits) - 1
    if ties:
        mult = np.minimum(rng.integers(1, 4, size=n), mmax)
        shift = int(rng.integers(1, 3))
        zp = int(np.clip((olo + ohi) // 2, zlo, zhi))
    else:
        mult = rng.integers(max(1, mmax // 4), mmax + 1, size=n)
        big = (span + int(np.abs(bias).max(initial=0))) * int(mult.max())
        shift = max(0, big.bit_length() - spec.out_width + int(rng.integers(-1, 2)))
        if rng.random() < 0.2:                     # far too small a shift: saturating outputs
            shift = max(0, shift - int(rng.integers(4, 9)))
        zp = int(rng.integers(max(zlo, -8), min(zhi, 8) + 1))
    lo, hi = olo, ohi
    if rng.random() < 0.3:
        lo, hi = sorted(int(v) for v in rng.integers(olo, ohi + 1, size=2))
    rq = Requant(np.asarray(mult, np.int64), min(shift, 62), lo, hi, zp, spec.rounding)
    return dataclasses.replace(tile, bias=bias.astype(np.int64), requant=rq)


def random_tile(spec: ArraySpec, m: int, rng: np.random.Generator, *, k: int | None = None,
                n: int | None = None, lane_mask=None, out_fmt: bool = True,
                ties: bool | None = None) -> GemmTile:
    """A random tile for ``spec`` with ``m`` vectors, ``K = k`` (default rows), ``N = n``
    (default cols); ``k`` may exceed ``rows`` up to the spec's depth.

    ``lane_mask``: a ``(w_terms, a_terms)`` bool array or None (all lanes). ``out_fmt``:
    attach the spec's output format (so results carry digits). ``ties``: make a tie tile
    (see the module docstring); None draws it with probability 0.3.
    """
    k = spec.rows if k is None else k
    n = spec.cols if n is None else n
    wf, af = spec.w_fmt, spec.a_fmt
    ties = bool(rng.random() < 0.3) if ties is None else ties
    w = _digits(rng, wf, (wf.terms, k, n))
    a = _digits(rng, af, (af.terms, m, k))
    if ties:
        w[:-1] = 0
        a[:-1] = 0
        a[-1][rng.random(a[-1].shape) < 0.5] = 0
    rq = Requant(np.ones(n, np.int64), 0, *spec.out_range, 0, spec.rounding)
    tile = GemmTile(wf, af, w, a, np.zeros(n, np.int64), rq, spec.out_fmt if out_fmt else None,
                    None if lane_mask is None else np.asarray(lane_mask, bool))
    return random_requant(spec, tile, rng, ties)
