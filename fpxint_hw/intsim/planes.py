"""Exact operand planes: a layer's GEMMs split into pieces the fastest exact backend takes.

A conv/linear layer's GEMM inputs are *groups* (the path's lane groups, see
:mod:`fpxint_hw.intsim.executor`): activation group ``ga`` holds integers ``v`` in
``[lo, hi]``, weight group ``gw`` a matrix ``W`` (K, O) of integers, and the layer needs the
pair products ``v @ W``. A :class:`GemmPlan` writes each pair as a sum of *products* of
operands that one backend computes exactly, each product and their sum proved by width rows
(:mod:`fpxint_hw.intsim.widths`):

* ``planes`` (uint8 x int8: the VNNI kernel of :mod:`fpxint_hw.intsim.vnni`, or onnxruntime
  ``MatMulInteger``): ``u = v - lo >= 0`` is cut into
  unsigned ``r``-bit planes, ``u = sum_i 2^(r i) u_i``, and ``W`` into balanced ``s``-bit
  planes, ``W = sum_j 2^(s j) W_j`` with ``W_j`` in ``[-2^(s-1), 2^(s-1) - 1]`` (the top plane
  takes what is left), so that
  ``v @ W = sum_ij 2^(r i + s j) (u_i @ W_j) + lo * colsum(W)``: ``P_a x P_w`` int8 GEMMs,
  one GEMM call per activation plane with the weight planes side by side. The plane
  widths are what the backend's int8 dot product takes exactly (:mod:`fpxint_hw.intsim.cpu`):
  with VNNI ``r = s = 8`` (the ``vnni`` backend always, ``ort`` where the CPU has it);
  without it every pair sum ``a0 w0 + a1 w1`` must fit int16, so 8-bit activations take
  7-bit weights (``|w| <= 64``), or 7-bit activations 8-bit weights.
* ``karatsuba`` (uint8 x int8), for two planes on each side at a common radix ``R = 2^t``:
  ``u @ W = (1 - R) u0 @ W0 + R (u0 + u1) @ (W0 + W1) + (R^2 - R) u1 @ W1``, three GEMMs
  instead of four when the sums still fit the int8 operands.
* ``u8u8`` (onnxruntime, uint8 x uint8): 8-bit weights stored as ``W + 128`` with zero point
  128 where the u8 x s8 pairs saturate: one GEMM at about 0.7x the u8 x s8 speed instead of
  two.
* ``raw`` (float32 / float64 BLAS, the Numba int64 kernel): ``v @ W`` directly, exact while
  every sum of product magnitudes stays below 2^24 / 2^53 / 2^63.

:func:`plan_gemm` returns the cheapest exact plan by :data:`COST`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from .cpu import PAIR_LIMIT, VNNI, Int8Gemm
from .widths import WidthRow, float_gemm_row, int8_product_rows, sum_row

__all__ = ["ActOperand", "WeightOperand", "Product", "GemmPlan", "COST", "unsigned_planes",
           "balanced_planes", "plan_gemm", "RAW_BACKENDS", "INT8_BACKENDS"]

#: Relative cost of one (K x N) GEMM on each kernel, measured against onnxruntime's
#: u8 x s8 GEMM on the development machines (the VNNI kernel runs in 0.6-0.7x its time on a
#: layer's chunks of rows, u8 x u8 at 0.55-0.8x its speed, float32 BLAS at about a quarter
#: with four times the bytes, float64 at half of that, the Numba int64 kernel at about 1/40),
#: and of preparing one more activation operand (the split, its im2col and one more call).
COST = {"vnni": 0.7, "u8s8": 1.0, "u8u8": 1.4, "f32": 4.0, "f64": 8.0, "int": 40.0,
        "act_operand": 0.1}

#: The backends that multiply the raw integers (no planes).
RAW_BACKENDS = ("f32", "f64", "int")

#: The backends of uint8 x int8 operand planes, fastest first.
INT8_BACKENDS = ("vnni", "ort")

#: Common radix bits a Karatsuba plan tries, widest first.
_KARATSUBA_BITS = (8, 7, 6, 5, 4)


@dataclass(frozen=True)
class ActOperand:
    """One activation operand: for activation group ``group`` with ``u = v - offset``,
    ``sum_p coef_p * ((u >> shift_p) & (2^bits_p - 1))`` over its ``parts``
    ``(shift, bits, coef)`` (``bits`` 0: no mask, the top plane); every value lies in
    ``[lo, hi]``. A raw operand is ``v`` itself (``offset`` 0, one part ``(0, 0, 1)``)."""

    group: int
    offset: int
    parts: tuple[tuple[int, int, int], ...]
    lo: int
    hi: int

    @property
    def raw(self) -> bool:
        """True for the integers themselves (no offset, no planes)."""
        return self.offset == 0 and self.parts == ((0, 0, 1),)

    def value(self, v):
        """The operand of group values ``v`` (an int or an int64 array), exactly."""
        u = np.asarray(v, dtype=np.int64) - self.offset
        out = np.zeros_like(u)
        for shift, bits, coef in self.parts:
            p = u >> shift
            if bits:
                p = p & ((1 << bits) - 1)
            out = out + coef * p
        return out


@dataclass(frozen=True, eq=False)
class WeightOperand:
    """One weight operand of a plan: the integers ``values`` (K, O), int64, of weight group
    ``group`` (a plane of it, a sum of planes, or the group itself); ``lo``, ``hi`` their
    range and ``colabs`` the largest column sum of their magnitudes (what one output's dot
    product reaches per unit of activation). ``values`` is None once the backend holds
    them (:meth:`without_values`)."""

    group: int
    values: np.ndarray | None
    lo: int
    hi: int
    colabs: int

    @classmethod
    def of(cls, group: int, values: np.ndarray) -> "WeightOperand":
        """The operand of ``values`` with its range and column bound."""
        v = np.asarray(values, dtype=np.int64)
        if not v.size:
            return cls(group, v, 0, 0, 0)
        return cls(group, v, int(v.min()), int(v.max()), int(np.abs(v).sum(axis=0).max()))

    def without_values(self) -> "WeightOperand":
        """The same operand without its matrix (its bounds stay)."""
        return WeightOperand(self.group, None, self.lo, self.hi, self.colabs)


@dataclass(frozen=True)
class Product:
    """``coef * (acts[act] @ weights[weight])`` is part of pair ``pairs[pair]``."""

    act: int
    weight: int
    pair: int
    coef: int


@dataclass(eq=False)
class GemmPlan:
    """How a layer computes its pair products ``v_ga @ W_gw`` exactly.

    Members
    -------
    backend : {"vnni", "ort", "f32", "f64", "int"}
    scheme : {"planes", "karatsuba", "u8u8", "raw"}
    pairs : list of (gw, ga)
        The pair products the plan computes, in the order given.
    acts, weights : lists of :class:`ActOperand` / :class:`WeightOperand`
    products : list of :class:`Product`
        ``pair p = sum over its products of coef * (act @ weight) + corrections[p]``.
    corrections : list of int64 ``(O,)`` arrays or None
        Per pair, ``offset * colsum(W)``: what the activation offset took away.
    rows : list of WidthRow
        The proof: every operand in its slot, every product's accumulator, the sum.
    cost : float
        Relative run time (:data:`COST`).
    sum_bound : int
        (int8 plans) the largest partial sum of the bias, offsets and scaled products.
    """

    backend: str
    scheme: str
    pairs: list
    acts: list
    weights: list
    products: list
    corrections: list
    rows: list = field(default_factory=list)
    cost: float = 0.0
    sum_bound: int = 0

    @property
    def kernel(self) -> str:
        """The GEMM kernel: "u8s8", "u8u8" or the raw backend's name."""
        if self.backend not in INT8_BACKENDS:
            return self.backend
        return "u8u8" if self.scheme == "u8u8" else "u8s8"

    @property
    def gemms(self) -> int:
        """Number of (K x O) GEMMs the plan runs per pair set."""
        return len(self.products)

    @property
    def ok(self) -> bool:
        """True when every row fits."""
        return all(r.ok for r in self.rows)

    def describe(self) -> str:
        """E.g. ``"vnni u8s8 planes: 2 activation x 2 weight operands, 4 GEMMs"``."""
        return (f"{self.backend} {self.kernel} {self.scheme}: {len(self.acts)} activation x "
                f"{len(self.weights)} weight operands, {self.gemms} GEMMs")


