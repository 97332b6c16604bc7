"""The integer program: one frozen class per integer operation, and the program that runs them.

A :class:`QProgram` is a list of operations in execution order. Every operation produces one
integer tensor (:class:`QTensor`: ``real ~ unit * (value - zero_point)``, ``value`` in
``[lo, hi]``) and carries its own constants and geometry:

======================  ==========================================================================
:class:`Quantize`       float input -> integers of the input grid (round half to even, clamp)
:class:`Conv`           ``acc = sum_{k,j} m_k n_j (q_k * p_j) + bias``, then one requantization
:class:`Linear`         the same as a matrix product over features
:class:`Add`            ``clamp(round_shift(a*ma + b*mb + offset, shift) + zp)``: a residual join
:class:`MaxPool`        an integer max over windows (padding never wins)
:class:`AvgPool`        the window sum (zero padding counted), times ``m0``, one rounding
:class:`GlobalAvgPool`  the spatial sum, times ``m0``, one rounding
:class:`Clamp`          a lone ReLU / Clip: ``clip(x, out.lo, out.hi)``
:class:`Flatten`        NCHW -> (N, C*H*W)
:class:`Lookup`         a one-input function (HardSigmoid, HardSwish, Sigmoid, LeakyRelu, PRelu):
                        ``table[c, x - index_lo]``, a table built at compile time
:class:`Mul`            ``clamp(round_shift((a - za)(b - zb) m0, shift) + zp)`` (SE gate x map)
:class:`Concat`         each input ``clamp(round_shift((x - z) m_i, shift) + zp)``, joined on C
:class:`Scale`          per channel ``clamp(round_shift((s_c (x - z) 2^F + B_c) M0_c, n) + zp)``
:class:`Pad`            constant padding with ``value``, an integer of the input's grid
:class:`ZeroInsert`     ``stride - 1`` zero points (real 0) between pixels (a deconvolution)
:class:`Upsample`       each pixel repeated ``scale`` times (nearest)
:class:`Slice`          channels ``start:stop`` of a map or tokens of a sequence, same grid
:class:`MatMul`         per head, the exact ``sum (a - za)(b - zb)`` of two activations, one
                        requantization (attention scores and context)
:class:`Softmax`        per head block of a token: ``round(exp_table[max - x] H / sum)``
:class:`LayerNorm`      per token: integer mean, variance, exact isqrt, one division
======================  ==========================================================================

Every engine that runs a program (golden model, fast simulator, width analysis, tile cutter)
dispatches on these classes through a table that :func:`check_handlers` verifies at import
time, so an operation an engine does not handle is an error when the engine is imported, not
a silent skip when it runs.

A tensor with a zero point (an unsigned grid for a tensor that may be negative, so that an
array with unsigned activations and outputs computes it) is read only by the ops of
:data:`ZERO_POINT_READERS`, which the program checks: a conv pads it with ``zero_point``
(real 0) and carries ``-zero_point * sum_k w[n, k]`` in its bias; an add carries the input
zero points in its ``offset``; a global pool subtracts ``count * zero_point`` from its sums.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Mapping

import numpy as np

from ..errors import FormatError, InputError
from ..spec import ArraySpec, SeriesFormat
from ..tile import Requant

__all__ = ["QTensor", "QOp", "Quantize", "GemmOp", "Conv", "Linear", "Add", "WindowOp",
           "MaxPool", "AvgPool", "GlobalAvgPool", "Clamp", "Flatten", "Lookup", "Mul", "Concat",
           "Scale", "Pad", "ZeroInsert", "Upsample", "Slice", "MatMul", "Softmax", "LayerNorm", "OPS", "QProgram",
           "ArrayTarget", "window_out", "check_handlers", "LEVELS"]

#: Expansion granularities: ``tensor`` (float activations), ``layer`` and ``model`` (integers).
LEVELS = ("tensor", "layer", "model")


def window_out(size: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int],
               padding: tuple[int, int, int, int], dilation: tuple[int, int] = (1, 1)
               ) -> tuple[int, int]:
    """Output ``(H_out, W_out)`` of a window op on an ``(H, W)`` input (ONNX arithmetic).

    ``H_out = (H + top + bottom - dh * (kh - 1) - 1) // sh + 1``; padding is ``(top, left,
    bottom, right)``.
    """
    (h, w), (kh, kw), (sh, sw), (dh, dw) = size, kernel, stride, dilation
    top, left, bottom, right = padding
    return ((h + top + bottom - dh * (kh - 1) - 1) // sh + 1,
            (w + left + right - dw * (kw - 1) - 1) // sw + 1)


@dataclass(frozen=True, eq=False)
class QTensor:
    """An integer activation tensor: ``real ~ unit * (value - zero_point)`` with ``value`` in
    ``[lo, hi]``.

    Members
    -------
    fmt : SeriesFormat
        The activation series format; ``value`` (the stored integer) splits exactly into its
        terms (:func:`fpxint_hw.series.split_integer`). Unsigned for non-negative (post-ReLU)
        tensors and for tensors with a zero point.
    unit : float > 0
        Real value of one integer step (the last term's step).
    lo, hi : int
        Inclusive range every stored value lies in (the producing clamp), inside
        ``fmt.combined_range``.
    zero_point : int, in ``fmt.combined_range``
        The stored value of real 0: 0 on a symmetric signed or a non-negative unsigned grid;
        mid-range (e.g. 128 of ``[0, 255]``) on the unsigned grid of a tensor that may be
        negative (``expand_graph(..., zero_points=True)``). A padded tap holds it, so it
        splits into the format's terms like any value.
    """

    fmt: SeriesFormat
    unit: float
    lo: int
    hi: int
    zero_point: int = 0

    def __post_init__(self):
        flo, fhi = self.fmt.combined_range
        if not flo <= self.zero_point <= fhi:
            raise FormatError(f"QTensor: zero point {self.zero_point} leaves the format's "
                              f"range [{flo}, {fhi}]")

    @property
    def maxabs(self) -> int:
        """Largest magnitude a stored value can have (what integer widths are sized for)."""
        return max(abs(self.lo), abs(self.hi))

    @property
    def steps(self) -> tuple[int, int]:
        """``(lo - zero_point, hi - zero_point)``: the real range in units of ``unit``."""
        return self.lo - self.zero_point, self.hi - self.zero_point

    @property
    def real_range(self) -> tuple[float, float]:
        """The real interval ``[unit (lo - zero_point), unit (hi - zero_point)]``."""
        lo, hi = self.steps
        return lo * self.unit, hi * self.unit

    def real(self, values) -> np.ndarray:
        """Stored integers -> real values (float64): ``unit * (values - zero_point)``."""
        return (np.asarray(values, dtype=np.float64) - self.zero_point) * self.unit


@dataclass(frozen=True, eq=False, kw_only=True)
class QOp:
    """What every integer operation has.

    Members
    -------
    name : str
        Name of the tensor it produces (the graph node whose output it stands for; a fused
        conv + ReLU is named after the ReLU).
    inputs : tuple of str
        Tensors it reads.
    out : QTensor or None
        The integer tensor it produces; None only for a final conv/linear whose exact
        accumulator is the program output.
    node : str
        The graph node that holds the operation's parameters (the conv of a conv + ReLU).
    """

    #: Short name of the operation in reports and error messages.
    kind: ClassVar[str] = ""

    name: str
    inputs: tuple[str, ...]
    out: QTensor | None
    node: str = ""


@dataclass(frozen=True, eq=False, kw_only=True)
class Quantize(QOp):
    """The float network input written on the integer grid of ``out``."""

    kind: ClassVar[str] = "quantize"


@dataclass(frozen=True, eq=False, kw_only=True)
class GemmOp(QOp):
    """A layer with a weight series: the work the array does (see :class:`Conv`, :class:`Linear`).

    Members
    -------
    w_digits : int8 array ``(T_w, O, ...)``
        Weight terms ``q_k``.
    w_fmt : SeriesFormat
    w_unit : float64 array ``(O,)``
        Real value of one step of the combined weight integer, per output channel.
    bias : int64 array ``(O,)``
        Bias in accumulator units ``w_unit[c] * in_unit``.
    requant : Requant or None
        Per-channel output requantization; None for the program's final layer, whose exact
        accumulator is the output (``out_unit`` then gives its real units per channel).
    out_unit : float64 array ``(O,)`` or None
    lane_mask : bool array ``(T_w, T_a)`` or None
        False switches a lane ``(k, j)`` off (its products are not added); None keeps all.
    """

    w_digits: np.ndarray
    w_fmt: SeriesFormat
    w_unit: np.ndarray
    bias: np.ndarray
    requant: Requant | None = None
    out_unit: np.ndarray | None = None
    lane_mask: np.ndarray | None = None

    @property
    def out_channels(self) -> int:
        """Output channels O."""
        return int(self.w_digits.shape[1])

    @property
    def reduction(self) -> int:
        """Reduction length K of one output: ``C/g * kh * kw`` or the input features."""
        return int(np.prod(self.w_digits.shape[2:]))

    def w_combined(self) -> np.ndarray:
        """The combined weight integers ``sum_k m_k q_k`` (int64), same shape as one term."""
        total = np.zeros(self.w_digits.shape[1:], dtype=np.int64)
        for k, m in enumerate(self.w_fmt.lane_weights):
            total += np.int64(m) * self.w_digits[k].astype(np.int64)
        return total

    def lanes_on(self, a_terms: int) -> np.ndarray:
        """The lane mask as a bool array ``(T_w, a_terms)`` (all True without one)."""
        if self.lane_mask is None:
            return np.ones((self.w_fmt.terms, a_terms), dtype=bool)
        return np.asarray(self.lane_mask, dtype=bool)


@dataclass(frozen=True, eq=False, kw_only=True)
class Conv(GemmOp):
    """A 2-D convolution (cross-correlation, as ONNX Conv) on NCHW integers.

    ``w_digits`` is ``(T_w, O, C/groups, kh, kw)``; ``padding`` is ``(top, left, bottom,
    right)``; stride and dilation are ``(h, w)`` pairs. A padded tap holds the input's
    ``zero_point`` (real 0; 0 for most inputs), and ``bias`` already holds ``-zero_point *
    sum_k w[o, k]``, so the accumulator is exact in real terms at every tap.
    """

    kind: ClassVar[str] = "conv"

    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    @property
    def kernel(self) -> tuple[int, int]:
        """Kernel size ``(kh, kw)``."""
        return int(self.w_digits.shape[3]), int(self.w_digits.shape[4])

    @property
    def depthwise(self) -> bool:
        """One input channel per group and one output per group."""
        o, cg = self.w_digits.shape[1:3]
        return self.groups > 1 and cg == 1 and o == self.groups

    def out_hw(self, h: int, w: int) -> tuple[int, int]:
        """Output spatial size for an ``h x w`` input."""
        return window_out((h, w), self.kernel, self.stride, self.padding, self.dilation)

    def w_matrix(self) -> np.ndarray:
        """``(T_w, kh*kw*C/g, O)``: the im2col weight layout of the fast simulator and tiles."""
        t = self.w_fmt.terms
        return self.w_digits.transpose(0, 3, 4, 2, 1).reshape(t, -1, self.out_channels)


@dataclass(frozen=True, eq=False, kw_only=True)
class Linear(GemmOp):
    """A fully connected layer on ``(N, F)`` integers; ``w_digits`` is ``(T_w, O, F)``."""

    kind: ClassVar[str] = "linear"

    def w_matrix(self) -> np.ndarray:
        """``(T_w, F, O)``."""
        return self.w_digits.transpose(0, 2, 1)


@dataclass(frozen=True, eq=False, kw_only=True)
class Add(QOp):
    """Residual join of two tensors on different grids:
    ``clamp(round_shift(a * ma + b * mb + offset, shift, mode) + out.zero_point, out.lo,
    out.hi)``.

    ``offset = -(ma * za + mb * zb)`` holds the inputs' zero points ``za``, ``zb`` (0 without
    them), so the sum is ``ma (a - za) + mb (b - zb)``, the real sum in units of
    ``out.unit 2^-shift``.
    """

    kind: ClassVar[str] = "add"

    ma: int
    mb: int
    shift: int
    mode: str = "rne"
    offset: int = 0


@dataclass(frozen=True, eq=False, kw_only=True)
class WindowOp(QOp):
    """An operation over ``kernel`` windows of an NCHW tensor (the pools)."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)

    def out_hw(self, h: int, w: int) -> tuple[int, int]:
        """Output spatial size for an ``h x w`` input."""
        return window_out((h, w), self.kernel, self.stride, self.padding)


