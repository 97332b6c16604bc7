"""What real exporters write: torch.onnx files of tiny mobile-style modules imported, run in
float against onnxruntime on the same file, and round-tripped through our export."""

import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the onnx package reads and writes ONNX")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is the reference executor")
torch = pytest.importorskip("torch", reason="torch.onnx writes the exporter's files")

from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from fpxint_hw.cli import main  # noqa: E402
from fpxint_hw.errors import InputError  # noqa: E402
from fpxint_hw.float_exec import run_float  # noqa: E402
from fpxint_hw.graph import graphs_equal  # noqa: E402
from fpxint_hw.io.onnx_export import graph_to_onnx  # noqa: E402
from fpxint_hw.io.onnx_import import load_onnx, onnx_to_graph  # noqa: E402


def rel_err(ours, ref):
    """max |ours - ref| / max |ref|."""
    return float(np.max(np.abs(ours - ref)) / np.max(np.abs(ref)))


def export(module, path, shape, *, dynamic_hw=False, opset=17):
    """``module`` written by torch.onnx (TorchScript exporter), batch symbolic, H/W too when
    asked; returns the path."""
    torch.manual_seed(0)
    axes = {0: "N", **({2: "H", 3: "W"} if dynamic_hw else {})}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (torch.randn(1, *shape),), str(path), dynamo=False,
                          opset_version=opset, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": axes, "y": {0: "N"}})
    return path


def ort_file(path, x):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"x": x})[0]


def check_against_ort_and_round_trip(path, shape, ops, input_shape=None):
    """The imported graph has ``ops``, agrees with onnxruntime on the file (rel <= 1e-4), and
    our export of it reads back to an equal graph that onnxruntime runs the same."""
    g = load_onnx(path, fold_bn=False, input_shape=input_shape)
    present = {n.op for n in g.nodes}
    assert set(ops) <= present, (ops, present)
    x = np.random.default_rng(1).standard_normal((3, *shape)).astype(np.float32)
    ref = ort_file(path, x)
    ours = run_float(g, x)
    assert ours.shape == ref.shape
    assert rel_err(ours, ref) <= 1e-4
    model = graph_to_onnx(g)
    onnx.checker.check_model(model)
    back = onnx_to_graph(model)
    assert graphs_equal(g, back)
    again = ort.InferenceSession(model.SerializeToString(),
                                 providers=["CPUExecutionProvider"]).run(None, {g.input.name: x})
    assert rel_err(again[0], ref) <= 1e-4
    return g


class Flat(nn.Module):
    """``x.view(x.size(0), -1)`` then a Linear: the Shape/Gather/Unsqueeze/Concat chain."""

    def __init__(self, c, h, w, out=5):
        super().__init__()
        self.fc = nn.Linear(c * h * w, out)

    def forward(self, x):
        return self.fc(x.view(x.size(0), -1))


class HardSwishNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.head = Flat(6, 8, 8)

    def forward(self, x):
        return self.head(F.hardswish(self.bn(self.conv(x))))


class HardSigmoidNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)

    def forward(self, x):
        return F.hardsigmoid(self.conv(x) * 3.0).flatten(1)


class SEBlock(nn.Module):
    """torchvision's SqueezeExcitation: pool, 1x1 reduce, ReLU, 1x1 expand, gate * x."""

    def __init__(self, c=8, squeeze=4, gate=F.hardsigmoid, gate_first=False):
        super().__init__()
        self.conv = nn.Conv2d(3, c, 3, padding=1)
        self.fc1, self.fc2 = nn.Conv2d(c, squeeze, 1), nn.Conv2d(squeeze, c, 1)
        self.gate, self.gate_first = gate, gate_first

    def forward(self, x):
        x = self.conv(x)
        s = self.gate(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1)))))
        return (s * x) if self.gate_first else (x * s)


class ConcatNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 2, 3, padding=1)

    def forward(self, x):
        return torch.cat([self.a(x), F.relu(self.b(x)), x], dim=1)


class PadNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2)
        self.zero = nn.ZeroPad2d((0, 1, 0, 1))               # TF "SAME" as torch writes it

    def forward(self, x):
        return self.conv(F.pad(self.zero(x), (2, 1, 0, 3), value=0.25))


class PReluNet(nn.Module):
    def __init__(self, per_channel):
        super().__init__()
        self.conv = nn.Conv2d(3, 5, 3, padding=1)
        self.act = nn.PReLU(5 if per_channel else 1)
        with torch.no_grad():
            self.act.weight.copy_(torch.linspace(-0.5, 0.7, self.act.weight.numel()))

    def forward(self, x):
        return self.act(self.conv(x))


