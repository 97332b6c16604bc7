"""The ``fpxint`` command: a thin dispatcher over :mod:`fpxint_hw.commands`."""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from . import report
from .errors import FpxintError

__all__ = ["main", "build_parser", "EXIT_OK", "EXIT_BUG", "EXIT_USER", "EXIT_INTERRUPTED"]

#: Exit statuses: success, an internal error (a bug), a user error (as argparse's), Ctrl-C.
EXIT_OK, EXIT_BUG, EXIT_USER, EXIT_INTERRUPTED = 0, 1, 2, 130

#: argparse destinations that name files a command reads, and their flags.
INPUT_ARGS = {"input": "--input", "model": "--model", "weights": "--weights", "spec": "--spec",
              "config": "--config", "overrides": "--overrides", "tiles": "--tiles",
              "dir": "DIR", "dataset": "--dataset", "synsets": "--synsets"}
#: Positional arguments among them, by command: how ``--help`` names them.
POSITIONAL_INPUTS = {("expand", "input"): "IN.npz"}
#: argparse destinations that name what a command writes, and their flags.
OUTPUT_ARGS = {"output": "--output", "out": "--out", "json": "--json", "plot": "--plot",
               "dump_tiles": "--dump-tiles", "state": "--state",
               "save_outputs": "--save-outputs"}
#: Output flags that are folders (``--out`` is one for these commands, a file for the rest).
FOLDER_OUTPUTS = ("--plot", "--dump-tiles", "--state")
FOLDER_OUT_COMMANDS = ("sweep", "plot", "demo")

#: Subcommand modules under fpxint_hw.commands, in the order ``--help`` lists them.
COMMANDS = (
    "demo",
    "expand",
    "run",
    "convert",
    "simulate",
    "export",
    "allocate",
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
    """Run the command line; returns the exit status.

    0 on success (or what the command returns, e.g. 1 for a failed check); 2 on a user error
    (an :class:`~fpxint_hw.errors.FpxintError` or an ``OSError`` such as a missing file:
    ``fpxint CMD: error: MESSAGE`` on stderr, no traceback; argparse's usage errors exit 2
    too); 1 on an internal error (any other exception: its traceback, then a line asking
    for a report); 130 on Ctrl-C.
    """
    args = build_parser().parse_args(argv)
    prog = f"fpxint {args.command}"
    if getattr(args, "json", None):
        report.SHOW_PROGRESS = False          # machine-readable runs print no progress bars
    try:
        check_output_paths(args)
        return int(args.func(args) or 0)
    except (FpxintError, OSError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_USER
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception:
        traceback.print_exc(file=sys.stderr)
        print(f"{prog}: internal error (a bug): please report it with the command line and "
              f"the traceback above", file=sys.stderr)
        return EXIT_BUG


def check_output_paths(args: argparse.Namespace) -> None:
    """Refuse, before any work, an output path that is one of the command's inputs or
    another of its outputs (:func:`fpxint_hw.outputs.check_paths`)."""
    from .outputs import check_paths
    given = vars(args)

    def paths(table):
        found = {}
        for dest, flag in table.items():
            flag = POSITIONAL_INPUTS.get((args.command, dest), flag)
            value = given.get(dest)
            values = value if isinstance(value, (list, tuple)) else [value]
            for i, v in enumerate(v for v in values if isinstance(v, str)):
                found[flag if i == 0 else f"{flag} (#{i + 1})"] = v
        return found

    folders = FOLDER_OUTPUTS + (("--out",) if args.command in FOLDER_OUT_COMMANDS else ())
    check_paths(paths(OUTPUT_ARGS), paths(INPUT_ARGS), folders)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
