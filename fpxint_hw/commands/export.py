"""``fpxint export``: the compiled integer program as a standard ONNX graph.

Compiles a zoo model (or an ONNX file) exactly as ``fpxint simulate`` does with the same
flags (an array spec, or explicit formats) and writes the program as ONNX: ``--format
int-onnx`` is the integer program itself (ConvInteger / MatMulInteger per lane, integer
requantization; output ``int_output`` equal to the simulator's bit for bit); ``--format qdq``
the basis models as a float graph with QuantizeLinear / DequantizeLinear pairs for tools that
import QDQ (not bit-exact; docs/export.md). ``--check`` runs the written int-onnx file in
onnxruntime or onnx.reference and compares every layer with the simulator.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..errors import InputError
from ..report import write_json

from . import (DefaultsHelp, add_input_option, add_input_shape_option, add_model_option,
               add_weights_option, only_with, positive_int)
from .simulate import (add_program_options, check_program_options, program_formats,
                       program_overrides, split_calibration)

__all__ = ["register", "main", "FORMATS"]

#: Export formats.
FORMATS = ("int-onnx", "qdq")
#: Inputs ``--check`` runs on when ``--images`` does not say.
_CHECK_INPUTS = 4


def register(subparsers) -> None:
    """Add the ``export`` subcommand."""
    p = subparsers.add_parser(
        "export", help="write the compiled integer program as an ONNX graph",
        description="Compile a network as 'fpxint simulate' does with the same flags and write "
                    "the program as ONNX: int-onnx, the integer program whose output "
                    "int_output equals the simulator's bit for bit (docs/export.md), or qdq, "
                    "the basis models as QuantizeLinear/DequantizeLinear pairs.",
        formatter_class=DefaultsHelp)
    add_model_option(p)
    add_weights_option(p)
    add_input_shape_option(p)
    p.add_argument("--format", default="int-onnx", choices=FORMATS,
                   help="int-onnx: the integer program, bit-exact; qdq: the basis models as "
                        "QuantizeLinear/DequantizeLinear pairs (approximate)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.onnx",
                   help="ONNX file to write")
    add_program_options(p)
    p.add_argument("--check", choices=("ort", "reference"), default=None,
                   help="run the written int-onnx graph in onnxruntime (ort) or onnx.reference "
                        "and compare every layer with the simulator; exit 1 on a mismatch")
    p.add_argument("--images", type=positive_int, default=None, metavar="N",
                   help="built-in sample inputs to load for --check and --calibrate (default: "
                        "all with --calibrate, as simulate; --check then runs on 4 of those "
                        "left, or on 4 without --calibrate)")
    add_input_option(p)
    p.add_argument("--json", metavar="OUT", help="write what was written (and checked) as JSON")
    p.set_defaults(func=main)


def _describe(prog) -> str:
    """The program's formats in one line, as ``fpxint simulate`` prints them."""
    target = getattr(prog, "target", None)
    w, a = prog.w_fmt, prog.a_fmt
    head = f"array {target.name}, " if target is not None else ""
    return (f"{head}W{w.bits}x{w.terms} / A{a.bits}x{a.terms} ({w.scale}, {prog.mode}), "
            f"{prog.level}-level")


