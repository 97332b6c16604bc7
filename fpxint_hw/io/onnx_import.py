"""ONNX import: an ONNX model file or ModelProto as a :class:`~fpxint_hw.graph.Graph`.

Supported ops (2-D, float32): Conv (any stride, padding incl. auto_pad, dilation, groups),
BatchNormalization (inference), Relu, Clip, MaxPool, AveragePool, GlobalAveragePool and
ReduceMean over (H, W), Add (of two
tensors, or of a constant bias right after a MatMul), Gemm, MatMul with a constant weight,
Flatten, and Reshape / Squeeze where they only flatten ``(C, H, W)`` or ``(C, 1, 1)`` to a
vector; Identity and Dropout are skipped. Weights must be initializers or Constant nodes.
The model needs one float input of shape ``(N, C, H, W)`` or ``(N, F)`` whose batch axis is
symbolic or 1, and one output.

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
from ..graph import (Add, AvgPool, BatchNorm, Clip, Conv2d, Flatten, GlobalAvgPool, Graph,
                     Input, Linear, MaxPool, Node, Relu, fold_batchnorm)

__all__ = ["load_onnx", "onnx_to_graph", "read_onnx", "SUPPORTED_ONNX_OPS"]

#: ONNX op types the importer understands.
SUPPORTED_ONNX_OPS = ("Conv", "BatchNormalization", "Relu", "Clip", "MaxPool", "AveragePool",
                      "GlobalAveragePool", "ReduceMean", "Add", "Gemm", "MatMul", "Flatten",
                      "Reshape", "Squeeze", "Identity", "Dropout", "Constant")


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


def load_onnx(path, *, fold_bn: bool = True) -> Graph:
    """The network in the ONNX file at ``path`` as a Graph (BatchNorms folded unless told)."""
    return onnx_to_graph(read_onnx(path), source=os.fspath(path), fold_bn=fold_bn)


class _Importer:
    def __init__(self, model, source: str):
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.model, self.source = model, source
        g = model.graph
        self.consts: dict[str, np.ndarray] = {
            t.name: numpy_helper.to_array(t) for t in g.initializer}
        self.alias: dict[str, str] = {}          # ONNX tensor name -> our node name
        self.nodes: list[Node] = []
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.params: dict[str, np.ndarray] = {}
        self.names: set[str] = set()
        self.uses: dict[str, int] = {}
        for n in g.node:
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
            from onnx import numpy_helper
            if "value" not in a:
                raise self.fail(onode, f"only Constant 'value' is supported, got {sorted(a)}")
            self.consts[onode.output[0]] = numpy_helper.to_array(a["value"])
            return
        if op in ("Identity", "Dropout"):
            self.alias[onode.output[0]] = self.tensor(onode, onode.input[0])
            if op == "Dropout" and len(onode.input) > 2 and onode.input[2]:
                if bool(np.asarray(self.const(onode, onode.input[2], "training_mode"))):
                    raise self.fail(onode, "training_mode=true is not supported")
            return
        if op == "Add" and any(i in self.consts for i in onode.input):
            self.add_bias(onode)
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
            node = Linear(name=name, inputs=(x,),
                          weight=self.param(onode, wname, "weight", np.ascontiguousarray(w.T)))
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

    def add_bias(self, onode) -> None:
        """``Add(MatMul(x, W), b)`` with a constant ``b``: the bias of that Linear node."""
        i0, i1 = onode.input
        t, c = (i0, i1) if i1 in self.consts else (i1, i0)
        prev = self.alias.get(t)
        last = self.nodes[-1] if self.nodes else None
        if (last is None or prev != last.name or not isinstance(last, Linear)
                or last.bias is not None or self.uses.get(t, 0) != 1):
            raise self.fail(onode, "Add of a constant is only supported as the bias right "
                                   "after a MatMul")
        fout = self.shapes[last.name][0]
        b = np.asarray(self.consts[c])
        if b.size not in (1, fout):
            raise self.fail(onode, f"bias {c!r} has shape {b.shape}, expected ({fout},)")
        bias = self.param(onode, c, "bias", np.broadcast_to(b.reshape(-1), (fout,)).copy())
        self.nodes[-1] = dataclasses.replace(last, bias=bias)
        self.alias[onode.output[0]] = last.name


def onnx_to_graph(model, *, source: str = "<onnx model>", fold_bn: bool = True) -> Graph:
    """Convert an ``onnx.ModelProto`` to a Graph; ``source`` names it in error messages."""
    imp = _Importer(model, source)
    g = model.graph
    inputs = [i for i in g.input if i.name not in imp.consts]
    if len(inputs) != 1:
        raise InputError(f"{source}: expected one graph input, got "
                         f"{[i.name for i in inputs]}")
    inp = inputs[0]
    tt = inp.type.tensor_type
    if tt.elem_type != 1:  # TensorProto.FLOAT
        raise InputError(f"{source}: input {inp.name!r} has element type {tt.elem_type}, "
                         f"expected float32 (1)")
    dims = list(tt.shape.dim)
    if len(dims) not in (2, 4):
        raise InputError(f"{source}: input {inp.name!r} has rank {len(dims)}, expected "
                         f"(N, C, H, W) or (N, F)")
    if dims[0].HasField("dim_value") and dims[0].dim_value not in (0, 1):
        raise InputError(f"{source}: input {inp.name!r} has a fixed batch of "
                         f"{dims[0].dim_value}; only batch 1 or a symbolic batch is supported")
    shape = []
    for k, d in enumerate(dims[1:], 1):
        if not d.HasField("dim_value") or d.dim_value < 1:
            raise InputError(f"{source}: input {inp.name!r} axis {k} has no fixed size "
                             f"({d.dim_param or '?'}); only the batch axis may be symbolic")
        shape.append(int(d.dim_value))
    try:
        first = Input(name=inp.name, shape=tuple(shape))
    except InputError as exc:
        raise InputError(f"{source}: {exc}") from None
    imp.nodes.append(first)
    imp.names.add(inp.name)
    imp.shapes[inp.name] = first.shape
    imp.alias[inp.name] = inp.name
    for onode in g.node:
        try:
            imp.convert(onode)
        except InputError as exc:
            msg = str(exc)
            if msg.startswith(source):
                raise
            if msg.startswith("node "):
                raise InputError(f"{source}: {msg}") from None
            raise imp.fail(onode, msg) from None
    if len(g.output) != 1:
        raise InputError(f"{source}: expected one graph output, got "
                         f"{[o.name for o in g.output]}")
    out = g.output[0].name
    if out not in imp.alias:
        raise InputError(f"{source}: output {out!r} is not computed by a supported node")
    try:
        graph = Graph(tuple(imp.nodes), imp.params, imp.alias[out], g.name or "onnx")
    except InputError as exc:
        raise InputError(f"{source}: {exc}") from None
    return fold_batchnorm(graph) if fold_bn else graph
