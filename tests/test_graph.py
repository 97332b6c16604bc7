"""The graph IR: validation, shape inference, walking, BatchNorm folding."""

import dataclasses

import numpy as np
import pytest

from fpxint_hw.errors import InputError
from fpxint_hw.float_exec import run_float
from fpxint_hw.graph import (OPS, Add, AvgPool, BatchNorm, Clip, Conv2d, Flatten,
                             GlobalAvgPool, Graph, Input, Linear, MaxPool, Relu,
                             fold_batchnorm, graphs_equal)


def small_graph(rng, bn=True, cin=3, hw=9):
    """input -> conv(3x3, s2, pad 1) -> bn -> relu -> conv(dw) -> add -> gap -> flatten -> fc."""
    p = {
        "c1.weight": rng.standard_normal((8, cin, 3, 3)).astype(np.float32),
        "dw.weight": rng.standard_normal((8, 1, 3, 3)).astype(np.float32),
        "dw.bias": rng.standard_normal(8).astype(np.float32),
        "fc.weight": rng.standard_normal((5, 8)).astype(np.float32),
        "fc.bias": rng.standard_normal(5).astype(np.float32),
    }
    nodes = [Input(name="x", shape=(cin, hw, hw)),
             Conv2d(name="c1", inputs=("x",), weight="c1.weight", stride=2, padding=1)]
    last = "c1"
    if bn:
        p.update({"bn.weight": rng.uniform(0.5, 2, 8).astype(np.float32),
                  "bn.bias": rng.standard_normal(8).astype(np.float32),
                  "bn.running_mean": rng.standard_normal(8).astype(np.float32),
                  "bn.running_var": rng.uniform(0.5, 2, 8).astype(np.float32)})
        nodes.append(BatchNorm(name="bn", inputs=("c1",), weight="bn.weight", bias="bn.bias",
                               mean="bn.running_mean", var="bn.running_var"))
        last = "bn"
    nodes += [Relu(name="r", inputs=(last,)),
              Conv2d(name="dw", inputs=("r",), weight="dw.weight", bias="dw.bias", padding=1,
                     groups=8),
              Add(name="add", inputs=("dw", "r")),
              GlobalAvgPool(name="gap", inputs=("add",)),
              Flatten(name="flat", inputs=("gap",)),
              Linear(name="fc", inputs=("flat",), weight="fc.weight", bias="fc.bias")]
    return Graph(tuple(nodes), p, name="small")


def test_shapes_are_inferred_for_every_node():
    g = small_graph(np.random.default_rng(0))
    shapes = {n.name: n.shape for n in g.nodes}
    # 9x9, k3, s2, pad 1 -> floor((9 + 2 - 3) / 2) + 1 = 5
    assert shapes == {"x": (3, 9, 9), "c1": (8, 5, 5), "bn": (8, 5, 5), "r": (8, 5, 5),
                      "dw": (8, 5, 5), "add": (8, 5, 5), "gap": (8, 1, 1), "flat": (8,),
                      "fc": (5,)}
    assert g.input_shape == (3, 9, 9) and g.output_shape == (5,) and g.output == "fc"


def test_nodes_expose_op_inputs_attrs_and_params():
    g = small_graph(np.random.default_rng(0))
    c1, dw, fc = g.node("c1"), g.node("dw"), g.node("fc")
    assert (c1.op, c1.inputs, c1.params) == ("conv", ("x",), ("c1.weight",))
    assert c1.attrs == {"stride": (2, 2), "padding": (1, 1, 1, 1), "dilation": (1, 1),
                        "groups": 1}
    assert dw.params == ("dw.weight", "dw.bias") and dw.attrs["groups"] == 8
    assert fc.op == "linear" and fc.params == ("fc.weight", "fc.bias")
    assert g.node("add").inputs == ("dw", "r")
    assert [n.name for n in g.consumers("r")] == ["dw", "add"]
    assert set(OPS) == {"input", "conv", "batchnorm", "relu", "clip", "maxpool", "avgpool",
                        "global_avgpool", "add", "linear", "flatten", "hardsigmoid",
                        "hardswish", "sigmoid", "leakyrelu", "prelu", "scale", "mul", "concat",
                        "pad", "zero_insert", "upsample", "slice", "layernorm", "gelu", "softmax", "matmul"}
    for n in g.nodes:
        assert all(p in g.params for p in n.params)


