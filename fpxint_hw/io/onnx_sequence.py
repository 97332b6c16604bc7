"""ONNX import of transformer blocks: sequence tensors, per-head views and attention.

Our sequence tensor ``(T, F)`` is ONNX's ``(1, T, F)``. Multi-head attention as exporters
write it reshapes a ``(1, T, H*d)`` projection to ``(1, T, H, d)`` and transposes it to
``(1, H, T, d)`` (or ``(1, H, d, T)`` for the keys); none of that moves data in our graph,
where head ``h`` is the column block ``[h*d, (h+1)*d)`` (:class:`~fpxint_hw.graph.MatMul`).
The importer keeps such a tensor as a :class:`View` of our ``(T, H*d)`` node: its axes are
a permutation of the canonical ``(batch, token, head, within-head)``. The ops that read a
view:

* Reshape ``(1, T, H*d) <-> (1, T, H, d)`` and Transpose between the three orders
  ``(1, T, H, d)``, ``(1, H, T, d)`` and ``(1, H, d, T)``;
* MatMul of ``(1, H, T, d)`` by ``(1, H, d, S)`` (the scores, ``transpose_b``) or by
  ``(1, H, S, d)`` (the context) -> ``(1, H, T, S)`` / ``(1, H, T, d)``;
* Softmax over the within-head axis (per head and token, ``groups=H``);
* Mul or Div by one constant (a :class:`~fpxint_hw.graph.Scale`), and Add or Sub of an
  all-zero constant (an attention mask with nothing masked) -- both keep the view;
* Shape, which sees the view's ONNX shape.

Anything else that reads a view is refused, naming the node. LayerNormalization over the
last axis, Gelu and Softmax over the features also read plain sequences.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..graph import Gelu, LayerNorm, MatMul, Softmax

__all__ = ["View", "SequenceOps", "SPLIT", "HEADS", "HEADS_T"]

#: Axis orders of a view (canonical axes: 0 batch, 1 token, 2 head, 3 within-head).
SPLIT, HEADS, HEADS_T = (0, 1, 2, 3), (0, 2, 1, 3), (0, 2, 3, 1)
_ORDERS = {SPLIT: "(1, T, H, d)", HEADS: "(1, H, T, d)", HEADS_T: "(1, H, d, T)"}


@dataclass(frozen=True)
class View:
    """ONNX tensor ``order`` of our ``(T, H*d)`` node ``node`` split into ``heads`` heads."""

    node: str
    heads: int
    order: tuple[int, ...]

    def onnx_shape(self, shape) -> tuple[int, ...]:
        """The view's ONNX shape, ``shape`` our node's ``(T, H*d)``."""
        t, f = shape
        sizes = (1, t, self.heads, f // self.heads)
        return tuple(sizes[a] for a in self.order)


class SequenceOps:
    """The sequence ops of one import (:class:`fpxint_hw.io.onnx_import._Importer` ``imp``)."""

    #: Ops this module converts when an input is a view or a plain sequence.
    OPS = ("Reshape", "Transpose", "MatMul", "Softmax", "LayerNormalization", "Gelu", "Mul",
           "Div", "Add", "Sub")

    def __init__(self, imp):
        self.imp = imp
        self.views: dict[str, View] = {}

    # -- what a tensor is -------------------------------------------------------------------

    def is_view(self, name: str) -> bool:
        return name in self.views

    def sequence(self, name: str) -> bool:
        """True for an ONNX tensor that is one of our plain ``(T, F)`` sequences."""
        ours = self.imp.alias.get(name)
        return ours is not None and len(self.imp.shapes[ours]) == 2

    def view_error(self, onode, name: str):
        v = self.views[name]
        return self.imp.fail(onode, f"input {name!r} is a per-head view "
                                    f"{_ORDERS[v.order]} of {v.node!r}; only Reshape, "
                                    f"Transpose, MatMul, Softmax, Shape and constant Mul/Div "
                                    f"read per-head tensors")

    def shape_of(self, name: str) -> tuple[int, ...]:
        """The ONNX shape of view ``name``."""
        v = self.views[name]
        return v.onnx_shape(self.imp.shapes[v.node])

    def _view_of(self, onode, name: str) -> View:
        if name in self.views:
            return self.views[name]
        ours = self.imp.tensor(onode, name)
        raise self.imp.fail(onode, f"input {name!r} ({('N',) + self.imp.shapes[ours]}) is "
                                   f"not split into heads; a MatMul of two activations "
                                   f"multiplies per-head tensors (1, H, T, d)")

    def _put(self, onode, node, order=None, heads=1) -> None:
        """Emit ``node``; its output is a view in ``order`` (None: a plain tensor)."""
        self.imp.emit(onode, node)
        if order is not None:
            del self.imp.alias[onode.output[0]]
            self.views[onode.output[0]] = View(node.name, heads, order)

    # -- the ops ---------------------------------------------------------------------------

    def convert(self, onode, attrs: dict) -> bool:
        """Convert ``onode`` if it is a sequence op; False when it is not one."""
        op = onode.op_type
        ins = [i for i in onode.input if i]
        if op not in self.OPS or not ins:
            return False
        if not (any(i in self.views for i in ins) or self.sequence(ins[0])):
            return False
        if op in ("Mul", "Div", "Add", "Sub"):
            if not any(i in self.views for i in ins):
                return False                          # plain sequences: the common path
            self.const_arith(onode)
        elif op == "Reshape":
            self.reshape(onode)
        elif op == "Transpose":
            self.transpose(onode, attrs)
        elif op == "MatMul":
            if onode.input[1] in self.imp.consts and onode.input[0] not in self.views:
                return False                          # a Linear: the common path
            self.matmul(onode)
        elif op == "Softmax":
            self.softmax(onode, attrs)
        elif op == "LayerNormalization":
            self.layernorm(onode, attrs)
        elif op == "Gelu":
            if attrs.get("approximate", "none") != "none":
                raise self.imp.fail(onode, f"approximate={attrs['approximate']!r} is not "
                                           f"supported (the exact erf GELU only)")
            if onode.input[0] in self.views:
                raise self.view_error(onode, onode.input[0])
            x = self.imp.tensor(onode, onode.input[0])
            self._put(onode, Gelu(name=self.imp.node_name(onode), inputs=(x,)))
        return True

    def reshape(self, onode) -> None:
        imp = self.imp
        src = onode.input[0]
        tgt = [int(v) for v in np.asarray(imp.const(onode, onode.input[1], "shape"))]
        if src in self.views:
            v = self.views[src]
            t, f = imp.shapes[v.node]
            shape = _resolve(tgt, self.shape_of(src))
            if shape == self.shape_of(src):
                self.views[onode.output[0]] = v                 # a reshape to itself
            elif v.order == SPLIT and shape == (1, t, f):
                imp.alias[onode.output[0]] = v.node            # heads merged: (1, T, H*d)
            else:
                raise imp.fail(onode, f"only a Reshape of {_ORDERS[SPLIT]} back to (1, T, F)"
                                      f" = (1, {t}, {f}) is supported on per-head tensors, "
                                      f"got {_ORDERS[v.order]} -> {tgt}")
            return
        x = imp.tensor(onode, src)
        t, f = imp.shapes[x]
        shape = _resolve(tgt, (1, t, f))
        if shape == (1, t, f):
            imp.alias[onode.output[0]] = x
        elif shape is not None and len(shape) == 4 and shape[:2] == (1, t) \
                and shape[2] * shape[3] == f:
            self.views[onode.output[0]] = View(x, shape[2], SPLIT)
        else:
            raise imp.fail(onode, f"only a Reshape of a (1, T, F) = (1, {t}, {f}) sequence "
                                  f"into heads (1, T, H, F/H) is supported, got shape {tgt}")

    def transpose(self, onode, attrs: dict) -> None:
        src = onode.input[0]
        perm = tuple(int(p) for p in attrs.get("perm", ()))
        if src not in self.views:
            raise self.imp.fail(onode, f"a Transpose {perm or '(reversed)'} of the sequence "
                                       f"{src!r} (1, T, F) is not supported; only per-head "
                                       f"tensors (1, T, H, d) are transposed")
        v = self.views[src]
        order = tuple(v.order[p] for p in perm) if len(perm) == 4 else None
        if order not in _ORDERS:
            raise self.imp.fail(onode, f"Transpose perm {perm} of {_ORDERS[v.order]} gives "
                                       f"none of {', '.join(_ORDERS.values())}")
        self.views[onode.output[0]] = View(v.node, v.heads, order)

    def matmul(self, onode) -> None:
        imp = self.imp
        a, b = onode.input
        if b in imp.consts:
            raise imp.fail(onode, f"input {a!r} is a per-head view; a MatMul by a constant "
                                  f"reads a (1, T, F) sequence")
        va, vb = self._view_of(onode, a), self._view_of(onode, b)
        sa, sb = self.shape_of(a), self.shape_of(b)
        if va.order != HEADS or vb.order not in (HEADS, HEADS_T) or va.heads != vb.heads \
                or sa[3] != sb[2]:
            raise imp.fail(onode, f"only per-head products (1, H, T, d) x (1, H, d, S) and "
                                  f"(1, H, T, S) x (1, H, S, d) are supported, got "
                                  f"{sa} x {sb}")
        node = MatMul(name=imp.node_name(onode), inputs=(va.node, vb.node), heads=va.heads,
                      transpose_b=vb.order == HEADS_T)
        self._put(onode, node, HEADS, va.heads)

    def softmax(self, onode, attrs: dict) -> None:
        imp = self.imp
        src = onode.input[0]
        axis = int(attrs.get("axis", -1))
        if src in self.views:
            v = self.views[src]
            if v.order[axis % 4] != 3:
                raise imp.fail(onode, f"only a Softmax over the last axis of "
                                      f"{_ORDERS[HEADS]} is supported, got axis {axis} of "
                                      f"{_ORDERS[v.order]}")
            self._put(onode, Softmax(name=imp.node_name(onode), inputs=(v.node,),
                                     groups=v.heads), v.order, v.heads)
            return
        if axis % 3 != 2:
            raise imp.fail(onode, f"only a Softmax over the features (axis -1) of a (1, T, F) "
                                  f"sequence is supported, got axis {axis}")
        x = imp.tensor(onode, src)
        self._put(onode, Softmax(name=imp.node_name(onode), inputs=(x,)))

    def layernorm(self, onode, attrs: dict) -> None:
        imp = self.imp
        src = onode.input[0]
        if src in self.views:
            raise self.view_error(onode, src)
        x = imp.tensor(onode, src)
        shp = imp.shapes[x]
        rank = len(shp) + 1
        axis = int(attrs.get("axis", -1))
        if axis % rank != rank - 1:
            raise imp.fail(onode, f"only a LayerNormalization over the last axis of "
                                  f"{('N',) + shp} is supported, got axis {axis}")
        f = shp[-1]
        names = []
        for i, what in ((1, "scale"), (2, "bias")):
            if len(onode.input) > i and onode.input[i]:
                c = np.asarray(imp.const(onode, onode.input[i], what), np.float32)
                if c.size not in (1, f):
                    raise imp.fail(onode, f"{what} {onode.input[i]!r} has shape {c.shape}, "
                                          f"expected ({f},)")
                names.append(imp.param(onode, onode.input[i], what,
                                       np.broadcast_to(c.reshape(-1), (f,)).copy()))
            else:
                name = imp.fresh(f"{imp.node_name(onode)}.{what}")
                names.append(imp.param(onode, name, what, np.full(f, i == 1, np.float32)))
        self._put(onode, LayerNorm(name=imp.node_name(onode), inputs=(x,), weight=names[0],
                                   bias=names[1], eps=float(attrs.get("epsilon", 1e-5))))

    def const_arith(self, onode) -> None:
        """Mul/Div of a view by one constant, or Add/Sub of an all-zero constant."""
        imp = self.imp
        op = onode.op_type
        i0, i1 = onode.input
        src, c = (i1, i0) if i0 in imp.consts else (i0, i1)
        if c not in imp.consts or src not in self.views:
            raise self.view_error(onode, i0 if i0 in self.views else i1)
        v = self.views[src]
        val = np.asarray(imp.consts[c])
        if op in ("Add", "Sub"):
            if val.size and not np.any(val):
                self.views[onode.output[0]] = v               # a mask that masks nothing
                return
            raise imp.fail(onode, f"{op} of the constant {c!r} to the per-head tensor "
                                  f"{src!r} is supported only when it is all zeros (an "
                                  f"attention mask with nothing masked)")
        if val.size != 1 or (op == "Div" and c == i0) \
                or not np.issubdtype(val.dtype, np.floating):
            raise imp.fail(onode, f"a per-head tensor is only multiplied or divided by one "
                                  f"float constant, got {c!r} of shape {val.shape} "
                                  f"({val.dtype})")
        node = imp.const_scale(onode, v.node, c, val.reshape(1).astype(np.float32), c == i0)
        self._put(onode, node, v.order, v.heads)


def _resolve(target, shape) -> tuple[int, ...] | None:
    """The shape ONNX Reshape ``target`` gives a tensor of ``shape`` (``0`` copies the axis,
    one ``-1`` is inferred; ``allowzero`` 0), or None when it does not apply."""
    out = [shape[k] if v == 0 and k < len(shape) else v for k, v in enumerate(target)]
    total = int(np.prod(shape))
    if out.count(-1) == 1:
        known = int(np.prod([v for v in out if v != -1]))
        if known <= 0 or total % known:
            return None
        out[out.index(-1)] = total // known
    if any(v < 1 for v in out) or int(np.prod(out)) != total:
        return None
    return tuple(out)
