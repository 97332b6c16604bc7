"""Figures of a design-space sweep (PNG and SVG), drawn with matplotlib's Agg back end.

``write_plots(records, out_dir)`` draws, from the records of ``results.jsonl``:

* ``accuracy_area``: accuracy vs number of terms (one line per digit width) and accuracy vs
  area (LUT-equivalents) with the Pareto front (most accurate for the least area)
  highlighted, every point labelled by its configuration;
* ``sqnr_terms``: weight and logit SQNR vs terms against the theory of docs/theory.md, a gain
  of ``20 log10 R`` dB per term (``6.02 (b-1)`` dB in pow2 mode, ``20 log10(2^b - 2)`` free);
* ``area_breakdown``: each point's LUT-equivalents split by component with the calibrated
  area model (:mod:`fpxint_hw.costmodel.area`), the synthesized total marked beside it;
* ``throughput_per_lut``: ResNet-50 images per second per 1,000 LUT-equivalents at each
  point's Fmax, from the cycle model.

Conventional baselines (records marked ``point.baseline``, the sweep file's ``baselines``)
are ordinary points of every figure, drawn as stars (hatched bars) with a legend entry;
digit widths that only baselines use are drawn in grey, so the series points keep their
colours whether baselines are swept or not. The table that compares each series point with
its cheapest baseline of equal or better accuracy is :mod:`fpxint_hw.dse.baselines`.

Figures whose data is missing (no accuracy step, no synthesis) are skipped and named in the
returned dict with the reason.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from .outputs import atomic_path

__all__ = ["FIGURES", "pareto_front", "theory_gain_db", "write_plots", "place_labels"]

#: Figure names, in the order they are written.
FIGURES = ("accuracy_area", "sqnr_terms", "area_breakdown", "throughput_per_lut")

_COMPONENT_COLORS = {"multipliers": "#4C72B0", "adders": "#DD8452", "requant": "#55A868",
                     "control": "#8C8C8C"}
#: How baselines are marked: scatter marker, bar hatch, legend text.
BASELINE_MARKER, BASELINE_HATCH = "*", "///"
BASELINE_LEGEND = "conventional baseline (one term, one lane per PE)"
_BASELINE_GREYS = ("0.35", "0.6", "0.15", "0.5")
#: A baseline's star on the scatter plots (matplotlib ``scatter`` keywords).
_BASELINE_STAR = {"marker": BASELINE_MARKER, "s": 150, "edgecolors": "k", "linewidths": 0.6}

_COMPONENT_NAMES = {"multipliers": "digit multipliers", "adders": "adder trees + accumulators",
                    "requant": "requantization units", "control": "control + I/O (constant)"}


def _is_baseline(r) -> bool:
    from .dse.baselines import is_baseline
    return is_baseline(r)


def _group_colors(cmap, groups, records, group_of) -> dict:
    """Colour per group (a digit width, or width and scale): the colour map spread over the
    groups that have non-baseline points (as without baselines), greys for the others."""
    series = sorted({group_of(r) for r in records if not _is_baseline(r)})
    colors = {g: cmap(i / max(1, len(series) - 1) * 0.85) for i, g in enumerate(series)}
    for i, g in enumerate(g for g in groups if g not in colors):
        colors[g] = _BASELINE_GREYS[i % len(_BASELINE_GREYS)]
    return colors


def _baseline_handle():
    """The legend entry of the baselines' stars."""
    from matplotlib.lines import Line2D
    return Line2D([], [], ls="", marker=BASELINE_MARKER, ms=11, color="0.3",
                  markeredgecolor="k", markeredgewidth=0.6, label=BASELINE_LEGEND)


def _hatch_baselines(bars, recs) -> None:
    for bar, r in zip(bars, recs):
        if _is_baseline(r):
            bar.set_hatch(BASELINE_HATCH)
            bar.set_edgecolor("0.15")


