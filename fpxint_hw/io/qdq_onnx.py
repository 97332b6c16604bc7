"""The basis models as a float ONNX graph with QuantizeLinear / DequantizeLinear pairs
(``fpxint export --format qdq``), for tools that import QDQ models.

Layer by layer as the integer program (:class:`~fpxint_hw.quant.QProgram`):

* every activation tensor is a QDQ pair on the program's grid: ``QuantizeLinear`` with scale
  ``unit`` and the tensor's zero point (uint8 / int8, or uint16 / int16 at opset 21 for
  combined integers of 9 to 16 bits), after a ``Clip`` to the grid's real range
  ``unit * (lo - zero_point) .. unit * (hi - zero_point)``;
* a conv / linear layer is its T_w basis models side by side: basis model k is ``Conv`` (or
  ``Gemm``) with weight ``DequantizeLinear(q_k, w_unit m_k)`` (the k-th weight term as int8,
  per output channel), named ``<layer>/basis<k>``; their outputs are added (the AbelianAdd),
  then the real bias;
* adds, pools and clamps are their float ONNX ops between QDQ pairs; the last layer's output
  ``float_output`` is the real-valued program output (what the simulator dequantizes to).

What it keeps exactly: the weight terms (the program's digits), the grids of every activation
(scale, zero point, clamp range) and the basis-model structure. What it does not: the
arithmetic. Convolutions accumulate in float32, scales are float32 roundings of the
program's float64 units, and each requantization is a float division and a round to nearest
even instead of the program's fixed-point ``round_shift(acc * M0, n)`` (with its per-channel
pre-rounding), so a value near a rounding tie can land one step away and the difference
travels on. docs/export.md gives the measured agreement.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from .int_onnx import INPUT_NAME, require_onnx

__all__ = ["qdq_onnx_model", "save_qdq_onnx", "QDQ_OUTPUT"]

#: Name of the graph's real-valued output.
QDQ_OUTPUT = "float_output"


def _qtype(lo: int, hi: int, T):
    """The smallest QuantizeLinear type holding ``[lo, hi]``: ``(TensorProto type, numpy
    dtype, needs opset 21)``, or None beyond 16 bits."""
    for tt, dt, wide in ((T.UINT8, np.uint8, False), (T.INT8, np.int8, False),
                         (T.UINT16, np.uint16, True), (T.INT16, np.int16, True)):
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return tt, dt, wide
    return None


class _QdqWriter:
    def __init__(self, program, onnx):
        from onnx import TensorProto, helper, numpy_helper
        self.p, self.h, self.nh, self.T = program, helper, numpy_helper, TensorProto
        self.tensors = program.tensors()
        self.nodes, self.inits = [], []
        self.wide = False

    def const(self, name, value, dtype) -> str:
        self.inits.append(self.nh.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def node(self, op, inputs, out, **attrs) -> str:
        self.nodes.append(self.h.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def qdq(self, x: str, qt, out: str) -> str:
        """Clip to the grid's real range, then a QuantizeLinear / DequantizeLinear pair."""
        kind = _qtype(qt.lo, qt.hi, self.T)
        if kind is None:
            raise InputError(f"qdq export: tensor {out!r} holds integers in [{qt.lo}, {qt.hi}], "
                             f"wider than the 16 bits QuantizeLinear takes; export it as "
                             f"int-onnx or use fewer terms")
        tt, dt, wide = kind
        self.wide |= wide
        lo, hi = qt.real_range
        x = self.node("Clip", [x, self.const(f"{out}/real_lo", lo, np.float32),
                               self.const(f"{out}/real_hi", hi, np.float32)], f"{out}/clipped")
        scale = self.const(f"{out}/scale", qt.unit, np.float32)
        zp = self.const(f"{out}/zero_point", qt.zero_point, dt)
        q = self.node("QuantizeLinear", [x, scale, zp], f"{out}/q")
        return self.node("DequantizeLinear", [q, scale, zp], out)

    def quantize(self, q):
        self.qdq(INPUT_NAME, q.out, q.name)

    def gemm(self, q):
        conv = q.kind == "conv"
        xin = self.tensors[q.inputs[0]]
        bases = []
        for k, mk in enumerate(q.w_fmt.lane_weights):
            at = f"{q.name}/w{k + 1}"
            o = q.out_channels
            w = self.node("DequantizeLinear", [
                self.const(f"{at}/digits", q.w_digits[k], np.int8),
                self.const(f"{at}/scale", np.asarray(q.w_unit, np.float64) * mk, np.float32),
                self.const(f"{at}/zero_point", np.zeros(o), np.int8)], at, axis=0)
            if conv:
                top, left, bottom, right = q.padding
                bases.append(self.node("Conv", [q.inputs[0], w], f"{q.name}/basis{k + 1}",
                                       kernel_shape=list(q.kernel), strides=list(q.stride),
                                       dilations=list(q.dilation), group=q.groups,
                                       pads=[top, left, bottom, right]))
            else:
                bases.append(self.node("Gemm", [q.inputs[0], w], f"{q.name}/basis{k + 1}",
                                       transB=1))
        acc = bases[0]
        for i, b in enumerate(bases[1:], start=1):
            acc = self.node("Add", [acc, b], f"{q.name}/sum{i}")
        shape = (1, -1, 1, 1) if conv else (1, -1)
        # the program's bias holds -z sum_k w[c, k] for an input zero point z; the float
        # graph computes on real values (z already subtracted), so its bias is the real one
        unit = np.asarray(q.w_unit, np.float64) * xin.unit
        sums = q.w_combined().reshape(q.out_channels, -1).sum(axis=1)
        real_bias = (np.asarray(q.bias, np.float64) + xin.zero_point * sums) * unit
        bias = self.const(f"{q.name}/bias", real_bias.reshape(shape), np.float32)
        acc = self.node("Add", [acc, bias], f"{q.name}/acc")
        if q.requant is None:
            self.node("Identity", [acc], q.name)
        else:
            self.qdq(acc, q.out, q.name)

    def add(self, q):
        self.qdq(self.node("Add", list(q.inputs), f"{q.name}/sum"), q.out, q.name)

    def maxpool(self, q):
        top, left, bottom, right = q.padding
        self.qdq(self.node("MaxPool", [q.inputs[0]], f"{q.name}/pooled",
                           kernel_shape=list(q.kernel), strides=list(q.stride),
                           pads=[top, left, bottom, right]), q.out, q.name)

    def avgpool(self, q):
        top, left, bottom, right = q.padding
        self.qdq(self.node("AveragePool", [q.inputs[0]], f"{q.name}/pooled",
                           kernel_shape=list(q.kernel), strides=list(q.stride),
                           pads=[top, left, bottom, right], count_include_pad=1),
                 q.out, q.name)

    def global_avgpool(self, q):
        self.qdq(self.node("GlobalAveragePool", [q.inputs[0]], f"{q.name}/pooled"), q.out,
                 q.name)

    def clamp(self, q):
        self.qdq(q.inputs[0], q.out, q.name)

    def flatten(self, q):
        self.node("Flatten", [q.inputs[0]], q.name, axis=1)

    def unsupported(self, q):
        raise InputError(f"qdq export: layer {q.name!r} is a {q.kind!r} (graph op "
                         f"{self.p.graph.node(q.node).op!r}), which has no QDQ form; "
                         f"export the integer program instead (int-onnx)")


