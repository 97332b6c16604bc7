"""Requantization arithmetic: the fixed-point multipliers that take an exact accumulator to
the next tensor's grid with one rounding, and the accumulator bounds that size them.

``out = clamp(round_shift(acc * M0[c], n, mode) + zp, lo, hi)``: :func:`derive_requant`
chooses one shift ``n`` per layer and ``M0[c] = round(real[c] * 2^n)`` as precise as the
multiplier width allows while ``acc * M0`` provably fits int64 (docs/numerics.md).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import InputError, WidthError
from ..intops import acc_intervals, round_shift_bound, width_for_interval
from ..tile import Requant

__all__ = ["derive_requant", "conv_acc_bounds", "conv_acc_interval"]


def conv_acc_bounds(w_int: np.ndarray, lo: int, hi: int, bias=None) -> list[int]:
    """Per output channel, the largest ``|acc|`` over all inputs in ``[lo, hi]`` (Python
    ints): ``max(|min_c|, |max_c|)`` of :func:`fpxint_hw.intops.acc_intervals`."""
    lo_c, hi_c = acc_intervals(w_int, lo, hi, bias)
    return [max(-a, b, 0) for a, b in zip(lo_c, hi_c)]


def conv_acc_interval(w_int: np.ndarray, lo: int, hi: int, bias=None) -> tuple[int, int]:
    """Tight interval of a conv/linear accumulator over all inputs in ``[lo, hi]``.

    ``w_int`` is ``(O, ...)`` integer weights; per output channel the extremes are
    ``sum_i min/max(w_i lo, w_i hi)`` (zero padding included since ``lo <= 0 <= hi``), plus
    the channel's bias. Returns the union over channels (Python ints).
    """
    lo_c, hi_c = acc_intervals(w_int, lo, hi, bias)
    return int(min(0, min(lo_c))), int(max(0, max(hi_c)))


def derive_requant(real: Sequence[float], acc_bound, lo: int, hi: int,
                   mode: str = "rne", multiplier_bits: int = 31, what: str = "layer",
                   zero_point: int = 0, pre_shift: bool = False) -> Requant:
    """Fixed-point multipliers for real output multipliers ``real`` (one per channel).

    ``acc_bound`` is the largest ``|acc|``, one int for the layer or one per channel.
    Chooses one shift ``n`` per layer and ``M0[c] = round(real[c] * 2^n)``: the largest
    ``n <= 62`` with every ``M0[c] <= 2^mb_c - 1``, where ``mb_c = min(multiplier_bits, 63 -
    width(acc_bound[c]))`` so that ``acc * M0`` always fits int64 (with the rounding
    constant, since ``n <= 62``). The channel that limits ``n`` gets a multiplier of ``mb_c``
    significant bits (relative error below ``2^-(mb_c-1)``).

    With ``pre_shift`` (host requantization only: arrays multiply the exact accumulator),
    an accumulator too wide for ``multiplier_bits`` is first rounded right, per channel
    (``Requant.pre_shift[c]``; ``real[c]`` is scaled by ``2^p_c``): channel ``c`` by the
    fewest bits that leave room for the multiplier and, once any channel of the layer needs
    pre-rounding, by more where its ``real[c]`` is small, until its scaled ``real[c] 2^p_c``
    is within a factor 2 of the largest scaled multiplier ``R``. Every channel's ``M0`` then
    keeps ``multiplier_bits`` or one fewer significant bits, however widely the channels'
    scales spread, and the pre-rounding moves an output by at most ``R / 2`` steps in every
    channel, as it does in the channel that needs the widest pre-rounding.

    Raises
    ------
    WidthError
        When the accumulator leaves no room for a useful multiplier or a real multiplier is
        too large to represent (names ``what`` and the values).
    """
    r = np.asarray(real, dtype=np.float64)
    if np.any(~np.isfinite(r)) or np.any(r < 0):
        raise InputError(f"{what}: requantization multipliers must be finite and >= 0")
    bounds = [int(v) for v in np.broadcast_to(np.asarray(acc_bound, dtype=object), r.shape)]
    pre = np.zeros(r.shape, dtype=np.int64)
    if pre_shift and bounds:
        pre = np.array([_fewest_pre_bits(b, multiplier_bits) for b in bounds], dtype=np.int64)
        scaled = r * 2.0 ** pre
        if pre.max() > 0 and np.any(scaled > 0):
            # small multipliers pre-round more, up to the largest one's error: every M0 full
            top = scaled.max()
            grow = np.zeros_like(pre)
            pos = scaled > 0
            grow[pos] = np.floor(np.log2(top / scaled[pos]))
            pre = np.minimum(pre + grow, 62)
        bounds = [round_shift_bound(b, int(p)) for b, p in zip(bounds, pre)]
        r = r * 2.0 ** pre
    mbs = []
    for b in bounds:
        acc_w = width_for_interval(-b, b, signed=True)
        mb = min(int(multiplier_bits), 63 - acc_w)
        if mb < 2:
            raise WidthError(f"{what}: accumulator needs {acc_w} bits; acc * M0 leaves no room "
                             f"for a multiplier in int64 (need at least 2 multiplier bits)")
        mbs.append(mb)
    cap = np.array([(1 << mb) - 1 for mb in mbs], dtype=np.float64)
    pos = r > 0
    if not np.any(pos):
        n = 0
    else:
        n = int(min(62, np.floor(np.log2(cap[pos] / r[pos])).min()))
        while n >= 0 and np.any(np.rint(r * 2.0 ** n) > cap):
            n -= 1
        if n < 0:
            raise WidthError(f"{what}: real multiplier {float(r.max()):g} needs more than "
                             f"{min(mbs)} bits")
    m0 = np.rint(r * 2.0 ** n).astype(np.int64)
    return Requant(m0, n, int(lo), int(hi), zero_point, mode, pre)


def _fewest_pre_bits(bound: int, multiplier_bits: int) -> int:
    """The fewest bits ``p <= 62`` an accumulator ``|acc| <= bound`` is rounded right by so
    that ``acc * M0`` with a ``multiplier_bits``-bit ``M0`` fits int64."""
    # a shift leaves at least bit_length - p bits, plus the sign: start where that fits
    p = max(0, bound.bit_length() + multiplier_bits - 62)
    while 63 - width_for_interval(-round_shift_bound(bound, p), round_shift_bound(bound, p),
                                  signed=True) < multiplier_bits and p < 62:
        p += 1
    return p
