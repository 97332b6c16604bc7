"""Sweeps whose area comes from a calibrated area model (``synthesis.area_model``)."""

import json

import pytest

from fpxint_hw.dse import load_sweep_config as load_trusted
from fpxint_hw.dse import run_sweep
from fpxint_hw.dse.baselines import baselines_markdown, compare_baselines
from fpxint_hw.errors import FormatError, InputError
from fpxint_hw.plots import fit_model

from dse.test_sweep import helpers_on_path, lines_of  # noqa: F401  (fixture)

CONFIG = """
name: modelled
base: tiny
grid:
  bits: [2, 3]
  terms: [1, 2]
  array: [2x2, 4x2]
baselines: [2x1]
accuracy:
  evaluator: "sweep_helpers:evaluate"
synthesis:
  target: ecp5
  area_model: {model}
{extra}
throughput:
  clock_mhz: 150
"""

#: A hand-made model: one LUT-equivalent per digit-product bit pair plus 100, two
#: flip-flops per register bit plus 7; ``lut_mult_below: 0`` keeps the output units'
#: multiplier out of the multiplier count.
MODEL = {"target": "ecp5", "lut_mult_below": 0,
         "logic_coef": {"multipliers": 1.0, "adders": 0.0, "requant": 0.0, "control": 100.0},
         "ff_coef": {"registers": 2.0, "control": 7.0},
         "samples": [{"name": f"s{i}", "logic": 1000 + 10 * i, "ffs": 500 + i,
                      "features": {"multipliers": 900 + 13 * i * i, "adders": 50 * i,
                                   "requant": 7 * i, "registers": 246 + i}}
                     for i in range(6)]}


def write(tmp_path, model="model.json", extra="", model_data=MODEL):
    if model_data is not None:
        (tmp_path / "model.json").write_text(json.dumps(model_data))
    p = tmp_path / "sweep.yaml"
    p.write_text(CONFIG.format(model=model, extra=extra))
    return p


def load(path):
    return load_trusted(path, allow_code=True)       # the stand-in evaluator is test code


def test_points_get_the_models_area_and_no_synthesis_runs(tmp_path, helpers_on_path,  # noqa: F811
                                                          monkeypatch):
    monkeypatch.chdir(tmp_path.parent)                # the model is found next to the file
    cfg = load(write(tmp_path))
    build = tmp_path / "build"
    summary = run_sweep(cfg, tmp_path / "out", stream=None, build_dir=build)
    assert (summary["ran"], summary["errors"]) == (8, 0)   # W2x1, the baseline, is a grid point
    recs = lines_of(tmp_path / "out" / "results.jsonl")
    for r in recs:
        p, syn = r["point"], r["synth"]
        lanes = p["terms"] ** 2
        assert syn["source"] == "area model"
        assert syn["logic"] == 100 + p["rows"] * p["cols"] * lanes * p["bits"] ** 2
        assert syn["fmax_mhz"] is None and syn["model_points"] == 6
        assert r["throughput"]["clock_mhz"] == 150
        assert r["throughput"]["clock_source"] == "clock_mhz"
    assert not build.exists()                         # nothing was synthesized


def test_modelled_areas_are_marked_and_never_calibrate_a_model(tmp_path, helpers_on_path):  # noqa: F811
    cfg = load(write(tmp_path))
    run_sweep(cfg, tmp_path / "out", stream=None, build_dir=tmp_path / "build")
    recs = lines_of(tmp_path / "out" / "results.jsonl")
    assert "0 synthesized ecp5 point" in fit_model(recs)  # predictions are not measurements
    table = compare_baselines(recs)
    assert all(c["area_modelled"] for c in table["points"])
    md = baselines_markdown(table)
    assert "Areas marked ~ (8 of 8 points)" in md
    assert "| 2x2 | W2x2/A2x2 | ~164 |" in md          # 100 + 4 PEs x 4 lanes x 2 x 2 bits


@pytest.mark.parametrize("model, extra, data, field, words", [
    ("missing.json", "", None, "synthesis.area_model", "cannot read"),
    ("model.json", "", {"target": "ecp5"}, "synthesis.area_model", "not an area model"),
    ("model.json", "", {**MODEL, "target": "ice40"}, "synthesis.area_model", "ice40"),
    ("model.json", "  pnr: true", MODEL, "synthesis.pnr", "no Fmax"),
    ("[1, 2]", "", MODEL, "synthesis.area_model", "expected the path"),
])
def test_area_model_errors_name_file_and_field(tmp_path, model, extra, data, field, words):
    p = write(tmp_path, model=model, extra=extra, model_data=data)
    with pytest.raises((FormatError, InputError)) as exc:
        load(p)
    msg = str(exc.value)
    assert str(p) in msg and field in msg and words in msg, msg