# -- the exact splits ------------------------------------------------------------------------

def unsigned_planes(u_hi: int, bits: int) -> list[tuple[int, int, int]]:
    """``u`` in ``[0, u_hi]`` cut into ``bits``-bit planes: ``[(shift, mask bits, largest
    value)]``, the top plane unmasked (mask bits 0): ``u = sum 2^shift ((u >> shift) & mask)``.
    """
    if u_hi < 0 or bits < 1:
        raise ValueError(f"unsigned_planes: need u_hi >= 0 and bits >= 1, got {u_hi}, {bits}")
    planes, shift, full = [], 0, (1 << bits) - 1
    while (u_hi >> shift) > full:
        planes.append((shift, bits, full))
        shift += bits
    planes.append((shift, 0, u_hi >> shift))
    return planes


def balanced_planes(w: np.ndarray, bits: int, lo: int, hi: int) -> list[np.ndarray]:
    """``w`` (int64) as ``sum_j 2^(bits j) planes[j]`` exactly: lower planes are the balanced
    digits ``[-2^(bits-1), 2^(bits-1) - 1]``, the top plane whatever is left, which lies in
    ``[lo, hi]`` (the operand range, holding the digit range)."""
    half = 1 << (bits - 1)
    if not (lo <= -half and half - 1 <= hi):
        raise ValueError(f"balanced_planes: [{lo}, {hi}] does not hold the {bits}-bit digits")
    planes, rem = [], np.asarray(w, dtype=np.int64)
    while rem.size and (int(rem.min()) < lo or int(rem.max()) > hi):
        digit = ((rem + half) & ((1 << bits) - 1)) - half
        planes.append(digit)
        rem = (rem - digit) >> bits
    planes.append(rem)
    return planes