def main(args: argparse.Namespace) -> int:
    """Run the command; returns the exit status (1 when ``--check`` finds a mismatch)."""
    wants_inputs = args.check is not None or bool(args.calibrate)
    only_with(args, [("images", "--images", wants_inputs, "--check or --calibrate"),
                     ("input", "--input", wants_inputs, "--check or --calibrate")], {})
    check_program_options(args)
    if args.level == "tensor":
        raise InputError("--level tensor has no integer program to export (its activations "
                         "stay float); use --level layer or model")
    from ..io.int_onnx import require_onnx
    require_onnx(f"fpxint export --format {args.format}")
    if args.check is not None and args.format != "int-onnx":
        raise InputError(f"--check compares integers: it applies to --format int-onnx, not "
                         f"{args.format}")
    if args.check == "ort":
        from ..io.int_onnx import require_onnxruntime
        require_onnxruntime("fpxint export --check ort")
    if Path(args.output).suffix.lower() != ".onnx":
        raise InputError(f"--output {args.output}: expected an .onnx file name")
    from ..workflows.network import input_range, load_inputs, load_network
    from ..workflows.simulate import compile_terms
    t_start = time.perf_counter()
    spec, spec_name, w_fmt, a_fmt = program_formats(args)
    overrides = program_overrides(args, spec)
    graph, info = load_network(args.model, args.weights, args.input_shape)
    x = calib = None
    if wants_inputs:
        images = args.images if args.images or args.calibrate else _CHECK_INPUTS
        x, labels, _ = load_inputs(graph, info, images, args.input)
        calib, x, labels = split_calibration(args, x, labels)
        if args.images is None and not args.input:
            x = x[:_CHECK_INPUTS]
        if tuple(x.shape[1:]) != tuple(graph.input_shape):
            raise InputError(f"{args.model}: inputs of shape {x.shape[1:]}, the network takes "
                             f"{tuple(graph.input_shape)}; give images it can read")
    prog, _, _ = compile_terms(
        graph, spec=spec, spec_name=spec_name, w_fmt=w_fmt, a_fmt=a_fmt, level=args.level,
        per_channel=not args.per_tensor, rounding=args.rounding, multiplier_bits=args.m0_bits,
        overrides=overrides, in_range=input_range(info), calibration=calib,
        range_rule=args.range_rule, range_sigmas=args.range_sigmas)
    t_compiled = time.perf_counter()
    if args.format == "int-onnx":
        from ..io.int_onnx import save_int_onnx
        model = save_int_onnx(prog, args.output)
    else:
        from ..io.qdq_onnx import save_qdq_onnx
        model = save_qdq_onnx(prog, args.output)
    t_written = time.perf_counter()
    ops: dict[str, int] = {}
    for n in model.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    lanes = ops.get("ConvInteger", 0) + ops.get("MatMulInteger", 0)
    model_name = info.name if info is not None else args.model
    size = Path(args.output).stat().st_size
    print(f"wrote {args.output}: {model_name} as {args.format}, {_describe(prog)}; "
          f"{len(model.graph.node)} nodes"
          + (f" ({lanes} ConvInteger/MatMulInteger lanes)" if args.format == "int-onnx" else "")
          + f", {size / 1e6:.1f} MB, written in {t_written - t_compiled:.1f} s")
    result = {"model": model_name, "format": args.format, "output": args.output,
              "level": prog.level, "rounding": prog.mode, "w_fmt": prog.w_fmt.to_dict(),
              "a_fmt": prog.a_fmt.to_dict(), "spec": spec_name, "nodes": len(model.graph.node),
              "ops": ops, "bytes": size, "compile_seconds": t_compiled - t_start,
              "export_seconds": t_written - t_compiled, "check": None}
    if args.check is not None:
        result["check"] = _check(prog, args.output, x, args.check)
        c = result["check"]
        print(f"check in {c['runtime']} on {c['inputs']} input(s): {c['layers_checked']} "
              f"layers, {c['mismatches']} mismatches"
              + (f" (first: {c['first']})" if c["first"] else "")
              + f"; {c['runtime']} {c['runtime_seconds']:.2f} s, simulator "
                f"{c['simulator_seconds']:.2f} s")
    result["seconds"] = time.perf_counter() - t_start
    if args.json:
        write_json(args.json, result)
    return 1 if result["check"] and result["check"]["mismatches"] else 0


def _check(prog, path, x, runtime: str) -> dict:
    """Every layer of the written graph on ``x`` against the simulator (exact equality)."""
    from ..intsim import Simulator
    from ..io.int_onnx import OUTPUT_NAME, compare_int_outputs, layer_names, load_int_onnx
    from ..io.int_onnx import run_int_onnx
    model = load_int_onnx(path)
    t0 = time.perf_counter()
    got = run_int_onnx(model, x, runtime, layers=True)        # checks the input's shape
    t1 = time.perf_counter()
    out, expected = Simulator(prog).run(x, capture=True)
    t2 = time.perf_counter()
    expected[OUTPUT_NAME] = out
    report = compare_int_outputs(expected, got, layer_names(model) + [OUTPUT_NAME])
    return {"runtime": runtime, "inputs": int(x.shape[0]), **report,
            "runtime_seconds": t1 - t0, "simulator_seconds": t2 - t1}
