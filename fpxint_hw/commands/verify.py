"""``fpxint verify``: run tile files (or random tiles) through the generated hardware."""

from __future__ import annotations

import argparse

from ..errors import FormatError
from ..flow.verify import BACKENDS
from . import add_spec_option

__all__ = ["register"]


def register(subparsers) -> None:
    """Add the ``verify`` subcommand."""
    p = subparsers.add_parser(
        "verify", help="run tiles through the generated RTL and compare bit for bit",
        description="Run GEMM tiles through the exported Verilog (Verilator) or the Amaranth "
                    "simulation of an array spec, and compare acc, out and output digits with "
                    "the tiles' expected results (or the golden model when a file has none). "
                    "Exit status 1 on any mismatch.")
    add_spec_option(p)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--tiles", metavar="DIR", help="folder of tile .npz files (or one file)")
    src.add_argument("--random", type=int, metavar="N", help="N random tiles for the spec")
    p.add_argument("--m", type=int, default=64, metavar="M",
                   help="vectors per random tile (default 64)")
    p.add_argument("--k", type=int, metavar="K",
                   help="reduction length of random tiles (default: random up to the "
                        "spec's depth, at most 8 passes)")
    p.add_argument("--backend", choices=BACKENDS, default="verilator",
                   help="RTL simulator (default verilator)")
    p.add_argument("--ready", type=float, default=1.0, metavar="P",
                   help="probability per cycle that the output is ready (default 1)")
    p.add_argument("--valid", type=float, default=1.0, metavar="P",
                   help="probability per cycle that an idle input offers a beat (default 1)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--build-dir", metavar="DIR", help="Verilator build cache folder")
    p.set_defaults(func=_run)


def _random_items(spec, args):
    import numpy as np

    from ..hw.vectors import random_tile

    rng = np.random.default_rng(args.seed)
    items = []
    for i in range(args.random):
        k = args.k or int(rng.integers(1, min(spec.reduction_depth, 8 * spec.rows) + 1))
        n = int(rng.integers(1, 2 * spec.cols + 1))
        mask = rng.random((spec.w_terms, spec.a_terms)) < 0.8 if rng.random() < 0.3 else None
        items.append((f"random{i}", random_tile(spec, args.m, rng, k=k, n=n, lane_mask=mask),
                      None))
    return items


def _run(args: argparse.Namespace) -> int:
    from ..flow.verify import load_tile_dir, verify
    from ..spec import load_array_spec

    for opt in ("random", "m", "k"):
        v = getattr(args, opt)
        if v is not None and v < 1:
            raise FormatError(f"--{opt} must be >= 1, got {v}")
    spec = load_array_spec(args.spec)
    items = load_tile_dir(args.tiles) if args.tiles else _random_items(spec, args)
    rep = verify(spec, items, backend=args.backend, ready=args.ready, valid=args.valid,
                 seed=args.seed, build_dir=args.build_dir)
    for t in rep.tiles:
        if t.error:
            print(f"ERROR {t.name}: {t.error}")
        elif t.mismatches:
            print(f"FAIL  {t.name}: M={t.m} K={t.k} N={t.n}")
            for line in t.mismatches:
                print(f"      {line}")
        else:
            print(f"ok    {t.name}: M={t.m} K={t.k} N={t.n}, {t.passes} passes, "
                  f"{t.cycles} cycles")
    rate = rep.cycles / rep.run_seconds if rep.run_seconds else 0.0
    print(f"{rep.backend}: {len(rep.tiles)} tiles, {rep.vectors} vectors, {rep.outputs} outputs, "
          f"{rep.mismatch_count} tiles with mismatches, "
          f"{sum(1 for t in rep.tiles if t.error)} errors; build {rep.build_seconds:.1f} s, "
          f"run {rep.run_seconds:.2f} s, {rep.cycles} cycles ({rate / 1e6:.2f} M cycles/s)")
    if any(t.error for t in rep.tiles):
        return 2
    return 0 if rep.ok else 1
