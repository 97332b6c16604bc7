"""AbelianAdd and AbelianMul: the group operations on isomorphic series (docs/theory.md, s. 3).

Series on the same *frame* (format, shape, scales, axis) form an abelian group under term-wise
addition of their digits: the zero series is the identity and the negated digits the inverse.
Digits of a sum may leave the b-bit range; their static range widens by the same interval
arithmetic the hardware uses, and every width is checked before anything is added.

AbelianMul multiplies two series lane by lane: the product of a T_a-term and a T_b-term series
is T_a x T_b weighted lanes ``q_k (op) p_j`` with weights ``m_k * n_j``, whose exact lane sum
equals the product of the two combined integers.

Example
-------
>>> import numpy as np
>>> from fpxint_hw import SeriesFormat, expand, abelian_add, abelian_mul, lane_sum
>>> fmt = SeriesFormat(bits=4, terms=2)
>>> a = expand(np.array([0.5, -0.25]), fmt)
>>> b = abelian_add(a, a)
>>> bool(np.array_equal(b.combined(), 2 * a.combined()))
True
>>> p = abelian_mul(a, a)                    # 4 lanes, elementwise products
>>> bool(np.array_equal(lane_sum(p), a.combined() ** 2))
True
"""

from __future__ import annotations

from typing import overload

import numpy as np

from .intops import check_width, dot_interval, product_interval
from .lanes import ACC_BITS, Lanes, require_compatible
from .series import Series

__all__ = ["abelian_add", "abelian_neg", "abelian_mul", "zero_like", "require_isomorphic"]


def require_isomorphic(a: Series, b: Series, what: str = "AbelianAdd") -> None:
    """Raise ValueError unless ``a`` and ``b`` share format, shape, axis and scales."""
    if a.fmt != b.fmt:
        raise ValueError(f"{what}: formats differ ({a.fmt} vs {b.fmt})")
    if a.shape != b.shape or a.axis != b.axis:
        raise ValueError(f"{what}: shapes or channel axes differ ({a.shape}, axis {a.axis} vs "
                         f"{b.shape}, axis {b.axis})")
    if not np.array_equal(np.asarray(a.scale), np.asarray(b.scale)):
        raise ValueError(f"{what}: scales differ; only series on the same frame add term-wise")


@overload
def abelian_add(a: Series, b: Series) -> Series: ...
@overload
def abelian_add(a: Lanes, b: Lanes) -> Lanes: ...


def abelian_add(a, b):
    """Term-wise (lane-wise) sum of two isomorphic series, or of two isomorphic lane sets.

    The result represents the sum of the two tensors exactly:
    ``abelian_add(a, b).combined() == a.combined() + b.combined()``.
    """
    if isinstance(a, Series) and isinstance(b, Series):
        require_isomorphic(a, b)
        lo = a.digit_range[0] + b.digit_range[0]
        hi = a.digit_range[1] + b.digit_range[1]
        check_width(lo, hi, ACC_BITS, "AbelianAdd digits")
        digits = a.digits.astype(np.int64) + b.digits.astype(np.int64)
        return Series(a.fmt, digits, a.scale, a.axis, (lo, hi))
    if isinstance(a, Lanes) and isinstance(b, Lanes):
        require_compatible(a, b, "AbelianAdd")
        intervals = tuple((x[0] + y[0], x[1] + y[1]) for x, y in zip(a.intervals, b.intervals))
        return Lanes(a.values + b.values, a.weights, intervals, a.unit)
    raise TypeError(f"abelian_add: need two Series or two Lanes, got {type(a).__name__} and "
                    f"{type(b).__name__}")


def abelian_neg(a: Series) -> Series:
    """The inverse: the same frame with negated digits."""
    lo, hi = a.digit_range
    return Series(a.fmt, -a.digits.astype(np.int64), a.scale, a.axis, (-hi, -lo))


def zero_like(a: Series) -> Series:
    """The identity on ``a``'s frame: all digits zero."""
    return Series(a.fmt, np.zeros(a.digits.shape, dtype=np.int64), a.scale, a.axis, (0, 0))


def abelian_mul(a: Series, b: Series, op: str = "multiply") -> Lanes:
    """Product of two series as ``T_a x T_b`` weighted lanes, lane ``(k, j)`` at index
    ``k * T_b + j``.

    Parameters
    ----------
    op : {"multiply", "matmul"}
        ``"multiply"``: elementwise (broadcasting) products ``q_k * p_j``. ``"matmul"``:
        ``q_k @ p_j`` contracting the last axis of ``a`` with the second-to-last of ``b``
        (a weight ``(out, K)`` times activations ``(K, n)``); per-channel scales are allowed
        only on axes that are not contracted.

    Returns
    -------
    Lanes with weights ``m_k * n_j``, unit ``unit_a * unit_b`` and static intervals from the
    digit ranges (times K for matmul). ``lane_sum`` of the result equals
    ``op(a.combined(), b.combined())`` exactly.
    """
    if op == "multiply":
        out_shape = np.broadcast_shapes(a.shape, b.shape)
        interval = product_interval(a.digit_range, b.digit_range)
        unit = a.unit * b.unit
        combine = np.multiply
    elif op == "matmul":
        if len(a.shape) != 2 or len(b.shape) != 2 or a.shape[1] != b.shape[0]:
            raise ValueError(f"AbelianMul matmul: need (out, K) @ (K, n), got {a.shape} @ "
                             f"{b.shape}")
        if a.axis == 1 or b.axis == 0:
            raise ValueError("AbelianMul matmul: a per-channel scale on the contracted axis "
                             "does not factor out of the sum")
        out_shape = (a.shape[0], b.shape[1])
        interval = dot_interval(a.shape[1], a.digit_range, b.digit_range)
        unit = np.asarray(a.unit).reshape(-1, 1) * np.asarray(b.unit).reshape(1, -1)
        combine = np.matmul
    else:
        raise ValueError(f"AbelianMul: op must be 'multiply' or 'matmul', got {op!r}")
    check_width(*interval, ACC_BITS, f"AbelianMul lane ({op})")
    qa = a.digits.astype(np.int64)
    qb = b.digits.astype(np.int64)
    values = np.empty((a.terms * b.terms,) + out_shape, dtype=np.int64)
    weights = []
    for k, m in enumerate(a.fmt.lane_weights):
        for j, n in enumerate(b.fmt.lane_weights):
            values[k * b.terms + j] = combine(qa[k], qb[j])
            weights.append(m * n)
    return Lanes(values, tuple(weights), (interval,) * len(weights), unit)