def _mpl():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def theory_gain_db(bits: int, scale: str) -> float:
    """SQNR gained per added term (dB) once settled: ``20 log10 R`` for the signed radix."""
    radix = 2 ** (bits - 1) if scale == "pow2" else 2 ** bits - 2
    return 20 * math.log10(radix)


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats: less or equal area (x) with strictly
    higher accuracy (y), or strictly less area with equal or higher accuracy. Sorted by x."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def place_labels(ax, xs, ys, labels, fontsize: float = 7.0, color="0.2") -> list:
    """Annotate each point with its label at the first of a few offsets where the text box
    overlaps no earlier label or marker (falls back to the least-overlapping one)."""
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    offsets = [(6, 4), (6, -10), (-6, 4), (-6, -10), (8, 12), (8, -18), (-8, 12), (-8, -18),
               (14, 0), (-14, 0), (0, 14), (0, -18)]
    placed, texts = [], []
    marks = [ax.transData.transform((x, y)) for x, y in zip(xs, ys)]

    def overlap(a, b):
        return max(0.0, min(a.x1, b.x1) - max(a.x0, b.x0)) * \
            max(0.0, min(a.y1, b.y1) - max(a.y0, b.y0))

    from matplotlib.transforms import Bbox
    mark_boxes = [Bbox.from_extents(mx - 3, my - 3, mx + 3, my + 3) for mx, my in marks]
    axbox = ax.get_window_extent(renderer)
    for x, y, lab in zip(xs, ys, labels):
        best, best_cost = None, math.inf
        for dx, dy in offsets:
            ha = "left" if dx >= 0 else "right"
            t = ax.annotate(lab, (x, y), xytext=(dx, dy), textcoords="offset points",
                            fontsize=fontsize, ha=ha, color=color)
            bb = t.get_window_extent(renderer).expanded(1.05, 1.1)
            cost = sum(overlap(bb, p) for p in placed) + sum(overlap(bb, m) for m in mark_boxes)
            outside = (bb.width * bb.height) - overlap(bb, axbox)
            cost += 2 * outside
            if cost < best_cost:
                if best is not None:
                    best[0].remove()
                best, best_cost = (t, bb), cost
            else:
                t.remove()
            if cost == 0:
                break
        placed.append(best[1])
        texts.append(best[0])
    return texts


def _ok(records, *path):
    out = []
    for r in records:
        v = r
        for p in path:
            v = (v or {}).get(p) if isinstance(v, dict) else None
        if v is not None:
            out.append(r)
    return out


def _acc_value(r) -> tuple[float | None, str]:
    a = r.get("accuracy") or {}
    if a.get("accuracy") is not None:
        return 100 * a["accuracy"], "top-1 accuracy (%)"
    if a.get("top1_agreement") is not None:
        return 100 * a["top1_agreement"], "top-1 agreement with float (%)"
    return None, ""


def _save(fig, out: Path, name: str) -> list[str]:
    paths = []
    for ext in ("png", "svg"):
        p = out / f"{name}.{ext}"
        with atomic_path(p) as tmp:
            fig.savefig(tmp, format=ext, dpi=150 if ext == "png" else None,
                        bbox_inches="tight")
        paths.append(str(p))
    _mpl().close(fig)
    return paths


def _label(r, combine: bool = True, baseline: bool = True) -> str:
    """``<bits>b×<terms> <rows>x<cols>`` plus ``free``, ``col`` (lanes combined per
    column) and ``baseline`` where they apply."""
    p = r["point"]
    extra = (" free" if p["scale"] == "free" else "") + \
        (" col" if combine and p["combine"] == "column" else "") + \
        (" baseline" if baseline and _is_baseline(r) else "")
    from .dse.baselines import area_is_modelled
    tilde = "~" if area_is_modelled(r) else ""      # area predicted, not synthesized
    return f"{tilde}{p['bits']}b×{p['terms']} {p['rows']}x{p['cols']}{extra}"


def _area_axis_label(recs) -> str:
    """The area axis' label; says which areas the sweep's area model predicted, with its
    leave-one-out error on the points it was fitted on."""
    from .dse.baselines import area_is_modelled
    text = "area (LUT-equivalents: LUT4 + 2 x CCU2C, ECP5)"
    modelled = [r["synth"] for r in recs if area_is_modelled(r)]
    if modelled:
        loo = modelled[0].get("model_logic_loo_mape")
        err = "" if loo is None else f", {100 * loo:.1f} % leave-one-out error"
        which = "all areas" if len(modelled) == len(recs) else "areas labelled ~"
        text += f"\n{which} from the area model ({modelled[0]['model_points']} " \
                f"synthesized points{err})"
    return text


