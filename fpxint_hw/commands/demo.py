"""``fpxint demo``: the toolkit's main job on built-in defaults (see :mod:`fpxint_hw.pipeline`)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..errors import FormatError
from ..report import format_table, write_json
from ..spec import SeriesFormat
from .expand import convergence_report, print_report

from . import positive_int

__all__ = ["register", "builtin_tensors"]


def builtin_tensors(seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic float32 tensors of the shapes and statistics that networks have.

    A He-initialised 3x3 conv weight, Gaussian, Laplace and Student-t (3 dof, heavy-tailed)
    tensors of 64 channels x 4096 values.
    """
    rng = np.random.default_rng(seed)
    n = (64, 1 << 12)
    return {
        "conv3x3.weight (He init)": (rng.standard_normal((256, 128, 3, 3))
                                     * np.sqrt(2.0 / (128 * 9))).astype(np.float32),
        "gaussian": rng.standard_normal(n).astype(np.float32),
        "laplace": rng.laplace(size=n).astype(np.float32),
        "student-t (3 dof)": rng.standard_t(3, size=n).astype(np.float32),
    }


def _rate_rows(fmt: SeriesFormat, report: dict) -> list[tuple]:
    rows = []
    for t in report["tensors"]:
        conv = t["convergence"]
        gains = [b["sqnr_db"] - a["sqnr_db"] for a, b in zip(conv, conv[1:])]
        rows.append((t["name"], *(f"{g:.1f}" for g in gains)))
    return rows


def _convergence_tables(args: argparse.Namespace, out: Path) -> None:
    """Print and save how the series of the built-in tensors converge, in both scale modes."""
    tensors = builtin_tensors()
    summary = {}
    for scale in ("pow2", "free"):
        fmt = SeriesFormat(bits=args.bits, terms=args.terms, scale=scale, per_channel=True)
        _, report = convergence_report(tensors, fmt)
        theory = 20 * np.log10(fmt.radix)
        print(f"\n=== {fmt.bits}-bit terms, {scale} lanes (ratio {fmt.radix}), per-channel "
              f"scales: theory says about {theory:.1f} dB per added term ===")
        print_report(report)
        print(f"\nSQNR gained by each added term (dB), {scale}:")
        print(format_table(("tensor",) + tuple(f"{k}->{k + 1}" for k in range(1, fmt.terms)),
                           _rate_rows(fmt, report)))
        summary[scale] = report
    path = out / "expand_convergence.json"
    write_json(path, summary)
    print(f"\nwrote {path}")


def _run(args: argparse.Namespace) -> int:
    if args.images < 1:
        raise FormatError(f"--images must be >= 1, got {args.images}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    _convergence_tables(args, out)
    if args.tables_only:
        return 0
    from ..pipeline import run_main_job
    print("\n=== the main job: ResNet-50 -> bit-exact simulation -> Verilog -> Verilator (a "
          "tile; EfficientNet-Lite0 whole) -> synthesis -> sweep -> plots ===")
    summary = run_main_job(out / "main", images=args.images, pnr=args.pnr)
    failed = [s["name"] for s in summary["steps"] if s["status"] == "failed"]
    return 1 if failed else 0


def register(subparsers) -> None:
    """Add ``demo`` to the ``fpxint`` command."""
    p = subparsers.add_parser(
        "demo", help="run the main job on built-in defaults",
        description="The main job on built-in defaults: print how series of low-bit terms "
                    "converge on built-in tensors, then expand ResNet-50, simulate it "
                    "bit-exactly with a golden check, generate the default array's Verilog, "
                    "verify a real ResNet-50 tile on it with Verilator, run EfficientNet-Lite0 "
                    "(real weights) whole on it on one photo and print the class the hardware "
                    "predicts, synthesize it, run a small sweep and draw its plots. Exits "
                    "non-zero if a step fails.")
    p.add_argument("--bits", type=int, default=4, help="bits per term of the tables (default 4)")
    p.add_argument("--terms", type=int, default=4,
                   help="terms of the tables (default 4)")
    p.add_argument("--images", type=positive_int, default=2, help="ResNet-50 sample photos (default 2)")
    p.add_argument("--pnr", action="store_true",
                   help="also place and route the default array for Fmax (minutes)")
    p.add_argument("--tables-only", action="store_true",
                   help="print the convergence tables and stop")
    p.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    p.set_defaults(func=_run)
