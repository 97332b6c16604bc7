"""Static width analysis: proves, per layer, that no accumulator or adder-tree node overflows.

Every bound is derived from the program's constants (the actual weight digits, biases and
multipliers) and the static ranges of the activation integers, never from data. A layer whose
bound exceeds a configured width makes :func:`analyze_widths` raise
:class:`~fpxint_hw.errors.WidthError` naming the layer, the node, the needed and the configured
width, before anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import FormatError, WidthError
from ..intops import acc_intervals, round_shift_bound, width_for_interval
from ..quant import program as P
from ..spec import SeriesFormat

__all__ = ["WidthConfig", "WidthRow", "analyze_widths", "digit_maxabs", "lane_bounds",
           "operand_row", "int8_product_rows", "float_gemm_row", "sum_row", "EXACT_BITS",
           "accumulator_bounds", "combine_kernel"]


@dataclass(frozen=True)
class WidthConfig:
    """Configured integer widths (bits, signed two's complement).

    Members
    -------
    lane_bits : int
        Accumulator of one basis lane's dot product (a PE lane), default 32.
    acc_bits : int
        Combined accumulator: every adder-tree node of the weighted lane sum, the bias add,
        and the requantization product ``acc * M0``; default 64 (the simulator's int64).
    act_bits : int
        Storage of an activation integer between layers, default 32.
    """

    lane_bits: int = 32
    acc_bits: int = 64
    act_bits: int = 32

    def __post_init__(self):
        for f in ("lane_bits", "acc_bits", "act_bits"):
            v = getattr(self, f)
            if not isinstance(v, int) or not 2 <= v <= 64:
                raise FormatError(f"WidthConfig.{f} must be an integer in 2..64, got {v!r}")


@dataclass(frozen=True)
class WidthRow:
    """One checked node: ``layer``, ``node`` (what), ``bound`` (largest magnitude),
    ``needed`` and ``configured`` widths in bits."""

    layer: str
    node: str
    bound: int
    needed: int
    configured: int

    @property
    def ok(self) -> bool:
        """True when the node fits its configured width."""
        return self.needed <= self.configured


def digit_maxabs(fmt: SeriesFormat) -> int:
    """Largest magnitude of one digit of ``fmt``."""
    return max(abs(fmt.qmin), abs(fmt.qmax))


def lane_bounds(w_digits: np.ndarray, x_fmt: SeriesFormat) -> np.ndarray:
    """``bound[k, j]``: largest ``|q_k . p_j|`` of one output, over channels (Python ints).

    ``w_digits`` ``(T_w, O, ...)``; per channel the bound is ``sum_i |q_k[c, i]| * max|p_j|``.
    """
    t_w = w_digits.shape[0]
    absum = np.abs(w_digits.reshape(t_w, w_digits.shape[1], -1).astype(np.int64)).sum(axis=2)
    per_k = [int(absum[k].max()) for k in range(t_w)]
    pmax = digit_maxabs(x_fmt)
    return np.array([[pk * pmax for _ in range(x_fmt.terms)] for pk in per_k], dtype=object)


def _half(shift: int) -> int:
    return (1 << (shift - 1)) if shift else 0


def _row(layer, node, bound, bits):
    need = width_for_interval(-int(bound), int(bound), signed=True)
    return WidthRow(layer, node, int(bound), need, bits)


def sum_row(layer: str, node: str, bound: int, bits: int) -> WidthRow:
    """The row of a sum whose magnitude is at most ``bound``, in a signed ``bits``-bit
    register."""
    return _row(layer, node, bound, bits)


def operand_row(layer: str, node: str, lo: int, hi: int, bits: int, signed: bool) -> WidthRow:
    """The row of a GEMM operand whose values lie in ``[lo, hi]``, in a ``bits``-bit
    (``signed`` or unsigned) slot. A negative value in an unsigned slot never fits."""
    lo, hi = int(lo), int(hi)
    if not signed and lo < 0:
        need = max(bits + 1, width_for_interval(lo, hi, signed=True))
    else:
        need = width_for_interval(lo, hi, signed=signed)
    return WidthRow(layer, node, max(abs(lo), abs(hi)), need, bits)


#: Signed widths whose magnitudes a GEMM backend keeps exact: float32 and float64 represent
#: every integer below 2^24 and 2^53, the Numba kernel sums in int64.
EXACT_BITS = {"f32": 25, "f64": 54, "int": 64}


def float_gemm_row(layer: str, backend: str, bound: int) -> WidthRow:
    """Every partial sum of a float32 / float64 / int64 GEMM whose sums of product
    magnitudes are at most ``bound`` is exact (``bound < 2^24``, ``2^53``, ``2^63``)."""
    bits = EXACT_BITS[backend]
    return _row(layer, f"{backend} GEMM partial sums (exact below 2^{bits - 1})", bound, bits)


def int8_product_rows(layer: str, name: str, a_hi: int, w_lo: int, w_hi: int, colabs: int,
                      k: int, kernel: str, pair_saturates: bool) -> list[WidthRow]:
    """The conditions under which one int8 GEMM (the VNNI kernel, onnxruntime's) is exact.

    ``a_hi``: the largest uint8 activation operand (its smallest is 0); ``[w_lo, w_hi]``:
    the weight operand's values; ``colabs``: the largest column sum of their magnitudes;
    ``k``: the reduction length. ``kernel`` "u8s8" (int8 weights) or "u8u8" (weights stored
    as ``w + 128``, uint8); ``pair_saturates``: the CPU sums u8 x s8 products in pairs into 16
    bits with saturation (:mod:`fpxint_hw.intsim.cpu`), so every pair sum
    ``a0 w0 + a1 w1`` must stay within int16.
    """
    rows = [operand_row(layer, f"{name}: activation operand (uint8)", 0, a_hi, 8, False)]
    if kernel == "u8u8":
        rows.append(operand_row(layer, f"{name}: weight operand + 128 (uint8)", w_lo + 128,
                                w_hi + 128, 8, False))
        # the stored products are summed before the zero-point correction
        rows.append(_row(layer, f"{name}: int32 sum of the stored uint8 products",
                         k * a_hi * 255, 32))
    else:
        rows.append(operand_row(layer, f"{name}: weight operand (int8)", w_lo, w_hi, 8, True))
        if pair_saturates:
            rows.append(_row(layer, f"{name}: 16-bit pair sum a0 w0 + a1 w1 (no VNNI)",
                             2 * a_hi * max(-w_lo, w_hi, 0), 16))
    rows.append(_row(layer, f"{name}: int32 accumulator", colabs * a_hi, 32))
    return rows


def accumulator_bounds(q, xin) -> list[int]:
    """Per output channel of conv/linear ``q`` on input tensor ``xin``, the largest
    ``|acc + bias|`` (Python ints): with every lane on, ``sum_i |W_ci| max|x| + |b_c|`` of
    the combined weights (on a zero-point input, whose bias holds ``-z sum w``, the tight
    interval of ``sum_i W_ci x_i + b_c``); with a lane mask, the sum over the active lanes of
    ``m_k n_j sum_i |q_k[c, i]| max|p_j|`` plus ``|b_c|``."""
    mask = q.lanes_on(xin.fmt.terms)
    o = q.out_channels
    if mask.all() and xin.zero_point:
        # the bias holds -z sum w: only the interval of sum w x + bias is tight (the
        # lowering's requantization bound), |x| <= maxabs would double it
        lo_c, hi_c = acc_intervals(q.w_combined(), xin.lo, xin.hi, q.bias)
        return [max(-a, b, 0) for a, b in zip(lo_c, hi_c)]
    if mask.all():
        wc = np.abs(q.w_combined().reshape(o, -1)).sum(axis=1)
        return [int(s) * xin.maxabs + abs(int(b)) for s, b in zip(wc, q.bias)]
    absum = np.abs(q.w_digits.reshape(q.w_fmt.terms, o, -1).astype(np.int64)).sum(axis=2)
    pmax = digit_maxabs(xin.fmt)
    mw, na = q.w_fmt.lane_weights, xin.fmt.lane_weights
    return [sum(int(absum[k, c]) * pmax * mw[k] * na[j] for k in range(len(mw))
                for j in range(len(na)) if mask[k, j]) + abs(int(q.bias[c]))
            for c in range(o)]


def combine_kernel(layer: str, sum_bound: int, coef_max: int, acc_bound: int,
                   pre_shift: bool) -> tuple[str, list[WidthRow]]:
    """The kernel that sums a layer's int8 GEMM products and requantizes, with its rows.

    ``sum_bound``: the largest partial sum of the bias and the scaled products (the plan's
    recombination bound); ``coef_max``: the largest product coefficient; ``acc_bound``: the
    largest final accumulator (:func:`accumulator_bounds`); ``pre_shift``: some channel
    rounds before its multiplier. Returns ``"i32"`` (int32 sums) when every partial sum fits
    int32, ``"p32"`` (int64 sums of 32 x 32-bit products, a 32-bit accumulator for the
    requantization product) when the coefficients and the accumulator do, else ``"i64"``.
    """
    if pre_shift:
        return "i64", []
    sums = sum_row(layer, "combine: partial sums in int32", sum_bound, 32)
    if sums.ok:
        return "i32", [sums]
    rows = [sum_row(layer, "combine: product coefficients in int32", coef_max, 32),
            sum_row(layer, "combine: accumulator in int32 (32 x 32-bit requantization "
                    "product)", acc_bound, 32)]
    return ("p32" if all(r.ok for r in rows) else "i64"), rows


def _gemm_rows(q, tensors, config) -> list[WidthRow]:
    """Each lane's dot product, the adder tree + bias in any order, the requant product."""
    xin = tensors[q.inputs[0]]
    lb = lane_bounds(q.w_digits, xin.fmt)
    mask = q.lanes_on(xin.fmt.terms)
    rows = []
    for k in range(q.w_fmt.terms):
        for j in range(xin.fmt.terms):
            if mask[k, j]:
                rows.append(_row(q.name, f"lane (k={k + 1}, j={j + 1}) dot product",
                                 lb[k, j], config.lane_bits))
    mw, na = q.w_fmt.lane_weights, xin.fmt.lane_weights
    tree = sum(int(lb[k, j]) * mw[k] * na[j] for k in range(len(mw)) for j in range(len(na))
               if mask[k, j])
    bias = int(np.abs(q.bias).max()) if q.bias.size else 0
    rows.append(_row(q.name, "adder tree + bias (any lane order)", tree + bias,
                     config.acc_bits))
    if q.requant is not None:
        # the exact accumulator is bounded more tightly by the combined weights
        accs = [round_shift_bound(a, int(p))
                for a, p in zip(accumulator_bounds(q, xin), q.requant.pre_shift)]
        prod = max(a * int(m) for a, m in zip(accs, q.requant.multiplier))
        rows.append(_row(q.name, "requantization product acc * M0 + rounding (per channel)",
                         prod + _half(q.requant.shift), config.acc_bits))
    return rows


def _add_rows(q, tensors, config) -> list[WidthRow]:
    a, b = tensors[q.inputs[0]], tensors[q.inputs[1]]
    return [_row(q.name, "residual add a*Ma + b*Mb + offset + rounding",
                 a.maxabs * q.ma + b.maxabs * q.mb + abs(q.offset) + _half(q.shift),
                 config.acc_bits)]


def _pool_rows(q, tensors, config) -> list[WidthRow]:
    s = q.count * tensors[q.inputs[0]].maxabs
    return [_row(q.name, "pool sum", s, config.acc_bits),
            _row(q.name, "requantization product sum * M0 + rounding",
                 s * q.m0 + _half(q.shift), config.acc_bits)]


def _steps(t) -> int:
    """Largest ``|value - zero_point|`` of tensor ``t``."""
    return max(map(abs, t.steps))


def _mul_rows(q, tensors, config) -> list[WidthRow]:
    a, b = tensors[q.inputs[0]], tensors[q.inputs[1]]
    return [_row(q.name, "product (a - za)(b - zb) * M0 + rounding",
                 _steps(a) * _steps(b) * q.m0 + _half(q.shift), config.acc_bits)]


def _concat_rows(q, tensors, config) -> list[WidthRow]:
    return [_row(q.name, f"input {i} (x - z) * M{i} + rounding",
                 _steps(tensors[name]) * m + _half(q.shift), config.acc_bits)
            for i, (name, m) in enumerate(zip(q.inputs, q.multipliers))]


def _scale_rows(q, tensors, config) -> list[WidthRow]:
    s = _steps(tensors[q.inputs[0]]) << q.frac_bits
    prod = max((s + abs(int(b))) * int(m) for b, m in zip(q.bias, q.requant.multiplier))
    return [_row(q.name, "scale (s (x - z) 2^F + B) * M0 + rounding (per channel)",
                 prod + _half(q.requant.shift), config.acc_bits)]


def _matmul_rows(q, tensors, config) -> list[WidthRow]:
    return [_row(q.name, "per-head sum of (a - za)(b - zb)", q.acc_bound, config.acc_bits),
            _row(q.name, "matmul accumulator * M0 + rounding",
                 q.acc_bound * q.m0 + _half(q.shift), config.acc_bits)]


def _softmax_rows(q, tensors, config) -> list[WidthRow]:
    top = 1 << q.exp_bits
    return [_row(q.name, "softmax exp * out.hi (numerator)", top * q.out.hi, config.acc_bits)]


def _layernorm_rows(q, tensors, config) -> list[WidthRow]:
    cs, dsum, num = q.bounds
    return [_row(q.name, "layernorm sum of squared centred values (+ eps)", dsum,
                 config.acc_bits),
            _row(q.name, "layernorm c G + B r (numerator)", num, config.acc_bits)]


def _no_rows(q, tensors, config) -> list[WidthRow]:
    return []


_ROWS = {P.Quantize: _no_rows, P.Conv: _gemm_rows, P.Linear: _gemm_rows, P.Add: _add_rows,
         P.MaxPool: _no_rows, P.AvgPool: _pool_rows, P.GlobalAvgPool: _pool_rows,
         P.Clamp: _no_rows, P.Flatten: _no_rows, P.Lookup: _no_rows, P.Mul: _mul_rows,
         P.Concat: _concat_rows, P.Scale: _scale_rows, P.Pad: _no_rows,
         P.ZeroInsert: _no_rows, P.Upsample: _no_rows, P.Slice: _no_rows,
         P.MatMul: _matmul_rows, P.Softmax: _softmax_rows, P.LayerNorm: _layernorm_rows}
P.check_handlers(_ROWS, "intsim.widths")


def analyze_widths(program, config: WidthConfig = WidthConfig(), check: bool = True
                   ) -> list[WidthRow]:
    """Bounds of every accumulator and adder-tree node of ``program`` (a QProgram).

    Rows per conv/linear layer: each lane ``(k, j)``'s dot product (``lane_bits``); the
    weighted lane sum plus bias in *any* order or tree shape, bounded by the sum of the
    lanes' magnitudes (``acc_bits``); the requantization product (``acc_bits``). Per add:
    ``|a Ma| + |b Mb| + |offset|``; per pool: the window sum and its product with ``M0``; per
    tensor: its storage (``act_bits``).

    Raises
    ------
    WidthError
        (when ``check``) at the first row that does not fit, naming layer, node, needed and
        configured widths.
    """
    rows: list[WidthRow] = []
    tensors = program.tensors()
    for q in program.layers:
        rows += _ROWS[type(q)](q, tensors, config)
        if q.out is not None:
            lo, hi = q.out.fmt.combined_range
            rows.append(_row(q.name, "activation storage", max(abs(lo), abs(hi)),
                             config.act_bits))
    if check:
        for r in rows:
            if not r.ok:
                raise WidthError(f"layer {r.layer!r}, node {r.node}: values up to {r.bound} "
                                 f"need {r.needed} signed bits, configured {r.configured}; use "
                                 f"fewer terms or bits, or wider accumulators")
    return rows
