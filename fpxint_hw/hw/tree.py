"""The AbelianAdd adder tree: weighted lane terms summed pairwise, every node sized exactly.

Lane sums form an Abelian group, so any order or tree shape gives the same integer; the
hardware uses a balanced binary tree (depth ``ceil(log2 L)``) and derives every node's width
from the static interval of the values it can hold, so no node can wrap.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, Value

from .layouts import shape_for_interval

__all__ = ["weighted", "adder_tree", "levels"]

Term = tuple[Value, tuple[int, int]]


def weighted(value: Value, rng: tuple[int, int], weight: int, shift: bool) -> Term:
    """``weight * value`` with its interval: a left shift when ``shift`` (``weight`` a power of
    two, pow2 mode) or a constant multiplier (free mode). ``weight >= 1``."""
    if weight < 1:
        raise ValueError(f"weighted: lane weight must be >= 1, got {weight}")
    lo, hi = rng[0] * weight, rng[1] * weight
    if shift:
        if weight & (weight - 1):
            raise ValueError(f"weighted: shift requested for non-power-of-two weight {weight}")
        return value.shift_left(weight.bit_length() - 1), (lo, hi)
    return value * weight, (lo, hi)


def levels(count: int) -> int:
    """Adder levels of :func:`adder_tree` over ``count >= 1`` terms: ``ceil(log2 count)``
    (0 for one term); with ``registered`` its register stages (cycles).

    >>> [levels(n) for n in (1, 2, 3, 4, 5, 8, 9)]
    [0, 1, 2, 2, 3, 3, 4]
    """
    if count < 1:
        raise ValueError(f"levels: count must be >= 1, got {count}")
    return (count - 1).bit_length()


def adder_tree(m: Module, terms: list[Term], name: str = "tree",
               registered: bool = False) -> Term:
    """Sum ``terms`` with a balanced binary tree of adders.

    Each node is a named Signal of the shape its interval needs (see
    :func:`~fpxint_hw.hw.layouts.shape_for_interval`). With ``registered`` every level is a
    register stage (an odd term out is delayed with it), so the sum comes
    :func:`levels` ``(len(terms))`` cycles later. Returns the root and its interval.
    """
    if not terms:
        raise ValueError("adder_tree: no terms to add")
    domain = m.d.sync if registered else m.d.comb
    level = list(terms)
    depth = 0
    while len(level) > 1:
        nxt = []
        for i in range(0, len(level) - 1, 2):
            (a, ra), (b, rb) = level[i], level[i + 1]
            rng = (ra[0] + rb[0], ra[1] + rb[1])
            node = Signal(shape_for_interval(*rng), name=f"{name}_d{depth}_{i // 2}")
            domain += node.eq(a + b)
            nxt.append((node, rng))
        if len(level) % 2:
            value, rng = level[-1]
            if registered:
                node = Signal(shape_for_interval(*rng), name=f"{name}_d{depth}_pass")
                domain += node.eq(value)
                value = node
            nxt.append((value, rng))
        level = nxt
        depth += 1
    return level[0]
