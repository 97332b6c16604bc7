"""Per-layer allocation of terms: the cheapest term counts per layer that meet a logit-SQNR
or accuracy target.

Every conv/linear layer gets its own weight term count and every activation tensor (the
network input, each conv/linear output, each residual add) its own term count. The cost is
the work on the array in **lane-MACs**, ``sum over conv/linear layers of MACs x T_w x T_a``
(``T_a`` of the layer's input): a PE computes one lane product per cycle, so cycles scale
with it (:func:`lane_macs`).

The search uses the series' own error: a weight tensor's relative error power at ``t`` terms
is computed exactly from its series, an activation's from its grid step against its
statistics' power, and the network's noise is estimated as their sum. Greedily, the term that
removes the most estimated noise per lane-MAC is added, from one term everywhere to
``max_terms``. The simulator then confirms along that path: the cheapest allocation on it
whose measured figure meets the target (bisection, so a few runs) is the answer, unless a
uniform term count meets it for fewer lane-MACs (then that is).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from ..quant import program as P
from ..spec import SeriesFormat

__all__ = ["Allocation", "allocate", "lane_macs"]

#: Ops whose output is their input's grid: a tensor's terms are set where it is produced.
_SAME_GRID = (P.MaxPool, P.AvgPool, P.GlobalAvgPool, P.Flatten, P.Clamp)


def _positions(prog, q) -> int:
    shape = prog.graph.node(q.node).shape
    return int(np.prod(shape[1:])) if len(shape) == 3 else 1


def _producer(prog, tensor: str) -> str:
    """The layer that set the grid of ``tensor`` (through pools, flatten and clamps)."""
    q = prog.layer(tensor)
    while isinstance(q, _SAME_GRID):
        q = prog.layer(q.inputs[0])
    return q.node


def lane_macs(prog) -> int:
    """``sum_l MACs_l x T_w(l) x T_a(input of l)`` over the program's conv/linear layers."""
    tensors = prog.tensors()
    total = 0
    for q in prog.gemm_layers():
        macs = _positions(prog, q) * q.out_channels * q.reduction
        total += macs * q.w_fmt.terms * tensors[q.inputs[0]].fmt.terms
    return int(total)


@dataclass
class Allocation:
    """The result of :func:`allocate`.

    Members
    -------
    overrides : dict node -> LayerFormats
        Per-layer formats (what ``fpxint simulate --overrides`` reads).
    terms : dict node -> (w_terms or None, out_terms)
        The same as term counts (None: a tensor with no weights).
    lane_macs : int
        Cost of the allocation per input.
    measured : dict
        Its fidelity on the inputs (``logit_sqnr_db``, ``top1_agreement``, ``accuracy``).
    uniform : list of dict
        Every uniform term count T = 1..max_terms: ``terms``, ``lane_macs`` and its fidelity.
    path : list of dict
        The confirmed points of the greedy path: ``lane_macs``, ``estimate_db`` and fidelity.
    met : bool
        Whether the target was met (else the allocation is the best found: max_terms).
    """

    overrides: dict
    terms: dict
    lane_macs: int
    measured: dict
    uniform: list = field(default_factory=list)
    path: list = field(default_factory=list)
    met: bool = True


class _Search:
    """The variables, their error powers and costs for one model; ``uniform[t - 1]`` is the
    program with ``t`` terms everywhere."""

    def __init__(self, graph, bits, scale, uniform):
        from ..graph import fold_batchnorm, folded_batchnorms
        from ..quant.ranges import StatisticalRanges
        from ..series import expand
        self.bits, self.scale, self.max_terms = bits, scale, len(uniform)
        base = uniform[0]
        gemms = base.gemm_layers()
        self.out_layer = base.output_layer.node
        # activation variables: tensors produced by Quantize, conv/linear (not the output), Add
        self.acts = [q.node for q in base.layers
                     if isinstance(q, (P.Quantize, P.Add)) or
                     (isinstance(q, P.GemmOp) and q.node != self.out_layer)]
        self.weights = [q.node for q in gemms]
        folded = fold_batchnorm(graph)
        self.nw = {}
        for q in gemms:
            w = np.asarray(folded.params[folded.node(q.node).weight], np.float64)
            sig = float(np.sum(w * w)) or 1.0
            self.nw[q.node] = [float(np.sum((w - expand(w, SeriesFormat(bits, t, scale,
                                                                             per_channel=True),
                                                        axis=0).reconstruct()) ** 2)) / sig
                               for t in range(1, self.max_terms + 1)]
        stats = StatisticalRanges(graph).stats
        alias = {conv: bn for bn, conv in folded_batchnorms(graph, folded).items()}
        power = {}
        for node in self.acts:
            mu, sd, pre = stats[alias.get(node, node)]
            mu, sd = pre if pre is not None else (mu, sd)
            power[node] = float(np.mean(mu * mu + sd * sd)) or 1.0
        self.na = {n: [] for n in self.acts}
        for prog in uniform:
            for q in prog.layers:
                if q.node in self.na and isinstance(q, (P.Quantize, P.Add, P.GemmOp)):
                    self.na[q.node].append(q.out.unit ** 2 / 12 / power[q.node])
        # cost coefficients: lane-MACs = sum_l macs_l * w_l * a_in(l)
        self.macs = {q.node: _positions(base, q) * q.out_channels * q.reduction for q in gemms}
        self.src = {q.node: _producer(base, q.inputs[0]) for q in gemms}

    def noise(self, w, a):
        return (sum(self.nw[n][w[n] - 1] for n in self.weights)
                + sum(self.na[n][a[n] - 1] for n in self.acts))

    def overrides(self, w, a):
        from ..quant import LayerFormats
        out = {}
        for n in self.acts + [x for x in self.weights if x not in self.acts]:
            wf = SeriesFormat(self.bits, w[n], self.scale, per_channel=True) if n in w else None
            af = SeriesFormat(self.bits, a.get(n, 1), self.scale)
            out[n] = LayerFormats(wf, af)
        return out

    def path(self):
        """The greedy path from one term everywhere: a list of ``(w, a)`` states, each one
        term more than the last where it removes the most estimated noise per lane-MAC."""
        w = {n: 1 for n in self.weights}
        a = {n: 1 for n in self.acts}
        states = [(dict(w), dict(a))]
        while True:
            best, best_score = None, -1.0
            for n, t in w.items():
                if t < self.max_terms:
                    dn = self.nw[n][t - 1] - self.nw[n][t]
                    score = dn / max(self.macs[n] * a[self.src[n]], 1)
                    if score > best_score:
                        best, best_score = (w, n), score
            for m, t in a.items():
                if t < self.max_terms:
                    dn = self.na[m][t - 1] - self.na[m][t]
                    dc = sum(self.macs[n] * w[n] for n, src in self.src.items() if src == m)
                    score = dn / max(dc, 1)
                    if score > best_score:
                        best, best_score = (a, m), score
            if best is None:
                return states
            best[0][best[1]] += 1
            states.append((dict(w), dict(a)))


