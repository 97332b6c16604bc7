"""Simulate a network bit-exactly and measure its fidelity; check the simulator against golden.

:func:`run_simulation` compiles a graph (for an ``ArraySpec`` through
:func:`fpxint_hw.quant.for_array`, or for explicit formats through
:func:`fpxint_hw.quant.expand_graph`), runs it with the fast simulator for k = 1..T terms and
returns one row of figures per k. :func:`golden_check` recomputes every layer of one input with
the golden model.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

from ..quant import program as P
from ..report import progress
from ..spec import ArraySpec, SeriesFormat

__all__ = ["fidelity", "compile_program", "compile_terms", "run_simulation", "int_outputs",
           "golden_check", "spec_with_terms", "minilm_fidelity", "spearman",
           "MINILM_SENTENCES"]


def fidelity(ref: np.ndarray, got: np.ndarray, labels=None) -> dict:
    """Top-1 agreement, logit SQNR (dB) and accuracy of ``got`` against float ``ref``."""
    from ..series import sqnr_db
    ref = ref.reshape(ref.shape[0], -1)
    got = got.reshape(got.shape[0], -1)
    agree = float(np.mean(ref.argmax(1) == got.argmax(1)))
    acc = None if labels is None else float(np.mean(got.argmax(1) == np.asarray(labels)))
    return {"top1_agreement": agree, "logit_sqnr_db": sqnr_db(ref, got), "accuracy": acc}


def _batched(fn, x, batch, label):
    outs = []
    with progress(x.shape[0], label, "image") as bar:
        for i in range(0, x.shape[0], batch):
            outs.append(fn(x[i:i + batch]))
            bar.update(len(outs[-1]))
    return np.concatenate(outs)


def spec_with_terms(spec: ArraySpec, k: int) -> ArraySpec:
    """The same array with at most ``k`` weight, activation and output terms."""
    return dataclasses.replace(spec, w_terms=min(k, spec.w_terms),
                               a_terms=min(k, spec.a_terms), out_terms=min(k, spec.out_terms))


def compile_program(graph, *, spec: ArraySpec | None = None, spec_name: str | None = None,
                    w_fmt: SeriesFormat | None = None, a_fmt: SeriesFormat | None = None,
                    level: str = "layer", per_channel: bool = True, rounding: str = "rne",
                    multiplier_bits: int = 31, overrides=None, in_range=None,
                    calibration=None, range_rule: str = "mse", range_sigmas: float = 4.0):
    """The expansion of ``graph``: for the array ``spec`` (every format, the rounding and the
    multiplier width from it) or, without a spec, for ``w_fmt`` / ``a_fmt`` and the explicit
    options. Ranges: from ``calibration`` inputs when given, else the calibration-free
    ``range_rule`` (:mod:`fpxint_hw.quant.ranges`). Returns a QProgram (or a TensorExpansion
    for ``level="tensor"`` without a spec).
    """
    from ..quant import expand_graph, for_array
    ranges = dict(input_range=in_range, calibration=calibration, range_rule=range_rule,
                  range_sigmas=range_sigmas)
    if spec is not None:
        return for_array(graph, spec, name=spec_name, level=level, per_channel=per_channel,
                         overrides=overrides, **ranges)
    return expand_graph(graph, w_fmt, a_fmt, level, overrides=overrides, mode=rounding,
                        multiplier_bits=multiplier_bits, **ranges)


def run_simulation(graph, x, w_fmt: SeriesFormat | None = None,
                   a_fmt: SeriesFormat | None = None, level: str = "layer", *,
                   spec: ArraySpec | None = None, spec_name: str | None = None,
                   labels=None, ref=None, batch: int = 8, threads: int | None = None,
                   backend: str = "auto", per_term: bool = True, overrides=None,
                   in_range=None, calibration=None, rounding: str = "rne",
                   multiplier_bits: int = 31, per_channel: bool = True,
                   range_rule: str = "mse", range_sigmas: float = 4.0,
                   label: str = "simulate"):
    """Compile and run ``graph`` on ``x`` for k = 1..T terms; returns ``(rows, last, ref)``.

    With ``spec`` the program is the one that array computes (k < T runs the same array with
    k terms, :func:`spec_with_terms`); otherwise ``w_fmt`` / ``a_fmt`` with ``rounding`` and
    ``multiplier_bits``; activation ranges as :func:`compile_program`. ``rows`` has one dict per k (``w_terms``, ``a_terms``, the fidelity
    figures, ``seconds``); ``last`` is ``(program or TensorExpansion, simulator or None,
    outputs)`` of the full term counts; ``ref`` the float outputs.
    """
    from ..float_exec import FloatExecutor
    from ..intsim import Simulator
    if ref is None:
        ref = _batched(FloatExecutor(graph), x, batch, "float")
    if spec is not None:
        kmax = max(spec.w_terms, spec.a_terms)
    else:
        kmax = max(w_fmt.terms, a_fmt.terms)
    ks = range(1, kmax + 1) if per_term else [kmax]
    rows, last = [], None
    for k in ks:
        t0 = time.perf_counter()
        exp, wt, at = compile_terms(graph, k, spec=spec, spec_name=spec_name, w_fmt=w_fmt,
                                    a_fmt=a_fmt, level=level, per_channel=per_channel,
                                    rounding=rounding, multiplier_bits=multiplier_bits,
                                    overrides=overrides, in_range=in_range,
                                    calibration=calibration, range_rule=range_rule,
                                    range_sigmas=range_sigmas)
        if level == "tensor":
            sim = None
            out = _batched(exp.executor(), x, batch, f"{label} k={k}")
        else:
            sim = Simulator(exp, backend=backend, threads=threads)
            out = _batched(sim.logits, x, batch, f"{label} k={k}")
        rows.append({"w_terms": wt, "a_terms": at, **fidelity(ref, out, labels),
                     "seconds": time.perf_counter() - t0})
        last = (exp, sim, out)
    return rows, last, ref


def compile_terms(graph, k: int | None = None, *, spec: ArraySpec | None = None,
                  spec_name: str | None = None, w_fmt: SeriesFormat | None = None,
                  a_fmt: SeriesFormat | None = None, level: str = "layer",
                  per_channel: bool = True, rounding: str = "rne", multiplier_bits: int = 31,
                  overrides=None, in_range=None, calibration=None, range_rule: str = "mse",
                  range_sigmas: float = 4.0):
    """The program :func:`run_simulation` runs for ``k`` terms (None: the full term counts,
    the program ``fpxint simulate`` reports last and ``fpxint export`` writes).

    Returns ``(program, w_terms, a_terms)``: with ``spec``, the array with at most ``k``
    terms (:func:`spec_with_terms`); otherwise ``w_fmt`` / ``a_fmt`` cut to ``k`` terms.
    """
    if k is None:
        k = (max(spec.w_terms, spec.a_terms) if spec is not None
             else max(w_fmt.terms, a_fmt.terms))
    ranges = dict(in_range=in_range, calibration=calibration, range_rule=range_rule,
                  range_sigmas=range_sigmas)
    if spec is not None:
        sk = spec_with_terms(spec, k)
        exp = compile_program(graph, spec=sk, spec_name=spec_name, level=level,
                              per_channel=per_channel, overrides=overrides, **ranges)
        return exp, sk.w_terms, sk.a_terms
    wf, af = w_fmt.with_terms(min(k, w_fmt.terms)), a_fmt.with_terms(min(k, a_fmt.terms))
    exp = compile_program(graph, w_fmt=wf, a_fmt=af, level=level, rounding=rounding,
                          multiplier_bits=multiplier_bits, overrides=overrides, **ranges)
    return exp, wf.terms, af.terms


def int_outputs(sim, x: np.ndarray, batch: int = 8) -> np.ndarray:
    """The simulator's integer program output for every input of ``x``, in batches (int64,
    NCHW / (N, F)): what ``fpxint simulate --save-outputs`` writes as ``int_output``."""
    return _batched(lambda b: np.asarray(sim(b), dtype=np.int64), x, batch, "int outputs")


def golden_check(program, sim, x, layers=None) -> dict:
    """Layers of the first input of ``x``, recomputed by the golden model from the fast
    simulator's own inputs to each layer: ``{"layers_checked", "mismatches", "first"}``.

    ``layers`` limits the check to those layer names (default: every layer).
    """
    from .. import golden
    _, env = sim.run(x[:1], capture=True)
    tensors = program.tensors()
    checked, bad, first = 0, 0, None
    for q in program.layers:
        if layers is not None and q.name not in layers:
            continue
        if isinstance(q, P.Quantize):
            want = program.quantize_input(x[:1])
        else:
            want = golden.run_layer(q, [env[i] for i in q.inputs], tensors, program.level)
        checked += 1
        if not np.array_equal(np.asarray(want, dtype=np.int64), env[q.name].astype(np.int64)):
            bad += 1
            if first is None:
                diff = np.argwhere(np.asarray(want) != env[q.name])[0]
                first = {"layer": q.name, "element": [int(v) for v in diff]}
    return {"layers_checked": checked, "mismatches": bad, "first": first}


#: Sentences ``fpxint simulate --model minilm`` encodes when no ``--text`` is given: pairs
#: that are close, related and unrelated, so the similarity ranking means something.
MINILM_SENTENCES = (
    "A man is playing a guitar.",
    "Someone is playing an instrument.",
    "A woman is slicing an onion in the kitchen.",
    "A person is cutting vegetables.",
    "The stock market fell sharply today.",
    "Share prices dropped on Wall Street.",
    "A cat sleeps on the sofa.",
    "The weather is sunny and warm.",
)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two equal-length vectors (average ranks for ties)."""
    def ranks(v):
        v = np.asarray(v, dtype=np.float64)
        order = np.argsort(v, kind="mergesort")
        r = np.empty(v.size)
        r[order] = np.arange(v.size)
        for val in np.unique(v):                      # ties share their mean rank
            tie = v == val
            r[tie] = r[tie].mean()
        return r
    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = math.sqrt(float(ra @ ra) * float(rb @ rb))
    return float(ra @ rb / den) if den else 1.0


