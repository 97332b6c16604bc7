"""ONNX import: an ONNX model file or ModelProto as a :class:`~fpxint_hw.graph.Graph`.

Supported ops (2-D, float32): Conv (any stride, padding incl. auto_pad, dilation, groups),
BatchNormalization (inference), Relu, Clip, MaxPool, AveragePool, GlobalAveragePool and
ReduceMean over (H, W), Gemm, MatMul with a constant weight, Flatten, and Reshape / Squeeze
where they only flatten ``(C, H, W)`` or ``(C, 1, 1)`` to a vector; the activations
HardSigmoid, HardSwish, Sigmoid, LeakyRelu and PRelu (one slope or one per channel);
Add (of two tensors of one shape; of a constant: the bias of the MatMul or Scale right
before it, else a :class:`~fpxint_hw.graph.Scale`), Sub of a constant, Mul (of two tensors:
equal shapes or a ``(C, 1, 1)`` gate; of a constant: a Scale), Div by a constant (a Scale
by its reciprocal), Concat along the channel axis and Pad in constant mode over H and W.
A step-1 Slice of an activation along axis 1 (channels of ``(N, C, H, W)``, tokens of
``(N, T, F)``) and a Gather of one constant index on the token axis (``x[:, 0]``) are a
:class:`~fpxint_hw.graph.Slice`.
A constant of Mul/Add/Sub/Div/PRelu must hold one value or one per channel.
Identity and Dropout are skipped. Weights must be initializers or Constant nodes.

Transformer encoder layers (:mod:`fpxint_hw.io.onnx_sequence`): an ``(N, T, F)`` input is a
sequence; LayerNormalization, Gelu, Softmax, attention's head Reshape/Transpose and MatMul of
two per-head tensors; decomposed LayerNorm and erf GELU chains are fused first
(:mod:`fpxint_hw.io.onnx_patterns`).

Shape computations as exporters write them (``x.view(x.size(0), -1)``, ``F.pad``) are folded
at import time: Shape of an activation (its batch taken as 1), and Gather, Unsqueeze, Squeeze,
Concat, Cast, Slice, Reshape, Transpose, ConstantOfShape, Constant and integer Add, Sub, Mul,
Div whose inputs are all constants.

The model needs one float input of shape ``(N, C, H, W)`` or ``(N, F)`` whose batch axis is
symbolic or 1, or token ids ``(N, T)`` that index an embedding table (the embedding step
then stays on the host: :class:`~fpxint_hw.graph.Input` ``embedding`` and ``addend``; any
other integer input is fixed, segment ids to 0 and a mask to 1), and one output. Other ops
whose inputs are all constants are evaluated by ``onnx.reference``. Symbolic spatial (or
feature, or token) axes need ``input_shape`` (``--input-shape 1x3xHxW`` on the command
line); fixed axes must agree with it.

Nodes keep the ONNX node name (or, when a node has none, its output tensor's name);
parameters keep their initializer names. Any other op raises InputError naming the file,
the node and the op.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from ..errors import InputError, missing_tool
from ..graph import (MAX_TENSOR_ELEMENTS, Add, AvgPool, BatchNorm, Clip, Concat, Conv2d,
                     Flatten, GlobalAvgPool, Graph, HardSigmoid, HardSwish, Input, LeakyRelu,
                     Linear, MaxPool, Mul, Node, Pad, PRelu, Relu, Scale, Sigmoid, Slice, Upsample,
                     ZeroInsert, channels, fold_batchnorm)
from .onnx_patterns import constant_node_value, fuse_decomposed
from .onnx_sequence import SequenceOps

__all__ = ["load_onnx", "onnx_to_graph", "read_onnx", "SUPPORTED_ONNX_OPS"]

#: Ops evaluated by ``onnx.reference`` at import time, on constant inputs only (the
#: attention-mask and position-id computations around token ids).
REFERENCE_FOLDED_OPS = ("Range", "Where", "Equal", "Less", "LessOrEqual", "Greater",
                        "GreaterOrEqual", "And", "Or", "Not", "IsNaN", "IsInf", "Expand",
                        "GatherElements", "Neg", "ReduceSum", "ReduceMax", "ReduceMin",
                        "CumSum", "Tile", "Min", "Max", "Abs")

#: ONNX op types the importer understands.
SUPPORTED_ONNX_OPS = ("Conv", "BatchNormalization", "Relu", "Clip", "MaxPool", "AveragePool",
                      "GlobalAveragePool", "ReduceMean", "Add", "Sub", "Mul", "Div", "Gemm",
                      "MatMul", "Flatten", "Reshape", "Squeeze", "Identity", "Dropout",
                      "Constant", "HardSigmoid", "HardSwish", "Sigmoid", "LeakyRelu", "PRelu",
                      "Concat", "Pad", "ConvTranspose", "Resize", "Shape", "Gather",
                      "Unsqueeze", "Cast", "Slice", "Transpose", "ConstantOfShape",
                      "Softmax", "LayerNormalization", "Gelu") + REFERENCE_FOLDED_OPS

#: Ops evaluated at import time when every input is a constant (shape computations).
FOLDABLE_OPS = ("Gather", "Unsqueeze", "Squeeze", "Concat", "Cast", "Slice", "Reshape",
                "Transpose", "ConstantOfShape", "Identity", "Add", "Sub", "Mul", "Div")

#: Ops that only take part in shape computations: an activation input is refused.
_CONST_ONLY_OPS = ("Shape", "Gather", "Unsqueeze", "Cast", "Slice", "Transpose",
                   "ConstantOfShape")


#: The oldest ONNX opset whose operators the importer reads as defined (Clip's and Pad's
#: bounds are inputs from opset 11 on); the newest is the installed onnx package's.
MIN_OPSET = 11

def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def read_onnx(path) -> Any:
    """Parse and check the ONNX file at ``path``; returns its ``onnx.ModelProto``.

    Raises InputError naming the file when it is missing, truncated, not ONNX, or fails
    ``onnx.checker``.
    """
    try:
        import onnx
    except ImportError:
        raise missing_tool("onnx", "pip install onnx", what=str(path),
                           reason="reading ONNX needs the 'onnx' package") from None
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file")
    try:
        model = onnx.load(path)
    except Exception as exc:  # protobuf DecodeError, OSError for external data, ...
        raise InputError(f"{path}: not a readable ONNX model ({_first_line(exc)})") from None
    if not model.HasField("graph") or not model.graph.node:
        raise InputError(f"{path}: not an ONNX model (no graph nodes)")
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        raise InputError(f"{path}: invalid ONNX model ({_first_line(exc)})") from None
    newest = onnx.defs.onnx_opset_version()
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx") and not MIN_OPSET <= imp.version <= newest:
            raise InputError(f"{path}: ONNX opset {imp.version}; the importer reads opsets "
                             f"{MIN_OPSET}..{newest} (onnx {onnx.__version__}): convert the "
                             f"model with onnx.version_converter")
    return model


def load_onnx(path, *, fold_bn: bool = True, input_shape=None) -> Graph:
    """The network in the ONNX file at ``path`` as a Graph (BatchNorms folded unless told);
    ``input_shape`` ``(C, H, W)``, ``(T, F)`` or ``(F,)`` sizes symbolic input axes (see
    :func:`onnx_to_graph`)."""
    return onnx_to_graph(read_onnx(path), source=os.fspath(path), fold_bn=fold_bn,
                         input_shape=input_shape)


class _Importer:
    def __init__(self, model, source: str):
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.model, self.source = model, source
        g = model.graph
        self.consts: dict[str, np.ndarray] = {
            t.name: numpy_helper.to_array(t) for t in g.initializer}
        self.onnx_nodes, added = fuse_decomposed(g.node, self.consts)
        self.consts.update(added)
        self.seq = SequenceOps(self)
        self.transposed: dict[str, str] = {}     # W.T folded -> the initializer W
        self.alias: dict[str, str] = {}          # ONNX tensor name -> our node name
        self.nodes: list[Node] = []
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.params: dict[str, np.ndarray] = {}
        self.names: set[str] = set()
        self.done: set[int] = set()              # ONNX nodes already taken in (by id)
        self.nan_tests: dict[str, str] = {}      # IsNaN(x) of an activation -> x
        self.embedded: str | None = None         # the Input of token ids, if any
        self.addend: np.ndarray | None = None    # ... and the (T, F) rows added to it
        self.uses: dict[str, int] = {}
        for n in self.onnx_nodes:
            for i in n.input:
                self.uses[i] = self.uses.get(i, 0) + 1
        for o in g.output:
            self.uses[o.name] = self.uses.get(o.name, 0) + 1

    # -- helpers ---------------------------------------------------------------------------

    def fail(self, onode, what: str) -> InputError:
        name = onode.name or (onode.output[0] if onode.output else "?")
        return InputError(f"{self.source}: node {name!r} ({onode.op_type}): {what}")

    def attrs(self, onode) -> dict[str, Any]:
        out = {}
        for a in onode.attribute:
            v = self.helper.get_attribute_value(a)
            out[a.name] = v.decode() if isinstance(v, bytes) else v
        return out

    def tensor(self, onode, name: str) -> str:
        """Our node name for the ONNX activation tensor ``name``."""
        if name in self.alias:
            return self.alias[name]
        if self.seq.is_view(name):
            raise self.seq.view_error(onode, name)
        if name in self.consts:
            raise self.fail(onode, f"input {name!r} is a constant, expected an activation")
        raise self.fail(onode, f"input {name!r} is not produced by any earlier node")

    def const(self, onode, name: str, what: str) -> np.ndarray:
        if name not in self.consts:
            raise self.fail(onode, f"{what} {name!r} must be a constant (initializer), "
                                   f"weights computed at run time are not supported")
        return self.consts[name]

    def param(self, onode, name: str, what: str, value: np.ndarray | None = None) -> str:
        arr = self.const(onode, name, what) if value is None else value
        if not np.issubdtype(arr.dtype, np.floating):
            raise self.fail(onode, f"{what} {name!r} has dtype {arr.dtype}, expected float")
        arr = arr.astype(np.float32, copy=False)
        if name in self.params and not np.array_equal(self.params[name], arr):
            name = self.fresh(f"{name}.{onode.op_type}")
        self.params[name] = arr
        return name

    def fresh(self, base: str) -> str:
        name, k = base, 1
        while name in self.names or name in self.params:
            name, k = f"{base}_{k}", k + 1
        return name

    def node_name(self, onode) -> str:
        name = onode.name or onode.output[0]
        return name if name not in self.names else self.fresh(onode.output[0])

    def emit(self, onode, node: Node) -> None:
        shp = node.infer_shape([self.shapes[i] for i in node.inputs], self.params)
        self.nodes.append(node)
        self.names.add(node.name)
        self.shapes[node.name] = tuple(shp)
        self.alias[onode.output[0]] = node.name

    def window(self, onode, a: dict, in_shape, kernel, dilation=(1, 1)):
        """(stride, pads) of a Conv/pool from its attributes (auto_pad resolved)."""
        strides = tuple(a.get("strides", (1, 1)))
        auto = a.get("auto_pad", "NOTSET")
        if len(kernel) != 2 or len(strides) != 2:
            raise self.fail(onode, f"only 2-D windows are supported, got kernel {kernel}")
        if auto in ("NOTSET", ""):
            pads = tuple(a.get("pads", (0, 0, 0, 0)))
        elif auto == "VALID":
            pads = (0, 0, 0, 0)
        elif auto in ("SAME_UPPER", "SAME_LOWER"):
            pads = [0, 0, 0, 0]
            for ax in range(2):
                size, k, s, d = in_shape[1 + ax], kernel[ax], strides[ax], dilation[ax]
                out = -(-size // s)
                total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
                small, big = total // 2, total - total // 2
                pads[ax], pads[2 + ax] = (small, big) if auto == "SAME_UPPER" else (big, small)
            pads = tuple(pads)
        else:
            raise self.fail(onode, f"auto_pad={auto!r} is not supported")
        if len(pads) != 4:
            raise self.fail(onode, f"pads {pads} is not 2-D (top, left, bottom, right)")
        return strides, pads

    def check_ceil(self, onode, a, in_shape, kernel, strides, pads):
        if not a.get("ceil_mode", 0):
            return
        for ax in range(2):
            span = in_shape[1 + ax] + pads[ax] + pads[2 + ax] - kernel[ax]
            if span % strides[ax]:
                raise self.fail(onode, "ceil_mode=1 changes the output size here; only "
                                       "floor mode is supported")

    # -- ops -------------------------------------------------------------------------------

    def convert(self, onode) -> None:
        op, a = onode.op_type, self.attrs(onode)
        if op not in SUPPORTED_ONNX_OPS or onode.domain not in ("", "ai.onnx"):
            raise self.fail(onode, f"unsupported op {op!r} (supported: "
                                   f"{', '.join(SUPPORTED_ONNX_OPS)})")
        if op == "Constant":
            self.consts[onode.output[0]] = self.constant_value(onode, a)
            return
        if op == "Shape":
            self.consts[onode.output[0]] = self.shape_value(onode, a)
            return
        ins = [i for i in onode.input if i]
        constant = bool(ins) and all(i in self.consts for i in ins)
        if op == "IsNaN" and not constant:              # the guard of Where(IsNaN(x), 0, x)
            self.nan_tests[onode.output[0]] = onode.input[0]
            return
        if op == "Where" and not constant and onode.input[0] in self.nan_tests:
            self.nan_guard(onode)
            return
        if op in REFERENCE_FOLDED_OPS and not constant:
            act = next(i for i in ins if i not in self.consts)
            raise self.fail(onode, f"input {act!r} is an activation; {op} is only supported "
                                   f"in computations on constants")
        if constant and op not in FOLDABLE_OPS:        # any other op on constants alone
            for name, value in zip(onode.output, self.reference_fold(onode)):
                self.consts[name] = value
            return
        if op in FOLDABLE_OPS and constant:
            out = self.fold(onode, op, a, [self.consts[i] if i else None for i in onode.input])
            self.consts[onode.output[0]] = out
            if op == "Transpose" and out.ndim == 2 and ins[0] in self.consts:
                self.transposed[onode.output[0]] = ins[0]     # a MatMul keeps its name
            return
        if self.seq.convert(onode, a):
            return
        if op == "Slice" and onode.input[0] not in self.consts:
            self.emit(onode, self.slice(onode, self.tensor(onode, onode.input[0])))
            return
        if op == "Gather" and onode.input[0] not in self.consts and ins[1] in self.consts:
            self.emit(onode, self.gather_token(onode, a, self.tensor(onode, onode.input[0])))
            return
        if op in _CONST_ONLY_OPS:
            act = next(i for i in ins if i not in self.consts)
            raise self.fail(onode, f"input {act!r} is an activation; {op} is only supported "
                                   f"in shape computations on constants")
        if op in ("Add", "Sub", "Mul", "Div") and any(i in self.consts for i in onode.input):
            self.const_arith(onode)
            return
        if op in ("Identity", "Dropout"):
            self.alias[onode.output[0]] = self.tensor(onode, onode.input[0])
            if op == "Dropout" and len(onode.input) > 2 and onode.input[2]:
                if bool(np.asarray(self.const(onode, onode.input[2], "training_mode"))):
                    raise self.fail(onode, "training_mode=true is not supported")
            return
        name = self.node_name(onode)
        x = self.tensor(onode, onode.input[0]) if op not in ("MatMul",) else None
        if op == "Conv":
            wname = onode.input[1]
            w = self.const(onode, wname, "weight")
            if w.ndim != 4:
                raise self.fail(onode, f"weight {wname!r} has shape {w.shape}; only 2-D "
                                       f"convolutions are supported")
            dil = tuple(a.get("dilations", (1, 1)))
            strides, pads = self.window(onode, a, self.shapes[x], w.shape[2:], dil)
            bias = (self.param(onode, onode.input[2], "bias")
                    if len(onode.input) > 2 and onode.input[2] else None)
            node = Conv2d(name=name, inputs=(x,), weight=self.param(onode, wname, "weight"),
                          bias=bias, stride=strides, padding=pads, dilation=dil,
                          groups=int(a.get("group", 1)))
        elif op == "BatchNormalization":
            if a.get("training_mode", 0):
                raise self.fail(onode, "training_mode=1 is not supported")
            names = [self.param(onode, t, w) for t, w in
                     zip(onode.input[1:5], ("scale", "bias", "mean", "var"))]
            node = BatchNorm(name=name, inputs=(x,), weight=names[0], bias=names[1],
                             mean=names[2], var=names[3], eps=float(a.get("epsilon", 1e-5)))
        elif op == "Relu":
            node = Relu(name=name, inputs=(x,))
        elif op == "Clip":
            lo, hi = a.get("min"), a.get("max")
            if len(onode.input) > 1 and onode.input[1]:
                lo = float(np.asarray(self.const(onode, onode.input[1], "min")).reshape(()))
            if len(onode.input) > 2 and onode.input[2]:
                hi = float(np.asarray(self.const(onode, onode.input[2], "max")).reshape(()))
            if lo is None and hi is None:
                self.alias[onode.output[0]] = x
                return
            if hi is None and lo == 0.0:
                node = Relu(name=name, inputs=(x,))
            elif lo is None or hi is None or not (np.isfinite(lo) and np.isfinite(hi)):
                raise self.fail(onode, f"Clip with one open bound (min={lo}, max={hi}) is not "
                                       f"supported")
            else:
                node = Clip(name=name, inputs=(x,), lo=lo, hi=hi)
        elif op in ("MaxPool", "AveragePool"):
            kernel = tuple(a.get("kernel_shape", ()))
            if any(d != 1 for d in a.get("dilations", (1, 1))):
                raise self.fail(onode, f"dilations {a['dilations']} are not supported")
            if a.get("storage_order", 0):
                raise self.fail(onode, "storage_order=1 is not supported")
            strides, pads = self.window(onode, a, self.shapes[x], kernel)
            self.check_ceil(onode, a, self.shapes[x], kernel, strides, pads)
            if op == "MaxPool":
                node = MaxPool(name=name, inputs=(x,), kernel=kernel, stride=strides,
                               padding=pads)
            else:
                node = AvgPool(name=name, inputs=(x,), kernel=kernel, stride=strides,
                               padding=pads,
                               count_include_pad=bool(a.get("count_include_pad", 0)))
        elif op == "GlobalAveragePool":
            node = GlobalAvgPool(name=name, inputs=(x,))
        elif op == "ReduceMean":
            axes = a.get("axes")
            if axes is None and len(onode.input) > 1 and onode.input[1]:
                axes = [int(v) for v in np.asarray(self.const(onode, onode.input[1], "axes"))]
            shp = self.shapes[x]
            if len(shp) != 3 or axes is None or sorted(int(v) % 4 for v in axes) != [2, 3]:
                raise self.fail(onode, f"only a ReduceMean over H and W of (N, C, H, W) is "
                                       f"supported, got axes {axes} on {('N',) + shp}")
            if not a.get("keepdims", 1):
                pooled = self.fresh(f"{name}.pool")
                self.emit(onode, GlobalAvgPool(name=pooled, inputs=(x,)))
                x = pooled
                node = Flatten(name=name, inputs=(x,))
            else:
                node = GlobalAvgPool(name=name, inputs=(x,))
        elif op == "Add":
            node = Add(name=name, inputs=(x, self.tensor(onode, onode.input[1])))
        elif op == "Mul":
            node = Mul(name=name, inputs=(x, self.tensor(onode, onode.input[1])))
        elif op in ("Sub", "Div"):
            raise self.fail(onode, f"{op} of two activations is not supported (only "
                                   f"{'x - c' if op == 'Sub' else 'x / c'} with a constant c)")
        elif op == "HardSigmoid":
            node = HardSigmoid(name=name, inputs=(x,), alpha=float(a.get("alpha", 0.2)),
                               beta=float(a.get("beta", 0.5)))
        elif op == "HardSwish":
            node = HardSwish(name=name, inputs=(x,))
        elif op == "Sigmoid":
            node = Sigmoid(name=name, inputs=(x,))
        elif op == "LeakyRelu":
            node = LeakyRelu(name=name, inputs=(x,), alpha=float(a.get("alpha", 0.01)))
        elif op == "PRelu":
            sname = onode.input[1]
            self.const(onode, sname, "slope")
            slope = self.channel_values(onode, sname, x, "slope")
            node = PRelu(name=name, inputs=(x,), slope=self.param(onode, sname, "slope", slope))
        elif op == "Concat":
            rank = len(self.shapes[x]) + 1
            axis = int(a.get("axis", 1))
            if not -rank <= axis < rank or axis % rank != 1:
                raise self.fail(onode, f"only a Concat along the channel axis 1 of "
                                       f"{('N',) + self.shapes[x]} is supported, got "
                                       f"axis={axis}")
            node = Concat(name=name, inputs=tuple(self.tensor(onode, i) for i in onode.input))
        elif op == "Pad":
            node = self.pad(onode, a, name, x)
        elif op == "ConvTranspose":
            node = self.conv_transpose(onode, a, name, x)
        elif op == "Resize":
            node = self.resize(onode, a, name, x)
        elif op == "Gemm":
            if a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
                raise self.fail(onode, f"only Gemm with transA=0, alpha=beta=1 is supported, "
                                       f"got {a}")
            wname = onode.input[1]
            w = self.const(onode, wname, "weight")
            if w.ndim != 2:
                raise self.fail(onode, f"weight {wname!r} has shape {w.shape}, expected 2-D")
            weight = (self.param(onode, wname, "weight") if a.get("transB", 0)
                      else self.param(onode, wname, "weight", np.ascontiguousarray(w.T)))
            bias = None
            if len(onode.input) > 2 and onode.input[2]:
                b = np.asarray(self.const(onode, onode.input[2], "bias"))
                fout = self.params[weight].shape[0]
                if b.size not in (1, fout):
                    raise self.fail(onode, f"bias {onode.input[2]!r} has shape {b.shape}, "
                                           f"expected ({fout},)")
                bias = self.param(onode, onode.input[2], "bias",
                                  np.broadcast_to(b.reshape(-1), (fout,)).copy())
            node = Linear(name=name, inputs=(x,), weight=weight, bias=bias)
        elif op == "MatMul":
            xin, wname = onode.input
            x = self.tensor(onode, xin)
            w = self.const(onode, wname, "weight")
            if w.ndim != 2:
                raise self.fail(onode, f"weight {wname!r} has shape {w.shape}, expected 2-D")
            if wname in self.transposed:                     # MatMul(x, Transpose(W))
                src = self.transposed[wname]
                weight = self.param(onode, src, "weight", self.consts[src])
            else:
                weight = self.param(onode, wname, "weight", np.ascontiguousarray(w.T))
            node = Linear(name=name, inputs=(x,), weight=weight)
        elif op == "Flatten":
            if a.get("axis", 1) != 1:
                raise self.fail(onode, f"only axis=1 is supported, got axis={a.get('axis')}")
            node = self.flatten(onode, name, x)
            if node is None:
                return
        elif op == "Reshape":
            tgt = [int(v) for v in np.asarray(self.const(onode, onode.input[1], "shape"))]
            flat = int(np.prod(self.shapes[x]))
            if not (len(tgt) == 2 and tgt[1] in (-1, flat) and tgt[0] in (0, -1, 1)):
                raise self.fail(onode, f"only a Reshape to (N, {flat}) is supported, got "
                                       f"shape {tgt}")
            node = self.flatten(onode, name, x)
            if node is None:
                return
        elif op == "Squeeze":
            axes = a.get("axes")
            if axes is None and len(onode.input) > 1 and onode.input[1]:
                axes = [int(v) for v in np.asarray(self.const(onode, onode.input[1], "axes"))]
            shp = self.shapes[x]
            rank = len(shp) + 1
            axes = sorted({int(v) % rank for v in axes}) if axes is not None else None
            if len(shp) != 3 or shp[1:] != (1, 1) or axes not in (None, [2, 3]):
                raise self.fail(onode, f"only a Squeeze of (N, C, 1, 1) to (N, C) is "
                                       f"supported, got input {('N',) + shp} axes {axes}")
            node = self.flatten(onode, name, x)
        else:  # pragma: no cover - SUPPORTED_ONNX_OPS and the branches agree
            raise self.fail(onode, f"unsupported op {op!r}")
        self.emit(onode, node)

    def flatten(self, onode, name, x) -> Node | None:
        if len(self.shapes[x]) == 1:
            self.alias[onode.output[0]] = x
            return None
        return Flatten(name=name, inputs=(x,))

    def constant_value(self, onode, a) -> np.ndarray:
        """The tensor of a Constant node (any of its value attributes)."""
        value = constant_node_value(onode)
        if value is not None:
            return value
        raise self.fail(onode, f"only Constant value, value_float(s) and value_int(s) are "
                               f"supported, got {sorted(a)}")

    def shape_value(self, onode, a) -> np.ndarray:
        """Shape of a tensor known at import time: an activation's is ``(1, *shape)`` (the
        batch taken as 1; a Reshape only accepts it as the batch entry)."""
        src = onode.input[0]
        if src in self.consts:
            full = np.array(np.shape(self.consts[src]), np.int64)
        elif self.seq.is_view(src):
            full = np.array(self.seq.shape_of(src), np.int64)
        else:
            full = np.array((1,) + self.shapes[self.tensor(onode, src)], np.int64)
        start, end = a.get("start", 0), a.get("end")
        return full[start:end]

    def reference_fold(self, onode) -> list[np.ndarray]:
        """The outputs of ``onode`` on its constant inputs, computed by ``onnx.reference``
        (the mask and position computations exporters write around token ids)."""
        from onnx import TensorProto, helper
        from onnx.reference import ReferenceEvaluator
        feeds = {i: np.asarray(self.consts[i]) for i in onode.input if i}
        graph = helper.make_graph(
            [onode], "fold",
            [helper.make_tensor_value_info(i, helper.np_dtype_to_tensor_dtype(v.dtype),
                                           v.shape) for i, v in feeds.items()],
            [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None)
             for o in onode.output])
        opset = next((o.version for o in self.model.opset_import if o.domain in ("", "ai.onnx")),
                     MIN_OPSET)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        try:
            out = ReferenceEvaluator(model).run(None, feeds)
        except Exception as exc:                      # onnx.reference's own errors
            hint = ""
            if self.embedded is not None:             # e.g. a table shorter than the ids
                t = self.shapes[self.embedded][0]
                hint = f"; does the model take {t} tokens? (--input-shape 1xT)"
            raise self.fail(onode, f"cannot evaluate it on its constant inputs: "
                                   f"{_first_line(exc)}{hint}") from None
        for v in out:
            if np.size(v) > MAX_TENSOR_ELEMENTS:
                raise self.fail(onode, f"a constant of shape {np.shape(v)} is too large")
        return [np.asarray(v) for v in out]

    def fold(self, onode, op: str, a: dict, vals: list) -> np.ndarray:
        """``op`` evaluated on constant inputs ``vals`` (None for an omitted optional one)."""
        def ints(v):
            return [int(t) for t in np.asarray(v).reshape(-1)]

        d = np.asarray(vals[0])
        try:
            if op == "Gather":
                return np.take(d, np.asarray(vals[1], np.int64), axis=int(a.get("axis", 0)))
            if op in ("Unsqueeze", "Squeeze"):
                axes = a.get("axes")
                if axes is None and len(vals) > 1 and vals[1] is not None:
                    axes = ints(vals[1])
                if op == "Squeeze":
                    return np.squeeze(d, None if axes is None
                                      else tuple(int(v) % d.ndim for v in axes))
                rank = d.ndim + len(axes)
                for ax in sorted(int(v) % rank for v in axes):
                    d = np.expand_dims(d, ax)
                return d
            if op == "Concat":
                return np.concatenate([np.asarray(v) for v in vals], axis=int(a["axis"]))
            if op == "Cast":
                return d.astype(self.helper.tensor_dtype_to_np_dtype(int(a["to"])))
            if op == "Slice":
                starts, ends = ints(vals[1]), ints(vals[2])
                axes = (ints(vals[3]) if len(vals) > 3 and vals[3] is not None
                        else list(range(len(starts))))
                steps = (ints(vals[4]) if len(vals) > 4 and vals[4] is not None
                         else [1] * len(starts))
                index = [slice(None)] * d.ndim
                for s0, e0, ax, st in zip(starts, ends, axes, steps):
                    index[ax % d.ndim] = slice(s0, e0, st)
                return d[tuple(index)]
            if op == "Reshape":
                tgt = ints(vals[1])
                if not a.get("allowzero", 0):
                    tgt = [d.shape[k] if v == 0 else v for k, v in enumerate(tgt)]
                return d.reshape(tgt)
            if op == "Transpose":
                return np.transpose(d, a.get("perm"))
            if op == "ConstantOfShape":
                shape = ints(d)
                if int(np.prod(shape)) > MAX_TENSOR_ELEMENTS:
                    raise self.fail(onode, f"a constant of shape {shape} is too large")
                fill = (self.numpy_helper.to_array(a["value"]) if "value" in a
                        else np.zeros(1, np.float32))
                return np.full(shape, fill.reshape(-1)[0], dtype=fill.dtype)
            if op == "Identity":
                return d
            b = np.asarray(vals[1])
            if op == "Add":
                return d + b
            if op == "Sub":
                return d - b
            if op == "Mul":
                return d * b
            if np.issubdtype(d.dtype, np.integer):      # ONNX integer Div truncates
                return np.trunc(d.astype(np.float64) / b).astype(d.dtype)
            return d / b
        except InputError:
            raise
        except Exception as exc:
            raise self.fail(onode, f"cannot evaluate it on its constant inputs "
                                   f"({_first_line(exc)})") from None

    def channel_values(self, onode, cname: str, x: str, what: str) -> np.ndarray:
        """Constant ``cname`` as a ``(1,)`` or ``(C,)`` array: what broadcasts against the
        activation ``x`` (N, C, ...) with one value, or one value per channel (per feature
        ``(F,)`` of a ``(N, T, F)`` sequence)."""
        c = np.asarray(self.consts[cname])
        shp = self.shapes[x]
        rank = len(shp) + 1
        per_channel = ((1, shp[-1]) if len(shp) == 2 else
                       (shp[0],) + (1,) * (rank - 2))
        if c.ndim <= rank:
            if c.size == 1:
                return c.reshape(1)
            if (1,) * (rank - c.ndim) + c.shape == (1,) + per_channel:
                return c.reshape(channels(shp))
        raise self.fail(onode, f"{what} {cname!r} of shape {c.shape} does not broadcast per "
                               f"channel over {('N',) + shp}; only one value or one per "
                               f"channel {per_channel} is supported")

    def const_arith(self, onode) -> None:
        """Add/Sub/Mul/Div of an activation and a constant: a bias of the Linear or Scale
        right before it, or a Scale node."""
        op = onode.op_type
        i0, i1 = onode.input
        const_first = i0 in self.consts
        t, c = (i1, i0) if const_first else (i0, i1)
        x = self.tensor(onode, t)
        raw = self.consts[c]
        if op == "Add" and x == self.embedded and self.uses.get(t, 0) == 1 and \
                self.add_to_embedding(np.asarray(raw)):
            self.alias[onode.output[0]] = x            # the host adds it (Input.addend)
            return
        if not np.issubdtype(np.asarray(raw).dtype, np.floating):
            raise self.fail(onode, f"constant {c!r} has dtype {np.asarray(raw).dtype}, "
                                   f"expected float")
        vals = self.channel_values(onode, c, x, "constant").astype(np.float32)
        name = self.node_name(onode)
        if op == "Div" and const_first:
            raise self.fail(onode, f"a constant divided by an activation is not supported "
                                   f"(only x / c)")
        if op in ("Add", "Sub") and not (op == "Sub" and const_first):
            bias = vals if op == "Add" else -vals
            if self.merge_bias(onode, t, x, c if op == "Add" else f"{name}.bias", bias):
                return
        self.emit(onode, self.const_scale(onode, x, c, vals, const_first))

    def nan_guard(self, onode) -> None:
        """``Where(IsNaN(x), 0, x)`` (attention probabilities of a row that masks every
        key): ``x`` itself, as no row is masked here and the softmax of finite scores holds
        no NaN."""
        cond, zero, x = onode.input
        if self.nan_tests[cond] != x or zero not in self.consts or np.any(self.consts[zero]):
            raise self.fail(onode, "only Where(IsNaN(x), 0, x) is supported on activations")
        if self.seq.is_view(x):                         # per-head probabilities
            self.seq.views[onode.output[0]] = self.seq.views[x]
        else:
            self.alias[onode.output[0]] = self.tensor(onode, x)

    def add_to_embedding(self, value: np.ndarray) -> bool:
        """Add the float constant ``value`` to the token Input's addend if it broadcasts to
        its ``(1, T, F)`` values (True), else leave it (False)."""
        t, f = self.shapes[self.embedded]
        if not np.issubdtype(value.dtype, np.floating) or value.ndim > 3:
            return False
        try:
            rows = np.broadcast_to(value, (1, t, f)).reshape(t, f).astype(np.float64)
        except ValueError:
            if value.ndim >= 2 and value.shape[-1] == f and value.shape[-2] not in (1, t):
                raise InputError(f"node {self.embedded!r}: the model adds "
                                 f"{value.shape[-2]} rows (positions) to {t} tokens; give "
                                 f"at most {value.shape[-2]} tokens (--input-shape "
                                 f"1x{value.shape[-2]})") from None
            return False
        self.addend = rows if self.addend is None else self.addend + rows
        return True

    def const_scale(self, onode, x: str, c: str, vals: np.ndarray,
                    const_first: bool) -> Scale:
        """The Scale node of Add/Sub/Mul/Div (``onode``) of our tensor ``x`` and constant
        ``c`` of values ``vals`` (float32 ``(1,)`` or per channel)."""
        op, name = onode.op_type, self.node_name(onode)
        ones = np.ones(1, np.float32)
        if op == "Mul":
            weight, bias = self.param(onode, c, "constant", vals), None
        elif op == "Div":
            recip = (1.0 / vals.astype(np.float64)).astype(np.float32)
            if not np.all(np.isfinite(recip)):
                raise self.fail(onode, f"divisor {c!r} holds a zero")
            weight, bias = self.param(onode, f"{name}.weight", "divisor", recip), None
        elif op == "Add":
            weight = self.param(onode, f"{name}.weight", "scale", ones)
            bias = self.param(onode, c, "constant", vals)
        elif const_first:                                   # c - x
            weight = self.param(onode, f"{name}.weight", "scale", -ones)
            bias = self.param(onode, c, "constant", vals)
        else:                                               # x - c
            weight = self.param(onode, f"{name}.weight", "scale", ones)
            bias = self.param(onode, f"{name}.bias", "constant", -vals)
        return Scale(name=name, inputs=(x,), weight=weight, bias=bias)

    def merge_bias(self, onode, t: str, x: str, bname: str, b: np.ndarray) -> bool:
        """Make ``b`` the bias of the Linear (MatMul) or Scale node that produced ``t``
        when it has none and nothing else reads it; False when there is no such node."""
        last = self.nodes[-1] if self.nodes else None
        if (last is None or x != last.name or not isinstance(last, (Linear, Scale))
                or last.bias is not None or self.uses.get(t, 0) != 1):
            return False
        if isinstance(last, Linear):
            b = np.broadcast_to(b, (channels(self.shapes[x]),)).copy()
        self.nodes[-1] = dataclasses.replace(last, bias=self.param(onode, bname, "bias", b))
        self.alias[onode.output[0]] = last.name
        return True

    def slice(self, onode, x: str) -> Slice:
        """A step-1 Slice of an activation along axis 1 (channels of (N, C, H, W), tokens of
        (N, T, F)); other axes may only be sliced whole."""
        ins = list(onode.input) + [""] * 5
        shp = (1,) + self.shapes[x]
        rank = len(shp)

        def ints(i, what):
            return [int(v) for v in np.asarray(self.const(onode, ins[i], what)).reshape(-1)]

        starts, ends = ints(1, "starts"), ints(2, "ends")
        axes = ints(3, "axes") if ins[3] else list(range(len(starts)))
        steps = ints(4, "steps") if ins[4] else [1] * len(starts)
        if not len(starts) == len(ends) == len(axes) == len(steps):
            raise self.fail(onode, f"starts {starts}, ends {ends}, axes {axes} and steps "
                                   f"{steps} differ in length")
        start, stop = 0, shp[1]
        for b, e, ax, st in zip(starts, ends, axes, steps):
            if not -rank <= ax < rank:
                raise self.fail(onode, f"axis {ax} is out of range for {('N',) + shp[1:]}")
            ax %= rank
            if st != 1:
                raise self.fail(onode, f"step {st} on axis {ax}: only step-1 slices of "
                                       f"activations are supported")
            size = shp[ax]
            b = min(max(b + size if b < 0 else b, 0), size)
            e = min(max(e + size if e < 0 else e, 0), size)
            if ax == 1 and len(shp) in (3, 4):
                start, stop = b, e
            elif (b, e) != (0, size):
                raise self.fail(onode, f"slice {b}:{e} of axis {ax} of {('N',) + shp[1:]}: "
                                       f"only the channel axis of (N, C, H, W) or the token "
                                       f"axis of (N, T, F) may be sliced")
        if stop <= start:
            raise self.fail(onode, f"slice {start}:{stop} of axis 1 is empty")
        return Slice(name=self.node_name(onode), inputs=(x,), start=start, stop=stop)

    def gather_token(self, onode, a: dict, x: str) -> Slice:
        """``x[:, i]`` of an (N, T, F) sequence: a Gather of one constant index on axis 1."""
        idx = np.asarray(self.consts[onode.input[1]])
        shp = self.shapes[x]
        axis = int(a.get("axis", 0))
        if len(shp) != 2 or axis % 3 != 1 or idx.ndim != 0 or not np.issubdtype(
                idx.dtype, np.integer):
            raise self.fail(onode, f"only a Gather of one scalar index on the token axis 1 of "
                                   f"(N, T, F) is supported on an activation, got indices "
                                   f"{idx.tolist()} on axis {axis} of {('N',) + shp}")
        i = int(idx)
        i = i + shp[0] if i < 0 else i
        if not 0 <= i < shp[0]:
            raise self.fail(onode, f"index {int(idx)} is out of range for {shp[0]} tokens")
        return Slice(name=self.node_name(onode), inputs=(x,), start=i, stop=i + 1, squeeze=True)

    def pad(self, onode, a: dict, name: str, x: str) -> Pad:
        """A constant-mode Pad over H and W of an (N, C, H, W) activation."""
        mode = a.get("mode", "constant")
        if mode != "constant":
            raise self.fail(onode, f"mode={mode!r} is not supported; only mode='constant' "
                                   f"padding is")
        ins = list(onode.input) + [""] * 4
        if ins[1]:
            pads = [int(v) for v in np.asarray(self.const(onode, ins[1], "pads")).reshape(-1)]
        else:
            pads = [int(v) for v in a.get("pads", ())]
        value = float(a.get("value", 0.0))
        if ins[2]:
            cv = np.asarray(self.const(onode, ins[2], "constant_value"))
            value = float(cv.reshape(-1)[0]) if cv.size else 0.0
        shp = self.shapes[x]
        rank = len(shp) + 1
        if rank != 4:
            raise self.fail(onode, f"only a Pad of an (N, C, H, W) map is supported, got "
                                   f"{('N',) + shp}")
        axes = (list(range(rank)) if not ins[3] else
                [int(v) % rank for v in np.asarray(self.const(onode, ins[3], "axes"))])
        if len(pads) != 2 * len(axes):
            raise self.fail(onode, f"pads {pads} do not match the {len(axes)} padded axes")
        full = [0] * (2 * rank)
        for j, ax in enumerate(axes):
            full[ax], full[rank + ax] = pads[j], pads[len(axes) + j]
        begin, end = full[:rank], full[rank:]
        if begin[:2] != [0, 0] or end[:2] != [0, 0]:
            raise self.fail(onode, f"pads {pads} pad the batch or channel axis; only H and W "
                                   f"pads are supported")
        if min(full) < 0:
            raise self.fail(onode, f"negative pads {pads} (cropping) are not supported")
        return Pad(name=name, inputs=(x,), padding=(begin[2], begin[3], end[2], end[3]),
                   value=value)


    def conv_transpose(self, onode, a: dict, name: str, x: str):
        """ConvTranspose as the convolution it equals: ``stride - 1`` zeros between the input
        pixels (:class:`ZeroInsert`), ``d (k - 1) - p`` of padding either side (plus
        ``output_padding`` after), and a stride-1 :class:`Conv2d` of the spatially flipped
        kernel with in and out channels swapped per group. A 1x1 depthwise ConvTranspose of
        ones without bias is a plain ZeroInsert (our export writes one so)."""
        wname = onode.input[1]
        w = np.asarray(self.const(onode, wname, "weight"), dtype=np.float32)
        shp = self.shapes[x]
        if w.ndim != 4 or len(shp) != 3:
            raise self.fail(onode, f"only 2-D transposed convolutions of an (N, C, H, W) map "
                                   f"are supported, got weight {w.shape} on {('N',) + shp}")
        g = int(a.get("group", 1))
        cin, cout_g, kh, kw = w.shape
        if cin != shp[0] or cin % g:
            raise self.fail(onode, f"weight {wname!r} {w.shape} does not fit {shp[0]} input "
                                   f"channels in {g} groups")
        if a.get("auto_pad", "NOTSET") not in ("NOTSET", "") or "output_shape" in a:
            raise self.fail(onode, "auto_pad and output_shape are not supported; give pads "
                                   "and output_padding")
        stride = tuple(a.get("strides", (1, 1)))
        dil = tuple(a.get("dilations", (1, 1)))
        pads = tuple(a.get("pads", (0, 0, 0, 0)))
        extra = tuple(a.get("output_padding", (0, 0)))
        has_bias = len(onode.input) > 2 and onode.input[2]
        if (kh, kw) == (1, 1) and g == cin and cout_g == 1 and np.all(w == 1) and not has_bias \
                and not any(pads) and not any(extra):
            return ZeroInsert(name=name, inputs=(x,), stride=stride)
        spread = self.fresh(f"{name}.zeros")
        self.emit(onode, ZeroInsert(name=spread, inputs=(x,), stride=stride))
        conv_pads = []
        for ax, k in ((0, kh), (1, kw)):
            reach = dil[ax] * (k - 1)
            before, after = reach - pads[ax], reach - pads[2 + ax] + extra[ax]
            if before < 0 or after < 0:
                raise self.fail(onode, f"pads {pads} exceed the kernel's reach {reach} "
                                       f"(cropping); not supported")
            conv_pads.append((before, after))
        (pt, pb), (pl, pr) = conv_pads
        flipped = (w[:, :, ::-1, ::-1].reshape(g, cin // g, cout_g, kh, kw)
                   .transpose(0, 2, 1, 3, 4).reshape(g * cout_g, cin // g, kh, kw))
        bias = self.param(onode, onode.input[2], "bias") if has_bias else None
        return Conv2d(name=name, inputs=(spread,), weight=self.param(
                          onode, wname, "weight", np.ascontiguousarray(flipped)),
                      bias=bias, padding=(pt, pl, pb, pr), dilation=dil, groups=g)

    def resize(self, onode, a: dict, name: str, x: str) -> Upsample:
        """Resize that repeats each pixel an integer number of times: mode nearest, with
        integer scales (or sizes), and a coordinate mode whose index map is ``i // s``."""
        shp = self.shapes[x]
        if len(shp) != 3:
            raise self.fail(onode, f"only a Resize of an (N, C, H, W) map is supported, got "
                                   f"{('N',) + shp}")
        mode = a.get("mode", "nearest")
        if mode != "nearest":
            raise self.fail(onode, f"mode={mode!r} is not supported; only nearest-neighbour "
                                   f"upsampling by integer factors is")
        ins = list(onode.input) + [""] * 4
        if ins[2]:
            scales = [float(v) for v in np.asarray(self.const(onode, ins[2], "scales"))]
        elif ins[3]:
            sizes = [int(v) for v in np.asarray(self.const(onode, ins[3], "sizes"))]
            full = (1,) + shp
            scales = [s / f for s, f in zip(sizes, full)]
        else:
            raise self.fail(onode, "neither scales nor sizes are given")
        if len(scales) != 4 or scales[:2] != [1.0, 1.0] or any(
                s < 1 or s != int(s) for s in scales[2:]):
            raise self.fail(onode, f"scales {scales}: only integer upsampling of H and W is "
                                   f"supported")
        factors = (int(scales[2]), int(scales[3]))
        coord = a.get("coordinate_transformation_mode", "half_pixel")
        rounding = a.get("nearest_mode", "round_prefer_floor")
        for size, s in zip(shp[1:], factors):
            want = np.arange(size * s) // s
            got = _nearest_indices(size, s, coord, rounding)
            if got is None or not np.array_equal(got, want):
                raise self.fail(onode, f"coordinate_transformation_mode={coord!r} with "
                                       f"nearest_mode={rounding!r} does not repeat each pixel "
                                       f"{s} times; not supported")
        return Upsample(name=name, inputs=(x,), scale=factors)


