"""Whole networks on the Verilated RTL: wall time, cycles/s, measured vs model cycles.

Runs ``fpxint verify --model`` (:func:`fpxint_hw.workflows.rtl_network.verify_network`) for
each ``--runs`` entry ``model:spec:images`` and writes per run the JSON of the command plus
the wall time to ``docs/rtl_network.json`` (merged by run key, so runs can be added one at a
time) and the per-layer utilisation plot to ``docs/img/rtl_utilisation_<model>_<spec>.png``.

    python benchmarks/rtl_network.py [--runs resnet50:default:1,efficientnet-lite0:default:1]
                                     [--processes P] [--input IMG ...]

Cycles/s is the array's cycles over the harness processes' wall time (all processes of a
layer side by side); it is a rate of the design under Verilator, not of the host work.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "rtl_network.json"


def main() -> None:
    from fpxint_hw.plots import plot_layer_utilisation
    from fpxint_hw.report import write_json
    from fpxint_hw.workflows.rtl_network import default_processes, verify_network

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default="resnet50:default:1,efficientnet-lite0:default:1",
                    help="comma-separated model:spec:images")
    ap.add_argument("--processes", type=int, default=default_processes())
    ap.add_argument("--input", nargs="+", help="image files instead of built-in samples")
    args = ap.parse_args()
    done = json.loads(OUT.read_text()) if OUT.exists() else {}
    for item in args.runs.split(","):
        model, spec, images = item.split(":")
        t0 = time.perf_counter()
        run, res = verify_network(model, spec, images=int(images), files=args.input,
                                  processes=args.processes)
        res["wall_seconds"] = time.perf_counter() - t0
        key = f"{model}:{spec}:{images}" + (":files" if args.input else "")
        res.pop("mismatch_lines", None)
        done[key] = res
        write_json(OUT, done)
        plot_layer_utilisation(res, ROOT / "docs" / "img", f"rtl_utilisation_{model}_{spec}")
        slowest = sorted(res["layers"], key=lambda r: -r["seconds"])[:3]
        print(f"{key}: ok={run.ok}, {res['layers_checked']}/{res['gemm_layers']} layers, "
              f"{res['cycles']} cycles (model {res['model_cycles']}), utilisation "
              f"{100 * res['utilisation']:.1f} %, harness {res['hw_seconds']:.1f} s "
              f"({res['cycles_per_second'] / 1e6:.3f} M cycles/s), wall "
              f"{res['wall_seconds']:.1f} s; top-1 hw {res['top1_hw']} sim {res['top1_sim']} "
              f"float {res['top1_float']}; slowest layers "
              + ", ".join(f"{r['node']} {r['seconds']:.1f} s" for r in slowest))


if __name__ == "__main__":
    main()
