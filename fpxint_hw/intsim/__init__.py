"""The fast bit-exact integer simulator (Numba kernels + exact GEMM backends).

Public API::

    from fpxint_hw.intsim import Simulator, run_tile, analyze_widths
    sim = Simulator(program)                 # program = expand_graph(..., level="layer")
    ints = sim(x)                            # integer output, bit-identical to golden
    sim.gemm_plans()                         # per layer: backend, planes, int8 GEMM count
    result = run_tile(tile)                  # same call shape as golden.reference_tile
    int8_gemm()                              # what this CPU's int8 GEMM keeps exact
"""

from .cpu import Int8Gemm, int8_gemm
from .executor import PATHS, Simulator
from .gemm import BACKENDS
from .planes import GemmPlan
from .profile import PhaseTimes
from .tiles import extract_tiles, layer_tiles, run_tile
from .widths import WidthConfig, WidthRow, analyze_widths

__all__ = ["Simulator", "PATHS", "BACKENDS", "run_tile", "layer_tiles", "extract_tiles",
           "WidthConfig", "WidthRow", "analyze_widths", "Int8Gemm", "int8_gemm", "GemmPlan",
           "PhaseTimes"]