def test_params_are_float32_read_only_copies():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 3, 1, 1))            # float64 in
    g = Graph((Input(name="x", shape=(3, 2, 2)),
               Conv2d(name="c", inputs=("x",), weight="c.weight")), {"c.weight": w})
    assert g.params["c.weight"].dtype == np.float32
    with pytest.raises(ValueError):
        g.params["c.weight"][0] = 1.0
    with pytest.raises(TypeError):
        g.params["new"] = w
    w[:] = 0                                          # the caller's array is not shared
    assert np.any(g.params["c.weight"] != 0)


def test_macs_count_conv_and_linear():
    g = small_graph(np.random.default_rng(0), bn=False)
    # c1: 8*5*5 outputs * 3*3*3; dw: 8*5*5 * 1*3*3; fc: 5*8
    assert g.macs("c1") == 8 * 25 * 27
    assert g.macs("dw") == 8 * 25 * 9
    assert g.macs() == 8 * 25 * 27 + 8 * 25 * 9 + 40


@pytest.mark.parametrize("k,s,d,pads,size,expect", [
    (3, 1, 1, (1, 1, 1, 1), 7, 7),
    (3, 2, 1, (0, 0, 1, 1), 224, 112),      # TF "SAME", asymmetric
    (5, 2, 1, (1, 1, 2, 2), 28, 14),
    (3, 1, 2, (2, 2, 2, 2), 10, 10),        # dilation 2
    (7, 2, 1, (3, 3, 3, 3), 224, 112),
    (1, 2, 1, (0, 0, 0, 0), 56, 28),
])
def test_conv_output_size(k, s, d, pads, size, expect):
    w = np.zeros((2, 1, k, k), np.float32)
    g = Graph((Input(name="x", shape=(1, size, size)),
               Conv2d(name="c", inputs=("x",), weight="w", stride=s, dilation=d,
                      padding=pads)), {"w": w})
    assert g.output_shape == (2, expect, expect)


def test_pool_shapes():
    nodes = (Input(name="x", shape=(4, 112, 112)),
             MaxPool(name="mp", inputs=("x",), kernel=3, stride=2, padding=1),
             AvgPool(name="ap", inputs=("mp",), kernel=2, stride=2),
             Clip(name="c6", inputs=("ap",), lo=0, hi=6))
    g = Graph(nodes, {})
    assert [n.shape for n in g.nodes] == [(4, 112, 112), (4, 56, 56), (4, 28, 28), (4, 28, 28)]


@pytest.mark.parametrize("make, words", [
    (lambda p: (Input(name="x", shape=(3, 8, 8)),
                Conv2d(name="c", inputs=("x",), weight="missing.weight")),
     ["'c'", "'missing.weight'", "missing"]),
    (lambda p: (Input(name="x", shape=(3, 8, 8)),
                Conv2d(name="c", inputs=("x",), weight="w5")),
     ["'c'", "'w5'", "(4, 5, 3, 3)"]),
    (lambda p: (Input(name="x", shape=(3, 8, 8)),
                Relu(name="r", inputs=("nowhere",))),
     ["'r'", "'nowhere'"]),
    (lambda p: (Input(name="x", shape=(3, 8, 8)), Relu(name="x", inputs=("x",))),
     ["'x'", "twice"]),
    (lambda p: (Input(name="x", shape=(3, 8, 8)),
                Conv2d(name="c", inputs=("x",), weight="w3"), Add(name="a", inputs=("c", "x"))),
     ["'a'", "(4, 6, 6)", "(3, 8, 8)"]),
    (lambda p: (Input(name="x", shape=(3, 8, 8)),
                Linear(name="fc", inputs=("x",), weight="w3")),
     ["'fc'", "(3, 8, 8)", "(F,)"]),
    (lambda p: (Input(name="x", shape=(3, 2, 2)),
                Conv2d(name="c", inputs=("x",), weight="w3")),
     ["'c'", "too small"]),
])
def test_invalid_graphs_name_node_parameter_and_value(make, words):
    rng = np.random.default_rng(0)
    p = {"w3": rng.standard_normal((4, 3, 3, 3)), "w5": rng.standard_normal((4, 5, 3, 3))}
    nodes = make(p)
    used = {q for n in nodes for q in n.params if q in p}
    with pytest.raises(InputError) as e:
        Graph(nodes, {k: p[k] for k in used})
    for w in words:
        assert w in str(e.value)


