"""The float executor on the mobile-network nodes against direct NCHW numpy formulas
(float64), with shapes where C, H and W differ so that a wrong broadcast axis shows."""

import numpy as np
import pytest

from fpxint_hw.float_exec import FloatExecutor, run_float
from fpxint_hw.graph import (Add, Concat, Graph, HardSigmoid, HardSwish, Input, LeakyRelu, Mul,
                             Pad, PRelu, Relu, Scale, Sigmoid, GlobalAvgPool)

RNG = np.random.default_rng(7)
X_MAP = (RNG.standard_normal((2, 3, 4, 5)) * 4).astype(np.float32)      # N, C=3, H=4, W=5
X_VEC = (RNG.standard_normal((2, 6)) * 4).astype(np.float32)


def close(ours, ref):
    assert ours.dtype == np.float32 and ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-6)


def one_node(node, x, params=None):
    """Run ``x`` through a graph of the input and ``node``."""
    g = Graph((Input(name="x", shape=x.shape[1:]), node), params or {})
    return run_float(g, x)


def test_hardsigmoid_uses_alpha_and_beta():
    x = X_MAP.astype(np.float64)
    close(one_node(HardSigmoid(name="h", inputs=("x",), alpha=0.3, beta=0.4), X_MAP),
          np.clip(0.3 * x + 0.4, 0, 1))
    close(one_node(HardSigmoid(name="h", inputs=("x",), alpha=1 / 6, beta=0.5), X_MAP),
          np.clip(x / 6 + 0.5, 0, 1))


def test_hardswish():
    x = X_MAP.astype(np.float64)
    close(one_node(HardSwish(name="h", inputs=("x",)), X_MAP), x * np.clip(x / 6 + 0.5, 0, 1))


def test_sigmoid_without_overflow_at_large_inputs():
    x = np.float32([[-200, -88, -20, -1, 0, 1, 20, 88, 200]])
    with np.errstate(over="raise", invalid="raise"):
        out = one_node(Sigmoid(name="s", inputs=("x",)), x)
    close(out, 1 / (1 + np.exp(-x.astype(np.float64))))
    close(one_node(Sigmoid(name="s", inputs=("x",)), X_MAP),
          1 / (1 + np.exp(-X_MAP.astype(np.float64))))


def test_leakyrelu():
    x = X_MAP.astype(np.float64)
    close(one_node(LeakyRelu(name="l", inputs=("x",), alpha=0.1), X_MAP),
          np.where(x >= 0, x, 0.1 * x))


@pytest.mark.parametrize("x", [X_MAP, X_VEC], ids=["map", "vector"])
def test_prelu_slope_per_channel_or_one(x):
    c = x.shape[1]
    per = np.linspace(-0.5, 0.9, c).astype(np.float32)
    bshape = (1, c) + (1,) * (x.ndim - 2)
    xd = x.astype(np.float64)
    close(one_node(PRelu(name="p", inputs=("x",), slope="s"), x, {"s": per}),
          np.where(xd >= 0, xd, xd * per.reshape(bshape)))
    close(one_node(PRelu(name="p", inputs=("x",), slope="s"), x, {"s": np.float32([0.25])}),
          np.where(xd >= 0, xd, xd * 0.25))


@pytest.mark.parametrize("x", [X_MAP, X_VEC], ids=["map", "vector"])
def test_scale_per_channel_weight_and_bias(x):
    c = x.shape[1]
    w = np.linspace(-2, 3, c).astype(np.float32)
    b = np.linspace(0.5, -1, c).astype(np.float32)
    bshape = (1, c) + (1,) * (x.ndim - 2)
    xd = x.astype(np.float64)
    close(one_node(Scale(name="s", inputs=("x",), weight="w", bias="b"), x, {"w": w, "b": b}),
          xd * w.reshape(bshape) + b.reshape(bshape))
    close(one_node(Scale(name="s", inputs=("x",), weight="w"), x, {"w": np.float32([1.5])}),
          xd * 1.5)


@pytest.mark.parametrize("gate_first", [False, True])
def test_mul_gate_broadcasts_over_h_and_w(gate_first):
    """SE: a (C, 1, 1) gate from the pooled map times the (C, H, W) map, in either order."""
    pooled = Sigmoid(name="g", inputs=("p",))
    ins = ("g", "x") if gate_first else ("x", "g")
    g = Graph((Input(name="x", shape=(3, 4, 5)), GlobalAvgPool(name="p", inputs=("x",)),
               pooled, Mul(name="m", inputs=ins)), {})
    x = X_MAP.astype(np.float64)
    gate = 1 / (1 + np.exp(-x.mean(axis=(2, 3), keepdims=True)))
    close(run_float(g, X_MAP), x * gate)


def test_mul_of_equal_shapes():
    g = Graph((Input(name="x", shape=(3, 4, 5)), Relu(name="r", inputs=("x",)),
               Mul(name="m", inputs=("r", "x"))), {})
    x = X_MAP.astype(np.float64)
    close(run_float(g, X_MAP), np.maximum(x, 0) * x)


@pytest.mark.parametrize("x", [X_MAP, X_VEC], ids=["map", "vector"])
def test_concat_on_channels(x):
    g = Graph((Input(name="x", shape=x.shape[1:]), Relu(name="r", inputs=("x",)),
               Sigmoid(name="s", inputs=("x",)), Concat(name="c", inputs=("r", "x", "s"))), {})
    xd = x.astype(np.float64)
    ref = np.concatenate([np.maximum(xd, 0), xd, 1 / (1 + np.exp(-xd))], axis=1)
    close(run_float(g, x), ref)


def test_pad_constant_asymmetric():
    ref = np.full((2, 3, 4 + 1 + 3, 5 + 2 + 0), -0.75)
    ref[:, :, 1:5, 2:7] = X_MAP
    close(one_node(Pad(name="p", inputs=("x",), padding=(1, 2, 3, 0), value=-0.75), X_MAP), ref)


def test_zero_pad_owns_its_output_so_an_in_place_relu_keeps_its_input():
    """A Pad of (0, 0, 0, 0) must not hand its input on: the ReLU after it works in place
    while the input is still read by the Add."""
    g = Graph((Input(name="x", shape=(3, 4, 5)), Scale(name="s", inputs=("x",), weight="w"),
               Pad(name="p", inputs=("s",)), Relu(name="r", inputs=("p",)),
               Add(name="a", inputs=("r", "s"))), {"w": np.float32([1.0])})
    x = X_MAP.astype(np.float64)
    close(FloatExecutor(g)(X_MAP), np.maximum(x, 0) + x)
