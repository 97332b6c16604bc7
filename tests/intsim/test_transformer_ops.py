"""The fast simulator on the transformer ops: every tensor of tiny random encoders equal to
the golden model's (np.array_equal), at two formats, both rounding modes, with and without
zero points, on every path; the exact int64 square root and division at their edges."""

import math
import sys
from pathlib import Path

import numpy as np
import pytest

from fpxint_hw import golden
from fpxint_hw.intsim import Simulator
from fpxint_hw.intsim.executor import isqrt_int64, round_div_rows
from fpxint_hw.intsim.widths import analyze_widths
from fpxint_hw.quant import expand_graph
from fpxint_hw.spec import SeriesFormat

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from transformer_helpers import tiny_encoder, tiny_inputs  # noqa: E402

FORMATS = [(SeriesFormat(4, 2, per_channel=True), SeriesFormat(4, 2)),
           (SeriesFormat(8, 2, per_channel=True), SeriesFormat(8, 2))]
IDS = ["W4x2-A4x2", "W8x2-A8x2"]


@pytest.mark.parametrize("mode,zero_points,path", [("rne", False, "combined"),
                                                   ("half_up", True, "lanes"),
                                                   ("rne", True, "model")])
@pytest.mark.parametrize("fmts", FORMATS, ids=IDS)
@pytest.mark.parametrize("seed", [0, 3])
def test_simulator_equals_golden_on_every_tensor(fmts, mode, zero_points, path, seed):
    prog = expand_graph(tiny_encoder(seed), *fmts, mode=mode, zero_points=zero_points)
    x = tiny_inputs(3, seed + 1) * (1 + seed)              # a wider input on seed 3
    _, genv = golden.run_program(prog, x, capture=True)
    _, senv = Simulator(prog, path=path).run(x, capture=True)
    assert set(genv) == set(senv)
    for name in genv:
        assert np.array_equal(genv[name], senv[name]), name
    # every op kind is exercised, and none of its integers sits at a saturated end only
    kinds = {q.kind for q in prog.layers}
    assert {"matmul", "softmax", "layernorm", "lookup", "scale", "linear", "add"} <= kinds


def test_simulator_equals_golden_at_two_threads_and_reports_widths():
    prog = expand_graph(tiny_encoder(1), *FORMATS[1])
    x = tiny_inputs(2, 5)
    ref = golden.run_program(prog, x)[0]
    assert np.array_equal(Simulator(prog, threads=2)(x), ref)
    rows = [r for r in analyze_widths(prog) if r.layer in ("scores", "ln1", "probs")]
    assert rows and all(r.ok for r in rows)


def test_isqrt_int64_is_exact_at_squares_and_the_top_of_its_range():
    ks = np.array([0, 1, 2, 3, 2 ** 20, 2 ** 26 + 1, 3037000499, 2 ** 31 - 1], dtype=np.int64)
    vals = []
    for k in ks.tolist():
        for v in (k * k - 1, k * k, k * k + 1, (k + 1) * (k + 1) - 1):
            if 0 <= v < 2 ** 62:
                vals.append(v)
    vals += [2 ** 62 - 1, 2 ** 62 - 2, 2 ** 53 + 1, 2 ** 53 - 1]
    rng = np.random.default_rng(0)
    vals += [int(v) for v in rng.integers(0, 2 ** 62, 2000, dtype=np.int64)]
    got = isqrt_int64(np.array(vals, dtype=np.int64))
    assert [int(v) for v in got] == [math.isqrt(v) for v in vals]


@pytest.mark.parametrize("mode", ["rne", "half_up"])
def test_round_div_rows_matches_python_rounding_at_ties_and_extremes(mode):
    num = np.array([5, -5, 7, -7, 6, -6, 2 ** 62 - 1, -(2 ** 62) + 1, 3, -3], dtype=np.int64)
    den = np.array([2, 2, 2, 2, 4, 4, 3, 2 ** 61 - 1, 6, 6], dtype=np.int64)
    got = round_div_rows(num, den, mode)
    from fractions import Fraction
    for n, d, g in zip(num.tolist(), den.tolist(), got.tolist()):
        x = Fraction(n, d)
        ref = round(x) if mode == "rne" else math.floor(x + Fraction(1, 2))
        assert g == ref, (n, d)


def test_sequence_ending_in_a_linear_layer_gives_its_exact_accumulators():
    from fpxint_hw.float_exec import FloatExecutor
    from fpxint_hw.graph import Graph, Input, LayerNorm, Linear
    rng = np.random.default_rng(4)
    p = {"w": rng.uniform(0.5, 1.5, 8).astype(np.float32),
         "b": (rng.standard_normal(8) * 0.1).astype(np.float32),
         "fc.weight": (rng.standard_normal((6, 8)) * 0.4).astype(np.float32),
         "fc.bias": (rng.standard_normal(6) * 0.1).astype(np.float32)}
    g = Graph((Input(name="x", shape=(5, 8)),
               LayerNorm(name="ln", inputs=("x",), weight="w", bias="b", eps=1e-5),
               Linear(name="fc", inputs=("ln",), weight="fc.weight", bias="fc.bias")), p)
    prog = expand_graph(g, *FORMATS[1])
    x = tiny_inputs(2, 9)
    ref, _ = golden.run_program(prog, x)
    out = Simulator(prog)(x)
    assert out.shape == (2, 5, 6) and out.dtype == np.int64 and np.array_equal(out, ref)
    # per output feature units: the dequantized accumulators are the float layer's outputs
    np.testing.assert_allclose(prog.dequantize_output(out), FloatExecutor(g)(x), atol=0.02)
