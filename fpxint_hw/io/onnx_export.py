"""ONNX export of a :class:`~fpxint_hw.graph.Graph` (opset 17, built with ``onnx.helper``).

Each node becomes one ONNX node of the same name whose output tensor has that name too;
parameters become initializers under their own names; Clip bounds become scalar initializers
``<node>.clip_min`` / ``<node>.clip_max``, a Pad's pads and value ``<node>.pads`` /
``<node>.pad_value``. A per-channel PRelu slope or Scale weight/bias of a ``(C, H, W)`` map is
written as ``(C, 1, 1)`` (what ONNX broadcasting reads per channel). A Scale becomes a Mul by
its weight, and with a bias an Add (node ``<node>.bias_add``) whose output carries the
name.
A Linear on a sequence is a MatMul by its Transposed weight (then such an Add); a LayerNorm a
LayerNormalization; a Gelu the erf chain ``x * (1 + Erf(x / sqrt 2)) * 0.5``; a per-head
MatMul the Reshape to ``(N, T, H, d)``, Transposes and Reshape back that exporters write
around it, a per-head Softmax the two Reshapes alone. The input's batch axis is symbolic (``N``) unless a fixed ``batch`` is given.
:func:`~fpxint_hw.io.onnx_import.onnx_to_graph` reads the result back to an equal graph,
parameters bit for bit.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import InputError, missing_tool
from ..graph import (Add, AvgPool, BatchNorm, Clip, Concat, Conv2d, Flatten, Gelu,
                     GlobalAvgPool, Graph, HardSigmoid, HardSwish, Input, LayerNorm, LeakyRelu,
                     Linear, MatMul, MaxPool, Mul, Pad, PRelu, Relu, Scale, Sigmoid, Softmax,
                     Slice, Upsample, ZeroInsert)

__all__ = ["graph_to_onnx", "save_onnx", "ONNX_OPSET"]


def _onnx(graph: Graph):
    """The ``onnx`` module; ToolMissingError saying how to install it when it is absent."""
    try:
        import onnx
    except ImportError:
        raise missing_tool("onnx", "pip install onnx", what=f"export of {graph.name!r}",
                           reason="writing ONNX needs the 'onnx' package") from None
    return onnx

#: Default opset of exported models (onnxruntime and onnx.reference both run it).
ONNX_OPSET = 17


def graph_to_onnx(graph: Graph, *, batch: int | None = None, opset: int = ONNX_OPSET):
    """The graph as an ``onnx.ModelProto``; ``batch`` fixes the batch axis (None: symbolic)."""
    _onnx(graph)
    from onnx import TensorProto, helper, numpy_helper

    if batch is not None and (not isinstance(batch, int) or batch < 1):
        raise InputError(f"export of {graph.name!r}: batch must be a positive int or None, "
                         f"got {batch!r}")
    nb = batch if batch is not None else "N"
    ids = graph.input if graph.input.embedding is not None else None
    if ids is not None:                  # the body reads the embedded tokens under a new name
        graph = _renamed_input(graph, f"{ids.name}.embedded")
    arrays = {k: np.asarray(v, np.float32) for k, v in graph.params.items()}
    inits = []
    nodes = []
    taken = {n.name for n in graph.nodes} | set(graph.params)
    layouts: dict[str, tuple[int, ...]] = {}

    def extra(name: str) -> str:
        """A helper tensor name, refused when a node or parameter already has it."""
        if name in taken:
            raise InputError(f"export of {graph.name!r}: the name {name!r} is taken")
        taken.add(name)
        return name

    def per_channel(n, pname: str) -> str:
        """Parameter ``pname`` of node ``n`` laid out to broadcast per channel in ONNX."""
        v = np.asarray(graph.params[pname], np.float32)
        want = (v.size, 1, 1) if len(n.shape) == 3 and v.size > 1 else v.shape
        if layouts.setdefault(pname, want) != want:
            raise InputError(f"export of {graph.name!r}: parameter {pname!r} is shared by "
                             f"nodes that need different ONNX layouts")
        arrays[pname] = v.reshape(want)
        return pname
    def const(name: str, value) -> str:
        """A helper initializer ``name`` holding ``value``."""
        inits.append(numpy_helper.from_array(np.asarray(value), extra(name)))
        return name

    def heads(src: str, h: int, perm, tag: str) -> str:
        """Sequence ``src`` (N, T, H*d) as per-head tensors (N, T, H, d), Transposed by
        ``perm`` unless it is None."""
        t, f = graph.node(src).shape
        split = extra(f"{tag}.split")
        nodes.append(helper.make_node(
            "Reshape", [src, const(f"{tag}.split_shape", np.array([0, t, h, f // h]))],
            [split], name=split))
        if perm is None:
            return split
        out = extra(f"{tag}.heads")
        nodes.append(helper.make_node("Transpose", [split], [out], name=out, perm=list(perm)))
        return out

    def merged(src: str, n, perm) -> None:
        """Per-head ``src``, Transposed by ``perm`` (unless None) to (N, T, H, d), merged
        into node ``n``'s output (N, T, H*d)."""
        t, f = n.shape
        back = src
        if perm is not None:
            back = extra(f"{n.name}.merge")
            nodes.append(helper.make_node("Transpose", [src], [back], name=back,
                                          perm=list(perm)))
        nodes.append(helper.make_node(
            "Reshape", [back, const(f"{n.name}.merge_shape", np.array([0, t, f]))], [n.name],
            name=extra(f"{n.name}.merge_reshape")))

    def then_bias(op: str, ins, n, bias: str, suffix: str) -> None:
        """``op(ins)`` into ``<node>.<suffix>``, then an Add of ``bias`` (node
        ``<node>.bias_add``) whose output is node ``n``'s."""
        product = extra(f"{n.name}.{suffix}")
        nodes.append(helper.make_node(op, ins, [product], name=n.name))
        nodes.append(helper.make_node("Add", [product, bias], [n.name],
                                      name=extra(f"{n.name}.bias_add")))

    for n in graph.nodes:
        ins = list(n.inputs)
        kw: dict = {}
        if isinstance(n, Input):
            continue
        if isinstance(n, Conv2d):
            op = "Conv"
            w = graph.params[n.weight]
            ins += [n.weight] + ([n.bias] if n.bias else [])
            kw = dict(kernel_shape=list(w.shape[2:]), strides=list(n.stride),
                      pads=list(n.padding), dilations=list(n.dilation), group=n.groups)
        elif isinstance(n, BatchNorm):
            op, ins = "BatchNormalization", ins + [n.weight, n.bias, n.mean, n.var]
            kw = dict(epsilon=n.eps)
        elif isinstance(n, Relu):
            op = "Relu"
        elif isinstance(n, Clip):
            op = "Clip"
            lo, hi = f"{n.name}.clip_min", f"{n.name}.clip_max"
            if lo in graph.params or hi in graph.params:
                raise InputError(f"export of {graph.name!r}: parameter name {lo!r} or {hi!r} "
                                 f"is taken")
            inits += [numpy_helper.from_array(np.array(n.lo, np.float32), lo),
                      numpy_helper.from_array(np.array(n.hi, np.float32), hi)]
            ins += [lo, hi]
        elif isinstance(n, MaxPool):
            op = "MaxPool"
            kw = dict(kernel_shape=list(n.kernel), strides=list(n.stride), pads=list(n.padding))
        elif isinstance(n, AvgPool):
            op = "AveragePool"
            kw = dict(kernel_shape=list(n.kernel), strides=list(n.stride), pads=list(n.padding),
                      count_include_pad=int(n.count_include_pad))
        elif isinstance(n, GlobalAvgPool):
            op = "GlobalAveragePool"
        elif isinstance(n, Add):
            op = "Add"
        elif isinstance(n, Linear) and len(n.shape) == 2:
            # per token: Gemm takes matrices only, so MatMul by the transposed weight
            wt = extra(f"{n.name}.weight_t")
            nodes.append(helper.make_node("Transpose", [n.weight], [wt], name=wt, perm=[1, 0]))
            op, ins = "MatMul", ins + [wt]
            if n.bias is not None:
                then_bias(op, ins, n, n.bias, "matmul")
                continue
        elif isinstance(n, Linear):
            op = "Gemm"
            ins += [n.weight] + ([n.bias] if n.bias else [])
            kw = dict(transB=1)
        elif isinstance(n, Flatten):
            op = "Flatten"
            kw = dict(axis=1)
        elif isinstance(n, HardSigmoid):
            op = "HardSigmoid"
            kw = dict(alpha=n.alpha, beta=n.beta)
        elif isinstance(n, HardSwish):
            op = "HardSwish"
        elif isinstance(n, Sigmoid):
            op = "Sigmoid"
        elif isinstance(n, LeakyRelu):
            op = "LeakyRelu"
            kw = dict(alpha=n.alpha)
        elif isinstance(n, PRelu):
            op, ins = "PRelu", ins + [per_channel(n, n.slope)]
        elif isinstance(n, Scale):
            op, ins = "Mul", ins + [per_channel(n, n.weight)]
            if n.bias is not None:
                then_bias(op, ins, n, per_channel(n, n.bias), "mul")
                continue
        elif isinstance(n, Mul):
            op = "Mul"
        elif isinstance(n, Concat):
            op = "Concat"
            kw = dict(axis=1)
        elif isinstance(n, Pad):
            op = "Pad"
            pads, value = extra(f"{n.name}.pads"), extra(f"{n.name}.pad_value")
            pt, pl, pb, pr = n.padding
            inits += [numpy_helper.from_array(np.array([0, 0, pt, pl, 0, 0, pb, pr], np.int64),
                                              pads),
                      numpy_helper.from_array(np.array(n.value, np.float32), value)]
            ins += [pads, value]
            kw = dict(mode="constant")
        elif isinstance(n, ZeroInsert):
            # a 1x1 depthwise ConvTranspose of ones: the zero insertion alone
            op, ones = "ConvTranspose", extra(f"{n.name}.ones")
            c = graph.node(n.inputs[0]).shape[0]
            inits.append(numpy_helper.from_array(np.ones((c, 1, 1, 1), np.float32), ones))
            ins += [ones]
            kw = dict(kernel_shape=[1, 1], strides=list(n.stride), group=c)
        elif isinstance(n, Upsample):
            op, scales = "Resize", extra(f"{n.name}.scales")
            inits.append(numpy_helper.from_array(
                np.array([1, 1, *n.scale], np.float32), scales))
            ins += ["", scales]
            kw = dict(mode="nearest", coordinate_transformation_mode="asymmetric",
                      nearest_mode="floor")
        elif isinstance(n, Slice) and n.squeeze:
            op, idx = "Gather", extra(f"{n.name}.index")       # x[:, start]
            inits.append(numpy_helper.from_array(np.array(n.start, np.int64), idx))
            ins += [idx]
            kw = dict(axis=1)
        elif isinstance(n, Slice):
            op = "Slice"
            names = [extra(f"{n.name}.{k}") for k in ("starts", "ends", "axes")]
            inits += [numpy_helper.from_array(np.array([v], np.int64), k)
                      for v, k in zip((n.start, n.stop, 1), names)]
            ins += names
        elif isinstance(n, LayerNorm):
            op, ins = "LayerNormalization", ins + [n.weight, n.bias]
            kw = dict(axis=-1, epsilon=n.eps)
        elif isinstance(n, Gelu):
            # opset 17 has no Gelu: x * (1 + erf(x / sqrt 2)) * 0.5, as exporters write it
            x, tag = ins[0], n.name
            steps = [("Div", [x, const(f"{tag}.sqrt2", np.float32(np.sqrt(2.0)))], "div"),
                     ("Erf", [f"{tag}.div"], "erf"),
                     ("Add", [f"{tag}.erf", const(f"{tag}.one", np.float32(1.0))], "add"),
                     ("Mul", [x, f"{tag}.add"], "mul")]
            for kind, args, suffix in steps:
                nodes.append(helper.make_node(kind, args, [extra(f"{tag}.{suffix}")],
                                              name=f"{tag}.{suffix}"))
            op, ins = "Mul", [f"{tag}.mul", const(f"{tag}.half", np.float32(0.5))]
        elif isinstance(n, Softmax):
            op, kw = "Softmax", dict(axis=-1)
            if n.groups > 1:                  # over each head's last axis of (N, T, H, S)
                out = extra(f"{n.name}.probs")
                nodes.append(helper.make_node(op, [heads(ins[0], n.groups, None, n.name)],
                                              [out], name=n.name, axis=-1))
                merged(out, n, None)
                continue
        elif isinstance(n, MatMul):
            a = heads(ins[0], n.heads, (0, 2, 1, 3), f"{n.name}.a")
            b = heads(ins[1], n.heads, (0, 2, 3, 1) if n.transpose_b else (0, 2, 1, 3),
                      f"{n.name}.b")
            out = extra(f"{n.name}.product")
            nodes.append(helper.make_node("MatMul", [a, b], [out], name=n.name))
            merged(out, n, (0, 2, 1, 3))
            continue
        else:  # pragma: no cover - every op of graph.OPS is handled above
            raise InputError(f"export of {graph.name!r}: node {n.name!r} has op {n.op!r}, "
                             f"which has no ONNX form")
        nodes.append(helper.make_node(op, ins, [n.name], name=n.name, **kw))
    if ids is not None:        # token ids -> embedding[ids] (+ addend) -> the body's input
        word = graph.input.name if ids.addend is None else extra(f"{ids.name}.word")
        embed = [helper.make_node("Gather", [ids.embedding, ids.name], [word],
                                  name=extra(f"{ids.name}.gather"), axis=0)]
        if ids.addend is not None:
            embed.append(helper.make_node("Add", [word, ids.addend], [graph.input.name],
                                          name=extra(f"{ids.name}.add")))
        nodes[:0] = embed
        x = helper.make_tensor_value_info(ids.name, TensorProto.INT64,
                                          [nb, graph.input_shape[0]])
    else:
        x = helper.make_tensor_value_info(graph.input.name, TensorProto.FLOAT,
                                          [nb, *graph.input_shape])
    inits = [numpy_helper.from_array(v, k) for k, v in arrays.items()] + inits
    y = helper.make_tensor_value_info(graph.output, TensorProto.FLOAT,
                                      [nb, *graph.output_shape])
    g = helper.make_graph(nodes, graph.name, [x], [y], initializer=inits)
    model = helper.make_model(g, producer_name="fpxint-hw",
                              opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _renamed_input(graph: Graph, name: str) -> Graph:
    """``graph`` with its Input called ``name`` (its readers follow)."""
    old = graph.input.name
    if name in graph:
        raise InputError(f"export of {graph.name!r}: the name {name!r} is taken")
    nodes = [dataclasses.replace(graph.input, name=name)]
    nodes += [dataclasses.replace(n, inputs=tuple(name if i == old else i for i in n.inputs))
              for n in graph.nodes[1:]]
    return graph.replace(nodes=nodes, output=name if graph.output == old else graph.output)


def save_onnx(graph: Graph, path, *, batch: int | None = None, opset: int = ONNX_OPSET) -> None:
    """Write ``graph`` as an ONNX file at ``path``, atomically (see :func:`graph_to_onnx`)."""
    from ..outputs import write_bytes
    _onnx(graph)
    write_bytes(path, graph_to_onnx(graph, batch=batch, opset=opset).SerializeToString())
