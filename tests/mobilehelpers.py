"""Helpers of the mobile-op tests: a graph with every mobile-network op (a squeeze-and-
excitation block, two branches joined by a concat, PRelu, Scale, Pad before a conv) and an
integer reference of the new integer ops written with Python ints and Fractions, apart from
the golden model's code."""

from fractions import Fraction

import numpy as np

from fpxint_hw.graph import (Concat, Conv2d, Flatten, GlobalAvgPool, Graph, HardSigmoid,
                             HardSwish, Input, LeakyRelu, Linear, Mul, Pad, PRelu, Relu,
                             Scale, Sigmoid)


def mobile_graph(seed: int = 0, gate_first: bool = False) -> Graph:
    """Conv -> HardSwish -> SE block (global pool, 1x1 conv, ReLU, 1x1 conv, HardSigmoid,
    gate x map) -> a LeakyRelu branch and a Sigmoid branch -> Concat -> Scale (one zero weight) ->
    per-channel PRelu -> Pad (value 0.25) -> strided conv -> one-slope PRelu ->
    global pool -> classifier."""
    rng = np.random.default_rng(seed)
    p = {}

    def conv(name, cin, cout, k, groups=1):
        fan = cin // groups * k * k
        p[f"{name}.w"] = rng.standard_normal((cout, cin // groups, k, k)) * np.sqrt(2 / fan)
        p[f"{name}.b"] = 0.2 * rng.standard_normal(cout)
        return dict(weight=f"{name}.w", bias=f"{name}.b", groups=groups)

    p["pr.s"] = rng.uniform(0.05, 0.4, 8)
    p["sc.w"] = rng.uniform(-1.5, 1.5, 8)
    p["sc.w"][3] = 0.0
    p["sc.b"] = 0.3 * rng.standard_normal(8)
    p["pr1.s"] = np.array([0.2])
    nodes = [Input(name="x", shape=(3, 9, 8)),
             Conv2d(name="c1", inputs=("x",), padding=1, **conv("c1", 3, 8, 3)),
             HardSwish(name="hs", inputs=("c1",)),
             # squeeze and excitation
             GlobalAvgPool(name="se_pool", inputs=("hs",)),
             Conv2d(name="se_fc1", inputs=("se_pool",), **conv("se_fc1", 8, 4, 1)),
             Relu(name="se_relu", inputs=("se_fc1",)),
             Conv2d(name="se_fc2", inputs=("se_relu",), **conv("se_fc2", 4, 8, 1)),
             HardSigmoid(name="se_gate", inputs=("se_fc2",), alpha=1 / 6, beta=0.5),
             Mul(name="se_mul", inputs=(("se_gate", "hs") if gate_first else ("hs", "se_gate"))),
             # two branches, concatenated
             Conv2d(name="b1", inputs=("se_mul",), padding=1, **conv("b1", 8, 4, 3)),
             LeakyRelu(name="b1_act", inputs=("b1",), alpha=0.1),
             Conv2d(name="b2", inputs=("se_mul",), **conv("b2", 8, 4, 1)),
             Sigmoid(name="b2_act", inputs=("b2",)),
             Concat(name="cat", inputs=("b1_act", "b2_act")),
             Scale(name="sc", inputs=("cat",), weight="sc.w", bias="sc.b"),
             PRelu(name="pr", inputs=("sc",), slope="pr.s"),
             Pad(name="pad", inputs=("pr",), padding=(1, 0, 2, 1), value=0.25),
             Conv2d(name="c2", inputs=("pad",), stride=2, **conv("c2", 8, 6, 3)),
             PRelu(name="pr1", inputs=("c2",), slope="pr1.s"),
             GlobalAvgPool(name="gap", inputs=("pr1",)),
             Flatten(name="fl", inputs=("gap",))]
    p["fc.w"] = rng.standard_normal((5, 6)) / np.sqrt(6)
    p["fc.b"] = 0.1 * rng.standard_normal(5)
    nodes.append(Linear(name="fc", inputs=("fl",), weight="fc.w", bias="fc.b"))
    return Graph(tuple(nodes), p, name="mobile")


def _rshift(v: int, n: int, mode: str) -> int:
    """``v / 2^n`` rounded (ties to even, or up), from the definition with Fractions."""
    f = Fraction(v, 1 << n)
    if mode == "half_up":
        return (f + Fraction(1, 2)).__floor__()
    return round(f)


def _clamp(v, lo, hi):
    return min(max(v, lo), hi)


def reference_op(q, args, tensors):
    """The output of mobile op ``q`` (Lookup, Mul, Concat, Scale, Pad) on NCHW / (N, F)
    integer inputs ``args``, element by element in Python ints (int64 array out)."""
    out = q.out
    kind = q.kind
    if kind == "lookup":
        x = args[0]
        res = np.empty(x.shape, dtype=np.int64)
        for idx, v in np.ndenumerate(x):
            row = idx[1] if q.table.shape[0] > 1 else 0
            assert q.index_lo <= v <= q.index_hi
            res[idx] = q.table[row, int(v) - q.index_lo]
        return res
    if kind == "mul":
        a, b = args
        za, zb = tensors[q.inputs[0]].zero_point, tensors[q.inputs[1]].zero_point
        shape = np.broadcast_shapes(a.shape, b.shape)
        a, b = np.broadcast_to(a, shape), np.broadcast_to(b, shape)
        res = np.empty(shape, dtype=np.int64)
        for idx in np.ndindex(*shape):
            p = (int(a[idx]) - za) * (int(b[idx]) - zb) * q.m0
            res[idx] = _clamp(_rshift(p, q.shift, q.mode) + out.zero_point, out.lo, out.hi)
        return res
    if kind == "concat":
        parts = []
        for x, name, m in zip(args, q.inputs, q.multipliers):
            z = tensors[name].zero_point
            part = np.empty(x.shape, dtype=np.int64)
            for idx, v in np.ndenumerate(x):
                part[idx] = _clamp(_rshift((int(v) - z) * m, q.shift, q.mode) + out.zero_point,
                                   out.lo, out.hi)
            parts.append(part)
        return np.concatenate(parts, axis=1)
    if kind == "scale":
        x = args[0]
        z = tensors[q.inputs[0]].zero_point
        rq = q.requant
        res = np.empty(x.shape, dtype=np.int64)
        for idx, v in np.ndenumerate(x):
            c = idx[1]
            acc = int(q.sign[c]) * (int(v) - z) * 2 ** q.frac_bits + int(q.bias[c])
            res[idx] = _clamp(_rshift(acc * int(rq.multiplier[c]), rq.shift, rq.mode)
                              + rq.zero_point, rq.lo, rq.hi)
        return res
    if kind == "pad":
        x = args[0]
        top, left, bottom, right = q.padding
        n, c, h, w = x.shape
        res = np.empty((n, c, h + top + bottom, w + left + right), dtype=np.int64)
        for idx in np.ndindex(*res.shape):
            i, j = idx[2] - top, idx[3] - left
            res[idx] = x[idx[0], idx[1], i, j] if 0 <= i < h and 0 <= j < w else q.value
        return res
    raise AssertionError(f"no reference for {kind}")


#: The op kinds :func:`reference_op` computes.
MOBILE_KINDS = ("lookup", "mul", "concat", "scale", "pad")
