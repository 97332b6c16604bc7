"""A thread's share in one Numba call: a residual Add run inside the GEMM layer before it
gives the integers of the two layers run apart (either input order, signed and zero-point
grids, 1 and 2 threads), and runs only where it may."""

from __future__ import annotations

import numpy as np
import pytest

from fpxint_hw import golden
from fpxint_hw.graph import Add, Conv2d, Graph, Input, Relu
from fpxint_hw.intsim import Simulator, vnni
from fpxint_hw.quant import expand_graph, for_array
from fpxint_hw.spec import SeriesFormat, load_array_spec

pytestmark = pytest.mark.skipif(vnni.unavailable() is not None,
                                reason=f"the VNNI kernel cannot run here: {vnni.unavailable()}")


def _residual_graph(seed: int = 0) -> Graph:
    """``r1 = relu(c1(x))``; ``a1 = r1 + c2(r1)`` (the conv the second input, no ReLU:
    signed); ``a2 = relu(c3(a1) + a1)`` (the conv the first input); ``a3 = c4 + c5``,
    ``a4 = a3 + c5``: ``c5`` has two readers, so ``a3`` may not take it in."""
    rng = np.random.default_rng(seed)
    p = {}

    def conv(name, cin, cout, k):
        p[f"{name}.w"] = rng.standard_normal((cout, cin, k, k)) * np.sqrt(2 / (cin * k * k))
        p[f"{name}.b"] = 0.3 * rng.standard_normal(cout)
        return dict(weight=f"{name}.w", bias=f"{name}.b", padding=k // 2)

    nodes = [Input(name="x", shape=(8, 9, 7)),
             Conv2d(name="c1", inputs=("x",), **conv("c1", 8, 16, 3)),
             Relu(name="r1", inputs=("c1",)),
             Conv2d(name="c2", inputs=("r1",), **conv("c2", 16, 16, 1)),
             Add(name="a1", inputs=("r1", "c2")),
             Conv2d(name="c3", inputs=("a1",), **conv("c3", 16, 16, 3)),
             Add(name="a2", inputs=("c3", "a1")),
             Relu(name="r2", inputs=("a2",)),
             Conv2d(name="c4", inputs=("r2",), **conv("c4", 16, 16, 1)),
             Conv2d(name="c5", inputs=("c4",), **conv("c5", 16, 16, 1)),
             Add(name="a3", inputs=("c4", "c5")),
             Add(name="a4", inputs=("a3", "c5"))]
    return Graph(tuple(nodes), p, name="residual")


def _programs():
    """The graph at two formats, unsigned and signed, and compiled for the unsigned default
    array on an input range with negative values (zero points, Add offsets)."""
    g = _residual_graph()
    cases = []
    for w, a in [(SeriesFormat(4, 2, per_channel=True), SeriesFormat(4, 2)),
                 (SeriesFormat(4, 3, per_channel=True), SeriesFormat(4, 3))]:   # three GEMMs
        for signed in (False, True):
            cases.append(pytest.param(lambda w=w, a=a, signed=signed: expand_graph(
                g, w, a, "layer", signed_activations=signed),
                id=f"W{w.bits}x{w.terms}-{'signed' if signed else 'unsigned'}"))
    cases.append(pytest.param(lambda: for_array(g, load_array_spec("default"),
                                                input_range=(-1.0, 1.5)), id="zero-points"))
    return cases


@pytest.mark.parametrize("compile_", _programs())
def test_a_fused_residual_add_gives_the_integers_of_the_layers_run_apart(compile_):
    prog = compile_()
    g = _residual_graph()
    x = np.random.default_rng(3).uniform(-1.0, 1.5, (3, *g.input_shape)).astype(np.float32)
    want = golden.run_program(prog, x)[0]
    for threads in (1, 2):
        sim = Simulator(prog, backend="vnni", threads=threads)
        # c2 -> a1 (second input) and c3 -> a2 with its ReLU, named r2 (first)
        assert {k: q.name for k, q in sim.fused_adds.items()} == {"c2": "a1", "c3": "r2"}
        adds = {q.name: q for q in prog.layers if q.kind == "add"}
        assert adds["a1"].ma != adds["a1"].mb and adds["r2"].ma != adds["r2"].mb
        np.testing.assert_array_equal(sim(x), want)
        # the captured run keeps every layer's output, so it runs the adds apart
        out, env = sim.run(x, capture=True)
        np.testing.assert_array_equal(out, want)
        assert {"c2", "c3", "a1", "r2"} <= set(env)


def test_no_add_is_fused_when_profiling_or_off_the_vnni_path():
    prog = expand_graph(_residual_graph(), SeriesFormat(4, 2, per_channel=True),
                        SeriesFormat(4, 2), "layer")
    assert Simulator(prog, backend="vnni", profile=True).fused_adds == {}
    assert Simulator(prog, backend="int").fused_adds == {}
