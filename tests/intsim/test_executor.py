"""The fast simulator against the golden model: zero mismatches on every op, whole networks,
every path, backend, thread count and lane order; tiles; kernels; the width analysis."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from fpxint_hw import golden
from fpxint_hw.errors import WidthError
from fpxint_hw.float_exec import to_nhwc
from fpxint_hw.quant import expand_graph
from fpxint_hw.quant import program as P
from fpxint_hw.intops import round_shift
from fpxint_hw.intsim import Simulator, WidthConfig, analyze_widths, extract_tiles, run_tile
from fpxint_hw.intsim import kernels, vnni
from fpxint_hw.intsim.cpu import Int8Gemm
from fpxint_hw.intsim.gemm import have_ort
from fpxint_hw.series import split_integer
from fpxint_hw.spec import SeriesFormat
from fpxint_hw.tile import GemmTile, Requant

from nethelpers import tiny_graph


def _inputs(graph, n=2, seed=1):
    return np.random.default_rng(seed).standard_normal((n, *graph.input_shape)).astype(np.float32)


FORMATS = [
    (SeriesFormat(4, 2, per_channel=True), SeriesFormat(4, 2)),
    (SeriesFormat(3, 3, "free", per_channel=True), SeriesFormat(2, 4, "free")),
    (SeriesFormat(4, 3, per_channel=False), SeriesFormat(4, 3)),
    (SeriesFormat(8, 1, per_channel=True), SeriesFormat(8, 1)),
    (SeriesFormat(2, 1, per_channel=True), SeriesFormat(5, 2)),
]


def _assert_layers_equal(ref_env, env, program):
    for q in program.layers:
        np.testing.assert_array_equal(env[q.name], ref_env[q.name],
                                      err_msg=f"layer {q.name!r} ({q.kind}) differs")


@pytest.mark.parametrize("w_fmt,a_fmt", FORMATS)
@pytest.mark.parametrize("mode", ["rne", "half_up"])
def test_tiny_graph_every_layer_matches_golden(w_fmt, a_fmt, mode):
    g = tiny_graph()
    prog = expand_graph(g, w_fmt, a_fmt, "layer", mode=mode)
    x = _inputs(g)
    gout, genv = golden.run_program(prog, x, capture=True)
    for path in ("combined", "lanes", "model"):
        out, env = Simulator(prog, path=path).run(x, capture=True)
        _assert_layers_equal(genv, env, prog)
        np.testing.assert_array_equal(out, gout)


@pytest.mark.parametrize("backend", ["int", "f64", "ort", "vnni"])
def test_every_backend_matches_golden(backend):
    if backend == "ort" and not have_ort():
        pytest.skip("onnxruntime not installed")
    if backend == "vnni" and vnni.unavailable():
        pytest.skip(f"the VNNI kernel cannot run here: {vnni.unavailable()}")
    g = tiny_graph(3)
    prog = expand_graph(g, SeriesFormat(4, 2, per_channel=True), SeriesFormat(4, 2), "layer")
    x = _inputs(g, 3, 5)
    _, genv = golden.run_program(prog, x, capture=True)
    for path in ("combined", "lanes"):
        sim = Simulator(prog, path=path, backend=backend)
        assert backend in set(sim.backends().values())
        _, env = sim.run(x, capture=True)
        _assert_layers_equal(genv, env, prog)


@pytest.mark.skipif(not have_ort(), reason="onnxruntime not installed")
@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
@pytest.mark.parametrize("w_fmt,a_fmt,int8,scheme", [
    # conditions at least as strict as any CPU's, so exact on every machine
    (SeriesFormat(8, 1, per_channel=True), SeriesFormat(8, 1), Int8Gemm(True, False),
     "planes"),                                       # 8-bit weights: two 7-bit planes
    (SeriesFormat(8, 1, per_channel=True), SeriesFormat(8, 1), Int8Gemm(True, True), "u8u8"),
    (SeriesFormat(4, 3, per_channel=True), SeriesFormat(4, 3), Int8Gemm(True, False),
     "karatsuba"),
    (SeriesFormat(4, 4, per_channel=True), SeriesFormat(4, 4), Int8Gemm(True, False),
     "planes"),                                       # 2 x 2 planes, no Karatsuba fits
])
def test_every_int8_plane_scheme_matches_golden(w_fmt, a_fmt, int8, scheme, signed):
    """Each scheme on unsigned tensors and on signed ones (offset into uint8 planes)."""
    g = tiny_graph(7)
    prog = expand_graph(g, w_fmt, a_fmt, "layer", signed_activations=signed)
    x = _inputs(g, 2, 8)
    _, genv = golden.run_program(prog, x, capture=True)
    for path in ("combined", "model"):
        sim = Simulator(prog, path=path, backend="ort", int8=int8, lane_order="reverse")
        if path == "combined" and not signed:   # signed A4x4 (13 bits) fits Karatsuba too
            schemes = {p.plan.scheme for p in sim.plans.values() if p.plan is not None}
            assert scheme in schemes, sim.gemm_plans()
        _, env = sim.run(x, capture=True)
        _assert_layers_equal(genv, env, prog)


@pytest.mark.skipif(vnni.unsupported_cpu() is not None,
                    reason=f"this CPU cannot run the VNNI kernel: {vnni.unsupported_cpu()}")
@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
@pytest.mark.parametrize("w_fmt,a_fmt,scheme,gemms", [
    (SeriesFormat(8, 1, per_channel=True), SeriesFormat(8, 1), "planes", 1),   # whole int8
    (SeriesFormat(4, 3, per_channel=True), SeriesFormat(4, 3), "karatsuba", 3),
    (SeriesFormat(4, 4, per_channel=True), SeriesFormat(4, 4), "planes", 4),
])
def test_every_int8_plane_scheme_on_the_vnni_kernel_matches_golden(w_fmt, a_fmt, scheme,
                                                                   gemms, signed):
    """The VNNI kernel under each scheme, driven chunk by chunk from Python (profiled) and
    a thread's share at a time in Numba (unprofiled), on 1 and 2 threads."""
    g = tiny_graph(7)
    prog = expand_graph(g, w_fmt, a_fmt, "layer", signed_activations=signed)
    x = _inputs(g, 2, 8)
    _, genv = golden.run_program(prog, x, capture=True)
    for threads, profile in ((2, False), (2, True), (1, False)):
        sim = Simulator(prog, backend="vnni", threads=threads, profile=profile)
        if not signed:
            plans = [p.plan for p in sim.plans.values() if p.plan is not None]
            assert any((p.scheme, p.gemms) == (scheme, gemms) for p in plans), \
                sim.gemm_plans()
        _, env = sim.run(x, capture=True)
        _assert_layers_equal(genv, env, prog)


