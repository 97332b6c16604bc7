"""Numba kernels of the bit-exact simulator: plain ints and arrays in, explicit widths.

Every kernel states the range its inputs must lie in; :mod:`fpxint_hw.intsim.widths` proves
those ranges per layer before anything runs, and :mod:`fpxint_hw.intsim.executor` is the one
place that unpacks the program's specs into these arguments. Accumulators are int64, or int32
where the analysis proves every partial sum fits (``combine_requant_i32``), and every product
that could exceed 32 bits is formed in int64 explicitly. Activations are channels-last (NHWC)
in any integer dtype that holds them; outputs are written in the dtype of ``out``, which
holds every value the kernel stores (clamped to the tensor's range).
"""

from __future__ import annotations

import types

import numba
import numpy as np

__all__ = ["requant_rows", "add_requant", "maxpool_nhwc", "sumpool_nhwc", "global_sum_nhwc",
           "depthwise_nhwc", "gemm_i64", "split_groups", "round_shift_i64", "split_planes",
           "im2col_rows", "quantize_nhwc", "serial", "combine_requant", "combine_requant_i32",
           "combine_requant_p32", "combine_acc", "requant_i32"]


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


@numba.njit(inline="always", cache=True)
def _round_clamp(p, shift, rb, pm, zp, lo, hi):
    """``clamp(((p + rb + ((p >> shift) & pm)) >> shift) + zp, lo, hi)``: the int64 ``p``
    shifted with the rounding of ``rb``, ``pm`` (:func:`_round_consts`), plus the zero point,
    clamped (``zp``, ``lo``, ``hi`` int64)."""
    v = ((p + rb + ((p >> shift) & pm)) >> shift) + zp
    return min(max(v, lo), hi)


@numba.njit(inline="always", cache=True)
def requant_i32(s, mult, shift, rb, pm, zp, lo, hi):
    """One int32 sum ``s`` requantized (:func:`_round_clamp`) with ``s * mult`` one
    32 x 32 -> 64-bit product (``mult < 2^31``)."""
    return _round_clamp(np.int64(s) * np.int64(np.int32(mult)), shift, rb, pm, zp, lo, hi)


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
            out[m, c] = _round_clamp(s * mult[c], shift, rb, pm, zp, lo64, hi64)


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
        out[i] = _round_clamp(np.int64(a[i]) * ma + np.int64(b[i]) * mb + off, shift, rb, pm,
                              zp, lo64, hi64)


@numba.njit(parallel=True, cache=True)
def maxpool_nhwc(x, kh, kw, sh, sw, pt, pl, out):
    """Integer max pooling of NHWC ``x`` (any integer dtype) into ``out (N, Ho, Wo, C)`` (a
    dtype holding ``x``'s values); padded positions never win (a window of padding alone
    gives ``out``'s smallest value). Vectorized along the channels."""
    n, h, w, c = x.shape
    _, ho, wo, _ = out.shape
    low = np.iinfo(out.dtype).min
    for t in numba.prange(n * ho):
        b = t // ho
        i = t % ho
        orow = out[b, i]
        orow[:, :] = low
        for di in range(kh):
            y = i * sh + di - pt
            if y < 0 or y >= h:
                continue
            xrow = x[b, y]
            for j in range(wo):
                best = orow[j]
                for dj in range(kw):
                    xx = j * sw + dj - pl
                    if xx < 0 or xx >= w:
                        continue
                    src = xrow[xx]
                    for ch in range(c):
                        best[ch] = max(best[ch], src[ch])


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


