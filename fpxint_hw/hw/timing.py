"""Timing of the generated accelerator: stage counts, latencies and pass cycles (clock cycles).

Every count is written once, as a constant next to the registers that make it, and composed
in the module that needs the composite to build its hardware (the array delays its partial
sums by ``pe_stages``, the output unit its accumulator by ``out_stages``, the top sizes its
FIFO by ``fifo_depth``); this module gathers them and adds the pass-level figures. The
hardware modules never import it, so there is no import cycle.

===================  ==================================================  ==================
figure               composed of                                         defined in
===================  ==================================================  ==================
``tree_levels``      ``ceil(log2 tree_terms)`` (``combine: pe``)         ``pe``, ``tree``
``pe_stages``        ``PSUM_STAGES + mult_reg + tree_reg * tree_levels``  ``pe``
``combine_stages``   ``COMBINE_STAGES`` with ``combine: column``          ``array``
``array_latency``    ``ENTRY_STAGES + rows - 1 + pe_stages``              ``array``
                     ``+ combine_stages + cols - 1``
``m0_stages``        ``product_stages(acc_width, m0_bits)``              ``requant``,
                                                                         ``multiplier``
``out_stages``       ``BIAS_STAGES + m0_stages + ROUND_STAGES``          ``requant``
                     ``+ ZERO_POINT_STAGES + CLAMP_STAGES + SPLIT_STAGES``
``datapath_latency`` ``INPUT_STAGES + array_latency + out_stages``       ``top``
``latency``          ``datapath_latency + FIFO_STAGES``                  ``top``, ``fifo``
``fifo_depth``       ``latency + CREDIT_SLACK``                          ``top``
``load_cycles``      ``max(rows, CONFIG_CYCLES)``                        here
``tile_cycles(m)``   ``load_cycles + m + latency``                       here
``pass_interval(m)`` ``load_cycles + m + datapath_latency``              here
``back_to_back(cs)`` ``sum(cs) - FIFO_STAGES * (len(cs) - 1)``           here
===================  ==================================================  ==================

All take an :class:`~fpxint_hw.spec.ArraySpec`; the spec itself holds only formats, sizes and
widths. Tests measure these figures on the simulated hardware (``tests/hw/test_timing.py``).

>>> from fpxint_hw.spec import ArraySpec
>>> spec = ArraySpec(rows=2, cols=2, m0_bits=8)
>>> pe_stages(spec), array_latency(spec), out_stages(spec), latency(spec)
(2, 5, 13, 22)
>>> tile_cycles(spec, 16), pass_interval(spec, 16), fifo_depth(spec)
(40, 38, 25)
"""

from __future__ import annotations

from typing import Any

from ..spec import ArraySpec, check_int
from .array import array_latency, combine_stages
from .fifo import FIFO_STAGES
from .pe import pe_stages, tree_levels
from .requant import m0_stages, out_stages
from .top import CONFIG_CYCLES, datapath_latency, fifo_depth, latency

__all__ = ["tree_levels", "pe_stages", "combine_stages", "array_latency", "m0_stages",
           "out_stages", "datapath_latency", "FIFO_STAGES", "latency", "fifo_depth",
           "load_cycles", "tile_cycles", "pass_interval", "back_to_back", "figures", "summary"]


def load_cycles(spec: ArraySpec) -> int:
    """Cycles from a pass's first weight beat to its first vector: one weight row per cycle
    (``rows``), the config beat in parallel with the first, and at least
    :data:`~fpxint_hw.hw.top.CONFIG_CYCLES` after the config beat."""
    return max(spec.rows, CONFIG_CYCLES)


def tile_cycles(spec: ArraySpec, m: int) -> int:
    """Cycles of one pass of ``m >= 1`` vectors alone: first weight beat to last result,
    inclusive, with an always-valid host and an always-ready sink:
    ``load_cycles + m + latency``."""
    check_int("tile_cycles", "m", m, 1)
    return load_cycles(spec) + m + latency(spec)


def pass_interval(spec: ArraySpec, m: int) -> int:
    """Cycles from one pass's first weight beat to the next pass's, back to back (``m >= 1``
    vectors each): ``load_cycles + m + datapath_latency``.

    The next weights load as soon as the last vector has left the datapath (its results may
    still be in the output FIFO). A chained pass (continuing the previous pass's sums) also
    waits for the previous results to leave the FIFO, which its weight load hides
    (``load_cycles >= FIFO_STAGES``).
    """
    check_int("pass_interval", "m", m, 1)
    return load_cycles(spec) + m + datapath_latency(spec)


def back_to_back(counts) -> int:
    """Cycles of pass sequences run one after another, given each one's cycles alone (first
    weight beat to last result): each sequence's last ``FIFO_STAGES`` cycles, its results
    leaving the output FIFO, overlap the next sequence's weight load."""
    counts = list(counts)
    return sum(counts) - FIFO_STAGES * max(len(counts) - 1, 0)


def figures(spec: ArraySpec) -> dict[str, int]:
    """Every per-spec figure of the table above, by name (cycles; ``fifo_depth`` in
    entries)."""
    return {f.__name__: f(spec) for f in (tree_levels, pe_stages, combine_stages,
                                          array_latency, m0_stages, out_stages,
                                          datapath_latency, latency, fifo_depth, load_cycles)}


def summary(spec: ArraySpec) -> dict[str, Any]:
    """:meth:`ArraySpec.summary` with ``latency`` and ``load_cycles`` (cycles) after the
    widths, for reports, the command line and the Verilog header."""
    items = list(spec.summary().items())
    cut = [key for key, _ in items].index("out_width") + 1
    return dict(items[:cut]) | {"latency": latency(spec), "load_cycles": load_cycles(spec)} \
        | dict(items[cut:])
