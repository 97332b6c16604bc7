"""``fpxint plot``: the baseline comparison written next to the figures, and printed."""

import json

from fpxint_hw.cli import main
from fpxint_hw.dse import ResultsFile


def record(bits, terms, area, ips, acc, baseline=False):
    key = f"b{bits}-t{terms}-2x2-pow2-pe"
    return {"key": key, "status": "ok",
            "point": {"bits": bits, "terms": terms, "rows": 2, "cols": 2, "scale": "pow2",
                      "combine": "pe", "m0_bits": None, "rounding": None,
                      "baseline": baseline},
            "spec": {"rows": 2, "cols": 2, "w_bits": bits, "a_bits": bits, "out_bits": bits,
                     "w_terms": terms, "a_terms": terms, "out_terms": terms, "depth": 64},
            "accuracy": {"accuracy": acc, "top1_agreement": acc, "logit_sqnr_db": 10.0 * acc,
                         "weight_sqnr_db": 12.0 * acc, "float_accuracy": 0.99,
                         "model": "stand-in"},
            "synth": {"target": "ecp5", "luts": area, "carries": 0, "ffs": area,
                      "logic": area, "fmax_mhz": 200.0, "lut_mult_below": 10},
            "throughput": {"images_per_s": ips, "clock_mhz": 200.0, "clock_source": "fmax",
                           "batch": 1}}


def plot(tmp_path, w3x2_accuracy, *flags):
    """``fpxint plot`` on two baselines, W3x2 (at ``w3x2_accuracy``) and W4x3; returns the
    figure folder."""
    sweep = tmp_path / "sweep"
    rf = ResultsFile(sweep / "results.jsonl")
    for r in (record(8, 1, 2000, 0.20, 0.99, baseline=True),
              record(4, 1, 1500, 0.25, 0.97, baseline=True),
              record(3, 2, 1800, 0.22, w3x2_accuracy), record(4, 3, 3000, 0.15, 0.995)):
        rf.append(r)
    out = tmp_path / "img"
    assert main(["plot", str(sweep), "--out", str(out), *flags]) == 0
    return out


def test_plot_writes_and_prints_the_baseline_table(tmp_path, capsys):
    out = plot(tmp_path, 0.99)
    text = capsys.readouterr().out
    line = next(ln for ln in text.splitlines() if ln.startswith("W3x2/A3x2 2x2"))
    assert line.split()[2:] == ["99.0", "%", "W8x1/A8x1", "99.0", "%", "0.90x", "1.10x",
                                "1.22x"]
    assert "none reaches it" in text and str(out / "baselines.md") in text
    md = (out / "baselines.md").read_text()
    assert "| 2x2 | W3x2/A3x2 | 1800 | 200.0 | 0.220 | 99.0 % | W8x1/A8x1 | 2000 |" in md
    data = json.loads((out / "baselines.json").read_text())
    rows = {r["point"]["key"]: r for r in data["comparisons"]}
    assert rows["b3-t2-2x2-pow2-pe"]["baseline"]["key"] == "b8-t1-2x2-pow2-pe"
    assert rows["b4-t3-2x2-pow2-pe"]["reason"] == "none reaches it"
    assert (out / "accuracy_area.png").exists()
    # four synthesized points cannot measure a model of four coefficients: none is written
    assert "area_model: skipped (4 synthesized ecp5 point(s); a model needs at least 6" in text
    assert not (out / "area_model.json").exists()


def test_plot_compares_by_the_logit_sqnr_when_asked(tmp_path, capsys):
    # The stand-in SQNR is 10 dB per unit of accuracy: W3x2 at 9.85 dB is beaten by W8x1
    # (9.9 dB) but not by the cheaper W4x1 (9.7 dB); W4x3 (9.95 dB) beats every baseline.
    out = plot(tmp_path, 0.985, "--metric", "logit_sqnr_db")
    text = capsys.readouterr().out
    assert "logit SQNR (dB)" in text
    line = next(ln for ln in text.splitlines() if ln.startswith("W3x2/A3x2 2x2"))
    assert line.split()[2:6] == ["9.8", "dB", "W8x1/A8x1", "9.9"]
    data = json.loads((out / "baselines.json").read_text())
    assert data["metric"] == "logit_sqnr_db"
    rows = {r["point"]["key"]: r for r in data["comparisons"]}
    assert rows["b4-t3-2x2-pow2-pe"]["reason"] == "none reaches it"
    assert "| 2x2 | W3x2/A3x2 | 1800 | 200.0 | 0.220 | 9.8 dB |" in (out / "baselines.md").read_text()