def plot_accuracy_area(records, out: Path) -> list[str] | str:
    """Accuracy vs terms and vs area with the Pareto front (see the module docstring)."""
    recs = [r for r in _ok(records, "synth", "logic") if _acc_value(r)[0] is not None]
    if not recs:
        return "no point has both an accuracy and a synthesis result"
    plt = _mpl()
    ylab = _acc_value(recs[0])[1]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5.2),
                                   gridspec_kw={"width_ratios": [1, 1.6]})
    bits = sorted({r["point"]["bits"] for r in recs})
    colors = _group_colors(plt.get_cmap("viridis"), bits, recs, lambda r: r["point"]["bits"])
    for b in bits:
        by_t = {}
        for r in recs:
            if r["point"]["bits"] == b:
                by_t.setdefault(r["point"]["terms"], _acc_value(r)[0])
        ts = sorted(by_t)
        if all(_is_baseline(r) for r in recs if r["point"]["bits"] == b):
            continue                                   # drawn below as baseline stars
        ax1.plot(ts, [by_t[t] for t in ts], "o-", color=colors[b], label=f"{b}-bit terms")
    base = [r for r in recs if _is_baseline(r)]
    if base:
        ax1.scatter([r["point"]["terms"] for r in base], [_acc_value(r)[0] for r in base],
                    c=[colors[r["point"]["bits"]] for r in base], zorder=4, **_BASELINE_STAR)
    fl = [(r.get("accuracy") or {}).get("float_accuracy") for r in recs]
    fl = [v for v in fl if v is not None]
    if fl and "accuracy" in ylab:
        ax1.axhline(100 * fl[0], color="k", ls=":", lw=1, label="float model")
        ax2.axhline(100 * fl[0], color="k", ls=":", lw=1, label="float model")
    model = (recs[0].get("accuracy") or {}).get("model", "")
    ax1.set_xlabel("terms per weight and activation (T)")
    ax1.set_ylabel(ylab)
    ax1.set_title(f"{model}: accuracy vs terms")
    ax1.set_xticks(sorted({r["point"]["terms"] for r in recs}))
    ax1.grid(alpha=0.3)
    handles, _ = ax1.get_legend_handles_labels()
    ax1.legend(handles=handles + ([_baseline_handle()] if base else []), fontsize=8)
    xs = [r["synth"]["logic"] for r in recs]
    ys = [_acc_value(r)[0] for r in recs]
    markers = {1: "o", 2: "s", 3: "^", 4: "D"}
    for r, x, y in zip(recs, xs, ys):
        c = colors[r["point"]["bits"]]
        if _is_baseline(r):
            ax2.scatter(x, y, c=[c], zorder=3, **_BASELINE_STAR)
            continue
        hollow = r["point"]["combine"] == "column"
        ax2.scatter(x, y, facecolors="white" if hollow else c, edgecolors=c, linewidths=1.3,
                    marker=markers.get(r["point"]["terms"], "P"), s=40, zorder=3)
    front = pareto_front(list(zip(xs, ys)))
    fx, fy = [xs[i] for i in front], [ys[i] for i in front]
    ax2.step(fx, fy, where="post", color="crimson", lw=1.5, zorder=2, label="Pareto front")
    ax2.scatter(fx, fy, s=140, facecolors="none", edgecolors="crimson", lw=1.5, zorder=4)
    ax2.set_xscale("log")
    ax2.set_xlabel(_area_axis_label(recs))
    ax2.set_ylabel(ylab)
    ax2.grid(alpha=0.3, which="both")
    from matplotlib.lines import Line2D
    handles = [Line2D([], [], color="crimson", lw=1.5, label="Pareto front")]
    handles += [Line2D([], [], ls="", marker=markers.get(t, "P"), color="0.3",
                       label=f"T = {t}") for t in sorted({r["point"]["terms"] for r in recs
                                                          if not _is_baseline(r)})]
    if base:
        handles.append(_baseline_handle())
    if any(r["point"]["combine"] == "column" for r in recs):
        handles += [Line2D([], [], ls="", marker="o", color="0.3", label="lanes combined in PE"),
                    Line2D([], [], ls="", marker="o", markerfacecolor="white", color="0.3",
                           label="lanes combined per column")]
    ax2.legend(handles=handles, fontsize=8, loc="lower right")
    lo, hi = min(ys), max(ys)
    pad = max(1.0, 0.08 * (hi - lo))
    ax2.set_ylim(lo - pad, hi + 2 * pad)
    ax1.set_ylim(lo - pad, hi + 2 * pad)
    ax2.set_title("accuracy vs area (label: bits×terms array; marker: terms; colour: bits)",
                  fontsize=10)
    fig.tight_layout()
    # one label per (formats, array): the PE- and column-combined variants sit side by side;
    # the label goes on the baseline where one of them is
    # baselines get a bold label below them, with an arrow (the series labels crowd the top)
    first = {}
    for i, r in enumerate(recs):
        k = _label(r, combine=False, baseline=False)
        if k not in first or (_is_baseline(r) and not _is_baseline(recs[first[k]])):
            first[k] = i
    idx = sorted(first.values())
    for i in idx:
        if _is_baseline(recs[i]):
            ax2.annotate(_label(recs[i], combine=False), (xs[i], ys[i]), xytext=(8, -30),
                         textcoords="offset points", fontsize=7, fontweight="bold",
                         color="0.1", arrowprops={"arrowstyle": "-", "color": "0.3",
                                                  "lw": 0.7, "shrinkB": 6})
    idx = [i for i in idx if not _is_baseline(recs[i])]
    place_labels(ax2, [xs[i] for i in idx], [ys[i] for i in idx],
                 [_label(recs[i], combine=False) for i in idx])
    return _save(fig, out, "accuracy_area")


