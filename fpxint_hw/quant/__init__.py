"""The integer program of a network, and how a float graph becomes one.

Modules, one concept each:

* :mod:`~fpxint_hw.quant.program`: the program types (one frozen class per integer op);
* :mod:`~fpxint_hw.quant.ranges`: the real activation ranges (calibration-free or calibrated);
* :mod:`~fpxint_hw.quant.requant`: the requantization multipliers and accumulator bounds;
* :mod:`~fpxint_hw.quant.lower`: the lowering ``expand_graph`` (tensor, layer, model level);
* :mod:`~fpxint_hw.quant.bridge`: ``for_array``, the one way from an ``ArraySpec`` to the
  program its hardware computes.

Typical use::

    from fpxint_hw.quant import for_array
    prog = for_array(graph, load_array_spec("default"), input_range=(0.0, 1.0))
"""

from .bridge import ProgramOptions, for_array, gemm_fit, program_options
from .lower import LayerFormats, TensorExpansion, expand_graph
from .program import (LEVELS, OPS, Add, ArrayTarget, AvgPool, Clamp, Conv, Flatten, GemmOp,
                      GlobalAvgPool, Linear, MaxPool, QOp, QProgram, QTensor, Quantize)
from .ranges import (RANGE_RULES, FixedRanges, StatisticalRanges, activation_ranges,
                     calibrated_ranges)
from .requant import conv_acc_bounds, conv_acc_interval, derive_requant

__all__ = ["LEVELS", "OPS", "QTensor", "QOp", "Quantize", "GemmOp", "Conv", "Linear", "Add",
           "MaxPool", "AvgPool", "GlobalAvgPool", "Clamp", "Flatten", "QProgram",
           "ArrayTarget", "LayerFormats", "TensorExpansion", "expand_graph", "for_array",
           "program_options", "ProgramOptions", "gemm_fit", "activation_ranges", "RANGE_RULES",
           "StatisticalRanges", "FixedRanges",
           "calibrated_ranges", "derive_requant", "conv_acc_bounds", "conv_acc_interval"]
