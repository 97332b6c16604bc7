"""Series points against conventional baselines: records built by hand with known numbers, so
every expected choice and ratio below is worked out here, not by the code under test."""

import json

import pytest

from fpxint_hw.dse.baselines import (baselines_markdown, cheapest_baseline, compare_baselines,
                                     point_costs)


def rec(bits, terms, array, area, ips, acc, *, baseline=False, combine="pe", fmax=200.0,
        w_terms=None, a_terms=None, agreement=None):
    """A results.jsonl record with just the fields the comparison reads."""
    rows, cols = array
    key = f"b{bits}-t{terms}-{rows}x{cols}-pow2-{combine}"
    return {"key": key,
            "point": {"bits": bits, "terms": terms, "rows": rows, "cols": cols,
                      "scale": "pow2", "combine": combine, "m0_bits": None, "rounding": None,
                      "baseline": baseline},
            "status": "ok",
            "spec": {"rows": rows, "cols": cols, "w_bits": bits, "a_bits": bits,
                     "w_terms": w_terms or terms, "a_terms": a_terms or terms},
            "accuracy": {"accuracy": acc, "top1_agreement": agreement},
            "synth": {"logic": area, "fmax_mhz": fmax},
            "throughput": {"images_per_s": ips, "clock_mhz": fmax, "clock_source": "fmax"}}


A2, A4, A8 = (2, 2), (4, 4), (8, 8)


def records():
    return [
        # 2x2 baselines: B4 cheap and weak, B8 mid, B6 dear and the most accurate
        rec(4, 1, A2, 1500, 0.25, 0.97, baseline=True),
        rec(8, 1, A2, 2000, 0.20, 0.99, baseline=True),
        rec(6, 1, A2, 2500, 0.21, 0.995, baseline=True),
        # a one-term point that is not a baseline: cheaper and as accurate as B8, never picked
        rec(3, 1, A2, 1000, 0.30, 0.99),
        # series points on 2x2
        rec(4, 2, A2, 2400, 0.18, 0.99),               # ties B8's accuracy -> B8
        rec(2, 2, A2, 1600, 0.19, 0.50, combine="column"),   # everything reaches it -> B4
        rec(4, 3, A2, 3000, 0.17, 0.999),              # above every baseline -> none
        # a 4x4 baseline cheaper and better than all 2x2 ones: only for 4x4 points
        rec(8, 1, A4, 100, 1.0, 1.0, baseline=True),
        rec(3, 2, A4, 4000, 0.5, 0.9),
        # an array without baselines
        rec(3, 2, A8, 9000, 1.5, 0.9),
    ]


def by_key(result):
    return {(r["point"]["key"], r["point"]["array"]): r for r in result["comparisons"]}


def test_cheapest_baseline_of_equal_or_better_accuracy():
    res = by_key(compare_baselines(records()))
    assert res[("b4-t2-2x2-pow2-pe", "2x2")]["baseline"]["key"] == "b8-t1-2x2-pow2-pe"
    assert res[("b2-t2-2x2-pow2-column", "2x2")]["baseline"]["key"] == "b4-t1-2x2-pow2-pe"
    assert res[("b3-t2-4x4-pow2-pe", "4x4")]["baseline"]["key"] == "b8-t1-4x4-pow2-pe"
    none = res[("b4-t3-2x2-pow2-pe", "2x2")]
    assert none["baseline"] is None and none["reason"] == "none reaches it"
    assert none["area_ratio"] is None
    alone = res[("b3-t2-8x8-pow2-pe", "8x8")]
    assert alone["baseline"] is None and alone["reason"] == "no baseline on this array"
    # one row per series point (terms >= 2), none for the one-term points
    assert len(res) == 5


def test_ratios():
    res = by_key(compare_baselines(records()))
    r = res[("b4-t2-2x2-pow2-pe", "2x2")]                 # 2400 / 2000, 0.18 / 0.20
    assert r["area_ratio"] == pytest.approx(1.2)
    assert r["images_per_s_ratio"] == pytest.approx(0.9)
    assert r["images_per_s_per_area_ratio"] == pytest.approx((0.18 / 2400) / (0.20 / 2000))
    assert r["images_per_s_per_area_ratio"] == pytest.approx(0.75)
    r = res[("b2-t2-2x2-pow2-column", "2x2")]             # 1600 / 1500, 0.19 / 0.25
    assert r["area_ratio"] == pytest.approx(16 / 15)
    assert r["images_per_s_ratio"] == pytest.approx(0.76)
    assert r["images_per_s_per_area_ratio"] == pytest.approx(0.76 * 15 / 16)


