"""The host's plan -> run -> assemble loop, shared by every RTL engine.

:func:`run_tiles` cuts tiles into passes (:func:`fpxint_hw.hw.program.plan`), hands all
passes to an engine in one call and assembles each tile's result from the result beats of
its passes (:func:`fpxint_hw.hw.program.assemble`). The engine is the only part that
differs between :mod:`fpxint_hw.hw.driver` (amaranth.sim) and
:mod:`fpxint_hw.flow.verilator` (the Verilated binary): a function ``run_jobs(jobs)`` that
runs the passes back to back (copying chained partial sums from the hardware's own results)
and returns ``(beats, passes, cycles)``: one uint8 result-beat array and one
:class:`PassCycles` per job, and the total cycles.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..spec import ArraySpec
from ..tile import GemmTile, TileResult
from .program import Job, assemble, plan

__all__ = ["PassCycles", "HwRun", "RunJobs", "run_tiles"]


@dataclass(frozen=True)
class PassCycles:
    """Measured cycles of one pass.

    Members
    -------
    load : int
        Cycle of the first ``w_in`` beat.
    first_in, last_in : int
        Cycles of the first and last accepted ``a_in`` beat (-1 without vectors).
    first_out, last_out : int
        Cycles of the first and last ``o_out`` beat (-1 without vectors).
    """

    load: int
    first_in: int
    last_in: int
    first_out: int
    last_out: int

    @property
    def total(self) -> int:
        """Cycles from the first weight beat to the last result beat, inclusive."""
        return self.last_out - self.load + 1

    @property
    def latency(self) -> int:
        """Cycles from the first accepted vector to its result."""
        return self.first_out - self.first_in


@dataclass(frozen=True, eq=False)
class HwRun:
    """Results and measured cycles of a hardware run (one entry per tile / per pass)."""

    results: list[TileResult]
    passes: list[PassCycles]
    cycles: int


#: An engine: runs passes back to back, returns ``(result beats per job, passes, cycles)``.
RunJobs = Callable[[list[Job]], tuple[Sequence[np.ndarray], Sequence[PassCycles], int]]


def run_tiles(spec: ArraySpec, tiles: list[GemmTile], run_jobs: RunJobs, *,
              names: list[str] | None = None) -> HwRun:
    """Run ``tiles`` one after another on the engine ``run_jobs`` (see the module docstring).

    ``names`` label the tiles in error messages (default ``"tile 0"``, ``"tile 1"``, ...).
    Returns an :class:`HwRun` with one TileResult per tile and the cycles of every pass.
    Tiles must fit the spec (:func:`fpxint_hw.hw.program.check_tile`); larger K and N are
    cut into passes.
    """
    names = names or [f"tile {i}" for i in range(len(tiles))]
    plans = [plan(spec, t, nm) for t, nm in zip(tiles, names)]
    beats, passes, cycles = run_jobs([j for p in plans for j in p])
    results, pos = [], 0
    for t, p in zip(tiles, plans):
        results.append(assemble(spec, t, p, beats[pos:pos + len(p)]))
        pos += len(p)
    return HwRun(results, list(passes), cycles)
