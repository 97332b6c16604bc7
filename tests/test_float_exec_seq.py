"""Sequence nodes (T, F) of the graph and the float executor, each against an independent
numpy / math formula; their shape rules and errors."""

import math

import numpy as np
import pytest

from fpxint_hw.errors import InputError
from fpxint_hw.float_exec import FloatExecutor
from fpxint_hw.graph import (Add, Concat, Gelu, Graph, Input, LayerNorm, Linear, MatMul, Scale,
                             Softmax)


def _run(nodes, params, x, capture=None):
    g = Graph(tuple(nodes), params)
    out, acts = FloatExecutor(g).run(x, capture=capture)
    return g, out, acts


def test_layernorm_over_features_matches_the_formula():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((2, 5, 16)) * 3 + 1).astype(np.float32)
    w = rng.uniform(0.5, 1.5, 16).astype(np.float32)
    b = rng.standard_normal(16).astype(np.float32)
    _, y, _ = _run([Input(name="x", shape=(5, 16)),
                    LayerNorm(name="ln", inputs=("x",), weight="w", bias="b", eps=1e-5)],
                   {"w": w, "b": b}, x)
    x64 = x.astype(np.float64)
    ref = np.empty_like(x64)
    for n in range(2):
        for t in range(5):
            v = x64[n, t]
            mu = sum(v) / len(v)
            var = sum((e - mu) ** 2 for e in v) / len(v)        # biased, as torch
            ref[n, t] = (v - mu) / math.sqrt(var + 1e-5) * w + b
    assert y.shape == (2, 5, 16) and y.dtype == np.float32
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


def test_gelu_matches_math_erf_into_both_tails():
    x = np.concatenate([np.linspace(-12, 12, 4001), [-0.0, 1e-8, -1e-8]]).astype(np.float32)
    _, y, _ = _run([Input(name="x", shape=(x.size,)), Gelu(name="g", inputs=("x",))], {},
                   x[None])
    x64 = x.astype(np.float64)
    ref = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x64])
    core = np.abs(x64) <= 3
    np.testing.assert_allclose(y[0][core], ref[core], rtol=3e-7, atol=1e-12)
    # in the negative tail 1 + erf cancels in float64 too: the same function as erfc there
    ref = np.array([0.5 * v * math.erfc(-v / math.sqrt(2)) for v in x64])
    big = np.abs(ref) > 1e-30
    # relative error everywhere, the far negative tail (GELU ~ 1e-30) included
    assert np.max(np.abs(y[0][big] - ref[big]) / np.abs(ref[big])) < 3e-7
    assert np.all(np.abs(y[0][~big]) < 1e-30)