def test_model_level_equals_layer_level_and_golden_basis_models():
    g = tiny_graph(4)
    w_fmt, a_fmt = SeriesFormat(4, 3, per_channel=True), SeriesFormat(4, 2)
    layer = expand_graph(g, w_fmt, a_fmt, "layer")
    model = expand_graph(g, w_fmt, a_fmt, "model")
    x = _inputs(g, 2, 9)
    g_model, _ = golden.run_program(model, x)            # basis model by basis model
    g_layer, _ = golden.run_program(layer, x)            # lane by lane
    np.testing.assert_array_equal(g_model, g_layer)
    np.testing.assert_array_equal(Simulator(model)(x), g_model)
    assert Simulator(model).path == "model"


def test_threads_and_lane_order_do_not_change_bits():
    g = tiny_graph(5)
    prog = expand_graph(g, SeriesFormat(3, 3, per_channel=True), SeriesFormat(3, 3), "layer")
    x = _inputs(g, 3, 2)
    ref = None
    saved = numba.get_num_threads()
    try:
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            for order in (None, "reverse", 7, 11):
                for path in ("combined", "lanes"):
                    out = Simulator(prog, path=path, threads=threads, lane_order=order)(x)
                    if ref is None:
                        ref = out
                    np.testing.assert_array_equal(out, ref)
    finally:
        numba.set_num_threads(saved)


def test_storage_is_narrow_inside_and_int32_outside():
    """Tensors are kept in the narrowest dtype of their range; the output and the captured
    layers come out int32 (the accumulator of a requant-free classifier int64)."""
    from fpxint_hw.intsim.executor import storage_dtype
    assert [storage_dtype(*r) for r in ((0, 255), (-128, 127), (0, 256), (-129, 0),
                                        (-32768, 32767), (0, 65536))] == \
        [np.uint8, np.int8, np.uint16, np.int16, np.int16, np.int32]
    g = tiny_graph(2)
    prog = expand_graph(g, SeriesFormat(4, 2, per_channel=True), SeriesFormat(4, 2), "layer")
    sim = Simulator(prog)
    out, env = sim.run(_inputs(g), capture=True)
    assert all(v.dtype in (np.int32, np.int64) for v in env.values())
    assert out.dtype in (np.int32, np.int64)
    q = next(q for q in prog.layers if q.out is not None and q.out.lo >= 0 and q.out.hi <= 255
             and not isinstance(q, P.Quantize))
    args = [to_nhwc(env[i]) for i in q.inputs]
    assert sim.run_layer(q, args).dtype == np.uint8


