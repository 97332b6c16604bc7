"""fpxint-hw: networks as series of low-bit integer terms, simulated bit-exactly and built as
accelerators.

The public API in a few names::

    from fpxint_hw import SeriesFormat, expand
    s = expand(weights, SeriesFormat(bits=4, terms=3, per_channel=True))
    s.reconstruct(2)          # the first two terms, as floats
"""

import os

# Idle OpenMP workers of Numba's parallel kernels spin by default and, on a 2-core machine,
# steal a core from the numpy work between kernels (measured: 7x slower expansion). Must be
# set before the first parallel kernel starts the OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .abelian import abelian_add, abelian_mul, abelian_neg, zero_like
from .errors import FormatError, FpxintError, InputError, WidthError
from .lanes import Lanes, lane_sum, tree_sum
from .series import Series, convergence, expand, sqnr_db
from .spec import SeriesFormat

__all__ = [
    "SeriesFormat", "Series", "expand", "convergence", "sqnr_db",
    "Lanes", "lane_sum", "tree_sum",
    "abelian_add", "abelian_neg", "abelian_mul", "zero_like",
    "FpxintError", "FormatError", "InputError", "WidthError",
]

__version__ = "0.1.0"
