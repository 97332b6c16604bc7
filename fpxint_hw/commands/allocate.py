"""``fpxint allocate``: the cheapest per-layer term counts that meet a logit-SQNR or accuracy
target, written as an override file for ``fpxint simulate --overrides`` and the sweep.

Cost is work on the array in lane-MACs (MACs x weight terms x activation terms, summed over
the conv/linear layers). The series' own error powers rank where a term helps most per
lane-MAC; the bit-exact simulator confirms the answer on the model's built-in inputs
(stratified). Calibration-free (the default range rule).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..errors import InputError
from ..report import fmt_db, format_table, write_json

from . import add_input_shape_option, add_weights_option, positive_int

__all__ = ["register", "main"]


def register(subparsers) -> None:
    """Add the ``allocate`` subcommand."""
    p = subparsers.add_parser(
        "allocate", help="per-layer term counts that meet an SQNR or accuracy target",
        description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="zoo model name or an .onnx file")
    add_weights_option(p)
    add_input_shape_option(p)
    goal = p.add_mutually_exclusive_group(required=True)
    goal.add_argument("--target-sqnr", type=float, metavar="DB",
                      help="logit SQNR to reach against the float model, dB")
    goal.add_argument("--target-accuracy", type=float, metavar="PCT",
                      help="top-1 accuracy to reach, percent (labelled inputs only)")
    p.add_argument("--bits", type=int, default=4, help="bits per term, weights and activations (default 4)")
    p.add_argument("--max-terms", type=int, default=6, help="most terms of any tensor, 1..8 (default 6)")
    p.add_argument("--images", type=positive_int, default=None, metavar="N",
                   help="built-in inputs to measure on (default: all)")
    p.add_argument("--out", required=True, metavar="FILE",
                   help="override file to write (YAML; read by 'fpxint simulate --overrides')")
    p.add_argument("--json", metavar="OUT", help="also write the whole result as JSON")
    p.add_argument("--plot", metavar="DIR", help="draw SQNR vs lane-MACs (allocation.png/svg)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Run the command; returns the exit status."""
    from ..float_exec import FloatExecutor
    from ..quant.overrides import write_overrides
    from ..spec import SeriesFormat
    from ..workflows.allocate import allocate
    from ..workflows.network import input_range, load_inputs, load_network
    t0 = time.perf_counter()
    if not 1 <= args.max_terms <= 8:
        raise InputError(f"--max-terms must be 1..8, got {args.max_terms}")
    SeriesFormat(args.bits, args.max_terms)                  # a FormatError names bad bits
    out = Path(args.out)
    for given in (args.weights, args.model):
        if given and Path(given).exists() and out.resolve() == Path(given).resolve():
            raise InputError(f"--out {out} is an input of this run; choose another file")
    graph, info = load_network(args.model, args.weights, args.input_shape)
    x, labels, _ = load_inputs(graph, info, args.images, None)
    ref = FloatExecutor(graph)(x)
    target_acc = None if args.target_accuracy is None else args.target_accuracy / 100
    al = allocate(graph, x, ref, bits=args.bits, max_terms=args.max_terms,
                  target_sqnr_db=args.target_sqnr, target_accuracy=target_acc,
                  labels=labels, in_range=input_range(info), log=print)
    model = info.name if info is not None else args.model
    cheapest = next((u for u in al.uniform if _meets(u, args.target_sqnr, target_acc)), None)
    record = {"model": model, "bits": args.bits, "images": int(x.shape[0]),
              "target_sqnr_db": args.target_sqnr, "target_accuracy": target_acc,
              "met": al.met, "lane_macs": al.lane_macs, "measured": al.measured,
              "cheapest_uniform": cheapest}
    write_overrides(out, al.overrides, record={"written_by": "fpxint allocate", **record})
    rows = [[f"T={u['terms']}", f"{u['lane_macs']:.3g}", fmt_db(u["logit_sqnr_db"]),
             "-" if u["accuracy"] is None else f"{100 * u['accuracy']:.1f} %"]
            for u in al.uniform]
    rows.append(["allocation", f"{al.lane_macs:.3g}", fmt_db(al.measured["logit_sqnr_db"]),
                 "-" if al.measured["accuracy"] is None
                 else f"{100 * al.measured['accuracy']:.1f} %"])
    print(format_table(["terms", "lane-MACs", "logit SQNR dB", "accuracy"], rows))
    goal = (f"{args.target_sqnr:g} dB" if args.target_sqnr is not None
            else f"{args.target_accuracy:g} % accuracy")
    if not al.met:
        print(f"target {goal} not met even at {args.max_terms} terms everywhere; wrote the "
              f"best found to {out}")
    elif cheapest is not None:
        print(f"target {goal}: {al.lane_macs / cheapest['lane_macs']:.0%} of the lane-MACs of "
              f"the cheapest uniform count (T={cheapest['terms']}); wrote {out}")
    else:
        print(f"target {goal}: met; no uniform count up to {args.max_terms} does; wrote {out}")
    result = {**record, "terms": {k: list(v) for k, v in al.terms.items()},
              "uniform": al.uniform, "path": al.path,
              "seconds": time.perf_counter() - t0}
    if args.plot:
        from ..plots import plot_allocation
        print("figure:", ", ".join(plot_allocation(result, Path(args.plot))))
    if args.json:
        write_json(args.json, result)
    return 0 if al.met else 1


def _meets(fid, sqnr, acc):
    return fid["logit_sqnr_db"] >= sqnr if sqnr is not None else fid["accuracy"] >= acc
