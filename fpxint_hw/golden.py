"""The golden integer model: slow, obviously correct, written straight from docs/numerics.md.

Tiles, requantization and residual adds compute on Python integers (numpy ``object``
arrays), so no width can wrap; convolutions and matrix products compute on int64 one kernel
tap / one reduction index at a time after an explicit bound check (WidthError instead of
wrapping). The fast simulator and the generated hardware are checked against these functions,
and these functions against external integer oracles (tests/test_golden.py).
"""

from __future__ import annotations

import math

import numpy as np

from .errors import InputError, WidthError
from .intops import round_div, round_shift
from .quant import program as P
from .series import split_integer
from .tile import GemmTile, TileResult

__all__ = ["reference_tile", "requantize", "requantize_channels", "conv2d", "matmul",
           "lane_products", "add_requant", "maxpool2d", "sumpool2d", "global_sum",
           "lookup", "mul_requant", "pad2d", "zero_insert2d", "upsample2d", "head_matmul", "softmax_int", "layernorm_int",
           "run_layer", "run_program"]


def _as_pyint(a) -> np.ndarray:
    return np.asarray(a).astype(object)


def requantize(acc, multiplier, shift: int, lo: int, hi: int, zero_point: int = 0,
               mode: str = "rne", pre_shift=0) -> np.ndarray:
    """``clamp(round_shift(round_shift(acc, pre_shift[c]) * M0[c], shift, mode) + zero_point,
    lo, hi)`` on Python integers.

    ``acc`` is ``(M, N)``; ``multiplier`` and ``pre_shift`` (an int or one per channel) are
    ``(N,)``, broadcast over rows; returns int64.
    """
    acc = _as_pyint(acc)
    if np.any(np.asarray(pre_shift)):
        acc = np.vectorize(lambda v, p: round_shift(int(v), int(p), mode),
                           otypes=[object])(acc, pre_shift)
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
    out = requantize(acc, rq.multiplier, rq.shift, rq.lo, rq.hi, rq.zero_point, rq.mode,
                     rq.pre_shift)
    digits = None if tile.out_fmt is None else split_integer(out, tile.out_fmt)
    if any(abs(int(v)) >= 1 << 63 for v in acc.ravel()):
        raise WidthError("reference_tile: accumulator leaves int64; the tile's formats are "
                            "too wide for any int64 simulator")
    return TileResult(acc.astype(np.int64), out, digits)


# -- network operators ------------------------------------------------------------------------
#
# Layout: NCHW activations ``(N, C, H, W)`` and OIHW weights ``(C_out, C_in / groups, kh, kw)``,
# as in ONNX. Every operator works on int64 after an explicit bound check: the largest possible
# magnitude of every partial sum is computed from the operands first, and an operator whose
# sums could leave int64 raises WidthError instead of wrapping.

_INT64_LIMIT = 1 << 63


def _int64(a, what: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype == object:
        if any(abs(int(v)) >= _INT64_LIMIT for v in arr.ravel()):
            raise WidthError(f"{what}: values leave int64")
        return arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"{what}: expected integers, got dtype {arr.dtype}")
    if arr.dtype == np.uint64 and arr.size and int(arr.max()) >= _INT64_LIMIT:
        raise WidthError(f"{what}: values leave int64")
    return arr.astype(np.int64)


def _maxabs(a: np.ndarray) -> int:
    return max(abs(int(a.min())), abs(int(a.max()))) if a.size else 0


def _check_sum_bound(terms: int, a: np.ndarray, b: np.ndarray, what: str) -> None:
    """Raise unless ``terms`` products of elements of ``a`` and ``b`` always fit int64."""
    bound = terms * _maxabs(a) * _maxabs(b)
    if bound >= _INT64_LIMIT:
        raise WidthError(f"{what}: a sum of {terms} products may reach {bound}, beyond int64")


def _pair(v, name: str) -> tuple[int, int]:
    t = (v, v) if np.isscalar(v) else tuple(v)
    if len(t) != 2 or any(int(x) != x for x in t):
        raise InputError(f"{name} must be an int or a pair of ints, got {v!r}")
    return int(t[0]), int(t[1])