@dataclass(frozen=True, eq=False, kw_only=True)
class MaxPool(WindowOp):
    """Max over ``kernel`` windows; padded positions never win (as ONNX MaxPool)."""

    kind: ClassVar[str] = "maxpool"


@dataclass(frozen=True, eq=False, kw_only=True)
class AvgPool(WindowOp):
    """Window sums (zero padding counted) requantized once:
    ``clamp(round_shift(sum * m0, shift, mode), out.lo, out.hi)`` with ``m0 / 2^shift ~
    1 / count``."""

    kind: ClassVar[str] = "avgpool"

    m0: int
    shift: int
    mode: str = "rne"

    @property
    def count(self) -> int:
        """Positions per window (the divisor)."""
        return self.kernel[0] * self.kernel[1]


@dataclass(frozen=True, eq=False, kw_only=True)
class GlobalAvgPool(QOp):
    """The spatial sum of each channel requantized once (``m0 / 2^shift ~ 1 / count``):
    ``clamp(round_shift((sum - count z) m0, shift, mode) + z, out.lo, out.hi)`` with ``z``
    the input's zero point (the output keeps the input's grid); output ``(N, C, 1, 1)``."""

    kind: ClassVar[str] = "global_avgpool"

    count: int
    m0: int
    shift: int
    mode: str = "rne"


