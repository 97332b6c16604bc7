"""Decomposed LayerNorm and GELU, as exporters write them, fused back into one op each.

Before opset 17 (LayerNormalization) and opset 20 (Gelu) exporters spell the two out:

* LayerNorm over the last axis: ``m = ReduceMean(x); d = x - m; v = ReduceMean(d^2)`` (``Pow``
  by 2 or ``d * d``), ``y = d / Sqrt(v + eps)``, then optionally ``* gamma`` and ``+ beta``;
* the exact GELU: ``x * (1 + Erf(x / sqrt(2))) * 0.5`` (the division may be a product by
  ``1/sqrt(2)``, and the two products may come in either order).

:func:`fuse_decomposed` replaces each such chain, when nothing else reads its intermediate
tensors, by one ``LayerNormalization`` (``axis`` the reduced axis, so that the importer can
refuse anything but the last) or ``Gelu`` node with the chain's last output.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["fuse_decomposed", "constant_node_value"]

_SQRT2 = math.sqrt(2.0)


def constant_node_value(onode):
    """The tensor of an ONNX Constant node, or None for a value attribute not handled."""
    from onnx import helper, numpy_helper
    for a in onode.attribute:
        v = helper.get_attribute_value(a)
        if a.name == "value":
            return numpy_helper.to_array(v)
        if a.name in ("value_float", "value_floats"):
            return np.array(v, dtype=np.float32)
        if a.name in ("value_int", "value_ints"):
            return np.array(v, dtype=np.int64)
    return None


class _Chains:
    """Producers, consumers and constant values of a node list, for matching chains."""

    def __init__(self, nodes, consts):
        self.nodes = list(nodes)
        self.consts = dict(consts)
        self.producer = {}
        self.readers: dict[str, list] = {}
        for n in self.nodes:
            if n.op_type == "Constant":
                v = constant_node_value(n)
                if v is not None:
                    self.consts[n.output[0]] = v
            elif n.op_type == "Identity" and n.input[0] in self.consts:   # shared weights
                self.consts[n.output[0]] = self.consts[n.input[0]]
            for o in n.output:
                self.producer[o] = n
            for i in n.input:
                self.readers.setdefault(i, []).append(n)

    def only_reader(self, tensor, op: str):
        """The one node reading ``tensor`` if it is an ``op``, else None."""
        rs = self.readers.get(tensor, [])
        return rs[0] if len(rs) == 1 and rs[0].op_type == op else None

    def scalar(self, name) -> float | None:
        v = self.consts.get(name)
        if v is None or np.asarray(v).size != 1:
            return None
        return float(np.asarray(v).reshape(()))

    def other(self, node, tensor):
        """The input of a two-input ``node`` that is not ``tensor`` (None if neither is)."""
        a, b = node.input
        return b if a == tensor else a if b == tensor else None

    def near(self, name, value: float) -> bool:
        s = self.scalar(name)
        return s is not None and math.isclose(s, value, rel_tol=1e-6)


def _axes(ch: _Chains, node):
    """The ``axes`` of a ReduceMean (attribute or input), None if not a constant."""
    from onnx import helper
    for a in node.attribute:
        if a.name == "axes":
            return [int(v) for v in helper.get_attribute_value(a)]
        if a.name == "keepdims" and helper.get_attribute_value(a) == 0:
            return None                                   # a LayerNorm keeps the axis
    if len(node.input) > 1 and node.input[1] in ch.consts:
        return [int(v) for v in np.asarray(ch.consts[node.input[1]]).reshape(-1)]
    return None


def _layernorm(ch: _Chains, m1):
    """``(removed nodes, x, eps, gamma, beta, axis, out)`` of the LayerNorm chain starting at
    ReduceMean ``m1``, or None."""
    axes = _axes(ch, m1)
    if axes is None or len(axes) != 1:
        return None
    x = m1.input[0]
    sub = ch.only_reader(m1.output[0], "Sub")
    if sub is None or list(sub.input) != [x, m1.output[0]]:
        return None
    d = sub.output[0]
    sq = next((r for r in ch.readers.get(d, []) if r.op_type in ("Pow", "Mul")
               and r is not sub), None)
    if sq is None:
        return None
    if sq.op_type == "Pow" and not (sq.input[0] == d and ch.near(sq.input[1], 2.0)):
        return None
    if sq.op_type == "Mul" and list(sq.input) != [d, d]:
        return None
    m2 = ch.only_reader(sq.output[0], "ReduceMean")
    if m2 is None or _axes(ch, m2) != axes:
        return None
    add = ch.only_reader(m2.output[0], "Add")
    if add is None:
        return None
    eps_name = ch.other(add, m2.output[0])
    eps = ch.scalar(eps_name)
    sqrt = ch.only_reader(add.output[0], "Sqrt")
    if eps is None or eps <= 0 or sqrt is None:
        return None
    div = ch.only_reader(sqrt.output[0], "Div")
    if div is None or list(div.input) != [d, sqrt.output[0]]:
        return None
    if {id(r) for r in ch.readers.get(d, [])} != {id(sq), id(div)}:
        return None
    removed, out, gamma, beta = [m1, sub, sq, m2, add, sqrt, div], div.output[0], None, None
    mul = ch.only_reader(out, "Mul")
    if mul is not None and ch.other(mul, out) in ch.consts:
        gamma, out = ch.other(mul, out), mul.output[0]
        removed.append(mul)
        add2 = ch.only_reader(out, "Add")
        if add2 is not None and ch.other(add2, out) in ch.consts:
            beta, out = ch.other(add2, out), add2.output[0]
            removed.append(add2)
    return removed, x, eps, gamma, beta, axes[0], out


def _gelu(ch: _Chains, erf):
    """``(removed nodes, x, out)`` of the exact-GELU chain around ``Erf`` node ``erf``, or
    None."""
    pre = ch.producer.get(erf.input[0])
    if pre is None or pre.op_type not in ("Div", "Mul"):
        return None
    x = pre.input[0]
    if not (ch.near(pre.input[1], _SQRT2) if pre.op_type == "Div"
            else ch.near(pre.input[1], 1 / _SQRT2)):
        return None
    if ch.readers.get(pre.output[0], []) != [erf]:
        return None
    add = ch.only_reader(erf.output[0], "Add")
    if add is None or not ch.near(ch.other(add, erf.output[0]), 1.0):
        return None
    t = add.output[0]
    m1 = ch.only_reader(t, "Mul")
    if m1 is None:
        return None
    if ch.other(m1, t) == x:                          # (x * t) * 0.5
        m2 = ch.only_reader(m1.output[0], "Mul")
        if m2 is not None and ch.near(ch.other(m2, m1.output[0]), 0.5):
            return [pre, erf, add, m1, m2], x, m2.output[0]
    elif ch.near(ch.other(m1, t), 0.5):               # x * (t * 0.5)
        m2 = ch.only_reader(m1.output[0], "Mul")
        if m2 is not None and ch.other(m2, m1.output[0]) == x:
            return [pre, erf, add, m1, m2], x, m2.output[0]
    else:                                             # (x * 0.5) * t
        half = ch.producer.get(ch.other(m1, t))
        if (half is not None and half.op_type == "Mul" and x in half.input
                and ch.near(ch.other(half, x), 0.5)
                and ch.readers.get(half.output[0], []) == [m1]):
            return [pre, erf, add, half, m1], x, m1.output[0]
    return None


def fuse_decomposed(nodes, consts) -> tuple[list, dict]:
    """The ONNX ``nodes`` with every decomposed LayerNorm and exact GELU chain fused, and the
    constants ``consts`` (name -> array) plus the ones the fused nodes add (a LayerNorm
    without ``gamma``/``beta`` gets ones/zeros). Nodes keep their order; a fused node takes
    the place of its chain's last node and the name of that node."""
    from onnx import helper
    ch = _Chains(nodes, consts)
    replace, drop = {}, set()
    added: dict[str, np.ndarray] = {}
    for n in ch.nodes:
        if id(n) in drop:
            continue
        if n.op_type == "ReduceMean":
            hit = _layernorm(ch, n)
            if hit is None:
                continue
            removed, x, eps, gamma, beta, axis, out = hit
            last = removed[-1]
            base = last.name or out
            ins = [x]
            for what, name, fill in (("scale", gamma, 1.0), ("bias", beta, 0.0)):
                if name is None:
                    name = f"{base}.{what}"
                    added[name] = np.array([fill], np.float32)      # broadcast by the importer
                ins.append(name)
            fused = helper.make_node("LayerNormalization", ins, [out], name=last.name,
                                     axis=axis, epsilon=eps)
        elif n.op_type == "Erf":
            hit = _gelu(ch, n)
            if hit is None:
                continue
            removed, x, out = hit
            last = removed[-1]
            fused = helper.make_node("Gelu", [x], [out], name=last.name)
        else:
            continue
        drop.update(id(r) for r in removed)
        replace[id(removed[-1])] = fused
    out_nodes = [replace.get(id(n), n) for n in ch.nodes
                 if id(n) not in drop or id(n) in replace]
    return out_nodes, added