def _pair_similarities(emb: np.ndarray) -> np.ndarray:
    """Cosines of every sentence pair ``i < j`` of unit-norm embeddings ``(N, F)``."""
    sims = emb @ emb.T
    return sims[np.triu_indices(emb.shape[0], 1)]


def minilm_fidelity(texts, w_fmt: SeriesFormat, a_fmt: SeriesFormat, level: str = "layer",
                    *, model=None, terms=None, check_golden: bool = False,
                    rounding: str = "rne", range_rule: str = "mse",
                    threads: int | None = None) -> dict:
    """The MiniLM sentence encoder as an integer program, sentence by sentence (one graph per
    length): per term count ``k`` (``terms``, default 1..T), the mean and least cosine of
    each integer embedding with the float one and the Spearman rank agreement of the
    sentence-pair similarities. ``level`` ``"tensor"`` runs the series weights in float.

    With ``check_golden``, every tensor of the first sentence at the full term count is
    recomputed by the golden model (``{"layers_checked", "mismatches", "first"}``).
    Returns ``{"rows": [...], "golden_check": ... or None, "tokens": [T per sentence]}``.
    """
    from ..float_exec import FloatExecutor
    from ..intsim import Simulator
    from ..models.minilm import embed_tokens, load_minilm, mean_pool_normalize, tokenize
    from ..quant import expand_graph
    model = load_minilm() if model is None else model
    ids = tokenize(list(texts))
    xs = [embed_tokens(i, model.weights)[None] for i in ids]
    ref = np.stack([mean_pool_normalize(FloatExecutor(model.graph(x.shape[1]))(x)[0])
                    for x in xs])
    full = max(w_fmt.terms, a_fmt.terms)
    rows, check = [], None
    for k in (terms or range(1, full + 1)):
        t0 = time.perf_counter()
        wf, af = w_fmt.with_terms(min(k, w_fmt.terms)), a_fmt.with_terms(min(k, a_fmt.terms))
        emb, error = [], None
        for si, x in enumerate(xs):
            g = model.graph(x.shape[1])
            try:
                prog = expand_graph(g, wf, af, level, mode=rounding, range_rule=range_rule)
            except ValueError as exc:             # a width this format cannot prove
                error = str(exc)
                break
            if level == "tensor":
                hidden = prog.executor()(x)[0]
            else:
                sim = Simulator(prog, threads=threads)
                hidden = prog.dequantize_output(sim(x))[0]
                if check_golden and si == 0 and k == full:
                    check = golden_check(prog, sim, x)
            emb.append(mean_pool_normalize(hidden.astype(np.float64)))
        row = {"w_terms": wf.terms, "a_terms": af.terms, "error": error,
               "seconds": time.perf_counter() - t0}
        if error is None:
            emb = np.stack(emb)
            cos = np.sum(emb * ref, axis=1) / np.linalg.norm(emb, axis=1)
            row.update(mean_cosine=float(cos.mean()), min_cosine=float(cos.min()),
                       spearman=spearman(_pair_similarities(ref), _pair_similarities(emb)))
        rows.append(row)
    return {"rows": rows, "golden_check": check, "tokens": [int(x.shape[1]) for x in xs]}
