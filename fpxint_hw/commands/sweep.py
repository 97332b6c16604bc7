"""``fpxint sweep``: a design-space sweep over bits x terms x array size x scale x combine.

For every point of the grid in ``--config``: accuracy of the expanded model from the bit-exact
simulator, LUTs / flip-flops / DSPs and Fmax from synthesis and place and route, ResNet-50
throughput from the cycle model at that Fmax; the file's ``baselines`` (default W8x1/A8x1
and W4x1/A4x1) add conventional one-term arrays on the same arrays. Each finished point is
appended to ``OUT/results.jsonl`` at once; running the same command again resumes where a
killed sweep stopped, computing no point twice.
"""

from __future__ import annotations

import argparse

from . import DefaultsHelp, only_with, positive_int

__all__ = ["register", "main"]


def register(subparsers) -> None:
    """Add the ``sweep`` subcommand."""
    p = subparsers.add_parser(
        "sweep", help="design-space sweep: accuracy, area, Fmax, throughput per point",
        description=__doc__.split("\n\n")[0],
        formatter_class=DefaultsHelp)
    p.add_argument("--config", required=True,
                   help="sweep YAML file, or a shipped sweep's name (e.g. tiny, mnist)")
    p.add_argument("--out", required=True, help="output folder (results.jsonl, cache/)")
    p.add_argument("--workers", type=positive_int, default=None,
                   help="points in parallel (default: the file's 'workers')")
    p.add_argument("--executor", choices=("local", "dask"), default="local",
                   help="local processes, or a Dask cluster (pip install 'fpxint-hw[dask]')")
    p.add_argument("--scheduler", default=None,
                   help="Dask scheduler address (default: start a local cluster)")
    p.add_argument("--build-dir", default=None, help="synthesis cache folder")
    p.add_argument("--retry-errors", action="store_true",
                   help="run again the points recorded with errors")
    p.add_argument("--limit", type=int, default=None,
                   help="run at most this many pending points")
    p.add_argument("--allow-code", action="store_true",
                   help="let the file's accuracy.evaluator name any package.module:function "
                        "(imported and called: only for files you trust)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Run the command; returns 0, or 1 when some points failed."""
    from ..dse import load_sweep_config, run_sweep
    only_with(args, [("scheduler", "--scheduler", args.executor == "dask", "--executor dask")],
              {})
    config = load_sweep_config(args.config, allow_code=args.allow_code)
    summary = run_sweep(config, args.out, workers=args.workers, executor=args.executor,
                        scheduler=args.scheduler, build_dir=args.build_dir,
                        retry_errors=args.retry_errors, limit=args.limit)
    print(f"{summary['total']} points: {summary['skipped']} were already done, "
          f"{summary['ran']} ran ({summary['errors']} with errors)"
          + (f", {summary['marked']} recorded marked as baselines" if summary["marked"] else "")
          + f"; {summary['results']}")
    return 1 if summary["errors"] else 0
