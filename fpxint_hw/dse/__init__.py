"""Design-space exploration: sweeps over series formats and array shapes.

* :mod:`~fpxint_hw.dse.config`: the sweep YAML (grid and per-step options), validated;
* :mod:`~fpxint_hw.dse.point`: one grid point, its ArraySpec and its evaluation
  (accuracy from a pluggable evaluator, area and Fmax from synthesis, throughput from the
  cycle model);
* :mod:`~fpxint_hw.dse.accuracy`: the evaluator that runs the bit-exact simulator on a real
  model and its real data;
* :mod:`~fpxint_hw.dse.results`: the append-only JSON-lines results file that makes a killed
  sweep resumable;
* :mod:`~fpxint_hw.dse.baselines`: each series point against the cheapest conventional
  one-term baseline of its array with equal or better accuracy, and every point's area per
  lane-MAC and per ResNet-50 image/s;
* :mod:`~fpxint_hw.dse.runner`: runs the pending points on local processes or a Dask cluster.
"""

from .config import SweepConfig, load_sweep_config
from .point import SweepPoint, evaluate_point, grid_points
from .results import ResultsFile
from .runner import run_sweep

__all__ = ["SweepConfig", "load_sweep_config", "SweepPoint", "grid_points", "evaluate_point",
           "ResultsFile", "run_sweep"]