def _pads(p) -> tuple[int, int, int, int]:
    """Padding as (top, left, bottom, right) from an int, a (h, w) pair or an ONNX 4-tuple."""
    if np.isscalar(p):
        return (int(p),) * 4
    p = tuple(int(x) for x in p)
    if len(p) == 2:
        return p[0], p[1], p[0], p[1]
    if len(p) == 4:
        return p
    raise InputError(f"padding must be an int, (h, w) or (top, left, bottom, right), got {p!r}")


def conv2d(x, w, stride=1, padding=0, dilation=1, groups: int = 1,
           pad_value: int = 0) -> np.ndarray:
    """Exact integer 2-D convolution (cross-correlation, as ONNX Conv).

    Parameters
    ----------
    x : integer array ``(N, C, H, W)``
    w : integer array ``(O, C / groups, kh, kw)``
    stride, dilation : int or (h, w), each >= 1
    padding : int, (h, w) or (top, left, bottom, right), each >= 0
    groups : int >= 1 dividing C and O
    pad_value : int
        The value of every padded position: 0 (zero padding, as ONNX Conv), or the integer
        of real 0 on a grid with a zero point (as ONNX ConvInteger's ``x_zero_point``).

    Returns
    -------
    int64 array ``(N, O, Ho, Wo)``, ``Ho = (H + top + bottom - dh*(kh-1) - 1) // sh + 1``.
    Each output is the plain sum over ``c, i, j`` of ``x[n, g*Cg + c, ho*sh + i*dh - top,
    wo*sw + j*dw - left] * w[o, c, i, j]``, computed as one int64 multiply-add per kernel tap.
    """
    x = _int64(x, "conv2d x")
    w = _int64(w, "conv2d w")
    if x.ndim != 4 or w.ndim != 4:
        raise InputError(f"conv2d: need x (N,C,H,W) and w (O,C/g,kh,kw), got {x.shape}, {w.shape}")
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    if groups < 1 or c % groups or o % groups or c // groups != cg:
        raise InputError(f"conv2d: groups={groups} does not fit C={c}, O={o}, w C/g={cg}")
    sh, sw = _pair(stride, "stride")
    dh, dw = _pair(dilation, "dilation")
    top, left, bottom, right = _pads(padding)
    if min(sh, sw, dh, dw) < 1 or min(top, left, bottom, right) < 0:
        raise InputError("conv2d: strides and dilations must be >= 1, padding >= 0")
    ho = (h + top + bottom - dh * (kh - 1) - 1) // sh + 1
    wo = (wd + left + right - dw * (kw - 1) - 1) // sw + 1
    if ho < 1 or wo < 1:
        raise InputError(f"conv2d: kernel {kh}x{kw} (dilation {dh},{dw}) larger than padded "
                         f"input {h}x{wd}")
    pad_value = int(pad_value)
    _check_sum_bound(cg * kh * kw, np.array([_maxabs(x), pad_value]), w, "conv2d")
    xp = np.full((n, c, h + top + bottom, wd + left + right), pad_value, dtype=np.int64)
    xp[:, :, top:top + h, left:left + wd] = x
    og = o // groups
    out = np.zeros((n, o, ho, wo), dtype=np.int64)
    for g in range(groups):
        xg = xp[:, g * cg:(g + 1) * cg]
        wg = w[g * og:(g + 1) * og]
        for i in range(kh):
            for j in range(kw):
                tap = xg[:, :, i * dh:i * dh + (ho - 1) * sh + 1:sh,
                         j * dw:j * dw + (wo - 1) * sw + 1:sw]          # (N, Cg, Ho, Wo)
                out[:, g * og:(g + 1) * og] += np.einsum("nchw,oc->nohw", tap, wg[:, :, i, j])
    return out


def matmul(a, b) -> np.ndarray:
    """Exact integer ``a @ b`` for ``a (M, K)`` and ``b (K, N)``: int64 ``(M, N)``.

    Computed as K rank-one int64 updates (no BLAS, no float), after a bound check.
    """
    a = _int64(a, "matmul a")
    b = _int64(b, "matmul b")
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise InputError(f"matmul: need (M, K) @ (K, N), got {a.shape} @ {b.shape}")
    _check_sum_bound(max(1, a.shape[1]), a, b, "matmul")
    out = np.zeros((a.shape[0], b.shape[1]), dtype=np.int64)
    for k in range(a.shape[1]):
        out += a[:, k:k + 1] * b[k:k + 1, :]
    return out