@dataclass(frozen=True, eq=False, kw_only=True)
class Clamp(QOp):
    """A lone ReLU or Clip: ``clip(x, out.lo, out.hi)`` on the input's grid."""

    kind: ClassVar[str] = "clamp"


@dataclass(frozen=True, eq=False, kw_only=True)
class Flatten(QOp):
    """NCHW -> ``(N, C*H*W)`` in C, H, W order (no arithmetic)."""

    kind: ClassVar[str] = "flatten"


@dataclass(frozen=True, eq=False, kw_only=True)
class Lookup(QOp):
    """A one-input elementwise function as a table over the input's stored range:
    ``out[n, c, ...] = table[c if per channel else 0, x[n, c, ...] - index_lo]``.

    Members
    -------
    fn : str
        The graph op it stands for (``hardsigmoid``, ``hardswish``, ``sigmoid``,
        ``leakyrelu``, ``prelu``).
    table : int64 array ``(1, L)`` or ``(C, L)``
        ``L = in.hi - in.lo + 1`` output integers (already clamped to ``out.lo .. out.hi``,
        zero point included), one row per channel for a per-channel PRelu
        (:mod:`fpxint_hw.quant.tables` builds them).
    index_lo : int
        The input integer of entry 0 (the input tensor's ``lo``).
    """

    kind: ClassVar[str] = "lookup"

    fn: str
    table: np.ndarray
    index_lo: int

    def __post_init__(self):
        t = np.asarray(self.table)
        if t.ndim != 2 or not np.issubdtype(t.dtype, np.integer) or t.shape[1] < 1:
            raise FormatError(f"Lookup {self.name!r}: table must be a (rows, L) integer array, "
                              f"got {t.dtype} {t.shape}")
        if self.out is not None and t.size and (t.min() < self.out.lo or t.max() > self.out.hi):
            raise FormatError(f"Lookup {self.name!r}: table entries [{t.min()}, {t.max()}] "
                              f"leave the output range [{self.out.lo}, {self.out.hi}]")
        object.__setattr__(self, "table", t.astype(np.int64))

    @property
    def index_hi(self) -> int:
        """The input integer of the last entry."""
        return self.index_lo + int(self.table.shape[1]) - 1


