"""Series arrays against conventional arrays: is a series array worth its silicon?

``compare_baselines(records)`` takes the records of a sweep (``results.jsonl``) and returns,
as plain data:

``points``
    every point with its costs: area (LUT-equivalents, ``synth.logic``: LUT4 + 2 x CCU2C on
    ECP5, as the figures use it), Fmax (MHz), ResNet-50 images/s (the cycle model at that
    Fmax), accuracy, and two normalized costs:
    ``area_per_lane_mac = area / (rows * cols * lanes)`` (LUT-equivalents per digit
    product the array computes each cycle; ``lanes = w_terms * a_terms``, the lanes every PE
    instantiates, :attr:`fpxint_hw.spec.ArraySpec.lanes`) and
    ``area_per_image_s = area / images_per_s`` (LUT-equivalents per ResNet-50 image/s);
``comparisons``
    one row per series point (more than one term) with an accuracy: the **cheapest baseline
    of the same array size whose accuracy is equal or better** (least area; among equal
    areas the more accurate, then the faster), or None with the reason (``"none reaches
    it"``, ``"no baseline on this array"``), and the ratios series / baseline of area,
    images/s and images/s per area (> 1: the series point gives more images/s per LUT).

A baseline is a record whose ``point.baseline`` is true (the sweep file's ``baselines``,
:func:`fpxint_hw.dse.point.grid_points`). Accuracy is ``accuracy.accuracy`` (top-1 against
the labels) when any record has it, else ``accuracy.top1_agreement`` (inputs without
labels); ``metric="logit_sqnr_db"`` compares by the logit SQNR instead (finer than top-1
agreement on a handful of photos). The comparison uses that one metric for every point.
:func:`baselines_markdown` renders the result as two markdown tables.
"""

from __future__ import annotations

__all__ = ["is_baseline", "is_series", "area_is_modelled", "accuracy_metric", "point_costs",
           "cheapest_baseline", "compare_baselines", "baselines_markdown", "point_name",
           "metric_text", "METRICS"]

#: Fields of a record's ``accuracy`` a comparison can use (higher is better) and their
#: names in the tables; the first two are chosen automatically, in this order.
METRICS = {"accuracy": "top-1 accuracy", "top1_agreement": "top-1 agreement with float",
           "logit_sqnr_db": "logit SQNR (dB)"}


def is_baseline(rec: dict) -> bool:
    """True for a record the sweep marked as a conventional baseline."""
    return bool((rec.get("point") or {}).get("baseline"))


def area_is_modelled(rec: dict) -> bool:
    """True for a record whose area the sweep's ``synthesis.area_model`` predicted rather
    than synthesis measured."""
    return (rec.get("synth") or {}).get("source") == "area model"


def is_series(rec: dict) -> bool:
    """True for a point with more than one term (several lanes per PE)."""
    return int((rec.get("point") or {}).get("terms", 1)) >= 2


def accuracy_metric(records) -> str | None:
    """``"accuracy"`` if any record has a top-1 accuracy, else ``"top1_agreement"`` if any
    has that, else None."""
    for m in ("accuracy", "top1_agreement"):
        if any((r.get("accuracy") or {}).get(m) is not None for r in records):
            return m
    return None


def point_name(p: dict) -> str:
    """``W4x2/A4x2`` plus ``free``, ``column``, ``M0 8b`` and the rounding where they apply."""
    name = f"W{p['bits']}x{p['terms']}/A{p['bits']}x{p['terms']}"
    if p.get("scale", "pow2") != "pow2":
        name += f" {p['scale']}"
    if p.get("combine", "pe") != "pe":
        name += f" {p['combine']}"
    if p.get("m0_bits") is not None:
        name += f" M0 {p['m0_bits']}b"
    if p.get("rounding") is not None:
        name += f" {p['rounding']}"
    return name


def _ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def point_costs(rec: dict, metric: str | None) -> dict:
    """One record's figures (see the module docstring; None where the sweep has no value)."""
    p = rec["point"]
    spec = rec.get("spec") or {}
    lanes = int(spec.get("w_terms", p["terms"])) * int(spec.get("a_terms", p["terms"]))
    syn = rec.get("synth") or {}
    thr = rec.get("throughput") or {}
    area = syn.get("logic")
    ips = thr.get("images_per_s")
    acc = (rec.get("accuracy") or {}).get(metric) if metric else None
    return {"key": rec["key"], "name": point_name(p), "array": f"{p['rows']}x{p['cols']}",
            "rows": p["rows"], "cols": p["cols"], "bits": p["bits"], "terms": p["terms"],
            "scale": p.get("scale"), "combine": p.get("combine"), "lanes": lanes,
            "baseline": is_baseline(rec), "series": is_series(rec), "area": area,
            "area_modelled": area_is_modelled(rec),
            "fmax_mhz": syn.get("fmax_mhz"), "images_per_s": ips,
            "clock_mhz": thr.get("clock_mhz"), "clock_source": thr.get("clock_source"),
            "accuracy": acc,
            "area_per_lane_mac": _ratio(area, p["rows"] * p["cols"] * lanes),
            "area_per_image_s": _ratio(area, ips)}


def cheapest_baseline(point: dict, baselines: list[dict]) -> dict | None:
    """The baseline (a :func:`point_costs` dict) of ``point``'s array with accuracy >=
    ``point["accuracy"]`` and the least area (ties: more accurate, then more images/s, then
    the key); None if no baseline of that array reaches it."""
    fits = [b for b in baselines if (b["rows"], b["cols"]) == (point["rows"], point["cols"])
            and b["accuracy"] is not None and b["area"] is not None
            and b["accuracy"] >= point["accuracy"]]
    if not fits:
        return None
    return min(fits, key=lambda b: (b["area"], -b["accuracy"], -(b["images_per_s"] or 0.0),
                                    b["key"]))


