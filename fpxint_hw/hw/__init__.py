"""Amaranth hardware of the accelerator: basis-lane PEs, the systolic array and its top.

One concept per module:

- :mod:`~fpxint_hw.hw.layouts`  ``lib.data`` layouts of lanes and stream payloads
- :mod:`~fpxint_hw.hw.tree`     the AbelianAdd adder tree (weighted lanes)
- :mod:`~fpxint_hw.hw.pe`       :class:`ProcessingElement` (weight-stationary, parallel lanes)
- :mod:`~fpxint_hw.hw.array`    :class:`SystolicArray` (skew, PE grid, column combine, de-skew)
- :mod:`~fpxint_hw.hw.requant`  :class:`OutputUnit` (bias, M0, rounding shift, clamp, split)
- :mod:`~fpxint_hw.hw.split`    output integer -> output digits
- :mod:`~fpxint_hw.hw.top`      :class:`Accelerator` (stream ports, back-pressure)
- :mod:`~fpxint_hw.hw.timing`   stage counts, latencies and pass cycles (composed from the
  stage constants of the modules above)
- :mod:`~fpxint_hw.hw.program`  host side: tiles -> passes -> beats, results -> TileResult
- :mod:`~fpxint_hw.hw.passes`   the plan -> run -> assemble loop every RTL engine shares
- :mod:`~fpxint_hw.hw.driver`   :func:`run_tile_amaranth` (amaranth.sim)
- :mod:`~fpxint_hw.hw.model`    Python specifications (used by tests and the formal check)

Everything is parameterised by one :class:`~fpxint_hw.spec.ArraySpec`.
"""

from .array import SystolicArray
from .driver import run_tile_amaranth, run_tiles_amaranth
from .pe import ProcessingElement
from .program import check_tile, plan
from .requant import OutputUnit
from .top import TOP_NAME, Accelerator

__all__ = ["ProcessingElement", "SystolicArray", "OutputUnit", "Accelerator", "TOP_NAME",
           "run_tile_amaranth", "run_tiles_amaranth", "check_tile", "plan"]
