"""``fpxint synth``: synthesize an accelerator spec with yosys (and nextpnr) and report its cost.

Prints LUTs, flip-flops, carry cells, DSP blocks and block RAMs from yosys' JSON statistics;
with ``--pnr`` also places and routes (nextpnr, out of context) and prints Fmax and the
critical path, with how far the cells of each module on it are scattered (``--floorplan DIR``
draws the whole placement). Results are cached by the Verilog, options and tool versions.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..flow import floorplan
from ..flow.pnr import SPEED_GRADES
from ..flow.synth import TARGETS
from ..report import format_table, write_json
from ..spec import load_array_spec
from ..workflows.synth import synth_record
from . import DefaultsHelp, add_spec_option, only_with

__all__ = ["register", "main"]


def register(subparsers) -> None:
    """Add the ``synth`` subcommand."""
    p = subparsers.add_parser(
        "synth", help="synthesize an accelerator spec (yosys, nextpnr) and report its cost",
        description=__doc__.split("\n\n")[0],
        formatter_class=DefaultsHelp)
    add_spec_option(p)
    p.add_argument("--target", choices=tuple(TARGETS), default="ecp5",
                   help="FPGA family")
    p.add_argument("--pnr", action="store_true",
                   help="also place and route (ecp5, ice40) and report Fmax")
    p.add_argument("--device", default=None,
                   help="device for --pnr (ecp5: 12k 25k 45k 85k; ice40: up5k hx8k); "
                        "default: the smallest that fits at 80%% fill, or the next larger "
                        "where nextpnr finds no legal placement on it")
    p.add_argument("--freq", type=float, default=None,
                   help="target frequency in MHz for --pnr (default 200)")
    p.add_argument("--seed", type=int, default=None, help="placer seed for --pnr (default 1)")
    p.add_argument("--speed", type=int, choices=SPEED_GRADES, default=None,
                   help="ECP5 speed grade for --pnr (default 6: the slowest and cheapest "
                        "part)")
    p.add_argument("--lut-mult-below", type=int, default=10, metavar="BITS",
                   help="build multipliers with an operand narrower than BITS from LUTs "
                        "(0: yosys' default DSP mapping)")
    p.add_argument("--build-dir", default=None,
                   help="cache folder (default $FPXINT_BUILD_DIR/cache or rtl/build/cache)")
    p.add_argument("--timeout", type=float, default=None, help="seconds per tool run")
    p.add_argument("--floorplan", metavar="DIR",
                   help="with --pnr: draw where every cell was placed, PEs by column, with "
                        "the critical path (floorplan.png, svg) into DIR")
    p.add_argument("--json", metavar="OUT", help="write the figures as JSON")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Run the command; returns the exit status."""
    only_with(args, [(d, f"--{d}", args.pnr, "--pnr") for d in ("device", "freq", "seed",
                                                                "speed", "floorplan")],
              {"freq": 200.0, "seed": 1, "speed": 6})
    spec = load_array_spec(args.spec)
    print(f"synthesizing {args.spec}: {spec.rows}x{spec.cols} array, W{spec.w_bits}x"
          f"{spec.w_terms} / A{spec.a_bits}x{spec.a_terms}, {spec.scale}, combine "
          f"{spec.combine}, target {args.target}" + (" + place and route" if args.pnr else ""),
          file=sys.stderr)
    rec = synth_record(spec, args.target, pnr=args.pnr, device=args.device, freq=args.freq,
                       seed=args.seed, lut_mult_below=args.lut_mult_below,
                       build_dir=args.build_dir, timeout=args.timeout, speed=args.speed)
    rows = [(k, rec[k]) for k in ("luts", "ffs", "carries", "dsps", "brams", "lutrams",
                                  "srls", "muxes")]
    rows.append(("yosys seconds", f"{rec['synth_seconds']:.1f}"
                 + (" (cached)" if rec["synth_cached"] else "")))
    if args.pnr:
        rows += [("device", rec["device"] + "".join(f" ({d}: no legal placement)"
                                                    for d in rec["unplaced"])),
                 ("fmax MHz", f"{rec['fmax_mhz']:.1f} (target {rec['freq_mhz']:g})"),
                 ("nextpnr seconds", f"{rec['pnr_seconds']:.1f}"
                  + (" (cached)" if rec["pnr_cached"] else ""))]
    print(format_table(("figure", "value"), rows))
    cp = rec.get("critical_path")
    placement = floorplan.load(rec["pnr_workdir"]) if args.pnr else {}
    if cp:
        print(f"critical path: {cp['delay_ns']:.2f} ns ({cp['logic_ns']:.2f} logic, "
              f"{cp['routing_ns']:.2f} routing), {cp['levels']} cells of which "
              f"{cp['carry_cells']} carry, from {cp['start']} to {cp['end']}")
        print("  through: " + " -> ".join(cp["modules"][:12]))
        rec["critical_path_spread"] = {mod: floorplan.spread(placement[mod])
                                       for mod in cp["modules"] if mod in placement}
        for mod, sp in rec["critical_path_spread"].items():
            print(f"  {mod}: {sp['cells']} cells, the middle half in tiles x "
                  f"{sp['x']['iqr'][0]}-{sp['x']['iqr'][1]}, y {sp['y']['iqr'][0]}-"
                  f"{sp['y']['iqr'][1]} (all: x {sp['x']['range'][0]}-{sp['x']['range'][1]}, "
                  f"y {sp['y']['range'][0]}-{sp['y']['range'][1]})")
    if args.floorplan:
        from ..plots import plot_floorplan
        paths = plot_floorplan(placement, cp, Path(args.floorplan),
                               f"{args.spec} on {args.target} {rec['device']}, seed "
                               f"{args.seed}: {rec['fmax_mhz']:.1f} MHz")
        print("floorplan: " + ", ".join(paths))
    print("tools: " + ", ".join(f"{k} {v}" for k, v in rec["tools"].items()))
    if args.json:
        out = {"spec": spec.to_dict(), **rec}
        write_json(args.json, out)
        print(f"wrote {args.json}")
    return 0