@dataclass(frozen=True, eq=False, kw_only=True)
class Mul(QOp):
    """Product of two tensors on their grids, one rounding:
    ``clamp(round_shift((a - za)(b - zb) m0, shift, mode) + out.zero_point, out.lo, out.hi)``
    (equal shapes, or a ``(N, C, 1, 1)`` gate broadcast over a ``(N, C, H, W)`` map, in
    either order). ``m0 / 2^shift ~ unit_a unit_b / out.unit``; the lowering proves
    ``|(a - za)(b - zb)| m0 + 2^(shift - 1) < 2^63``."""

    kind: ClassVar[str] = "mul"

    m0: int
    shift: int
    mode: str = "rne"


@dataclass(frozen=True, eq=False, kw_only=True)
class Concat(QOp):
    """Inputs joined along the channel axis, each first written on the common grid of
    ``out``: ``clamp(round_shift((x_i - z_i) multipliers[i], shift, mode) + out.zero_point,
    out.lo, out.hi)`` (``multipliers[i] / 2^shift ~ unit_i / out.unit``; ``1`` and ``0``
    when every input already has the output's grid: an exact pass-through)."""

    kind: ClassVar[str] = "concat"

    multipliers: tuple[int, ...]
    shift: int
    mode: str = "rne"


@dataclass(frozen=True, eq=False, kw_only=True)
class Scale(QOp):
    """Per-channel ``x w_c + b_c`` as a requantization (like a 1x1 depthwise conv whose
    weight is carried by the multiplier):

        acc[c] = sign[c] (x - z_in) 2^frac_bits + bias[c]
        out    = clamp(round_shift(acc[c] M0[c], shift) + zp, lo, hi)    (``requant``)

    ``sign[c]`` is the sign of ``w_c`` (-1, 0, 1), ``M0[c] / 2^shift ~ |w_c| u_in 2^-F /
    u_out``, ``bias[c] = round(b_c 2^F / (|w_c| u_in))`` (``|w_c|`` taken as 1 when
    ``w_c = 0``)."""

    kind: ClassVar[str] = "scale"

    sign: np.ndarray
    bias: np.ndarray
    frac_bits: int
    requant: Requant