class ActNet(nn.Module):
    def __init__(self, act):
        super().__init__()
        self.conv, self.act = nn.Conv2d(3, 4, 3, padding=1), act

    def forward(self, x):
        return self.act(self.conv(x))


class ConstArithNet(nn.Module):
    """A hand-written hard-swish (x + 3, clamp, / 6, * x) and per-channel constants:
    Add/Sub/Mul/Div of a constant."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.register_buffer("gamma", torch.tensor([0.5, -1.5, 2.0, 0.25]).view(1, 4, 1, 1))
        self.register_buffer("beta", torch.tensor([0.1, 0.2, -0.3, 0.4]).view(4, 1, 1))

    def forward(self, x):
        x = self.conv(x)
        x = x * (x + 3).clamp(0, 6) / 6
        x = x * self.gamma - self.beta
        return 1.0 - x


@pytest.mark.parametrize("dynamic_hw", [False, True])
def test_hardswish_and_view_flatten_import_and_agree(tmp_path, dynamic_hw):
    path = export(HardSwishNet(), tmp_path / "hswish.onnx", (3, 8, 8), dynamic_hw=dynamic_hw)
    g = check_against_ort_and_round_trip(path, (3, 8, 8), ["hardswish", "flatten", "linear"],
                                         input_shape=(3, 8, 8) if dynamic_hw else None)
    assert g.input_shape == (3, 8, 8) and g.output_shape == (5,)


def test_hardsigmoid_keeps_torch_alpha(tmp_path):
    path = export(HardSigmoidNet(), tmp_path / "hsig.onnx", (3, 9, 7))
    g = check_against_ort_and_round_trip(path, (3, 9, 7), ["hardsigmoid", "scale", "flatten"])
    hs = next(n for n in g.nodes if n.op == "hardsigmoid")
    assert (hs.alpha, hs.beta) == (float(np.float32(1 / 6)), 0.5)


@pytest.mark.parametrize("gate,gate_first", [(F.hardsigmoid, False), (torch.sigmoid, True)])
def test_squeeze_excitation_gate_broadcasts_over_h_and_w(tmp_path, gate, gate_first):
    path = export(SEBlock(gate=gate, gate_first=gate_first), tmp_path / "se.onnx", (3, 6, 5),
                  dynamic_hw=True)
    ops = ["mul", "global_avgpool", "hardsigmoid" if gate is F.hardsigmoid else "sigmoid"]
    g = check_against_ort_and_round_trip(path, (3, 6, 5), ops, input_shape=(3, 6, 5))
    mul = next(n for n in g.nodes if n.op == "mul")
    shapes = [g.node(i).shape for i in mul.inputs]
    assert shapes[0 if gate_first else 1] == (8, 1, 1) and mul.shape == (8, 6, 5)


def test_concat_on_channels(tmp_path):
    path = export(ConcatNet(), tmp_path / "cat.onnx", (3, 5, 6))
    g = check_against_ort_and_round_trip(path, (3, 5, 6), ["concat"])
    assert g.output_shape == (9, 5, 6)


def test_constant_pad_from_the_exporters_pads_chain(tmp_path):
    path = export(PadNet(), tmp_path / "pad.onnx", (3, 7, 7), dynamic_hw=True)
    g = check_against_ort_and_round_trip(path, (3, 7, 7), ["pad"], input_shape=(3, 7, 7))
    pads = [(n.padding, n.value) for n in g.nodes if n.op == "pad"]
    assert pads == [((0, 0, 1, 1), 0.0), ((0, 2, 3, 1), 0.25)]


@pytest.mark.parametrize("per_channel", [True, False])
def test_prelu_one_slope_or_one_per_channel(tmp_path, per_channel):
    path = export(PReluNet(per_channel), tmp_path / "prelu.onnx", (3, 6, 6))
    g = check_against_ort_and_round_trip(path, (3, 6, 6), ["prelu"])
    slope = next(g.params[n.slope] for n in g.nodes if n.op == "prelu")
    assert slope.shape == ((5,) if per_channel else (1,))


@pytest.mark.parametrize("act,op", [(nn.LeakyReLU(0.1), "leakyrelu"),
                                    (nn.LeakyReLU(), "leakyrelu"), (nn.Sigmoid(), "sigmoid"),
                                    (nn.Hardswish(), "hardswish")])
def test_pointwise_activations(tmp_path, act, op):
    path = export(ActNet(act), tmp_path / f"{op}.onnx", (3, 5, 5))
    g = check_against_ort_and_round_trip(path, (3, 5, 5), [op])
    if isinstance(act, nn.LeakyReLU):
        node = next(n for n in g.nodes if n.op == "leakyrelu")
        assert node.alpha == float(np.float32(act.negative_slope))


def test_add_sub_mul_div_of_constants_become_scales(tmp_path):
    path = export(ConstArithNet(), tmp_path / "arith.onnx", (3, 6, 6))
    g = check_against_ort_and_round_trip(path, (3, 6, 6), ["scale", "clip", "mul"])
    scales = [n for n in g.nodes if n.op == "scale"]
    # x + 3; / 6; * gamma - beta merged into one Scale; 1 - x
    assert len(scales) == 4
    gb = next(n for n in scales if g.params[n.weight].shape == (4,))
    np.testing.assert_array_equal(g.params[gb.weight], np.float32([0.5, -1.5, 2.0, 0.25]))
    np.testing.assert_array_equal(g.params[gb.bias], -np.float32([0.1, 0.2, -0.3, 0.4]))


def _model(nodes, inits, in_shape, out_shape, opset=17):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))
    y = helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, list(out_shape))
    g = helper.make_graph(nodes, "t", [x], [y],
                          initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _agree(model, shape, **kw):
    g = onnx_to_graph(model, **kw)
    x = np.random.default_rng(2).standard_normal((2, *shape)).astype(np.float32) * 4
    ref = ort.InferenceSession(model.SerializeToString(),
                               providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert rel_err(run_float(g, x), ref) <= 1e-4
    assert graphs_equal(g, onnx_to_graph(graph_to_onnx(g)))
    return g


def test_hardsigmoid_alpha_and_beta_attributes_are_read():
    m = _model([helper.make_node("HardSigmoid", ["x"], ["y"], alpha=0.3, beta=0.4)], {},
               ("N", 2, 3, 3), ("N", 2, 3, 3))
    g = _agree(m, (2, 3, 3))
    assert (g.nodes[1].alpha, g.nodes[1].beta) == (float(np.float32(0.3)),
                                                   float(np.float32(0.4)))
    m = _model([helper.make_node("HardSigmoid", ["x"], ["y"])], {}, ("N", 4), ("N", 4))
    assert (_agree(m, (4,)).nodes[1].alpha, m.graph.node[0].attribute) == (
        float(np.float32(0.2)), [])                           # ONNX defaults 0.2, 0.5


def test_pad_with_axes_input_opset_18():
    inits = {"pads": np.array([1, 0, 2, 3], np.int64), "v": np.array(-1.5, np.float32),
             "axes": np.array([-2, -1], np.int64)}
    m = _model([helper.make_node("Pad", ["x", "pads", "v", "axes"], ["y"], name="p")], inits,
               ("N", 2, 3, 4), ("N", 2, 5, 7), opset=18)
    g = _agree(m, (2, 3, 4))
    assert (g.nodes[1].padding, g.nodes[1].value) == ((1, 0, 2, 3), -1.5)


def test_missing_input_shape_names_file_input_and_axis(tmp_path):
    path = export(SEBlock(), tmp_path / "dyn.onnx", (3, 6, 5), dynamic_hw=True)
    with pytest.raises(InputError) as e:
        load_onnx(path)
    msg = str(e.value)
    assert (str(path) in msg and "'x'" in msg and "axis 2" in msg
            and "pass --input-shape 1x3xHxW" in msg)
    with pytest.raises(InputError, match="fixed at 3 in the model"):
        load_onnx(path, input_shape=(4, 6, 5))
    with pytest.raises(InputError, match="3 positive integers"):
        load_onnx(path, input_shape=(6, 5))


class ErfNet(nn.Module):
    def forward(self, x):
        return torch.erf(x)


class ReflectNet(nn.Module):
    def forward(self, x):
        return F.pad(x, (1, 1, 1, 1), mode="reflect")


def test_unsupported_op_is_named_with_node_and_file(tmp_path):
    path = export(ErfNet(), tmp_path / "erf.onnx", (3, 4, 4))
    with pytest.raises(InputError) as e:
        load_onnx(path)
    msg = str(e.value)
    assert str(path) in msg and "(Erf)" in msg and "unsupported op 'Erf'" in msg
    node = next(n for n in onnx.load(str(path)).graph.node if n.op_type == "Erf")
    assert repr(node.name) in msg
    m = _model([helper.make_node("Einsum", ["x"], ["y"], name="ein", equation="nchw->nchw")],
               {}, ("N", 2, 2, 2), ("N", 2, 2, 2), opset=17)
    with pytest.raises(InputError, match=r"<e.onnx>: node 'ein' \(Einsum\): unsupported op"):
        onnx_to_graph(m, source="<e.onnx>")


def test_reflect_pad_is_refused_clearly(tmp_path):
    path = export(ReflectNet(), tmp_path / "reflect.onnx", (3, 4, 4))
    with pytest.raises(InputError) as e:
        load_onnx(path)
    msg = str(e.value)
    assert str(path) in msg and "(Pad)" in msg and "mode='reflect' is not supported" in msg


class SEClassifier(nn.Module):
    """An SE block, then pool, flatten and a Linear: class scores for ``fpxint run``."""

    def __init__(self):
        super().__init__()
        self.se, self.fc = SEBlock(), nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(self.se(x), 1).flatten(1))


def test_cli_run_takes_input_shape_for_a_symbolic_file(tmp_path, capsys):
    path = export(SEClassifier(), tmp_path / "se.onnx", (3, 6, 5), dynamic_hw=True)
    assert main(["run", "--model", str(path)]) == 2
    assert "pass --input-shape 1x3xHxW" in capsys.readouterr().err
    assert main(["run", "--model", str(path), "--input-shape", "1x3x6"]) == 2   # a 1xTxF
    assert "input_shape must be 3 positive integers (C, H, W)" in capsys.readouterr().err
    assert main(["run", "--model", str(path), "--input-shape", "1x3x6x5", "--limit", "2"]) == 0
    assert "input (3, 6, 5), output (4,)" in capsys.readouterr().out
    assert main(["run", "--model", "mnist-resnet", "--input-shape", "1x1x28x28"]) == 2
    assert "--input-shape applies to .onnx files" in capsys.readouterr().err


def test_leakyrelu_without_alpha_uses_the_onnx_default():
    m = _model([helper.make_node("LeakyRelu", ["x"], ["y"])], {}, ("N", 2, 3, 3),
               ("N", 2, 3, 3))
    assert _agree(m, (2, 3, 3)).nodes[1].alpha == float(np.float32(0.01))


def test_constant_divided_by_an_activation_is_refused():
    m = _model([helper.make_node("Div", ["c", "x"], ["y"], name="inv")],
               {"c": np.float32([2.0])}, ("N", 2, 3, 3), ("N", 2, 3, 3))
    with pytest.raises(InputError, match=r"'inv' \(Div\): a constant divided by an activation"):
        onnx_to_graph(m)
    m = _model([helper.make_node("Mul", ["x", "c"], ["y"], name="rowwise")],
               {"c": np.ones((3, 1), np.float32)}, ("N", 2, 3, 3), ("N", 2, 3, 3))
    with pytest.raises(InputError, match=r"'rowwise'.*does not broadcast per channel"):
        onnx_to_graph(m)


@pytest.mark.parametrize("stride,padding,extra,groups,dilation", [
    (2, 1, 1, 1, 1),             # the usual 2x upsampling deconvolution
    (3, 0, 0, 2, 1),             # grouped, no padding
    (2, 2, 0, 1, 2),             # dilated
    (1, 1, 0, 1, 1),             # stride 1
])
def test_conv_transpose_is_a_convolution_of_the_zero_inserted_map(tmp_path, stride, padding,
                                                                  extra, groups, dilation):
    net = nn.Sequential(nn.ConvTranspose2d(4, 6, 3, stride=stride, padding=padding,
                                           output_padding=extra, groups=groups,
                                           dilation=dilation), nn.ReLU())
    path = export(net, tmp_path / "deconv.onnx", (4, 5, 7))
    g = check_against_ort_and_round_trip(path, (4, 5, 7), ["zero_insert", "conv"])
    conv = next(n for n in g.nodes if n.op == "conv")
    assert conv.stride == (1, 1) and conv.groups == groups


def test_nearest_upsampling_imports_as_repeats(tmp_path):
    class Up(nn.Module):
        def forward(self, x):
            return F.interpolate(x, scale_factor=(2, 3), mode="nearest") + 1.0

    g = check_against_ort_and_round_trip(export(Up(), tmp_path / "up.onnx", (3, 4, 5)),
                                         (3, 4, 5), ["upsample"])
    assert next(n for n in g.nodes if n.op == "upsample").scale == (2, 3)


@pytest.mark.parametrize("kind,match", [
    ("bilinear", "mode='linear' is not supported"),
    ("fractional", r"only integer upsampling"),
])
def test_resize_that_is_not_a_repeat_is_refused(tmp_path, kind, match):
    class Up(nn.Module):
        def forward(self, x):
            if kind == "bilinear":
                return F.interpolate(x, scale_factor=2, mode="bilinear")
            return F.interpolate(x, scale_factor=1.5, mode="nearest")

    path = export(Up(), tmp_path / "up.onnx", (3, 4, 4))
    with pytest.raises(InputError, match=match) as err:
        load_onnx(path)
    assert "up.onnx" in str(err.value) and "Resize" in str(err.value)
