"""MobileNetV3-Small in the zoo: torchvision's layout, float agreement with torch, and the
torch export imported, run against onnxruntime and simulated bit-exactly."""

import numpy as np
import pytest

from fpxint_hw import golden
from fpxint_hw.float_exec import run_float
from fpxint_hw.intsim import Simulator
from fpxint_hw.models import build_model, sample_inputs
from fpxint_hw.models.mobilenet_v3 import make_divisible, mobilenet_v3_small_builder
from fpxint_hw.quant import expand_graph
from fpxint_hw.spec import SeriesFormat
from nethelpers import rel_err

torch = pytest.importorskip("torch", reason="the torch twin is the reference")
from models.torch_mobilenet_v3 import SQUEEZE, MobileNetV3Small  # noqa: E402


def _twin(graph_unfolded) -> "MobileNetV3Small":
    """The torch model carrying the zoo model's (unfolded) weights."""
    net = MobileNetV3Small().eval()
    state = {k: torch.from_numpy(np.array(v)) for k, v in graph_unfolded.params.items()}
    missing, unexpected = net.load_state_dict(state, strict=False)
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing)
    return net


def test_layout_is_torchvisions():
    """Every state_dict key and shape of the torch twin, torchvision's published parameter
    count (2,542,856) and multiply-accumulates (0.06 G), and the SE widths."""
    b = mobilenet_v3_small_builder()
    state = {k: tuple(v.shape) for k, v in MobileNetV3Small().state_dict().items()
             if not k.endswith("num_batches_tracked")}
    assert state == b.shapes
    g = build_model("mobilenet-v3-small", fold_bn=False)
    assert sum(a.size for k, a in g.params.items() if "running" not in k) == 2_542_856
    assert 0.055e9 < g.macs() < 0.06e9
    assert {c: make_divisible(c // 4) for c in SQUEEZE} == SQUEEZE
    assert g.node("features.1.block.1.mul").shape == (16, 56, 56)
    assert g.output_shape == (1000,)


@pytest.fixture(scope="module")
def zoo():
    return build_model("mobilenet-v3-small", fold_bn=False), build_model("mobilenet-v3-small")


def test_float_executor_equals_torch(zoo):
    unfolded, folded = zoo
    x = sample_inputs(folded.input_shape, limit=2).x
    with torch.no_grad():
        ref = _twin(unfolded)(torch.from_numpy(x)).numpy()
    assert rel_err(run_float(folded, x), ref) <= 1e-4
    assert rel_err(run_float(unfolded, x), ref) <= 1e-4


@pytest.fixture(scope="module")
def exported(zoo, tmp_path_factory):
    """The twin exported by torch.onnx at 96 x 96 with a symbolic batch."""
    pytest.importorskip("onnx", reason="the importer needs onnx")
    path = tmp_path_factory.mktemp("mnv3") / "mobilenet_v3_small.onnx"
    with torch.no_grad():
        torch.onnx.export(_twin(zoo[0]), (torch.zeros(1, 3, 96, 96),), str(path),
                          dynamo=False, input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
                          opset_version=17)
    return path


def test_torch_export_imports_and_agrees_with_onnxruntime(exported):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is the oracle")
    from fpxint_hw.io.onnx_import import load_onnx
    g = load_onnx(exported)
    assert {n.op for n in g.nodes} >= {"hardswish", "hardsigmoid", "mul", "conv", "add"}
    x = np.random.default_rng(0).standard_normal((2, 3, 96, 96)).astype(np.float32)
    sess = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    assert rel_err(run_float(g, x), sess.run(None, {"image": x})[0]) <= 1e-4


@pytest.mark.parametrize("w_fmt,a_fmt", [
    (SeriesFormat(4, 2, per_channel=True), SeriesFormat(4, 2)),
    (SeriesFormat(8, 1, per_channel=True), SeriesFormat(8, 1)),
])
def test_imported_export_simulates_bit_exactly(exported, w_fmt, a_fmt):
    """The torch-exported network, expanded at layer level: the fast simulator equals the
    golden model on every tensor, and the logits follow the float ones."""
    from fpxint_hw.io.onnx_import import load_onnx
    g = load_onnx(exported)
    x = np.random.default_rng(1).standard_normal((2, 3, 96, 96)).astype(np.float32)
    prog = expand_graph(g, w_fmt, a_fmt, "layer")
    gout, genv = golden.run_program(prog, x, capture=True)
    out, env = Simulator(prog).run(x, capture=True)
    bad = [k for k in genv if not np.array_equal(np.asarray(genv[k]), np.asarray(env[k]))]
    assert not bad, f"tensors differing from golden: {bad[:5]}"
    assert np.array_equal(np.asarray(gout), np.asarray(out))


def test_every_layer_fits_the_default_array_and_the_program_is_exact(zoo):
    """On the unsigned `default` array, tensors that may be negative (HardSwish outputs, the
    SE pools of them, the classifier's input) get zero points, so no conv/linear layer is
    left to the host; the program, zero-point pools and lookups included, is bit-exact."""
    from fpxint_hw.quant import for_array
    from fpxint_hw.spec import load_array_spec
    unfolded, _ = zoo
    prog = for_array(unfolded, load_array_spec("default"))
    t = prog.tensors()
    assert not prog.target.misfits
    pooled = [q for q in prog.layers if q.kind == "global_avgpool" and q.out.zero_point]
    assert len(pooled) >= 9 and t["features.12.2"].zero_point > 0
    x = sample_inputs(unfolded.input_shape, limit=1).x
    gout, genv = golden.run_program(prog, x, capture=True)
    out, env = Simulator(prog).run(x, capture=True)
    bad = [k for k in genv if not np.array_equal(np.asarray(genv[k]), np.asarray(env[k]))]
    assert not bad, f"tensors differing from golden: {bad[:5]}"
    for q in pooled:        # a zero-point pool is the mean of its input, to half a step
        mean = t[q.inputs[0]].real(genv[q.inputs[0]]).mean(axis=(2, 3), keepdims=True)
        assert np.max(np.abs(t[q.name].real(genv[q.name]) - mean)) <= t[q.name].unit * 0.5001
