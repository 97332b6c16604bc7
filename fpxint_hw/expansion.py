"""Whole-graph series expansion at tensor, layer and model granularity (docs/simulator.md).

``expand_graph(graph, w_fmt, a_fmt, level=...)`` turns a float :class:`~fpxint_hw.graph.Graph`
into one of:

* ``level="tensor"``: an :class:`TensorExpansion` -- the graph with every conv/linear weight
  replaced by its series reconstruction; activations stay float (an accuracy study).
* ``level="layer"`` or ``"model"``: an integer :class:`QProgram`. Every activation tensor is
  an integer on a per-tensor grid (``real = unit * int``) that splits exactly into the
  activation format's terms; every layer computes

      acc = sum_{k, j} (m_k n_j) (q_k * p_j) + bias            (exact)
      out = clamp(round_shift(acc * M0[c], n) + zp, lo, hi)    (one rounding per layer)

  with ReLU / ReLU6 folded into the clamp, residual adds as ``round_shift(a*Ma + b*Mb, n)``,
  max pooling as an integer max, average pooling as an integer sum with one requantization,
  and the classifier's exact accumulator as the output (dequantized only for reporting).
  ``"model"`` differs only in how the simulators evaluate it: the T_w basis models (each
  weight replaced by its k-th term) run side by side and their layer outputs are summed
  before each requantization -- the same integers, bit for bit.

Activation ranges are calibration-free by default: per-channel means and standard deviations
are propagated through the graph (a BatchNorm's ``beta`` and ``|gamma|`` give them exactly
for the normalised pre-activation; a layer without one uses ``mean = b + W mu`` and
``var = W^2 sigma^2``; ReLU uses the rectified-Gaussian moments), and a tensor's range is
``mean +- z * std`` over its channels (``z = range_sigmas``, default 4). ``calibrate`` replaces
them with the min/max seen on real inputs. docs/simulator.md states the rule.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from .errors import FormatError, InputError, WidthError
from .graph import (Add, AvgPool, BatchNorm, Clip, Conv2d, Flatten, GlobalAvgPool, Graph,
                    Input, Linear, MaxPool, Relu, fold_batchnorm)
from .intops import width_for_interval
from .series import Series, expand
from .spec import SeriesFormat
from .tile import Requant

__all__ = ["LEVELS", "QTensor", "QLayer", "QProgram", "TensorExpansion", "expand_graph",
           "activation_ranges", "calibrated_ranges", "derive_requant", "conv_acc_interval",
           "conv_acc_bounds",
           "LayerFormats"]

#: Expansion granularities.
LEVELS = ("tensor", "layer", "model")

#: Ops of the integer program.
QOPS = ("quantize", "conv", "linear", "add", "maxpool", "avgpool", "global_avgpool", "clamp",
        "flatten")


@dataclass(frozen=True)
class LayerFormats:
    """Per-layer format override: ``w_fmt`` for the layer's weights and ``a_fmt`` for the
    activation tensor it produces (for the Input node: the quantized network input). Either
    may be None (keep the default); ``a_fmt.signed`` is ignored (set by the tensor's sign)."""

    w_fmt: SeriesFormat | None = None
    a_fmt: SeriesFormat | None = None


@dataclass(frozen=True, eq=False)
class QTensor:
    """An integer activation tensor: ``real ~ unit * value`` with ``value`` in ``[lo, hi]``.

    Members
    -------
    fmt : SeriesFormat
        The activation series format; ``value`` splits exactly into its terms
        (:func:`fpxint_hw.series.split_integer`). Unsigned for non-negative (post-ReLU) tensors.
    unit : float > 0
        Real value of one integer step (the last term's step).
    lo, hi : int
        Inclusive range every value lies in (the producing clamp), inside
        ``fmt.combined_range``.
    """

    fmt: SeriesFormat
    unit: float
    lo: int
    hi: int

    @property
    def maxabs(self) -> int:
        """Largest magnitude a value can have."""
        return max(abs(self.lo), abs(self.hi))


@dataclass(frozen=True, eq=False)
class QLayer:
    """One operation of an integer program.

    Members
    -------
    name : str
        Name of the tensor it produces (the graph node whose output it stands for; a fused
        conv + ReLU is named after the ReLU).
    op : str
        One of ``quantize`` (float input -> integers), ``conv``, ``linear``, ``add``,
        ``maxpool``, ``avgpool``, ``global_avgpool``, ``clamp`` (a lone ReLU/Clip),
        ``flatten``.
    inputs : tuple of str
        Tensors it reads.
    out : QTensor or None
        The integer tensor it produces; None for a final conv/linear whose exact accumulator
        is the program output (``out_unit`` then gives its real units).
    node : str
        The graph node that holds the layer's parameters (the conv of a fused conv + ReLU).
    w_digits : int8 array ``(T_w, O, C/g, kh, kw)`` or ``(T_w, O, F)``, or None
        Weight terms ``q_k`` (conv/linear).
    w_fmt : SeriesFormat or None
    w_unit : float64 array ``(O,)`` or None
        Real value of one step of the combined weight integer, per output channel.
    bias : int64 array ``(O,)`` or None
        Bias in accumulator units ``w_unit[c] * in_unit``.
    requant : Requant or None
        Output requantization (conv/linear/avgpool/global_avgpool); for ``add`` the
        multiplier holds ``[Ma, Mb]``.
    attrs : dict
        Geometry: ``stride``, ``padding`` (top, left, bottom, right), ``dilation``,
        ``groups``, ``kernel``; ``count`` (pool window size).
    out_unit : float64 array or None
        Real units of a requant-free output, per channel.
    """

    name: str
    op: str
    inputs: tuple[str, ...]
    out: QTensor | None
    node: str = ""
    w_digits: np.ndarray | None = None
    w_fmt: SeriesFormat | None = None
    w_unit: np.ndarray | None = None
    bias: np.ndarray | None = None
    requant: Requant | None = None
    attrs: dict = field(default_factory=dict)
    out_unit: np.ndarray | None = None

    def w_combined(self) -> np.ndarray:
        """The combined weight integers ``sum_k m_k q_k`` (int64), same shape as one term."""
        total = np.zeros(self.w_digits.shape[1:], dtype=np.int64)
        for k, m in enumerate(self.w_fmt.lane_weights):
            total += np.int64(m) * self.w_digits[k].astype(np.int64)
        return total


@dataclass(frozen=True, eq=False)
class QProgram:
    """An integer program for a whole network (see the module docstring).

    Members
    -------
    layers : tuple of QLayer
        In execution order; ``layers[0]`` is the input ``quantize``.
    output : str
        Name of the tensor the program returns.
    level : {"layer", "model"}
    graph : Graph
        The folded float graph the program was made from.
    w_fmt, a_fmt : SeriesFormat
        Default formats (per-layer overrides may differ).
    mode : {"rne", "half_up"}
        Rounding of every requantization.
    ranges : dict name -> (lo, hi)
        The real activation ranges the grids were derived from.
    """

    layers: tuple[QLayer, ...]
    output: str
    level: str
    graph: Graph
    w_fmt: SeriesFormat
    a_fmt: SeriesFormat
    mode: str = "rne"
    ranges: dict = field(default_factory=dict)

    def layer(self, name: str) -> QLayer:
        """The layer producing tensor ``name``."""
        for q in self.layers:
            if q.name == name:
                return q
        raise InputError(f"integer program of {self.graph.name!r} has no layer {name!r}")

    @property
    def output_layer(self) -> QLayer:
        """The layer producing the program output."""
        return self.layer(self.output)

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        """Float input batch -> int32 integers of the input grid (round half to even, clamp)."""
        q = self.layers[0].out
        v = np.rint(np.asarray(x, dtype=np.float64) / q.unit)
        return np.clip(v, q.lo, q.hi).astype(np.int32)

    def dequantize_output(self, y: np.ndarray) -> np.ndarray:
        """Integer program output (NCHW or (N, F)) -> real values (float64)."""
        last = self.output_layer
        y = np.asarray(y, dtype=np.float64)
        if last.out is None:
            u = np.asarray(last.out_unit, dtype=np.float64)
            shape = (1, -1) + (1,) * (y.ndim - 2)
            return y * u.reshape(shape)
        return y * last.out.unit

    def conv_layers(self) -> list[QLayer]:
        """The conv and linear layers, in order."""
        return [q for q in self.layers if q.op in ("conv", "linear")]


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
        from .float_exec import FloatExecutor
        return FloatExecutor(self.graph, self.params)


# -- activation ranges ---------------------------------------------------------------------

def _phi(z):
    return np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)


