"""Load a network and the inputs to run it on: a zoo name or an ONNX file, sample or image files."""

from __future__ import annotations

import numpy as np

from ..errors import InputError

__all__ = ["load_network", "input_range", "load_inputs", "parse_input_shape",
           "token_inputs"]


def parse_input_shape(text: str) -> tuple[int, ...]:
    """``--input-shape NxCxHxW`` (``NxTxF`` for a sequence of T tokens, ``NxF``) as the
    per-sample ``(C, H, W)`` / ``(T, F)`` / ``(F,)``.

    The batch entry ``N`` may be any positive integer or ``N``: a graph is per sample, so it
    is not used. Raises InputError saying what was wrong with ``text``.
    """
    parts = str(text).strip().lower().split("x")
    batch_ok = len(parts) in (2, 3, 4) and (parts[0] == "n" or parts[0].isdigit()
                                         and int(parts[0]) >= 1)
    dims = [int(v) for v in parts[1:] if v.isdigit()]
    if not batch_ok or len(dims) != len(parts) - 1 or min(dims) < 1:
        raise InputError(f"--input-shape {text!r}: expected NxCxHxW, NxTxF or NxF of positive "
                         f"integers, e.g. 1x3x224x224 (the batch N is not used)")
    return tuple(dims)


def load_network(model: str, weights: str | None = None, input_shape=None,
                 fold_bn: bool = False):
    """``(graph, ModelInfo or None)`` for a zoo name, an ONNX file or a graph ``.npz``
    written by fpxint; BatchNorms unfolded (their statistics give the ranges) unless
    ``fold_bn``.

    ``input_shape``: ``--input-shape`` text or a ``(C, H, W)`` tuple sizing an ONNX file's
    symbolic input axes (see :func:`~fpxint_hw.io.onnx_import.onnx_to_graph`).
    """
    from pathlib import Path
    if isinstance(input_shape, str):
        input_shape = parse_input_shape(input_shape)
    path = Path(model)
    suffix = path.suffix.lower()
    if suffix in (".onnx", ".npz") or path.is_file():
        if weights:
            raise InputError(f"--weights {weights}: only zoo models take separate weights; "
                             f"{model} carries its own")
        if input_shape is not None and suffix != ".onnx":
            raise InputError(f"--input-shape applies to .onnx files, not {model}")
        if suffix == ".npz":
            from ..graph import fold_batchnorm
            from ..io.native import load_graph_npz
            g = load_graph_npz(path)
            return (fold_batchnorm(g) if fold_bn else g), None
        from ..io.onnx_import import load_onnx
        return load_onnx(path, fold_bn=fold_bn, input_shape=input_shape), None
    if input_shape is not None:
        raise InputError(f"--input-shape applies to .onnx files; zoo model {model!r} has a "
                         f"fixed input shape")
    from ..models import build_model, get_model_info
    info = get_model_info(model)
    return build_model(model, weights, fold_bn=fold_bn), info


def input_range(info) -> tuple[float, float] | None:
    """Exact real range of the preprocessed input for a zoo model (None if unknown)."""
    if info is None:
        return None
    if info.mean is None:
        return (0.0, 1.0)
    m, s = np.asarray(info.mean), np.asarray(info.std)
    return float(np.min(-m / s)), float(np.max((1 - m) / s))


def load_inputs(graph, info, images: int | None, files):
    """``(x, labels or None, names)``: the image ``files`` preprocessed for ``graph``, or the
    first ``images`` built-in sample inputs (all of them for None)."""
    if files:
        from ..io.images import load_image, preprocess_gray, preprocess_rgb
        c, h, _ = graph.input_shape
        xs = []
        for f in files:
            if c == 1:
                xs.append(preprocess_gray(load_image(f, "L"), size=h))
            else:
                kw = {} if info is None or info.mean is None else dict(mean=info.mean,
                                                                       std=info.std)
                xs.append(preprocess_rgb(load_image(f), size=h,
                                         resize=int(round(h * 256 / 224)), **kw))
        return np.stack(xs).astype(np.float32), None, tuple(str(f) for f in files)
    if graph.input.embedding is not None and info is None:
        return token_inputs(graph, images)
    from ..models import sample_inputs
    kw = {}
    if info is not None:
        kw = dict(task=info.task, mean=info.mean, std=info.std)
    s = sample_inputs(graph.input_shape, limit=images, **kw)
    return s.x, s.labels, s.names


def token_inputs(graph, count: int | None = None, seed: int = 0):
    """``(x, None, names)`` for a graph that takes token ids (an imported ``input_ids``
    model): ``count`` (default 4) sequences of seeded random ids from its whole vocabulary,
    embedded as the graph's input (:meth:`~fpxint_hw.graph.Graph.embed`)."""
    if count is not None and (isinstance(count, bool) or int(count) != count or count < 1):
        raise InputError(f"{count!r} sample inputs asked for; give at least 1")
    n = count or 4
    vocab = graph.params[graph.input.embedding].shape[0]
    ids = np.random.default_rng(seed).integers(0, vocab, (n, graph.input_shape[0]))
    return graph.embed(ids), None, tuple(f"token-ids-{i}" for i in range(n))
