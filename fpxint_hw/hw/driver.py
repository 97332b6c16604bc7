"""Run tiles on the generated hardware in ``amaranth.sim``: the reference RTL driver.

``run_tile_amaranth(spec, tile)`` has the call shape of
:func:`fpxint_hw.golden.reference_tile` (plus the spec) and returns what the hardware
computed. The testbench is one async process that, every cycle, offers the next beat of each
input stream, sets ``o_out.ready`` and samples the handshakes, so it measures cycles exactly.
``amaranth.sim`` runs a few hundred cycles per second on an 8x8 array: keep tiles small and
use :mod:`fpxint_hw.flow.verilator` for anything large.
"""

from __future__ import annotations

from functools import partial

import numpy as np
from amaranth.sim import Simulator

from ..errors import FpxintError
from ..spec import ArraySpec
from ..tile import GemmTile, TileResult
from . import bits, layouts
from .passes import HwRun, PassCycles, run_tiles
from .program import Job, chain_psum
from .timing import latency
from .top import Accelerator

__all__ = ["PassCycles", "HwRun", "run_jobs_amaranth", "run_tiles_amaranth",
           "run_tile_amaranth"]


class _Stream:
    """Offers the beats of one input stream; once valid, a beat stays until accepted."""

    def __init__(self, port, rng, valid_p):
        self.port, self.rng, self.valid_p = port, rng, valid_p
        self.beats, self.pos, self.offering = [], 0, False

    def load(self, beats):
        self.beats, self.pos, self.offering = bits.to_int(beats), 0, False

    @property
    def done(self):
        return self.pos >= len(self.beats)

    def drive(self, ctx):
        if not self.offering and not self.done:
            self.offering = self.valid_p >= 1.0 or self.rng.random() < self.valid_p
        ctx.set(self.port.valid, self.offering)
        if self.offering:
            ctx.set(self.port.payload.as_value(), self.beats[self.pos])

    def fired(self, ctx) -> bool:
        if self.offering and ctx.get(self.port.ready):
            self.pos += 1
            self.offering = False
            return True
        return False


def run_jobs_amaranth(spec: ArraySpec, jobs: list[Job], *, ready: float = 1.0,
                      valid: float = 1.0, seed: int = 0, vcd: str | None = None,
                      max_idle: int | None = None):
    """Run passes back to back in one simulation.

    Parameters
    ----------
    ready, valid : float in (0, 1]
        Probability per cycle that ``o_out.ready`` is high / that an idle input stream
        offers its next beat (1.0: always).
    seed : int
        Seed of those coin flips.
    vcd : str, optional
        Write a waveform file.
    max_idle : int, optional
        Cycles without any transfer before the run is declared stuck (default from the
        spec's latency).

    Returns
    -------
    (results, passes, cycles): one uint8 result-beat array and one :class:`PassCycles` per
    job, and the total simulated cycles.
    """
    if not (0.0 < ready <= 1.0 and 0.0 < valid <= 1.0):
        raise ValueError(f"ready and valid probabilities must be in (0, 1], got {ready}, {valid}")
    dut = Accelerator(spec)
    rl = layouts.result(spec)
    rng = np.random.default_rng(seed)
    limit = max_idle or 50 * (latency(spec) + spec.rows + 10) / min(ready, valid)
    results = [[] for _ in jobs]
    passes = []
    total = [0]

    async def bench(ctx):
        w = _Stream(dut.w_in, rng, valid)
        c = _Stream(dut.cfg_in, rng, valid)
        a = _Stream(dut.a_in, rng, valid)
        marks = [dict(load=-1, first_in=-1, last_in=-1, first_out=-1, last_out=-1)
                 for _ in jobs]
        sizes = [job.acts.shape[0] for job in jobs]
        cycle = idle = 0
        lj, dj, phase = 0, 0, "load"          # job being loaded/issued, job being drained
        if jobs:
            w.load(jobs[0].weights)
            c.load(jobs[0].config)
        else:
            phase = "end"
        while True:
            while dj < len(jobs) and len(results[dj]) >= sizes[dj]:
                dj += 1
            # A chained pass continues the previous pass's sums: wait until all of them are
            # out (the weights and config of the pass may load while they drain).
            waiting = (lj < len(jobs) and jobs[lj].chain
                       and len(results[lj - 1]) < sizes[lj - 1])
            if phase == "load" and w.done and c.done and not waiting:
                job = jobs[lj]
                beats = job.acts
                if job.chain:
                    beats = chain_psum(spec, beats, _stack(results[lj - 1], rl))
                a.load(beats)
                phase = "issue"
            if phase == "issue" and a.done:
                lj += 1
                if lj < len(jobs):
                    w.load(jobs[lj].weights)
                    c.load(jobs[lj].config)
                    phase = "load"
                else:
                    phase = "end"
            if phase == "end" and dj >= len(jobs):
                break
            for s in (w, c, a):
                s.drive(ctx)
            o_ready = ready >= 1.0 or rng.random() < ready
            ctx.set(dut.o_out.ready, o_ready)
            o_valid = ctx.get(dut.o_out.valid)
            fired = False
            if w.fired(ctx):
                fired = True
                if marks[lj]["load"] < 0:
                    marks[lj]["load"] = cycle
            fired |= c.fired(ctx)
            if a.fired(ctx):
                fired = True
                _mark(marks[lj], "in", cycle)
            if o_valid and o_ready:
                fired = True
                if dj >= len(jobs):
                    raise FpxintError(f"amaranth simulation: unexpected result at cycle {cycle}")
                results[dj].append(ctx.get(dut.o_out.payload.as_value()))
                _mark(marks[dj], "out", cycle)
            await ctx.tick()
            cycle += 1
            idle = 0 if fired else idle + 1
            if idle > limit:
                raise FpxintError(f"amaranth simulation stuck: no transfer for {idle} cycles "
                                  f"at cycle {cycle} (pass {dj} of {len(jobs)})")
        passes.extend(PassCycles(**mk) for mk in marks)
        total[0] = cycle

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    return [_stack(r, rl) for r in results], passes, total[0]


def _stack(values: list[int], layout) -> np.ndarray:
    return bits.from_int(layout, values) if values else np.zeros((0, bits.nbytes(layout)),
                                                                  np.uint8)


def _mark(mk: dict, what: str, cycle: int) -> None:
    if mk[f"first_{what}"] < 0:
        mk[f"first_{what}"] = cycle
    mk[f"last_{what}"] = cycle


def run_tiles_amaranth(spec: ArraySpec, tiles: list[GemmTile], *, names=None,
                       **options) -> HwRun:
    """Run ``tiles`` one after another in one simulation of the accelerator.

    ``options`` are those of :func:`run_jobs_amaranth` (``ready``, ``valid``, ``seed``,
    ``vcd``). Returns an :class:`~fpxint_hw.hw.passes.HwRun` with one TileResult per tile
    and the cycles of every pass (:func:`fpxint_hw.hw.passes.run_tiles`, the loop shared
    with the Verilator driver). Tiles must fit the spec
    (:func:`fpxint_hw.hw.program.check_tile`); larger K and N are cut into passes
    (:func:`fpxint_hw.hw.program.plan`).
    """
    return run_tiles(spec, tiles, partial(run_jobs_amaranth, spec, **options), names=names)


def run_tile_amaranth(spec: ArraySpec, tile: GemmTile, **options) -> TileResult:
    """Compute ``tile`` on the simulated hardware of ``spec``: same result type as
    :func:`fpxint_hw.golden.reference_tile`. ``options`` as in :func:`run_jobs_amaranth`."""
    return run_tiles_amaranth(spec, [tile], **options).results[0]
