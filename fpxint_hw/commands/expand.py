"""``fpxint expand``: expand every array of an .npz file into series terms."""

from __future__ import annotations

import argparse
import dataclasses
import json

import numpy as np

from ..errors import InputError
from ..io.npz import load_arrays, save_arrays
from ..report import fmt_db, format_table, write_json
from ..series import convergence, expand
from ..spec import SCALE_MODES, SeriesFormat

__all__ = ["register", "add_format_options", "format_from_args", "convergence_report",
           "print_report"]


def add_format_options(parser: argparse.ArgumentParser) -> None:
    """The series-format options shared by commands that expand tensors."""
    parser.add_argument("--bits", type=int, default=4, metavar="B",
                        help="bits per term, 2..8 (default 4)")
    parser.add_argument("--terms", type=int, default=3, metavar="T",
                        help="number of terms, 1..8 (default 3)")
    parser.add_argument("--scale", choices=SCALE_MODES, default="pow2",
                        help="lane ratio: pow2 (shifts only) or free (ideal ratio); "
                             "default pow2")
    parser.add_argument("--per-channel", action="store_true",
                        help="one scale per channel along --axis instead of per tensor")
    parser.add_argument("--axis", type=int, default=None,
                        help="channel axis for --per-channel (default 0)")


def format_from_args(args: argparse.Namespace) -> SeriesFormat:
    """The SeriesFormat the format options describe (``--axis`` only with
    ``--per-channel``: a flag that would be ignored is an error)."""
    if args.axis is not None and not args.per_channel:
        raise InputError(f"--axis {args.axis} applies only with --per-channel; add "
                         f"--per-channel or drop --axis")
    if args.axis is None:
        args.axis = 0
    return SeriesFormat(bits=args.bits, terms=args.terms, scale=args.scale,
                        per_channel=args.per_channel)


def convergence_report(arrays: dict[str, np.ndarray], fmt: SeriesFormat, axis: int = 0,
                       source: str = "input"):
    """Expand each array; return ``(series by name, report dict)``.

    The report holds the format and, per tensor, its shape, scale range and the per-k rows of
    :func:`fpxint_hw.series.convergence`.
    """
    series, tensors = {}, []
    for name, arr in arrays.items():
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise InputError(f"{source}: entry {name!r} has dtype {arr.dtype}; expected numbers")
        # A scalar has no channels: it gets one scale whatever the format says.
        fmt_t = fmt if arr.ndim else dataclasses.replace(fmt, per_channel=False)
        s = expand(arr, fmt_t, axis=axis, name=f"{source}: entry {name!r}")
        series[name] = s
        scales = s.channel_scales
        tensors.append({"name": name, "shape": list(arr.shape),
                        "scale_min": float(scales.min()), "scale_max": float(scales.max()),
                        "convergence": convergence(arr, s)})
    return series, {"format": fmt.to_dict(), "tensors": tensors}


def print_report(report: dict) -> None:
    """Print one convergence table per tensor."""
    for t in report["tensors"]:
        print(f"\n{t['name']}  shape {tuple(t['shape'])}")
        rows = [(r["k"], f"{r['max_abs_error']:.3e}", f"{r['bound']:.3e}", fmt_db(r["sqnr_db"]))
                for r in t["convergence"]]
        print(format_table(("k", "max |error|", "bound", "SQNR dB"), rows))


def _run(args: argparse.Namespace) -> int:
    fmt = format_from_args(args)
    arrays = load_arrays(args.input)
    series, report = convergence_report(arrays, fmt, args.axis, source=str(args.input))
    out = {}
    for name, s in series.items():
        out[f"{name}.digits"] = s.digits
        out[f"{name}.scale"] = np.asarray(s.scale)
    out["__format__"] = np.array(json.dumps(fmt.to_dict()))
    save_arrays(args.output, out)
    print(f"{fmt.terms} terms of {fmt.bits} bits, {fmt.scale} lanes, "
          f"{'per-channel' if fmt.per_channel else 'per-tensor'} scale")
    print_report(report)
    print(f"\nwrote {args.output}")
    if args.json:
        write_json(args.json, report)
        print(f"wrote {args.json}")
    return 0


def register(subparsers) -> None:
    """Add ``expand`` to the ``fpxint`` command."""
    p = subparsers.add_parser(
        "expand", help="expand every array of an .npz file into low-bit series terms",
        description="Expand every array in IN.npz into a residual series of low-bit integer "
                    "terms; write the digits and scales to OUT.npz (entries NAME.digits, "
                    "NAME.scale, __format__) and print, per tensor and per number of terms k, "
                    "the max-abs error, its bound and the SQNR.")
    p.add_argument("input", metavar="IN.npz", help="arrays to expand (loaded without pickle)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.npz",
                   help="where to write the terms")
    add_format_options(p)
    p.add_argument("--json", metavar="REPORT.json", help="also write the tables as JSON")
    p.set_defaults(func=_run)