def _order(c: dict):
    return (c["rows"] * c["cols"], c["rows"], c["bits"], c["terms"], c["combine"] or "",
            c["key"])


def compare_baselines(records, metric: str | None = None) -> dict:
    """Every point's costs and each series point against its cheapest baseline of equal or
    better accuracy (see the module docstring). ``records``: dicts of ``results.jsonl``;
    ``metric``: a key of :data:`METRICS` (None: :func:`accuracy_metric`)."""
    records = [r for r in records if isinstance(r.get("point"), dict)]
    if metric is not None and metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    metric = metric or accuracy_metric(records)
    points = sorted((point_costs(r, metric) for r in records), key=_order)
    base = [c for c in points if c["baseline"]]
    rows = []
    for c in points:
        if not c["series"]:
            continue
        row = {"point": c, "baseline": None, "reason": None, "area_ratio": None,
               "images_per_s_ratio": None, "images_per_s_per_area_ratio": None}
        if c["accuracy"] is None:
            row["reason"] = "no accuracy"
        elif not any((b["rows"], b["cols"]) == (c["rows"], c["cols"]) for b in base):
            row["reason"] = "no baseline on this array"
        else:
            b = cheapest_baseline(c, base)
            if b is None:
                row["reason"] = "none reaches it"
            else:
                row["baseline"] = b
                row["area_ratio"] = _ratio(c["area"], b["area"])
                row["images_per_s_ratio"] = _ratio(c["images_per_s"], b["images_per_s"])
                row["images_per_s_per_area_ratio"] = _ratio(
                    _ratio(c["images_per_s"], c["area"]), _ratio(b["images_per_s"], b["area"]))
        rows.append(row)
    return {"metric": metric, "points": points, "comparisons": rows}


def _f(v, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def _area(c: dict) -> str:
    """The area, ``~`` in front when the area model predicted it."""
    return ("~" if c["area_modelled"] and c["area"] is not None else "") + _f(c["area"], ".0f")


def metric_text(v, metric: str | None) -> str:
    """A metric's value as the tables print it: percent, or dB for the SQNR."""
    if v is None:
        return "-"
    return f"{v:.1f} dB" if metric == "logit_sqnr_db" else f"{100 * v:.1f} %"


def _md_table(headers, rows) -> list[str]:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


def baselines_markdown(result: dict, title: str = "Series arrays against conventional "
                                                  "arrays") -> str:
    """The two tables of :func:`compare_baselines` as markdown (area in LUT-equivalents,
    Fmax in MHz, ResNet-50 images/s, accuracy in %)."""
    metric = result["metric"] or "accuracy"
    what = METRICS[metric]
    lines = [f"# {title}", "",
             f"Each series point (more than one term) next to the cheapest conventional "
             f"one-term baseline of the same array size with equal or better {what}. "
             f"Area: LUT-equivalents (LUT4 + 2 x CCU2C); img/s: ResNet-50 images per second "
             f"from the cycle model at the point's clock; ratios are series / baseline "
             f"(img/s per area > 1: the series point gives more throughput per LUT).", ""]
    modelled = [c for c in result["points"] if c["area_modelled"]]
    if modelled:
        lines[-1:-1] = [f"Areas marked ~ ({len(modelled)} of {len(result['points'])} "
                        f"points) are the sweep's area model's predictions, not synthesis "
                        f"results (docs/dse.md gives the model's error).", ""]
    rows = []
    for r in result["comparisons"]:
        c, b = r["point"], r["baseline"]
        left = [c["array"], c["name"], _area(c), _f(c["fmax_mhz"], ".1f"),
                _f(c["images_per_s"], ".3f"), metric_text(c["accuracy"], metric)]
        if b is None:
            right = [r["reason"]] + [""] * 4
        else:
            right = [b["name"], _area(b), _f(b["fmax_mhz"], ".1f"),
                     _f(b["images_per_s"], ".3f"), metric_text(b["accuracy"], metric)]
        rows.append(left + right + [_f(r["area_ratio"], ".2f"),
                                    _f(r["images_per_s_ratio"], ".2f"),
                                    _f(r["images_per_s_per_area_ratio"], ".2f")])
    lines += _md_table(("array", "series point", "area", "Fmax", "img/s", what,
                        "baseline", "area", "Fmax", "img/s", what, "area ratio",
                        "img/s ratio", "img/s per area ratio"), rows)
    lines += ["", "Every point: area per lane-MAC (area / (rows x cols x lanes), lanes = "
                  "weight terms x activation terms per PE) and area per ResNet-50 image/s.", ""]
    rows = [[c["array"], c["name"] + (" (baseline)" if c["baseline"] else ""), c["lanes"],
             _area(c), _f(c["area_per_lane_mac"], ".1f"), _f(c["fmax_mhz"], ".1f"),
             _f(c["images_per_s"], ".3f"), _f(c["area_per_image_s"], ".0f"),
             metric_text(c["accuracy"], metric)] for c in result["points"]]
    lines += _md_table(("array", "point", "lanes", "area", "area per lane-MAC", "Fmax",
                        "img/s", "area per img/s", what), rows)
    return "\n".join(lines) + "\n"
