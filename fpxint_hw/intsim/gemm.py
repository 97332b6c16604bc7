"""Exact integer GEMM backends for the fast simulator, each used only where proved exact.

``"vnni"``: the Numba ``vpdpbusd`` kernel (:mod:`fpxint_hw.intsim.vnni`), uint8 activation
operands x int8 constant weight operands -> int32, on CPUs with AVX512-VNNI. ``"ort"``:
onnxruntime MatMulInteger, uint8 activation operands x int8 (or uint8) constant weight
operands -> int32, the int8 dot product of the CPU. For both, wider integers are cut into
planes (:mod:`fpxint_hw.intsim.planes`) under the conditions the int8 GEMM keeps exact
(:mod:`fpxint_hw.intsim.cpu`). ``"f32"`` / ``"f64"``: float BLAS on the raw integers, exact
while every partial sum of magnitudes stays below ``2^24`` / ``2^53`` (proved per layer from
the weights). ``"int"``: the Numba int64 kernel, exact below ``2^63``.
"""

from __future__ import annotations

from importlib.util import find_spec

import numpy as np

from ..errors import FormatError, InputError, WidthError, missing_tool
from . import kernels, vnni
from .planes import INT8_BACKENDS, RAW_BACKENDS, GemmPlan, plan_gemm

__all__ = ["BACKENDS", "have_ort", "OrtMatMul", "choose_backend", "plan_layer", "gemm_int"]

#: Backend names; "auto" picks the fastest proved-exact one.
BACKENDS = ("auto",) + INT8_BACKENDS + RAW_BACKENDS

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
    """``a_u8 (M, K) -> (a_u8 - zp) @ w (K, N)`` as int32, with constant integer ``w``.

    ``zp`` is the uint8 zero point of the activations. ``w`` is stored as int8, or with
    ``unsigned`` as uint8 ``w + 128`` with zero point 128 (the uint8 x uint8 kernel); the
    caller proves the values fit. One onnxruntime session per instance.
    """

    def __init__(self, w: np.ndarray, zp: int, threads: int, *, unsigned: bool = False):
        from onnx import TensorProto, helper, numpy_helper
        k, n = w.shape
        a = helper.make_tensor_value_info("a", TensorProto.UINT8, [None, k])
        y = helper.make_tensor_value_info("y", TensorProto.INT32, [None, n])
        w = np.asarray(w, dtype=np.int64)
        stored = (w + 128).astype(np.uint8) if unsigned else w.astype(np.int8)
        inits = [numpy_helper.from_array(np.ascontiguousarray(stored), "w"),
                 numpy_helper.from_array(np.array(zp, dtype=np.uint8), "zp")]
        inputs = ["a", "w", "zp"]
        if unsigned:
            inits.append(numpy_helper.from_array(np.array(128, dtype=np.uint8), "wzp"))
            inputs.append("wzp")
        node = helper.make_node("MatMulInteger", inputs, ["y"])
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


def plan_layer(requested: str, a_ranges, w_groups, pairs=None, *, k: int | None = None,
               what: str | None = None, layer: str = "", pair_weights=None,
               bias_max: int = 0, int8=None) -> GemmPlan:
    """The plan (backend, planes, products) of a layer whose activation groups lie in
    ``a_ranges`` ``[(lo, hi)]`` and whose weight groups are ``w_groups`` (each ``(K, N)``
    int64), for the pair products ``pairs`` (:func:`fpxint_hw.intsim.planes.plan_gemm`).

    ``requested`` "auto" returns the cheapest plan proved exact on any backend; a named
    backend is used only if it is exact here (tests force each backend). ``what`` names the
    layer in messages (e.g. ``"layer 'conv1'"``); ``int8`` overrides the detected int8 GEMM
    conditions (:func:`fpxint_hw.intsim.cpu.int8_gemm`).

    Raises
    ------
    ToolMissingError
        ``requested`` is "ort" and onnxruntime (or onnx) is not installed.
    InputError
        ``requested`` is "vnni" and this CPU cannot run it (:func:`vnni.unavailable`).
    WidthError
        The named backend is not proved exact here, or (``"auto"``) no backend is: the
        accumulator bound exceeds int64. A ``ValueError``.
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
    if requested == "vnni" and vnni.unavailable():
        raise InputError(f"--backend vnni cannot run here: {vnni.unavailable()}; "
                         f"use --backend auto")
    if requested == "auto":
        backends = ((("vnni",) if vnni.unavailable() is None else ())
                    + (("ort",) if have_ort() else ()) + RAW_BACKENDS)
    else:
        backends = (requested,)
    if int8 is None and "ort" in backends:
        from .cpu import int8_gemm
        int8 = int8_gemm()
    kw = {} if int8 is None else {"int8": int8}
    plan, refused = plan_gemm(a_ranges, w_groups, pairs, backends=backends, k=k, layer=layer,
                              pair_weights=pair_weights, bias_max=bias_max, **kw)
    if plan is not None:
        return plan
    what = what or "this layer"
    if requested == "auto":
        bound = next((r.bound for p in refused if p.backend == "int" for r in p.rows), None)
        raise WidthError(f"{what}: no exact GEMM backend: the accumulator bound {bound} "
                         f"exceeds int64; use fewer or narrower terms")
    bad = next((r for p in refused for r in p.rows if not r.ok), None)
    detail = ("no plane split fits" if bad is None else
              f"{bad.node} reaches {bad.bound}, {bad.needed} signed bits of {bad.configured}")
    raise WidthError(f"--backend {requested}: not proved exact for {what} ({detail}); "
                     f"use --backend auto")


def choose_backend(requested: str, a_ranges, w_groups, k: int, *,
                   what: str | None = None, int8=None) -> str:
    """The backend :func:`plan_layer` chooses for every pair of ``w_groups`` x ``a_ranges``
    (same arguments and errors)."""
    return plan_layer(requested, a_ranges, w_groups, k=k, what=what, int8=int8).backend


def gemm_int(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Exact int64 ``a @ w`` with the Numba kernel (``a`` int32, ``w`` int64)."""
    out = np.empty((a.shape[0], w.shape[1]), dtype=np.int64)
    kernels.gemm_i64(np.ascontiguousarray(a), np.ascontiguousarray(w), out)
    return out
