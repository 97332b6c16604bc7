"""The one bridge from an :class:`~fpxint_hw.spec.ArraySpec` to the integer program it computes.

:func:`program_options` reads, from the spec, every option that shapes the integer program:
the weight, activation and output formats, the lane scale mode, the activations' sign, whether
tensors that may be negative get zero points, the requantization multiplier width
(``m0_bits``), the rounding mode. :func:`for_array` lowers a graph with those options, and
then checks every conv/linear layer against the array exactly as the hardware's pass planner
does (:func:`fpxint_hw.hw.program.check_tile` calls the two halves of :func:`gemm_fit`,
:func:`constants_misfit` and :func:`accumulator_misfit`): the formats, the clamp range, the
bias and the exact accumulator interval, which must fit the array's accumulator. The
simulator, the sweep's accuracy, the main job and the tile dump all go through
:func:`for_array`, so a program compiled for a spec is the program that spec's hardware runs.

Residual adds and pools run on the host, with the spec's rounding and 31-bit multipliers (the
host's int64 arithmetic has room for them); docs/simulator.md says so.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ..errors import FormatError
from ..intops import acc_intervals, width_for_interval
from ..spec import ArraySpec, SeriesFormat
from ..tile import Requant
from . import program as P
from .lower import LayerFormats, expand_graph

__all__ = ["ProgramOptions", "program_options", "for_array", "gemm_fit", "constants_misfit",
           "accumulator_misfit", "same_format", "HOST_MULTIPLIER_BITS"]

#: Multiplier width of the host-side requantizations (residual adds, pools).
HOST_MULTIPLIER_BITS = 31


@dataclass(frozen=True)
class ProgramOptions:
    """What an array fixes about the integer program (all read from its spec).

    Members
    -------
    w_fmt, a_fmt, out_fmt : SeriesFormat
        Weight, activation and output formats (``w_fmt`` with per-channel scales unless
        asked otherwise).
    signed_activations, signed_outputs : bool
        The array's activation and output digits are signed: every tensor it reads (or
        writes) is then signed, even a non-negative one; an unsigned array takes a
        non-negative tensor unsigned.
    zero_points : bool
        A tensor that may be negative gets the unsigned format with a mid-range zero point
        (``expand_graph(..., zero_points=True)``): True when the array's activations and
        outputs are both unsigned, the only array on which such a tensor is written and read
        in the array's own formats.
    rounding : {"rne", "half_up"}
    m0_bits : int, 1..31
        Width of each conv/linear requantization multiplier.
    """

    w_fmt: SeriesFormat
    a_fmt: SeriesFormat
    out_fmt: SeriesFormat
    signed_activations: bool
    signed_outputs: bool
    zero_points: bool
    rounding: str
    m0_bits: int

    def to_dict(self) -> dict[str, Any]:
        """The options as plain JSON-ready values."""
        return dataclasses.asdict(self)


def program_options(spec: ArraySpec, *, per_channel: bool = True) -> ProgramOptions:
    """The program options of ``spec`` (see :class:`ProgramOptions`)."""
    return ProgramOptions(
        w_fmt=dataclasses.replace(spec.w_fmt, per_channel=per_channel),
        a_fmt=spec.a_fmt, out_fmt=spec.out_fmt,
        signed_activations=spec.a_signed, signed_outputs=spec.out_signed,
        zero_points=not (spec.a_signed or spec.out_signed), rounding=spec.rounding,
        m0_bits=spec.m0_bits)


def same_format(a: SeriesFormat, b: SeriesFormat) -> bool:
    """True when two formats have the same digits and lane weights (scales aside)."""
    return (a.bits, a.terms, a.signed, a.lane_weights) == (b.bits, b.terms, b.signed,
                                                           b.lane_weights)


def _fmt_text(f: SeriesFormat) -> str:
    return f"{f.bits}-bit x {f.terms} {'signed' if f.signed else 'unsigned'} {f.scale}"


def constants_misfit(spec: ArraySpec, w_fmt: SeriesFormat, a_fmt: SeriesFormat,
                     out_fmt: SeriesFormat | None, bias: np.ndarray, multiplier: np.ndarray,
                     mode: str, lo: int, hi: int, zero_point: int = 0,
                     pre_shift=0) -> str | None:
    """Why the array cannot take a GEMM's formats, rounding or constants, or None.

    ``bias`` and ``multiplier`` (``M0``) are per output channel; ``lo``/``hi`` the clamp;
    ``pre_shift`` the requantization's pre-rounding of the accumulator (host only).
    """
    for field, got, want in (("weights", w_fmt, spec.w_fmt), ("activations", a_fmt,
                                                              spec.a_fmt)):
        if not same_format(got, want):
            return f"{field} are {_fmt_text(got)}, the array takes {_fmt_text(want)}"
    if out_fmt is not None and not same_format(out_fmt, spec.out_fmt):
        return f"outputs are {_fmt_text(out_fmt)}, the array makes {_fmt_text(spec.out_fmt)}"
    if mode != spec.rounding:
        return f"rounding is {mode!r}, the array rounds {spec.rounding!r}"
    if np.any(np.asarray(pre_shift)):
        return (f"its requantization pre-rounds the accumulator by up to "
                f"{int(np.max(pre_shift))} bits (a host "
                f"step); the array multiplies the exact accumulator")
    checks = (("requantization multiplier M0", np.asarray(multiplier), spec.m0_range),
              ("bias", np.asarray(bias), spec.bias_range),
              ("clamp lo", np.array([lo]), spec.out_range),
              ("clamp hi", np.array([hi]), spec.out_range),
              ("zero point", np.array([zero_point]), spec.zp_range))
    for field, arr, (rlo, rhi) in checks:
        if arr.size and (arr.min() < rlo or arr.max() > rhi):
            bad = arr.min() if arr.min() < rlo else arr.max()
            return f"{field} value {int(bad)} leaves the array's range [{rlo}, {rhi}]"
    return None


def accumulator_misfit(spec: ArraySpec, a_fmt: SeriesFormat, weights: np.ndarray,
                       bias: np.ndarray) -> str | None:
    """Why a GEMM's exact accumulator could leave the array's, or None.

    ``weights`` is the combined weight integers ``(N, K)`` (output channel first). The check
    is exact: every partial sum over any subset of the reduction (each chained pass) lies in
    the channel's tight interval over all activations of ``a_fmt``
    (:func:`fpxint_hw.intops.acc_intervals`), which must lie in the spec's ``acc_range``.
    """
    alo, ahi = a_fmt.combined_range
    mins, maxes = acc_intervals(weights, alo, ahi, bias)
    need_lo, need_hi = min(mins, default=0), max(maxes, default=0)
    acc_lo, acc_hi = spec.acc_range
    if need_lo < acc_lo or need_hi > acc_hi:
        k = int(np.prod(np.asarray(weights).shape[1:]))
        need = width_for_interval(min(need_lo, 0), max(need_hi, 0), signed=True)
        return (f"the accumulator reaches [{need_lo}, {need_hi}] ({need} bits) over K = {k}; "
                f"the array's accumulator, sized for depth {spec.reduction_depth}, holds "
                f"[{acc_lo}, {acc_hi}] ({spec.acc_width} bits); use a spec with a larger "
                f"depth (depth >= {k} always fits)")
    return None


def gemm_fit(spec: ArraySpec, w_fmt: SeriesFormat, a_fmt: SeriesFormat,
             out_fmt: SeriesFormat | None, weights: np.ndarray, bias: np.ndarray,
             multiplier: np.ndarray, mode: str, lo: int, hi: int,
             zero_point: int = 0, pre_shift=0) -> str | None:
    """Why the array cannot compute a GEMM exactly, or None when it can:
    :func:`constants_misfit`, then :func:`accumulator_misfit`."""
    return (constants_misfit(spec, w_fmt, a_fmt, out_fmt, bias, multiplier, mode, lo, hi,
                             zero_point, pre_shift)
            or accumulator_misfit(spec, a_fmt, weights, bias))


def _layer_fit(spec: ArraySpec, q: P.GemmOp, xin: P.QTensor) -> str | None:
    # the final layer's output is the array's exact acc: its tiles carry acc-only constants
    rq = q.requant or Requant.acc_only(q.out_channels, spec.rounding)
    out_fmt = None if q.out is None else q.out.fmt
    w = q.w_combined().reshape(q.out_channels, -1)
    return gemm_fit(spec, q.w_fmt, xin.fmt, out_fmt, w, q.bias, rq.multiplier, rq.mode, rq.lo,
                    rq.hi, rq.zero_point, rq.pre_shift)


def for_array(graph, spec: ArraySpec, *, name: str | None = None, level: str = "layer",
              per_channel: bool = True, overrides: Mapping[str, LayerFormats] | None = None,
              lane_mask: np.ndarray | None = None, strict: bool = False,
              **ranges) -> P.QProgram:
    """Compile ``graph`` into the integer program that the array ``spec`` computes.

    Parameters
    ----------
    graph : Graph
        Float network (BatchNorms unfolded or folded).
    spec : ArraySpec
        Every format, the rounding and ``m0_bits`` come from it (:func:`program_options`).
    name : str, optional
        The spec's name or file for reports (default ``"<spec>"``).
    level : {"layer", "model"}
    per_channel : bool
        One weight scale per output channel (the array's per-column ``M0`` applies it).
    overrides : mapping node name -> LayerFormats, optional
        Per-layer formats; a layer whose formats differ from the array's is reported in
        ``program.target.misfits``.
    lane_mask : bool array ``(w_terms, a_terms)``, optional
        Lanes switched off in every layer (the array's runtime lane mask).
    strict : bool
        Raise FormatError naming the first layer the array cannot compute, instead of
        recording it in ``misfits``.
    **ranges
        ``ranges``, ``calibration``, ``range_sigmas``, ``input_std``, ``input_range`` as for
        :func:`~fpxint_hw.quant.lower.expand_graph`.

    Returns
    -------
    QProgram with ``target`` set: the spec, its name and the misfit layers with reasons.
    """
    if level not in ("layer", "model"):
        raise FormatError(f"for_array: level must be layer or model (an array computes "
                          f"integers), got {level!r}")
    opts = program_options(spec, per_channel=per_channel)
    overrides = dict(overrides or {})
    if not same_format(opts.out_fmt, dataclasses.replace(opts.a_fmt, signed=opts.out_fmt.signed)):
        # the array writes its outputs in out_fmt: give every conv/linear output that format
        from ..graph import Conv2d, Linear
        for n in graph.nodes:
            if isinstance(n, (Conv2d, Linear)) and n.name not in overrides:
                overrides[n.name] = LayerFormats(a_fmt=opts.out_fmt)
    prog = expand_graph(graph, opts.w_fmt, opts.a_fmt, level, overrides=overrides,
                        mode=opts.rounding, multiplier_bits=opts.m0_bits,
                        host_multiplier_bits=HOST_MULTIPLIER_BITS,
                        signed_activations=opts.signed_activations,
                        signed_outputs=opts.signed_outputs, lane_mask=lane_mask,
                        pre_shift=False, zero_points=opts.zero_points, **ranges)
    tensors = prog.tensors()
    misfits = {}
    for q in prog.gemm_layers():
        why = _layer_fit(spec, q, tensors[q.inputs[0]])
        if why is not None:
            if strict:
                raise FormatError(f"{name or '<spec>'}: layer {q.name!r} (K = {q.reduction}) "
                                  f"cannot run on this array: {why}")
            misfits[q.name] = why
    target = P.ArrayTarget(spec, name or "<spec>", misfits)
    return dataclasses.replace(prog, target=target)
