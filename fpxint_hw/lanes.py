"""Weighted integer lanes and their exact sums: the AbelianAdd adder tree in software.

A :class:`Lanes` value holds L integer tensors ``v_l`` (one per basis lane), a non-negative
integer weight ``w_l`` per lane and the real value ``unit`` of one integer step, so that

    real value = unit * sum_l w_l * v_l          (the lane sum is exact)

Each lane also carries a static interval ``[lo_l, hi_l]`` that every element of ``v_l`` is
guaranteed to lie in (derived from the formats, not from the data). Widths of every partial
sum are derived from these intervals and checked before anything is added, so an int64 sum
can never wrap silently.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np

from .intops import check_width, width_for_interval

__all__ = ["Lanes", "Tree", "lane_sum", "tree_sum", "require_compatible", "ACC_BITS"]

#: Width of the numpy accumulators used for lane sums (int64).
ACC_BITS = 64

#: A lane-sum tree: a lane index, or a tuple of sub-trees added together.
Tree = Union[int, tuple["Tree", ...]]


@dataclass(frozen=True, eq=False)
class Lanes:
    """L weighted integer lanes (see the module docstring).

    Members
    -------
    values : int64 array, shape ``(L, *shape)``
        Lane tensors.
    weights : tuple of L ints >= 0
        Lane weights ``w_l``.
    intervals : tuple of L ``(lo, hi)`` int pairs
        Static bounds of each lane's elements.
    unit : float or float64 array broadcastable to ``shape``
        Real value of one integer step of the lane sum (units of the represented tensor).
    """

    values: np.ndarray
    weights: tuple[int, ...]
    intervals: tuple[tuple[int, int], ...]
    unit: np.ndarray | float = 1.0

    def __post_init__(self):
        v = self.values
        if not isinstance(v, np.ndarray) or v.dtype != np.int64 or v.ndim < 1:
            raise TypeError("Lanes.values must be an int64 array of shape (L, ...), got "
                            f"{getattr(v, 'dtype', type(v).__name__)}")
        n = v.shape[0]
        if len(self.weights) != n or len(self.intervals) != n:
            raise ValueError(f"Lanes: {n} lanes but {len(self.weights)} weights and "
                             f"{len(self.intervals)} intervals")
        for w in self.weights:
            if isinstance(w, bool) or not isinstance(w, numbers.Integral) or w < 0:
                raise ValueError(f"Lanes.weights must be integers >= 0, got {w!r}")
        for lo, hi in self.intervals:
            # int64 lanes: the static interval itself must fit.
            check_width(lo, hi, ACC_BITS, "Lanes interval")

    @property
    def count(self) -> int:
        """Number of lanes L."""
        return self.values.shape[0]

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of each lane tensor."""
        return self.values.shape[1:]

    def weighted_interval(self, lane: int) -> tuple[int, int]:
        """Static interval of ``w_l * v_l``."""
        lo, hi = self.intervals[lane]
        w = self.weights[lane]
        return w * lo, w * hi

    @property
    def interval(self) -> tuple[int, int]:
        """Static interval of the whole lane sum."""
        parts = [self.weighted_interval(i) for i in range(self.count)]
        return sum(p[0] for p in parts), sum(p[1] for p in parts)

    @property
    def width(self) -> int:
        """Signed width (bits) of the lane sum, from the static intervals."""
        return width_for_interval(*self.interval, signed=True)

    def value(self, mask: Sequence[bool] | None = None) -> np.ndarray:
        """Real value ``unit * lane_sum`` (float64) of the (masked) lane sum."""
        return np.asarray(self.unit, dtype=np.float64) * lane_sum(self, mask=mask)


def _weighted(lanes: Lanes, i: int) -> np.ndarray:
    w = lanes.weights[i]
    v = lanes.values[i]
    if w & (w - 1) == 0 and w:
        return v << (w.bit_length() - 1)   # power-of-two weight: a shift, as in hardware
    return v * w


