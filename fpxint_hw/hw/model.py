"""Python specifications of the hardware components, written straight from the tile semantics.

The functions use only ``+`` and ``*`` on their arguments, so they accept Python ints (unit
tests) and Amaranth values alike (the formal harness in :mod:`fpxint_hw.flow.formal` proves
the PE equal to :func:`pe_reference` for all inputs).
"""

from __future__ import annotations

from ..spec import ArraySpec

__all__ = ["pe_reference"]


def pe_reference(spec: ArraySpec, w, a, psum, mask):
    """The partial sum one PE passes down for weight digits ``w`` and activation digits ``a``.

    Parameters
    ----------
    spec : ArraySpec
    w : sequence of ``w_terms`` weight digits (term k+1 at index k)
    a : sequence of ``a_terms`` activation digits
    psum : partial sum from above: one value (``combine: pe``) or a sequence of ``lanes``
        values (``combine: column``)
    mask : sequence of ``lanes`` enable bits (0/1), lane ``l = k * a_terms + j``

    Returns
    -------
    ``psum + sum_l mask_l * (m_k * n_j) * w_k * a_j`` (``pe``), or the list
    ``[psum_l + mask_l * w_k * a_j]`` (``column``; the lane weights are applied per column).
    """
    lanes = []
    for k in range(spec.w_terms):
        for j in range(spec.a_terms):
            lanes.append((w[k] * a[j]) * mask[k * spec.a_terms + j])
    if spec.combine == "column":
        return [p + x for p, x in zip(psum, lanes)]
    total = psum
    for weight, x in zip(spec.lane_weights, lanes):
        total = total + weight * x
    return total
