"""Helpers shared by the network tests: the onnxruntime oracle and optional-weight checks."""

import numpy as np
import pytest


def rel_err(out: np.ndarray, ref: np.ndarray) -> float:
    """max |out - ref| / max |ref|: the relative logit error the acceptance bound is about."""
    return float(np.max(np.abs(out.astype(np.float64) - ref)) / np.max(np.abs(ref)))


def ort_run(graph, x: np.ndarray, batch=None) -> np.ndarray:
    """Run ``graph`` exported to ONNX in onnxruntime (CPU, 2 threads)."""
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is the external oracle")
    from fpxint_hw.io.onnx_export import graph_to_onnx

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(graph_to_onnx(graph, batch=batch).SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    return sess.run(None, {graph.input.name: x})[0]


def need_efficientnet_weights():
    """Skip unless EfficientNet-Lite0's real weights can be loaded here."""
    from fpxint_hw.errors import InputError
    from fpxint_hw.models import default_weights
    from fpxint_hw.io.torch_state import torch_available

    try:
        path = default_weights("efficientnet-lite0")
    except InputError as exc:
        pytest.skip(f"EfficientNet-Lite0 weights absent: {exc}")
    if path.suffix == ".pth" and not torch_available():
        pytest.skip("EfficientNet-Lite0 weights are a .pth and torch is not installed "
                    "(pip install 'fpxint-hw[zoo]', or run 'fpxint convert')")
    return path