def test_softmax_per_head_sums_to_one_and_equals_the_exp_formula():
    rng = np.random.default_rng(1)
    heads, t = 3, 4
    x = (rng.standard_normal((2, t, heads * t)) * 20).astype(np.float32)   # big logits
    _, y, _ = _run([Input(name="x", shape=(t, heads * t)),
                    Softmax(name="s", inputs=("x",), groups=heads)], {}, x)
    x64 = x.astype(np.float64)
    for h in range(heads):
        blk = x64[..., h * t:(h + 1) * t]
        ref = np.exp(blk - blk.max(-1, keepdims=True))
        ref /= ref.sum(-1, keepdims=True)
        np.testing.assert_allclose(y[..., h * t:(h + 1) * t], ref, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(y[..., h * t:(h + 1) * t].sum(-1), 1.0, atol=1e-6)


def test_head_split_matmuls_equal_a_loop_over_heads():
    rng = np.random.default_rng(2)
    n, t, h, d = 2, 5, 3, 4
    q, k, v = (rng.standard_normal((n, t, h * d)).astype(np.float32) for _ in range(3))
    x = np.concatenate([q, k, v], axis=-1)
    # q, k, v as three per-token Linear slices of one input: identity rows
    eye = np.eye(3 * h * d, dtype=np.float32)
    params = {f"{m}.w": eye[i * h * d:(i + 1) * h * d] for i, m in enumerate("qkv")}
    nodes = [Input(name="x", shape=(t, 3 * h * d))]
    nodes += [Linear(name=m, inputs=("x",), weight=f"{m}.w") for m in "qkv"]
    nodes += [MatMul(name="s", inputs=("q", "k"), heads=h, transpose_b=True),
              MatMul(name="c", inputs=("s", "v"), heads=h)]
    g, out, acts = _run(nodes, params, x, capture=["s"])
    ref_s = np.zeros((n, t, h * t))
    ref_c = np.zeros((n, t, h * d))
    for b in range(n):
        for hh in range(h):
            qh, kh, vh = (m[b][:, hh * d:(hh + 1) * d].astype(np.float64) for m in (q, k, v))
            sh = np.array([[sum(qh[i, j] * kh[s, j] for j in range(d)) for s in range(t)]
                           for i in range(t)])
            ref_s[b, :, hh * t:(hh + 1) * t] = sh
            ref_c[b, :, hh * d:(hh + 1) * d] = sh @ vh
    assert g.node("s").shape == (t, h * t) and g.node("c").shape == (t, h * d)
    np.testing.assert_allclose(acts["s"], ref_s, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out, ref_c, rtol=1e-5, atol=1e-4)
    assert g.macs("s") == t * t * h * d and g.macs("c") == t * t * h * d


def test_linear_and_scale_act_per_token_and_the_layout_stays_token_major():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 6)).astype(np.float32)
    w = rng.standard_normal((4, 6)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    sw = rng.standard_normal(4).astype(np.float32)
    g, y, acts = _run([Input(name="x", shape=(3, 6)),
                       Linear(name="fc", inputs=("x",), weight="w", bias="b"),
                       Scale(name="sc", inputs=("fc",), weight="sw")],
                      {"w": w, "b": b, "sw": sw}, x, capture="all")
    ref = np.array([[(w.astype(np.float64) @ x[n, t] + b) * sw for t in range(3)]
                    for n in range(2)])
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(acts["x"], x)          # (N, T, F) is never transposed
    assert g.node("fc").shape == (3, 4) and g.macs("fc") == 3 * 4 * 6


def _graph(nodes, params=None):
    return Graph(tuple(nodes), params or {})


def test_shape_rules_refuse_mismatches_naming_node_and_shapes():
    x = Input(name="x", shape=(4, 6))
    with pytest.raises(InputError, match=r"'s' \(softmax\).*multiple of groups=4"):
        _graph([x, Softmax(name="s", inputs=("x",), groups=4)])
    with pytest.raises(InputError, match=r"'m' \(matmul\).*multiple of heads=4"):
        _graph([x, MatMul(name="m", inputs=("x", "x"), heads=4, transpose_b=True)])
    with pytest.raises(InputError, match=r"'m' \(matmul\).*heads\*S = 2\*4 = 8 features"):
        _graph([x, MatMul(name="m", inputs=("x", "x"), heads=2)])
    with pytest.raises(InputError, match=r"'ln' \(layernorm\).*'w' has shape \(4,\), "
                                         r"expected \(6,\)"):
        _graph([x, LayerNorm(name="ln", inputs=("x",), weight="w", bias="b")],
               {"w": np.ones(4), "b": np.ones(6)})
    with pytest.raises(InputError, match=r"'sc' \(scale\).*expected \(1,\) or \(6,\)"):
        _graph([x, Scale(name="sc", inputs=("x",), weight="w")], {"w": np.ones(4)})
    with pytest.raises(InputError, match=r"'c' \(concat\).*sequence"):
        _graph([x, Concat(name="c", inputs=("x", "x"))])
    img = Input(name="x", shape=(3, 4, 4))
    with pytest.raises(InputError, match=r"'ln' \(layernorm\).*expected \(F,\) or \(T, F\)"):
        _graph([img, LayerNorm(name="ln", inputs=("x",), weight="w", bias="b")],
               {"w": np.ones(4), "b": np.ones(4)})
    with pytest.raises(InputError, match=r"eps must be > 0"):
        LayerNorm(name="ln", inputs=("x",), weight="w", bias="b", eps=0.0)
    with pytest.raises(InputError, match=r"heads must be 1 integers >= 1"):
        MatMul(name="m", inputs=("x", "x"), heads=0)
    # the (T, F) shapes that do fit
    g = _graph([x, MatMul(name="s", inputs=("x", "x"), heads=3, transpose_b=True),
                Softmax(name="p", inputs=("s",), groups=3),
                MatMul(name="c", inputs=("p", "x"), heads=3), Add(name="r", inputs=("c", "x"))])
    assert [n.shape for n in g.nodes] == [(4, 6), (4, 12), (4, 12), (4, 6), (4, 6)]


def test_sequence_graphs_round_trip_through_npz_and_onnx(tmp_path):
    from fpxint_hw.graph import graphs_equal
    from fpxint_hw.io.native import load_graph_npz, save_graph_npz
    from fpxint_hw.io.onnx_export import save_onnx

    g = _graph([Input(name="x", shape=(4, 6)),
                LayerNorm(name="ln", inputs=("x",), weight="w", bias="b", eps=1e-12),
                MatMul(name="s", inputs=("ln", "ln"), heads=3, transpose_b=True),
                Softmax(name="p", inputs=("s",), groups=3),
                MatMul(name="c", inputs=("p", "ln"), heads=3), Gelu(name="g", inputs=("c",))],
               {"w": np.ones(6), "b": np.zeros(6)})
    save_graph_npz(tmp_path / "g.npz", g)
    assert graphs_equal(load_graph_npz(tmp_path / "g.npz"), g)
    pytest.importorskip("onnx", reason="onnx absent")
    from fpxint_hw.io.onnx_import import load_onnx
    save_onnx(g, tmp_path / "g.onnx")
    assert graphs_equal(load_onnx(tmp_path / "g.onnx", fold_bn=False), g)