def _Phi(z):
    from math import erf
    return 0.5 * (1.0 + np.vectorize(erf)(z / math.sqrt(2.0)))


def _relu_moments(mu, sd):
    """Mean and standard deviation of max(X, 0) for X ~ N(mu, sd^2), per channel."""
    sd = np.maximum(sd, 1e-12)
    z = mu / sd
    p, d = _Phi(z), _phi(z)
    m1 = mu * p + sd * d
    m2 = (mu * mu + sd * sd) * p + mu * sd * d
    return m1, np.sqrt(np.maximum(m2 - m1 * m1, 0.0))


def _moments(graph: Graph, input_std: float) -> dict[str, tuple]:
    """Per-channel ``(mean, std, pre)`` for every node; ``pre`` is the pre-activation
    ``(mean, std)`` of a ReLU/Clip node (None elsewhere)."""
    st: dict[str, tuple] = {}
    p = graph.params
    for n in graph.nodes:
        if isinstance(n, Input):
            c = n.shape[0]
            st[n.name] = (np.zeros(c), np.full(c, float(input_std)), None)
            continue
        mu, sd = st[n.inputs[0]][:2] if n.inputs else (None, None)
        if isinstance(n, BatchNorm):
            st[n.name] = (p[n.bias].astype(np.float64), np.abs(p[n.weight].astype(np.float64)),
                          None)
        elif isinstance(n, (Conv2d, Linear)):
            w = p[n.weight].astype(np.float64)
            b = p[n.bias].astype(np.float64) if n.bias is not None else 0.0
            if isinstance(n, Conv2d):
                g = n.groups
                o, cg = w.shape[:2]
                mu_in = mu.reshape(g, cg)
                var_in = (sd ** 2).reshape(g, cg)
                grp = np.arange(o) // (o // g)
                mean = b + np.einsum("ocij,oc->o", w, mu_in[grp])
                var = np.einsum("ocij,oc->o", w * w, var_in[grp])
            else:
                mean = b + w @ mu
                var = (w * w) @ (sd ** 2)
            st[n.name] = (mean, np.sqrt(var), None)
        elif isinstance(n, Relu):
            m, s = _relu_moments(mu, sd)
            st[n.name] = (m, s, (mu, sd))
        elif isinstance(n, Clip):
            m, s = _relu_moments(mu, sd) if n.lo >= 0 else (mu, sd)
            st[n.name] = (np.minimum(m, n.hi), s, (mu, sd))
        elif isinstance(n, Add):
            (m1, s1), (m2, s2) = st[n.inputs[0]][:2], st[n.inputs[1]][:2]
            st[n.name] = (m1 + m2, np.sqrt(s1 * s1 + s2 * s2), None)
        elif isinstance(n, Flatten):
            shp = graph.node(n.inputs[0]).shape
            rep = int(np.prod(shp[1:])) if len(shp) == 3 else 1
            st[n.name] = (np.repeat(mu, rep), np.repeat(sd, rep), None)
        else:                                   # pools: keep the moments
            st[n.name] = (mu, sd, None)
    return st