@dataclass(frozen=True, eq=False, kw_only=True)
class Pad(QOp):
    """Constant padding of an NCHW tensor by ``padding`` ``(top, left, bottom, right)``
    pixels of the integer ``value`` (the pad value on the input's grid, inside ``out``)."""

    kind: ClassVar[str] = "pad"

    padding: tuple[int, int, int, int]
    value: int


@dataclass(frozen=True, eq=False, kw_only=True)
class ZeroInsert(QOp):
    """``stride - 1`` copies of the zero point (real 0) between neighbouring pixels of an
    NCHW tensor, ``out[:, :, i sh, j sw] = x[:, :, i, j]``: the first step of a transposed
    convolution, whose convolution then runs like any other."""

    kind: ClassVar[str] = "zero_insert"

    stride: tuple[int, int]


@dataclass(frozen=True, eq=False, kw_only=True)
class Upsample(QOp):
    """Each pixel of an NCHW tensor repeated ``scale`` ``(sh, sw)`` times (nearest)."""

    kind: ClassVar[str] = "upsample"

    scale: tuple[int, int]


@dataclass(frozen=True, eq=False, kw_only=True)
class Slice(QOp):
    """Entries ``start:stop`` of axis 1 (NCHW channels or the tokens of ``(N, T, F)``); with
    ``squeeze`` one token, axis dropped. The integers are copied: ``out`` is the input's
    grid (unit and zero point)."""

    kind: ClassVar[str] = "slice"

    start: int
    stop: int
    squeeze: bool = False


@dataclass(frozen=True, eq=False, kw_only=True)
class MatMul(QOp):
    """Per-head product of two activation sequences ``(N, T, F)`` (no weights), one rounding:

        acc[n, t, h-block] = sum_i (a[n, t, i] - za) (b[n, s, i] - zb)      (exact, int64)
        out = clamp(round_shift(acc m0, shift, mode) + out.zero_point, out.lo, out.hi)

    ``transpose_b``: ``a (T, H*d)``, ``b (S, H*d)`` -> ``(T, H*S)``, head ``h``'s block
    ``a_h b_h^T`` (the attention scores); else ``a (T, H*S)``, ``b (S, H*d)`` -> ``(T, H*d)``,
    ``a_h b_h`` (the context, heads merged). The sum of the combined integers equals the sum
    of the ``T_a x T_b`` lane products. ``m0 / 2^shift ~ u_a u_b / u_out``; the lowering
    proves ``inner max|a - za| max|b - zb| m0 + 2^(shift-1) < 2^63`` (``acc_bound`` is the
    accumulator's bound ``inner max|a - za| max|b - zb|``)."""

    kind: ClassVar[str] = "matmul"

    heads: int
    transpose_b: bool
    m0: int
    shift: int
    acc_bound: int
    mode: str = "rne"


