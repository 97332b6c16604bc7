"""The ``fpxint`` command: a thin dispatcher over :mod:`fpxint_hw.commands`."""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import FpxintError

__all__ = ["main", "build_parser"]

#: Subcommand modules under fpxint_hw.commands, in the order ``--help`` lists them.
COMMANDS = (
    "demo",
    "expand",
    "run",
    "convert",
    "simulate",
    "rtl",
    "verify",
    "synth",
    "sweep",
    "plot",
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="fpxint",
        description="Expand floating-point networks into low-bit integer series (FP = x INT), "
                    "simulate them bit-exactly and generate their accelerators.",
        epilog="Run 'fpxint COMMAND --help' for the options of one command.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"fpxint_hw.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 on success, 2 on a user error)."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (FpxintError, OSError) as exc:
        print(f"fpxint {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