def test_equal_area_baselines_prefer_the_more_accurate():
    base = [point_costs(rec(5, 1, A2, 1800, 0.2, 0.96, baseline=True), "accuracy"),
            point_costs(rec(7, 1, A2, 1800, 0.2, 0.98, baseline=True), "accuracy")]
    s = point_costs(rec(2, 3, A2, 2000, 0.2, 0.9), "accuracy")
    assert cheapest_baseline(s, base)["key"] == "b7-t1-2x2-pow2-pe"
    assert cheapest_baseline(s, list(reversed(base)))["key"] == "b7-t1-2x2-pow2-pe"


def test_per_point_area_per_lane_mac_and_per_image_s():
    res = {c["key"]: c for c in compare_baselines(records())["points"]}
    s = res["b4-t2-2x2-pow2-pe"]                          # 4 PEs x 2x2 lanes
    assert (s["lanes"], s["area_per_lane_mac"]) == (4, 2400 / 16)
    assert s["area_per_image_s"] == pytest.approx(2400 / 0.18)
    b = res["b8-t1-2x2-pow2-pe"]
    assert (b["lanes"], b["area_per_lane_mac"], b["baseline"]) == (1, 500.0, True)
    assert res["b3-t2-8x8-pow2-pe"]["area_per_lane_mac"] == 9000 / (64 * 4)
    # lanes are what the PE instantiates: the spec's weight x activation terms
    odd = point_costs(rec(4, 2, A2, 2400, 0.18, 0.99, w_terms=3, a_terms=2), "accuracy")
    assert (odd["lanes"], odd["area_per_lane_mac"]) == (6, 100.0)


def test_agreement_when_no_labels_and_missing_figures():
    recs = [rec(4, 1, A2, 1500, 0.25, None, baseline=True, agreement=0.8),
            rec(4, 2, A2, 2000, None, None, agreement=0.8),
            rec(2, 2, A2, 1000, 0.3, None, agreement=None)]
    res = compare_baselines(recs)
    assert res["metric"] == "top1_agreement"
    rows = by_key(res)
    r = rows[("b4-t2-2x2-pow2-pe", "2x2")]
    assert r["baseline"]["key"] == "b4-t1-2x2-pow2-pe"
    assert r["area_ratio"] == pytest.approx(2000 / 1500) and r["images_per_s_ratio"] is None
    assert rows[("b2-t2-2x2-pow2-pe", "2x2")]["reason"] == "no accuracy"


def test_markdown_and_json():
    res = compare_baselines(records())
    json.dumps(res, allow_nan=False)
    md = baselines_markdown(res)
    row = next(ln for ln in md.splitlines() if ln.startswith("| 2x2 | W4x2/A4x2 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells == ["2x2", "W4x2/A4x2", "2400", "200.0", "0.180", "99.0 %", "W8x1/A8x1",
                     "2000", "200.0", "0.200", "99.0 %", "1.20", "0.90", "0.75"]
    assert "| 2x2 | W4x3/A4x3 | 3000 |" in md and "none reaches it" in md
    assert "| 2x2 | W8x1/A8x1 (baseline) | 1 | 2000 | 500.0 |" in md


def test_logit_sqnr_as_the_metric():
    """With ``metric="logit_sqnr_db"`` the baseline must reach the point's SQNR, whatever
    the top-1 agreement says (both baselines agree on every photo here)."""
    recs = [rec(4, 1, A2, 1500, 0.25, None, baseline=True, agreement=1.0),
            rec(8, 1, A2, 2000, 0.20, None, baseline=True, agreement=1.0),
            rec(4, 2, A2, 1800, 0.22, None, agreement=1.0)]
    for r, db in zip(recs, (14.0, 30.0, 22.5)):
        r["accuracy"]["logit_sqnr_db"] = db
    by_agreement = by_key(compare_baselines(recs))[("b4-t2-2x2-pow2-pe", "2x2")]
    assert by_agreement["baseline"]["key"] == "b4-t1-2x2-pow2-pe"
    res = compare_baselines(recs, "logit_sqnr_db")
    row = by_key(res)[("b4-t2-2x2-pow2-pe", "2x2")]
    assert res["metric"] == "logit_sqnr_db" and row["baseline"]["key"] == "b8-t1-2x2-pow2-pe"
    assert row["area_ratio"] == pytest.approx(1800 / 2000)
    md = baselines_markdown(res)
    assert "equal or better logit SQNR (dB)" in md and "| 22.5 dB | W8x1/A8x1 |" in md
    with pytest.raises(ValueError, match="metric must be one of"):
        compare_baselines(recs, "loss")
