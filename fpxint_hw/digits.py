"""The Numba kernel that splits real tensors into series digits.

It takes plain arrays and ints; :func:`fpxint_hw.series.expand` is the one place that unpacks
a :class:`~fpxint_hw.spec.SeriesFormat` for it. It works on a 2-D view ``(channels, elements)``
of the tensor, with one first-term scale per channel row.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["split_digits"]

_CHUNK = 1 << 14   # elements per parallel work item


@numba.njit(parallel=True, cache=True)
def split_digits(x2d, scale, terms, radix, qmin, qmax, signed, out):
    """Write the residual-series digits of every element of ``x2d`` into ``out``.

    Parameters
    ----------
    x2d : float32/float64 array ``(rows, n)``
    scale : float64 array ``(rows,)``
        First-term step ``s_1`` per row; 0 marks an all-zero row (digits 0).
    terms, radix, qmin, qmax : int
        Number of terms, step ratio ``s_k / s_(k+1)`` and the digit range.
    signed : bool
        True: digits round half to even (``q = rint(v)``); False: digits truncate
        (``q = floor(v)``), the radix digits of a non-negative value.
    out : integer array ``(terms, rows, n)``

    Each element computes ``v_1 = x / s_1`` (float64), then ``q_k = round(v_k)`` clamped to
    ``[qmin, qmax]`` and ``v_(k+1) = (v_k - q_k) * radix``; with a power-of-two radix every
    step after the division is exact.
    """
    rows, n = x2d.shape
    chunks = max(1, (n + _CHUNK - 1) // _CHUNK)
    lo = np.float64(qmin)
    hi = np.float64(qmax)
    rdx = np.float64(radix)
    for t in numba.prange(rows * chunks):
        r = t // chunks
        c = t % chunks
        start = c * _CHUNK
        stop = min(n, start + _CHUNK)
        s = scale[r]
        v = np.empty(stop - start)
        if s == 0.0:
            v[:] = 0.0
        else:
            for j in range(stop - start):
                v[j] = np.float64(x2d[r, start + j]) / s
        for k in range(terms):   # one term at a time over the chunk: the inner loop vectorizes
            dst = out[k, r, start:stop]
            for j in range(stop - start):
                q = np.rint(v[j]) if signed else np.floor(v[j])
                q = min(max(q, lo), hi)
                dst[j] = q
                v[j] = (v[j] - q) * rdx