def test_unused_and_non_finite_parameters_are_rejected():
    x = Input(name="x", shape=(3, 4, 4))
    with pytest.raises(InputError, match="'stray'"):
        Graph((x, Relu(name="r", inputs=("x",))), {"stray": np.zeros(3)})
    w = np.zeros((2, 3, 1, 1), np.float32)
    w[0, 0, 0, 0] = np.nan
    with pytest.raises(InputError, match="'w'.*non-finite"):
        Graph((x, Conv2d(name="c", inputs=("x",), weight="w")), {"w": w})


@pytest.mark.parametrize("bad", [
    lambda: Conv2d(name="c", inputs=("x",), weight="w", stride=0),
    lambda: Conv2d(name="c", inputs=("x",), weight="w", padding=(1, 2, 3)),
    lambda: Conv2d(name="c", inputs=("x",), weight="w", groups=0),
    lambda: MaxPool(name="m", inputs=("x",), kernel=2, padding=2),
    lambda: Clip(name="c", inputs=("x",), lo=6, hi=0),
    lambda: BatchNorm(name="b", inputs=("x",), weight="w", bias="b", mean="m", var="v", eps=0),
    lambda: Add(name="a", inputs=("x",)),
    lambda: Relu(name="", inputs=("x",)),
])
def test_invalid_attributes_are_rejected(bad):
    with pytest.raises(InputError):
        bad()


def test_fold_batchnorm_keeps_the_function_and_names():
    rng = np.random.default_rng(1)
    g = small_graph(rng)
    f = fold_batchnorm(g)
    assert "bn" not in f and not any(n.op == "batchnorm" for n in f.nodes)
    assert f.node("c1").bias == "c1.bias" and f.node("r").inputs == ("c1",)
    assert "bn.weight" not in f.params and "c1.weight" in f.params
    x = rng.standard_normal((3, 3, 9, 9)).astype(np.float32)
    ref, out = run_float(g, x), run_float(f, x)
    assert np.max(np.abs(out - ref)) <= 1e-5 * np.max(np.abs(ref))
    # by hand: BN(conv(x)) = conv(x) * s + (beta - mean * s)
    p = g.params
    s = p["bn.weight"] / np.sqrt(p["bn.running_var"] + 1e-5)
    np.testing.assert_allclose(f.params["c1.weight"], p["c1.weight"] * s[:, None, None, None],
                               rtol=1e-6)
    np.testing.assert_allclose(f.params["c1.bias"], p["bn.bias"] - p["bn.running_mean"] * s,
                               rtol=1e-5, atol=1e-6)


def test_fold_leaves_a_batchnorm_whose_conv_has_other_readers():
    rng = np.random.default_rng(2)
    g = small_graph(rng)
    nodes = list(g.nodes)
    # make the add read c1 too: c1 now has two readers, so bn must stay
    nodes[5] = dataclasses.replace(nodes[5], inputs=("dw", "c1"))
    g2 = g.replace(nodes=tuple(nodes))
    assert "bn" in fold_batchnorm(g2)