def activation_ranges(graph: Graph, range_sigmas: float = 4.0,
                      input_std: float = 1.0) -> dict[str, tuple[float, float]]:
    """Calibration-free real range ``(lo, hi)`` of every node's output (no data needed).

    ``graph`` should be the *unfolded* graph when it has BatchNorms (their ``beta`` and
    ``|gamma|`` are the pre-activation moments); the ranges are keyed by node name. Input
    channels are taken as zero-mean with standard deviation ``input_std`` (normalised
    images). A ReLU/Clip output ranges over ``[0, max_c(mean_c + z std_c)]`` of its input
    (capped at the Clip's upper bound); any other tensor over ``mean_c +- z std_c``.
    """
    z = float(range_sigmas)
    out = {}
    for name, (mu, sd, pre) in _moments(graph, input_std).items():
        node = graph.node(name)
        if pre is not None and (isinstance(node, Relu) or node.lo >= 0):
            hi = float(np.max(pre[0] + z * pre[1]))
            if isinstance(node, Clip):
                hi = min(hi, node.hi)
            out[name] = (0.0, max(hi, 1e-6))
        else:
            out[name] = (float(np.min(mu - z * sd)), float(np.max(mu + z * sd)))
    return out


def calibrated_ranges(graph: Graph, x: np.ndarray) -> dict[str, tuple[float, float]]:
    """Real range ``(min, max)`` of every node's output over the float batch ``x``."""
    from .float_exec import FloatExecutor
    ranges = {}

    def hook(node, val):
        ranges[node.name] = (float(val.min()), float(val.max()))

    FloatExecutor(graph).run(x, hook=hook)
    return ranges


