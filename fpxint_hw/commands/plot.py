"""``fpxint plot``: figures of a sweep folder (PNG and SVG) and its calibrated area model.

Reads ``DIR/results.jsonl`` written by ``fpxint sweep`` and writes accuracy vs terms vs area
(Pareto front), SQNR vs terms against theory, area by component and throughput per LUT, plus
``area_model.json`` (the model fitted on the sweep's synthesis results and its errors) and
``baselines.md`` / ``baselines.json``: each series point next to the cheapest conventional
baseline of its array with equal or better accuracy (or top-1 agreement, or logit SQNR:
``--metric``), and every point's area per lane-MAC and per ResNet-50 image/s
(:mod:`fpxint_hw.dse.baselines`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import InputError
from . import DefaultsHelp
from ..outputs import write_text
from ..report import format_table, json_ready

__all__ = ["register", "main"]


def register(subparsers) -> None:
    """Add the ``plot`` subcommand."""
    p = subparsers.add_parser(
        "plot", help="figures of a sweep: accuracy/area Pareto, SQNR, area breakdown",
        description=__doc__.split("\n\n")[0],
        formatter_class=DefaultsHelp)
    p.add_argument("dir", metavar="DIR", help="sweep output folder (holds results.jsonl)")
    p.add_argument("--out", default=None, help="folder for the figures (default: DIR)")
    from ..dse.baselines import METRICS        # plain data: no heavy imports
    p.add_argument("--metric", choices=("auto", *METRICS), default="auto",
                   help="what 'equal or better' means in the baseline comparison: top-1 "
                        "accuracy, top-1 agreement with float, or logit SQNR (auto: "
                        "accuracy when the inputs have labels, else agreement)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Run the command; returns the exit status."""
    from ..dse.baselines import METRICS, baselines_markdown, compare_baselines, metric_text
    from ..dse.results import ResultsFile
    from ..plots import write_plots
    folder = Path(args.dir)
    path = folder / "results.jsonl"
    if not path.exists():
        raise InputError(f"{path}: no results file; run 'fpxint sweep --out {folder}' first")
    records = list(ResultsFile(path).load(repair=False).values())
    if not records:
        raise InputError(f"{path}: no records yet")
    out = Path(args.out) if args.out else folder
    res = write_plots(records, out)
    for name, v in res.items():
        if isinstance(v, str):
            print(f"{name}: skipped ({v})")
        elif name != "area_model":
            print(f"{name}: " + ", ".join(v))
    model = res["area_model"]
    if not isinstance(model, str):
        err = model.errors()
        write_text(out / "area_model.json", json.dumps(json_ready(
            {**model.to_dict(), "errors": err}), indent=1) + "\n")
        rows = [(p["name"], p["logic"], f"{p['logic_pred']:.0f}",
                 "-" if p["logic_loo"] is None else f"{p['logic_loo']:.0f}", p["ffs"],
                 f"{p['ffs_pred']:.0f}") for p in err["points"]]
        print(format_table(("point", "logic", "model", "leave-one-out", "FF", "model"), rows))
        loo = err["logic_loo_mape"]
        print(f"area model: logic mean error {100 * err['logic_mape']:.1f} % (max "
              f"{100 * err['logic_max']:.1f} %)"
              + (f", leave-one-out {100 * loo:.1f} %" if loo is not None else "")
              + f"; flip-flops {100 * err['ffs_mape']:.1f} %; coefficients "
              + ", ".join(f"{k} {v:.3g}" for k, v in model.logic_coef.items()))
        print(f"wrote {out / 'area_model.json'}")
    table = compare_baselines(records, None if args.metric == "auto" else args.metric)
    metric = table["metric"]
    write_text(out / "baselines.json", json.dumps(json_ready(table), indent=1) + "\n")
    write_text(out / "baselines.md", baselines_markdown(table))
    rows = []
    for r in table["comparisons"]:
        c, b = r["point"], r["baseline"]
        rows.append((f"{c['name']} {c['array']}", metric_text(c["accuracy"], metric),
                     r["reason"] if b is None else b["name"],
                     "" if b is None else metric_text(b["accuracy"], metric),
                     _x(r["area_ratio"]),
                     _x(r["images_per_s_ratio"]), _x(r["images_per_s_per_area_ratio"])))
    if rows:
        what = METRICS[metric]
        print(format_table(("series point", what, "cheapest baseline at least as good", what,
                            "area", "img/s", "img/s per area"), rows))
    else:
        print("baselines: no series point (terms >= 2) to compare")
    print(f"wrote {out / 'baselines.md'}, {out / 'baselines.json'}")
    return 0


def _x(v) -> str:
    return "-" if v is None else f"{v:.2f}x"
