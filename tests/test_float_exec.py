"""The float executor against obviously-correct loop references and against onnxruntime."""

import numpy as np
import pytest

from fpxint_hw.errors import InputError
from fpxint_hw.float_exec import FloatExecutor, float_activations, run_float
from fpxint_hw.graph import (Add, AvgPool, BatchNorm, Clip, Conv2d, Flatten, GlobalAvgPool,
                             Graph, Input, Linear, MaxPool, Relu)

from nethelpers import ref_conv


def ref_pool(x, k, s, pads, kind, count_include_pad=True):
    n, c, h, w = x.shape
    pt, pl, pb, pr = pads
    fill = -np.inf if kind == "max" else 0.0
    xp = np.full((n, c, h + pt + pb, w + pl + pr), fill)
    xp[:, :, pt:pt + h, pl:pl + w] = x
    valid = np.zeros((h + pt + pb, w + pl + pr))
    valid[pt:pt + h, pl:pl + w] = 1
    ho, wo = (h + pt + pb - k[0]) // s[0] + 1, (w + pl + pr - k[1]) // s[1] + 1
    out = np.zeros((n, c, ho, wo))
    for i in range(ho):
        for j in range(wo):
            win = xp[:, :, i * s[0]:i * s[0] + k[0], j * s[1]:j * s[1] + k[1]]
            if kind == "max":
                out[:, :, i, j] = win.max(axis=(2, 3))
            else:
                cnt = k[0] * k[1] if count_include_pad else valid[
                    i * s[0]:i * s[0] + k[0], j * s[1]:j * s[1] + k[1]].sum()
                out[:, :, i, j] = win.sum(axis=(2, 3)) / cnt
    return out


CONV_CASES = [
    # cin, cout, k, stride, pads, dilation, groups, bias
    (3, 8, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1, False),
    (3, 8, 3, (2, 2), (0, 0, 1, 1), (1, 1), 1, True),       # asymmetric TF SAME
    (4, 6, 1, (1, 1), (0, 0, 0, 0), (1, 1), 1, True),       # pointwise
    (4, 6, 1, (2, 2), (0, 0, 0, 0), (1, 1), 1, False),      # strided pointwise
    (5, 7, (3, 2), (2, 1), (2, 0, 1, 3), (1, 1), 1, True),  # rectangular everything
    (4, 4, 3, (1, 1), (2, 2, 2, 2), (2, 2), 1, False),      # dilation
    (8, 8, 3, (1, 1), (1, 1, 1, 1), (1, 1), 8, True),       # depthwise
    (8, 8, 5, (2, 2), (1, 1, 2, 2), (1, 1), 8, False),      # depthwise strided SAME
    (8, 16, 3, (1, 1), (1, 1, 1, 1), (1, 1), 8, False),     # depthwise, multiplier 2
    (8, 12, 3, (2, 2), (1, 1, 1, 1), (1, 1), 4, True),      # grouped
    (6, 6, 3, (1, 1), (1, 1, 1, 1), (2, 1), 2, False),      # grouped + dilated
]


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_matches_direct_loops(case):
    cin, cout, k, stride, pads, dil, groups, bias = case
    kh, kw = (k, k) if isinstance(k, int) else k
    rng = np.random.default_rng(hash(case) % 2 ** 32)
    x = rng.standard_normal((2, cin, 9, 11)).astype(np.float32)
    w = rng.standard_normal((cout, cin // groups, kh, kw)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32) if bias else None
    p = {"w": w, **({"b": b} if bias else {})}
    g = Graph((Input(name="x", shape=x.shape[1:]),
               Conv2d(name="c", inputs=("x",), weight="w", bias="b" if bias else None,
                      stride=stride, padding=pads, dilation=dil, groups=groups)), p)
    out = run_float(g, x)
    ref = ref_conv(x.astype(np.float64), w.astype(np.float64), b, stride, pads, dil, groups)
    assert out.shape == ref.shape == (2, *g.output_shape)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("k,s,pads", [(3, 2, (1, 1, 1, 1)), (2, 2, (0, 0, 0, 0)),
                                      (3, 1, (0, 1, 2, 0)), ((2, 3), (1, 2), (1, 0, 0, 2))])
def test_pools_match_direct_loops(k, s, pads):
    k = (k, k) if isinstance(k, int) else k
    s = (s, s) if isinstance(s, int) else s
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 8, 9)).astype(np.float32)
    for node, ref in [
        (MaxPool(name="p", inputs=("x",), kernel=k, stride=s, padding=pads),
         ref_pool(x, k, s, pads, "max")),
        (AvgPool(name="p", inputs=("x",), kernel=k, stride=s, padding=pads),
         ref_pool(x, k, s, pads, "avg", True)),
        (AvgPool(name="p", inputs=("x",), kernel=k, stride=s, padding=pads,
                 count_include_pad=False),
         ref_pool(x, k, s, pads, "avg", False)),
    ]:
        g = Graph((Input(name="x", shape=(3, 8, 9)), node), {})
        np.testing.assert_allclose(run_float(g, x), ref, rtol=1e-6, atol=1e-6)


