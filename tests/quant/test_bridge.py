"""The ArraySpec -> program bridge: the spec's rounding, multiplier width and formats reach the
integers the simulator computes, and the layers it calls fit are the ones the hardware takes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fpxint_hw import golden
from fpxint_hw.errors import FormatError, InputError, WidthError
from fpxint_hw.intsim import Simulator, extract_tiles
from fpxint_hw.quant import Conv, expand_graph, for_array, program_options
from fpxint_hw.series import split_integer
from fpxint_hw.spec import load_array_spec
from fpxint_hw.workflows.network import input_range, load_inputs, load_network

SPECS = ("big", "column", "default", "free", "halfup", "signed", "small", "tiny")


@pytest.fixture(scope="module")
def mnist():
    graph, info = load_network("mnist-resnet")
    x, _, _ = load_inputs(graph, info, 4, None)
    return graph, input_range(info), x


def _compile(mnist, spec, **kw):
    graph, rng, _ = mnist
    return for_array(graph, spec, input_range=rng, **kw)


def test_program_takes_rounding_and_m0_bits_from_the_spec(mnist):
    base = load_array_spec("default")
    for spec in (base, dataclasses.replace(base, rounding="half_up"),
                 dataclasses.replace(base, m0_bits=8)):
        prog = _compile(mnist, spec)
        for q in prog.gemm_layers():
            if q.requant is not None:
                assert q.requant.mode == spec.rounding
                assert int(q.requant.multiplier.max()) < 1 << spec.m0_bits
            assert q.w_fmt.bits == spec.w_bits and q.w_fmt.terms == spec.w_terms
        assert prog.mode == spec.rounding and prog.target.spec == spec


def _layer_outputs(prog, x):
    sim = Simulator(prog)
    _, env = sim.run(x, capture=True)
    return sim, env


@pytest.mark.parametrize("m0,field,value", [(31, "m0_bits", 8), (4, "rounding", "half_up")])
def test_spec_variant_changes_the_integers_and_equals_golden(mnist, m0, field, value):
    """The variant's simulator output differs from the RNE one (ties need a short M0 to occur
    on a few digits) and equals golden's."""
    _, _, x = mnist
    base = dataclasses.replace(load_array_spec("default"), m0_bits=m0)
    variant = dataclasses.replace(base, **{field: value})
    p_base, p_var = _compile(mnist, base), _compile(mnist, variant)
    _, env_b = _layer_outputs(p_base, x)
    sim_v, env_v = _layer_outputs(p_var, x)
    differ = [q.name for q in p_var.gemm_layers()
              if not np.array_equal(env_b[q.name], env_v[q.name])]
    assert differ, f"{field}={value} changed no layer output"
    ref, genv = golden.run_program(p_var, x[:1], capture=True)
    for q in p_var.layers:
        np.testing.assert_array_equal(genv[q.name], env_v[q.name][:1],
                                      err_msg=f"layer {q.name} differs from golden")


def test_half_up_differs_from_rne_exactly_at_ties(mnist):
    """Same layer, same input, same multipliers: half-up and RNE outputs differ only where
    ``acc * M0`` is an exact tie with an even quotient, by +1 (computed here in Python ints).
    A 4-bit M0 makes ties common."""
    _, _, x = mnist
    base = dataclasses.replace(load_array_spec("default"), m0_bits=4)
    p_rne = _compile(mnist, base)
    p_hu = _compile(mnist, dataclasses.replace(base, rounding="half_up"))
    _, env = _layer_outputs(p_hu, x)
    q_hu, q_rne = p_hu.layer("layer1.0.relu1"), p_rne.layer("layer1.0.relu1")
    np.testing.assert_array_equal(q_hu.requant.multiplier, q_rne.requant.multiplier)
    inp = env[q_hu.inputs[0]]
    fin = p_hu.tensors()[q_hu.inputs[0]].fmt
    acc = golden.lane_products(golden.conv2d, split_integer(inp, fin), fin, q_hu.w_digits, q_hu.w_fmt, stride=q_hu.stride, padding=q_hu.padding)
    acc = acc + q_hu.bias[None, :, None, None]
    n = q_hu.requant.shift
    prod = acc.astype(object) * q_hu.requant.multiplier.astype(object)[None, :, None, None]
    floor = np.vectorize(lambda v: v >> n)(prod)
    rem = prod - floor * (1 << n)
    tie_even = (rem == (1 << (n - 1))) & (floor % 2 == 0)
    lo, hi = q_hu.requant.lo, q_hu.requant.hi
    out_hu = golden.run_layer(q_hu, [inp], p_hu.tensors())
    out_rne = golden.run_layer(q_rne, [inp], p_hu.tensors())
    unclamped = (floor.astype(np.int64) >= lo) & (floor.astype(np.int64) + 1 <= hi)
    diff = out_hu - out_rne
    assert set(np.unique(diff)) <= {0, 1}
    np.testing.assert_array_equal(diff != 0, tie_even & unclamped)
    assert tie_even.any(), "no tie in this layer: the test would prove nothing"