def lane_products(op, x_digits, x_fmt, w_digits, w_fmt, mask=None, x_pad=None,
                  **kwargs) -> np.ndarray:
    """The weighted lane sum ``sum_{k, j} m_k n_j op(p_j, q_k)`` of a layer, lane by lane.

    ``x_digits`` ``(T_a, ...)`` are the activation terms ``p_j`` (lane weights ``n_j`` from
    ``x_fmt``), ``w_digits`` ``(T_w, ...)`` the weight terms ``q_k`` (weights ``m_k`` from
    ``w_fmt``); ``op`` is :func:`conv2d` or :func:`matmul` (``kwargs`` go to it); ``mask``
    ``(T_w, T_a)`` switches lanes off; ``x_pad`` (``T_a`` ints, for :func:`conv2d`) is what
    term ``j`` holds at a padded position (the terms of the input's zero point). Returns the
    exact int64 sum (checked against int64 on Python integers).
    """
    total = 0
    for k, m in enumerate(w_fmt.lane_weights):
        for j, nj in enumerate(x_fmt.lane_weights):
            if mask is not None and not mask[k, j]:
                continue
            pad = {} if x_pad is None else {"pad_value": int(x_pad[j])}
            part = _as_pyint(op(x_digits[j], w_digits[k], **pad, **kwargs)) * (m * nj)
            total = total + part
    if isinstance(total, int):                  # every lane masked off
        shape = op(x_digits[0], w_digits[0], **kwargs).shape
        return np.zeros(shape, dtype=np.int64)
    return _int64(total, "lane sum")


def requantize_channels(acc, multiplier, shift: int, lo: int, hi: int, zero_point: int = 0,
                        mode: str = "rne", axis: int = 1, pre_shift=0) -> np.ndarray:
    """:func:`requantize` with the per-channel multiplier along ``axis`` of any-rank ``acc``."""
    acc = np.moveaxis(np.asarray(acc), axis, -1)
    flat = acc.reshape(-1, acc.shape[-1])
    out = requantize(flat, multiplier, shift, lo, hi, zero_point, mode,
                     pre_shift).reshape(acc.shape)
    return np.moveaxis(out, -1, axis)


def add_requant(a, b, ma: int, mb: int, shift: int, lo: int, hi: int, zero_point: int = 0,
                mode: str = "rne", *, a_zero_point: int = 0, b_zero_point: int = 0
                ) -> np.ndarray:
    """Residual add of two integer tensors on different grids, one rounding:
    ``clamp(round_shift((a - za) * ma + (b - zb) * mb, shift, mode) + zero_point, lo, hi)``
    (int64 out); ``za``, ``zb`` are the inputs' zero points (the integers of real 0)."""
    a = _as_pyint(a) - int(a_zero_point)
    b = _as_pyint(b) - int(b_zero_point)
    s = a * int(ma) + b * int(mb)
    out = np.empty(s.shape, dtype=object)
    for idx, v in np.ndenumerate(s):
        out[idx] = min(max(round_shift(int(v), shift, mode) + zero_point, lo), hi)
    return out.astype(np.int64)


def _windows(x: np.ndarray, kernel, stride, padding, fill) -> np.ndarray:
    """``(N, C, Ho, Wo, kh, kw)`` windows of ``x`` padded with ``fill``."""
    kh, kw = _pair(kernel, "kernel")
    sh, sw = _pair(stride, "stride")
    top, left, bottom, right = _pads(padding)
    n, c, h, w = x.shape
    xp = np.full((n, c, h + top + bottom, w + left + right), fill, dtype=object)
    xp[:, :, top:top + h, left:left + w] = x
    ho = (h + top + bottom - kh) // sh + 1
    wo = (w + left + right - kw) // sw + 1
    out = np.empty((n, c, ho, wo, kh, kw), dtype=object)
    for i in range(ho):
        for j in range(wo):
            out[:, :, i, j] = xp[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw]
    return out