@numba.njit(parallel=True, cache=True)
def split_planes(vals, group, offset, shift, mask, fill, pt, pl, out):
    """The uint8 activation operands of a GEMM plan
    (:class:`fpxint_hw.intsim.planes.ActOperand`), padded for the convolution.

    ``vals`` : int32 NHWC group values ``(G, N, H, W, C)``; ``out`` : ``(A, N, H + pt + pb,
    W + pl + pr, C)``. Operand ``a`` of ``u = vals[group[a]] - offset[a]`` (``0 <= u <
    2^32``) is ``((u >> shift[a, 0]) & mask[a, 0]) + ((u >> shift[a, 1]) & mask[a, 1])``
    (a part with mask 0 is unused), placed at ``(pt, pl)``; the border holds ``fill[a]``
    (the operand of the padded value). Every operand fits ``out``'s dtype (proved by the
    plan's rows). Arithmetic in uint32, so it vectorizes.
    """
    n_ops, n, hp, wp, c = out.shape
    h, w = vals.shape[2], vals.shape[3]
    for t in numba.prange(n * hp):
        b = t // hp
        y = t - b * hp
        iy = y - pt
        for a in range(n_ops):
            row = out[a, b, y]
            if iy < 0 or iy >= h:
                row[:, :] = fill[a]
                continue
            off = np.uint32(offset[a] & 0xFFFFFFFF)
            s0 = np.uint32(shift[a, 0])
            m0 = np.uint32(mask[a, 0])
            s1 = np.uint32(shift[a, 1])
            m1 = np.uint32(mask[a, 1])
            src_rows = vals[group[a], b, iy]
            for x in range(wp):
                ix = x - pl
                dst = row[x]
                if ix < 0 or ix >= w:
                    dst[:] = fill[a]
                    continue
                src = src_rows[ix]
                for ch in range(c):
                    u = np.uint32(np.uint32(src[ch]) - off)       # wraps modulo 2^32
                    dst[ch] = ((u >> s0) & m0) + ((u >> s1) & m1)


@numba.njit(parallel=True, cache=True)
def im2col_rows(planes, c, top, left, fill, ho, wo, kh, kw, sh, sw, dh, dw, c0, row0, out):
    """im2col of NHWC operands: ``out[a, r, (i * kw + j) * Cg + e] = planes[a, n, y, x * c +
    c0 + e]`` at ``y = oy * sh + i * dh - top``, ``x = ox * sw + j * dw - left`` for output
    row ``row0 + r`` = ``(n, oy, ox)`` of an ``ho x wo`` output, ``Cg = out.shape[2] // (kh *
    kw)``; a tap outside the ``H x W`` operand (the padding) holds ``fill[a]``.

    ``planes`` : ``(A, N, H, W * c)`` (pixels flattened with their ``c`` channels; already
    padded operands pass ``top = left = 0``); ``fill`` : ``(A,)``; ``out`` : ``(A, rows,
    kh * kw * Cg)``, same dtype. A kernel row of taps inside the operand is one contiguous
    copy when ``dw == 1`` and ``Cg == c``.
    """
    n_ops, rows, k_len = out.shape
    cg = k_len // (kh * kw)
    h = planes.shape[2]
    w = planes.shape[3] // c
    whole_rows = dw == 1 and cg == c
    for r in numba.prange(rows):
        rr = row0 + r
        b = rr // (ho * wo)
        rem = rr - b * ho * wo
        oy = rem // wo
        ox = rem - oy * wo
        x_first = ox * sw - left
        inside = x_first >= 0 and x_first + (kw - 1) * dw < w
        for a in range(n_ops):
            o = out[a, r]
            f = fill[a]
            for i in range(kh):
                y = oy * sh + i * dh - top
                d_row = i * kw * cg
                if y < 0 or y >= h:
                    for e in range(kw * cg):
                        o[d_row + e] = f
                    continue
                src = planes[a, b, y]
                # element loops over views: as fast as a slice copy in a parallel kernel,
                # 4x faster than one in a one-thread kernel (no overlap check)
                if whole_rows and inside:
                    dst = o[d_row:d_row + kw * c]
                    seg = src[x_first * c:(x_first + kw) * c]
                    for e in range(kw * c):
                        dst[e] = seg[e]
                    continue
                for j in range(kw):
                    x = x_first + j * dw
                    dst = o[d_row + j * cg:d_row + (j + 1) * cg]
                    if x < 0 or x >= w:
                        for e in range(cg):
                            dst[e] = f
                    else:
                        seg = src[x * c + c0:x * c + c0 + cg]
                        for e in range(cg):
                            dst[e] = seg[e]