def _nearest_indices(size: int, s: int, coord: str, rounding: str):
    """The input index of each output pixel of an ONNX nearest Resize by integer ``s`` (None
    for a mode not handled here)."""
    i = np.arange(size * s, dtype=np.float64)
    if coord == "asymmetric":
        orig = i / s
    elif coord in ("half_pixel", "pytorch_half_pixel"):
        orig = (i + 0.5) / s - 0.5
    elif coord == "align_corners":
        orig = i * (size - 1) / max(size * s - 1, 1)
    else:
        return None
    if rounding == "floor":
        idx = np.floor(orig)
    elif rounding == "ceil":
        idx = np.ceil(orig)
    elif rounding == "round_prefer_floor":
        idx = np.where(orig - np.floor(orig) == 0.5, np.floor(orig), np.round(orig))
    elif rounding == "round_prefer_ceil":
        idx = np.where(orig - np.floor(orig) == 0.5, np.ceil(orig), np.round(orig))
    else:
        return None
    return np.clip(idx, 0, size - 1).astype(np.int64)


def _input_dims(source: str, inp, dims, input_shape, layout=None) -> tuple[int, ...]:
    """Per-sample input shape: the model's fixed axes, symbolic ones from ``input_shape``
    (``layout`` names the axes, by default by their number)."""
    per = dims[1:]
    layout = layout or {3: "CHW", 2: "TF"}.get(len(per), "F")
    given = None
    if input_shape is not None:
        try:
            given = tuple(input_shape)
        except TypeError:
            given = None
        if (given is None or len(given) != len(per)
                or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1
                       for v in given)):
            raise InputError(f"{source}: input {inp.name!r} is (N, {', '.join(layout)}); "
                             f"input_shape must be {len(per)} positive integers "
                             f"({', '.join(layout)}), got {input_shape!r}")
    hint = "x".join(["1"] + [str(d.dim_value) if d.HasField("dim_value") and d.dim_value >= 1
                             else ax for d, ax in zip(per, layout)])
    shape = []
    for k, d in enumerate(per, 1):
        fixed = int(d.dim_value) if d.HasField("dim_value") and d.dim_value >= 1 else None
        if given is not None:
            if fixed is not None and fixed != int(given[k - 1]):
                raise InputError(f"{source}: input {inp.name!r} axis {k} ({layout[k - 1]}) is "
                                 f"fixed at {fixed} in the model; the input shape given has "
                                 f"{int(given[k - 1])}")
            shape.append(int(given[k - 1]))
        elif fixed is None:
            raise InputError(f"{source}: input {inp.name!r} axis {k} ({layout[k - 1]}) is "
                             f"symbolic ({d.dim_param or '?'}); pass --input-shape {hint} "
                             f"(input_shape= in Python) to give its size")
        else:
            shape.append(fixed)
    return tuple(shape)