def test_elementwise_ops_global_pool_flatten_linear_batchnorm():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, 5, 6)).astype(np.float32) * 5
    p = {"fc.w": rng.standard_normal((7, 120)).astype(np.float32),
         "fc.b": rng.standard_normal(7).astype(np.float32),
         "g": rng.uniform(0.5, 2, 4).astype(np.float32), "b": rng.standard_normal(4),
         "m": rng.standard_normal(4), "v": rng.uniform(0.1, 3, 4)}
    g = Graph((Input(name="x", shape=(4, 5, 6)),
               BatchNorm(name="bn", inputs=("x",), weight="g", bias="b", mean="m", var="v",
                         eps=1e-3),
               Relu(name="r", inputs=("bn",)),
               Clip(name="c", inputs=("x",), lo=-1.5, hi=6),
               Add(name="a", inputs=("r", "c")),
               GlobalAvgPool(name="gap", inputs=("a",)),
               Flatten(name="f", inputs=("a",)),
               Linear(name="fc", inputs=("f",), weight="fc.w", bias="fc.b")), p, output="fc")
    acts = float_activations(g, x)
    v = {k: np.asarray(p[k], np.float64) for k in ("g", "b", "m", "v")}
    bn = ((x - v["m"][:, None, None]) / np.sqrt(v["v"][:, None, None] + np.float32(1e-3))
          * v["g"][:, None, None] + v["b"][:, None, None])
    a = np.maximum(bn, 0) + np.clip(x, -1.5, 6)
    np.testing.assert_allclose(acts["bn"], bn, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(acts["a"], a, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(acts["gap"], a.mean(axis=(2, 3), keepdims=True), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_array_equal(acts["f"], acts["a"].reshape(3, -1))   # C-major flatten
    np.testing.assert_allclose(acts["fc"], a.reshape(3, -1) @ p["fc.w"].T + p["fc.b"],
                               rtol=1e-4, atol=1e-4)
    assert set(acts) == {n.name for n in g.nodes}
    assert all(acts[n.name].shape == (3, *n.shape) for n in g.nodes)


def test_capture_hook_and_output_agree():
    from test_graph import small_graph
    g = small_graph(np.random.default_rng(4))
    x = np.random.default_rng(5).standard_normal((2, 3, 9, 9)).astype(np.float32)
    ex = FloatExecutor(g)
    seen = []
    out, cap = ex.run(x, capture=["r", "fc"], hook=lambda n, v: seen.append(n.name))
    assert seen == [n.name for n in g.nodes]
    assert set(cap) == {"r", "fc"}
    np.testing.assert_array_equal(cap["fc"], out)
    np.testing.assert_array_equal(out, ex(x))
    # batch rows are independent
    np.testing.assert_allclose(ex(x[1:]), out[1:], rtol=1e-6, atol=1e-6)
    with pytest.raises(InputError, match="no node 'nope'"):
        ex.run(x, capture=["nope"])


def test_wrong_input_shape_is_named():
    from test_graph import small_graph
    g = small_graph(np.random.default_rng(4))
    with pytest.raises(InputError, match=r"\(2, 3, 8, 8\).*\(N, 3, 9, 9\)"):
        run_float(g, np.zeros((2, 3, 8, 8), np.float32))
    with pytest.raises(InputError):
        run_float(g, np.zeros((3, 9, 9), np.float32))


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_graphs_match_onnxruntime(case):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is the external oracle")
    from fpxint_hw.io.onnx_export import graph_to_onnx

    cin, cout, k, stride, pads, dil, groups, bias = case
    kh, kw = (k, k) if isinstance(k, int) else k
    rng = np.random.default_rng(7)
    p = {"w": rng.standard_normal((cout, cin // groups, kh, kw)).astype(np.float32)}
    if bias:
        p["b"] = rng.standard_normal(cout).astype(np.float32)
    g = Graph((Input(name="x", shape=(cin, 10, 12)),
               Conv2d(name="c", inputs=("x",), weight="w", bias="b" if bias else None,
                      stride=stride, padding=pads, dilation=dil, groups=groups),
               Clip(name="r6", inputs=("c",), lo=0, hi=6),
               MaxPool(name="mp", inputs=("r6",), kernel=2, stride=1, padding=(0, 0, 1, 1)),
               AvgPool(name="ap", inputs=("mp",), kernel=3, stride=1, padding=1,
                       count_include_pad=False)), p)
    x = rng.standard_normal((2, cin, 10, 12)).astype(np.float32)
    sess = ort.InferenceSession(graph_to_onnx(g).SerializeToString(),
                                providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(run_float(g, x), sess.run(None, {"x": x})[0], rtol=1e-5,
                               atol=1e-5)


def test_callers_input_and_captures_are_never_overwritten():
    rng = np.random.default_rng(9)
    p = {"w": rng.standard_normal((1, 1, 1, 1)).astype(np.float32)}
    g = Graph((Input(name="x", shape=(1, 4, 4)),
               Flatten(name="f", inputs=("x",)),
               Relu(name="r", inputs=("f",)),
               Clip(name="c", inputs=("r",), lo=0, hi=0.5)), {})
    x = rng.standard_normal((3, 1, 4, 4)).astype(np.float32)
    keep = x.copy()
    out, cap = FloatExecutor(g).run(x, capture=["f", "r"])
    np.testing.assert_array_equal(x, keep)
    np.testing.assert_array_equal(cap["f"], keep.reshape(3, -1))
    np.testing.assert_array_equal(cap["r"], np.maximum(keep.reshape(3, -1), 0))
    np.testing.assert_array_equal(out, np.clip(keep.reshape(3, -1), 0, 0.5))
    g2 = Graph((Input(name="x", shape=(1, 4, 4)),
                Conv2d(name="c", inputs=("x",), weight="w"),
                GlobalAvgPool(name="gap", inputs=("c",)),
                Relu(name="r", inputs=("gap",))), p)
    out, cap = FloatExecutor(g2).run(x, capture=["gap"])
    np.testing.assert_allclose(cap["gap"], (keep * p["w"][0, 0, 0, 0]).mean(axis=(2, 3),
                                                                           keepdims=True),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out, np.maximum(cap["gap"], 0))
