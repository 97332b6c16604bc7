"""``fpxint run``: float inference of a zoo model or an ONNX file on images or built-in samples.

Prints the top-5 classes (with ImageNet names for 1000-class models) of every input, or the
held-out accuracy for the MNIST model on its built-in digits. ``--json`` writes the same as
JSON.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from ..errors import FormatError, InputError
from ..float_exec import FloatExecutor
from ..graph import Graph
from ..report import format_table, write_json
from ..workflows.network import load_network

from . import add_input_option, add_input_shape_option, add_weights_option, positive_int

__all__ = ["register", "prepare_inputs", "classify"]

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def register(subparsers) -> None:
    """Add the ``run`` subcommand."""
    p = subparsers.add_parser(
        "run", help="float inference of a model on images or its built-in samples",
        description="Run a network in float32 with fpxint's executor. Prints the top-5 "
                    "classes per input (ImageNet names for 1000-class models), or the "
                    "held-out accuracy for mnist-resnet on its built-in digits.")
    from ..models import model_names
    p.add_argument("--model", required=True, metavar="NAME|FILE",
                   help=f"zoo model ({', '.join(model_names())}; minilm with --text), an "
                        f".onnx file, or a graph .npz written by fpxint")
    add_weights_option(p)
    add_input_shape_option(p)
    add_input_option(p)
    p.add_argument("--text", action="append", metavar="SENTENCE",
                   help="a sentence for a text model (minilm); repeat for more: prints each "
                        "embedding and their cosine similarities")
    p.add_argument("--json", metavar="OUT", help="also write the results as JSON")
    p.add_argument("--limit", type=positive_int, metavar="N",
                   help="use only the first N built-in samples")
    p.add_argument("--keep-bn", action="store_true",
                   help="keep BatchNorm nodes instead of folding them into the convolutions")
    p.set_defaults(func=_run)


def _task(graph: Graph, info) -> str:
    if info is not None:
        return info.task
    if graph.output_shape == (1000,) and graph.input_shape[:1] == (3,):
        return "imagenet"
    if graph.input_shape == (1, 28, 28) and graph.output_shape == (10,):
        return "mnist"
    return "generic"


def prepare_inputs(graph: Graph, info, files=None, limit=None):
    """The input batch for ``graph``: preprocessed ``files``, or the built-in samples.

    Returns a :class:`~fpxint_hw.models.Samples`.
    """
    from ..io.images import load_image, preprocess_gray, preprocess_rgb
    from ..models import Samples, sample_inputs

    shape = graph.input_shape
    mean = (info.mean if info is not None and info.mean else _IMAGENET_MEAN)
    std = (info.std if info is not None and info.std else _IMAGENET_STD)
    if not files:
        return sample_inputs(shape, mean=mean, std=std, limit=limit)
    if len(shape) != 3 or shape[0] not in (1, 3) or shape[1] != shape[2]:
        raise InputError(f"--input: model {graph.name!r} takes inputs of shape {shape}, not "
                         f"square images (1 or 3 channels)")
    xs = []
    for f in files:
        if shape[0] == 3:
            xs.append(preprocess_rgb(load_image(f, "RGB"), size=shape[1],
                                     resize=int(round(shape[1] * 256 / 224)), mean=mean, std=std))
        else:
            xs.append(preprocess_gray(load_image(f, "L"), size=shape[1]))
    return Samples(np.stack(xs), tuple(str(f) for f in files), None, None, "files")


def classify(graph: Graph, x: np.ndarray, batch: int | None = None) -> np.ndarray:
    """Float logits of ``graph`` for ``x`` (N, *input_shape), run in batches; (N, classes)."""
    ex = FloatExecutor(graph)
    if batch is None:
        batch = max(1, min(256, int(2e10 // max(1, graph.macs()))))
    return np.concatenate([ex(x[i:i + batch]) for i in range(0, len(x), batch)])


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _recorded_accuracy(info) -> float | None:
    """The held-out accuracy recorded in the ``.json`` beside the default weights, if any."""
    from ..errors import FpxintError
    from ..models import default_weights

    if info is None or info.weights_file is None:
        return None
    try:
        meta = default_weights(info.name).with_suffix(".json")
        return float(json.loads(meta.read_text())["heldout_accuracy_fpxint_float"])
    except (FpxintError, OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _run(args: argparse.Namespace) -> int:
    from ..data import imagenet_classes
    from ..models import MODELS

    zoo = MODELS.get(args.model)
    if args.text or (zoo is not None and zoo.task == "text"):
        from .run_text import run_text
        return run_text(args, zoo)

    if args.limit is not None and args.limit < 1:
        raise FormatError(f"--limit must be >= 1, got {args.limit}")
    graph, info = load_network(args.model, args.weights, args.input_shape,
                               fold_bn=not args.keep_bn)
    task = _task(graph, info)
    samples = prepare_inputs(graph, info, args.input, args.limit)
    t0 = time.perf_counter()
    logits = classify(graph, samples.x)
    dt = time.perf_counter() - t0
    if logits.ndim != 2:
        raise InputError(f"model {graph.name!r}: output shape {graph.output_shape} is not a "
                         f"vector of class scores")
    probs = _softmax(logits)
    names = imagenet_classes() if logits.shape[1] == 1000 else None
    k = min(5, logits.shape[1])
    top = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    if info is not None and args.weights is None and "synthetic" in info.weights:
        print(f"note: {info.name} runs on {info.weights}; its classes mean nothing "
              f"(give --weights for real ones)")
    print(f"model {graph.name} ({args.model}): input {graph.input_shape}, output "
          f"{graph.output_shape}, {graph.num_params():,} parameters; {len(samples.x)} "
          f"{samples.kind} in {dt:.2f} s ({len(samples.x) / dt:.1f} per s)")
    report = {"model": args.model, "graph": graph.name, "task": task,
              "input_shape": list(graph.input_shape), "inputs": samples.kind,
              "seconds": dt, "results": []}
    for i, name in enumerate(samples.names):
        entry = {"input": name, "top": [
            {"class": int(c), "name": names[c] if names else str(int(c)),
             "prob": float(probs[i, c])} for c in top[i]]}
        if samples.labels is not None:
            entry["label"] = int(samples.labels[i])
        if samples.classes is not None:
            entry["expected_classes"] = list(samples.classes[i])
            entry["top1_ok"] = bool(top[i, 0] in samples.classes[i])
            ranks = [r + 1 for r, c in enumerate(top[i]) if c in samples.classes[i]]
            entry["expected_rank"] = ranks[0] if ranks else None
        report["results"].append(entry)
    if samples.labels is not None:
        pred = logits.argmax(axis=1)
        correct = int((pred == samples.labels).sum())
        acc = correct / len(pred)
        report["accuracy"] = acc
        rec = _recorded_accuracy(info) if samples.kind == "digits" else None
        report["recorded_accuracy"] = rec
        print(f"held-out accuracy: {100 * acc:.2f} % ({correct}/{len(pred)})"
              + (f"; recorded when trained: {100 * rec:.2f} %" if rec is not None else ""))
    else:
        for e in report["results"]:
            mark = ""
            if "expected_rank" in e:
                r = e["expected_rank"]
                mark = (f"  (a class naming what the photo shows is at rank {r})" if r else
                        "  (no class naming what the photo shows is in the top 5)")
            print(f"\n{e['input']}{mark}")
            rows = [(t["name"], t["class"], f"{t['prob'] * 100:.1f} %") for t in e["top"]]
            print(format_table(("class name", "class", "prob"), rows))
    if args.json:
        write_json(args.json, report)
    return 0