def test_graph_replace_and_equality():
    g = small_graph(np.random.default_rng(3))
    assert graphs_equal(g, g.replace())
    p = dict(g.params)
    p["fc.bias"] = p["fc.bias"] + 1
    assert not graphs_equal(g, g.replace(params=p))
    assert "fc" in g.summary() and "conv" in g.summary()


def test_tensor_size_limit_at_its_edge():
    """Every tensor a graph needs is at most 2^27 elements per sample: exactly that many is a
    graph, one more (input, padded input or unfolded conv input) is refused by name."""
    from fpxint_hw.graph import MAX_TENSOR_ELEMENTS
    assert MAX_TENSOR_ELEMENTS == 2 ** 27
    Graph((Input(name="x", shape=(2 ** 27,)),), {})
    with pytest.raises(InputError, match=r"'x'.*\(134217729,\) has 134,217,729 elements"):
        Input(name="x", shape=(2 ** 27 + 1,))

    h, w = 2 ** 13, 2 ** 14

    def pooled(left):
        return Graph((Input(name="x", shape=(1, h, w - 2)),
                      MaxPool(name="p", inputs=("x",), kernel=(1, 4), padding=(0, left, 0, 1))),
                     {})
    assert pooled(1).node("p").shape == (1, h, w - 3)            # padded input: 2^27
    with pytest.raises(InputError, match=r"'p'.*padded input \(1, 8192, 16385\)"):
        pooled(2)

    def conv(width):           # a 1x2 kernel unfolds (1, H, W) to (H * (W - 1), 2)
        k = np.zeros((1, 1, 1, 2), np.float32)
        return Graph((Input(name="x", shape=(1, h, width)),
                      Conv2d(name="c", inputs=("x",), weight="c.w")), {"c.w": k})
    conv(2 ** 13 + 1)                                             # unfolded: 2^27
    with pytest.raises(InputError, match=r"'c'.*unfolded.*134,234,112 elements"):
        conv(2 ** 13 + 2)


def test_gate_mul_concat_pad_and_channel_parameter_shapes():
    """The shape rules of the mobile-network ops, and the errors at their edges."""
    from fpxint_hw.graph import Concat, Mul, Pad, PRelu, Scale, Sigmoid
    x = Input(name="x", shape=(4, 5, 6))
    gate = GlobalAvgPool(name="p", inputs=("x",))
    s = Sigmoid(name="s", inputs=("p",))
    for ins in (("x", "s"), ("s", "x")):
        g = Graph((x, gate, s, Mul(name="m", inputs=ins)), {})
        assert g.node("m").shape == (4, 5, 6)
    g = Graph((x, Concat(name="c", inputs=("x", "x", "x")),
               Pad(name="pd", inputs=("c",), padding=(1, 2, 0, 3))), {})
    assert g.node("c").shape == (12, 5, 6) and g.node("pd").shape == (12, 6, 11)
    with pytest.raises(InputError, match="two or more"):
        Concat(name="c", inputs=("x",))
    with pytest.raises(InputError, match="only the channel count may differ"):
        Graph((x, gate, Concat(name="c", inputs=("x", "p"))), {})
    with pytest.raises(InputError, match=r"neither the same shape nor a \(C, 1, 1\) gate"):
        Graph((x, gate, Flatten(name="f", inputs=("p",)), Mul(name="m", inputs=("x", "f"))),
              {})
    for node in (PRelu(name="a", inputs=("x",), slope="k"),
                 Scale(name="a", inputs=("x",), weight="k")):
        assert Graph((x, node), {"k": np.ones(4)}).node("a").shape == (4, 5, 6)
        assert Graph((x, node), {"k": np.ones(1)}).node("a").shape == (4, 5, 6)
        with pytest.raises(InputError, match=r"'k' has shape \(3,\), expected \(1,\) or \(4,\)"):
            Graph((x, node), {"k": np.ones(3)})