def _plane_count(lo: int, hi: int, bits: int, top_lo: int, top_hi: int) -> int:
    """Number of balanced planes of the extremes ``lo`` and ``hi`` (a cheap estimate)."""
    return len(balanced_planes(np.array([lo, hi], dtype=np.int64), bits, top_lo, top_hi))


# -- candidate plans -------------------------------------------------------------------------

@dataclass(frozen=True)
class _Layer:
    """What the planner needs of a layer: groups, ranges, pairs, K and names."""

    a_ranges: list
    w_groups: list
    pairs: list
    k: int
    layer: str
    pair_weights: list
    bias_max: int

    @cached_property
    def w_extremes(self):
        return [(int(w.min()), int(w.max())) if w.size else (0, 0) for w in self.w_groups]

    @cached_property
    def colsums(self):
        return [w.sum(axis=0) for w in self.w_groups]

    @cached_property
    def int64_safe(self) -> bool:
        """The int64 sums of the int8 plans cannot wrap: every pair's ``colabs * max|v|``,
        estimated in float64 (which cannot wrap), is far below 2^63."""
        amax = max(max(abs(lo), abs(hi)) for lo, hi in self.a_ranges)
        colabs = max(float(np.abs(w.astype(np.float64)).sum(axis=0).max()) if w.size else 0.0
                     for w in self.w_groups)
        return colabs * max(amax, 1) * max(self.pair_weights, default=1) < 2.0 ** 61

    def groups_used(self):
        gws = sorted({gw for gw, _ in self.pairs})
        gas = sorted({ga for _, ga in self.pairs})
        return gws, gas


def _weight_range(a_hi: int, int8: Int8Gemm, kernel: str) -> tuple[int, int]:
    """The weight operand range a GEMM with activations up to ``a_hi`` keeps exact."""
    if kernel == "u8u8":
        return -128, 127
    if not int8.pair_saturates:
        return -128, 127
    lim = PAIR_LIMIT // (2 * max(a_hi, 1))
    return max(-128, -lim), min(127, lim)


def _digit_bits(lo: int, hi: int) -> int:
    """Widest balanced digit ``[-2^(s-1), 2^(s-1) - 1]`` inside ``[lo, hi]``."""
    room = min(-lo, hi + 1)
    return max(1, room.bit_length())


def _corrections(lay: _Layer, acts_offset: dict) -> list:
    out = []
    for gw, ga in lay.pairs:
        off = acts_offset.get(ga, 0)
        out.append(None if off == 0 else np.int64(off) * lay.colsums[gw].astype(np.int64))
    return out


def _product_rows(lay, plan, int8) -> list[WidthRow]:
    """Each product's conditions, then (int8 plans) the int64 sum of the scaled products with
    the pair weights, the offsets and the bias, in any order."""
    rows = []
    for n, p in enumerate(plan.products):
        a, w = plan.acts[p.act], plan.weights[p.weight]
        if plan.backend in INT8_BACKENDS:
            rows += int8_product_rows(lay.layer, f"int8 GEMM {n + 1} of {plan.gemms} "
                                      f"(activation operand {p.act + 1} x weight operand "
                                      f"{p.weight + 1})", a.hi, w.lo, w.hi, w.colabs, lay.k,
                                      plan.kernel, int8.pair_saturates)
        else:
            rows.append(float_gemm_row(lay.layer, plan.backend,
                                       w.colabs * max(abs(a.lo), abs(a.hi))))
    if plan.backend in INT8_BACKENDS:
        pw = lay.pair_weights
        bound = sum(abs(p.coef) * pw[p.pair] * plan.weights[p.weight].colabs
                    * plan.acts[p.act].hi for p in plan.products)
        bound += sum(pw[i] * int(np.abs(c).max()) for i, c in enumerate(plan.corrections)
                     if c is not None and c.size)
        bound += lay.bias_max
        plan.sum_bound = bound
        rows.append(sum_row(lay.layer, f"int8 GEMM recombination: {plan.gemms} products "
                            f"scaled and summed, plus the activation offsets", bound, 64))
    return rows


