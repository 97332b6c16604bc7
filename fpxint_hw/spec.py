"""Frozen, validated specifications: the one source of truth that every other module reads.

A field that is out of range or of the wrong type raises :class:`~fpxint_hw.errors.FormatError`
naming the class, the field and the value. Derived figures are properties, never stored twice.
This module imports nothing from ``hw/``: pipeline stage counts, latencies and pass cycles
depend on the registers the hardware builds and live in :mod:`fpxint_hw.hw.timing`.
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass
from typing import Any, Mapping

from .errors import FormatError
from .intops import (ROUNDING_MODES, dot_interval, int_range, odd_part, product_interval,
                     width_for_interval)
from .yamlfile import read_yaml

__all__ = ["SCALE_MODES", "SeriesFormat", "COMBINE_MODES", "ArraySpec", "load_array_spec"]

#: ``"pow2"``: lane weights are powers of two (wires and adders only); ``"free"``: lane
#: weights are the integer powers of the ideal ratio (a small constant multiplier per lane).
SCALE_MODES = ("pow2", "free")


def check_int(owner: str, field: str, value: Any, lo: int, hi: int | None = None) -> int:
    """Return ``value`` if it is an int in ``[lo, hi]``; else raise a FormatError naming it."""
    rng = f"{lo}..{hi}" if hi is not None else f">= {lo}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise FormatError(f"{owner}.{field} must be an integer {rng}, got {value!r} "
                          f"({type(value).__name__})")
    if value < lo or (hi is not None and value > hi):
        raise FormatError(f"{owner}.{field} must be in {rng}, got {value!r}")
    return int(value)


def check_bool(owner: str, field: str, value: Any) -> bool:
    """Return ``value`` if it is a bool; else raise a FormatError naming it."""
    if not isinstance(value, bool):
        raise FormatError(f"{owner}.{field} must be true or false, got {value!r} "
                          f"({type(value).__name__})")
    return value


def check_choice(owner: str, field: str, value: Any, choices: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``choices``; else raise a FormatError naming it."""
    if value not in choices:
        raise FormatError(f"{owner}.{field} must be one of {', '.join(choices)}, got {value!r}")
    return value