#: Rows of one block of the combining kernels (one int64 accumulator row each).
_BLOCK = 64


@numba.njit(parallel=True, cache=True)
def combine_requant(bufs, t_buf, t_col, t_coef, bias, mult, pre, shift, lo, hi, zp, half_up,
                    out):
    """Sum a plan's GEMM products and requantize: ``acc[m, c] = bias[c] + sum_t t_coef[t] *
    bufs[t_buf[t]][m, t_col[t] + c]``, then ``out[m, c] = clamp(round_shift(round_shift(acc,
    pre[c]) * mult[c], shift) + zp, lo, hi)`` as :func:`requant_rows`.

    ``bufs`` : a tuple of 2-D arrays of one dtype (int32 GEMM results, or integer-valued
    floats); ``t_buf``, ``t_col``, ``t_coef`` : int64 ``(T,)``; ``bias``, ``mult``, ``pre`` :
    int64 ``(C,)``; ``out`` : int32 ``(M, C)``. ``|bias| + sum_t |t_coef| |product|`` and the
    requantization product fit int64 (proved by the width analysis).
    """
    m_rows, c_cols = out.shape
    n_terms = t_buf.shape[0]
    rb, pm = _round_consts(shift, half_up)
    lo64 = np.int64(lo)
    hi64 = np.int64(hi)
    for blk in numba.prange((m_rows + _BLOCK - 1) // _BLOCK):
        acc = np.empty(c_cols, dtype=np.int64)
        for m in range(blk * _BLOCK, min(m_rows, (blk + 1) * _BLOCK)):
            for c in range(c_cols):
                acc[c] = bias[c]
            for t in range(n_terms):
                b = bufs[t_buf[t]]
                c0 = t_col[t]
                cf = t_coef[t]
                for c in range(c_cols):
                    acc[c] += cf * np.int64(b[m, c0 + c])
            for c in range(c_cols):
                s = acc[c]
                if pre[c] > 0:
                    s = round_shift_i64(s, pre[c], half_up)
                out[m, c] = _round_clamp(s * mult[c], shift, rb, pm, zp, lo64, hi64)


@numba.njit(parallel=True, cache=True)
def combine_requant_i32(bufs, t_buf, t_col, t_coef, bias, mult, shift, lo, hi, zp, half_up,
                        out):
    """:func:`combine_requant` without pre-shifts, summing in int32: ``bufs`` int32, and
    ``|bias| + sum_t |t_coef| |product| < 2^31`` (proved: every partial sum fits int32);
    ``mult < 2^31``, so ``acc * mult`` is one 32 x 32 -> 64-bit product."""
    m_rows, c_cols = out.shape
    n_terms = t_buf.shape[0]
    rb, pm = _round_consts(shift, half_up)
    lo64 = np.int64(lo)
    hi64 = np.int64(hi)
    for blk in numba.prange((m_rows + _BLOCK - 1) // _BLOCK):
        acc = np.empty(c_cols, dtype=np.int32)
        for m in range(blk * _BLOCK, min(m_rows, (blk + 1) * _BLOCK)):
            for c in range(c_cols):
                acc[c] = np.int32(bias[c])
            for t in range(n_terms):
                c0 = t_col[t]
                src = bufs[t_buf[t]][m, c0:c0 + c_cols]
                cf = np.int32(t_coef[t])
                for c in range(c_cols):
                    acc[c] += cf * src[c]
            o = out[m]
            for c in range(c_cols):
                o[c] = requant_i32(acc[c], mult[c], shift, rb, pm, zp, lo64, hi64)


@numba.njit(parallel=True, cache=True)
def combine_requant_p32(bufs, t_buf, t_col, t_coef, bias, mult, shift, lo, hi, zp, half_up,
                        out):
    """:func:`combine_requant` without pre-shifts, summing 32 x 32-bit products in int64:
    ``bufs`` int32, ``|t_coef| < 2^31``, and the final ``|acc| < 2^31`` (proved), so that
    ``acc * mult`` (``mult < 2^31``) is one 32 x 32 -> 64-bit product."""
    m_rows, c_cols = out.shape
    n_terms = t_buf.shape[0]
    rb, pm = _round_consts(shift, half_up)
    lo64 = np.int64(lo)
    hi64 = np.int64(hi)
    for blk in numba.prange((m_rows + _BLOCK - 1) // _BLOCK):
        acc = np.empty(c_cols, dtype=np.int64)
        for m in range(blk * _BLOCK, min(m_rows, (blk + 1) * _BLOCK)):
            for c in range(c_cols):
                acc[c] = bias[c]
            for t in range(n_terms):
                c0 = t_col[t]
                src = bufs[t_buf[t]][m, c0:c0 + c_cols]
                cf = np.int64(np.int32(t_coef[t]))
                for c in range(c_cols):
                    acc[c] += cf * np.int64(src[c])
            o = out[m]
            for c in range(c_cols):
                o[c] = requant_i32(np.int32(acc[c]), mult[c], shift, rb, pm, zp, lo64, hi64)


@numba.njit(parallel=True, cache=True)
def combine_acc(bufs, t_buf, t_col, t_coef, bias, out):
    """The exact accumulators alone: ``out[m, c] = bias[c] + sum_t t_coef[t] *
    bufs[t_buf[t]][m, t_col[t] + c]`` (int64 ``out``), as :func:`combine_requant`."""
    m_rows, c_cols = out.shape
    n_terms = t_buf.shape[0]
    for m in numba.prange(m_rows):
        for c in range(c_cols):
            out[m, c] = bias[c]
        for t in range(n_terms):
            b = bufs[t_buf[t]]
            c0 = t_col[t]
            cf = t_coef[t]
            for c in range(c_cols):
                out[m, c] += cf * np.int64(b[m, c0 + c])


@numba.njit(parallel=True, cache=True)
def quantize_nhwc(x, unit, zp, lo, hi, out):
    """The input grid's integers of the float NCHW batch ``x``, channels-last:
    ``out[n, i, j, c] = clamp(rint(float64(x[n, c, i, j]) / unit) + zp, lo, hi)`` (round half
    to even, as :meth:`fpxint_hw.quant.QProgram.quantize_input`)."""
    n, c, h, w = x.shape
    flo = np.float64(lo)
    fhi = np.float64(hi)
    for t in numba.prange(n * h):
        b = t // h
        i = t - b * h
        for ch in range(c):
            src = x[b, ch, i]
            for j in range(w):
                v = np.rint(np.float64(src[j]) / unit) + zp
                out[b, i, j, ch] = min(max(v, flo), fhi)


def serial(kernel):
    """A one-thread twin of the parallel ``kernel`` that releases the GIL, for the
    simulator's own worker threads (each runs a share of a layer's rows): a Numba parallel
    launch wakes its threads every call, which costs as much as a small kernel itself.

    The twin is a renamed copy of the Python function, so that its on-disk cache is its own.
    """
    f = kernel.py_func
    twin = types.FunctionType(f.__code__, f.__globals__, f.__name__ + "_serial",
                              f.__defaults__, f.__closure__)
    twin.__qualname__ = f.__qualname__ + "_serial"
    twin.__doc__ = f"One-thread, GIL-free twin of :func:`{f.__name__}`."
    return numba.njit(cache=True, nogil=True)(twin)


im2col_rows_serial = serial(im2col_rows)
combine_requant_serial = serial(combine_requant)
combine_requant_i32_serial = serial(combine_requant_i32)
combine_requant_p32_serial = serial(combine_requant_p32)
combine_acc_serial = serial(combine_acc)
add_requant_serial = serial(add_requant)
