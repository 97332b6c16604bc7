"""The basis models as QDQ ONNX: onnxruntime runs them, the weight terms are the program's
digits, and the float output stays within the stated bound of the simulator's."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the onnx package writes the QDQ graph")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime runs the QDQ graph")

from onnx import numpy_helper  # noqa: E402

from fpxint_hw.errors import InputError  # noqa: E402
from fpxint_hw.intsim import Simulator  # noqa: E402
from fpxint_hw.io.qdq_onnx import KINDS, QDQ_OUTPUT, qdq_onnx_model  # noqa: E402
from fpxint_hw.quant import OPS, expand_graph, for_array  # noqa: E402
from fpxint_hw.spec import SeriesFormat, load_array_spec  # noqa: E402
from fpxint_hw.workflows.network import input_range, load_inputs, load_network  # noqa: E402
from fpxint_hw.workflows.simulate import compile_terms  # noqa: E402
from nethelpers import ZERO_POINT_INPUT, tiny_graph, zero_point_graph  # noqa: E402

#: The agreement docs/export.md states: max |float_output - simulator| over a batch, relative
#: to the batch's largest |logit| (measured 0.12-0.56 % on all 1,000 held-out digits).
REL_BOUND = 0.02


def _run(model, x):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run([QDQ_OUTPUT], {"float_input": x})[0]


def test_every_op_kind_has_a_writer():
    assert set(KINDS) == {op.kind for op in OPS}


FORMATS = {
    "W4x2/A4x2": dict(w_fmt=SeriesFormat(4, 2, per_channel=True), a_fmt=SeriesFormat(4, 2)),
    "W4x3/A4x3 (16-bit QDQ)": dict(w_fmt=SeriesFormat(4, 3, per_channel=True),
                                   a_fmt=SeriesFormat(4, 3)),
    "spec default (zero points)": dict(spec=load_array_spec("default"), spec_name="default"),
}


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_mnist_qdq_agrees_with_the_simulator_within_the_stated_bound(fmt):
    g, info = load_network("mnist-resnet")
    x, _, _ = load_inputs(g, info, 60, None)
    prog, _, _ = compile_terms(g, in_range=input_range(info), **FORMATS[fmt])
    model = qdq_onnx_model(prog)
    onnx.checker.check_model(model, full_check=True)
    got = _run(model, x)
    want = Simulator(prog).logits(x)
    assert np.abs(got - want).max() <= REL_BOUND * np.abs(want).max()
    assert np.mean(got.argmax(1) == want.argmax(1)) >= 0.95
    assert model.opset_import[0].version == (21 if "16-bit" in fmt else 17)


def test_weight_terms_are_the_programs_digits_one_basis_model_each():
    g, info = load_network("mnist-resnet")
    prog, _, _ = compile_terms(g, in_range=input_range(info), **FORMATS["W4x3/A4x3 (16-bit QDQ)"])
    model = qdq_onnx_model(prog)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    names = {n.name for n in model.graph.node}
    for q in prog.gemm_layers():
        for k in range(q.w_fmt.terms):
            assert np.array_equal(inits[f"{q.name}/w{k + 1}/digits"], q.w_digits[k])
            assert f"{q.name}/basis{k + 1}" in names
    assert not any(n.op_type in ("ConvInteger", "MatMulInteger") for n in model.graph.node)


def test_the_first_layer_lands_within_one_step_of_the_simulator():
    # a signed input on an unsigned array: the first conv reads a zero-point grid
    prog = for_array(zero_point_graph(), load_array_spec("default"), input_range=ZERO_POINT_INPUT)
    assert prog.layers[0].out.zero_point
    x = np.random.default_rng(2).uniform(-1.2, 1.8, (4, *prog.graph.input_shape)).astype(
        np.float32)
    model = qdq_onnx_model(prog)
    first = prog.layers[1]
    from onnx import TensorProto, helper
    model.graph.output.append(helper.make_tensor_value_info(first.name, TensorProto.FLOAT,
                                                            None))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = sess.run([first.name], {"float_input": x})[0]
    _, env = Simulator(prog).run(x, capture=True)
    want = first.out.real(env[first.name])
    assert np.abs(got - want).max() <= first.out.unit * 1.0001


def test_activations_wider_than_16_bits_are_refused():
    prog = expand_graph(tiny_graph(), SeriesFormat(4, 2, per_channel=True),
                        SeriesFormat(6, 3), "layer", input_range=(-2.0, 2.0))
    with pytest.raises(InputError, match="16 bits"):
        qdq_onnx_model(prog)


def test_every_qdq_pair_clips_to_its_grid_and_quantizes_on_its_unit():
    prog = expand_graph(tiny_graph(), SeriesFormat(4, 2, per_channel=True), SeriesFormat(4, 2),
                        "layer", input_range=(-2.0, 2.0))
    model = qdq_onnx_model(prog)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    seen = 0
    for name, qt in prog.tensors().items():
        if qt is None or f"{name}/scale" not in inits:
            continue
        seen += 1
        lo, hi = qt.real_range
        assert inits[f"{name}/real_lo"] == np.float32(lo) and inits[f"{name}/real_hi"] == \
            np.float32(hi), name
        assert inits[f"{name}/scale"] == np.float32(qt.unit)
        assert inits[f"{name}/zero_point"] == qt.zero_point
    assert seen >= len(prog.layers) - 3          # all but flatten and the final accumulator
    assert any(qt is not None and qt.lo < 0 and qt.lo > -128 for qt in prog.tensors().values())
