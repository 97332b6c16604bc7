"""External oracles for the tests: small ONNX models run by onnx.reference and onnxruntime.

``../shared/ORACLES.md`` (and the docstrings of the tests that use these) say under which
conditions each oracle is exact; a test stays inside them. Importing this module skips the
importing test module when ``onnx`` is absent.
"""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="onnx is the external oracle")
from onnx import TensorProto, helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

try:
    import onnxruntime as ort
except ImportError:  # pragma: no cover - onnxruntime is a dev dependency
    ort = None

__all__ = ["TensorProto", "helper", "ort", "NP2ONNX", "one_node_model", "graph_model",
           "run_reference", "run_onnxruntime", "cpu_has_vnni"]

#: numpy dtype -> ONNX element type.
NP2ONNX = {np.dtype(np.int8): TensorProto.INT8, np.dtype(np.uint8): TensorProto.UINT8,
           np.dtype(np.int32): TensorProto.INT32, np.dtype(np.int64): TensorProto.INT64,
           np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE}


def one_node_model(op, inputs, attrs, out_type, *, opset: int = 13):
    """A one-node ONNX model; ``inputs`` is a list of (name, array or None); arrays become
    graph inputs so the same model serves any values. Returns ``(model, feed)``."""
    names, vinfos, feed = [], [], {}
    for name, arr in inputs:
        if arr is None:
            names.append("")
            continue
        names.append(name)
        vinfos.append(helper.make_tensor_value_info(name, NP2ONNX[arr.dtype], arr.shape))
        feed[name] = arr
    node = helper.make_node(op, names, ["y"], **attrs)
    y = helper.make_tensor_value_info("y", out_type, None)
    graph = helper.make_graph([node], op, vinfos, [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model, feed


def graph_model(nodes, inputs, output: str, out_type, constants=None, *, opset: int = 13):
    """An ONNX model of ``nodes`` (``helper.make_node`` results): ``inputs`` a list of
    (name, array) graph inputs (the arrays give dtype and shape and form the feed),
    ``constants`` a mapping name -> array of initializers. Returns ``(model, feed)``."""
    vinfos = [helper.make_tensor_value_info(n, NP2ONNX[a.dtype], a.shape) for n, a in inputs]
    inits = [onnx.numpy_helper.from_array(np.asarray(a), n)
             for n, a in (constants or {}).items()]
    graph = helper.make_graph(nodes, "oracle", vinfos,
                              [helper.make_tensor_value_info(output, out_type, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model, dict(inputs)


def run_reference(model, feed):
    """The first output of ``model`` in onnx.reference."""
    return ReferenceEvaluator(model).run(None, feed)[0]


def run_onnxruntime(model, feed):
    """The first output of ``model`` in onnxruntime (CPU, one thread)."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])
    return sess.run(None, feed)[0]


def cpu_has_vnni() -> bool:
    """Whether this CPU has AVX-512 VNNI or AVX-VNNI (onnxruntime's u8 x s8 pairs are then
    exact for any weight, ORACLES.md)."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags
