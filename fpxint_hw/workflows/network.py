"""Load a network and the inputs to run it on: a zoo name or an ONNX file, sample or image files."""

from __future__ import annotations

import numpy as np

from ..errors import InputError

__all__ = ["load_network", "input_range", "load_inputs"]


def load_network(model: str, weights: str | None = None):
    """``(unfolded graph, ModelInfo or None)`` for a zoo name or an ONNX file."""
    if model.lower().endswith(".onnx"):
        from ..io.onnx_import import load_onnx
        if weights:
            raise InputError("--weights applies to zoo models; an ONNX file carries its own")
        return load_onnx(model, fold_bn=False), None
    from ..models import build_model, get_model_info
    info = get_model_info(model)
    return build_model(model, weights, fold_bn=False), info


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
    from ..models import sample_inputs
    kw = {}
    if info is not None:
        kw = dict(task=info.task, mean=info.mean, std=info.std)
    s = sample_inputs(graph.input_shape, limit=images, **kw)
    return s.x, s.labels, s.names
