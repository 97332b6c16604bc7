"""ONNX models that take token ids (transformers' BertModel as torch.onnx writes it, with and
without attention_mask and token_type_ids): the embedding step kept on the host, the mask
and position computations folded, agreement with onnxruntime, the round trip, the integer
program, the command line and the errors."""

import json

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from fpxint_hw import golden  # noqa: E402
from fpxint_hw.cli import main  # noqa: E402
from fpxint_hw.errors import InputError  # noqa: E402
from fpxint_hw.float_exec import run_float  # noqa: E402
from fpxint_hw.intsim import Simulator  # noqa: E402
from fpxint_hw.io.onnx_export import graph_to_onnx  # noqa: E402
from fpxint_hw.io.onnx_import import load_onnx, onnx_to_graph  # noqa: E402
from fpxint_hw.quant import expand_graph  # noqa: E402
from fpxint_hw.spec import SeriesFormat  # noqa: E402

VOCAB, T = 50, 7


@pytest.fixture(scope="module", params=["ids-mask-types", "ids"])
def exported(request, tmp_path_factory):
    """A one-layer random BERT (hidden 32, 4 heads, vocabulary 50) exported by torch.onnx
    from its token ids (symbolic batch and length), with or without the other two inputs."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1,
                                  num_attention_heads=4, intermediate_size=64,
                                  max_position_embeddings=16, type_vocab_size=2)
    bert = transformers.BertModel(cfg, add_pooling_layer=False).eval()
    with torch.no_grad():          # segment 0 and 1 differ, so a wrong fill would show
        bert.embeddings.token_type_embeddings.weight[1] += 1.0
    full = request.param == "ids-mask-types"
    names = ["input_ids", "attention_mask", "token_type_ids"] if full else ["input_ids"]

    class Ids(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = bert

        def forward(self, *inputs):
            kw = dict(zip(["input_ids", "attention_mask", "token_type_ids"], inputs))
            return self.bert(**kw).last_hidden_state

    example = tuple(torch.ones(1, T, dtype=torch.long) * v for v in (3, 1, 0))[:len(names)]
    path = tmp_path_factory.mktemp("tokens") / f"{request.param}.onnx"
    torch.onnx.export(Ids(), example, str(path), dynamo=False, opset_version=17,
                      input_names=names, output_names=["y"],
                      dynamic_axes={n: {0: "batch", 1: "tokens"} for n in names})
    return path, names


def _ort(path, names, ids):
    """onnxruntime on each sequence of ``ids`` with the mask all ones and segment 0."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    fill = {"attention_mask": 1, "token_type_ids": 0}
    return np.concatenate([sess.run(None, {n: (r[None] if n == "input_ids" else
                                               np.full((1, len(r)), fill[n])).astype(np.int64)
                                           for n in names})[0] for r in ids])


def _rel(y, ref):
    return float(np.abs(y - ref).max() / np.abs(ref).max())


def test_token_ids_import_with_the_embedding_on_the_host_and_agree(exported):
    path, names = exported
    with pytest.raises(InputError, match=r"'input_ids' axis 1 \(T\) is symbolic.*"
                                         r"--input-shape 1xT"):
        load_onnx(path)
    g = load_onnx(path, input_shape=(T,))
    inp = g.input
    assert inp.name == "input_ids" and g.input_shape == (T, 32)
    assert g.params[inp.embedding].shape == (VOCAB, 32) and inp.addend is not None
    assert [n.op for n in g.nodes][:2] == ["input", "layernorm"]     # the Adds on the host
    ids = np.random.default_rng(0).integers(0, VOCAB, (3, T))
    assert _rel(run_float(g, g.embed(ids)), _ort(path, names, ids)) <= 1e-4
    with pytest.raises(InputError, match=r"token id 50 is outside the vocabulary 0..49"):
        g.embed(np.full((1, T), VOCAB))
    with pytest.raises(InputError, match=r"must be \(N, 7\) integers"):
        g.embed(np.zeros((1, T + 1), np.int64))
    # max_position_embeddings = 16: the positions' Add or the segment buffer's Expand says so
    with pytest.raises(InputError, match=r"adds 16 rows \(positions\) to 17 tokens; give at "
                                         r"most 16 tokens \(--input-shape 1x16\)|Expand.*"
                                         r"does the model take 17 tokens\?"):
        load_onnx(path, input_shape=(17,))
    assert load_onnx(path, input_shape=(16,)).input_shape == (16, 32)


def test_a_token_model_round_trips_and_runs_in_onnxruntime(exported):
    path, _ = exported
    g = load_onnx(path, input_shape=(T,))
    model = graph_to_onnx(g)
    assert [i.name for i in model.graph.input] == ["input_ids"]
    back = onnx_to_graph(model)
    assert back.nodes == g.nodes and set(back.params) == set(g.params)
    assert all(np.array_equal(back.params[k], g.params[k]) for k in g.params)
    ids = np.random.default_rng(1).integers(0, VOCAB, (2, T))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    y = sess.run(None, {"input_ids": ids.astype(np.int64)})[0]
    assert _rel(run_float(g, g.embed(ids)), y) <= 1e-5


def test_a_token_model_is_an_integer_program_golden_and_the_simulator_agree(exported):
    path, _ = exported
    g = load_onnx(path, input_shape=(T,), fold_bn=False)
    prog = expand_graph(g, SeriesFormat(8, 2, per_channel=True), SeriesFormat(8, 2))
    x = g.embed(np.random.default_rng(2).integers(0, VOCAB, (2, T)))
    assert np.array_equal(Simulator(prog)(x), golden.run_program(prog, x)[0])


def test_simulate_runs_a_token_model_on_seeded_ids(exported, tmp_path, capsys):
    path, _ = exported
    rc = main(["simulate", "--model", str(path), "--input-shape", "1x7", "--images", "2",
               "--check", "golden", "--json", str(tmp_path / "r.json")])
    assert rc == 0
    got = json.loads((tmp_path / "r.json").read_text())
    assert got["golden_check"]["mismatches"] == 0 and got["golden_check"]["layers_checked"]
    assert "0 mismatches" in capsys.readouterr().out


def test_ids_that_feed_more_than_the_embedding_are_refused_naming_them():
    from onnx import TensorProto, helper, numpy_helper
    table = np.ones((VOCAB, 4), np.float32)
    nodes = [helper.make_node("Gather", ["table", "ids"], ["e"], name="embed"),
             helper.make_node("Cast", ["ids"], ["f"], name="cast", to=TensorProto.FLOAT),
             helper.make_node("Unsqueeze", ["f", "ax"], ["fu"], name="unsq"),
             helper.make_node("Add", ["e", "fu"], ["y"], name="add")]
    g = helper.make_graph(
        nodes, "t", [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, T])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(table, "table"),
                     numpy_helper.from_array(np.array([2], np.int64), "ax")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(InputError, match=r"m.onnx: token ids 'ids' must feed one embedding "
                                         r"Gather"):
        onnx_to_graph(m, source="m.onnx")
