"""The integer GEMM tile: the unit of work shared by the simulator and the generated hardware.

A tile multiplies ``M`` activation vectors of length ``K`` (each element a series of ``T_a``
terms) by a ``K x N`` weight matrix (each weight a series of ``T_w`` terms), in integers only:

    acc[m, n] = sum_{k, j active} (w_m_k * a_n_j) * sum_i W_k[i, n] * A_j[m, i]  + bias[n]
    out[m, n] = clamp(round_shift(acc[m, n] * M0[n], shift, mode) + zero_point, lo, hi)
    out_digits = split_integer(out, out_fmt)                  (the next layer's terms)

``w_m_k`` and ``a_n_j`` are the formats' lane weights (:attr:`SeriesFormat.lane_weights`) and
``active`` is the lane mask (all lanes by default). docs/numerics.md states the semantics;
:func:`fpxint_hw.golden.reference_tile` computes them in Python integers. Tiles are saved as
``.npz`` files (no pickles) so that RTL harnesses can replay them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import FormatError, InputError
from .intops import ROUNDING_MODES
from .outputs import write_npz
from .spec import SeriesFormat

__all__ = ["Requant", "GemmTile", "TileResult", "save_tile", "load_tile"]


@dataclass(frozen=True, eq=False)
class Requant:
    """Per-column requantization of a tile's accumulators.

    Members
    -------
    multiplier : int64 array ``(N,)``, each in ``0 .. 2^31 - 1``
        Fixed-point multiplier ``M0`` per output column.
    shift : int, 0..62
        Right shift ``n`` applied (with rounding) after the multiplication.
    lo, hi : int
        Inclusive clamp range of the output integer.
    zero_point : int
        Added after the shift, before the clamp.
    mode : {"rne", "half_up"}
        Rounding of the shift.
    pre_shift : int or int array ``(N,)``, 0..62
        A rounding shift of the accumulator before the multiplication, per channel (a host
        requantization for accumulators too wide for a full-width ``M0`` in int64):
        ``out = clamp(round_shift(round_shift(acc, pre_shift[c]) * M0[c], shift) + zp, lo,
        hi)``. Stored as an int64 array of ``M0``'s length (an int applies to every channel).
        Arrays multiply the exact accumulator (``pre_shift = 0``).
    """

    multiplier: np.ndarray
    shift: int
    lo: int
    hi: int
    zero_point: int = 0
    mode: str = "rne"
    pre_shift: np.ndarray | int = 0

    def __post_init__(self):
        m = np.asarray(self.multiplier)
        if m.ndim != 1 or not np.issubdtype(m.dtype, np.integer):
            raise FormatError(f"Requant.multiplier must be a 1-D integer array, got {m.dtype} "
                              f"shape {m.shape}")
        if m.size and (m.min() < 0 or m.max() >= 1 << 31):
            raise FormatError(f"Requant.multiplier must be in 0..2^31-1, got [{m.min()}, "
                              f"{m.max()}]")
        object.__setattr__(self, "multiplier", m.astype(np.int64))
        if isinstance(self.shift, bool) or not isinstance(self.shift, (int, np.integer)) \
                or not 0 <= self.shift <= 62:
            raise FormatError(f"Requant.shift must be an integer in 0..62, got {self.shift!r}")
        pre = np.asarray(self.pre_shift)
        if not np.issubdtype(pre.dtype, np.integer) or pre.ndim > 1 \
                or (pre.ndim == 1 and pre.size != m.size) \
                or (pre.size and not (0 <= pre.min() and pre.max() <= 62)):
            raise FormatError(f"Requant.pre_shift must be an integer in 0..62 or one per "
                              f"channel ({m.size}), got {self.pre_shift!r}")
        object.__setattr__(self, "pre_shift", np.broadcast_to(pre, m.shape).astype(np.int64))
        if not self.lo <= self.hi:
            raise FormatError(f"Requant clamp range is empty: lo={self.lo} > hi={self.hi}")
        if self.mode not in ROUNDING_MODES:
            raise FormatError(f"Requant.mode must be one of {ROUNDING_MODES}, got {self.mode!r}")

    def columns(self, n0: int, n1: int) -> "Requant":
        """The constants of output columns ``n0 .. n1 - 1`` (a group's or a column block's)."""
        return Requant(self.multiplier[n0:n1], self.shift, self.lo, self.hi, self.zero_point,
                       self.mode, self.pre_shift[n0:n1])

    @classmethod
    def acc_only(cls, n: int, mode: str = "rne") -> "Requant":
        """Constants for a tile whose exact ``acc`` is the result (a network's last layer):
        ``M0 = 1``, no shift, ``out`` clamped to 0, so they fit any array's config fields."""
        return cls(np.ones(n, dtype=np.int64), 0, 0, 0, 0, mode)


@dataclass(frozen=True, eq=False)
class GemmTile:
    """One integer GEMM tile (see the module docstring).

    Members
    -------
    w_fmt, a_fmt : SeriesFormat
        Formats of the weight and activation terms.
    weights : integer array ``(T_w, K, N)``
        Weight digits, ``weights[k]`` is term k+1.
    acts : integer array ``(T_a, M, K)``
        Activation digits.
    bias : int64 array ``(N,)``
        Added to the exact accumulator (units of the accumulator).
    requant : Requant
    out_fmt : SeriesFormat or None
        Format the output integers are split into; None leaves them whole.
    lane_mask : bool array ``(T_w, T_a)`` or None
        False switches a lane off; None keeps every lane.
    """

    w_fmt: SeriesFormat
    a_fmt: SeriesFormat
    weights: np.ndarray
    acts: np.ndarray
    bias: np.ndarray
    requant: Requant
    out_fmt: SeriesFormat | None = None
    lane_mask: np.ndarray | None = field(default=None)

    def __post_init__(self):
        w, a = np.asarray(self.weights), np.asarray(self.acts)
        if w.ndim != 3 or w.shape[0] != self.w_fmt.terms:
            raise FormatError(f"GemmTile.weights must be (T_w={self.w_fmt.terms}, K, N), "
                              f"got {w.shape}")
        if a.ndim != 3 or a.shape[0] != self.a_fmt.terms or a.shape[2] != w.shape[1]:
            raise FormatError(f"GemmTile.acts must be (T_a={self.a_fmt.terms}, M, K={w.shape[1]}),"
                              f" got {a.shape}")
        for name, arr, fmt in (("weights", w, self.w_fmt), ("acts", a, self.a_fmt)):
            if arr.size and (arr.min() < fmt.qmin or arr.max() > fmt.qmax):
                raise FormatError(f"GemmTile.{name}: digits in [{arr.min()}, {arr.max()}] leave "
                                  f"the format range [{fmt.qmin}, {fmt.qmax}]")
        bias = np.asarray(self.bias)
        if bias.shape != (w.shape[2],) or not np.issubdtype(bias.dtype, np.integer):
            raise FormatError(f"GemmTile.bias must be an integer array of shape ({w.shape[2]},),"
                              f" got {bias.dtype} {bias.shape}")
        if self.requant.multiplier.shape != (w.shape[2],):
            raise FormatError(f"GemmTile.requant.multiplier must have shape ({w.shape[2]},), "
                              f"got {self.requant.multiplier.shape}")
        if self.out_fmt is not None:
            lo, hi = self.out_fmt.combined_range
            if self.requant.lo < lo or self.requant.hi > hi:
                raise FormatError(f"GemmTile: clamp range [{self.requant.lo}, {self.requant.hi}]"
                                  f" leaves the output format's range [{lo}, {hi}]")
        mask = self.lane_mask
        if mask is not None:
            mask = np.asarray(mask, dtype=bool)
            if mask.shape != (self.w_fmt.terms, self.a_fmt.terms):
                raise FormatError(f"GemmTile.lane_mask must be ({self.w_fmt.terms}, "
                                  f"{self.a_fmt.terms}), got {mask.shape}")
            object.__setattr__(self, "lane_mask", mask)
        object.__setattr__(self, "weights", w)
        object.__setattr__(self, "acts", a)
        object.__setattr__(self, "bias", bias.astype(np.int64))

    @property
    def m(self) -> int:
        """Number of activation vectors M (rows of the output)."""
        return self.acts.shape[1]

    @property
    def k(self) -> int:
        """Reduction length K."""
        return self.weights.shape[1]

    @property
    def n(self) -> int:
        """Number of output columns N."""
        return self.weights.shape[2]

    def w_combined(self) -> np.ndarray:
        """The combined weight integers ``sum_k m_k W_k`` (int64 ``(K, N)``)."""
        total = np.zeros(self.weights.shape[1:], dtype=np.int64)
        for k, m in enumerate(self.w_fmt.lane_weights):
            total += np.int64(m) * self.weights[k].astype(np.int64)
        return total

    @property
    def mask(self) -> np.ndarray:
        """The lane mask with None expanded to all-True, shape ``(T_w, T_a)``."""
        if self.lane_mask is None:
            return np.ones((self.w_fmt.terms, self.a_fmt.terms), dtype=bool)
        return self.lane_mask


@dataclass(frozen=True, eq=False)
class TileResult:
    """What a tile computes.

    Members
    -------
    acc : int64 array ``(M, N)``
        Exact accumulators including the bias.
    out : int64 array ``(M, N)``
        Requantized, clamped outputs.
    out_digits : int64 array ``(T_out, M, N)`` or None
        ``out`` split into the output format's terms.
    """

    acc: np.ndarray
    out: np.ndarray
    out_digits: np.ndarray | None = None


def save_tile(path: str | Path, tile: GemmTile, result: TileResult | None = None) -> None:
    """Write a tile (and optionally its expected result) to an ``.npz`` file without pickles."""
    meta = {
        "w_fmt": tile.w_fmt.to_dict(), "a_fmt": tile.a_fmt.to_dict(),
        "out_fmt": None if tile.out_fmt is None else tile.out_fmt.to_dict(),
        "shift": int(tile.requant.shift), "lo": int(tile.requant.lo), "hi": int(tile.requant.hi),
        "zero_point": int(tile.requant.zero_point), "mode": tile.requant.mode,
        "pre_shift": [int(v) for v in tile.requant.pre_shift],
    }
    arrays = {"meta": np.array(json.dumps(meta)), "weights": tile.weights, "acts": tile.acts,
              "bias": tile.bias, "multiplier": tile.requant.multiplier}
    if tile.lane_mask is not None:
        arrays["lane_mask"] = tile.lane_mask
    if result is not None:
        arrays["expected_acc"] = result.acc
        arrays["expected_out"] = result.out
        if result.out_digits is not None:
            arrays["expected_out_digits"] = result.out_digits
    write_npz(path, arrays)


def load_tile(path: str | Path) -> tuple[GemmTile, TileResult | None]:
    """Read a tile file written by :func:`save_tile`; errors name the file and the entry."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise InputError(f"{path}: no such tile file") from None
    except (ValueError, OSError) as exc:
        raise InputError(f"{path}: not a tile .npz file ({exc})") from None
    for key in ("meta", "weights", "acts", "bias", "multiplier"):
        if key not in data:
            raise InputError(f"{path}: missing entry {key!r}; not a tile file")
    try:
        meta = json.loads(str(data["meta"]))
        out_fmt = meta["out_fmt"]
        tile = GemmTile(
            SeriesFormat.from_dict(meta["w_fmt"], f"{path}:w_fmt"),
            SeriesFormat.from_dict(meta["a_fmt"], f"{path}:a_fmt"),
            data["weights"], data["acts"], data["bias"],
            Requant(data["multiplier"], meta["shift"], meta["lo"], meta["hi"],
                    meta["zero_point"], meta["mode"], meta.get("pre_shift", 0)),
            None if out_fmt is None else SeriesFormat.from_dict(out_fmt, f"{path}:out_fmt"),
            data.get("lane_mask"))
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: bad tile metadata ({type(exc).__name__}: {exc})") from None
    except FormatError as exc:
        raise InputError(f"{path}: {exc}") from None
    result = None
    if "expected_out" in data:
        result = TileResult(data["expected_acc"], data["expected_out"],
                            data.get("expected_out_digits"))
    return tile, result