# -- integer helpers -----------------------------------------------------------------------

def conv_acc_bounds(w_int: np.ndarray, lo: int, hi: int, bias=None) -> list[int]:
    """Per output channel, the largest ``|acc|`` over all inputs in ``[lo, hi]`` (Python
    ints): ``max(|min_c|, |max_c|)`` of the tight interval of :func:`conv_acc_interval`."""
    lo_c, hi_c = _acc_channels(w_int, lo, hi, bias)
    return [max(-a, b, 0) for a, b in zip(lo_c, hi_c)]


def _acc_channels(w_int, lo, hi, bias):
    w = w_int.reshape(w_int.shape[0], -1)
    wmax = int(np.abs(w).max()) if w.size else 0
    exact64 = wmax * max(abs(int(lo)), abs(int(hi))) * max(1, w.shape[1]) < (1 << 62)
    w = w.astype(np.int64 if exact64 else object)
    a = w * int(lo)
    b = w * int(hi)
    lo_c = [int(v) for v in np.minimum(a, b).sum(axis=1)]
    hi_c = [int(v) for v in np.maximum(a, b).sum(axis=1)]
    if bias is not None:
        lo_c = [v + int(b) for v, b in zip(lo_c, np.asarray(bias).ravel())]
        hi_c = [v + int(b) for v, b in zip(hi_c, np.asarray(bias).ravel())]
    return lo_c, hi_c


def conv_acc_interval(w_int: np.ndarray, lo: int, hi: int, bias=None) -> tuple[int, int]:
    """Tight interval of a conv/linear accumulator over all inputs in ``[lo, hi]``.

    ``w_int`` is ``(O, ...)`` integer weights; per output channel the extremes are
    ``sum_i min/max(w_i lo, w_i hi)`` (zero padding included since ``lo <= 0 <= hi``), plus
    the channel's bias. Returns the union over channels (Python ints).
    """
    lo_c, hi_c = _acc_channels(w_int, lo, hi, bias)
    return int(min(0, min(lo_c))), int(max(0, max(hi_c)))