def onnx_to_graph(model, *, source: str = "<onnx model>", fold_bn: bool = True,
                  input_shape=None) -> Graph:
    """Convert an ``onnx.ModelProto`` to a Graph; ``source`` names it in error messages.

    ``input_shape`` — ``(C, H, W)``, ``(T, F)`` or ``(F,)``, without the batch axis — sizes
    the input's symbolic axes (a model exported with dynamic H and W, or tokens); axes the
    model fixes must agree with it. Without it every axis but the batch must be fixed.
    """
    imp = _Importer(model, source)
    g = model.graph
    inputs = [i for i in g.input if i.name not in imp.consts]
    if any(i.type.tensor_type.elem_type in _INT_TYPES for i in inputs):
        first = _token_input(imp, inputs, input_shape)
    else:
        first = _float_input(imp, inputs, input_shape)
    imp.nodes.append(first)
    imp.names.add(first.name)
    imp.shapes[first.name] = first.shape
    imp.alias.setdefault(first.name, first.name)
    for onode in imp.onnx_nodes:
        if id(onode) in imp.done:
            continue
        try:
            imp.convert(onode)
        except InputError as exc:
            msg = str(exc)
            if msg.startswith(source):
                raise
            if msg.startswith("node "):
                raise InputError(f"{source}: {msg}") from None
            raise imp.fail(onode, msg) from None
    if imp.addend is not None:           # the position and segment rows the host adds
        name = imp.fresh(f"{first.name}.addend")
        imp.params[name] = imp.addend.astype(np.float32)
        imp.nodes[0] = dataclasses.replace(first, addend=name)
    if len(g.output) != 1:
        raise InputError(f"{source}: expected one graph output, got "
                         f"{[o.name for o in g.output]}")
    out = g.output[0].name
    if imp.seq.is_view(out):
        raise InputError(f"{source}: output {out!r} is a per-head view; merge the heads "
                         f"back to (N, T, F) before the output")
    if out not in imp.alias:
        raise InputError(f"{source}: output {out!r} is not computed by a supported node")
    try:
        graph = Graph(tuple(imp.nodes), imp.params, imp.alias[out], g.name or "onnx")
    except InputError as exc:
        raise InputError(f"{source}: {exc}") from None
    return fold_batchnorm(graph) if fold_bn else graph


