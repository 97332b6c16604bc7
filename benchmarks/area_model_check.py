"""Fit the area model on a sweep's synthesis results and check it on other configurations.

    python benchmarks/area_model_check.py docs/dse/results.jsonl docs/fpga_results.json

Prints the in-sample and leave-one-out errors on the sweep's points, then the error of that
model on every configuration of the FPGA table (other array sizes: an extrapolation), and the
errors of a model fitted on all points together.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fpxint_hw.costmodel.area import fit_area_model, logic_cells  # noqa: E402
from fpxint_hw.dse.results import ResultsFile  # noqa: E402
from fpxint_hw.report import format_table  # noqa: E402
from fpxint_hw.spec import ArraySpec  # noqa: E402


def _pct(v):
    return "-" if v is None else f"{100 * v:.1f} %"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    results = ResultsFile(argv[0]).load(repair=False).values()
    sweep = [(r["key"], ArraySpec.from_dict(r["spec"]), r["synth"]) for r in results
             if r.get("synth")]
    table = {}
    if len(argv) > 1 and Path(argv[1]).exists():
        table = {n: d for n, d in json.loads(Path(argv[1]).read_text()).items()
                 if "luts" in d}
    model = fit_area_model(sweep, "ecp5")
    err = model.errors()
    print(f"model fitted on {len(sweep)} sweep points: coefficients "
          + ", ".join(f"{k} {v:.3g}" for k, v in model.logic_coef.items())
          + f"; FF per register bit {model.ff_coef['registers']:.3f} + "
            f"{model.ff_coef['control']:.0f}")
    print(f"  logic: mean {_pct(err['logic_mape'])}, max {_pct(err['logic_max'])} in sample; "
          f"leave-one-out mean {_pct(err['logic_loo_mape'])}, max {_pct(err['logic_loo_max'])}")
    print(f"  flip-flops: mean {_pct(err['ffs_mape'])}, max {_pct(err['ffs_max'])}")
    if table:
        rows = []
        for n, d in table.items():
            s = ArraySpec.from_dict(d["spec"])
            p = model.predict(s)
            logic = logic_cells("ecp5", d["luts"], d["carries"])
            rows.append((n, f"{s.rows}x{s.cols}", logic, f"{p['logic']:.0f}",
                         f"{100 * (p['logic'] - logic) / logic:+.1f} %", d["ffs"],
                         f"{p['ffs']:.0f}", f"{100 * (p['ffs'] - d['ffs']) / d['ffs']:+.1f} %"))
        print("\nthat model on the shipped array specs (other sizes):")
        print(format_table(("spec", "array", "logic", "model", "error", "FF", "model",
                            "error"), rows))
        both = sweep + [(n, ArraySpec.from_dict(d["spec"]), d) for n, d in table.items()]
        m2 = fit_area_model(both, "ecp5")
        e2 = m2.errors()
        print(f"\nmodel fitted on all {len(both)} points: logic mean {_pct(e2['logic_mape'])} "
              f"(max {_pct(e2['logic_max'])}), leave-one-out mean "
              f"{_pct(e2['logic_loo_mape'])} (max {_pct(e2['logic_loo_max'])}); flip-flops "
              f"mean {_pct(e2['ffs_mape'])} (max {_pct(e2['ffs_max'])})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