@pytest.mark.parametrize("name", SPECS)
def test_misfits_are_what_the_hardware_planner_refuses(mnist, name):
    """Every layer the bridge calls fit cuts into tiles the pass planner accepts; a misfit's
    full-K tile is refused by the planner."""
    from fpxint_hw.hw.program import check_tile
    spec = load_array_spec(name)
    prog = _compile(mnist, spec)
    sim = Simulator(prog)
    fits = [q for q in prog.gemm_layers() if q.name not in prog.target.misfits]
    assert fits, f"no MNIST layer fits {name}"
    for q in prog.gemm_layers():
        if isinstance(q, Conv) and q.groups != 1:
            continue
        tile, _ = extract_tiles(prog, q.name, mnist[2][:1], q.reduction, spec.cols, 2, sim)[0]
        if q.name in prog.target.misfits:
            with pytest.raises((InputError, WidthError)):
                check_tile(spec, tile, q.name)
        else:
            check_tile(spec, tile, q.name)


def test_accumulator_check_at_its_edge(mnist):
    """The smallest depth whose accumulator range holds the layer's exact interval (computed
    here from its weights, element by element) fits; one less is a misfit, and strict mode
    names the layer."""
    graph, rng, _ = mnist
    base = dataclasses.replace(load_array_spec("default"), rows=2, cols=2, depth=None)
    q = for_array(graph, base, input_range=rng).layer("layer1.0.relu1")
    alo, ahi = base.a_fmt.combined_range
    w = q.w_combined().reshape(q.out_channels, -1).tolist()
    lo = min(sum(min(v * alo, v * ahi) for v in row) + int(b) for row, b in zip(w, q.bias))
    hi = max(sum(max(v * alo, v * ahi) for v in row) + int(b) for row, b in zip(w, q.bias))
    depth = next(d for d in range(2, 1 << 16)
                 if dataclasses.replace(base, depth=d).acc_range[0] <= lo
                 and hi <= dataclasses.replace(base, depth=d).acc_range[1])
    assert depth > 2, "the layer fits the smallest accumulator: no edge to test"
    fit = for_array(graph, dataclasses.replace(base, depth=depth), input_range=rng)
    assert "layer1.0.relu1" not in fit.target.misfits
    short = dataclasses.replace(base, depth=depth - 1)
    assert "layer1.0.relu1" in for_array(graph, short, input_range=rng).target.misfits
    with pytest.raises(FormatError, match="layer1.0.relu1"):
        for_array(graph, short, input_range=rng, strict=True)


def test_for_array_refuses_tensor_level(mnist):
    with pytest.raises(FormatError, match="level"):
        _compile(mnist, load_array_spec("tiny"), level="tensor")


def test_lane_mask_switches_lanes_off_in_simulator_and_golden(mnist):
    _, _, x = mnist
    spec = load_array_spec("default")
    mask = np.array([[True, True], [True, False]])
    prog = _compile(mnist, spec, lane_mask=mask)
    full = _compile(mnist, spec)
    _, env = _layer_outputs(prog, x[:1])
    _, genv = golden.run_program(prog, x[:1], capture=True)
    for q in prog.layers:
        np.testing.assert_array_equal(genv[q.name], env[q.name], err_msg=q.name)
    _, env_full = _layer_outputs(full, x[:1])
    assert not np.array_equal(env[prog.output], env_full[full.output])


def test_explicit_formats_equal_the_bridge_with_the_same_options(mnist):
    """The bridge is expand_graph with the spec's options: same integers."""
    graph, rng, x = mnist
    spec = load_array_spec("small")
    prog = _compile(mnist, spec)
    assert program_options(spec).zero_points            # an unsigned array
    ref = expand_graph(graph, dataclasses.replace(spec.w_fmt, per_channel=True), spec.a_fmt,
                       mode=spec.rounding, multiplier_bits=spec.m0_bits,
                       host_multiplier_bits=31, input_range=rng, zero_points=True)
    np.testing.assert_array_equal(Simulator(prog)(x), Simulator(ref)(x))


def test_gemm_fit_accumulator_edge_exactly():
    """A GEMM whose exact accumulator peaks at the array's ``acc_range`` maximum fits; one
    more (through the bias, every constant still in range) is refused."""
    from fpxint_hw.quant import gemm_fit
    spec = load_array_spec("small")
    wmax = spec.w_fmt.combined_range[1]
    ahi = spec.a_fmt.combined_range[1]
    depth = spec.reduction_depth
    assert spec.acc_range[1] == depth * wmax * ahi + spec.bias_range[1]
    w = np.array([[wmax] * depth + [1]])             # one output, K = depth + 1
    args = (spec, spec.w_fmt, spec.a_fmt, spec.out_fmt, w)
    rest = (np.array([1]), spec.rounding, 0, spec.out_range[1])
    edge = spec.bias_range[1] - ahi
    assert gemm_fit(*args, np.array([edge]), *rest) is None
    why = gemm_fit(*args, np.array([edge + 1]), *rest)
    assert why is not None and "accumulator" in why