def maxpool2d(x, kernel, stride=None, padding=0) -> np.ndarray:
    """Integer max pooling ``(N, C, H, W) -> (N, C, Ho, Wo)``; padded positions never win
    (as ONNX MaxPool). Exact: no arithmetic, only comparisons. Returns int64."""
    x = _as_pyint(_int64(x, "maxpool2d x"))
    stride = kernel if stride is None else stride
    win = _windows(x, kernel, stride, padding, None)
    out = np.empty(win.shape[:4], dtype=object)
    for idx in np.ndindex(*win.shape[:4]):
        vals = [v for v in win[idx].ravel() if v is not None]
        out[idx] = max(vals)
    return out.astype(np.int64)


def sumpool2d(x, kernel, stride=None, padding=0) -> np.ndarray:
    """Integer window sums ``(N, C, H, W) -> (N, C, Ho, Wo)`` with zero padding (int64):
    the numerator of an average pool that counts padded positions (divide by kh*kw)."""
    x = _as_pyint(_int64(x, "sumpool2d x"))
    stride = kernel if stride is None else stride
    win = _windows(x, kernel, stride, padding, 0)
    out = np.empty(win.shape[:4], dtype=object)
    for idx in np.ndindex(*win.shape[:4]):
        out[idx] = sum(int(v) for v in win[idx].ravel())
    return _int64(out, "sumpool2d")


def global_sum(x) -> np.ndarray:
    """Sum over the spatial axes ``(N, C, H, W) -> (N, C)`` on Python integers (int64 out)."""
    x = _as_pyint(_int64(x, "global_sum x"))
    return _int64(x.sum(axis=(2, 3)), "global_sum")


# -- whole integer programs --------------------------------------------------------------------

def _gemm_acc(q, x, fin, lanes: str, zero_point: int = 0) -> np.ndarray:
    """The exact accumulator of a conv/linear layer ``q`` on input ``x`` of format ``fin``
    whose padded positions hold ``zero_point`` (the input's integer of real 0)."""
    zp = int(zero_point)
    if isinstance(q, P.Conv):
        op = conv2d
        kw = dict(stride=q.stride, padding=q.padding, dilation=q.dilation, groups=q.groups)
        wd = q.w_digits
        pads = [int(v) for v in split_integer(np.array([zp]), fin)[:, 0]]
    else:
        op, kw = matmul, {}
        wd = np.transpose(q.w_digits, (0, 2, 1))                # (T_w, F, O)
        pads = None
    mask = q.lanes_on(fin.terms)
    if lanes == "model" and mask.all():
        total = None
        for k, m in enumerate(q.w_fmt.lane_weights):
            pad = {} if pads is None else {"pad_value": zp}
            part = _as_pyint(op(x, wd[k], **pad, **kw)) * m
            total = part if total is None else total + part
        acc = _int64(total, f"layer {q.name!r} basis-model sum")
    else:
        acc = lane_products(op, split_integer(x, fin), fin, wd, q.w_fmt, mask=mask,
                            x_pad=pads, **kw)
    bshape = (1, -1) + (1,) * (acc.ndim - 2)
    return _int64(_as_pyint(acc) + _as_pyint(q.bias).reshape(bshape), f"layer {q.name!r}")


def _gemm(q, args, tensors, lanes):
    xin = tensors[q.inputs[0]]
    x = args[0]
    if isinstance(q, P.Linear) and np.ndim(x) == 3:     # per token: (N*T, F) rows
        n, t, _ = x.shape
        out = _gemm(q, [np.asarray(x).reshape(n * t, -1)], tensors, lanes)
        return out.reshape(n, t, -1)
    acc = _gemm_acc(q, x, xin.fmt, lanes, xin.zero_point)
    if q.requant is None:
        return acc
    rq = q.requant
    return requantize_channels(acc, rq.multiplier, rq.shift, rq.lo, rq.hi, rq.zero_point,
                               rq.mode, axis=1, pre_shift=rq.pre_shift)


def _scaled(q, sums):
    """A pool's ``clamp(round_shift((sums - count z) m0, shift) + z)``, ``z`` the zero point
    its output keeps from its input."""
    z = q.out.zero_point
    mult = np.full(sums.shape[1], q.m0, dtype=np.int64)
    return requantize_channels(_as_pyint(sums) - q.count * z, mult, q.shift, q.out.lo,
                               q.out.hi, z, q.mode, axis=1)


