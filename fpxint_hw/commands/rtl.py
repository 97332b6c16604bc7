"""``fpxint rtl``: write the accelerator of an array spec as Verilog."""

from __future__ import annotations

import argparse

from . import add_spec_option

__all__ = ["register"]


def register(subparsers) -> None:
    """Add the ``rtl`` subcommand."""
    p = subparsers.add_parser(
        "rtl", help="write the accelerator of an array spec as Verilog",
        description="Generate the systolic array described by an ArraySpec YAML file and "
                    "write it as Verilog (top module fpxint_array; ports and payload fields "
                    "are listed in the file's header and in docs/hardware.md).")
    add_spec_option(p)
    p.add_argument("-o", "--output", required=True, metavar="FILE.v", help="Verilog file to write")
    p.add_argument("--quiet", action="store_true", help="print only the file name")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..flow.verilog import TOP_NAME, ports, write_verilog
    from ..hw import timing
    from ..spec import load_array_spec

    spec = load_array_spec(args.spec)
    path = write_verilog(spec, args.output)
    if args.quiet:
        print(path)
        return 0
    s = timing.summary(spec)
    print(f"wrote {path}: module {TOP_NAME}, {s['array']} array, {s['lanes']} lanes/PE, "
          f"acc {s['acc_width']} bits, latency {s['latency']} cycles, "
          f"{s['macs_per_cycle']} MAC/cycle")
    for port in ports(spec):
        print(f"  {port.direction:6} {port.width:5}  {port.name:16} {port.doc}")
    return 0
