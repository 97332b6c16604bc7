"""``lib.data`` layouts of the accelerator's lanes and stream payloads, derived from the spec.

Every port of every component takes its shape from here, and the drivers pack and unpack
stream beats with the same layouts (:mod:`fpxint_hw.hw.bits`), so the hardware and the host
can never disagree about where a field sits.

Lane order inside a PE is ``l = k * a_terms + j`` (weight term k, activation term j, 0-based).
"""

from __future__ import annotations

from amaranth.hdl import Shape, signed, unsigned
from amaranth.lib import data

from ..intops import width_for_interval
from ..spec import ArraySpec, SeriesFormat

__all__ = [
    "shape_for_interval", "digit_shape", "weight_terms", "act_terms", "act_copies",
    "out_shape", "out_terms", "psum_ranges", "psum_layout", "weight_row", "act_vector",
    "config", "result",
]


def shape_for_interval(lo: int, hi: int) -> Shape:
    """Smallest shape holding ``[lo, hi]``: unsigned when ``lo >= 0``, else signed."""
    if lo >= 0:
        return unsigned(width_for_interval(lo, hi, signed=False))
    return signed(width_for_interval(lo, hi, signed=True))


def digit_shape(fmt: SeriesFormat) -> Shape:
    """Shape of one digit of ``fmt``: ``signed(bits)`` or ``unsigned(bits)``."""
    return signed(fmt.bits) if fmt.signed else unsigned(fmt.bits)


def weight_terms(spec: ArraySpec) -> data.ArrayLayout:
    """The ``w_terms`` digits of one weight (index k = term k+1)."""
    return data.ArrayLayout(digit_shape(spec.w_fmt), spec.w_terms)


def act_terms(spec: ArraySpec) -> data.ArrayLayout:
    """The ``a_terms`` digits of one activation (index j = term j+1)."""
    return data.ArrayLayout(digit_shape(spec.a_fmt), spec.a_terms)


def act_copies(spec: ArraySpec) -> data.ArrayLayout:
    """One copy of an activation's digits (:func:`act_terms`) per weight term: copy k is
    what weight term k+1's products read (index k = term k+1)."""
    return data.ArrayLayout(act_terms(spec), spec.w_terms)


def out_shape(spec: ArraySpec) -> Shape:
    """Shape of one requantized output integer (in :attr:`ArraySpec.out_range`)."""
    return signed(spec.out_width) if spec.out_signed else unsigned(spec.out_width)


def out_terms(spec: ArraySpec) -> data.ArrayLayout:
    """The output integer split into the ``out_terms`` digits of the output format."""
    return data.ArrayLayout(digit_shape(spec.out_fmt), spec.out_terms)


def psum_ranges(spec: ArraySpec) -> dict[str | None, tuple[int, int]]:
    """Declared range of each partial-sum field passed down a column.

    ``combine: pe``: ``{None: acc_range}``. ``combine: column``: ``{"l<lane>": range}``, the
    lane's column sum over ``rows`` products; the unit lane (weight 1) also carries the
    preloaded partial sum of earlier passes. Every value a tile with ``K <= depth`` produces
    lies in these ranges; the hardware's widths and the formal proof both start from them.
    """
    if spec.combine == "pe":
        return {None: spec.acc_range}
    return {f"l{lane}": spec.unit_lane_range if lane == spec.unit_lane else spec.lane_acc_range
            for lane in range(spec.lanes)}


def psum_layout(spec: ArraySpec):
    """Partial sum passed down a column: each field of :func:`psum_ranges` as a signed
    integer as wide as its range needs (one ``acc_width`` accumulator for ``combine: pe``).
    """
    if spec.combine == "pe":
        return signed(spec.acc_width)
    return data.StructLayout({name: signed(width_for_interval(*rng, signed=True))
                              for name, rng in psum_ranges(spec).items()})


def weight_row(spec: ArraySpec) -> data.ArrayLayout:
    """Payload of ``w_in``: one row of weights, ``cols`` weights of ``w_terms`` digits."""
    return data.ArrayLayout(weight_terms(spec), spec.cols)


def act_vector(spec: ArraySpec) -> data.StructLayout:
    """Payload of ``a_in``: one activation vector and the partial sums it continues.

    ``acts[i][j]``: digit j of the activation entering row i. ``psum[n]``: the exact
    accumulator of earlier passes for column n (0 for the first pass), added at the top.
    """
    return data.StructLayout({
        "acts": data.ArrayLayout(act_terms(spec), spec.rows),
        "psum": data.ArrayLayout(signed(spec.acc_width), spec.cols),
    })


def config(spec: ArraySpec) -> data.StructLayout:
    """Payload of ``cfg_in``: the per-tile requantization constants and the lane mask.

    ``lane_mask`` bit ``l = k * a_terms + j`` enables lane (k, j).
    """
    return data.StructLayout({
        "bias": data.ArrayLayout(signed(spec.bias_width), spec.cols),
        "m0": data.ArrayLayout(unsigned(spec.m0_bits), spec.cols),
        "shift": unsigned(spec.shift_width),
        "zero_point": signed(spec.zp_width),
        "lo": out_shape(spec),
        "hi": out_shape(spec),
        "lane_mask": unsigned(spec.lanes),
    })


def result(spec: ArraySpec) -> data.StructLayout:
    """Payload of ``o_out``: per column the exact accumulator, the output and its digits."""
    return data.StructLayout({
        "acc": data.ArrayLayout(signed(spec.acc_width), spec.cols),
        "out": data.ArrayLayout(out_shape(spec), spec.cols),
        "digits": data.ArrayLayout(out_terms(spec), spec.cols),
    })