def _check_lane_indices(lanes: Lanes, idx: Sequence[int], what: str) -> None:
    for i in idx:
        if isinstance(i, bool) or not isinstance(i, numbers.Integral) or not 0 <= i < lanes.count:
            raise ValueError(f"{what}: lane index {i!r} out of range 0..{lanes.count - 1}")


def lane_sum(lanes: Lanes, order: Sequence[int] | None = None,
             mask: Sequence[bool] | None = None) -> np.ndarray:
    """Exact ``sum_l w_l v_l`` as int64, adding lanes one by one in ``order``.

    Parameters
    ----------
    order : permutation of ``range(L)``, optional
        The order in which lanes are accumulated (default: 0, 1, ..., L-1).
    mask : L bools, optional
        Lanes switched off (False) contribute nothing: the anytime result of the remaining
        lanes.

    Raises
    ------
    WidthError
        Before adding anything, if any partial sum could leave int64.
    """
    order = list(range(lanes.count)) if order is None else list(order)
    _check_lane_indices(lanes, order, "lane_sum")
    if sorted(order) != list(range(lanes.count)):
        raise ValueError(f"lane_sum: order must be a permutation of 0..{lanes.count - 1}, "
                         f"got {order}")
    if mask is not None and len(mask) != lanes.count:
        raise ValueError(f"lane_sum: mask needs {lanes.count} entries, got {len(mask)}")
    active = [i for i in order if mask is None or mask[i]]
    lo = hi = 0
    for i in active:
        a, b = lanes.weighted_interval(i)
        lo, hi = lo + a, hi + b
        check_width(lo, hi, ACC_BITS, f"lane_sum partial sum after lane {i}")
    total = np.zeros(lanes.shape, dtype=np.int64)
    for i in active:
        total += _weighted(lanes, i)
    return total


def tree_sum(lanes: Lanes, tree: Tree) -> np.ndarray:
    """Exact lane sum computed in the shape of ``tree`` (an adder tree).

    ``tree`` is a lane index or a tuple of sub-trees, e.g. ``((0, 3), (1, 2))``; every lane
    appears exactly once. Each node's interval is checked against int64 before any addition.
    """
    leaves: list[int] = []

    def collect(node):
        if isinstance(node, tuple):
            if not node:
                raise ValueError("tree_sum: empty node in tree")
            for child in node:
                collect(child)
        else:
            leaves.append(node)

    collect(tree)
    _check_lane_indices(lanes, leaves, "tree_sum")
    if sorted(leaves) != list(range(lanes.count)):
        raise ValueError(f"tree_sum: tree must use each lane 0..{lanes.count - 1} exactly "
                         f"once, got leaves {leaves}")

    def interval(node):
        if isinstance(node, tuple):
            parts = [interval(c) for c in node]
            lo, hi = sum(p[0] for p in parts), sum(p[1] for p in parts)
            check_width(lo, hi, ACC_BITS, f"tree_sum node {node}")
            return lo, hi
        return lanes.weighted_interval(node)

    interval(tree)

    def evaluate(node):
        if isinstance(node, tuple):
            acc = evaluate(node[0]).copy()
            for child in node[1:]:
                acc += evaluate(child)
            return acc
        return _weighted(lanes, node)

    return evaluate(tree)


def require_compatible(a: Lanes, b: Lanes, what: str) -> None:
    """Raise unless ``a`` and ``b`` are isomorphic: same lane count, weights, shape, unit."""
    if a.count != b.count or a.weights != b.weights:
        raise ValueError(f"{what}: lane weights differ ({a.weights} vs {b.weights})")
    if a.shape != b.shape:
        raise ValueError(f"{what}: lane shapes differ ({a.shape} vs {b.shape})")
    if not np.array_equal(np.asarray(a.unit), np.asarray(b.unit)):
        raise ValueError(f"{what}: lane units (scales) differ")
