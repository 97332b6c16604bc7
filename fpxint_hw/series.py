"""Tensor series expansion: a real tensor as a sum of low-bit integer terms.

``expand(x, fmt)`` writes ``x ~ sum_{k=1..T} s_k * q_k`` with integer digit tensors ``q_k``
and steps ``s_k = s_1 / radix^(k-1)`` (docs/theory.md gives the definitions and the bound).
Term 1 quantizes ``x``; term k quantizes what the first k-1 terms left over, so every prefix
of terms is itself a coarser approximation.

Example
-------
>>> import numpy as np
>>> from fpxint_hw import SeriesFormat, expand
>>> s = expand(np.array([1.75, -0.5, 0.125]), SeriesFormat(bits=4, terms=2))
>>> s.digits.tolist()
[[7, -2, 0], [0, 0, 4]]
>>> bool(np.all(np.abs(s.reconstruct() - [1.75, -0.5, 0.125]) <= s.error_bound()))
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .digits import split_digits
from .errors import InputError
from .intops import round_div
from .lanes import Lanes, lane_sum
from .spec import SeriesFormat

__all__ = ["Series", "expand", "split_integer", "convergence", "sqnr_db"]


@dataclass(frozen=True, eq=False)
class Series:
    """A tensor written as T integer terms with per-tensor or per-channel scales.

    Members
    -------
    fmt : SeriesFormat
        The format (bits, terms, scale mode, signedness, per-channel).
    digits : integer array, shape ``(T, *shape)``
        ``digits[k-1]`` is the term ``q_k``; in ``[fmt.qmin, fmt.qmax]`` after :func:`expand`,
        wider after AbelianAdd (see ``digit_range``).
    scale : float64 array broadcastable to ``shape``
        First-term step ``s_1`` (real units per digit step), one per channel along ``axis``.
    axis : int or None
        Channel axis of a per-channel series, else None.
    digit_range : (int, int)
        Static bounds of every digit (defaults to the format's range).
    """

    fmt: SeriesFormat
    digits: np.ndarray
    scale: np.ndarray
    axis: int | None = None
    digit_range: tuple[int, int] = field(default=None)

    def __post_init__(self):
        if not isinstance(self.fmt, SeriesFormat):
            raise TypeError(f"Series.fmt must be a SeriesFormat, got {type(self.fmt).__name__}")
        d = self.digits
        if not isinstance(d, np.ndarray) or not np.issubdtype(d.dtype, np.integer):
            raise TypeError("Series.digits must be an integer array")
        if d.ndim < 1 or d.shape[0] != self.fmt.terms:
            raise ValueError(f"Series.digits must have shape (terms={self.fmt.terms}, ...), "
                             f"got {d.shape}")
        np.broadcast_shapes(np.shape(self.scale), d.shape[1:])
        if self.digit_range is None:
            object.__setattr__(self, "digit_range", self.fmt.digit_range)

    # -- shape and steps -------------------------------------------------------------------

    @property
    def terms(self) -> int:
        """Number of terms T."""
        return self.fmt.terms

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the represented tensor."""
        return self.digits.shape[1:]

    @property
    def channel_scales(self) -> np.ndarray:
        """The first-term steps ``s_1`` as a 1-D float64 array (length 1 when per-tensor)."""
        return np.asarray(self.scale, dtype=np.float64).reshape(-1)

    def step(self, k: int) -> np.ndarray:
        """Step ``s_k = s_1 / radix^(k-1)`` of term ``k`` (1-based), broadcastable to shape."""
        self._check_k(k)
        return self.scale / float(self.fmt.radix) ** (k - 1)

    @property
    def unit(self) -> np.ndarray:
        """Step of the last term ``s_T``: ``x ~ unit * combined()``."""
        return self.step(self.terms)

    @property
    def exponent(self) -> int | None:
        """Shared exponent ``E`` with ``unit = scale * 2^-E`` (power-of-two radix), else None."""
        sh = self.fmt.shift
        return None if sh is None else sh * (self.terms - 1)

    # -- values ----------------------------------------------------------------------------

    def lanes(self) -> Lanes:
        """The terms as weighted lanes: values ``q_k``, weights ``m_k``, unit ``s_T``."""
        return Lanes(self.digits.astype(np.int64), self.fmt.lane_weights,
                     (self.digit_range,) * self.terms, self.unit)

    def combined(self) -> np.ndarray:
        """The exact combined integer ``sum_k m_k q_k`` (int64): ``x ~ unit * combined()``."""
        return lane_sum(self.lanes())

    def reconstruct(self, k: int | None = None) -> np.ndarray:
        """Real value (float64) of the first ``k`` terms (all terms when ``k`` is None)."""
        return self.truncate(k).lanes().value() if k is not None else self.lanes().value()

    def truncate(self, k: int) -> "Series":
        """The series of the first ``k`` terms (a coarser approximation of the same tensor)."""
        self._check_k(k)
        return Series(self.fmt.with_terms(k), self.digits[:k], self.scale, self.axis,
                      self.digit_range)

    def error_bound(self, k: int | None = None) -> np.ndarray:
        """Bound on ``|x - reconstruct(k)|`` per element (broadcastable to shape).

        Signed terms: ``s_k / 2``. Unsigned (truncating) terms: ``s_k`` (strict). Holds in exact
        arithmetic for a series made by :func:`expand`; evaluation in float64 adds at most a
        few units in the last place of ``|x|``.
        """
        k = self.terms if k is None else k
        s = self.step(k)
        return s / 2 if self.fmt.signed else s

    def _check_k(self, k):
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= self.terms:
            raise ValueError(f"term count k must be an integer in 1..{self.terms}, got {k!r}")


def _channel_view(x: np.ndarray, axis: int | None) -> tuple[np.ndarray, tuple[int, ...]]:
    """2-D ``(channels, elements)`` view of ``x`` and the shape of the moved tensor."""
    if axis is None:
        return x.reshape(1, -1), x.shape
    moved = np.moveaxis(x, axis, 0)
    return np.ascontiguousarray(moved).reshape(x.shape[axis], -1), moved.shape


def expand(x, fmt: SeriesFormat, axis: int | None = None, name: str = "tensor") -> Series:
    """Expand a real tensor into the residual series of ``fmt``.

    Parameters
    ----------
    x : array_like of float (any shape, at least one element)
        The tensor; float64 input is kept, anything else is converted to float32.
    fmt : SeriesFormat
    axis : int, optional
        Channel axis for ``fmt.per_channel`` (default 0, the output channels of a weight).
        Ignored for per-tensor formats.
    name : str
        Used in error messages.

    Raises
    ------
    InputError
        NaN or Inf values, an empty tensor, or negative values in an unsigned format.
    """
    if not isinstance(fmt, SeriesFormat):
        raise TypeError(f"expand: fmt must be a SeriesFormat, got {type(fmt).__name__}")
    x = np.asarray(x)
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise InputError(f"{name}: expected a real tensor, got dtype {x.dtype}")
    if x.dtype != np.float64:
        x = x.astype(np.float32, copy=False)
    if x.size == 0:
        raise InputError(f"{name}: cannot expand an empty tensor (shape {x.shape})")
    if fmt.per_channel:
        axis = 0 if axis is None else axis
        if x.ndim == 0:
            raise InputError(f"{name}: per-channel format needs at least one axis, got a scalar")
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) \
                or not -x.ndim <= axis < x.ndim:
            raise InputError(f"{name}: channel axis {axis!r} out of range for shape {x.shape}")
        axis = int(axis) % x.ndim
    else:
        axis = None
    x2d, moved_shape = _channel_view(x, axis)
    lo, hi = x2d.min(axis=1), x2d.max(axis=1)      # NaN or Inf anywhere shows up here
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        bad = int(np.count_nonzero(~np.isfinite(x2d)))
        raise InputError(f"{name}: {bad} NaN or Inf value(s); expand finite tensors only")
    lo, hi = lo.astype(np.float64), hi.astype(np.float64)
    if not fmt.signed and lo.min() < 0:
        raise InputError(f"{name}: unsigned format needs values >= 0, minimum is {lo.min():g}")
    maxabs = np.maximum(np.abs(lo), np.abs(hi))
    scale = maxabs / fmt.qmax                      # 0 for an all-zero channel
    dtype = np.int8 if fmt.signed else np.uint8
    out = np.empty((fmt.terms,) + x2d.shape, dtype=dtype)
    split_digits(x2d, scale, fmt.terms, fmt.radix, fmt.qmin, fmt.qmax, fmt.signed, out)
    digits = out.reshape((fmt.terms,) + moved_shape)
    if axis is not None:
        digits = np.moveaxis(digits, 1, axis + 1)
        bshape = [1] * x.ndim
        bshape[axis] = x.shape[axis]
        scale = scale.reshape(bshape)
    else:
        scale = scale.reshape(())
    return Series(fmt, digits, scale, axis)


