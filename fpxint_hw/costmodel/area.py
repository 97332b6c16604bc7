"""An analytical area model of the accelerator, calibrated by least squares on synthesis.

The model counts, from an :class:`~fpxint_hw.spec.ArraySpec` alone, the bits of each kind of
hardware the generator builds (:mod:`fpxint_hw.hw`), and turns them into FPGA cells with one
coefficient per kind:

=================  =================================================================
feature            what it counts
=================  =================================================================
``multipliers``    digit-product bit pairs: ``rows * cols * lanes * w_bits * a_bits``
                   (plus ``cols * m0_bits * acc_width`` when the output units'
                   multiplier is built from LUTs: ``m0_bits`` or ``acc_width`` under
                   ``lut_mult_below``)
``adders``         adder bits: each PE's adder-tree nodes (one term per lane and
                   activation slice) and partial-sum adder(s)
                   (every node as wide as its value interval needs), the per-column
                   lane combine (``combine: column``), the shift-add networks of
                   free-mode lane constants
``requant``        output-unit datapath bits: ``cols * (acc_width + product_width +
                   out_width)`` (bias add, rounding shift, zero point, clamp, split)
``registers``      flip-flop bits: weights and their multiples, activations, lane-product
                   and tree registers (every tree level with ``tree_reg``), partial sums, input
                   skew and output de-skew, output-unit stages, per-pass constant
                   copies, the valid pipeline
=================  =================================================================

The output FIFO's memory is left out: synthesis reports it as LUT RAM or block RAM cells,
not LUTs or flip-flops. Two linear models are fitted (non-negative coefficients, plus a
constant for the control logic): *logic* (LUT-equivalents: ``luts + 2 * carries`` on ECP5,
where a CCU2C carry cell fills two LUT4 slots; ``luts + carries`` elsewhere) from the first
three features, and *flip-flops* from the register bits. :meth:`AreaModel.breakdown` splits
a prediction into those components; :meth:`AreaModel.errors` reports the relative error on the fitted
configurations and by leave-one-out.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..hw import timing
from ..hw.array import ENTRY_STAGES
from ..hw.requant import CONST_HOPS, SHIFT_GROUP, SHIFT_STEPS
from ..intops import int_range, product_interval, width_for_interval
from ..spec import ArraySpec

__all__ = ["LOGIC_FEATURES", "FF_FEATURES", "MIN_FIT_POINTS", "area_features", "logic_cells",
           "nnls_small", "AreaModel", "fit_area_model"]

#: Features of the logic (LUT-equivalent) model, in coefficient order.
LOGIC_FEATURES = ("multipliers", "adders", "requant")
#: Features of the flip-flop model.
FF_FEATURES = ("registers",)
#: Fewest synthesis points a model is fitted on: with every point left out in turn, the rest
#: still outnumber the logic model's coefficients (features and the constant), so the
#: leave-one-out error measures the model; on fewer points it would fit them exactly and
#: report no error at all.
MIN_FIT_POINTS = len(LOGIC_FEATURES) + 3


def _w(rng) -> int:
    return width_for_interval(rng[0], rng[1], signed=True)


def _tree_bits(ranges: list[tuple[int, int]]) -> tuple[int, tuple[int, int]]:
    """Adder bits of a balanced pairwise tree over ``ranges``, and the root's range."""
    level, bits = list(ranges), 0
    while len(level) > 1:
        nxt = []
        for i in range(0, len(level) - 1, 2):
            r = (level[i][0] + level[i + 1][0], level[i][1] + level[i + 1][1])
            bits += _w(r)
            nxt.append(r)
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return bits, level[0]


def _const_mult_bits(weight: int, width: int) -> int:
    """Adder bits of a shift-add multiplier by the constant ``weight`` on ``width`` bits."""
    ones = bin(weight).count("1")
    return max(0, ones - 1) * (width + weight.bit_length())


