"""Exact integer GEMM backends for the fast simulator, each used only where proved exact.

``"ort"``: onnxruntime MatMulInteger, uint8 activations (with a zero point) x int8 constant
weights -> int32; used when every weight group satisfies ``|w| <= 64`` (exact even where the
CPU pairs products in 16 bits), activations fit uint8 after the offset, and
``K * 255 * max|w| < 2^31``. ``"f32"`` / ``"f64"``: float BLAS, exact while every partial sum
of magnitudes stays below ``2^24`` / ``2^53`` (proved per layer from the weights).
``"int"``: the Numba int64 kernel, exact below ``2^63``.
"""

from __future__ import annotations

from importlib.util import find_spec

import numpy as np

from ..errors import FormatError, WidthError, missing_tool
from . import kernels

__all__ = ["BACKENDS", "have_ort", "OrtMatMul", "choose_backend"]

#: Backend names; "auto" picks the fastest proved-exact one.
BACKENDS = ("auto", "ort", "f32", "f64", "int")

try:  # optional dependency: the fast int8 path
    import onnxruntime as _ort
except ImportError:  # pragma: no cover
    _ort = None


def _ort_missing() -> tuple[str, str] | None:
    """``(package, install command)`` when the ort backend cannot run, else None."""
    if _ort is None:
        return "onnxruntime", "pip install onnxruntime"
    if find_spec("onnx") is None:                      # OrtMatMul builds its model with onnx
        return "onnx", "pip install onnx"
    return None


def have_ort() -> bool:
    """True when onnxruntime (and onnx, which builds its models) can be imported."""
    return _ort_missing() is None


class OrtMatMul:
    """``a_u8 (M, K) -> (a_u8 - zp) @ w (K, N)`` as int32, with constant int8 ``w``.

    ``zp`` is the uint8 zero point of the activations; one onnxruntime session per instance.
    """

    def __init__(self, w: np.ndarray, zp: int, threads: int):
        from onnx import TensorProto, helper, numpy_helper
        k, n = w.shape
        a = helper.make_tensor_value_info("a", TensorProto.UINT8, [None, k])
        y = helper.make_tensor_value_info("y", TensorProto.INT32, [None, n])
        inits = [numpy_helper.from_array(np.ascontiguousarray(w.astype(np.int8)), "w"),
                 numpy_helper.from_array(np.array(zp, dtype=np.uint8), "zp")]
        node = helper.make_node("MatMulInteger", ["a", "w", "zp"], ["y"])
        graph = helper.make_graph([node], "gemm", [a], [y], initializer=inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        so = _ort.SessionOptions()
        so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = 1
        # no spin-waiting after a run: the Numba kernels that follow need the cores
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._sess = _ort.InferenceSession(model.SerializeToString(), so,
                                           providers=["CPUExecutionProvider"])

    def __call__(self, a_u8: np.ndarray) -> np.ndarray:
        return self._sess.run(None, {"a": a_u8})[0]


def choose_backend(requested: str, a_ranges, w_groups, k: int, *,
                   what: str | None = None) -> str:
    """The backend for a layer whose activation groups lie in ``a_ranges`` ``[(lo, hi)]`` and
    whose weight-group matrices are ``w_groups`` (each ``(K, N)`` int64).

    ``requested`` "auto" returns the fastest backend proved exact; a named backend is
    returned only if it is exact here (tests force each backend). ``what`` names the layer
    in the messages (e.g. ``"layer 'conv1'"``).

    Raises
    ------
    ToolMissingError
        ``requested`` is "ort" and onnxruntime (or onnx) is not installed.
    WidthError
        The named backend is not proved exact here, or (``"auto"``) no backend is: the
        accumulator bound exceeds int64. A ``ValueError``, which the simulator catches to
        fall back from ort.
    FormatError
        ``requested`` is not one of :data:`BACKENDS`.
    """
    if requested not in BACKENDS:
        raise FormatError(f"backend must be one of {', '.join(BACKENDS)}, got {requested!r}")
    miss = _ort_missing() if requested == "ort" else None
    if miss:
        where = "--backend ort" + (f" ({what})" if what else "")
        raise missing_tool(miss[0], miss[1], what=where,
                           reason=f"the ort backend needs {miss[0]}, which is not installed")
    amax = max(max(abs(lo), abs(hi)) for lo, hi in a_ranges)
    absums = [int(np.abs(w).sum(axis=0).max()) if w.size else 0 for w in w_groups]
    wmax = max((int(np.abs(w).max()) if w.size else 0) for w in w_groups)
    bound = max(absums) * amax
    ok = {
        "ort": (have_ort() and wmax <= 64 and k * 255 * 64 < 2 ** 31
                and all((lo >= 0 and hi <= 255) or (lo >= -128 and hi <= 127)
                        for lo, hi in a_ranges)),
        "f32": bound < 2 ** 24,
        "f64": bound < 2 ** 53,
        "int": bound < 2 ** 63,
    }
    what = what or "this layer"
    if requested == "auto":
        for name in ("ort", "f32", "f64", "int"):
            if ok[name]:
                return name
        raise WidthError(f"{what}: no exact GEMM backend: the accumulator bound {bound} "
                         f"exceeds int64; use fewer or narrower terms")
    if not ok[requested]:
        need = {"ort": "max |w| <= 64, activations in uint8 or int8 and "
                       "K * 255 * 64 < 2^31",
                "f32": "bound < 2^24", "f64": "bound < 2^53", "int": "bound < 2^63"}[requested]
        raise WidthError(f"--backend {requested}: not proved exact for {what} (bound {bound}, "
                         f"max |w| {wmax}, K {k}; it needs {need}); use --backend auto")
    return requested


def gemm_int(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Exact int64 ``a @ w`` with the Numba kernel (``a`` int32, ``w`` int64)."""
    out = np.empty((a.shape[0], w.shape[1]), dtype=np.int64)
    kernels.gemm_i64(np.ascontiguousarray(a), np.ascontiguousarray(w), out)
    return out