def _finish(lay, plan, int8, cost_per_gemm) -> GemmPlan:
    plan.cost = cost_per_gemm * len(plan.products) + COST["act_operand"] * len(plan.acts)
    plan.rows = _product_rows(lay, plan, int8)
    return plan


def _raw(lay: _Layer, backend: str, int8) -> GemmPlan:
    gws, gas = lay.groups_used()
    acts = [ActOperand(ga, 0, ((0, 0, 1),), *lay.a_ranges[ga]) for ga in gas]
    weights = [WeightOperand.of(gw, lay.w_groups[gw]) for gw in gws]
    products = [Product(gas.index(ga), gws.index(gw), p, 1)
                for p, (gw, ga) in enumerate(lay.pairs)]
    plan = GemmPlan(backend, "raw", list(lay.pairs), acts, weights, products,
                    [None] * len(lay.pairs))
    return _finish(lay, plan, int8, COST[backend])


def _gemm_cost(backend: str, kernel: str) -> float:
    return COST["vnni"] if backend == "vnni" else COST[kernel]


def _planes(lay: _Layer, int8: Int8Gemm, a_bits: int, kernel: str,
            backend: str = "ort") -> GemmPlan:
    gws, gas = lay.groups_used()
    acts, act_of = [], {}
    for ga in gas:
        lo, hi = lay.a_ranges[ga]
        act_of[ga] = []
        for shift, bits, top in unsigned_planes(hi - lo, a_bits):
            act_of[ga].append((len(acts), shift))
            acts.append(ActOperand(ga, lo, ((shift, bits, 1),), 0, top))
    a_hi = max(a.hi for a in acts)
    w_lo, w_hi = _weight_range(a_hi, int8, kernel)
    s = _digit_bits(w_lo, w_hi)
    weights, w_of = [], {}
    for gw in gws:
        w_of[gw] = []
        for j, plane in enumerate(balanced_planes(lay.w_groups[gw], s, w_lo, w_hi)):
            w_of[gw].append((len(weights), s * j))
            weights.append(WeightOperand.of(gw, plane))
    if kernel == "u8u8" and any(len(v) > 1 for v in w_of.values()):
        return None                                   # u8u8 only pays off for one plane
    products = [Product(ai, wi, p, 1 << (ash + wsh))
                for p, (gw, ga) in enumerate(lay.pairs)
                for ai, ash in act_of[ga] for wi, wsh in w_of[gw]]
    plan = GemmPlan(backend, "u8u8" if kernel == "u8u8" else "planes", list(lay.pairs), acts,
                    weights, products,
                    _corrections(lay, {ga: lay.a_ranges[ga][0] for ga in gas}))
    return _finish(lay, plan, int8, _gemm_cost(backend, kernel))


def _karatsuba(lay: _Layer, int8: Int8Gemm, t: int,
               backend: str = "ort") -> GemmPlan | None:
    (gw, ga), = lay.pairs
    lo, hi = lay.a_ranges[ga]
    u_hi, radix = hi - lo, 1 << t
    u1_hi = u_hi >> t
    if u1_hi == 0 or radix - 1 + u1_hi > 255:
        return None
    acts = [ActOperand(ga, lo, ((0, t, 1),), 0, radix - 1),
            ActOperand(ga, lo, ((t, 0, 1),), 0, u1_hi),
            ActOperand(ga, lo, ((0, t, 1), (t, 0, 1)), 0, radix - 1 + u1_hi)]
    w = lay.w_groups[gw].astype(np.int64)
    w0 = ((w + (radix >> 1)) & (radix - 1)) - (radix >> 1)
    w1 = (w - w0) >> t
    weights = [WeightOperand.of(gw, w0), WeightOperand.of(gw, w1),
               WeightOperand.of(gw, w0 + w1)]
    if weights[1].lo == weights[1].hi == 0:
        return None                                    # one weight plane: no gain
    products = [Product(0, 0, 0, 1 - radix), Product(1, 1, 0, radix * radix - radix),
                Product(2, 2, 0, radix)]
    plan = GemmPlan(backend, "karatsuba", list(lay.pairs), acts, weights, products,
                    _corrections(lay, {ga: lo}))
    return _finish(lay, plan, int8, _gemm_cost(backend, "u8s8"))


