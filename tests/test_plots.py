"""Sweep figures: files written, Pareto front, theory lines, labels that do not overlap."""

import math

import numpy as np
import pytest

from fpxint_hw.plots import pareto_front, place_labels, theory_gain_db, write_plots
from fpxint_hw.spec import ArraySpec


def test_theory_gain():
    assert theory_gain_db(4, "pow2") == pytest.approx(18.06, abs=0.01)    # 20 log10 8
    assert theory_gain_db(4, "free") == pytest.approx(22.92, abs=0.01)    # 20 log10 14
    assert theory_gain_db(2, "pow2") == pytest.approx(6.02, abs=0.01)


def test_pareto_front():
    pts = [(10, 50), (20, 60), (15, 40), (30, 60), (5, 45), (40, 90)]
    # (15, 40) is beaten by (10, 50); (30, 60) by (20, 60)
    assert pareto_front(pts) == [4, 0, 1, 5]
    assert pareto_front([]) == []


def _records():
    recs = []
    for rows in (2, 4):
        for bits in (2, 3, 4):
            for terms in (1, 2, 3):
                spec = ArraySpec(rows=rows, cols=rows, w_bits=bits, a_bits=bits,
                                 out_bits=bits, w_terms=terms, a_terms=terms,
                                 out_terms=terms, depth=64)
                logic = 300 * rows * rows * bits * terms ** 1.5 + 500
                recs.append({
                    "key": f"b{bits}-t{terms}-{rows}x{rows}-pow2-pe",
                    "point": {"bits": bits, "terms": terms, "rows": rows, "cols": rows,
                              "scale": "pow2", "combine": "pe"},
                    "status": "ok", "spec": spec.to_dict(),
                    "accuracy": {"accuracy": 1 - 0.5 ** (bits * terms),
                                 "top1_agreement": 1.0, "logit_sqnr_db": 5.0 * bits * terms,
                                 "weight_sqnr_db": 6.0 * (bits - 1) * terms + 3,
                                 "float_accuracy": 0.99, "model": "stand-in"},
                    "synth": {"target": "ecp5", "luts": int(logic * 0.8),
                              "carries": int(logic * 0.1), "ffs": int(logic * 0.5),
                              "logic": int(logic * 0.8) + 2 * int(logic * 0.1),
                              "fmax_mhz": 60.0 - bits, "lut_mult_below": 10},
                    "throughput": {"images_per_s": rows * rows / 20.0, "clock_mhz": 60.0,
                                   "batch": 1}})
    return recs


def test_write_plots(tmp_path):
    res = write_plots(_records(), tmp_path)
    for name in ("accuracy_area", "sqnr_terms", "area_breakdown", "throughput_per_lut"):
        assert isinstance(res[name], list), res[name]
        for p in res[name]:
            data = open(p, "rb").read()
            assert len(data) > 5000
        assert open(res[name][0], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert res["area_model"] is not None


def test_plots_skip_with_reason(tmp_path):
    recs = [{k: v for k, v in r.items() if k != "synth"} for r in _records()]
    res = write_plots(recs, tmp_path)
    assert "synthesis" in res["accuracy_area"] and "synthesis" in res["area_breakdown"]
    assert isinstance(res["sqnr_terms"], list)


def test_labels_do_not_overlap():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [1.0, 1.05, 1.1, 3.0, 3.02, 5.0]
    ys = [1.0, 1.02, 0.98, 2.0, 2.03, 1.5]
    ax.scatter(xs, ys)
    ax.set_xlim(0, 7)
    ax.set_ylim(0, 3)
    texts = place_labels(ax, xs, ys, [f"config {i}" for i in range(len(xs))])
    r = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(r) for t in texts]
    for i in range(len(boxes)):
        for j in range(i):
            a, b = boxes[i], boxes[j]
            w = min(a.x1, b.x1) - max(a.x0, b.x0)
            h = min(a.y1, b.y1) - max(a.y0, b.y0)
            assert w <= 0 or h <= 0, f"labels {i} and {j} overlap"
    plt.close(fig)


def _with_baselines():
    """The records above with W4x1 on each array marked a baseline and a W8x1 baseline added."""
    recs = _records()
    for r in recs:
        r["point"]["baseline"] = (r["point"]["bits"], r["point"]["terms"]) == (4, 1)
    extra = []
    for r in recs:
        if r["point"]["baseline"]:
            e = {**r, "key": r["key"].replace("b4-", "b8-"),
                 "point": {**r["point"], "bits": 8},
                 "spec": {**r["spec"], "w_bits": 8, "a_bits": 8, "out_bits": 8},
                 "accuracy": {**r["accuracy"], "accuracy": 0.999}}
            extra.append(e)
    return recs + extra


def _svg_text(paths):
    return open(next(p for p in paths if p.endswith(".svg"))).read()


def test_baselines_are_labelled_on_every_figure(tmp_path):
    """Stars (hatched bars) and a legend entry for the baselines; none without them."""
    import matplotlib
    with matplotlib.rc_context({"svg.fonttype": "none"}):      # text stays text in the SVG
        res = write_plots(_with_baselines(), tmp_path / "with")
        plain = write_plots(_records(), tmp_path / "plain")
    for name in ("accuracy_area", "sqnr_terms", "area_breakdown", "throughput_per_lut"):
        assert "baseline" in _svg_text(res[name]), name
        assert "baseline" not in _svg_text(plain[name]), name
    acc = _svg_text(res["accuracy_area"])
    assert "conventional baseline (one term, one lane per PE)" in acc
    assert "8b×1 2x2 baseline" in acc and "4b×1 4x4 baseline" in acc
    assert acc.count("conventional baseline (one term, one lane per PE)") == 2   # both panels
    assert "8-bit pow2 baseline: weights" in _svg_text(res["sqnr_terms"])
    # four baseline machines (W4x1, W8x1 on 2x2 and 4x4): their bars hatched (every
    # component of the area bars), plus the legend's patch
    for name, bars in (("area_breakdown", 4 * 4), ("throughput_per_lut", 4)):
        text = _svg_text(res[name])
        assert "8b×1 4x4 baseline" in text, name
        assert text.count("url(#h") == bars + 1, name
        assert "url(#h" not in _svg_text(plain[name]), name


def test_series_colours_do_not_move_with_baselines():
    """A digit width that only baselines use is grey; the others keep the colours they have
    without baselines."""
    import matplotlib
    from fpxint_hw.plots import _group_colors
    cmap = matplotlib.colormaps["viridis"]
    with_b = _with_baselines()
    bits = sorted({r["point"]["bits"] for r in with_b})
    colors = _group_colors(cmap, bits, with_b, lambda r: r["point"]["bits"])
    plain = _group_colors(cmap, [2, 3, 4], _records(), lambda r: r["point"]["bits"])
    assert {b: colors[b] for b in (2, 3, 4)} == plain
    assert plain[2] == cmap(0.0) and plain[4] == cmap(0.85)
    assert isinstance(colors[8], str) and colors[8] not in plain.values()