#: ONNX element types of token-id and mask inputs (INT32, INT64).
_INT_TYPES = (6, 7)


def _token_input(imp, inputs, input_shape) -> Input:
    """The Input of a model that takes token ids: the first integer input that indexes a
    constant table (the word embedding) is the ids; the Gather becomes the Input's
    ``embedding`` and the importer adds the rows of constant Adds that follow into its
    addend. Any other integer input is fixed: one indexing a table (segment ids,
    ``token_type_ids``) to 0, any other (``attention_mask``) to 1 -- one sentence at its
    own length, no padding. The length T comes from the ids' fixed axis or ``input_shape``
    ``(T,)``."""
    source = imp.source

    def table_gathers(name):
        return [n for n in imp.onnx_nodes if n.op_type == "Gather" and len(n.input) > 1
                and n.input[1] == name and n.input[0] in imp.consts
                and np.ndim(imp.consts[n.input[0]]) == 2
                and int(imp.attrs(n).get("axis", 0)) == 0]

    ints = [i for i in inputs if i.type.tensor_type.elem_type in _INT_TYPES]
    ids = next((i for i in ints if table_gathers(i.name)), None)
    floats = [i.name for i in inputs if i.type.tensor_type.elem_type not in _INT_TYPES]
    if ids is None or floats:
        raise InputError(f"{source}: integer input(s) {[i.name for i in ints]} with "
                         f"{'float input(s) ' + str(floats) if floats else 'no embedding'}: "
                         f"a model takes either one float input or token ids that index an "
                         f"embedding table (Gather of a constant (V, F) table)")
    dims = list(ids.type.tensor_type.shape.dim)
    if len(dims) != 2:
        raise InputError(f"{source}: token ids {ids.name!r} have rank {len(dims)}, expected "
                         f"(N, T)")
    _check_batch(source, ids, dims)
    (t,) = _input_dims(source, ids, dims, input_shape, layout="T")
    gathers = table_gathers(ids.name)
    if len(gathers) != 1 or imp.uses.get(ids.name, 0) != 1 + sum(
            1 for n in imp.onnx_nodes if n.op_type == "Shape" and n.input[0] == ids.name):
        raise InputError(f"{source}: token ids {ids.name!r} must feed one embedding Gather "
                         f"(and shape computations) only")
    gather = gathers[0]
    table = imp.consts[gather.input[0]]
    imp.consts[ids.name] = np.zeros((1, t), np.int64)   # its shape, for Shape; never values
    for i in ints:
        if i is not ids:
            dtype = imp.helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type)
            fill = 0 if table_gathers(i.name) else 1
            imp.consts[i.name] = np.full((1, t), fill, dtype)
    imp.done.add(id(gather))
    embedding = imp.param(gather, gather.input[0], "embedding table")
    imp.alias[gather.output[0]] = ids.name
    imp.embedded = ids.name
    try:
        return Input(name=ids.name, shape=(t, int(table.shape[1])), embedding=embedding)
    except InputError as exc:
        raise InputError(f"{source}: {exc}") from None