_WRITERS = {"quantize": _QdqWriter.quantize, "conv": _QdqWriter.gemm,
            "linear": _QdqWriter.gemm, "add": _QdqWriter.add, "maxpool": _QdqWriter.maxpool,
            "avgpool": _QdqWriter.avgpool, "global_avgpool": _QdqWriter.global_avgpool,
            "clamp": _QdqWriter.clamp, "flatten": _QdqWriter.flatten,
            "lookup": _QdqWriter.unsupported, "mul": _QdqWriter.unsupported,
            "concat": _QdqWriter.unsupported, "scale": _QdqWriter.unsupported,
            "pad": _QdqWriter.unsupported, "zero_insert": _QdqWriter.unsupported,
            "upsample": _QdqWriter.unsupported, "slice": _QdqWriter.unsupported,
            "matmul": _QdqWriter.unsupported,
            "softmax": _QdqWriter.unsupported, "layernorm": _QdqWriter.unsupported}
#: Op kinds the QDQ writer handles.
KINDS = tuple(_WRITERS)


def qdq_onnx_model(program):
    """The basis models of ``program`` as a QDQ ``onnx.ModelProto`` (see the module
    docstring): input ``float_input`` (NCHW float32), output ``float_output`` (float32, the
    real-valued program output). Opset 17, or 21 where an activation needs 16-bit QDQ."""
    onnx = require_onnx(f"qdq export of {program.graph.name!r}")
    from onnx import TensorProto, helper
    w = _QdqWriter(program, onnx)
    for q in program.layers:
        _WRITERS[q.kind](w, q)
    w.node("Identity", [program.output], QDQ_OUTPUT)
    graph = program.graph
    x = helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", *graph.input_shape])
    y = helper.make_tensor_value_info(QDQ_OUTPUT, TensorProto.FLOAT, ["N", *graph.output_shape])
    g = helper.make_graph(w.nodes, f"{graph.name} (basis models, QDQ)", [x], [y],
                          initializer=w.inits)
    model = helper.make_model(g, producer_name="fpxint-hw", opset_imports=[
        helper.make_opsetid("", 21 if w.wide else 17)])
    model.ir_version = 10 if w.wide else 8
    return model


def save_qdq_onnx(program, path):
    """Write :func:`qdq_onnx_model` of ``program`` to ``path`` atomically; returns the model."""
    from ..outputs import write_bytes
    model = qdq_onnx_model(program)
    write_bytes(path, model.SerializeToString())
    return model
