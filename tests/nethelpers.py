"""Helpers shared by the network tests: a graph with every integer op, the onnxruntime oracle
and optional-weight checks."""

import numpy as np
import pytest

from fpxint_hw.graph import (Add, AvgPool, BatchNorm, Clip, Conv2d, Flatten, GlobalAvgPool,
                             Graph, Input, Linear, MaxPool, Relu)


def tiny_graph(seed: int = 0) -> Graph:
    """Every op the integer program supports: grouped, depthwise (dilated, strided) and plain
    convs with BatchNorm, ReLU, ReLU6, a signed Clip, max/avg pooling, residual adds with and
    without ReLU, flatten and a classifier."""
    rng = np.random.default_rng(seed)
    p = {}

    def conv(name, cin, cout, k, groups=1, bias=False):
        p[f"{name}.w"] = rng.standard_normal((cout, cin // groups, k, k)) * np.sqrt(2 / (cin // groups * k * k))
        if bias:
            p[f"{name}.b"] = 0.1 * rng.standard_normal(cout)
        return dict(weight=f"{name}.w", bias=f"{name}.b" if bias else None, groups=groups)

    def bn(name, c):
        p[f"{name}.g"] = rng.uniform(0.5, 1.5, c)
        p[f"{name}.b"] = 0.2 * rng.standard_normal(c)
        p[f"{name}.m"] = 0.1 * rng.standard_normal(c)
        p[f"{name}.v"] = rng.uniform(0.5, 2.0, c)
        return BatchNorm(name=name, inputs=(name[:-3],), weight=f"{name}.g", bias=f"{name}.b",
                         mean=f"{name}.m", var=f"{name}.v")

    nodes = [Input(name="x", shape=(4, 13, 11))]
    nodes.append(Conv2d(name="c1", inputs=("x",), stride=1, padding=1, **conv("c1", 4, 8, 3)))
    nodes.append(bn("c1_bn", 8))
    nodes.append(Relu(name="r1", inputs=("c1_bn",)))
    nodes.append(Conv2d(name="dw", inputs=("r1",), stride=2, padding=(2, 1, 2, 2), dilation=2,
                        **conv("dw", 8, 8, 3, groups=8, bias=True)))
    nodes.append(Clip(name="r6", inputs=("dw",), lo=0.0, hi=6.0))
    nodes.append(Conv2d(name="g2", inputs=("r6",), padding=1, **conv("g2", 8, 8, 3, groups=2)))
    nodes.append(bn("g2_bn", 8))
    nodes.append(MaxPool(name="mp", inputs=("r6",), kernel=3, stride=1, padding=1))
    nodes.append(Add(name="add1", inputs=("g2_bn", "mp")))                 # signed add
    nodes.append(Clip(name="cl", inputs=("add1",), lo=-1.5, hi=2.0))       # signed clip
    nodes.append(Conv2d(name="c3", inputs=("cl",), padding=0, **conv("c3", 8, 8, 1, bias=True)))
    nodes.append(Add(name="add2", inputs=("c3", "cl")))
    nodes.append(Relu(name="r2", inputs=("add2",)))
    nodes.append(AvgPool(name="ap", inputs=("r2",), kernel=2, stride=2, padding=(0, 0, 1, 1)))
    nodes.append(GlobalAvgPool(name="gap", inputs=("ap",)))
    nodes.append(Flatten(name="fl", inputs=("gap",)))
    p["fc.w"] = rng.standard_normal((5, 8)) / np.sqrt(8)
    p["fc.b"] = 0.1 * rng.standard_normal(5)
    nodes.append(Linear(name="fc", inputs=("fl",), weight="fc.w", bias="fc.b"))
    return Graph(tuple(nodes), p, name="tiny")


def zero_point_graph(seed: int = 0) -> Graph:
    """A net whose signed tensors get zero points on an unsigned array: a signed input into a
    padded conv, a depthwise conv with asymmetric padding and a strided, dilated one, a
    grouped conv, an add of two zero-point tensors fused with a signed Clip, an add of a
    zero-point and a signed tensor, a conv output read by a max pool (stays signed) and a
    linear layer on a zero-point tensor. Input range: :data:`ZERO_POINT_INPUT`."""
    rng = np.random.default_rng(seed)
    p = {}

    def conv(name, cin, cout, k, groups=1):
        fan_in = cin // groups * k * k
        p[f"{name}.w"] = rng.standard_normal((cout, cin // groups, k, k)) * np.sqrt(2 / fan_in)
        p[f"{name}.b"] = 0.3 * rng.standard_normal(cout)
        return dict(weight=f"{name}.w", bias=f"{name}.b", groups=groups)

    nodes = [Input(name="x", shape=(3, 9, 8)),
             Conv2d(name="c1", inputs=("x",), padding=(1, 1, 1, 1), **conv("c1", 3, 6, 3)),
             Conv2d(name="dw", inputs=("c1",), padding=(1, 2, 1, 0), **conv("dw", 6, 6, 3, 6)),
             Add(name="add1", inputs=("c1", "dw")),
             Clip(name="cl", inputs=("add1",), lo=-1.0, hi=1.5),
             Conv2d(name="g2", inputs=("cl",), padding=(1, 1, 1, 1), **conv("g2", 6, 6, 3, 2)),
             Relu(name="r2", inputs=("g2",)),
             Conv2d(name="d2", inputs=("cl",), stride=(2, 2), padding=(2, 1, 2, 2),
                    dilation=(2, 2), **conv("d2", 6, 6, 3, 6)),
             Relu(name="rd2", inputs=("d2",)),
             Conv2d(name="s3", inputs=("r2",), **conv("s3", 6, 6, 1)),
             MaxPool(name="mp", inputs=("s3",), kernel=(3, 3), padding=(1, 1, 1, 1)),
             Add(name="add3", inputs=("cl", "mp")),
             GlobalAvgPool(name="gap1", inputs=("add3",)),
             GlobalAvgPool(name="gap2", inputs=("rd2",)),
             Add(name="add4", inputs=("gap1", "gap2")),
             Flatten(name="fl", inputs=("add4",))]
    p["fc1.w"] = rng.standard_normal((8, 6)) / np.sqrt(6)
    p["fc1.b"] = 0.2 * rng.standard_normal(8)
    p["fc2.w"] = rng.standard_normal((5, 8)) / np.sqrt(8)
    p["fc2.b"] = 0.1 * rng.standard_normal(5)
    nodes += [Linear(name="fc1", inputs=("fl",), weight="fc1.w", bias="fc1.b"),
              Linear(name="fc2", inputs=("fc1",), weight="fc2.w", bias="fc2.b")]
    return Graph(tuple(nodes), p, name="zero_points")


#: The real range of :func:`zero_point_graph`'s input.
ZERO_POINT_INPUT = (-1.0, 1.5)


def ref_conv(x, w, b, stride, pads, dil, groups):
    """Direct convolution with explicit loops over output pixels, float64."""
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    pt, pl, pb, pr = pads
    xp = np.zeros((n, c, h + pt + pb, wd + pl + pr))
    xp[:, :, pt:pt + h, pl:pl + wd] = x
    ho = (h + pt + pb - dil[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (wd + pl + pr - dil[1] * (kw - 1) - 1) // stride[1] + 1
    og = o // groups
    out = np.zeros((n, o, ho, wo))
    for oc in range(o):
        g = oc // og
        for i in range(ho):
            for j in range(wo):
                patch = xp[:, g * cg:(g + 1) * cg,
                           i * stride[0]:i * stride[0] + dil[0] * (kh - 1) + 1:dil[0],
                           j * stride[1]:j * stride[1] + dil[1] * (kw - 1) + 1:dil[1]]
                out[:, oc, i, j] = (patch * w[oc]).sum(axis=(1, 2, 3))
    if b is not None:
        out += b[None, :, None, None]
    return out


def rel_err(out: np.ndarray, ref: np.ndarray) -> float:
    """max |out - ref| / max |ref|: the relative logit error the acceptance bound is about."""
    return float(np.max(np.abs(out.astype(np.float64) - ref)) / np.max(np.abs(ref)))


def ort_run(graph, x: np.ndarray, batch=None) -> np.ndarray:
    """Run ``graph`` exported to ONNX in onnxruntime (CPU, 2 threads)."""
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is the external oracle")
    from fpxint_hw.io.onnx_export import graph_to_onnx

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(graph_to_onnx(graph, batch=batch).SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    return sess.run(None, {graph.input.name: x})[0]


def need_efficientnet_weights():
    """Skip unless EfficientNet-Lite0's real weights can be loaded here."""
    from fpxint_hw.errors import InputError, ToolMissingError
    from fpxint_hw.models import default_weights
    from fpxint_hw.io.torch_state import torch_available

    try:
        path = default_weights("efficientnet-lite0")
    except (InputError, ToolMissingError) as exc:
        pytest.skip(f"EfficientNet-Lite0 weights absent: {exc}")
    if path.suffix == ".pth" and not torch_available():
        pytest.skip("EfficientNet-Lite0 weights are a .pth and torch is not installed "
                    "(pip install 'fpxint-hw[zoo]', or run 'fpxint convert')")
    return path