def plot_sqnr_terms(records, out: Path) -> list[str] | str:
    """Weight and logit SQNR vs terms against the theoretical per-term gain."""
    recs = _ok(records, "accuracy", "logit_sqnr_db")
    if not recs:
        return "no point has an SQNR (no accuracy step)"
    plt = _mpl()
    base = [r for r in recs if _is_baseline(r)]
    fig, ax = plt.subplots(figsize=(10.5 if base else 8, 5.2))

    def group_of(r):
        return r["point"]["bits"], r["point"]["scale"]
    groups = sorted({group_of(r) for r in recs})
    colors = _group_colors(plt.get_cmap("viridis"), groups, recs, group_of)
    for b, sc in groups:
        col = colors[(b, sc)]
        sel = [r for r in recs if group_of(r) == (b, sc)]
        # baselines: stars, weights filled and logits hollow; a group of baselines only
        # (one term) has no per-term gain to draw
        only_base = all(_is_baseline(r) for r in sel)
        for field, fill, what in (("weight_sqnr_db", col, "weights"),
                                  ("logit_sqnr_db", "white", "logits")):
            pts = [(r["point"]["terms"], r["accuracy"][field]) for r in sel
                   if _is_baseline(r) and r["accuracy"].get(field) is not None]
            if pts:
                ax.plot(*zip(*pts), ls="", marker=BASELINE_MARKER, ms=12, color=col,
                        markerfacecolor=fill, markeredgecolor="k", markeredgewidth=0.6,
                        zorder=4, label=f"{b}-bit {sc} baseline: {what}")
        if only_base:
            continue
        wt, lt = {}, {}
        for r in sel:
            t = r["point"]["terms"]
            a = r["accuracy"]
            if a.get("weight_sqnr_db") is not None:
                wt.setdefault(t, a["weight_sqnr_db"])
            if a.get("logit_sqnr_db") is not None:
                lt.setdefault(t, a["logit_sqnr_db"])
        tag = f"{b}-bit {sc}"
        if wt:
            ts = sorted(wt)
            ax.plot(ts, [wt[t] for t in ts], "o-", color=col, ms=5, label=f"{tag}: weights")
            gain = theory_gain_db(b, sc)
            tt = np.array(ts, dtype=float)
            ax.plot(tt, wt[ts[0]] + gain * (tt - ts[0]), "D--", color=col, lw=1, ms=11,
                    markerfacecolor="none", markeredgewidth=1.2,
                    label=f"{tag}: theory from T=1, +{gain:.1f} dB/term")
        if lt:
            ts = sorted(lt)
            ax.plot(ts, [lt[t] for t in ts], "s:", color=col, ms=5, label=f"{tag}: logits")
    ax.set_xlabel("terms per weight and activation (T)")
    ax.set_ylabel("SQNR (dB)")
    model = (recs[0].get("accuracy") or {}).get("model", "")
    ax.set_title(f"{model}: SQNR vs terms (weights: all conv/linear layers pooled)")
    ax.set_xticks(sorted({r["point"]["terms"] for r in recs}))
    ax.grid(alpha=0.3)
    if base:                          # the baselines' stars sit where the legend would go
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return _save(fig, out, "sqnr_terms")