def _float_input(imp, inputs, input_shape) -> Input:
    """The Input of a model with one float input ``(N, C, H, W)``, ``(N, T, F)`` or ``(N, F)``."""
    source = imp.source
    if len(inputs) != 1:
        raise InputError(f"{source}: expected one graph input, got "
                         f"{[i.name for i in inputs]}")
    inp = inputs[0]
    tt = inp.type.tensor_type
    if tt.elem_type != 1:  # TensorProto.FLOAT
        raise InputError(f"{source}: input {inp.name!r} has element type {tt.elem_type}, "
                         f"expected float32 (1)")
    dims = list(tt.shape.dim)
    if len(dims) not in (2, 3, 4):
        raise InputError(f"{source}: input {inp.name!r} has rank {len(dims)}, expected "
                         f"(N, C, H, W), (N, T, F) or (N, F)")
    _check_batch(source, inp, dims)
    shape = _input_dims(source, inp, dims, input_shape)
    try:
        return Input(name=inp.name, shape=tuple(shape))
    except InputError as exc:
        raise InputError(f"{source}: {exc}") from None


def _check_batch(source: str, inp, dims) -> None:
    """Refuse a fixed batch axis other than 1 (a graph is per sample)."""
    if dims[0].HasField("dim_value") and dims[0].dim_value not in (0, 1):
        raise InputError(f"{source}: input {inp.name!r} has a fixed batch of "
                         f"{dims[0].dim_value}; only batch 1 or a symbolic batch is supported")
