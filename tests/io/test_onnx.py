"""ONNX export and import: lossless round trips, the onnxruntime oracle, foreign files, errors."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the onnx package reads and writes ONNX")

from fpxint_hw.cli import main  # noqa: E402
from fpxint_hw.errors import InputError  # noqa: E402
from fpxint_hw.float_exec import run_float  # noqa: E402
from fpxint_hw.graph import graphs_equal  # noqa: E402
from fpxint_hw.io.onnx_export import graph_to_onnx, save_onnx  # noqa: E402
from fpxint_hw.io.onnx_import import load_onnx, onnx_to_graph  # noqa: E402
from fpxint_hw.models import build_model  # noqa: E402
from nethelpers import need_efficientnet_weights, ort_run, rel_err  # noqa: E402
from test_graph import small_graph  # noqa: E402

from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def test_round_trip_is_lossless_with_and_without_batchnorm(tmp_path):
    g = small_graph(np.random.default_rng(0))
    for keep_bn in (True, False):
        src = g
        path = tmp_path / f"g{keep_bn}.onnx"
        save_onnx(src, path)
        back = load_onnx(path, fold_bn=not keep_bn)
        if keep_bn:
            assert graphs_equal(src, back)
            assert any(n.op == "batchnorm" for n in back.nodes)
        else:
            assert not any(n.op == "batchnorm" for n in back.nodes)


@pytest.mark.parametrize("name,fold,batch", [
    ("resnet18", True, None), ("resnet18", False, 1),
    ("mnist-resnet", True, 1), ("mnist-resnet", False, None),
])
def test_zoo_round_trip_is_lossless(name, fold, batch, tmp_path):
    g = build_model(name, fold_bn=fold)
    path = tmp_path / f"{name}.onnx"
    save_onnx(g, path, batch=batch)
    back = load_onnx(path, fold_bn=False)
    assert graphs_equal(g, back)
    assert back.name == g.name


def test_symbolic_and_fixed_batch_exports_run_in_onnxruntime():
    g = build_model("mnist-resnet")
    x = np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32)
    ref = run_float(g, x)
    assert rel_err(ort_run(g, x), ref) <= 1e-5
    for i in range(3):
        assert rel_err(ort_run(g, x[i:i + 1], batch=1), ref[i:i + 1]) <= 1e-5
    model = graph_to_onnx(g, batch=1)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1
    model = graph_to_onnx(g)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"


def test_resnet18_matches_onnxruntime():
    g = build_model("resnet18")
    x = np.random.default_rng(1).standard_normal((2, 3, 224, 224)).astype(np.float32)
    err = rel_err(run_float(g, x), ort_run(g, x))
    assert err <= 1e-4, err


def test_resnet50_matches_onnxruntime():
    g = build_model("resnet50")
    x = np.random.default_rng(2).standard_normal((1, 3, 224, 224)).astype(np.float32)
    err = rel_err(run_float(g, x), ort_run(g, x))
    assert err <= 1e-4, err


def test_efficientnet_lite0_real_weights_match_onnxruntime():
    need_efficientnet_weights()
    from fpxint_hw.models import MODELS, sample_inputs

    g = build_model("efficientnet-lite0")
    info = MODELS["efficientnet-lite0"]
    x = sample_inputs(g.input_shape, mean=info.mean, std=info.std, limit=2).x
    err = rel_err(run_float(g, x), ort_run(g, x))
    assert err <= 1e-4, err


def _model(nodes, inits, in_shape=("N", 2, 4, 4), out_shape=("N", 2, 4, 4), opset=17):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))
    y = helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, out_shape)
    g = helper.make_graph(nodes, "t", [x], [y],
                          initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def test_foreign_patterns_import():
    """Constant bounds, auto_pad, Gemm transB=0, MatMul + Add bias, Reshape, ReduceMean."""
    rng = np.random.default_rng(3)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    fc = rng.standard_normal((3, 5)).astype(np.float32)        # (F_in, F_out): transB=0
    mm = rng.standard_normal((5, 4)).astype(np.float32)
    bias = rng.standard_normal(4).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], auto_pad="SAME_UPPER", strides=[2, 2]),
        helper.make_node("Constant", [], ["lo"], value=numpy_helper.from_array(
            np.array(-1.0, np.float32))),
        helper.make_node("Constant", [], ["hi"], value=numpy_helper.from_array(
            np.array(2.5, np.float32))),
        helper.make_node("Clip", ["c", "lo", "hi"], ["cl"]),
        helper.make_node("Identity", ["cl"], ["id"]),
        helper.make_node("ReduceMean", ["id"], ["rm"], axes=[2, 3], keepdims=1),
        helper.make_node("Reshape", ["rm", "shape"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc"], ["g"]),
        helper.make_node("MatMul", ["g", "mm"], ["m"]),
        helper.make_node("Add", ["m", "bias"], ["out"]),
    ]
    model = _model(nodes, {"w": w, "fc": fc, "mm": mm, "bias": bias,
                           "shape": np.array([0, -1], np.int64)}, out_shape=("N", 4))
    onnx.checker.check_model(model)
    g = onnx_to_graph(model)
    assert [n.op for n in g.nodes] == ["input", "conv", "clip", "global_avgpool", "flatten",
                                       "linear", "linear"]
    assert g.nodes[1].padding == (0, 0, 1, 1)        # SAME_UPPER on 4x4, k3 s2
    assert g.nodes[-1].bias == "bias"
    ort = pytest.importorskip("onnxruntime", reason="external oracle")
    x = rng.standard_normal((2, 2, 4, 4)).astype(np.float32)
    ref = ort.InferenceSession(model.SerializeToString(),
                               providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert rel_err(run_float(g, x), ref) <= 1e-5


@pytest.mark.parametrize("attrs", [{}, {"count_include_pad": 0}, {"count_include_pad": 1}])
def test_average_pool_padding_counts_as_onnx_says(attrs):
    """ONNX's AveragePool leaves the padding out of the mean unless count_include_pad=1
    (the attribute's default is 0): imported, our float executor agrees with onnxruntime."""
    nodes = [helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3],
                              pads=[1, 1, 1, 1], **attrs)]
    g = onnx_to_graph(_model(nodes, {}))
    assert g.nodes[1].count_include_pad is bool(attrs.get("count_include_pad", 0))
    ort = pytest.importorskip("onnxruntime", reason="external oracle")
    x = np.random.default_rng(5).uniform(1, 2, (2, 2, 4, 4)).astype(np.float32)
    ref = ort.InferenceSession(_model(nodes, {}).SerializeToString(),
                               providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert rel_err(run_float(g, x), ref) <= 1e-6


def test_torch_exported_onnx_imports_and_agrees(tmp_path):
    torch = pytest.importorskip("torch", reason="torch writes the foreign ONNX file")
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.nn.BatchNorm2d(8),
        torch.nn.ReLU6(), torch.nn.MaxPool2d(2), torch.nn.Conv2d(8, 8, 3, padding=1, groups=8),
        torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        torch.nn.Linear(8, 5))
    with torch.no_grad():
        net[1].running_mean.uniform_(-1, 1)
        net[1].running_var.uniform_(0.5, 2)
    net.eval()
    path = tmp_path / "t.onnx"
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.zeros(1, 3, 16, 16),), str(path), dynamo=False,
                          input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "N"}})
    g = load_onnx(path)
    x = np.random.default_rng(0).standard_normal((3, 3, 16, 16)).astype(np.float32)
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    assert rel_err(run_float(g, x), ref) <= 1e-5