def derive_requant(real: Sequence[float], acc_bound, lo: int, hi: int,
                   mode: str = "rne", multiplier_bits: int = 31, what: str = "layer",
                   zero_point: int = 0) -> Requant:
    """Fixed-point multipliers for real output multipliers ``real`` (one per channel).

    ``acc_bound`` is the largest ``|acc|``, one int for the layer or one per channel.
    Chooses one shift ``n`` per layer and ``M0[c] = round(real[c] * 2^n)``: the largest
    ``n <= 62`` with every ``M0[c] <= 2^mb_c - 1``, where ``mb_c = min(multiplier_bits, 63 -
    width(acc_bound[c]))`` so that ``acc * M0`` always fits int64 (with the rounding
    constant, since ``n <= 62``). The channel that limits ``n`` gets a multiplier of ``mb_c``
    significant bits (relative error below ``2^-(mb_c-1)``).

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
    return Requant(m0, n, int(lo), int(hi), zero_point, mode)


def _unsigned(fmt: SeriesFormat) -> SeriesFormat:
    return dataclasses.replace(fmt, signed=False, per_channel=False)


def _signed(fmt: SeriesFormat) -> SeriesFormat:
    return dataclasses.replace(fmt, signed=True, per_channel=False)


def _qtensor(fmt: SeriesFormat, rlo: float, rhi: float, clip_hi: float | None = None) -> QTensor:
    """The grid for real range ``[rlo, rhi]``: the format's largest integer maps to the
    range's largest magnitude; the clamp is the format range (tightened by ``clip_hi``)."""
    lo, hi = fmt.combined_range
    mag = max(abs(rlo), abs(rhi), 1e-12)
    unit = mag / hi
    if clip_hi is not None:
        hi = min(hi, int(math.floor(clip_hi / unit + 0.5)))
    return QTensor(fmt, float(unit), int(lo), int(hi))


# -- the expansion -------------------------------------------------------------------------

def _fused_activation(graph: Graph, name: str):
    """The lone ReLU/Clip consumer of node ``name`` (fusable into its clamp), else None."""
    cons = graph.consumers(name)
    if len(cons) == 1 and isinstance(cons[0], (Relu, Clip)) and name != graph.output:
        return cons[0]
    return None


def _fold_map(graph: Graph, folded: Graph) -> dict[str, str]:
    """For each BatchNorm folded away: BatchNorm name -> the layer that absorbed it."""
    out = {}
    for n in graph.nodes:
        if isinstance(n, BatchNorm) and n.name not in folded:
            out[n.name] = n.inputs[0]
    return out


