"""ONNX import and export of transformer encoder layers: sequences, per-head views,
attention, LayerNorm and GELU (decomposed or fused), against onnxruntime."""

import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from fpxint_hw import golden  # noqa: E402
from fpxint_hw.errors import InputError  # noqa: E402
from fpxint_hw.float_exec import run_float  # noqa: E402
from fpxint_hw.intsim import Simulator  # noqa: E402
from fpxint_hw.io.onnx_export import graph_to_onnx  # noqa: E402
from fpxint_hw.io.onnx_import import onnx_to_graph  # noqa: E402
from fpxint_hw.quant import expand_graph  # noqa: E402
from fpxint_hw.spec import SeriesFormat  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from transformer_helpers import F, H, T, tiny_encoder, tiny_inputs  # noqa: E402


def _ort(model, x):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def _rel(y, ref):
    return float(np.abs(y - ref).max() / np.abs(ref).max())


def test_encoder_round_trips_losslessly_and_runs_in_onnxruntime():
    g = tiny_encoder(0)
    model = graph_to_onnx(g)
    back = onnx_to_graph(model)
    assert [(n.op, n.name, n.inputs) for n in back.nodes] == \
        [(n.op, n.name, n.inputs) for n in g.nodes]
    assert back.nodes == g.nodes
    assert set(back.params) == set(g.params)
    assert all(np.array_equal(back.params[k], g.params[k]) for k in g.params)
    x = tiny_inputs(2)
    assert _rel(run_float(g, x), _ort(model, x)) <= 1e-4