def allocate(graph, x, ref, *, bits: int = 4, scale: str = "pow2", max_terms: int = 6,
             target_sqnr_db: float | None = None, target_accuracy: float | None = None,
             labels=None, in_range=None, range_rule: str = "mse", batch: int = 50,
             log=None) -> Allocation:
    """The cheapest per-layer term counts on the greedy path that meet the target.

    Parameters
    ----------
    graph : Graph
        Float network (BatchNorms unfolded: their statistics give the ranges).
    x, ref : arrays
        Inputs and the float model's outputs on them (the figures are measured there).
    bits : int, 2..8
        Bits per term of every weight and activation.
    max_terms : int, 1..8
        Most terms of any one tensor.
    target_sqnr_db, target_accuracy : float
        Exactly one: the logit SQNR in dB, or the top-1 accuracy in 0..1 (needs ``labels``).
    log : callable(str), optional
        Called with a line per simulation run.
    """
    from ..intsim import Simulator
    from ..quant import expand_graph
    from .simulate import fidelity
    if (target_sqnr_db is None) == (target_accuracy is None):
        raise InputError("allocate: give exactly one of a target SQNR (dB) or a target "
                         "accuracy")
    if target_accuracy is not None and labels is None:
        raise InputError("allocate: a target accuracy needs labelled inputs (the MNIST "
                         "digits); use a target SQNR for the photos")
    if target_accuracy is not None and not 0 < target_accuracy <= 1:
        raise InputError(f"allocate: target accuracy is a fraction in (0, 1], got "
                         f"{target_accuracy}")
    say = log or (lambda s: None)

    def compile_fn(overrides, terms):
        fw = SeriesFormat(bits, terms, scale, per_channel=True)
        return expand_graph(graph, fw, SeriesFormat(bits, terms, scale), "layer",
                            overrides=overrides, input_range=in_range, range_rule=range_rule)

    def measure(prog):
        sim = Simulator(prog)
        out = np.concatenate([sim.logits(x[i:i + batch]) for i in range(0, len(x), batch)])
        return fidelity(ref, out, labels)

    def meets(fid):
        if target_sqnr_db is not None:
            return fid["logit_sqnr_db"] >= target_sqnr_db
        return fid["accuracy"] >= target_accuracy

    progs = [compile_fn({}, t) for t in range(1, max_terms + 1)]
    search = _Search(graph, bits, scale, progs)
    uniform = []
    for t, prog in enumerate(progs, 1):
        fid = measure(prog)
        uniform.append({"terms": t, "lane_macs": lane_macs(prog), **fid})
        say(f"uniform T={t}: {lane_macs(prog):.3g} lane-MACs, SQNR "
            f"{fid['logit_sqnr_db']:.1f} dB")
    states = search.path()
    confirmed = {}

    def check(i):
        if i not in confirmed:
            w, a = states[i]
            prog = compile_fn(search.overrides(w, a), max_terms)
            fid = measure(prog)
            confirmed[i] = (prog, fid)
            say(f"path step {i}/{len(states) - 1}: {lane_macs(prog):.3g} lane-MACs, SQNR "
                f"{fid['logit_sqnr_db']:.1f} dB")
        return confirmed[i]

    lo, hi = 0, len(states) - 1
    met = meets(check(hi)[1])
    if met:
        while lo < hi:                      # the first state on the path that meets it
            mid = (lo + hi) // 2
            if meets(check(mid)[1]):
                hi = mid
            else:
                lo = mid + 1
    w, a = states[hi]
    prog, fid = check(hi)
    # a uniform count that meets the target for less is also an allocation: never worse
    for u in uniform:
        if meets(u) and u["lane_macs"] < lane_macs(prog):
            t = u["terms"]
            w, a = {n: t for n in search.weights}, {n: t for n in search.acts}
            prog, met = compile_fn(search.overrides(w, a), max_terms), True
            fid = {k: u[k] for k in ("top1_agreement", "logit_sqnr_db", "accuracy")}
            break
    terms = {n: (w.get(n), a.get(n, None)) for n in dict.fromkeys(search.acts + search.weights)}
    path = [{"step": i, "lane_macs": lane_macs(confirmed[i][0]),
             "estimate_db": -10 * math.log10(search.noise(*states[i])), **confirmed[i][1]}
            for i in sorted(confirmed)]
    return Allocation(search.overrides(w, a), terms, lane_macs(prog), fid, uniform, path, met)