def _estimates(lay: _Layer, int8: Int8Gemm, backends):
    """``[(estimated cost, builder)]`` of every candidate plan on ``backends``; ``int8`` is
    what onnxruntime's int8 GEMM takes here (the VNNI kernel takes :data:`VNNI` always)."""
    gws, gas = lay.groups_used()
    pairs_of_ga = {ga: sum(1 for _, g in lay.pairs if g == ga) for ga in gas}
    out = []
    for backend in (b for b in INT8_BACKENDS if b in backends and lay.int64_safe):
        cond = VNNI if backend == "vnni" else int8
        kernels = ["u8s8"] + (["u8u8"] if cond.u8u8 and cond.pair_saturates else [])
        for kernel in kernels:
            for a_bits in ((8,) if kernel == "u8u8" else (8, 7)):
                n_a = {ga: len(unsigned_planes(lay.a_ranges[ga][1] - lay.a_ranges[ga][0],
                                               a_bits)) for ga in gas}
                a_hi = min(max(lay.a_ranges[ga][1] - lay.a_ranges[ga][0] for ga in gas),
                           (1 << a_bits) - 1)
                w_lo, w_hi = _weight_range(a_hi, cond, kernel)
                s = _digit_bits(w_lo, w_hi)
                n_w = {gw: _plane_count(*lay.w_extremes[gw], s, w_lo, w_hi) for gw in gws}
                if kernel == "u8u8" and max(n_w.values()) > 1:
                    continue
                gemms = sum(n_a[ga] * n_w[gw] for gw, ga in lay.pairs)
                cost = (_gemm_cost(backend, kernel) * gemms
                        + COST["act_operand"] * sum(n_a.values()))
                out.append((cost, lambda k=kernel, b=a_bits, be=backend, c=cond:
                            _planes(lay, c, b, k, be)))
        if len(lay.pairs) == 1:
            for t in _KARATSUBA_BITS:
                out.append((_gemm_cost(backend, "u8s8") * 3 + COST["act_operand"] * 3,
                            lambda t=t, be=backend, c=cond: _karatsuba(lay, c, t, be)))
    for name in RAW_BACKENDS:
        if name in backends:
            cost = COST[name] * len(lay.pairs) + COST["act_operand"] * len(pairs_of_ga)
            out.append((cost, lambda n=name: _raw(lay, n, int8)))
    return out


def plan_gemm(a_ranges, w_groups, pairs=None, *, backends=("ort",) + RAW_BACKENDS,
              int8: Int8Gemm = Int8Gemm(), k: int | None = None, layer: str = "",
              pair_weights=None, bias_max: int = 0
              ) -> tuple[GemmPlan | None, list[GemmPlan]]:
    """The cheapest exact plan for the pair products of a layer.

    ``a_ranges``: ``[(lo, hi)]`` of each activation group; ``w_groups``: each weight group's
    ``(K, O)`` integer matrix; ``pairs``: the ``(gw, ga)`` products needed (default every
    combination); ``backends``: the backends allowed; ``int8``: what onnxruntime's int8 GEMM
    takes (:func:`fpxint_hw.intsim.cpu.int8_gemm`); ``k``: the reduction length (default the
    matrices' rows); ``layer``: the name the rows carry; ``pair_weights``: each pair's lane
    weight ``m_k n_j`` in the layer's sum (default 1) and ``bias_max`` the largest bias
    magnitude, for the bound of the int64 recombination.

    Returns ``(plan, refused)``: the cheapest plan whose every row fits (None when none
    does) and the candidates built and refused on the way (their failing rows say why).
    Candidates are built in the order of their estimated cost; the first that fits wins.
    """
    if pairs is None:
        pairs = [(gw, ga) for gw in range(len(w_groups)) for ga in range(len(a_ranges))]
    k = int(w_groups[0].shape[0]) if k is None else int(k)
    pair_weights = [1] * len(pairs) if pair_weights is None else [int(v) for v in pair_weights]
    lay = _Layer([(int(lo), int(hi)) for lo, hi in a_ranges],
                 [np.asarray(w, dtype=np.int64) for w in w_groups], list(pairs), k, layer,
                 pair_weights, int(bias_max))
    refused = []
    for _, build in sorted(_estimates(lay, int8, backends), key=lambda e: e[0]):
        plan = build()
        if plan is None:
            continue
        if plan.ok:
            return plan, refused
        refused.append(plan)
    return None, refused