def from_mapping(cls, data: Mapping[str, Any], source: str = "<mapping>"):
    """Build the dataclass ``cls`` from a mapping (a parsed YAML or JSON object).

    Unknown or missing keys raise a FormatError naming ``source`` and the key; field values
    are validated by the class itself, and the message is prefixed with ``source``.
    """
    if not isinstance(data, Mapping):
        raise FormatError(f"{source}: expected a mapping of {cls.__name__} fields, "
                          f"got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise FormatError(f"{source}: unknown {cls.__name__} field {unknown[0]!r}; "
                          f"known fields: {', '.join(fields)}")
    missing = [n for n, f in fields.items() if n not in data
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise FormatError(f"{source}: missing {cls.__name__} field {missing[0]!r}")
    try:
        return cls(**data)
    except FormatError as exc:
        raise FormatError(f"{source}: {exc}") from None


@dataclass(frozen=True)
class SeriesFormat:
    """How a real tensor is written as a series of low-bit integer terms.

    ``x ~ sum_{k=1..terms} s_k * q_k`` with ``s_k = s_1 / radix^(k-1)`` (see docs/theory.md).

    Members
    -------
    bits : int, 2..8
        Bits per term (digit).
    terms : int, 1..8
        Number of terms T.
    scale : {"pow2", "free"}
        Lane ratio: a power of two (``2^(bits-1)``) or the ideal ``2^bits - 2`` (signed).
    per_channel : bool
        One first-term scale per channel (along the expansion axis) instead of per tensor.
    signed : bool
        Signed terms use the symmetric range ``[-(2^(b-1)-1), 2^(b-1)-1]`` and round to
        nearest; unsigned terms are the radix-``2^b`` digits ``[0, 2^b-1]`` of a non-negative
        value (truncating), with ratio ``2^b`` in both scale modes.
    """

    bits: int = 4
    terms: int = 2
    scale: str = "pow2"
    per_channel: bool = False
    signed: bool = True

    def __post_init__(self):
        name = type(self).__name__
        check_int(name, "bits", self.bits, 2, 8)
        check_int(name, "terms", self.terms, 1, 8)
        check_choice(name, "scale", self.scale, SCALE_MODES)
        check_bool(name, "per_channel", self.per_channel)
        check_bool(name, "signed", self.signed)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<mapping>") -> "SeriesFormat":
        """Build from a parsed YAML/JSON mapping; errors name ``source`` and the field."""
        return from_mapping(cls, data, source)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (JSON/YAML ready)."""
        return dataclasses.asdict(self)

    def with_terms(self, terms: int) -> "SeriesFormat":
        """The same format with ``terms`` terms."""
        return dataclasses.replace(self, terms=terms)

    @property
    def qmin(self) -> int:
        """Smallest digit value."""
        return int_range(self.bits, self.signed, narrow=True)[0]

    @property
    def qmax(self) -> int:
        """Largest digit value; the first term maps the largest magnitude to it."""
        return int_range(self.bits, self.signed, narrow=True)[1]

    @property
    def digit_range(self) -> tuple[int, int]:
        """Inclusive range ``(qmin, qmax)`` of one digit."""
        return self.qmin, self.qmax

    @property
    def radix(self) -> int:
        """Ratio ``s_k / s_(k+1)`` between consecutive term steps (an integer >= 2)."""
        if not self.signed:
            return 1 << self.bits
        return (1 << (self.bits - 1)) if self.scale == "pow2" else (1 << self.bits) - 2

    @property
    def shift(self) -> int | None:
        """``log2(radix)`` when the radix is a power of two, else None."""
        r = self.radix
        return r.bit_length() - 1 if r & (r - 1) == 0 else None

    @property
    def lane_weights(self) -> tuple[int, ...]:
        """Integer lane weights ``m_k = radix^(T-k)``: ``x ~ s_T * sum_k m_k q_k``."""
        return tuple(self.radix ** (self.terms - k) for k in range(1, self.terms + 1))

    @property
    def combined_range(self) -> tuple[int, int]:
        """Inclusive range of the combined integer ``sum_k m_k q_k``."""
        total = sum(self.lane_weights)
        return self.qmin * total, self.qmax * total

    @property
    def combined_width(self) -> int:
        """Two's-complement width (bits) of the combined integer (signed iff ``signed``)."""
        return width_for_interval(*self.combined_range, signed=self.signed)


#: Where the weighted lane products are combined: ``"pe"`` inside every processing element by
#: an AbelianAdd adder tree (one partial-sum chain per column), ``"column"`` once per column
#: after every lane has been accumulated down the column separately (one chain per lane).
COMBINE_MODES = ("pe", "column")

#: Largest right shift a tile's requantization may ask for (``Requant.shift``).
MAX_SHIFT = 62


@dataclass(frozen=True)
class ArraySpec:
    """A weight-stationary systolic array of basis-lane MACs: read by the RTL and the simulator.

    The array computes GEMM tiles (:class:`fpxint_hw.tile.GemmTile`) with ``K <= rows`` and
    ``N <= cols`` per pass; each processing element holds the ``w_terms`` terms of one weight
    and forms the ``w_terms x a_terms`` lane products of every activation that passes it.
    docs/hardware.md describes the microarchitecture and what each field changes.

    Members
    -------
    rows, cols : int, 1..64
        Array size: reduction length K per pass and output columns N.
    w_bits, w_terms : int, 2..8 and 1..8
        Weight digit width and number of weight terms (signed, narrow range).
    a_bits, a_terms : int, 2..8 and 1..8
        Activation digit width and number of activation terms.
    a_signed : bool
        Signed activation digits, or unsigned radix-``2^a_bits`` digits (post-ReLU).
    scale : {"pow2", "free"}
        Lane weights: powers of two (lane shifts, wires only) or the free-mode integers
        ``m_k * n_j`` (one small constant multiplier per lane).
    combine : {"pe", "column"}
        Combine the weighted lanes inside each PE (adder tree, one partial sum per column) or
        once per column after accumulating each lane down the column separately.
    depth : int or None
        Reduction length the accumulator must hold exactly (partial sums of longer tiles are
        chained through the array's preload input); None means ``rows``.
    bias_bits : int or None, 1..48
        Signed width of the bias; None means the width of the depth-long dot product.
    acc_bits : int or None, 2..62
        Accumulator width; None derives it (:attr:`acc_needed`). A smaller explicit value is
        refused with the needed width; a larger one is kept.
    m0_bits : int, 1..31
        Width of the unsigned requantization multiplier ``M0``.
    rounding : {"rne", "half_up"}
        Rounding of the requantization shift (fixed in the hardware).
    out_bits, out_terms, out_signed
        Output series format: the next layer's activation terms.
    mult_reg : bool
        Register the lane products inside each PE (one more pipeline stage).
    tree_reg : bool
        Pipeline the PE for speed (``combine: pe`` only): activation digits are multiplied
        in 2-bit slices, and the adder tree over lanes and slices has a register after every
        level (``fpxint_hw.hw.timing.tree_levels`` more stages).
    """

    rows: int = 8
    cols: int = 8
    w_bits: int = 4
    w_terms: int = 2
    a_bits: int = 4
    a_terms: int = 2
    a_signed: bool = False
    scale: str = "pow2"
    combine: str = "pe"
    depth: int | None = None
    bias_bits: int | None = None
    acc_bits: int | None = None
    m0_bits: int = 16
    rounding: str = "rne"
    out_bits: int = 4
    out_terms: int = 2
    out_signed: bool = False
    mult_reg: bool = True
    tree_reg: bool = False

    def __post_init__(self):
        name = type(self).__name__
        check_int(name, "rows", self.rows, 1, 64)
        check_int(name, "cols", self.cols, 1, 64)
        check_int(name, "w_bits", self.w_bits, 2, 8)
        check_int(name, "w_terms", self.w_terms, 1, 8)
        check_int(name, "a_bits", self.a_bits, 2, 8)
        check_int(name, "a_terms", self.a_terms, 1, 8)
        check_bool(name, "a_signed", self.a_signed)
        check_choice(name, "scale", self.scale, SCALE_MODES)
        check_choice(name, "combine", self.combine, COMBINE_MODES)
        if self.depth is not None:
            check_int(name, "depth", self.depth, self.rows, 1 << 24)
        if self.bias_bits is not None:
            check_int(name, "bias_bits", self.bias_bits, 1, 48)
        check_int(name, "m0_bits", self.m0_bits, 1, 31)
        check_choice(name, "rounding", self.rounding, ROUNDING_MODES)
        check_int(name, "out_bits", self.out_bits, 2, 8)
        check_int(name, "out_terms", self.out_terms, 1, 8)
        check_bool(name, "out_signed", self.out_signed)
        check_bool(name, "mult_reg", self.mult_reg)
        check_bool(name, "tree_reg", self.tree_reg)
        if self.tree_reg and self.combine != "pe":
            raise FormatError(f"{name}.tree_reg = true needs combine: pe (a column-combined "
                              f"array has no adder tree in the PE), got combine: {self.combine}")
        if self.out_width > 32:
            raise FormatError(f"{name}: output format {self.out_bits} bits x {self.out_terms} "
                              f"terms needs {self.out_width} bits, at most 32 are supported; "
                              "lower out_bits or out_terms")
        need = self.acc_needed
        if self.acc_bits is not None:
            check_int(name, "acc_bits", self.acc_bits, 2, 62)
            if self.acc_bits < need:
                raise FormatError(
                    f"{name}.acc_bits = {self.acc_bits} is too small: depth {self.reduction_depth}"
                    f" with bias_bits {self.bias_width} needs {need} bits; set acc_bits >= "
                    f"{need} or leave it out to derive it")
        elif need > 62:
            raise FormatError(f"{name}: the accumulator would need {need} bits (more than 62); "
                              "lower depth, bias_bits or the formats")

    # -- construction ------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<mapping>") -> "ArraySpec":
        """Build from a parsed YAML/JSON mapping; errors name ``source`` and the field."""
        return from_mapping(cls, data, source)

    @classmethod
    def from_yaml(cls, path) -> "ArraySpec":
        """Load a spec from a strict YAML file (:mod:`fpxint_hw.yamlfile`); errors name the file
        and field."""
        data = read_yaml(path, "an array spec")
        return cls.from_dict(data, str(path))

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (YAML ready)."""
        return dataclasses.asdict(self)

    # -- formats -----------------------------------------------------------------------

    @property
    def w_fmt(self) -> SeriesFormat:
        """Weight series format (signed digits)."""
        return SeriesFormat(self.w_bits, self.w_terms, self.scale, False, True)

    @property
    def a_fmt(self) -> SeriesFormat:
        """Activation series format."""
        return SeriesFormat(self.a_bits, self.a_terms, self.scale, False, self.a_signed)

    @property
    def out_fmt(self) -> SeriesFormat:
        """Output series format (the next layer's activation terms)."""
        return SeriesFormat(self.out_bits, self.out_terms, self.scale, False, self.out_signed)

    # -- lanes -------------------------------------------------------------------------

    @property
    def lanes(self) -> int:
        """Basis lanes per PE: ``w_terms * a_terms``; lane ``l = k * a_terms + j``."""
        return self.w_terms * self.a_terms

    @property
    def lane_weights(self) -> tuple[int, ...]:
        """Integer weight ``m_k * n_j`` of each lane, in lane order."""
        return tuple(m * n for m in self.w_fmt.lane_weights for n in self.a_fmt.lane_weights)

    @property
    def lane_shifts(self) -> tuple[int, ...] | None:
        """Left shift of each lane (``log2`` of its weight) when all are powers of two."""
        ws = self.lane_weights
        if any(w & (w - 1) for w in ws):
            return None
        return tuple(w.bit_length() - 1 for w in ws)

    @property
    def unit_lane(self) -> int:
        """The lane of weight 1 (last weight term x last activation term)."""
        return self.lanes - 1

    @property
    def digit_product_range(self) -> tuple[int, int]:
        """Range of one lane product ``q_k * p_j`` (a digit times a digit)."""
        return product_interval(self.w_fmt.digit_range, self.a_fmt.digit_range)

    @property
    def pe_sum_range(self) -> tuple[int, int]:
        """Range of one PE's weighted lane sum ``sum_l w_l * product_l``."""
        return product_interval(self.w_fmt.combined_range, self.a_fmt.combined_range)

    # -- widths ------------------------------------------------------------------------

    @property
    def reduction_depth(self) -> int:
        """Longest reduction (K) whose exact accumulator fits: ``depth`` or ``rows``."""
        return self.rows if self.depth is None else self.depth

    @property
    def dot_range(self) -> tuple[int, int]:
        """Range of a ``reduction_depth``-long weighted dot product (no bias)."""
        return dot_interval(self.reduction_depth, self.w_fmt.combined_range,
                            self.a_fmt.combined_range)

    @property
    def bias_width(self) -> int:
        """Signed bias width: ``bias_bits`` or the width of :attr:`dot_range`."""
        if self.bias_bits is not None:
            return self.bias_bits
        return width_for_interval(*self.dot_range, signed=True)

    @property
    def bias_range(self) -> tuple[int, int]:
        """Inclusive range of a bias value."""
        return int_range(self.bias_width, signed=True)

    @property
    def acc_range(self) -> tuple[int, int]:
        """Range of an exact accumulator: dot product plus bias."""
        (dlo, dhi), (blo, bhi) = self.dot_range, self.bias_range
        return dlo + blo, dhi + bhi

    @property
    def acc_needed(self) -> int:
        """Signed width that :attr:`acc_range` needs (the smallest allowed ``acc_bits``)."""
        return width_for_interval(*self.acc_range, signed=True)

    @property
    def acc_width(self) -> int:
        """Accumulator width used by the hardware: ``acc_bits`` or :attr:`acc_needed`."""
        return self.acc_needed if self.acc_bits is None else self.acc_bits

    @property
    def lane_acc_range(self) -> tuple[int, int]:
        """Range of one lane's column sum over ``rows`` products (``combine: column``)."""
        return dot_interval(self.rows, self.w_fmt.digit_range, self.a_fmt.digit_range)

    @property
    def unit_lane_range(self) -> tuple[int, int]:
        """Range of the unit lane's column sum, which also carries the preloaded partial sum."""
        (alo, ahi), (llo, lhi) = self.acc_range, self.lane_acc_range
        return alo + llo, ahi + lhi

    @property
    def m0_range(self) -> tuple[int, int]:
        """Inclusive range of the multiplier ``M0``."""
        return 0, (1 << self.m0_bits) - 1

    @property
    def product_width(self) -> int:
        """Signed width of ``acc * M0`` before the rounding shift."""
        return width_for_interval(*product_interval(self.acc_range, self.m0_range), signed=True)

    @property
    def shift_width(self) -> int:
        """Width of the runtime shift register (holds ``0 .. MAX_SHIFT``)."""
        return MAX_SHIFT.bit_length()

    @property
    def out_range(self) -> tuple[int, int]:
        """Inclusive range of an output integer (the output format's combined range)."""
        return self.out_fmt.combined_range

    @property
    def out_width(self) -> int:
        """Width of an output integer (signed iff ``out_signed``)."""
        return self.out_fmt.combined_width

    @property
    def zp_width(self) -> int:
        """Signed width of the runtime zero point: one bit more than the output."""
        return self.out_width + 1

    @property
    def zp_range(self) -> tuple[int, int]:
        """Inclusive range of the zero point."""
        return int_range(self.zp_width, signed=True)

    # -- activation slices and throughput ----------------------------------------------

    @property
    def act_slices(self) -> list[tuple[int, int, bool]]:
        """``(offset, width, signed)`` of the pieces an activation digit is multiplied in:
        2-bit slices with ``tree_reg`` (the top one signed for signed digits), else the
        whole digit."""
        if not self.tree_reg:
            return [(0, self.a_bits, self.a_signed)]
        return [(lo, min(2, self.a_bits - lo), self.a_signed and lo + 2 >= self.a_bits)
                for lo in range(0, self.a_bits, 2)]

    @property
    def weight_multiples(self) -> list[int]:
        """Odd factors ``o`` other than 1 of the values a 1- or 2-bit activation slice takes
        (``[3]`` unsigned, ``[-1]`` signed, both for mixed slices; ``[]`` without slices or
        with ``combine: column``): each PE holds ``o`` times every weight digit in a
        register, so that a slice times a weight is a select without an adder."""
        if self.combine != "pe":
            return []
        odd = set()
        for _, width, sgn in self.act_slices:
            if width <= 2:
                lo, hi = int_range(width, sgn)
                odd |= {odd_part(c)[0] for c in range(lo, hi + 1) if c}
        return sorted(odd - {1})

    @property
    def macs_per_cycle(self) -> int:
        """Multi-term multiply-accumulates per cycle (one per PE)."""
        return self.rows * self.cols

    @property
    def lane_macs_per_cycle(self) -> int:
        """Digit-by-digit lane products per cycle (``rows * cols * lanes``)."""
        return self.macs_per_cycle * self.lanes

    def summary(self) -> dict[str, Any]:
        """The derived sizes, widths and throughput as a dict (for reports and the command
        line); :func:`fpxint_hw.hw.timing.summary` adds the latencies."""
        return {
            "array": f"{self.rows}x{self.cols}", "lanes": self.lanes,
            "lane_weights": list(self.lane_weights), "acc_width": self.acc_width,
            "bias_width": self.bias_width, "product_width": self.product_width,
            "out_width": self.out_width, "macs_per_cycle": self.macs_per_cycle,
            "lane_macs_per_cycle": self.lane_macs_per_cycle,
        }


def load_array_spec(name_or_path) -> ArraySpec:
    """Load an :class:`ArraySpec` from a YAML path, or by name from the shipped specs.

    ``"small"`` and ``"small.yaml"`` both find the package's ``fpxint_hw/data/arrays/small.yaml``
    (see :func:`fpxint_hw.data.resource_names`); anything containing a path separator or naming
    an existing file is read as a path. An unknown name raises FormatError listing the shipped
    names.
    """
    from .data import find_shipped

    return ArraySpec.from_yaml(find_shipped("arrays", name_or_path, "array spec"))
