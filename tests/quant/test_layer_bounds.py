"""An oracle the program does not share: every layer's integers against the float layer.

The golden model and the simulator run one integer program, so an error in making it (a
multiplier, a shift, a bias, a zero point, a scale) is invisible to every bit-exact test.
Here each layer of every shipped model is checked *in isolation* from outside the program:
the layer's integer input (from the simulator) is dequantized with the tensor's own
``real = unit * (value - zero_point)``, the float layer of the float graph is computed on it
in float64 by the code below (not the program's, not ``float_exec``) with the dequantized
integer weights ``w_unit[c] * sum_k m_k q_k`` and the float bias, and the layer's integer
output, dequantized, must lie within a bound computed here from the formats:

* one rounding: half an output step;
* the bias on the accumulator grid: half an accumulator step, ``M/2`` output steps with
  ``M = w_unit[c] * in_unit / out_unit``;
* the fixed-point multiplier ``M0 / 2^n``: half a unit of ``2^-n`` per accumulator step;
* a host pre-rounding of the accumulator by ``p`` bits: ``M 2^(p-1)`` output steps;
* saturation: the float value is first clipped to the output's real range;
* float64 evaluation: 1e-6 of a step and 1e-9 of the value (in steps); for a classifier's
  accumulator, 2^-40 of the sum of the magnitudes of its products.

A classifier's exact accumulator is checked to half an accumulator step (its bias rounding),
max pooling and flatten exactly. The bound is reached: in every model some requantized
output is more than 0.45 of a step from its float value, and the other terms add a few
hundredths at most, so an exponent off by one, a wrong zero point, a bias one accumulator step off
or a scale 1 % off fails. Beside it: the dequantized weights lie within half a weight step of
the float weights on the format's own step, and every multiplier is the integer nearest to
its ratio of units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from fpxint_hw.graph import (Add, AvgPool, Clip, Conv2d, Flatten, GlobalAvgPool, Linear,
                             MaxPool, Relu, fold_batchnorm)
from fpxint_hw.intsim import Simulator
from fpxint_hw.models import build_model, get_model_info, sample_inputs
from fpxint_hw.quant import expand_graph, for_array
from fpxint_hw.quant import program as P
from fpxint_hw.spec import SeriesFormat, load_array_spec
from fpxint_hw.workflows.network import input_range
from nethelpers import (ZERO_POINT_INPUT, need_efficientnet_weights, ref_conv, tiny_graph,
                        zero_point_graph)

#: Float64 evaluation slack: absolute, in output steps, and relative to the value's size.
FLOAT_TOL, FLOAT_REL = 1e-6, 1e-9
#: Slack on the representation error of an integer multiplier (its float64 derivation).
MULT_SLACK = 1.0 + 2.0 ** -20


# -- float64 layers, written here -------------------------------------------------------------

def conv_f64(x, w, b, stride, pads, dil, groups):
    """ONNX Conv in float64 through im2col: ``x (N, C, H, W)``, ``w (O, C/g, kh, kw)``, pads
    ``(top, left, bottom, right)``."""
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    top, left, bottom, right = pads
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    ho = (h + top + bottom - dil[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (wd + left + right - dil[1] * (kw - 1) - 1) // stride[1] + 1
    taps = [xp[:, :, i * dil[0]:i * dil[0] + (ho - 1) * stride[0] + 1:stride[0],
               j * dil[1]:j * dil[1] + (wo - 1) * stride[1] + 1:stride[1]]
            for i in range(kh) for j in range(kw)]
    cols = np.stack(taps, axis=-1)                            # (N, C, Ho, Wo, kh*kw)
    og = o // groups
    cols = cols.reshape(n, groups, cg, ho, wo, kh * kw).transpose(1, 0, 3, 4, 2, 5)
    cols = cols.reshape(groups, n * ho * wo, cg * kh * kw)
    wm = w.reshape(groups, og, cg * kh * kw).transpose(0, 2, 1)
    out = np.matmul(cols, wm)                                  # (G, N*Ho*Wo, og)
    out = out.reshape(groups, n, ho, wo, og).transpose(1, 0, 4, 2, 3).reshape(n, o, ho, wo)
    return out + b.reshape(1, -1, 1, 1)


def _windows(x, kernel, stride, pads, fill):
    """``(N, C, Ho, Wo, kh*kw)`` windows of ``x`` padded with ``fill``."""
    top, left, bottom, right = pads
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=fill)
    (kh, kw), (sh, sw) = kernel, stride
    ho = (xp.shape[2] - kh) // sh + 1
    wo = (xp.shape[3] - kw) // sw + 1
    return np.stack([xp[:, :, i:i + (ho - 1) * sh + 1:sh, j:j + (wo - 1) * sw + 1:sw]
                     for i in range(kh) for j in range(kw)], axis=-1)


def avgpool_f64(x, node):
    """Window sums of ``x`` and their divisors (the kernel area, or the taps inside the
    input without ``count_include_pad``)."""
    sums = _windows(x, node.kernel, node.stride, node.padding, 0.0).sum(axis=-1)
    if node.count_include_pad:
        count = np.full(sums.shape, float(node.kernel[0] * node.kernel[1]))
    else:
        count = _windows(np.ones_like(x), node.kernel, node.stride, node.padding,
                         0.0).sum(axis=-1)
    return sums, count


def activation_f64(node, v):
    """A float ReLU or Clip node applied to ``v``."""
    if isinstance(node, Relu):
        return np.maximum(v, 0.0)
    assert isinstance(node, Clip), f"{node.name} is a {node.op}, not an activation"
    return np.clip(v, node.lo, node.hi)


def test_conv_f64_matches_the_direct_loops():
    """The im2col float conv above against the loop-per-pixel reference of the network tests,
    on grouped, strided, dilated and asymmetrically padded cases."""
    rng = np.random.default_rng(0)
    for groups, cg, og, k, stride, pads, dil in [(1, 3, 4, 3, (1, 1), (1, 1, 1, 1), (1, 1)),
                                                 (2, 2, 3, 3, (2, 1), (2, 0, 1, 2), (2, 1)),
                                                 (5, 1, 1, 3, (2, 2), (1, 2, 1, 0), (1, 2)),
                                                 (1, 4, 2, 1, (1, 1), (0, 0, 0, 0), (1, 1))]:
        x = rng.standard_normal((2, groups * cg, 9, 8))
        w = rng.standard_normal((groups * og, cg, k, k))
        b = rng.standard_normal(groups * og)
        np.testing.assert_allclose(conv_f64(x, w, b, stride, pads, dil, groups),
                                   ref_conv(x, w, b, stride, pads, dil, groups),
                                   rtol=1e-12, atol=1e-12)


# -- the formats, as the tests read them ------------------------------------------------------

def lane_weights(fmt: SeriesFormat) -> list[int]:
    """``m_k = radix^(T-k)`` from the format's definition: radix ``2^b`` for unsigned
    digits, ``2^(b-1)`` (pow2) or ``2^b - 2`` (free) for signed ones."""
    if not fmt.signed:
        radix = 2 ** fmt.bits
    else:
        radix = 2 ** (fmt.bits - 1) if fmt.scale == "pow2" else 2 ** fmt.bits - 2
    return [radix ** (fmt.terms - k) for k in range(1, fmt.terms + 1)]


def dequantized_weights(q: P.GemmOp) -> np.ndarray:
    """``w_unit[c] * sum_k m_k q_k`` in float64."""
    combined = sum(np.int64(m) * q.w_digits[k].astype(np.int64)
                   for k, m in enumerate(lane_weights(q.w_fmt)))
    unit = np.asarray(q.w_unit, dtype=np.float64).reshape((-1,) + (1,) * (combined.ndim - 1))
    return combined.astype(np.float64) * unit


def real(t: P.QTensor, v) -> np.ndarray:
    """``unit * (value - zero_point)`` (the program's definition of a tensor), float64."""
    return t.unit * (np.asarray(v, dtype=np.float64) - t.zero_point)


def steps_error(t: P.QTensor, y, ideal_real, act=None):
    """``|y - z - clip(act(ideal) / unit, lo - z, hi - z)|`` in output steps."""
    v = ideal_real if act is None else activation_f64(act, ideal_real)
    ideal = np.clip(v / t.unit, t.lo - t.zero_point, t.hi - t.zero_point)
    return np.abs(np.asarray(y, dtype=np.float64) - t.zero_point - ideal)


# -- the check of one layer -------------------------------------------------------------------

def layer_error(q, ins, y, tensors, ref, x_float):
    """``(error, bound)`` arrays of layer ``q`` in units of its output step (of the
    accumulator step for a classifier without requantization); ``ins`` are its integer
    inputs, ``y`` its integer output (NCHW / (N, F)), ``ref`` the folded float graph."""
    node = ref.node(q.node)
    act = None
    if q.name != q.node:            # a fused activation: the float graph's node q.name
        act = ref.node(q.name)
        assert act.inputs == (q.node,), f"{q.name} does not read {q.node}"
    if isinstance(q, P.Quantize):
        t = q.out
        err = steps_error(t, y, np.asarray(x_float, dtype=np.float64))
        return err, np.full(err.shape, 0.5 + FLOAT_TOL)
    if isinstance(q, P.GemmOp):
        return _gemm_error(q, node, act, ins[0], y, tensors[q.inputs[0]], ref)
    if isinstance(q, P.Add):
        assert isinstance(node, Add)
        (ta, tb), t = (tensors[i] for i in q.inputs), q.out
        ra, rb = real(ta, ins[0]), real(tb, ins[1])
        err = steps_error(t, y, ra + rb, act)
        reach = (np.abs(ra) / ta.unit + np.abs(rb) / tb.unit) * 0.5 * 2.0 ** -q.shift
        return err, (0.5 + reach * MULT_SLACK + FLOAT_TOL
                     + FLOAT_REL * np.abs(ra + rb) / t.unit)
    tin, t = tensors[q.inputs[0]], q.out
    xr = real(tin, ins[0])
    if isinstance(q, P.MaxPool):
        assert isinstance(node, MaxPool)
        want = _windows(xr, node.kernel, node.stride, node.padding, -np.inf).max(axis=-1)
        return np.abs(real(t, y) - want), np.zeros(want.shape)
    if isinstance(q, (P.AvgPool, P.GlobalAvgPool)):
        if isinstance(q, P.AvgPool):
            assert isinstance(node, AvgPool)
            sums, count = avgpool_f64(xr, node)
        else:
            assert isinstance(node, GlobalAvgPool)
            sums = xr.sum(axis=(2, 3), keepdims=True)
            count = np.full(sums.shape, float(xr.shape[2] * xr.shape[3]))
        err = steps_error(t, y, sums / count)
        reach = np.abs(sums) / tin.unit * 0.5 * 2.0 ** -q.shift
        return err, 0.5 + reach * MULT_SLACK + FLOAT_TOL + FLOAT_REL * np.abs(sums) / tin.unit
    if isinstance(q, P.Clamp):
        err = steps_error(t, y, activation_f64(node, xr))
        return err, np.full(err.shape, 0.5 + FLOAT_TOL)
    if isinstance(q, P.Flatten):
        assert isinstance(node, Flatten)
        want = xr.reshape(xr.shape[0], -1)
        return np.abs(real(t, y) - want), np.zeros(want.shape)
    raise AssertionError(f"no check for {q.kind} layer {q.name}")


def _gemm_error(q, node, act, x, y, tin, ref):
    w = dequantized_weights(q)
    b = (np.asarray(ref.params[node.bias], dtype=np.float64) if node.bias is not None
         else np.zeros(w.shape[0]))
    if isinstance(node, Conv2d):
        def layer(v, wt, bias):
            return conv_f64(v, wt, bias, node.stride, node.padding, node.dilation, node.groups)
        shape = (1, -1, 1, 1)
    else:
        assert isinstance(node, Linear)

        def layer(v, wt, bias):
            return v @ wt.T + bias
        shape = (1, -1)
    xr = real(tin, x)
    f = layer(xr, w, b)
    acc_unit = (np.asarray(q.w_unit, dtype=np.float64) * tin.unit).reshape(shape)
    if q.requant is None:
        assert act is None
        # the exact accumulator: only the bias was rounded, to its grid
        out_unit = np.asarray(q.out_unit, dtype=np.float64).reshape(shape)
        err = np.abs(np.asarray(y, dtype=np.float64) * out_unit - f) / acc_unit
        size = layer(np.abs(xr), np.abs(w), np.abs(b)) / acc_unit   # sum of |terms|, steps
        return err, 0.5 + FLOAT_TOL + 2.0 ** -40 * size
    t, rq = q.out, q.requant
    m = acc_unit / t.unit                                   # real multiplier per channel
    pre = rq.pre_shift.astype(np.float64).reshape(shape)
    acc = np.abs(f) / acc_unit + 0.5                        # |acc| in accumulator steps
    bound = (0.5 + m / 2                                    # output rounding, bias rounding
             + np.where(pre > 0, m * 2.0 ** (pre - 1), 0.0) * MULT_SLACK   # pre-rounding
             + acc * 0.5 * 2.0 ** -(rq.shift + pre) * MULT_SLACK           # M0's last bit
             + FLOAT_TOL + FLOAT_REL * np.abs(f) / t.unit)
    return steps_error(t, y, f, act), bound


# -- the shipped models -----------------------------------------------------------------------

def _host(w_fmt, a_fmt, **kw):
    """A host program (no array): pre-rounding allowed, 31-bit multipliers."""
    def compile_(graph, rng):
        return expand_graph(graph, w_fmt, a_fmt, "layer", input_range=rng, **kw)
    return compile_


def _array(name):
    def compile_(graph, rng):
        return for_array(graph, load_array_spec(name), name=name, input_range=rng)
    return compile_


#: Program configurations: arrays (zero points on the unsigned ones, 31- and 16-bit M0,
#: free lanes, half-up rounding) and host programs (many terms, so pre-rounding; signed
#: grids; per-tensor free weights; one 8-bit term).
CONFIGS = {
    "default": _array("default"),
    "free": _array("free"),
    "small": _array("small"),
    "halfup": _array("halfup"),
    "host-4x4": _host(SeriesFormat(4, 4, per_channel=True), SeriesFormat(4, 4)),
    "host-signed-halfup": _host(SeriesFormat(4, 3, per_channel=True), SeriesFormat(4, 2),
                                signed_activations=True, mode="half_up"),
    "host-free-per-tensor": _host(SeriesFormat(3, 3, "free"), SeriesFormat(5, 2, "free")),
    "host-8x1": _host(SeriesFormat(8, 1, per_channel=True), SeriesFormat(8, 1)),
}


def _zoo(name, **kw):
    def load():
        info = get_model_info(name)
        if name == "efficientnet-lite0":
            need_efficientnet_weights()
        if "image_size" in kw:             # a ResNet at a small input: same layers, less work
            from fpxint_hw.models.resnet import resnet_builder
            from fpxint_hw.models.synthetic import synthetic_weights
            b = resnet_builder(name, image_size=kw["image_size"])
            graph = b.graph(synthetic_weights(b, seed=0), fold_bn=False)
        else:
            graph = build_model(name, fold_bn=False)
        x = sample_inputs(graph.input_shape, task=info.task, mean=info.mean, std=info.std,
                          limit=kw.get("images", 3)).x
        return graph, x, input_range(info)
    return load


def _test_net(make, rng=None):
    """A test network with every integer op (nethelpers), on seeded inputs in its range."""
    def load():
        graph = make()
        lo, hi = rng if rng is not None else (-2.0, 2.0)
        x = np.random.default_rng(1).uniform(lo, hi, (3, *graph.input_shape))
        return graph, x.astype(np.float32), rng
    return load


MODELS = {
    "tiny": _test_net(tiny_graph),
    "zero-points": _test_net(zero_point_graph, ZERO_POINT_INPUT),
    "mnist-resnet": _zoo("mnist-resnet", images=4),
    "resnet18": _zoo("resnet18", image_size=64, images=2),
    "resnet50": _zoo("resnet50", images=1),
    "efficientnet-lite0": _zoo("efficientnet-lite0", images=2),
}

@dataclass(frozen=True)
class Run:
    """One model compiled for one configuration and run on its inputs."""

    name: str
    program: P.QProgram
    ref: object            # the folded float graph
    x: np.ndarray          # the float inputs
    env: dict              # every layer's integer output, from the simulator


#: The default suite: the test nets and MNIST under every configuration, ResNet-18 (64 x 64
#: photos) and EfficientNet-Lite0 (real weights, two photos) on the default array.
DEFAULT_RUNS = ([(m, c) for m in ("tiny", "zero-points", "mnist-resnet") for c in CONFIGS]
                + [("resnet18", "default"), ("efficientnet-lite0", "default")])
SLOW_RUNS = [("resnet18", "free"), ("resnet50", "default"), ("resnet50", "free"),
             ("efficientnet-lite0", "free")]


@pytest.fixture(scope="module", params=[pytest.param(r, id="-".join(r)) for r in DEFAULT_RUNS]
                + [pytest.param(r, id="-".join(r), marks=pytest.mark.slow) for r in SLOW_RUNS])
def run(request) -> Run:
    """A model and configuration, compiled and simulated once for the tests below."""
    model, config = request.param
    graph, x, rng = MODELS[model]()
    program = CONFIGS[config](graph, rng)
    _, env = Simulator(program).run(x, capture=True)
    return Run(f"{model} ({config})", program, fold_batchnorm(graph), x, env)


def test_every_layer_within_its_format_bound(run):
    program, tensors = run.program, run.program.tensors()
    worst, bad = {}, []
    for q in program.layers:
        err, bound = layer_error(q, [run.env[i] for i in q.inputs], run.env[q.name], tensors,
                                 run.ref, run.x)
        err, bound = np.broadcast_arrays(err, bound)
        over = err > bound
        worst[q.name] = float(err.max())
        if np.any(over):
            i = np.unravel_index(np.argmax(err - bound), err.shape)
            bad.append(f"{q.kind} {q.name}: {int(over.sum())} of {err.size} outputs beyond "
                       f"the bound, worst {float(err[i]):.6f} > {float(bound[i]):.6f} "
                       f"steps at {tuple(int(v) for v in i)}")
    assert not bad, f"{run.name}:\n" + "\n".join(bad)
    # the bound is reached: some requantized output is more than 0.45 of a step off, where
    # the bound is half a step and a few hundredths at most (a tighter bound would fail)
    requantized = [q.name for q in program.layers
                   if isinstance(q, (P.Conv, P.Add)) and q.out is not None]
    assert max(worst[n] for n in requantized) > 0.45


def test_dequantized_weights_within_half_a_step(run):
    """Dequantized integer weights within half a weight step of the float weights, on the
    format's step: the largest weight of a channel (of the tensor, per tensor) on the first
    term's largest digit, ``unit = max |w| / (qmax m_1)``; coarser only where the channel's
    bias needs it (quant/lower.py): on the format's step the bias would take more accumulator
    steps than the layer's widest weighted sum, so the step is ``|b| / (in_unit * widest)``."""
    tensors = run.program.tensors()
    for q in run.program.gemm_layers():
        node = run.ref.node(q.node)
        what = f"{run.name} {q.name}"
        w = np.asarray(run.ref.params[node.weight], dtype=np.float64)
        unit = np.asarray(q.w_unit, dtype=np.float64)
        bshape = (-1,) + (1,) * (w.ndim - 1)
        top = sum(lane_weights(q.w_fmt)) * q.w_fmt.qmax
        want = np.clip(w, -top * unit.reshape(bshape), top * unit.reshape(bshape))
        err = np.abs(dequantized_weights(q) - want) / unit.reshape(bshape)
        assert err.max() <= 0.5 + 1e-9, f"{what}: a dequantized weight is {err.max():.6f} off"
        maxabs = np.abs(w).reshape(w.shape[0], -1).max(axis=1)
        if not q.w_fmt.per_channel:
            maxabs = np.full_like(maxabs, maxabs.max())
        live = maxabs > 0
        fmt_unit = np.where(live, maxabs, 1.0) / (q.w_fmt.qmax * lane_weights(q.w_fmt)[0])
        tin = tensors[q.inputs[0]]
        x_steps = max(abs(tin.lo - tin.zero_point), abs(tin.hi - tin.zero_point))
        b = (np.abs(np.asarray(run.ref.params[node.bias], dtype=np.float64))
             if node.bias is not None else np.zeros(w.shape[0]))
        # the program sums its weights rounded to the format's step (the residual series of a
        # signed format rounds each weight to the nearest multiple of its last step)
        rounded = np.rint(w / fmt_unit.reshape(bshape)) * fmt_unit.reshape(bshape)
        reach = np.abs(rounded).reshape(w.shape[0], -1).sum(axis=1) * x_steps / fmt_unit
        widest = max(1.0, float(np.max(reach[live], initial=0.0)))
        step = b / (tin.unit * widest)
        coarse = live & (fmt_unit < step)
        np.testing.assert_allclose(unit[live & ~coarse], fmt_unit[live & ~coarse], rtol=1e-12,
                                   err_msg=f"{what}: weight step is not the format's")
        np.testing.assert_allclose(unit[coarse], step[coarse], rtol=1e-12,
                                   err_msg=f"{what}: coarsened weight step")


def test_multipliers_are_the_nearest_integers(run):
    """Every fixed-point multiplier is the integer nearest to its real ratio of units at the
    layer's shift (and pre-rounding): ``M0 = round(w_unit in_unit / out_unit 2^(n + p))``,
    ``ma = round(a_unit / out_unit 2^n)``, a pool's ``m0 = round(2^n / count)``."""
    tensors = run.program.tensors()
    for q in run.program.layers:
        if isinstance(q, (P.AvgPool, P.GlobalAvgPool)):     # the divisor, from the graph
            node = run.ref.node(q.node)
            _, h, w = run.ref.node(q.inputs[0]).shape
            count = node.kernel[0] * node.kernel[1] if isinstance(node, AvgPool) else h * w
            real_m, got = np.array([2.0 ** q.shift / count]), np.array([q.m0])
        elif isinstance(q, P.GemmOp) and q.requant is not None:
            rq = q.requant
            real_m = (np.asarray(q.w_unit, dtype=np.float64) * tensors[q.inputs[0]].unit
                      / q.out.unit * 2.0 ** (rq.shift + rq.pre_shift))
            got = rq.multiplier
        elif isinstance(q, P.Add):
            real_m = np.array([tensors[i].unit / q.out.unit * 2.0 ** q.shift
                               for i in q.inputs])
            got = np.array([q.ma, q.mb])
        else:
            continue
        off = np.abs(got - real_m)
        assert np.all(off <= 0.5 + 1e-12 * real_m), \
            f"{run.name} {q.kind} {q.name}: a multiplier is {off.max():.4f} off"