def split_integer(x, fmt: SeriesFormat) -> np.ndarray:
    """Split integers ``x`` (in units of the last term's step) into the terms of ``fmt``.

    The exact integer form of :func:`expand` with ``s_T = 1``: digit k is
    ``clamp(round(rem / m_k), qmin, qmax)`` (round half to even for signed formats, floor for
    unsigned) and ``rem -= digit * m_k``, so ``sum_k m_k q_k == x`` for every ``x`` in
    ``fmt.combined_range``. This is how a layer's requantized output becomes the next layer's
    activation terms (bit slices for unsigned power-of-two formats).

    Parameters
    ----------
    x : int or integer array, values in ``fmt.combined_range``
    fmt : SeriesFormat

    Returns
    -------
    int64 array of shape ``(fmt.terms, *shape(x))``.
    """
    arr = np.asarray(x)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"split_integer: x must be integers, got dtype {arr.dtype}")
    lo, hi = fmt.combined_range
    if arr.size and (arr.min() < lo or arr.max() > hi):
        raise InputError(f"split_integer: values in [{arr.min()}, {arr.max()}] leave the "
                         f"combined range [{lo}, {hi}] of {fmt}")
    rem = arr.astype(np.int64)
    mode = "rne" if fmt.signed else "floor"
    out = np.empty((fmt.terms,) + arr.shape, dtype=np.int64)
    for k, m in enumerate(fmt.lane_weights):
        q = np.clip(round_div(rem, m, mode), fmt.qmin, fmt.qmax)
        out[k] = q
        rem = rem - q * m
    return out


def sqnr_db(x: np.ndarray, approx: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio ``10 log10(sum x^2 / sum (x - approx)^2)`` in dB.

    ``inf`` when the approximation is exact; ``-inf`` for an all-zero signal with error.
    """
    x = np.asarray(x, dtype=np.float64)
    noise = float(np.sum((x - approx) ** 2))
    signal = float(np.sum(x * x))
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def convergence(x, series: Series) -> list[dict]:
    """Per-prefix fidelity of ``series`` against ``x``.

    Returns one dict per k = 1..T with ``k``, ``max_abs_error`` (units of x), ``sqnr_db``
    (may be inf when exact) and ``bound`` (largest per-element error bound).
    """
    x = np.asarray(x, dtype=np.float64)
    rows = []
    for k in range(1, series.terms + 1):
        approx = series.reconstruct(k)
        rows.append({
            "k": k,
            "max_abs_error": float(np.max(np.abs(x - approx))),
            "sqnr_db": sqnr_db(x, approx),
            "bound": float(np.max(series.error_bound(k))),
        })
    return rows
