"""``fpxint simulate`` end to end on a small model (fast) and ResNet-50 tiles (slow)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fpxint_hw.cli import main
from fpxint_hw.golden import reference_tile
from fpxint_hw.tile import load_tile


def _mnist_available():
    from fpxint_hw.models import default_weights
    try:
        return default_weights("mnist-resnet") is not None
    except Exception:
        return False


MODEL = "mnist-resnet" if _mnist_available() else "resnet18"


@pytest.mark.skipif(MODEL != "mnist-resnet", reason="trained MNIST weights not present")
def test_simulate_mnist_json_golden_check_and_tiles(tmp_path, capsys):
    out = tmp_path / "r.json"
    rc = main(["simulate", "--model", "mnist-resnet", "--images", "40", "--check", "golden",
               "--dump-tiles", str(tmp_path / "tiles"), "--tile-shape", "8x8",
               "--json", str(out)])
    assert rc == 0
    r = json.loads(out.read_text())
    for key in ("model", "level", "w_bits", "w_terms", "a_bits", "a_terms", "images",
                "top1_agreement", "logit_sqnr_db", "accuracy", "golden_check", "seconds"):
        assert key in r
    assert r["images"] == 40 and r["level"] == "layer"
    assert r["golden_check"]["mismatches"] == 0 and r["golden_check"]["layers_checked"] > 10
    assert 0.0 <= r["accuracy"] <= 1.0
    assert [p["w_terms"] for p in r["per_term"]] == [1, 2]
    index = json.loads((tmp_path / "tiles" / "index.json").read_text())
    assert index
    for entry in index[:5]:
        tile, expected = load_tile(tmp_path / "tiles" / entry["file"])
        assert tile.k <= 8 and tile.n <= 8
        ref = reference_tile(tile)
        np.testing.assert_array_equal(ref.acc, expected.acc)
        np.testing.assert_array_equal(ref.out, expected.out)
    assert "top-1 agree" in capsys.readouterr().out


def test_simulate_rejects_bad_override(capsys):
    rc = main(["simulate", "--model", "mnist-resnet", "--override", "conv1=8/8"])
    assert rc == 2
    assert "--override" in capsys.readouterr().err


@pytest.mark.slow
def test_simulate_resnet50_tiles_replay_real_layer(tmp_path):
    """8x8 tiles of a real ResNet-50 1x1 conv whose K=64 is cut into 8 slices, and a full-K
    tile shape whose outputs are the layer's own."""
    rc = main(["simulate", "--model", "resnet50", "--images", "1", "--no-per-term",
               "--dump-tiles", str(tmp_path / "t"), "--tile-shape", "64x8",
               "--tile-layers", "layer1.0.relu1", "--max-tiles", "4",
               "--json", str(tmp_path / "r.json")])
    assert rc == 0
    index = json.loads((tmp_path / "t" / "index.json").read_text())
    assert len(index) == 4 and all(e["full_k"] for e in index)


def test_simulate_onnx_file_with_golden_check_and_tiles(tmp_path, capsys):
    """An ONNX file of a graph with every supported op, through the whole command."""
    from fpxint_hw.graph import fold_batchnorm
    from fpxint_hw.io.onnx_export import save_onnx
    from nethelpers import tiny_graph
    path = tmp_path / "tiny.onnx"
    save_onnx(fold_batchnorm(tiny_graph()), path)
    out = tmp_path / "r.json"
    rc = main(["simulate", "--model", str(path), "--w-terms", "3", "--a-terms", "2",
               "--check", "golden", "--dump-tiles", str(tmp_path / "tiles"),
               "--tile-shape", "8x4", "--tile-layers", "c3", "--json", str(out)])
    assert rc == 0
    r = json.loads(out.read_text())
    assert r["golden_check"]["mismatches"] == 0
    assert r["golden_check"]["layers_checked"] >= 10
    assert r["accuracy"] is None and r["images"] == 4
    assert [(p["w_terms"], p["a_terms"]) for p in r["per_term"]] == [(1, 1), (2, 2), (3, 2)]
    index = json.loads((tmp_path / "tiles" / "index.json").read_text())
    assert len(index) == 2 and all(e["full_k"] for e in index)       # c3: K = 8, N = 8
    for entry in index:
        tile, expected = load_tile(tmp_path / "tiles" / entry["file"])
        np.testing.assert_array_equal(reference_tile(tile).out, expected.out)


def test_simulate_for_a_spec_records_what_shaped_the_program(tmp_path, capsys):
    from fpxint_hw.spec import load_array_spec
    out = tmp_path / "r.json"
    rc = main(["simulate", "--model", "mnist-resnet", "--spec", "tiny", "--images", "20",
               "--check", "golden", "--json", str(out)])
    assert rc == 0
    r = json.loads(out.read_text())
    spec = load_array_spec("tiny")
    assert r["spec"] == "tiny" and r["spec_fields"] == spec.to_dict()
    opts = r["program_options"]
    assert (opts["m0_bits"], opts["rounding"]) == (spec.m0_bits, spec.rounding) == (8, "rne")
    assert opts["w_fmt"]["bits"] == spec.w_bits and opts["a_fmt"]["terms"] == spec.a_terms
    assert r["golden_check"]["mismatches"] == 0
    assert r["array_layers"] + len(r["host_layers"]) == 10
    assert "fit the array" in capsys.readouterr().out


def test_simulate_spec_excludes_format_flags(capsys):
    rc = main(["simulate", "--model", "mnist-resnet", "--spec", "tiny", "--w-bits", "4"])
    assert rc == 2
    assert "--w-bits does not apply with --spec" in capsys.readouterr().err


@pytest.mark.skipif(MODEL != "mnist-resnet", reason="trained MNIST weights not present")
def test_calibration_inputs_are_left_out_of_the_scores(tmp_path, capsys):
    out = tmp_path / "c.json"
    assert main(["simulate", "--model", "mnist-resnet", "--images", "30", "--calibrate", "10",
                 "--no-per-term", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["images"] == 20 and r["ranges"]["calibration_inputs"] == 10
    assert r["ranges"]["rule"] is None
    assert main(["simulate", "--model", "mnist-resnet", "--images", "10", "--calibrate",
                 "10"]) == 2
    assert "the rest are scored" in capsys.readouterr().err


@pytest.mark.skipif(MODEL != "mnist-resnet", reason="trained MNIST weights not present")
def test_range_rule_is_recorded_and_changes_the_program(tmp_path, capsys):
    got = {}
    for rule in ("mse", "sigma"):
        out = tmp_path / f"{rule}.json"
        assert main(["simulate", "--model", "mnist-resnet", "--images", "20", "--w-terms", "3",
                     "--a-terms", "3", "--no-per-term", "--range-rule", rule,
                     "--json", str(out)]) == 0
        got[rule] = json.loads(out.read_text())
        assert got[rule]["ranges"]["rule"] == rule
    assert got["mse"]["logit_sqnr_db"] > got["sigma"]["logit_sqnr_db"] + 10