@dataclass(frozen=True, eq=False, kw_only=True)
class Softmax(QOp):
    """Softmax of each of ``groups`` blocks of the last axis, per token, in integers:

        d = max(x_block) - x >= 0                 (stored integers; the zero point cancels)
        e = exp_table[d]                          (round(exp(-u_in d) 2^exp_bits), compile time)
        s = sum_block e                           (exact int64, >= 2^exp_bits)
        out = round_div(e * out.hi, s, mode)      (unit 1 / out.hi: [0, 1] on the grid)

    ``exp_table`` is int64 ``(L,)``, ``L = in.hi - in.lo + 1`` (every possible ``d``)."""

    kind: ClassVar[str] = "softmax"

    groups: int
    exp_table: np.ndarray
    exp_bits: int
    mode: str = "rne"


@dataclass(frozen=True, eq=False, kw_only=True)
class LayerNorm(QOp):
    """LayerNorm over the last axis (F features) of each token, in integers:

        c_i  = round_shift(F x_i - sum_j x_j, pre_shift)      (F times the centred value)
        D    = sum_i c_i^2                                      (exact int64)
        r    = max(1, isqrt(D 4^sqrt_bits + eps_int))          (exact integer square root)
        out  = clamp(round_div(c_i G_i + B_i r, r 2^frac_bits) + out.zero_point, lo, hi)

    with ``G_i = round(gamma_i sqrt(F) 2^(sqrt_bits + frac_bits) / u_out)``, ``B_i =
    round(beta_i 2^frac_bits / u_out)`` and ``eps_int = round(eps F^3 4^sqrt_bits /
    (u_in^2 4^pre_shift))``: ``c_i sqrt(F) 2^sqrt_bits / r`` is ``(x_i - mean) /
    sqrt(var + eps)``. The input zero point cancels in ``c``. The lowering proves every
    product and sum below 2^62 (``bounds``: the largest ``|c|``, ``D``, ``|numerator|``)."""

    kind: ClassVar[str] = "layernorm"

    gain: np.ndarray
    offset: np.ndarray
    pre_shift: int
    sqrt_bits: int
    frac_bits: int
    eps_int: int
    bounds: tuple[int, int, int]
    mode: str = "rne"


#: Every operation class a program may hold.
OPS: tuple[type[QOp], ...] = (Quantize, Conv, Linear, Add, MaxPool, AvgPool, GlobalAvgPool,
                              Clamp, Flatten, Lookup, Mul, Concat, Scale, Pad, ZeroInsert,
                              Upsample, Slice, MatMul, Softmax, LayerNorm)

#: The integer ops that read a zero-point input (``real ~ unit (value - z)``): the arithmetic
#: ones subtract ``z`` (a conv pads with it and carries ``-z sum w`` in its bias, a lookup's
#: table is indexed by the stored value), the global pool, flatten, a same-grid concat, the
#: pad, the zero insertion, the upsampling and the slice keep it in their output; a matmul subtracts
#: it, a softmax's and a layernorm's differences cancel it. Every other op is refused one.
ZERO_POINT_READERS: tuple[type[QOp], ...] = (Conv, Linear, Add, GlobalAvgPool, Flatten,
                                             Lookup, Mul, Concat, Scale, Pad, ZeroInsert,
                                             Upsample, Slice, MatMul, Softmax, LayerNorm)


def check_handlers(handlers: Mapping[type, object], engine: str) -> None:
    """Raise at import time unless ``handlers`` has an entry for every class of :data:`OPS`.

    ``engine`` names the module in the message (``"golden"``, ``"intsim"``, ...).
    """
    missing = [op.__name__ for op in OPS if op not in handlers]
    if missing:
        raise TypeError(f"{engine}: no handler for integer op(s) {', '.join(missing)}")


