"""The lowering: a float graph -> its series expansion at tensor, layer or model granularity.

``expand_graph(graph, w_fmt, a_fmt, level=...)`` returns

* ``level="tensor"``: a :class:`TensorExpansion` -- the graph with every conv/linear weight
  replaced by its series reconstruction; activations stay float (an accuracy study);
* ``level="layer"`` or ``"model"``: an integer :class:`~fpxint_hw.quant.program.QProgram`.
  Every activation tensor is an integer on a per-tensor grid (``real = unit * int``) that
  splits exactly into the activation format's terms; every layer computes

      acc = sum_{k, j} (m_k n_j) (q_k * p_j) + bias            (exact)
      out = clamp(round_shift(acc * M0[c], n) + zp, lo, hi)    (one rounding per layer)

  with ReLU / ReLU6 folded into the clamp, residual adds as ``round_shift(a*ma + b*mb, n)``,
  max pooling as an integer max, average pooling as an integer sum with one requantization,
  and the classifier's exact accumulator as the output (dequantized only for reporting).

With ``zero_points=True`` (an array whose activations and outputs are unsigned), a tensor that
may be negative and is read only by convs, linear layers and adds gets the unsigned format
with a mid-range zero point instead of a signed grid (``real = unit * (int - z)``, z = 128 of
``[0, 255]``): the layers that produce it add ``z`` in their requantization, the convs and
linear layers that read it hold ``-z * sum_k w[n, k]`` in their bias (and pad it with ``z``),
the adds that read it subtract it in their ``offset``.

Activation ranges come from :mod:`fpxint_hw.quant.ranges` (calibration-free by default), the
multipliers from :mod:`fpxint_hw.quant.requant`. To compile for an accelerator, use
:func:`fpxint_hw.quant.for_array`, which takes every option from an ``ArraySpec``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Mapping

import numpy as np

from ..errors import FormatError, InputError, WidthError
from ..graph import (Add, AvgPool, Clip, Concat, Conv2d, Flatten, Gelu, GlobalAvgPool, Graph,
                     HardSigmoid, HardSwish, Input, LayerNorm, LeakyRelu, Linear, MatMul, MaxPool,
                     Mul, Pad, PRelu, Relu, Scale, Sigmoid, Slice, Softmax, Upsample, ZeroInsert,
                     channels, fold_batchnorm, folded_batchnorms)
from ..intops import ROUNDING_MODES
from ..series import expand, split_integer
from ..spec import SeriesFormat
from . import program as P
from .ranges import FixedRanges, StatisticalRanges, calibrated_ranges
from .requant import conv_acc_bounds, derive_requant
from .tables import check_table_size, exp_table, function_table, function_values

#: Fraction bits of a Scale's accumulator: ``(x - z) 2^F`` leaves the bias ``2^-F`` of an
#: input step to round to (its error, ``|w| u_in 2^-(F+1)``, far below the output's).
SCALE_FRACTION_BITS = 8

#: Fraction bits of the softmax's exponential table at most (fewer when a block is long).
SOFTMAX_EXP_BITS = 30
#: The largest ``|c|`` a LayerNorm keeps (24 bits): a wider centred sum is rounded right
#: first, so that ``D = sum c^2`` of up to 2^13 features stays inside 2^62.
LAYERNORM_CENTRED_BITS = 24
#: The most fraction bits of a LayerNorm's gain and bias (fewer when the products are wide).
LAYERNORM_FRACTION_BITS = 30
#: Every LayerNorm product, sum and divisor is proved below this bound (room for 2 r in the
#: rounding of the integer division).
_LN_LIMIT = 1 << 62

__all__ = ["LayerFormats", "TensorExpansion", "expand_graph", "matmul_requant",
           "layernorm_constants", "SOFTMAX_EXP_BITS"]

#: Graph ops whose integer form subtracts an input zero point (quant/program.py
#: ZERO_POINT_READERS), and those whose output keeps it (the global pool, flatten, pad, zero
#: insertion, upsampling: their readers must take it too).
_TAKES_ZERO_POINT = (Conv2d, Linear, Add, HardSigmoid, HardSwish, Sigmoid, LeakyRelu, PRelu,
                     Mul, Scale, Gelu, LayerNorm, Softmax, MatMul)
_KEEPS_ZERO_POINT = (GlobalAvgPool, Flatten, Pad, ZeroInsert, Upsample, Slice)


@dataclass(frozen=True)
class LayerFormats:
    """Per-layer format override: ``w_fmt`` for the layer's weights and ``a_fmt`` for the
    activation tensor it produces (for the Input node: the quantized network input). Either
    may be None (keep the default); ``a_fmt.signed`` is ignored (set by the tensor's sign)."""

    w_fmt: SeriesFormat | None = None
    a_fmt: SeriesFormat | None = None


@dataclass(frozen=True, eq=False)
class TensorExpansion:
    """Tensor-level expansion: float graph with series weights (activations stay float).

    Members
    -------
    graph : Graph
        The folded float graph.
    params : dict
        Parameters with every conv/linear weight replaced by its series reconstruction.
    series : dict name -> Series
        The weight series, by weight parameter name.
    """

    graph: Graph
    params: dict
    series: dict

    def executor(self):
        """A :class:`~fpxint_hw.float_exec.FloatExecutor` running the expanded weights."""
        from ..float_exec import FloatExecutor
        return FloatExecutor(self.graph, self.params)


def _as_grid(fmt: SeriesFormat, signed: bool) -> SeriesFormat:
    """``fmt`` as the format of one activation grid: signed or unsigned, per tensor."""
    return dataclasses.replace(fmt, signed=signed, per_channel=False)


def _zero_point(fmt: SeriesFormat) -> tuple[int, int]:
    """``(z, levels)`` of the zero-point grid of ``fmt``: the mid-range zero point ``z = (lo +
    hi + 1) // 2`` of its unsigned combined range (128 of ``[0, 255]``) and the steps from
    ``z`` to the nearer end (127), the grid's resolution on either side of 0."""
    lo, hi = _as_grid(fmt, False).combined_range
    z = (lo + hi + 1) // 2
    return z, min(hi - z, z - lo)


def _zero_point_grid(fmt: SeriesFormat, rlo: float, rhi: float) -> P.QTensor:
    """The unsigned grid of ``fmt`` for real range ``[rlo, rhi]`` with the mid-range zero
    point of :func:`_zero_point`; the step maps the largest magnitude to the nearer end
    (``max(|rlo|, |rhi|) / levels``, as the signed grid maps it to its largest integer), the
    clamp is the whole format range. A range that cannot be negative gets the plain unsigned
    grid (z = 0)."""
    if rlo >= 0:
        return _grid(fmt, False, 0.0, rhi)
    z, levels = _zero_point(fmt)
    fmt = _as_grid(fmt, False)
    lo, hi = fmt.combined_range
    unit = max(abs(rlo), abs(rhi), 1e-12) / levels
    return P.QTensor(fmt, float(unit), int(lo), int(hi), int(z))


def _grid(fmt: SeriesFormat, signed: bool, rlo: float, rhi: float,
          clip_hi: float | None = None) -> P.QTensor:
    """The grid of ``fmt`` (made signed or unsigned) for real range ``[rlo, rhi]``: the
    format's largest integer maps to the largest magnitude; the clamp is the format range
    (tightened by ``clip_hi``)."""
    fmt = _as_grid(fmt, signed)
    lo, hi = fmt.combined_range
    unit = max(abs(rlo), abs(rhi), 1e-12) / hi
    if clip_hi is not None:
        hi = min(hi, int(math.floor(clip_hi / unit + 0.5)))
    return P.QTensor(fmt, float(unit), int(lo), int(hi))


def _after(act, lo: float, hi: float) -> tuple[float, float]:
    """The real interval ``[lo, hi]`` after the fused activation ``act`` (None: unchanged)."""
    if act is None:
        return lo, hi
    if isinstance(act, Relu):
        return max(lo, 0.0), max(hi, 0.0)
    return min(max(lo, act.lo), act.hi), max(min(hi, act.hi), act.lo)


def _fused_activation(graph: Graph, name: str):
    """The lone ReLU/Clip consumer of node ``name`` (fusable into its clamp), else None."""
    cons = graph.consumers(name)
    if len(cons) == 1 and isinstance(cons[0], (Relu, Clip)) and name != graph.output:
        return cons[0]
    return None


def _nonnegative(act) -> bool:
    return isinstance(act, Relu) or act.lo >= 0


def _gemm_bound(w: np.ndarray, bias: np.ndarray, xin: P.QTensor) -> tuple[float, float]:
    """The real interval every output of a conv/linear layer lies in: weights ``w``
    (``(out, ...)``, real), real ``bias``, any input on the grid of ``xin`` (interval
    arithmetic; float64, so exact up to rounding)."""
    w = w.reshape(w.shape[0], -1)
    xlo, xhi = xin.real_range
    hi = bias + np.maximum(w * xlo, w * xhi).sum(axis=1)
    lo = bias + np.minimum(w * xlo, w * xhi).sum(axis=1)
    return float(lo.min()), float(hi.max())


class _Lowering:
    """The state of one lowering: tensors made so far and the options (see expand_graph)."""

    def __init__(self, folded: Graph, w_fmt, a_fmt, overrides, ranges, *, mode,
                 multiplier_bits, host_multiplier_bits, signed, signed_outputs, lane_mask,
                 pre_shift, zero_points):
        self.g, self.w_fmt, self.a_fmt = folded, w_fmt, a_fmt
        self.overrides, self.ranges = overrides, ranges
        self.mode, self.mbits, self.host_mbits = mode, multiplier_bits, host_multiplier_bits
        self.signed, self.signed_out, self.lane_mask = signed, signed_outputs, lane_mask
        self.pre_shift, self.zero_points = pre_shift, zero_points
        self.layers: list[P.QOp] = []
        self.tensors: dict[str, P.QTensor] = {}
        self.alias: dict[str, str] = {}              # graph node -> integer tensor name
        self.fused: set[str] = set()
        self.used: dict[str, tuple[float, float]] = {}   # tensor -> the real range it got
        self.proven: set[str] = set()                  # tensors whose range is their bound

    # -- formats and grids ------------------------------------------------------------------

    def wfmt_of(self, name: str) -> SeriesFormat:
        o = self.overrides.get(name)
        return o.w_fmt if o is not None and o.w_fmt is not None else self.w_fmt

    def afmt_of(self, name: str) -> SeriesFormat:
        o = self.overrides.get(name)
        return o.a_fmt if o is not None and o.a_fmt is not None else self.a_fmt

    def range_of(self, name: str, grid: SeriesFormat, bound: tuple[float, float] | None,
                 levels: int | None = None):
        """The real range of tensor ``name`` on a grid of format ``grid`` (of resolution
        ``levels``, when it is not the format's largest integer): the rule's range, capped at
        ``bound`` (the tensor's provable interval, when known)."""
        lo, hi = self.ranges(name, grid, levels)
        if bound is not None:
            blo, bhi = bound
            if lo <= blo and hi >= bhi:
                self.proven.add(name)
            lo, hi = max(lo, blo), min(hi, bhi)
            if lo > hi:
                lo, hi = blo, bhi
        self.used[name] = (lo, hi)
        return lo, hi

    def shifted(self, name: str) -> bool:
        """Whether tensor ``name`` (a graph node's output) that may be negative gets a zero
        point instead of a signed grid: only with ``zero_points`` and when every reader takes
        the zero point into account (:data:`_TAKES_ZERO_POINT`) or keeps it in an output whose
        readers all do (:data:`_KEEPS_ZERO_POINT`, e.g. the global pool of an SE block)."""
        if not self.zero_points or name == self.g.output:
            return False
        cons = self.g.consumers(name)
        return bool(cons) and all(
            isinstance(c, _TAKES_ZERO_POINT)
            or (isinstance(c, _KEEPS_ZERO_POINT) and self.shifted(c.name)) for c in cons)

    def out_tensor(self, node, act, signed, bound=None) -> P.QTensor:
        """The grid of the output of ``node`` (fused with activation ``act`` or None); a
        non-negative output is unsigned unless ``signed``. ``bound`` is the real interval the
        output provably lies in before the activation."""
        fmt = self.afmt_of(node.name if node.name in self.overrides or act is None
                           else act.name)
        name = node.name if act is None else act.name
        if bound is not None:
            bound = _after(act, *bound)
        if act is not None and _nonnegative(act):
            _, rhi = self.range_of(name, _as_grid(fmt, signed), bound)
            q = _grid(fmt, signed, 0.0, rhi, act.hi if isinstance(act, Clip) else None)
            return dataclasses.replace(q, lo=0) if signed else q
        if not signed and self.shifted(name):
            # a zero-point grid resolves levels steps on either side of 0 (127 of [0, 255])
            rlo, rhi = self.range_of(name, _as_grid(fmt, True), bound, _zero_point(fmt)[1])
            q = _zero_point_grid(fmt, rlo, rhi)
        else:
            rlo, rhi = self.range_of(name, _as_grid(fmt, True), bound)
            q = _grid(fmt, True, rlo, rhi)
        if act is not None:                         # a Clip with lo < 0
            z = q.zero_point
            q = P.QTensor(q.fmt, q.unit, max(q.lo, z + int(math.ceil(act.lo / q.unit - 0.5))),
                          min(q.hi, z + int(math.floor(act.hi / q.unit + 0.5))), z)
        return q

    # -- one method per graph node type -----------------------------------------------------

    def input(self, n):
        fmt = self.afmt_of(n.name)
        rlo, _ = self.ranges(n.name, _as_grid(fmt, True))
        signed = self.signed or rlo < 0
        if signed and not self.signed and self.shifted(n.name):
            rlo, rhi = self.range_of(n.name, _as_grid(fmt, True), None, _zero_point(fmt)[1])
            q = _zero_point_grid(fmt, rlo, rhi)
        else:
            rlo, rhi = self.range_of(n.name, _as_grid(fmt, signed), None)
            q = _grid(fmt, signed, min(rlo, 0.0), rhi)
        if signed and rlo >= 0:
            q = dataclasses.replace(q, lo=0)
        return P.Quantize(name=n.name, inputs=(), out=q, node=n.name)

    def gemm(self, n, ins, name, act):
        xin = self.tensors[ins[0]]
        fmt_w = self.wfmt_of(n.name)
        p = self.g.params
        w = p[n.weight]
        s = expand(w, fmt_w, axis=0, name=f"{n.name}.weight")
        wu = np.array(np.broadcast_to(np.asarray(s.unit, dtype=np.float64).reshape(-1),
                                      (w.shape[0],)), dtype=np.float64)
        is_out = n.name == self.g.output
        b = p[n.bias].astype(np.float64) if n.bias is not None else np.zeros(w.shape[0])
        w_real = s.reconstruct()
        digits = s.digits.astype(np.int8)
        zero = wu == 0
        out = None if is_out else self.out_tensor(n, act, self.signed_out,
                                                  _gemm_bound(w_real, b, xin))
        wu[zero] = 1.0 if is_out else out.unit / xin.unit      # a zero channel: its bias
        # No channel's bias may need more bits than the layer's widest weighted sum: else
        # its channel's grid is coarsened until it fits (its weights then split exactly),
        # which keeps the accumulator, and so M0's precision, what the weights need.
        reach = np.abs(w_real).reshape(w.shape[0], -1).sum(axis=1) * max(map(abs, xin.steps))
        widest = float(np.max(np.where(zero, 0.0, reach / np.where(zero, 1.0, wu)), initial=1.0))
        floor = np.abs(b) / (xin.unit * widest)
        coarse = ~zero & (wu < floor)
        if np.any(coarse):
            wu[coarse] = floor[coarse]
            lo, hi = fmt_w.combined_range
            n_int = np.rint(w[coarse].astype(np.float64) / wu[coarse].reshape(
                (-1,) + (1,) * (w.ndim - 1))).astype(np.int64)
            digits[:, coarse] = split_integer(np.clip(n_int, lo, hi), fmt_w)
        acc_unit = wu * xin.unit
        bias = np.rint(b / acc_unit)
        if np.any(np.abs(bias) >= 2.0 ** 62):
            raise WidthError(f"layer {n.name!r}: bias needs more than 62 bits on the "
                             f"accumulator grid")
        bias = bias.astype(np.int64)
        if xin.zero_point:
            # every tap, padded or not, holds z for real 0: sum_k w (x - z) = sum_k w x - z W
            wsum = sum(np.int64(m) * digits[k].astype(np.int64)
                       for k, m in enumerate(fmt_w.lane_weights))
            bias = bias - np.int64(xin.zero_point) * wsum.reshape(w.shape[0], -1).sum(axis=1)
        common = dict(name=name, inputs=ins, out=out, node=n.name,
                      w_digits=digits, w_fmt=fmt_w, w_unit=wu,
                      bias=bias.astype(np.int64), lane_mask=self.lane_mask)
        if isinstance(n, Conv2d):
            op = P.Conv(stride=tuple(n.stride), padding=tuple(n.padding),
                        dilation=tuple(n.dilation), groups=n.groups, **common)
        else:
            op = P.Linear(**common)
        if is_out:
            return dataclasses.replace(op, out_unit=acc_unit)
        bounds = conv_acc_bounds(op.w_combined(), xin.lo, xin.hi, op.bias)
        rq = derive_requant(acc_unit / out.unit, bounds, out.lo, out.hi, self.mode,
                            self.mbits, f"layer {n.name!r}", zero_point=out.zero_point,
                            pre_shift=self.pre_shift)
        return dataclasses.replace(op, requant=rq)

    def add(self, n, ins, name, act):
        qa, qb = self.tensors[ins[0]], self.tensors[ins[1]]
        (alo, ahi), (blo, bhi) = qa.real_range, qb.real_range
        out = self.out_tensor(n, act, self.signed, (alo + blo, ahi + bhi))
        # a bound on every partial sum of a*ma + b*mb + offset, with |offset| <= (za + zb) m
        reach = qa.maxabs + qb.maxabs + abs(qa.zero_point) + abs(qb.zero_point)
        rq = derive_requant([qa.unit / out.unit, qb.unit / out.unit], reach, out.lo, out.hi,
                            self.mode, self.host_mbits, f"layer {n.name!r}")
        ma, mb = (int(v) for v in rq.multiplier)
        return P.Add(name=name, inputs=ins, out=out, node=n.name, ma=ma, mb=mb,
                     shift=rq.shift, mode=self.mode,
                     offset=-(ma * qa.zero_point + mb * qb.zero_point))

    def pool(self, n, ins):
        qin = self.tensors[ins[0]]
        if isinstance(n, MaxPool):
            return P.MaxPool(name=n.name, inputs=ins, out=qin, node=n.name,
                             kernel=tuple(n.kernel), stride=tuple(n.stride),
                             padding=tuple(n.padding))
        if isinstance(n, AvgPool):
            if any(n.padding) and not n.count_include_pad:
                raise InputError(f"layer {n.name!r}: average pooling that excludes padding "
                                 f"has a position-dependent divisor; not supported")
            count = n.kernel[0] * n.kernel[1]
        else:
            shp = self.g.node(n.inputs[0]).shape
            count = shp[1] * shp[2]
        rq = derive_requant([1.0 / count], count * qin.maxabs, qin.lo, qin.hi, self.mode,
                            self.host_mbits, f"layer {n.name!r}")
        scale = dict(m0=int(rq.multiplier[0]), shift=rq.shift, mode=self.mode)
        if isinstance(n, AvgPool):
            return P.AvgPool(name=n.name, inputs=ins, out=qin, node=n.name,
                             kernel=tuple(n.kernel), stride=tuple(n.stride),
                             padding=tuple(n.padding), **scale)
        return P.GlobalAvgPool(name=n.name, inputs=ins, out=qin, node=n.name, count=count,
                               **scale)

    def clamp(self, n, ins):
        qin = self.tensors[ins[0]]
        if isinstance(n, Relu):
            lo, hi = 0, qin.hi
        else:
            lo = max(qin.lo, int(math.ceil(n.lo / qin.unit - 0.5)))
            hi = min(qin.hi, int(math.floor(n.hi / qin.unit + 0.5)))
        lo = max(qin.lo, lo)
        out = P.QTensor(qin.fmt, qin.unit, lo, max(min(qin.hi, hi), lo))
        return P.Clamp(name=n.name, inputs=ins, out=out, node=n.name)

    # -- the mobile-network ops -------------------------------------------------------------

    def value_tensor(self, n, bound: tuple[float, float]) -> P.QTensor:
        """The grid of a host op's output of provable real interval ``bound``: unsigned when
        it cannot be negative (unless every tensor is signed), else as :meth:`out_tensor`."""
        if bound[0] >= 0 and not self.signed:
            fmt = self.afmt_of(n.name)
            _, rhi = self.range_of(n.name, _as_grid(fmt, False), bound)
            return _grid(fmt, False, 0.0, rhi)
        return self.out_tensor(n, None, self.signed, bound)

    def lookup(self, n, ins):
        qin = self.tensors[ins[0]]
        check_table_size(qin.lo, qin.hi, f"layer {n.name!r} ({n.op})")
        if isinstance(n, HardSigmoid):
            params = [(n.alpha, n.beta)]
        elif isinstance(n, LeakyRelu):
            params = [n.alpha]
        elif isinstance(n, PRelu):
            params = [float(v) for v in self.g.params[n.slope].reshape(-1)]
        else:
            params = [None]
        steps = np.arange(qin.lo - qin.zero_point, qin.hi - qin.zero_point + 1)
        vals = [function_values(n.op, steps * qin.unit, p) for p in params]
        bound = (float(min(v.min() for v in vals)), float(max(v.max() for v in vals)))
        out = self.value_tensor(n, bound)
        table = np.stack([function_table(n.op, qin.lo, qin.hi, qin.zero_point, qin.unit,
                                         out.unit, out.zero_point, out.lo, out.hi, self.mode,
                                         p) for p in params])
        return P.Lookup(name=n.name, inputs=ins, out=out, node=n.name, fn=n.op, table=table,
                        index_lo=qin.lo)

    def mul(self, n, ins):
        qa, qb = self.tensors[ins[0]], self.tensors[ins[1]]
        corners = [x * y for x in qa.real_range for y in qb.real_range]
        out = self.value_tensor(n, (min(corners), max(corners)))
        # |(a - za)(b - zb)|: derive_requant leaves M0 room in int64 or refuses
        reach = max(map(abs, qa.steps)) * max(map(abs, qb.steps))
        rq = derive_requant([qa.unit * qb.unit / out.unit], reach, out.lo, out.hi, self.mode,
                            self.host_mbits, f"layer {n.name!r} (mul: product up to {reach})",
                            zero_point=out.zero_point)
        return P.Mul(name=n.name, inputs=ins, out=out, node=n.name,
                     m0=int(rq.multiplier[0]), shift=rq.shift, mode=self.mode)

    def concat(self, n, ins):
        qs = [self.tensors[i] for i in ins]
        first = qs[0]
        if all(q.unit == first.unit and q.zero_point == first.zero_point
               and q.fmt == first.fmt for q in qs):
            out = P.QTensor(first.fmt, first.unit, min(q.lo for q in qs),
                            max(q.hi for q in qs), first.zero_point)
            self.used[n.name] = out.real_range
            return P.Concat(name=n.name, inputs=ins, out=out, node=n.name,
                            multipliers=(1,) * len(qs), shift=0, mode=self.mode)
        out = self.value_tensor(n, (min(q.real_range[0] for q in qs),
                                    max(q.real_range[1] for q in qs)))
        reach = max(max(map(abs, q.steps)) for q in qs)
        rq = derive_requant([q.unit / out.unit for q in qs], reach, out.lo, out.hi, self.mode,
                            self.host_mbits, f"layer {n.name!r}", zero_point=out.zero_point)
        return P.Concat(name=n.name, inputs=ins, out=out, node=n.name,
                        multipliers=tuple(int(m) for m in rq.multiplier), shift=rq.shift,
                        mode=self.mode)

    def scale(self, n, ins):
        qin = self.tensors[ins[0]]
        c = channels(self.g.node(n.inputs[0]).shape)       # F of a (T, F) sequence
        p = self.g.params
        w = np.broadcast_to(p[n.weight].astype(np.float64).reshape(-1), (c,))
        b = (np.broadcast_to(p[n.bias].astype(np.float64).reshape(-1), (c,))
             if n.bias is not None else np.zeros(c))
        xlo, xhi = qin.real_range
        bound = (float(np.min(np.minimum(w * xlo, w * xhi) + b)),
                 float(np.max(np.maximum(w * xlo, w * xhi) + b)))
        out = self.value_tensor(n, bound)
        f = SCALE_FRACTION_BITS
        mag = np.where(w == 0, 1.0, np.abs(w))
        bias = np.rint(b * 2.0 ** f / (mag * qin.unit))
        if np.any(np.abs(bias) >= 2.0 ** 62):
            raise WidthError(f"layer {n.name!r} (scale): bias needs more than 62 bits on the "
                             f"input grid")
        bias = bias.astype(np.int64)
        reach = [max(map(abs, qin.steps)) * (1 << f) + abs(int(v)) for v in bias]
        rq = derive_requant(mag * qin.unit * 2.0 ** -f / out.unit, reach, out.lo, out.hi,
                            self.mode, self.host_mbits, f"layer {n.name!r} (scale)",
                            zero_point=out.zero_point)
        return P.Scale(name=n.name, inputs=ins, out=out, node=n.name,
                       sign=np.sign(w).astype(np.int64), bias=bias, frac_bits=f, requant=rq)

    def spread(self, n, ins):
        """Zero insertion (the inserted values are the input's zero point, real 0) and
        nearest upsampling: data movement on the input's grid."""
        qin = self.tensors[ins[0]]
        if isinstance(n, Upsample):
            return P.Upsample(name=n.name, inputs=ins, out=qin, node=n.name,
                              scale=tuple(n.scale))
        z = qin.zero_point
        out = P.QTensor(qin.fmt, qin.unit, min(qin.lo, z), max(qin.hi, z), z)
        return P.ZeroInsert(name=n.name, inputs=ins, out=out, node=n.name,
                            stride=tuple(n.stride))

    def pad(self, n, ins):
        qin = self.tensors[ins[0]]
        flo, fhi = qin.fmt.combined_range
        # round half to even, exactly (Fraction): the constant on the input's grid
        v = round(Fraction(float(n.value)) / Fraction(float(qin.unit))) + qin.zero_point
        v = min(max(v, flo), fhi)
        out = P.QTensor(qin.fmt, qin.unit, min(qin.lo, v), max(qin.hi, v), qin.zero_point)
        return P.Pad(name=n.name, inputs=ins, out=out, node=n.name,
                     padding=tuple(n.padding), value=int(v))


    # -- the transformer ops ----------------------------------------------------------------

    def matmul(self, n, ins):
        qa, qb = self.tensors[ins[0]], self.tensors[ins[1]]
        sa, sb = self.g.node(n.inputs[0]).shape, self.g.node(n.inputs[1]).shape
        inner = sa[1] // n.heads if n.transpose_b else sb[0]
        corners = [x * y for x in qa.real_range for y in qb.real_range]
        out = self.value_tensor(n, (inner * min(corners), inner * max(corners)))
        m0, shift, bound = matmul_requant(f"layer {n.name!r} (matmul)", inner, qa, qb, out,
                                          self.mode, self.host_mbits)
        return P.MatMul(name=n.name, inputs=ins, out=out, node=n.name, heads=n.heads,
                        transpose_b=n.transpose_b, m0=m0, shift=shift, acc_bound=bound,
                        mode=self.mode)

    def softmax(self, n, ins):
        qin = self.tensors[ins[0]]
        block = self.g.node(n.inputs[0]).shape[-1] // n.groups
        fmt = self.afmt_of(n.name)
        out = _grid(fmt, self.signed, 0.0, 1.0)           # unit 1 / hi: [0, 1] exactly
        out = dataclasses.replace(out, lo=0)
        self.used[n.name] = (0.0, 1.0)
        self.proven.add(n.name)
        # s <= block 2^E and e * hi <= 2^E hi stay inside int64
        bits = min(SOFTMAX_EXP_BITS, 62 - int(block).bit_length(), 62 - out.hi.bit_length())
        if bits < 1:
            raise WidthError(f"layer {n.name!r} (softmax): blocks of {block} values on a grid "
                             f"of {out.hi} steps leave no bits for the exponential table")
        check_table_size(qin.lo, qin.hi, f"layer {n.name!r} (softmax)")
        table = exp_table(qin.hi - qin.lo + 1, qin.unit, bits)
        return P.Softmax(name=n.name, inputs=ins, out=out, node=n.name, groups=n.groups,
                         exp_table=table, exp_bits=bits, mode=self.mode)

    def layernorm(self, n, ins):
        qin = self.tensors[ins[0]]
        p = self.g.params
        gamma = p[n.weight].astype(np.float64)
        beta = p[n.bias].astype(np.float64)
        f = gamma.shape[0]
        reach = math.sqrt(max(f - 1, 0))                  # the largest |normalised value|
        out = self.value_tensor(n, (float(np.min(beta - np.abs(gamma) * reach)),
                                    float(np.max(beta + np.abs(gamma) * reach))))
        k = layernorm_constants(f"layer {n.name!r} (layernorm)", f, qin, out, gamma, beta,
                                float(n.eps), self.mode)
        return P.LayerNorm(name=n.name, inputs=ins, out=out, node=n.name, mode=self.mode, **k)

    # -- the walk ---------------------------------------------------------------------------

    def lower(self, level: str) -> P.QProgram:
        for n in self.g.nodes:
            if n.name in self.fused:
                continue
            if isinstance(n, Input):
                op = self.input(n)
            else:
                op = self.lower_node(n)
            self.layers.append(op)
            self.tensors[op.name] = op.out
            self.alias[n.name] = op.name
        return P.QProgram(tuple(self.layers), self.alias[self.g.output], level, self.g,
                          self.w_fmt, self.a_fmt, self.mode, dict(self.used),
                          frozenset(self.proven))

    def lower_node(self, n) -> P.QOp:
        ins = tuple(self.alias[i] for i in n.inputs)
        if isinstance(n, (Conv2d, Linear, Add)):
            act = _fused_activation(self.g, n.name)
            name = n.name
            if act is not None:
                self.fused.add(act.name)
                self.alias[act.name] = name = act.name
            if isinstance(n, Add):
                return self.add(n, ins, name, act)
            return self.gemm(n, ins, name, act)
        if isinstance(n, (MaxPool, AvgPool, GlobalAvgPool)):
            return self.pool(n, ins)
        if isinstance(n, (Relu, Clip)):
            return self.clamp(n, ins)
        if isinstance(n, Flatten):
            return P.Flatten(name=n.name, inputs=ins, out=self.tensors[ins[0]], node=n.name)
        if isinstance(n, Slice):                # a copy of some integers: the same grid
            return P.Slice(name=n.name, inputs=ins, out=self.tensors[ins[0]], node=n.name,
                           start=n.start, stop=n.stop, squeeze=n.squeeze)
        if isinstance(n, (HardSigmoid, HardSwish, Sigmoid, LeakyRelu, PRelu, Gelu)):
            return self.lookup(n, ins)
        if isinstance(n, MatMul):
            return self.matmul(n, ins)
        if isinstance(n, Softmax):
            return self.softmax(n, ins)
        if isinstance(n, LayerNorm):
            return self.layernorm(n, ins)
        if isinstance(n, Mul):
            return self.mul(n, ins)
        if isinstance(n, Concat):
            return self.concat(n, ins)
        if isinstance(n, Scale):
            return self.scale(n, ins)
        if isinstance(n, Pad):
            return self.pad(n, ins)
        if isinstance(n, (ZeroInsert, Upsample)):
            return self.spread(n, ins)
        raise InputError(f"expand_graph: node {n.name!r} has op {n.op!r}, which the "
                         f"integer program does not support (fold BatchNorms first)")


def matmul_requant(what: str, inner: int, qa: P.QTensor, qb: P.QTensor, out: P.QTensor,
                   mode: str = "rne", multiplier_bits: int = 31) -> tuple[int, int, int]:
    """``(m0, shift, acc_bound)`` of an activation x activation product of ``inner`` terms:
    ``acc_bound = inner max|a - za| max|b - zb|`` bounds the exact accumulator, ``m0 /
    2^shift ~ u_a u_b / u_out`` (:func:`derive_requant`). WidthError naming ``what`` when
    ``acc * m0`` cannot fit int64 with a multiplier of at least 2 bits (an accumulator bound
    of 2^60 or more)."""
    bound = int(inner) * max(map(abs, qa.steps)) * max(map(abs, qb.steps))
    rq = derive_requant([qa.unit * qb.unit / out.unit], bound, out.lo, out.hi, mode,
                        multiplier_bits, f"{what}: accumulator up to {bound}",
                        zero_point=out.zero_point)
    return int(rq.multiplier[0]), int(rq.shift), bound


def layernorm_constants(what: str, features: int, qin: P.QTensor, out: P.QTensor,
                        gamma: np.ndarray, beta: np.ndarray, eps: float,
                        mode: str = "rne") -> dict:
    """The constants of :class:`~fpxint_hw.quant.program.LayerNorm` (its docstring has the
    semantics), each bound proved below 2^62 with Python ints:

    * ``pre_shift``: the fewest bits that take ``|F x_i - sum x| <= (F - 1)(hi - lo)`` to at
      most :data:`LAYERNORM_CENTRED_BITS` bits;
    * ``sqrt_bits``: the most (up to 20) with ``D 4^p + eps_int < 2^62`` for the largest
      ``D = F c_max^2``: extra bits of the square root;
    * ``frac_bits``: the most (up to :data:`LAYERNORM_FRACTION_BITS`) with ``c_max G_max +
      B_max r_max`` and ``r_max 2^f`` below 2^62.

    WidthError naming ``what`` when no choice fits.
    """
    f = int(features)
    span = int(qin.hi) - int(qin.lo)
    cmax = max(f - 1, 1) * span
    pre = max(0, cmax.bit_length() - LAYERNORM_CENTRED_BITS)
    cs = (cmax >> pre) + 1                               # |round_shift(c, pre)| <= cs
    dmax = f * cs * cs
    u_in = Fraction(float(qin.unit))
    eps_q = Fraction(float(eps)) * f ** 3 / (u_in * u_in * 4 ** pre)
    sqrt_bits, eps_int = None, 0
    for p in range(20, -1, -1):
        e = round(eps_q * 4 ** p)
        if dmax * 4 ** p + e < _LN_LIMIT:
            sqrt_bits, eps_int = p, int(e)
            break
    if sqrt_bits is None:
        raise WidthError(f"{what}: the variance sum of {f} features up to {dmax} (plus eps "
                         f"{round(eps_q)}) leaves int64; give the input fewer bits")
    rmax = max(1, math.isqrt(dmax * 4 ** sqrt_bits + eps_int))
    root_f = math.sqrt(f)
    for fb in range(LAYERNORM_FRACTION_BITS, -1, -1):
        g = np.rint(gamma * root_f * 2.0 ** (sqrt_bits + fb) / float(out.unit))
        b = np.rint(beta * 2.0 ** fb / float(out.unit))
        gmax = int(np.max(np.abs(g), initial=0))
        bmax = int(np.max(np.abs(b), initial=0))
        num = cs * gmax + bmax * rmax
        if num < _LN_LIMIT and rmax << fb < _LN_LIMIT and gmax < _LN_LIMIT:
            return dict(gain=g.astype(np.int64), offset=b.astype(np.int64), pre_shift=pre,
                        sqrt_bits=sqrt_bits, frac_bits=fb, eps_int=eps_int,
                        bounds=(cs, dmax * 4 ** sqrt_bits + eps_int, num))
    raise WidthError(f"{what}: gain and bias on the output grid (unit {float(out.unit):g}) "
                     f"need products beyond int64; give the output a coarser grid")


def expand_graph(graph: Graph, w_fmt: SeriesFormat, a_fmt: SeriesFormat,
                 level: str = "layer", *,
                 overrides: Mapping[str, LayerFormats] | None = None,
                 ranges: Mapping[str, tuple[float, float]] | None = None,
                 calibration: np.ndarray | None = None,
                 range_rule: str = "mse", range_sigmas: float = 4.0,
                 input_std: float = 1.0, input_range: tuple[float, float] | None = None,
                 mode: str = "rne", multiplier_bits: int = 31,
                 host_multiplier_bits: int | None = None,
                 signed_activations: bool = False,
                 signed_outputs: bool | None = None,
                 lane_mask: np.ndarray | None = None, pre_shift: bool = True,
                 zero_points: bool = False):
    """Expand a float graph (see the module docstring).

    Parameters
    ----------
    graph : Graph
        Float network; BatchNorms are folded here (their statistics set the ranges first).
    w_fmt : SeriesFormat
        Weight format (``per_channel=True`` gives one scale per output channel).
    a_fmt : SeriesFormat
        Activation format: bits, terms and scale mode; each tensor is made signed or
        unsigned as ``signed_activations`` says.
    level : {"tensor", "layer", "model"}
    overrides : mapping node name -> LayerFormats, optional
        Per-layer formats (e.g. the first conv and the classifier at more terms).
    ranges : mapping node name -> (lo, hi), optional
        Real activation ranges to use instead of the calibration-free ones.
    calibration : float array (N, *input_shape), optional
        Inputs whose observed min/max set the ranges (overrides the rule; ``ranges`` wins).
    range_rule : {"mse", "sigma"}
        The calibration-free rule (:mod:`fpxint_hw.quant.ranges`) when neither ``ranges`` nor
        ``calibration`` is given. Whatever the source, a range is capped at the tensor's
        provable interval (``program.proven`` names the tensors it reached).
    range_sigmas, input_std : float
        The ``"sigma"`` rule's ``z`` and the assumed input standard deviation.
    input_range : (lo, hi), optional
        The exact real range of the network input when the preprocessing defines it (e.g.
        ``[0, 1]`` pixels, or ``[(0 - mean) / std, (1 - mean) / std]``).
    mode : {"rne", "half_up"}
        Rounding of every requantization.
    multiplier_bits : int, 2..31
        Bits of each conv/linear requantization multiplier (fewer when the accumulator is
        wide).
    host_multiplier_bits : int, 2..31, optional
        Bits of the residual-add and pooling multipliers (default: ``multiplier_bits``).
    signed_activations : bool
        False: a tensor is unsigned when it cannot be negative (after a ReLU, or a
        non-negative input range), else signed. True: every tensor signed (a signed array).
    signed_outputs : bool or None
        The same choice for the outputs of conv/linear layers (None: as
        ``signed_activations``); an array whose inputs are signed but whose outputs are
        unsigned has ``signed_activations=True, signed_outputs=False``.
    lane_mask : bool array ``(T_w, T_a)``, optional
        Lanes of every conv/linear layer that are switched off (False); None keeps all.
    pre_shift : bool
        Let a conv/linear requantization pre-round an accumulator too wide for a
        ``multiplier_bits`` multiplier in int64 (``Requant.pre_shift``; a host step: many
        terms). :func:`~fpxint_hw.quant.for_array` passes False (arrays multiply the exact
        accumulator, and narrower multipliers are checked against the spec).
    zero_points : bool
        Give a tensor that may be negative, and read only by ops that take a zero point
        (conv, linear, add, the lookups, Mul, Scale; a global pool or flatten whose readers
        do), the unsigned format with a mid-range zero point instead of a signed grid (an array
        with unsigned activations and outputs then computes it). False keeps signed grids.
        :func:`~fpxint_hw.quant.for_array` sets it from the spec
        (:attr:`~fpxint_hw.quant.bridge.ProgramOptions.zero_points`).

    Returns
    -------
    TensorExpansion for ``level="tensor"``, else QProgram.
    """
    if level not in P.LEVELS:
        raise FormatError(f"expand_graph: level must be one of {', '.join(P.LEVELS)}, "
                          f"got {level!r}")
    if mode not in ROUNDING_MODES:
        raise FormatError(f"expand_graph: mode must be one of {', '.join(ROUNDING_MODES)}, "
                          f"got {mode!r}")
    overrides = dict(overrides or {})
    for key in overrides:
        if key not in graph:
            raise InputError(f"expand_graph: override for {key!r}, which is not a node of "
                             f"graph {graph.name!r}")
    folded = fold_batchnorm(graph)
    if level == "tensor":
        return _tensor_level(folded, w_fmt, overrides)
    if ranges is not None:
        rule = FixedRanges(ranges)
    elif calibration is not None:
        rule = FixedRanges(calibrated_ranges(graph, calibration))
    else:
        rule = StatisticalRanges(graph, range_rule, range_sigmas, input_std)
    if ranges is None:              # graph statistics: a folded conv takes its BatchNorm's
        rule.alias.update({conv: bn for bn, conv in folded_batchnorms(graph, folded).items()})
    if input_range is not None:
        fixed_input = (float(input_range[0]), float(input_range[1]))
        base = rule

        def rule(name, grid, levels=None):
            return fixed_input if name == folded.input.name else base(name, grid, levels)
    if lane_mask is not None:
        lane_mask = np.asarray(lane_mask, dtype=bool)
        if lane_mask.shape != (w_fmt.terms, a_fmt.terms) or overrides:
            raise FormatError(f"expand_graph: lane_mask must be ({w_fmt.terms}, "
                              f"{a_fmt.terms}) and needs uniform formats (no overrides), got "
                              f"shape {lane_mask.shape}")
    low = _Lowering(folded, w_fmt, a_fmt, overrides, rule, mode=mode,
                    multiplier_bits=multiplier_bits,
                    host_multiplier_bits=host_multiplier_bits or multiplier_bits,
                    signed=signed_activations,
                    signed_outputs=(signed_activations if signed_outputs is None
                                    else signed_outputs),
                    lane_mask=lane_mask, pre_shift=pre_shift, zero_points=zero_points)
    return low.lower(level)


def _tensor_level(folded: Graph, w_fmt: SeriesFormat, overrides) -> TensorExpansion:
    params, series = dict(folded.params), {}
    for n in folded.nodes:
        if isinstance(n, (Conv2d, Linear)):
            o = overrides.get(n.name)
            fmt = o.w_fmt if o is not None and o.w_fmt is not None else w_fmt
            s = expand(folded.params[n.weight], fmt, axis=0, name=f"{n.name}.weight")
            series[n.weight] = s
            params[n.weight] = s.reconstruct().astype(np.float32)
    return TensorExpansion(folded, params, series)