def test_the_profile_records_the_phases_of_every_layer():
    g = tiny_graph(3)
    prog = expand_graph(g, SeriesFormat(4, 3, per_channel=True), SeriesFormat(4, 3), "layer")
    sim = Simulator(prog, profile=True)
    sim(_inputs(g))
    layers = sim.profile.by_layer()
    for q in prog.gemm_layers():
        if not sim.plans[q.name].depthwise:
            assert {"split", "im2col", "gemm", "requant"} <= set(layers[q.name]), q.name
    assert set(sim.profile.by_phase()) >= {"gemm", "quantize"}
    assert sim.profile.total() > 0
    sim.profile.clear()
    assert sim.profile.total() == 0


def test_mnist_resnet_whole_network_bit_exact():
    """The trained MNIST ResNet on held-out digits (synthetic weights when the trained file
    is not there yet): every layer of every path equals the golden model."""
    from fpxint_hw.errors import InputError
    from fpxint_hw.models import build_model, sample_inputs
    try:
        g = build_model("mnist-resnet", fold_bn=False)
    except InputError:
        from fpxint_hw.models.mnist_resnet import mnist_resnet_builder
        from fpxint_hw.models.synthetic import synthetic_weights
        b = mnist_resnet_builder()
        g = b.graph(synthetic_weights(b), fold_bn=False)
    x = sample_inputs(g.input_shape, limit=3).x
    prog = expand_graph(g, SeriesFormat(4, 2, per_channel=True), SeriesFormat(4, 2), "layer",
                        input_range=(0.0, 1.0))
    gout, genv = golden.run_program(prog, x, capture=True)
    for path in ("combined", "lanes", "model"):
        out, env = Simulator(prog, path=path).run(x, capture=True)
        _assert_layers_equal(genv, env, prog)


# -- tiles -----------------------------------------------------------------------------------

