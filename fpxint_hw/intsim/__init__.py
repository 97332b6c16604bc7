"""The fast bit-exact integer simulator (Numba kernels + exact GEMM backends).

Public API::

    from fpxint_hw.intsim import Simulator, run_tile, analyze_widths
    sim = Simulator(program)                 # program = expand_graph(..., level="layer")
    ints = sim(x)                            # integer output, bit-identical to golden
    result = run_tile(tile)                  # same call shape as golden.reference_tile
"""

from .executor import PATHS, Simulator
from .gemm import BACKENDS
from .tiles import extract_tiles, layer_tiles, run_tile
from .widths import WidthConfig, WidthRow, analyze_widths

__all__ = ["Simulator", "PATHS", "BACKENDS", "run_tile", "layer_tiles", "extract_tiles",
           "WidthConfig", "WidthRow", "analyze_widths"]