def area_features(spec: ArraySpec, lut_mult_below: int = 10) -> dict[str, int]:
    """The model's feature counts for ``spec`` (see the module docstring), in bits."""
    pes = spec.rows * spec.cols
    prange = spec.digit_product_range
    pw = _w(prange)
    mult = pes * spec.lanes * spec.w_bits * spec.a_bits
    if min(spec.m0_bits, spec.acc_width) < lut_mult_below:
        mult += spec.cols * spec.m0_bits * spec.acc_width
    free = spec.scale == "free"
    adders = 0
    act_bits = spec.a_bits * spec.a_terms
    pe_regs = spec.w_bits * spec.w_terms + act_bits * spec.w_terms   # a copy per weight term
    if spec.combine == "pe":
        # one tree term per lane and activation slice (2-bit slices with tree_reg)
        wrange = spec.w_fmt.digit_range
        pieces = [(product_interval(wrange, int_range(width, sgn)), wt << lo)
                  for wt in spec.lane_weights for lo, width, sgn in spec.act_slices]
        terms = [(r[0] * wt, r[1] * wt) for r, wt in pieces]
        tree, _ = _tree_bits(terms)
        consts = sum(_const_mult_bits(wt, _w(r)) for r, wt in pieces) if free else 0
        pe_regs += spec.w_terms * sum(_w(product_interval(wrange, (o, o)))
                                      for o in spec.weight_multiples)
        adders += pes * (tree + consts + spec.acc_width)
        if spec.mult_reg:
            pe_regs += sum(_w(r) for r, _ in pieces)
        pe_regs += spec.acc_width + (tree if spec.tree_reg else 0)   # every level registered
    else:
        if spec.mult_reg:
            pe_regs += spec.lanes * pw
        lane_w = [_w(spec.unit_lane_range if l == spec.unit_lane else spec.lane_acc_range)
                  for l in range(spec.lanes)]
        adders += pes * sum(lane_w)
        pe_regs += sum(lane_w)
        ranges = [spec.unit_lane_range if l == spec.unit_lane else spec.lane_acc_range
                  for l in range(spec.lanes)]
        weighted = [(r[0] * w, r[1] * w) for r, w in zip(ranges, spec.lane_weights)]
        tree, _ = _tree_bits(weighted)
        consts = sum(_const_mult_bits(w, lw) for w, lw in zip(spec.lane_weights, lane_w)) \
            if free else 0
        adders += spec.cols * (tree + consts)
    requant = spec.cols * (spec.acc_width + spec.product_width + spec.out_width)
    # row i: ENTRY_STAGES + i registers, the last one a copy per weight term
    skew = act_bits * sum(ENTRY_STAGES + i - 1 + spec.w_terms for i in range(spec.rows))
    psum_in = sum(spec.acc_width * (j + timing.pe_stages(spec)) for j in range(spec.cols))
    deskew = sum(spec.acc_width * (spec.cols - 1 - j) for j in range(spec.cols))
    combine_reg = spec.cols * spec.acc_width if spec.combine == "column" else 0
    # per column: the accumulator travelling along every stage, the multiplier's operand,
    # tile and sum registers (about four products), the shifter stages and sticky mask with
    # a shift-amount copy per group, the shift's decode, the constants' hops, the output
    # stages and digits
    shift_copies = -(-(spec.product_width + 1) // SHIFT_GROUP) * spec.shift_width
    decode = 2 * (spec.product_width // 8 + 1) + 8 + 3 * spec.shift_width
    hops = CONST_HOPS * (spec.bias_width + spec.zp_width + 2 * spec.out_width + spec.shift_width)
    out_regs = spec.cols * (spec.acc_width * (timing.out_stages(spec) + 1) + spec.m0_bits
                            + (5 + SHIFT_STEPS) * spec.product_width + shift_copies + decode + hops
                            + spec.out_width * 4 + spec.out_bits * spec.out_terms)
    # per-pass constants: one lane-mask copy per row, one shift/zero point/clamp copy per column
    config = spec.rows * spec.lanes + spec.cols * (spec.shift_width + spec.zp_width
                                                   + 2 * spec.out_width)
    regs = (pes * pe_regs + skew + psum_in + deskew + combine_reg + out_regs + config
            + timing.datapath_latency(spec))
    return {"multipliers": int(mult), "adders": int(adders), "requant": int(requant),
            "registers": int(regs)}


def logic_cells(target: str, luts: int, carries: int) -> int:
    """LUT-equivalents of a synthesis result: ``luts + 2 * carries`` on ECP5, else the sum."""
    return int(luts) + (2 if target == "ecp5" else 1) * int(carries)


def nnls_small(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Non-negative least squares ``min |a x - b|, x >= 0`` for a few columns (exhaustive
    over the active sets; exact, fine up to about 10 columns)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    n = a.shape[1]
    best, best_err = np.zeros(n), float(np.sum(b * b))
    for r in range(1, n + 1):
        for cols in itertools.combinations(range(n), r):
            x, *_ = np.linalg.lstsq(a[:, cols], b, rcond=None)
            if np.any(x < 0):
                continue
            err = float(np.sum((a[:, cols] @ x - b) ** 2))
            if err < best_err:
                best_err, best = err, np.zeros(n)
                best[list(cols)] = x
    return best


@dataclass(frozen=True)
class AreaModel:
    """Fitted coefficients of the logic and flip-flop models for one target.

    Members
    -------
    target : str
    logic_coef : dict of str -> float
        LUT-equivalents per feature bit, for :data:`LOGIC_FEATURES` and ``"control"``
        (the constant).
    ff_coef : dict of str -> float
        Flip-flops per register bit, and ``"control"``.
    lut_mult_below : int
        The synthesis option the features assume.
    samples : list of dict
        The calibration points: ``name``, features, measured ``logic`` and ``ffs``.
    """

    target: str
    logic_coef: dict
    ff_coef: dict
    lut_mult_below: int = 10
    samples: list = field(default_factory=list)

    def features(self, spec: ArraySpec) -> dict[str, int]:
        """:func:`area_features` with this model's synthesis option."""
        return area_features(spec, self.lut_mult_below)

    def breakdown(self, spec: ArraySpec) -> dict[str, float]:
        """Predicted LUT-equivalents per component (features and ``control``) and ``ffs``."""
        f = self.features(spec)
        out = {k: self.logic_coef[k] * f[k] for k in LOGIC_FEATURES}
        out["control"] = self.logic_coef["control"]
        out["ffs"] = self.ff_coef["registers"] * f["registers"] + self.ff_coef["control"]
        return out

    def predict(self, spec: ArraySpec) -> dict[str, float]:
        """``{"logic": LUT-equivalents, "ffs": flip-flops}`` predicted for ``spec``."""
        b = self.breakdown(spec)
        return {"logic": sum(v for k, v in b.items() if k != "ffs"), "ffs": b["ffs"]}

    def errors(self) -> dict:
        """Relative errors on the calibration points: fitted (in-sample) and leave-one-out.

        Returns ``{"points": [{name, logic, logic_pred, logic_loo, ffs, ffs_pred}],
        "logic_mape", "logic_max", "logic_loo_mape", "logic_loo_max", "ffs_mape",
        "ffs_max"}`` (errors as fractions, e.g. 0.05 for 5 %).
        """
        pts = []
        for i, s in enumerate(self.samples):
            f = s["features"]
            lp = sum(self.logic_coef[k] * f[k] for k in LOGIC_FEATURES) \
                + self.logic_coef["control"]
            fp = self.ff_coef["registers"] * f["registers"] + self.ff_coef["control"]
            rest = self.samples[:i] + self.samples[i + 1:]
            loo = None
            if len(rest) >= MIN_FIT_POINTS - 1:
                c = _fit_logic(rest)
                loo = sum(c[k] * f[k] for k in LOGIC_FEATURES) + c["control"]
            pts.append({"name": s["name"], "logic": s["logic"], "logic_pred": lp,
                        "logic_loo": loo, "ffs": s["ffs"], "ffs_pred": fp})

        def rel(a, b):
            return abs(a - b) / b if b else 0.0
        le = [rel(p["logic_pred"], p["logic"]) for p in pts]
        lo = [rel(p["logic_loo"], p["logic"]) for p in pts if p["logic_loo"] is not None]
        fe = [rel(p["ffs_pred"], p["ffs"]) for p in pts]
        stat = lambda v, f: f(v) if v else None  # noqa: E731
        return {"points": pts, "logic_mape": stat(le, np.mean), "logic_max": stat(le, max),
                "logic_loo_mape": stat(lo, np.mean), "logic_loo_max": stat(lo, max),
                "ffs_mape": stat(fe, np.mean), "ffs_max": stat(fe, max)}

    def to_dict(self) -> dict:
        """JSON-ready fields."""
        return {"target": self.target, "logic_coef": self.logic_coef, "ff_coef": self.ff_coef,
                "lut_mult_below": self.lut_mult_below, "samples": self.samples}

    @classmethod
    def from_dict(cls, data: dict) -> "AreaModel":
        """Inverse of :meth:`to_dict`."""
        return cls(data["target"], dict(data["logic_coef"]), dict(data["ff_coef"]),
                   int(data.get("lut_mult_below", 10)), list(data.get("samples", [])))

    def save(self, path) -> None:
        """Write the model as JSON."""
        from ..outputs import write_text
        write_text(path, json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path, where: str = "area model") -> "AreaModel":
        """Read a model written by :meth:`save` (or ``fpxint plot``'s ``area_model.json``).

        Raises InputError naming ``where`` and the file when it cannot be read or is not a
        model."""
        try:
            data = json.loads(Path(path).read_text())
            model = cls.from_dict(data)
            if not all(k in model.logic_coef for k in (*LOGIC_FEATURES, "control")) or \
                    not all(k in model.ff_coef for k in ("registers", "control")):
                raise KeyError("coefficients")
            return model
        except OSError as e:
            raise InputError(f"{where}: cannot read {path} ({e.strerror}); write one with "
                             f"'fpxint plot SWEEP_DIR'") from None
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise InputError(f"{where}: {path} is not an area model written by "
                             f"'fpxint plot' ({type(e).__name__}: {e})") from None


def _fit_logic(samples: list[dict]) -> dict:
    a = np.array([[s["features"][k] for k in LOGIC_FEATURES] + [1.0] for s in samples])
    b = np.array([s["logic"] for s in samples], float)
    x = nnls_small(a, b)
    return {**{k: float(v) for k, v in zip(LOGIC_FEATURES, x)}, "control": float(x[-1])}


def _fit_ffs(samples: list[dict]) -> dict:
    a = np.array([[s["features"]["registers"], 1.0] for s in samples])
    b = np.array([s["ffs"] for s in samples], float)
    x = nnls_small(a, b)
    return {"registers": float(x[0]), "control": float(x[1])}


def fit_area_model(points, target: str = "ecp5", lut_mult_below: int = 10) -> AreaModel:
    """Fit the model to synthesis results.

    ``points``: ``(name, spec, synth)`` triples where ``synth`` has ``luts``, ``carries`` and
    ``ffs`` (a :class:`~fpxint_hw.flow.synth.SynthResult` or a dict). At least
    :data:`MIN_FIT_POINTS` points with different structure are needed.
    """
    samples = []
    for name, spec, syn in points:
        get = syn.get if isinstance(syn, dict) else lambda k: getattr(syn, k)
        samples.append({"name": name, "features": area_features(spec, lut_mult_below),
                        "logic": logic_cells(target, get("luts"), get("carries")),
                        "ffs": int(get("ffs"))})
    if len(samples) < MIN_FIT_POINTS:
        raise InputError(f"fit_area_model: need at least {MIN_FIT_POINTS} synthesis points "
                         f"(for {len(LOGIC_FEATURES) + 1} coefficients and a leave-one-out "
                         f"error), got {len(samples)}")
    return AreaModel(target, _fit_logic(samples), _fit_ffs(samples), lut_mult_below, samples)