@pytest.fixture(scope="module", params=[14, 17], ids=["opset14-decomposed", "opset17"])
def torch_bert_layer(request, tmp_path_factory):
    """A one-layer random BERT encoder (4 heads of 8) exported by torch.onnx from
    transformers, from the hidden states on (embedding LayerNorm, then the layer)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1,
                                  num_attention_heads=4, intermediate_size=64,
                                  max_position_embeddings=16)
    bert = transformers.BertModel(cfg, add_pooling_layer=False).eval()

    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = bert

        def forward(self, h):
            return self.bert.encoder(self.bert.embeddings.LayerNorm(h)).last_hidden_state

    path = tmp_path_factory.mktemp("bert") / f"bert{request.param}.onnx"
    torch.onnx.export(Encoder(), (torch.randn(1, 7, 32),), str(path), dynamo=False,
                      opset_version=request.param, input_names=["h"], output_names=["y"],
                      dynamic_axes={"h": {0: "batch", 1: "tokens"}})
    return onnx.load(str(path)), request.param


def test_torch_exported_bert_layer_imports_and_agrees_with_onnxruntime(torch_bert_layer):
    model, opset = torch_bert_layer
    if opset < 17:                                   # LayerNorm and GELU spelled out
        ops = {n.op_type for n in model.graph.node}
        assert {"ReduceMean", "Pow", "Sqrt", "Erf"} <= ops
    with pytest.raises(InputError, match=r"symbolic.*--input-shape 1xTx32"):
        onnx_to_graph(model, source="bert.onnx")
    g = onnx_to_graph(model, input_shape=(7, 32))
    kinds = [n.op for n in g.nodes]
    assert kinds.count("layernorm") == 3 and kinds.count("gelu") == 1
    assert "scale" in kinds and kinds.count("softmax") == 1
    mm = [n for n in g.nodes if n.op == "matmul"]
    assert [(n.heads, n.transpose_b) for n in mm] == [(4, True), (4, False)]
    x = np.random.default_rng(0).standard_normal((2, 7, 32)).astype(np.float32)
    assert _rel(run_float(g, x), _ort(model, x)) <= 1e-4
    # and the imported layer is an integer program that golden and the simulator agree on
    prog = expand_graph(g, SeriesFormat(8, 2, per_channel=True), SeriesFormat(8, 2))
    assert np.array_equal(Simulator(prog)(x), golden.run_program(prog, x)[0])


def test_input_shape_of_a_sequence_parses_as_tokens_by_features():
    from fpxint_hw.workflows.network import parse_input_shape
    assert parse_input_shape("1x7x32") == (7, 32)
    assert parse_input_shape("Nx7x32") == (7, 32)
    with pytest.raises(InputError, match="NxTxF"):
        parse_input_shape("1x7x0")


def _graph(nodes, inits, shape=(1, T, F), out_shape=None):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)
    g = helper.make_graph(nodes, "t", [x], [y],
                          initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


_SPLIT = np.array([1, T, H, F // H], np.int64)


def test_transposing_a_plain_sequence_is_refused_naming_the_node():
    m = _graph([helper.make_node("Transpose", ["x"], ["y"], name="tr", perm=[0, 2, 1])], {})
    with pytest.raises(InputError, match=r"m.onnx: node 'tr' \(Transpose\).*sequence"):
        onnx_to_graph(m, source="m.onnx")


def test_a_mask_that_masks_something_is_refused_and_a_zero_mask_is_dropped():
    def model(mask):
        nodes = [helper.make_node("Reshape", ["x", "s"], ["sp"], name="split"),
                 helper.make_node("Transpose", ["sp"], ["q"], name="qh", perm=[0, 2, 1, 3]),
                 helper.make_node("Transpose", ["sp"], ["kt"], name="kt", perm=[0, 2, 3, 1]),
                 helper.make_node("MatMul", ["q", "kt"], ["sc"], name="scores"),
                 helper.make_node("Add", ["sc", "mask"], ["sm"], name="masked"),
                 helper.make_node("Softmax", ["sm"], ["p"], name="probs", axis=-1),
                 helper.make_node("MatMul", ["p", "q"], ["c"], name="context"),
                 helper.make_node("Transpose", ["c"], ["ct"], name="back", perm=[0, 2, 1, 3]),
                 helper.make_node("Reshape", ["ct", "m"], ["y"], name="merge")]
        return _graph(nodes, {"s": _SPLIT, "mask": mask, "m": np.array([0, 0, F], np.int64)})
    g = onnx_to_graph(model(np.zeros((1, 1, 1, T), np.float32)))
    assert [n.op for n in g.nodes] == ["input", "matmul", "softmax", "matmul"]
    x = tiny_inputs(1)                               # the model's batch is fixed at 1
    m = model(np.zeros((1, 1, 1, T), np.float32))
    assert _rel(run_float(g, x), _ort(m, x)) <= 1e-4
    bad = np.zeros((1, 1, 1, T), np.float32)
    bad[..., -1] = -1e4
    with pytest.raises(InputError, match=r"node 'masked' \(Add\).*all zeros"):
        onnx_to_graph(model(bad), source="m.onnx")


def test_a_per_head_output_is_refused():
    nodes = [helper.make_node("Reshape", ["x", "s"], ["sp"], name="split"),
             helper.make_node("Transpose", ["sp"], ["y"], name="qh", perm=[0, 2, 1, 3])]
    with pytest.raises(InputError, match=r"output 'y' is a per-head view"):
        onnx_to_graph(_graph(nodes, {"s": _SPLIT}), source="m.onnx")


def test_a_per_head_tensor_read_by_another_op_is_refused_naming_it():
    nodes = [helper.make_node("Reshape", ["x", "s"], ["sp"], name="split"),
             helper.make_node("Relu", ["sp"], ["y"], name="act")]
    with pytest.raises(InputError, match=r"node 'act' \(Relu\): input 'sp' is a per-head "
                                         r"view \(1, T, H, d\)"):
        onnx_to_graph(_graph(nodes, {"s": _SPLIT}), source="m.onnx")


@pytest.mark.parametrize("half", [0.5, 0.25])
def test_only_the_exact_gelu_chain_is_fused(half):
    """``x * (1 + erf(x / sqrt 2)) * c`` is a GELU for c = 1/2 only; with another c the Erf
    stays, and is refused naming it."""
    consts = {"r2": np.array(np.sqrt(2.0), np.float32), "one": np.array(1.0, np.float32),
              "c": np.array(half, np.float32)}
    nodes = [helper.make_node("Div", ["x", "r2"], ["d"], name="div"),
             helper.make_node("Erf", ["d"], ["e"], name="erf"),
             helper.make_node("Add", ["e", "one"], ["a"], name="add"),
             helper.make_node("Mul", ["x", "a"], ["p"], name="mul"),
             helper.make_node("Mul", ["p", "c"], ["y"], name="half")]
    m = _graph(nodes, consts)
    if half == 0.5:
        g = onnx_to_graph(m)
        assert [n.op for n in g.nodes] == ["input", "gelu"]
        x = tiny_inputs(1)
        assert _rel(run_float(g, x), _ort(m, x)) <= 1e-4
    else:
        with pytest.raises(InputError, match=r"m.onnx: node 'erf' \(Erf\): unsupported op"):
            onnx_to_graph(m, source="m.onnx")