def lookup(x, table, index_lo: int) -> np.ndarray:
    """``table[c or 0, x - index_lo]`` for NCHW / (N, F) integers ``x`` and an integer
    ``(1, L)`` or ``(C, L)`` table; InputError for a value outside the table. int64 out."""
    x = _int64(x, "lookup x")
    table = _int64(table, "lookup table")
    idx = x - int(index_lo)
    if idx.size and (idx.min() < 0 or idx.max() >= table.shape[1]):
        raise InputError(f"lookup: input values [{x.min()}, {x.max()}] leave the table's "
                         f"[{index_lo}, {index_lo + table.shape[1] - 1}]")
    rows = np.zeros(x.shape, dtype=np.int64)
    if table.shape[0] > 1:
        rows += np.arange(x.shape[1]).reshape((1, -1) + (1,) * (x.ndim - 2))
    return table[rows, idx]


def mul_requant(a, b, m0: int, shift: int, lo: int, hi: int, zero_point: int = 0,
                mode: str = "rne", *, a_zero_point: int = 0, b_zero_point: int = 0
                ) -> np.ndarray:
    """``clamp(round_shift((a - za)(b - zb) m0, shift, mode) + zero_point, lo, hi)`` on
    Python integers (numpy broadcasting: a ``(N, C, 1, 1)`` gate times a map); int64 out."""
    p = (_as_pyint(a) - int(a_zero_point)) * (_as_pyint(b) - int(b_zero_point)) * int(m0)
    out = np.empty(p.shape, dtype=object)
    for idx, v in np.ndenumerate(p):
        out[idx] = min(max(round_shift(int(v), shift, mode) + zero_point, lo), hi)
    return out.astype(np.int64)


def _concat(q, args, tensors, lanes):
    parts = []
    for x, name, m in zip(args, q.inputs, q.multipliers):
        parts.append(mul_requant(x, np.ones((1,) * np.ndim(x), dtype=np.int64), m, q.shift,
                                 q.out.lo, q.out.hi, q.out.zero_point, q.mode,
                                 a_zero_point=tensors[name].zero_point))
    return np.concatenate(parts, axis=1)


def _scale(q, args, tensors, lanes):
    x = _as_pyint(args[0]) - int(tensors[q.inputs[0]].zero_point)
    axis = 2 if x.ndim == 3 else 1                  # a (N, T, F) sequence: F, the last
    shape = [1] * x.ndim
    shape[axis] = -1
    acc = (x * _as_pyint(q.sign).reshape(shape) * (1 << q.frac_bits)
           + _as_pyint(q.bias).reshape(shape))
    rq = q.requant
    return requantize_channels(acc, rq.multiplier, rq.shift, rq.lo, rq.hi, rq.zero_point,
                               rq.mode, axis=axis)


def head_matmul(a, b, heads: int, transpose_b: bool) -> np.ndarray:
    """Exact per-head products of integer sequences on Python integers (object array out).

    ``transpose_b``: ``a (N, T, H*d)``, ``b (N, S, H*d)`` -> ``(N, T, H*S)``, block ``h`` =
    ``a_h b_h^T``; else ``a (N, T, H*S)``, ``b (N, S, H*d)`` -> ``(N, T, H*d)``, block ``h`` =
    ``a_h b_h``. Each output is ``sum_i a[n, t, i] b[n, s, i]`` over the head's block."""
    a, b = _as_pyint(a), _as_pyint(b)
    n, t, fa = a.shape
    s_len, fb = b.shape[1], b.shape[2]
    if transpose_b:
        d = fa // heads
        out = np.empty((n, t, heads * s_len), dtype=object)
        for h in range(heads):
            blk = slice(h * d, (h + 1) * d)
            for i in range(n):
                out[i, :, h * s_len:(h + 1) * s_len] = a[i, :, blk].dot(b[i, :, blk].T)
        return out
    d = fb // heads
    out = np.empty((n, t, heads * d), dtype=object)
    for h in range(heads):
        for i in range(n):
            out[i, :, h * d:(h + 1) * d] = (a[i, :, h * s_len:(h + 1) * s_len]
                                            .dot(b[i, :, h * d:(h + 1) * d]))
    return out