def expand_graph(graph: Graph, w_fmt: SeriesFormat, a_fmt: SeriesFormat,
                 level: str = "layer", *,
                 overrides: Mapping[str, LayerFormats] | None = None,
                 ranges: Mapping[str, tuple[float, float]] | None = None,
                 calibration: np.ndarray | None = None,
                 range_sigmas: float = 4.0, input_std: float = 1.0,
                 input_range: tuple[float, float] | None = None,
                 mode: str = "rne", multiplier_bits: int = 31):
    """Expand a float graph (see the module docstring).

    Parameters
    ----------
    graph : Graph
        Float network; BatchNorms are folded here (their statistics set the ranges first).
    w_fmt : SeriesFormat
        Weight format (``per_channel=True`` gives one scale per output channel).
    a_fmt : SeriesFormat
        Activation format: bits, terms and scale mode; each tensor is made signed or
        unsigned (non-negative, post-ReLU) as its range requires.
    level : {"tensor", "layer", "model"}
    overrides : mapping node name -> LayerFormats, optional
        Per-layer formats (e.g. the first conv and the classifier at more terms).
    ranges : mapping node name -> (lo, hi), optional
        Real activation ranges to use instead of the calibration-free ones.
    calibration : float array (N, *input_shape), optional
        Inputs whose observed min/max set the ranges (overrides the rule; ``ranges`` wins).
    range_sigmas, input_std : float
        The calibration-free rule's ``z`` and the assumed input standard deviation.
    input_range : (lo, hi), optional
        The exact real range of the network input when the preprocessing defines it (e.g.
        ``[0, 1]`` pixels, or ``[(0 - mean) / std, (1 - mean) / std]``); a non-negative range
        gets an unsigned input format.
    mode : {"rne", "half_up"}
        Rounding of every requantization.
    multiplier_bits : int, 2..31
        Bits of each requantization multiplier (fewer when the accumulator is wide).

    Returns
    -------
    TensorExpansion for ``level="tensor"``, else QProgram.
    """
    if level not in LEVELS:
        raise FormatError(f"expand_graph: level must be one of {', '.join(LEVELS)}, "
                          f"got {level!r}")
    overrides = dict(overrides or {})
    for key in overrides:
        if key not in graph:
            raise InputError(f"expand_graph: override for {key!r}, which is not a node of "
                             f"graph {graph.name!r}")
    folded = fold_batchnorm(graph)
    fold = _fold_map(graph, folded)

    def wfmt_of(node_name):
        o = overrides.get(node_name)
        return o.w_fmt if o is not None and o.w_fmt is not None else w_fmt

    if level == "tensor":
        params = dict(folded.params)
        series = {}
        for n in folded.nodes:
            if isinstance(n, (Conv2d, Linear)):
                s = expand(folded.params[n.weight], wfmt_of(n.name), axis=0,
                           name=f"{n.name}.weight")
                series[n.weight] = s
                params[n.weight] = s.reconstruct().astype(np.float32)
        return TensorExpansion(folded, params, series)

    # real ranges, keyed by node names of the folded graph
    if ranges is None:
        if calibration is not None:
            rng = calibrated_ranges(graph, calibration)
        else:
            rng = activation_ranges(graph, range_sigmas, input_std)
        for bn, conv in fold.items():
            rng[conv] = rng[bn]
        ranges = rng
    ranges = dict(ranges)
    if input_range is not None:
        ranges[folded.input.name] = (float(input_range[0]), float(input_range[1]))

    def afmt_of(node_name):
        o = overrides.get(node_name)
        return o.a_fmt if o is not None and o.a_fmt is not None else a_fmt

    layers: list[QLayer] = []
    tensors: dict[str, QTensor] = {}
    alias: dict[str, str] = {}       # graph node -> integer tensor name
    fused: set[str] = set()
    p = folded.params

    def rng_of(name):
        if name not in ranges:
            raise InputError(f"expand_graph: no activation range for node {name!r}")
        return ranges[name]

    def out_tensor(node, act):
        """QTensor for the output of ``node`` (fused with activation ``act`` or None)."""
        fmt = afmt_of(node.name) if node.name in overrides or act is None else \
            afmt_of(act.name)
        if act is not None and (isinstance(act, Relu) or act.lo >= 0):
            rlo, rhi = rng_of(act.name)
            return _qtensor(_unsigned(fmt), 0.0, rhi,
                            act.hi if isinstance(act, Clip) else None)
        rlo, rhi = rng_of(node.name if act is None else act.name)
        q = _qtensor(_signed(fmt), rlo, rhi)
        if act is not None:          # a Clip with lo < 0
            q = QTensor(q.fmt, q.unit, max(q.lo, int(math.ceil(act.lo / q.unit - 0.5))),
                        min(q.hi, int(math.floor(act.hi / q.unit + 0.5))))
        return q

    for n in folded.nodes:
        if n.name in fused:
            continue
        if isinstance(n, Input):
            rlo, rhi = rng_of(n.name)
            fmt = afmt_of(n.name)
            q = (_qtensor(_unsigned(fmt), 0.0, rhi) if rlo >= 0
                 else _qtensor(_signed(fmt), rlo, rhi))
            layers.append(QLayer(n.name, "quantize", (), q, node=n.name))
            tensors[n.name] = q
            alias[n.name] = n.name
            continue
        ins = tuple(alias[i] for i in n.inputs)
        act = None
        if isinstance(n, (Conv2d, Linear, Add)):
            act = _fused_activation(folded, n.name)
            name = act.name if act is not None else n.name
            if act is not None:
                fused.add(act.name)
        if isinstance(n, (Conv2d, Linear)):
            xin = tensors[ins[0]]
            fmt_w = wfmt_of(n.name)
            w = p[n.weight]
            s: Series = expand(w, fmt_w, axis=0, name=f"{n.name}.weight")
            wu = np.array(np.broadcast_to(np.asarray(s.unit, dtype=np.float64).reshape(-1),
                                          (w.shape[0],)), dtype=np.float64)
            is_out = n.name == folded.output
            b = p[n.bias].astype(np.float64) if n.bias is not None else np.zeros(w.shape[0])
            zero = wu == 0
            if is_out:
                wu[zero] = 1.0
                out = None
            else:
                out = out_tensor(n, act)
                wu[zero] = out.unit / xin.unit      # a zero channel: output = its bias
            acc_unit = wu * xin.unit
            bias = np.rint(b / acc_unit)
            if np.any(np.abs(bias) >= 2.0 ** 62):
                raise WidthError(f"layer {n.name!r}: bias needs more than 62 bits on the "
                                 f"accumulator grid")
            bias = bias.astype(np.int64)
            digits = s.digits.astype(np.int8)
            attrs = {}
            if isinstance(n, Conv2d):
                attrs = dict(stride=n.stride, padding=n.padding, dilation=n.dilation,
                             groups=n.groups, kernel=tuple(w.shape[2:]))
            ql = QLayer(name, "conv" if isinstance(n, Conv2d) else "linear", ins, out,
                        node=n.name, w_digits=digits, w_fmt=fmt_w, w_unit=wu, bias=bias,
                        attrs=attrs)
            if is_out:
                ql = dataclasses.replace(ql, out_unit=acc_unit)
            else:
                bounds = conv_acc_bounds(ql.w_combined(), xin.lo, xin.hi, bias)
                rq = derive_requant(acc_unit / out.unit, bounds, out.lo, out.hi,
                                    mode, multiplier_bits, f"layer {n.name!r}")
                ql = dataclasses.replace(ql, requant=rq)
            layers.append(ql)
        elif isinstance(n, Add):
            qa, qb = tensors[ins[0]], tensors[ins[1]]
            out = out_tensor(n, act)
            rq = derive_requant([qa.unit / out.unit, qb.unit / out.unit], qa.maxabs + qb.maxabs,
                                out.lo, out.hi,
                                mode, multiplier_bits, f"layer {n.name!r}")
            layers.append(QLayer(name, "add", ins, out, node=n.name, requant=rq))
        elif isinstance(n, (MaxPool, Flatten)):
            name = n.name
            out = tensors[ins[0]]
            attrs = {}
            if isinstance(n, MaxPool):
                attrs = dict(kernel=n.kernel, stride=n.stride, padding=n.padding)
            layers.append(QLayer(name, n.op, ins, out, node=n.name, attrs=attrs))
        elif isinstance(n, (AvgPool, GlobalAvgPool)):
            name = n.name
            qin = tensors[ins[0]]
            if isinstance(n, AvgPool):
                if any(n.padding) and not n.count_include_pad:
                    raise InputError(f"layer {n.name!r}: average pooling that excludes padding "
                                     f"has a position-dependent divisor; not supported")
                count = n.kernel[0] * n.kernel[1]
                attrs = dict(kernel=n.kernel, stride=n.stride, padding=n.padding, count=count)
            else:
                shp = folded.node(n.inputs[0]).shape
                count = shp[1] * shp[2]
                attrs = dict(count=count)
            out = qin
            rq = derive_requant([1.0 / count], count * qin.maxabs, out.lo, out.hi, mode,
                                multiplier_bits, f"layer {n.name!r}")
            layers.append(QLayer(name, n.op, ins, out, node=n.name, requant=rq, attrs=attrs))
        elif isinstance(n, (Relu, Clip)):
            name = n.name
            qin = tensors[ins[0]]
            lo = 0 if isinstance(n, Relu) else max(qin.lo, int(math.ceil(n.lo / qin.unit - 0.5)))
            hi = qin.hi if isinstance(n, Relu) else min(qin.hi,
                                                         int(math.floor(n.hi / qin.unit + 0.5)))
            out = QTensor(qin.fmt, qin.unit, max(qin.lo, lo), max(min(qin.hi, hi), max(qin.lo,
                                                                                     lo)))
            layers.append(QLayer(name, "clamp", ins, out, node=n.name))
        else:
            raise InputError(f"expand_graph: node {n.name!r} has op {n.op!r}, which the "
                             f"integer program does not support (fold BatchNorms first)")
        tensors[name] = layers[-1].out
        alias[n.name] = name
        if act is not None:
            alias[act.name] = name
    return QProgram(tuple(layers), alias[folded.output], level, folded, w_fmt, a_fmt, mode,
                    ranges)