def _random_tile(rng, mask=False, half_up=False):
    w_fmt = SeriesFormat(int(rng.integers(2, 9)), int(rng.integers(1, 4)),
                         str(rng.choice(["pow2", "free"])))
    a_fmt = SeriesFormat(int(rng.integers(2, 9)), int(rng.integers(1, 4)),
                         signed=bool(rng.integers(0, 2)))
    m, k, n = (int(v) for v in rng.integers(1, 20, size=3))
    w = rng.integers(w_fmt.qmin, w_fmt.qmax + 1, size=(w_fmt.terms, k, n))
    a = rng.integers(a_fmt.qmin, a_fmt.qmax + 1, size=(a_fmt.terms, m, k))
    if rng.random() < 0.3:                                   # extreme operands
        w = np.where(w >= 0, w_fmt.qmax, w_fmt.qmin)
        a = np.full_like(a, a_fmt.qmax)
    out_fmt = SeriesFormat(4, 2, signed=bool(rng.integers(0, 2)))
    lo, hi = out_fmt.combined_range
    bias = rng.integers(-10**6, 10**6, size=n)
    bound = 10**6 + sum(mw * na * k * w_fmt.qmax * max(abs(a_fmt.qmin), a_fmt.qmax)
                        for mw in w_fmt.lane_weights for na in a_fmt.lane_weights)
    mmax = min(1 << 31, (1 << 62) // bound)          # acc * M0 + rounding fits int64
    rq = Requant(rng.integers(0, mmax, size=n), int(rng.integers(0, 50)), lo, hi,
                 int(rng.integers(-3, 4)), "half_up" if half_up else "rne")
    lane_mask = rng.random((w_fmt.terms, a_fmt.terms)) < 0.7 if mask else None
    return GemmTile(w_fmt, a_fmt, w, a, bias, rq, out_fmt,
                    lane_mask)


@pytest.mark.parametrize("seed", range(40))
def test_run_tile_equals_reference_tile(seed):
    rng = np.random.default_rng(seed)
    tile = _random_tile(rng, mask=seed % 2 == 1, half_up=seed % 3 == 0)
    ref = golden.reference_tile(tile)
    got = run_tile(tile)
    np.testing.assert_array_equal(got.acc, ref.acc)
    np.testing.assert_array_equal(got.out, ref.out)
    np.testing.assert_array_equal(got.out_digits, ref.out_digits)


def test_extract_tiles_full_k_reproduce_layer_outputs_and_cut_k_sums_accumulators():
    g = tiny_graph(6)
    prog = expand_graph(g, SeriesFormat(4, 2, per_channel=True), SeriesFormat(4, 2), "layer")
    x = _inputs(g, 1, 3)
    sim = Simulator(prog)
    _, env = sim.run(x, capture=True)
    layer = prog.layer("c3")                         # 1x1 conv, K = 8
    out = env[layer.name]                            # (1, 8, H, W)
    rows = 6
    flat = out.transpose(0, 2, 3, 1).reshape(-1, out.shape[1])[:rows]
    full = extract_tiles(prog, "c3", x, tile_k=8, tile_n=4, rows=rows, sim=sim)
    assert len(full) == 2 and all(info["full_k"] for _, info in full)
    for tile, info in full:
        res = golden.reference_tile(tile)
        np.testing.assert_array_equal(res.out, flat[:, info["n0"]:info["n0"] + tile.n])
    cut = extract_tiles(prog, "c3", x, tile_k=3, tile_n=8, rows=rows, sim=sim)
    assert len(cut) == 3
    acc = sum(golden.reference_tile(t).acc for t, _ in cut)
    whole = np.concatenate([golden.reference_tile(t).acc for t, _ in full], axis=1)
    np.testing.assert_array_equal(acc, whole)


# -- kernels against intops ------------------------------------------------------------------

@pytest.mark.parametrize("half_up", [False, True])
def test_requant_kernel_against_intops(half_up):
    rng = np.random.default_rng(0)
    acc = rng.integers(-(1 << 31), 1 << 31, size=(64, 8)).astype(np.int64)
    acc[0] = [-5, -4, -3, -1, 0, 1, 3, 5]                       # ties at shift 1
    mult = rng.integers(0, 1 << 31, size=8).astype(np.int64)
    mult[:] = np.where(np.arange(8) < 4, mult, 1)
    bias = rng.integers(-1000, 1000, size=8).astype(np.int64)
    mode = "half_up" if half_up else "rne"
    for shift in (0, 1, 2, 17, 31, 62):
        out = np.empty(acc.shape, dtype=np.int32)
        kernels.requant_rows(acc, bias, mult, shift, -1000, 2000, 3, half_up, out,
                             np.zeros(8, dtype=np.int64))
        want = golden.requantize(acc + bias, mult, shift, -1000, 2000, 3, mode)
        np.testing.assert_array_equal(out, want)


def test_round_shift_kernel_extremes():
    vals = [-(1 << 62), (1 << 62) - 1, -7, -6, -5, 5, 6, 7, 0, -1]
    for n in (1, 2, 3, 30, 61, 62):
        for v in vals:
            for half_up in (False, True):
                got = kernels.round_shift_i64(np.int64(v), n, half_up)
                assert got == round_shift(v, n, "half_up" if half_up else "rne"), (v, n)


@pytest.mark.parametrize("fmt", [SeriesFormat(4, 3), SeriesFormat(3, 2, "free"),
                                 SeriesFormat(4, 2, signed=False), SeriesFormat(2, 4)])
def test_split_groups_equals_split_integer(fmt):
    lo, hi = fmt.combined_range
    x = np.arange(lo, hi + 1, dtype=np.int32)
    digits = split_integer(x, fmt)
    out = np.empty((fmt.terms, x.size), dtype=np.int32)
    kernels.split_groups(x, np.array(fmt.lane_weights, dtype=np.int64), fmt.qmin, fmt.qmax,
                         fmt.signed, np.arange(fmt.terms, dtype=np.int64),
                         np.array(fmt.lane_weights, dtype=np.int64), out)
    np.testing.assert_array_equal(out, digits)
    # one group of all terms recombines every value exactly
    one = np.empty((1, x.size), dtype=np.int32)
    kernels.split_groups(x, np.array(fmt.lane_weights, dtype=np.int64), fmt.qmin, fmt.qmax,
                         fmt.signed, np.zeros(fmt.terms, dtype=np.int64),
                         np.array([1], dtype=np.int64), one)
    np.testing.assert_array_equal(one[0], x)


# -- width analysis --------------------------------------------------------------------------

def test_width_analysis_refuses_narrow_lanes_naming_layer_node_and_widths():
    g = tiny_graph()
    prog = expand_graph(g, SeriesFormat(4, 2, per_channel=True), SeriesFormat(4, 2), "layer")
    rows = analyze_widths(prog, WidthConfig(lane_bits=9), check=False)
    bad = [r for r in rows if not r.ok]
    assert bad and all(r.configured == 9 for r in bad)
    with pytest.raises(WidthError) as exc:
        Simulator(prog, widths=WidthConfig(lane_bits=9))
    msg = str(exc.value)
    assert f"layer {bad[0].layer!r}" in msg and "lane (k=" in msg
    assert f"need {bad[0].needed} signed bits, configured 9" in msg


def test_width_analysis_bounds_are_attained_or_safe():
    """The lane bound of a layer is a true upper bound of every lane dot product seen."""
    g = tiny_graph(2)
    prog = expand_graph(g, SeriesFormat(4, 2, per_channel=True), SeriesFormat(4, 2), "layer")
    rows = {(r.layer, r.node): r for r in analyze_widths(prog)}
    x = _inputs(g, 2, 4) * 10                                      # saturating inputs
    _, env = golden.run_program(prog, x, capture=True)
    q = prog.layer("c3")
    acts = split_integer(env[q.inputs[0]], prog.layer(q.inputs[0]).out.fmt)
    for k in range(2):
        for j in range(2):
            lane = golden.conv2d(acts[j], q.w_digits[k])
            assert np.abs(lane).max() <= rows[(q.name, f"lane (k={k + 1}, j={j + 1}) dot product")].bound


def test_wide_formats_raise_width_error_before_running():
    g = tiny_graph()
    with pytest.raises(WidthError):
        Simulator(expand_graph(g, SeriesFormat(8, 6, per_channel=True), SeriesFormat(8, 6),
                               "layer"))
    # formats that expand fine, but whose accumulators need more than 40 bits
    prog = expand_graph(g, SeriesFormat(8, 3, per_channel=True), SeriesFormat(8, 2), "layer")
    with pytest.raises(WidthError, match=r"layer '.+', node .+ configured 40"):
        Simulator(prog, widths=WidthConfig(acc_bits=40))


@pytest.mark.parametrize("shape", [(1, 1, 1), (7, 41, 3), (33, 300, 17), (5, 1000, 2)])
def test_gemm_kernel_against_golden_matmul(shape):
    m, k, n = shape
    rng = np.random.default_rng(k)
    a = rng.integers(-(1 << 15), 1 << 15, size=(m, k)).astype(np.int32)
    b = rng.integers(-(1 << 20), 1 << 20, size=(k, n)).astype(np.int64)
    out = np.empty((m, n), dtype=np.int64)
    kernels.gemm_i64(a, b, out)
    np.testing.assert_array_equal(out, golden.matmul(a, b))


@pytest.mark.parametrize("half_up", [False, True])
@pytest.mark.parametrize("shift", [0, 1, 3, 6])
def test_add_requant_kernel_exhaustive(half_up, shift):
    """Every pair of 8-bit inputs through the residual-add kernel against the golden add:
    signed inputs, and unsigned ones with zero points (the kernel's folded ``offset``
    against golden's ``(a - za) ma + (b - zb) mb``)."""
    a, b = np.meshgrid(np.arange(-128, 128), np.arange(-128, 128))
    a = a.ravel().astype(np.int32)
    b = b.ravel().astype(np.int32)
    mode = "half_up" if half_up else "rne"
    for ma, mb, za, zb in ((37, 61, 0, 0), (1, 1, 0, 0), (255, 3, 0, 0), (37, 61, 128, 5)):
        ua, ub = (a + 128, b + 128) if za else (a, b)
        out = np.empty(a.size, dtype=np.int32)
        kernels.add_requant(ua, ub, ma, mb, -(ma * za + mb * zb), shift, -3000, 3000, 1,
                            half_up, out)
        want = golden.add_requant(ua, ub, ma, mb, shift, -3000, 3000, 1, mode,
                                  a_zero_point=za, b_zero_point=zb)
        np.testing.assert_array_equal(out, want)


def test_integer_input_is_refused_not_quantized_twice():
    from fpxint_hw.errors import InputError
    g = tiny_graph()
    prog = expand_graph(g, SeriesFormat(4, 2, per_channel=True), SeriesFormat(4, 2), "layer",
                        input_range=(-1, 1))
    x = np.random.default_rng(0).uniform(-1, 1, (2, *g.input_shape)).astype(np.float32)
    sim = Simulator(prog)
    assert sim(x).shape[0] == 2
    with pytest.raises(InputError, match="quantize_input"):
        sim(prog.quantize_input(x))