def _matmul(q, args, tensors, lanes):
    za, zb = (int(tensors[i].zero_point) for i in q.inputs)
    acc = head_matmul(_as_pyint(args[0]) - za, _as_pyint(args[1]) - zb, q.heads,
                      q.transpose_b)
    if any(abs(int(v)) > q.acc_bound for v in acc.ravel()):
        raise WidthError(f"layer {q.name!r}: matmul accumulator beyond its proved bound")
    return mul_requant(acc, np.ones(acc.shape, dtype=np.int64), q.m0, q.shift, q.out.lo,
                       q.out.hi, q.out.zero_point, q.mode)


def softmax_int(x, groups: int, exp_table, out_hi: int, mode: str = "rne") -> np.ndarray:
    """Integer softmax of each of ``groups`` blocks of the last axis of ``x`` (any rank):
    ``d = max(block) - x``, ``e = exp_table[d]``, ``out = round_div(e * out_hi, sum(e))``
    on Python integers; int64 out in ``[0, out_hi]``."""
    x = _int64(x, "softmax x")
    table = [int(v) for v in np.asarray(exp_table).ravel()]
    flat = x.reshape(-1, x.shape[-1])
    blk = flat.shape[1] // groups
    out = np.empty(flat.shape, dtype=np.int64)
    for r in range(flat.shape[0]):
        for g in range(groups):
            vals = [int(v) for v in flat[r, g * blk:(g + 1) * blk]]
            top = max(vals)
            e = [table[top - v] for v in vals]
            total = sum(e)
            for j, ej in enumerate(e):
                out[r, g * blk + j] = round_div(ej * int(out_hi), total, mode)
    return out.reshape(x.shape)


def layernorm_int(x, gain, offset, pre_shift: int, sqrt_bits: int, frac_bits: int,
                  eps_int: int, lo: int, hi: int, zero_point: int = 0,
                  mode: str = "rne") -> np.ndarray:
    """Integer LayerNorm over the last axis (docs/numerics.md, "Transformer ops") on Python
    integers: ``c_i = round_shift(F x_i - sum x, pre_shift)``, ``r = max(1, isqrt(sum c^2
    4^sqrt_bits + eps_int))``, ``out_i = clamp(round_div(c_i G_i + B_i r, r 2^frac_bits) +
    zero_point, lo, hi)``; int64 out."""
    x = _int64(x, "layernorm x")
    g = [int(v) for v in gain]
    b = [int(v) for v in offset]
    flat = x.reshape(-1, x.shape[-1])
    f = flat.shape[1]
    out = np.empty(flat.shape, dtype=np.int64)
    for r_i in range(flat.shape[0]):
        vals = [int(v) for v in flat[r_i]]
        total = sum(vals)
        c = [round_shift(f * v - total, pre_shift, mode) for v in vals]
        r = max(1, math.isqrt(sum(ci * ci for ci in c) * 4 ** sqrt_bits + eps_int))
        den = r << frac_bits
        for i in range(f):
            v = round_div(c[i] * g[i] + b[i] * r, den, mode) + zero_point
            out[r_i, i] = min(max(v, lo), hi)
    return out.reshape(x.shape)


def zero_insert2d(x, stride, value: int) -> np.ndarray:
    """NCHW ``x`` with ``stride - 1`` positions holding ``value`` between neighbouring pixels:
    ``(N, C, (H - 1) sh + 1, (W - 1) sw + 1)``."""
    x = _int64(x, "zero_insert x")
    sh, sw = _pair(stride, "stride")
    n, c, h, w = x.shape
    out = np.full((n, c, (h - 1) * sh + 1, (w - 1) * sw + 1), int(value), dtype=np.int64)
    out[:, :, ::sh, ::sw] = x
    return out


def upsample2d(x, scale) -> np.ndarray:
    """NCHW ``x`` with each pixel repeated ``scale`` ``(sh, sw)`` times."""
    x = _int64(x, "upsample x")
    sh, sw = _pair(scale, "scale")
    return x.repeat(sh, axis=2).repeat(sw, axis=3)


def pad2d(x, padding, value: int) -> np.ndarray:
    """NCHW ``x`` padded by ``(top, left, bottom, right)`` positions holding ``value``."""
    x = _int64(x, "pad x")
    top, left, bottom, right = _pads(padding)
    n, c, h, w = x.shape
    out = np.full((n, c, h + top + bottom, w + left + right), int(value), dtype=np.int64)
    out[:, :, top:top + h, left:left + w] = x
    return out


