"""Accuracy evaluators for sweeps: a real model on its real data through the bit-exact simulator.

An evaluator is a function ``fn(spec, options) -> dict`` where ``spec`` is the sweep point's
:class:`~fpxint_hw.spec.ArraySpec` and ``options`` the ``accuracy`` section of the sweep file
(less ``evaluator``). :func:`simulate` is the default: it compiles the zoo model (``model``,
default ``mnist-resnet`` with its shipped trained weights) for the point's array through
:func:`fpxint_hw.quant.for_array` -- the point's formats, rounding and ``m0_bits`` -- at
``level`` (default ``layer``; per-channel weight scales unless ``per_channel: false``), runs
the integer program with the fast simulator (:class:`fpxint_hw.intsim.Simulator`, through
:func:`fpxint_hw.workflows.simulate.run_simulation`) on the model's built-in inputs (the 1,000 held-out MNIST digits, or the sample photos for the
ImageNet models; ``images`` limits them) and returns:

``accuracy``
    top-1 accuracy against the labels (None where the inputs have no labels: photos);
``top1_agreement``
    share of inputs whose top-1 class equals the float model's;
``logit_sqnr_db``
    SQNR of the dequantized logits against the float logits, dB;
``weight_sqnr_db``
    SQNR of all conv / linear weights (BatchNorm folded) against their series, dB: the
    quantity docs/theory.md bounds;
``float_accuracy``
    the float model's accuracy on the same inputs;
``array_layers``, ``host_layers``
    how many conv/linear layers the array computes as compiled, and the others with the
    reason (they still run, with the same integers, in the simulator);
``m0_bits_min``, ``m0_bits_median``
    significant bits of the requantization multipliers (each layer's largest ``M0``), the
    narrowest layer and the median: below the sweep's ``m0_bits`` where ``acc x M0`` has to
    fit int64 (docs/numerics.md), so a wide format's requantization, not its series, may
    set its error;
``images``, ``model``, ``weights``
    what was run.

``overrides: FILE`` (an override file, e.g. from ``fpxint allocate``) gives per-layer formats;
layers whose formats are not the point's array's run on the host (``host_layers``).
``range_rule`` (``mse`` or ``sigma``) picks the calibration-free activation ranges.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache

import numpy as np

from ..errors import InputError
from ..spec import ArraySpec, SeriesFormat

__all__ = ["simulate", "load_task", "weight_sqnr_db"]


@lru_cache(maxsize=2)
def load_task(model: str, weights: str | None, images: int | None):
    """``(graph, info, x, labels, float logits)`` of a zoo model and its built-in inputs
    (cached per process)."""
    from ..workflows.network import load_inputs, load_network
    from ..float_exec import FloatExecutor
    graph, info = load_network(model, weights)
    x, labels, _ = load_inputs(graph, info, images, None)
    ex = FloatExecutor(graph)
    ref = np.concatenate([ex(x[i:i + 64]) for i in range(0, len(x), 64)])
    return graph, info, x, labels, ref


def weight_sqnr_db(graph, fmt: SeriesFormat) -> float:
    """SQNR (dB) of every conv / linear weight of ``graph`` (BatchNorm folded) against its
    ``fmt`` series, pooled: total signal power over total error power."""
    from ..graph import Conv2d, Linear, fold_batchnorm
    from ..series import expand
    g = fold_batchnorm(graph)
    sig = err = 0.0
    for node in g.nodes:
        if isinstance(node, (Conv2d, Linear)):
            w = np.asarray(g.params[node.weight], np.float64)
            r = expand(w, fmt, axis=0 if fmt.per_channel else None,
                       name=node.weight).reconstruct()
            sig += float(np.sum(w * w))
            err += float(np.sum((w - r) ** 2))
    return float("inf") if err == 0 else float(10 * np.log10(sig / err))


def simulate(spec: ArraySpec, options: dict) -> dict:
    """The default evaluator (see the module docstring)."""
    from ..workflows.network import input_range
    from ..workflows.simulate import run_simulation
    model = options.get("model", "mnist-resnet")
    images = options.get("images")
    graph, info, x, labels, ref = load_task(model, options.get("weights"), images)
    if info is not None and "synthetic" in info.weights.lower() and not options.get("weights"):
        raise InputError(f"accuracy.model {model!r} has synthetic weights only; accuracy on "
                         f"them means nothing. Use mnist-resnet or efficientnet-lite0, or give "
                         f"accuracy.weights")
    per_channel = bool(options.get("per_channel", True))
    overrides = None
    if options.get("overrides"):
        from ..quant.overrides import load_overrides
        overrides = load_overrides(options["overrides"])
    rows, (prog, _, _), _ = run_simulation(
        graph, x, level=options.get("level", "layer"), spec=spec, labels=labels, ref=ref,
        per_term=False, threads=options.get("threads"), in_range=input_range(info),
        per_channel=per_channel, overrides=overrides,
        range_rule=options.get("range_rule", "mse"), label=f"{model} {spec.w_bits}b x{spec.w_terms}")
    row = rows[-1]
    float_acc = None if labels is None else float(np.mean(ref.argmax(1) == labels))
    misfits = dict(prog.target.misfits)
    w_fmt = dataclasses.replace(spec.w_fmt, per_channel=per_channel)
    m0_bits = [int(np.max(q.requant.multiplier)).bit_length()
               for q in prog.gemm_layers() if q.requant is not None]
    return {"accuracy": row["accuracy"], "top1_agreement": row["top1_agreement"],
            "logit_sqnr_db": row["logit_sqnr_db"],
            "weight_sqnr_db": weight_sqnr_db(graph, w_fmt), "float_accuracy": float_acc,
            "array_layers": len(prog.gemm_layers()) - len(misfits), "host_layers": misfits,
            "m0_bits_min": min(m0_bits, default=None),
            "m0_bits_median": None if not m0_bits else int(np.median(m0_bits)),
            "images": int(len(x)), "model": model,
            "weights": options.get("weights") or (info.weights if info else "")}