def _unique_hw(records):
    """One record per distinct hardware (array, bits, terms, scale, combine) with synthesis."""
    seen, out = set(), []
    for r in _ok(records, "synth", "logic"):
        p = r["point"]
        k = (p["rows"], p["cols"], p["bits"], p["terms"], p["scale"], p["combine"])
        if k not in seen:
            seen.add(k)
            out.append(r)
    out.sort(key=lambda r: (r["point"]["rows"] * r["point"]["cols"], r["point"]["bits"],
                            r["point"]["terms"], r["point"]["scale"], r["point"]["combine"]))
    return out


def plot_area_breakdown(records, model, out: Path) -> list[str] | str:
    """Stacked LUT-equivalents per component (area model) with the synthesized totals;
    ``model`` is :func:`fit_model`'s answer (a reason when there is none)."""
    from .spec import ArraySpec
    recs = _unique_hw(records)
    if not recs:
        return "no synthesis results to calibrate the area model"
    if isinstance(model, str):
        return f"no area model: {model}"
    plt = _mpl()
    fig, ax = plt.subplots(figsize=(max(7, 0.55 * len(recs) + 3), 5.2))
    x = np.arange(len(recs))
    bottom = np.zeros(len(recs))
    for comp in ("multipliers", "adders", "requant", "control"):
        vals = np.array([model.breakdown(ArraySpec.from_dict(r["spec"]))[comp] for r in recs])
        bars = ax.bar(x, vals, 0.7, bottom=bottom, color=_COMPONENT_COLORS[comp],
                      label=_COMPONENT_NAMES[comp])
        _hatch_baselines(bars, recs)
        bottom += vals
    ax.scatter(x, [r["synth"]["logic"] for r in recs], marker="_", s=300, color="k", lw=2,
               zorder=3, label="synthesized (yosys)")
    ax.set_xticks(x)
    ax.set_xticklabels([_label(r) for r in recs], rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("area (LUT-equivalents)")
    err = model.errors()
    ax.set_title(f"area by component (model fitted on {len(model.samples)} synthesis points; "
                 f"mean error {100 * err['logic_mape']:.1f} %)")
    ax.grid(axis="y", alpha=0.3)
    handles, _ = ax.get_legend_handles_labels()
    if any(_is_baseline(r) for r in recs):
        from matplotlib.patches import Patch
        handles.append(Patch(facecolor="white", edgecolor="0.15", hatch=BASELINE_HATCH,
                             label=BASELINE_LEGEND))
    ax.legend(handles=handles, fontsize=8)
    fig.tight_layout()
    return _save(fig, out, "area_breakdown")


def plot_throughput_per_lut(records, out: Path) -> list[str] | str:
    """ResNet-50 images/s per 1,000 LUT-equivalents at each point's clock."""
    recs = [r for r in _unique_hw(records)
            if (r.get("throughput") or {}).get("images_per_s") is not None]
    if not recs:
        return "no point has both a synthesis result and a throughput"
    plt = _mpl()
    fig, ax = plt.subplots(figsize=(max(7, 0.55 * len(recs) + 3), 5.2))
    x = np.arange(len(recs))
    eff = [r["throughput"]["images_per_s"] / (r["synth"]["logic"] / 1000) for r in recs]
    arrays = sorted({(r["point"]["rows"], r["point"]["cols"]) for r in recs})
    cmap = plt.get_cmap("tab10")
    cols = {a: cmap(i) for i, a in enumerate(arrays)}
    bars = ax.bar(x, eff, 0.7,
                  color=[cols[(r["point"]["rows"], r["point"]["cols"])] for r in recs])
    _hatch_baselines(bars, recs)
    for xi, r, e in zip(x, recs, eff):
        t = r["throughput"]
        ax.annotate(f"{t['clock_mhz']:.0f} MHz", (xi, e), xytext=(0, 2),
                    textcoords="offset points", ha="center", fontsize=6, rotation=90,
                    va="bottom")
    from matplotlib.patches import Patch
    handles = [Patch(color=cols[a], label=f"{a[0]}x{a[1]} array") for a in arrays]
    if any(_is_baseline(r) for r in recs):
        handles.append(Patch(facecolor="white", edgecolor="0.15", hatch=BASELINE_HATCH,
                             label=BASELINE_LEGEND))
    ax.legend(handles=handles, fontsize=8)
    ax.set_xticks(x)
    ax.set_xticklabels([_label(r) for r in recs], rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("ResNet-50 images/s per 1,000 LUT-equivalents")
    clocks = {r["throughput"].get("clock_source") for r in recs}
    clock = "each point's Fmax" if clocks == {"fmax"} else \
        "the sweep's clock_mhz" if clocks == {"clock_mhz"} else "each point's clock"
    ax.set_title(f"throughput per area (cycle model at {clock}, batch "
                 f"{recs[0]['throughput']['batch']})")
    ax.set_ylim(0, max(eff) * 1.25)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _save(fig, out, "throughput_per_lut")


def fit_model(records, target: str = "ecp5"):
    """The area model fitted on the records' synthesis results, or the reason it is not
    (a str: too few synthesized points)."""
    from .costmodel.area import MIN_FIT_POINTS, fit_area_model
    from .spec import ArraySpec
    from .dse.baselines import area_is_modelled
    recs = [r for r in _unique_hw(records) if r["synth"].get("target", target) == target
            and not area_is_modelled(r)]
    if len(recs) < MIN_FIT_POINTS:
        return (f"{len(recs)} synthesized {target} point(s); a model needs at least "
                f"{MIN_FIT_POINTS}, so that its leave-one-out error measures it")
    lmb = recs[0]["synth"].get("lut_mult_below", 10)
    return fit_area_model([(r["key"], ArraySpec.from_dict(r["spec"]), r["synth"])
                           for r in recs], target, lmb)


def write_plots(records, out_dir) -> dict:
    """Write every figure (PNG and SVG) into ``out_dir``; returns ``{figure: [paths] or
    reason skipped, "area_model": AreaModel or reason not fitted}``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records = list(records)
    model = fit_model(records)
    res = {"accuracy_area": plot_accuracy_area(records, out),
           "sqnr_terms": plot_sqnr_terms(records, out),
           "area_breakdown": plot_area_breakdown(records, model, out),
           "throughput_per_lut": plot_throughput_per_lut(records, out),
           "area_model": model}
    return res


def _floorplan_kind(instance: str) -> tuple[str, int | None]:
    """``(kind, column)`` of a placed instance for :func:`plot_floorplan`."""
    m = re.search(r"\.pe_(\d+)_(\d+)$", instance)
    if m:
        return "PE", int(m.group(2))
    if re.search(r"\.out_\d+$", instance):
        return "output units", None
    if "fifo" in instance:
        return "output FIFO", None
    if instance.endswith(".array"):
        return "array skew, entry and de-skew", None
    return "control and the rest", None


def plot_floorplan(placement: dict, critical_path: dict | None, out: Path,
                   title: str) -> list[str]:
    """Where each cell was placed (tiles): PEs coloured by column; the output units, the
    FIFO, the array's own registers and the rest one colour each; the critical path on top
    (``placement``: :func:`fpxint_hw.flow.floorplan.load`). Writes ``floorplan.png/svg``
    into the folder ``out``."""
    plt = _mpl()
    fig, ax = plt.subplots(figsize=(8, 6.4))
    # tab20 without its reds, browns and greys, which mark the other kinds
    pe_colors = [plt.get_cmap("tab20")(i) for i in (0, 1, 2, 3, 4, 5, 8, 9, 12, 13, 16, 17,
                                                    18, 19)]
    rest = "control and the rest"                  # drawn first, under the others
    colors = {"output units": "tab:brown", "output FIFO": "black",
             "array skew, entry and de-skew": "tab:red", rest: "0.8"}
    kinds: dict = {}
    for inst, cells in placement.items():
        kind, col = _floorplan_kind(inst)
        kinds.setdefault((kind, col), []).append(cells)
    rng = np.random.default_rng(0)      # a tile holds many cells: spread them over it
    for (kind, col), parts in sorted(kinds.items(),
                                     key=lambda kv: (kv[0][0] != rest, kv[0][0], kv[0][1] or 0)):
        xy = np.concatenate(parts) + rng.uniform(-0.45, 0.45, (sum(map(len, parts)), 2))
        color = pe_colors[col % len(pe_colors)] if kind == "PE" else colors[kind]
        label = f"PE column {col}" if kind == "PE" else kind
        ax.scatter(xy[:, 0], xy[:, 1], s=3, color=color, label=label, alpha=0.7, lw=0)
    pts = np.array((critical_path or {}).get("points") or [], dtype=float).reshape(-1, 2)
    if len(pts):
        ax.plot(pts[:, 0], pts[:, 1], "-o", color="magenta", ms=2.5, lw=1.5,
                label=f"critical path ({critical_path['delay_ns']:.2f} ns)")
    ax.set_xlabel("tile x")
    ax.set_ylabel("tile y")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=6, markerscale=3, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    Path(out).mkdir(parents=True, exist_ok=True)
    return _save(fig, Path(out), "floorplan")


def plot_allocation(result: dict, out: Path, name: str = "allocation") -> list[str]:
    """Logit SQNR vs lane-MACs: uniform term counts, the greedy path's confirmed points and
    the allocation (``result`` is the JSON of ``fpxint allocate``)."""
    plt = _mpl()
    fig, ax = plt.subplots(figsize=(7, 4.6))
    uni = result["uniform"]
    ax.plot([u["lane_macs"] for u in uni], [u["logit_sqnr_db"] for u in uni], "o-",
            color="tab:blue", label="uniform terms (T labelled)")
    for u in uni:
        ax.annotate(f"T={u['terms']}", (u["lane_macs"], u["logit_sqnr_db"]),
                    textcoords="offset points", xytext=(4, -10), fontsize=7)
    path = sorted(result["path"], key=lambda p: p["lane_macs"])
    ax.plot([p["lane_macs"] for p in path], [p["logit_sqnr_db"] for p in path], "s:",
            color="tab:gray", ms=4, label="greedy path, simulated")
    ax.plot([result["lane_macs"]], [result["measured"]["logit_sqnr_db"]], "*", ms=14,
            color="tab:red", label="allocation")
    if result.get("target_sqnr_db") is not None:
        ax.axhline(result["target_sqnr_db"], color="tab:red", lw=0.8, ls="--",
                   label=f"target {result['target_sqnr_db']:g} dB")
    ax.set_xscale("log")
    ax.set_xlabel("lane-MACs per input (MACs x weight terms x activation terms)")
    ax.set_ylabel("logit SQNR (dB)")
    ax.set_title(f"{result['model']}: per-layer terms vs uniform terms "
                 f"({result['bits']}-bit terms, {result['images']} inputs)", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    return _save(fig, out, name)


def plot_layer_utilisation(result: dict, out: Path, name: str = "rtl_utilisation") -> list[str]:
    """Utilisation per conv/linear layer of a network run on the RTL: measured (bars) and
    the cycle model's (dots), layers in network order (``result``: the JSON of
    ``fpxint verify --model``)."""
    plt = _mpl()
    layers = result["layers"]
    rows, cols = result["spec_rows"], result["spec_cols"]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.16 * len(layers) + 2), 4.2))
    xs = np.arange(len(layers))
    ax.bar(xs, [100 * r["utilisation"] for r in layers], color="tab:blue",
           label="measured on the RTL")
    model = [100 * r["m"] * r["k"] * r["n"] * r["groups"] / (r["model_cycles"] * rows * cols)
             for r in layers]
    ax.plot(xs, model, "o", ms=3, color="tab:red", label="cycle model")
    ax.set_xticks(xs, [r["node"] for r in layers], rotation=90, fontsize=6)
    ax.set_ylabel("utilisation (% of PE-cycles doing a MAC)")
    ax.set_ylim(0, 100)
    ax.set_title(f"{result['model']} on array {result['spec']} ({rows}x{cols}): "
                 f"{100 * result['utilisation']:.1f} % overall, {result['images']} input(s)",
                 fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    return _save(fig, out, name)
