"""Cycles of GEMM layers on the weight-stationary array: tiling, weight load, fill and drain.

The accelerator (:mod:`fpxint_hw.hw.top`) runs one *pass* per weight load: ``rows`` weight
beats (one array row per cycle, the per-pass constants in parallel), then ``m`` activation
vectors one per cycle. The next pass's weights load as soon as the last vector has left the
datapath, while its results drain from the output FIFO, so back-to-back passes start

    pass_interval(m) = load_cycles + m + datapath_latency        (hw.timing.pass_interval)

cycles apart (``load_cycles = max(rows, 2)``), and the last result of a sequence leaves
``FIFO_STAGES`` cycles after the array could take the next weights. A pass alone takes
``load_cycles + m + latency`` cycles (hw.timing.tile_cycles); :mod:`fpxint_hw.hw.timing`
defines every figure. A GEMM ``M x K`` by ``K x N``
is cut into ``ceil(K / rows) * ceil(N / cols)`` passes of ``m`` vectors each; the K-chunks
of one column block chain their partial sums through the ``psum`` input
(``fpxint_hw.hw.program.plan``, the same cut), and a chained pass waits for the previous
pass's results, which its weight load hides. With ``m_tile`` the M vectors are also cut into
chunks of at most ``m_tile`` (an on-chip buffer of that many vectors), each chunk taking its
own passes.

A reduction longer than the accumulator's ``depth`` cannot be chained in the array; the model
cuts it into ``ceil(K / depth)`` segments whose results a host would add, each taking the
passes of its own K (the hardware driver refuses such tiles instead).

Utilisation is ``MACs / (cycles * rows * cols)``: the share of PE-cycles doing a useful
multi-term multiply-accumulate.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

from ..errors import FormatError
from ..hw import timing
from ..spec import ArraySpec
from .layers import GemmShape

__all__ = ["pass_cycles", "GemmCycles", "gemm_cycles", "back_to_back", "NetworkCycles",
           "network_cycles"]


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def pass_cycles(spec: ArraySpec, m: int) -> int:
    """Cycles of one pass of ``m >= 1`` vectors alone: weight load, vectors, fill and drain."""
    if m < 1:
        raise ValueError(f"pass_cycles: m must be >= 1, got {m}")
    return timing.tile_cycles(spec, m)


@dataclass(frozen=True)
class GemmCycles:
    """Cycles of one GEMM layer on an array.

    Members
    -------
    name : str
    passes : int
        Array passes (weight loads).
    cycles : int
        Clock cycles from the first weight beat to the last result (the GEMM alone).
    macs : int
        Multi-term multiply-accumulates of the layer.
    utilisation : float, 0..1
        ``macs / (cycles * rows * cols)``.
    """

    name: str
    passes: int
    cycles: int
    macs: int
    utilisation: float


def gemm_cycles(spec: ArraySpec, m: int, k: int, n: int, groups: int = 1, *,
                m_tile: int | None = None, name: str = "gemm") -> GemmCycles:
    """Cycles of ``groups`` GEMMs of ``m x k`` by ``k x n`` on ``spec`` (module docstring)."""
    for field, v in (("m", m), ("k", k), ("n", n), ("groups", groups)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"gemm_cycles({name}): {field} must be an integer >= 1, got {v!r}")
    bad_tile = isinstance(m_tile, bool) or not isinstance(m_tile, numbers.Integral)
    if m_tile is not None and (bad_tile or m_tile < 1):
        raise FormatError(f"gemm_cycles({name}): m_tile (throughput.m_tile) must be an integer "
                          f">= 1 or None, got {m_tile!r}")
    chunk = m if m_tile is None else min(m, m_tile)
    full, rest = divmod(m, chunk)
    depth = spec.reduction_depth
    kpasses = sum(_ceil(min(depth, k - s), spec.rows) for s in range(0, k, depth))
    per_m = kpasses * _ceil(n, spec.cols)
    passes = groups * per_m * (full + (1 if rest else 0))
    cycles = groups * per_m * (full * timing.pass_interval(spec, chunk)
                               + (timing.pass_interval(spec, rest) if rest else 0))
    cycles += timing.FIFO_STAGES                # the last results leave the output FIFO
    macs = groups * m * k * n
    return GemmCycles(name, passes, cycles, macs, macs / (cycles * spec.rows * spec.cols))


def back_to_back(spec: ArraySpec, gemms: list[GemmCycles]) -> int:
    """Cycles of ``gemms`` run one after another: each GEMM's count ends with its FIFO
    drain, which overlaps the next GEMM's weight load."""
    return timing.back_to_back(g.cycles for g in gemms)


@dataclass(frozen=True)
class NetworkCycles:
    """A whole network's GEMM layers on an array at a clock frequency.

    Members
    -------
    layers : list of GemmCycles
    cycles : int
        The layers one after another (each layer's FIFO drain overlaps the next load).
    macs : int
    utilisation : float, 0..1
    fmax_mhz : float or None
        Clock used for the times (None: no times).
    batch : int
        Images the layer shapes were built for.
    """

    layers: list[GemmCycles]
    cycles: int
    macs: int
    utilisation: float
    fmax_mhz: float | None
    batch: int = 1

    @property
    def seconds(self) -> float | None:
        """Time of one batch at ``fmax_mhz`` (None without a clock)."""
        return None if not self.fmax_mhz else self.cycles / (self.fmax_mhz * 1e6)

    @property
    def images_per_second(self) -> float | None:
        """Throughput at ``fmax_mhz`` (None without a clock)."""
        s = self.seconds
        return None if s is None else self.batch / s

    @property
    def gmacs_per_second(self) -> float | None:
        """Useful multi-term MACs per second, in units of 1e9 (None without a clock)."""
        s = self.seconds
        return None if s is None else self.macs / s / 1e9


def network_cycles(spec: ArraySpec, layers: list[GemmShape], fmax_mhz: float | None = None,
                   *, m_tile: int | None = None, batch: int = 1) -> NetworkCycles:
    """Cycles of every layer of ``layers`` (e.g. :func:`resnet50_layers`) on ``spec``.

    ``batch`` is the number of images ``layers`` were built for (it only scales the
    images-per-second figure); ``fmax_mhz`` the clock for the times.
    """
    rows = [gemm_cycles(spec, s.m, s.k, s.n, s.groups, m_tile=m_tile, name=s.name)
            for s in layers]
    cycles = back_to_back(spec, rows)
    macs = sum(r.macs for r in rows)
    util = macs / (cycles * spec.rows * spec.cols) if cycles else 0.0
    return NetworkCycles(rows, cycles, macs, util, fmax_mhz, batch)
