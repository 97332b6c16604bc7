"""Numba kernels of the bit-exact simulator: plain ints and arrays in, explicit widths.

Every kernel states the range its inputs must lie in; :mod:`fpxint_hw.intsim.widths` proves
those ranges per layer before anything runs, and :mod:`fpxint_hw.intsim.executor` is the one
place that unpacks the program's specs into these arguments. Accumulators are int64 and every
product that could exceed 32 bits is formed in int64 explicitly. Activations are channels-last
(NHWC).
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["requant_rows", "add_requant", "maxpool_nhwc", "sumpool_nhwc", "global_sum_nhwc",
           "depthwise_nhwc", "gemm_i64", "split_groups", "round_shift_i64"]


@numba.njit(inline="always", cache=True)
def round_shift_i64(p, n, half_up):
    """``round(p / 2^n)`` for an int64 ``p``, ``0 <= n <= 62``: ties to even, or towards
    +infinity when ``half_up``. Same definition as :func:`fpxint_hw.intops.round_shift`."""
    if n == 0:
        return p
    q = p >> n                              # arithmetic shift: floor(p / 2^n)
    rem = p - (q << n)                      # 0 <= rem < 2^n
    half = np.int64(1) << (n - 1)
    if rem > half or (rem == half and (half_up or (q & 1) == 1)):
        q += 1
    return q


@numba.njit(inline="always", cache=True)
def _round_consts(shift, half_up):
    """``(bias, parity_mask)`` of the branch-free rounding ``(p + bias + (p >> n & mask)) >> n``:
    half-up adds ``2^(n-1)``; ties-to-even adds ``2^(n-1) - 1`` plus the kept LSB."""
    if shift == 0:
        return np.int64(0), np.int64(0)
    half = np.int64(1) << (shift - 1)
    if half_up:
        return half, np.int64(0)
    return half - 1, np.int64(1)


@numba.njit(parallel=True, cache=True)
def requant_rows(acc, bias, mult, shift, lo, hi, zp, half_up, out, pre):
    """``out[m, c] = clamp(round_shift(round_shift(acc[m, c] + bias[c], pre[c]) * mult[c],
    shift) + zp, lo, hi)``.

    ``acc`` : integer ``(M, C)`` (int32 or int64); ``bias``, ``mult``, ``pre`` : int64 ``(C,)``;
    ``|round_shift(acc + bias, pre) * mult| + 2^(shift-1) < 2^63`` (proved by the width
    analysis);
    ``out`` : int32 ``(M, C)``. Rounding is branch-free: ``(p + 2^(n-1) - 1 + ((p >> n) & 1))
    >> n`` rounds ties to even, ``(p + 2^(n-1)) >> n`` ties up (the same integers as
    :func:`round_shift_i64`).
    """
    m_rows, c_cols = acc.shape
    rb, pm = _round_consts(shift, half_up)
    lo64 = np.int64(lo)
    hi64 = np.int64(hi)
    for m in numba.prange(m_rows):
        for c in range(c_cols):
            s = np.int64(acc[m, c]) + bias[c]
            if pre[c] > 0:
                s = round_shift_i64(s, pre[c], half_up)
            p = s * mult[c]
            v = ((p + rb + ((p >> shift) & pm)) >> shift) + zp
            out[m, c] = min(max(v, lo64), hi64)


@numba.njit(parallel=True, cache=True)
def add_requant(a, b, ma, mb, offset, shift, lo, hi, zp, half_up, out):
    """``out = clamp(round_shift(a * ma + b * mb + offset, shift) + zp, lo, hi)`` elementwise
    on flat int32 arrays (``offset = -(ma za + mb zb)`` holds the inputs' zero points);
    ``|a ma| + |b mb| + |offset| + 2^(shift-1) < 2^63``. Branch-free rounding as in
    :func:`requant_rows`."""
    rb, pm = _round_consts(shift, half_up)
    lo64 = np.int64(lo)
    hi64 = np.int64(hi)
    off = np.int64(offset)
    for i in numba.prange(a.shape[0]):
        p = np.int64(a[i]) * ma + np.int64(b[i]) * mb + off
        v = ((p + rb + ((p >> shift) & pm)) >> shift) + zp
        out[i] = min(max(v, lo64), hi64)


@numba.njit(parallel=True, cache=True)
def maxpool_nhwc(x, kh, kw, sh, sw, pt, pl, out):
    """Integer max pooling of int32 NHWC ``x`` into ``out (N, Ho, Wo, C)``; padded positions
    never win."""
    n, h, w, c = x.shape
    _, ho, wo, _ = out.shape
    for t in numba.prange(n * ho):
        b = t // ho
        i = t % ho
        for j in range(wo):
            for ch in range(c):
                best = np.int32(-2147483648)
                for di in range(kh):
                    y = i * sh + di - pt
                    if y < 0 or y >= h:
                        continue
                    for dj in range(kw):
                        xx = j * sw + dj - pl
                        if xx < 0 or xx >= w:
                            continue
                        v = x[b, y, xx, ch]
                        if v > best:
                            best = v
                out[b, i, j, ch] = best


@numba.njit(parallel=True, cache=True)
def sumpool_nhwc(x, kh, kw, sh, sw, pt, pl, out):
    """Window sums (zero padding) of int32 NHWC ``x`` into int64 ``out (N, Ho, Wo, C)``."""
    n, h, w, c = x.shape
    _, ho, wo, _ = out.shape
    for t in numba.prange(n * ho):
        b = t // ho
        i = t % ho
        for j in range(wo):
            for ch in range(c):
                s = np.int64(0)
                for di in range(kh):
                    y = i * sh + di - pt
                    if y < 0 or y >= h:
                        continue
                    for dj in range(kw):
                        xx = j * sw + dj - pl
                        if 0 <= xx < w:
                            s += np.int64(x[b, y, xx, ch])
                out[b, i, j, ch] = s


@numba.njit(parallel=True, cache=True)
def global_sum_nhwc(x, out):
    """Sums over H and W of int32 NHWC ``x`` into int64 ``out (N, C)``."""
    n, h, w, c = x.shape
    for b in numba.prange(n):
        for ch in range(c):
            out[b, ch] = 0
        for y in range(h):
            for xx in range(w):
                for ch in range(c):
                    out[b, ch] += np.int64(x[b, y, xx, ch])


@numba.njit(parallel=True, cache=True)
def depthwise_nhwc(x, w, sh, sw, dh, dw, pt, pl, out):
    """Depthwise convolution: ``out[n, i, j, c] = sum_{a, b} x[n, i*sh + a*dh - pt,
    j*sw + b*dw - pl, c] * w[a, b, c]`` with zero padding (taps outside ``x`` are skipped;
    pad ``x`` beforehand for any other value).

    ``x`` int32 NHWC, ``w`` int32 ``(kh, kw, C)``, ``out`` int64 ``(N, Ho, Wo, C)``; each sum
    is formed in int64 (the width analysis bounds it).
    """
    n, h, wd, c = x.shape
    kh, kw, _ = w.shape
    _, ho, wo, _ = out.shape
    for t in numba.prange(n * ho):
        b = t // ho
        i = t % ho
        for j in range(wo):
            for ch in range(c):
                out[b, i, j, ch] = 0
            for a in range(kh):
                y = i * sh + a * dh - pt
                if y < 0 or y >= h:
                    continue
                for bb in range(kw):
                    xx = j * sw + bb * dw - pl
                    if xx < 0 or xx >= wd:
                        continue
                    for ch in range(c):
                        out[b, i, j, ch] += np.int64(x[b, y, xx, ch]) * np.int64(w[a, bb, ch])


@numba.njit(parallel=True, cache=True)
def gemm_i64(a, b, out):
    """Exact ``out = a @ b`` with int64 accumulation: ``a`` integer ``(M, K)``, ``b`` int64
    ``(K, N)``, ``out`` int64 ``(M, N)``; ``sum_k |a b| < 2^63`` (proved beforehand)."""
    m_rows, k_len = a.shape
    n_cols = b.shape[1]
    for m in numba.prange(m_rows):
        for j in range(n_cols):
            out[m, j] = 0
        for k in range(k_len):
            av = np.int64(a[m, k])
            if av != 0:
                for j in range(n_cols):
                    out[m, j] += av * b[k, j]


@numba.njit(parallel=True, cache=True)
def split_groups(x, weights, qmin, qmax, signed, group_of, group_weight, out):
    """Split integers into series digits and recombine them into lane groups.

    Digit j of ``x`` (flat int32, values in the format's combined range) is
    ``clamp(round(rem / weights[j]), qmin, qmax)`` -- round half to even when ``signed``, floor
    otherwise -- with ``rem -= digit * weights[j]`` (exactly
    :func:`fpxint_hw.series.split_integer`). Group ``g = group_of[j]`` accumulates
    ``digit * weights[j] / group_weight[g]`` into ``out[g, i]`` (int32, ``(G, len(x))``).
    """
    t_terms = weights.shape[0]
    g_count = out.shape[0]
    for i in numba.prange(x.shape[0]):
        for g in range(g_count):
            out[g, i] = 0
        rem = np.int64(x[i])
        for j in range(t_terms):
            m = weights[j]
            q = rem // m                                    # floor
            if signed:
                r2 = 2 * (rem - q * m)
                if r2 > m or (r2 == m and (q & 1) == 1):
                    q += 1
            q = min(max(q, qmin), qmax)
            rem -= q * m
            g = group_of[j]
            out[g, i] += q * (m // group_weight[g])
