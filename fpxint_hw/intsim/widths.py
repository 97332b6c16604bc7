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
from ..intops import round_shift_bound, width_for_interval
from ..quant import program as P
from ..spec import SeriesFormat

__all__ = ["WidthConfig", "WidthRow", "analyze_widths", "digit_maxabs", "lane_bounds"]


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
        # the exact combined accumulator is bounded more tightly by the combined weights
        wc = np.abs(q.w_combined().reshape(q.out_channels, -1)).sum(axis=1)
        accs = [round_shift_bound(int(s) * xin.maxabs + abs(int(b)), int(p))
                for s, b, p in zip(wc, q.bias, q.requant.pre_shift)]
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


def _no_rows(q, tensors, config) -> list[WidthRow]:
    return []


_ROWS = {P.Quantize: _no_rows, P.Conv: _gemm_rows, P.Linear: _gemm_rows, P.Add: _add_rows,
         P.MaxPool: _no_rows, P.AvgPool: _pool_rows, P.GlobalAvgPool: _pool_rows,
         P.Clamp: _no_rows, P.Flatten: _no_rows}
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