def _no_input(q, args, tensors, lanes):
    raise InputError(f"golden.run_layer: layer {q.name!r} quantizes the float input; use "
                     f"QProgram.quantize_input")


_RUN = {
    P.Quantize: _no_input,
    P.Conv: _gemm,
    P.Linear: _gemm,
    P.Add: lambda q, a, t, lanes: add_requant(
        a[0], a[1], q.ma, q.mb, q.shift, q.out.lo, q.out.hi, q.out.zero_point, q.mode,
        a_zero_point=t[q.inputs[0]].zero_point, b_zero_point=t[q.inputs[1]].zero_point),
    P.MaxPool: lambda q, a, t, lanes: maxpool2d(a[0], q.kernel, q.stride, q.padding),
    P.AvgPool: lambda q, a, t, lanes: _scaled(q, sumpool2d(a[0], q.kernel, q.stride,
                                                           q.padding)),
    P.GlobalAvgPool: lambda q, a, t, lanes: _scaled(q, global_sum(a[0])[:, :, None, None]),
    P.Clamp: lambda q, a, t, lanes: np.clip(_int64(a[0], "clamp"), q.out.lo, q.out.hi),
    P.Flatten: lambda q, a, t, lanes: _int64(a[0], "flatten").reshape(a[0].shape[0], -1),
    P.Lookup: lambda q, a, t, lanes: lookup(a[0], q.table, q.index_lo),
    P.Mul: lambda q, a, t, lanes: mul_requant(
        a[0], a[1], q.m0, q.shift, q.out.lo, q.out.hi, q.out.zero_point, q.mode,
        a_zero_point=t[q.inputs[0]].zero_point, b_zero_point=t[q.inputs[1]].zero_point),
    P.Concat: _concat,
    P.Scale: _scale,
    P.Pad: lambda q, a, t, lanes: pad2d(a[0], q.padding, q.value),
    P.ZeroInsert: lambda q, a, t, lanes: zero_insert2d(a[0], q.stride, q.out.zero_point),
    P.Upsample: lambda q, a, t, lanes: upsample2d(a[0], q.scale),
    P.Slice: lambda q, a, t, lanes: np.ascontiguousarray(
        a[0][:, q.start] if q.squeeze else a[0][:, q.start:q.stop]),
    P.MatMul: _matmul,
    P.Softmax: lambda q, a, t, lanes: softmax_int(a[0], q.groups, q.exp_table, q.out.hi,
                                                  q.mode),
    P.LayerNorm: lambda q, a, t, lanes: layernorm_int(
        a[0], q.gain, q.offset, q.pre_shift, q.sqrt_bits, q.frac_bits, q.eps_int, q.out.lo,
        q.out.hi, q.out.zero_point, q.mode),
}
P.check_handlers(_RUN, "golden")


def run_layer(q, args: list[np.ndarray], tensors: dict, lanes: str = "layer") -> np.ndarray:
    """One layer of a :class:`~fpxint_hw.quant.QProgram` on NCHW / (N, F) integer inputs.

    ``tensors`` maps tensor names to their :class:`~fpxint_hw.quant.QTensor`. With
    ``lanes="layer"`` a conv/linear computes all ``T_w x T_a`` lane products of the split
    activation terms and weight terms (:func:`lane_products`); with ``"model"`` the T_w basis
    models each multiply the whole activation by one weight term, and their outputs are
    summed (``sum_k m_k op(x, q_k)``). Returns int64.
    """
    return _RUN[type(q)](q, args, tensors, lanes)


def run_program(program, x: np.ndarray, capture: bool = False):
    """Run a whole QProgram on the float batch ``x`` with the golden operators.

    The input is quantized by :meth:`QProgram.quantize_input`; a ``model``-level program is
    evaluated basis model by basis model, a ``layer``-level one lane by lane. Returns
    ``(output, captured)`` like the fast simulator: int64 NCHW / (N, F) arrays.
    """
    tensors = program.tensors()
    env: dict[str, np.ndarray] = {}
    for q in program.layers:
        if isinstance(q, P.Quantize):
            env[q.name] = program.quantize_input(x).astype(np.int64)
        else:
            env[q.name] = run_layer(q, [env[i] for i in q.inputs], tensors, program.level)
    out = env[program.output]
    return out, (env if capture else {})
