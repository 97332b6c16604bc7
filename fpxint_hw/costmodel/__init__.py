"""Analytical cost models of the accelerator: area (calibrated on synthesis) and cycles.

* :mod:`~fpxint_hw.costmodel.area`: LUT-equivalents and flip-flops from an ArraySpec's
  structure (digit multipliers, adder trees and accumulators, requantization units,
  registers), with coefficients fitted by least squares to synthesis results;
* :mod:`~fpxint_hw.costmodel.cycles`: cycles, utilisation and throughput of GEMM layers
  (tiling into array passes, weight load, fill and drain), equal to the RTL's cycle counts;
* :mod:`~fpxint_hw.costmodel.layers`: the GEMM shapes of a network's conv / linear layers.
"""

from .area import AreaModel, area_features, fit_area_model
from .cycles import (GemmCycles, NetworkCycles, back_to_back, gemm_cycles, network_cycles,
                     pass_cycles)
from .layers import GemmShape, gemm_layers, resnet50_layers

__all__ = ["AreaModel", "area_features", "fit_area_model", "GemmCycles", "NetworkCycles",
           "gemm_cycles", "back_to_back", "network_cycles", "pass_cycles", "GemmShape", "gemm_layers",
           "resnet50_layers"]