def test_unsupported_op_names_op_node_and_file(tmp_path):
    model = _model([helper.make_node("Softsign", ["x"], ["s"], name="gate")], {})
    path = tmp_path / "softsign.onnx"
    onnx.save(model, path)
    with pytest.raises(InputError) as e:
        load_onnx(path)
    msg = str(e.value)
    assert str(path) in msg and "'gate'" in msg and "'Softsign'" in msg


def test_truncated_and_non_onnx_files_are_rejected(tmp_path):
    good = tmp_path / "good.onnx"
    save_onnx(small_graph(np.random.default_rng(0)), good)
    data = good.read_bytes()
    bad = tmp_path / "cut.onnx"
    bad.write_bytes(data[: len(data) // 2])
    text = tmp_path / "notes.onnx"
    text.write_text("this is not a network\n" * 20)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    for p in (bad, text, empty, tmp_path / "missing.onnx"):
        with pytest.raises(InputError) as e:
            load_onnx(p)
        assert str(p) in str(e.value)


def test_fixed_batch_other_than_one_and_symbolic_spatial_are_rejected():
    relu = [helper.make_node("Relu", ["x"], ["r"])]
    with pytest.raises(InputError, match="fixed batch of 4"):
        onnx_to_graph(_model(relu, {}, in_shape=(4, 2, 4, 4)))
    with pytest.raises(InputError,
                       match=r"axis 2 \(H\) is symbolic \(H\); pass --input-shape 1x2xHx4"):
        onnx_to_graph(_model(relu, {}, in_shape=("N", 2, "H", 4)))
    g = onnx_to_graph(_model(relu, {}, in_shape=(1, 2, 4, 4)))
    assert g.input_shape == (2, 4, 4)


def test_weight_computed_at_run_time_is_rejected():
    nodes = [helper.make_node("Relu", ["x"], ["wx"]),
             helper.make_node("Conv", ["x", "wx"], ["c"], name="dyn")]
    with pytest.raises(InputError, match="'dyn'.*must be a constant"):
        onnx_to_graph(_model(nodes, {}, out_shape=("N", 2, 2, 2)))


def test_cli_run_on_an_onnx_file_with_each_batch_form(tmp_path, capsys):
    g = build_model("mnist-resnet")
    for batch in (None, 1):
        path = tmp_path / f"m{batch}.onnx"
        save_onnx(g, path, batch=batch)
        assert main(["run", "--model", str(path), "--limit", "50"]) == 0
        out = capsys.readouterr().out
        assert "held-out accuracy" in out


def test_bad_attribute_and_weight_shape_name_file_and_node(tmp_path):
    w = np.zeros((4, 3, 3, 3), np.float32)
    m = _model([helper.make_node("Conv", ["x", "w"], ["c"], name="c0", strides=[0, 1])],
               {"w": w}, out_shape=("N", 4, 2, 2))
    with pytest.raises(InputError, match=r"<t>: node 'c0' \(Conv\).*stride"):
        onnx_to_graph(m, source="<t>")
    m = _model([helper.make_node("Conv", ["x", "w"], ["c"], name="c1")], {"w": w},
               out_shape=("N", 4, 2, 2))
    with pytest.raises(InputError, match=r"<t>: node 'c1'.*'w'.*\(4, 3, 3, 3\)"):
        onnx_to_graph(m, source="<t>")       # input has 2 channels, weight wants 3


def test_opsets_outside_what_the_importer_reads_are_refused(tmp_path):
    """Opset 11 (the oldest read) and the installed onnx's newest load; 10 and newest + 1
    are refused with the range, before any op is interpreted."""
    from fpxint_hw.io.onnx_import import MIN_OPSET, read_onnx
    newest = onnx.defs.onnx_opset_version()
    for opset, ok in ((MIN_OPSET - 1, False), (MIN_OPSET, True), (newest, True),
                      (newest + 1, False)):
        path = tmp_path / f"relu{opset}.onnx"
        onnx.save_model(_model([helper.make_node("Relu", ["x"], ["y"])], {}, opset=opset),
                        str(path))
        if ok:
            assert read_onnx(path).opset_import[0].version == opset
        else:
            with pytest.raises(InputError, match=f"relu{opset}.onnx.*opset"):
                read_onnx(path)
