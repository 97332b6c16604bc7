"""Library recipes over the engines: what a command or a notebook does in one call.

* :mod:`~fpxint_hw.workflows.network`: load a network and the inputs to run it on;
* :mod:`~fpxint_hw.workflows.simulate`: compile, simulate, measure fidelity, check golden;
* :mod:`~fpxint_hw.workflows.dataset`: score a user's image folder in resumable batches;
* :mod:`~fpxint_hw.workflows.allocate`: choose the terms of each layer;
* :mod:`~fpxint_hw.workflows.tiles`: cut real layers into GEMM tiles for RTL replay;
* :mod:`~fpxint_hw.workflows.synth`: synthesize a spec into a flat record;
* :mod:`~fpxint_hw.workflows.rtl_network`: run a whole network on the RTL.
"""

__all__ = ["network", "simulate", "dataset", "allocate", "tiles", "synth", "rtl_network"]