@dataclass(frozen=True, eq=False)
class ArrayTarget:
    """The array a program was compiled for (:func:`fpxint_hw.quant.for_array`).

    Members
    -------
    spec : ArraySpec
    name : str
        The spec's name or file, as the user gave it.
    misfits : dict layer name -> str
        GEMM layers the array cannot compute as compiled, with the reason (a signed input on
        an unsigned array, an accumulator wider than the array's, ...). They run in the
        simulator with the same integers; a hardware run must do them on the host.
    """

    spec: ArraySpec
    name: str
    misfits: dict = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class QProgram:
    """An integer program for a whole network.

    Members
    -------
    layers : tuple of QOp
        In execution order; ``layers[0]`` is the input :class:`Quantize`.
    output : str
        Name of the tensor the program returns.
    level : {"layer", "model"}
        ``model``: the simulators evaluate the T_w basis models side by side and sum them
        before each requantization (the same integers as ``layer``, bit for bit).
    graph : Graph
        The folded float graph the program was made from.
    w_fmt, a_fmt : SeriesFormat
        Default formats (per-layer overrides may differ).
    mode : {"rne", "half_up"}
        Rounding of every requantization.
    ranges : dict name -> (lo, hi)
        The real range each tensor's grid was derived from.
    proven : frozenset of str
        Tensors whose range is their provable interval (from the input range and the
        grids feeding them): no input in range is clamped there.
    target : ArrayTarget or None
        The array the program was compiled for, if any.
    """

    layers: tuple[QOp, ...]
    output: str
    level: str
    graph: object
    w_fmt: SeriesFormat
    a_fmt: SeriesFormat
    mode: str = "rne"
    ranges: dict = field(default_factory=dict)
    proven: frozenset = frozenset()
    target: ArrayTarget | None = None

    def __post_init__(self):
        for q in self.layers:
            if type(q) not in OPS:
                raise FormatError(f"QProgram: layer {getattr(q, 'name', q)!r} is a "
                                  f"{type(q).__name__}, not one of the integer ops "
                                  f"{', '.join(op.__name__ for op in OPS)}")
        if not self.layers or not isinstance(self.layers[0], Quantize):
            raise FormatError("QProgram: the first layer must be the input Quantize")
        if self.level not in LEVELS[1:]:
            raise FormatError(f"QProgram.level must be layer or model, got {self.level!r}")
        shifted = {q.name for q in self.layers if q.out is not None and q.out.zero_point}
        for q in self.layers:
            bad = [i for i in q.inputs if i in shifted]
            if bad and not isinstance(q, ZERO_POINT_READERS):
                raise FormatError(f"QProgram: layer {q.name!r} ({q.kind}) reads tensor "
                                  f"{bad[0]!r}, which has a zero point; only "
                                  f"{', '.join(op.kind for op in ZERO_POINT_READERS)} layers "
                                  f"take zero-point inputs")

    def layer(self, name: str) -> QOp:
        """The layer producing tensor ``name``."""
        for q in self.layers:
            if q.name == name:
                return q
        raise InputError(f"integer program of {self.graph.name!r} has no layer {name!r}")

    @property
    def output_layer(self) -> QOp:
        """The layer producing the program output."""
        return self.layer(self.output)

    def tensors(self) -> dict[str, QTensor]:
        """Every tensor the program produces, by name."""
        return {q.name: q.out for q in self.layers}

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        """Float input batch -> int32 integers of the input grid: ``clamp(rint(x / unit) +
        zero_point, lo, hi)`` (round half to even)."""
        q = self.layers[0].out
        v = np.rint(np.asarray(x, dtype=np.float64) / q.unit) + q.zero_point
        return np.clip(v, q.lo, q.hi).astype(np.int32)

    def dequantize_output(self, y: np.ndarray) -> np.ndarray:
        """Integer program output (NCHW, (N, F) or (N, T, F)) -> real values (float64)."""
        last = self.output_layer
        y = np.asarray(y, dtype=np.float64)
        if last.out is None:
            u = np.asarray(last.out_unit, dtype=np.float64)
            # the channel axis: C of NCHW, F of (N, F) and of an (N, T, F) sequence
            shape = (1, 1, -1) if y.ndim == 3 else (1, -1) + (1,) * (y.ndim - 2)
            return y * u.reshape(shape)
        return last.out.real(y)

    def gemm_layers(self) -> list[GemmOp]:
        """The conv and linear layers, in order."""
        return [q for q in self.layers if isinstance(q, GemmOp)]
