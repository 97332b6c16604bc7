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

from .errors import FormatError, FpxintError, InputError, WidthError

#: Public name -> the submodule defining it. Imported on first use (PEP 562), so that
#: ``import fpxint_hw.errors`` (or the command line's ``--help``) does not start Numba.
_LAZY = {
    "SeriesFormat": "spec",
    "Series": "series", "expand": "series", "convergence": "series", "sqnr_db": "series",
    "Lanes": "lanes", "lane_sum": "lanes", "tree_sum": "lanes",
    "abelian_add": "abelian", "abelian_neg": "abelian", "abelian_mul": "abelian",
    "zero_like": "abelian",
}

__all__ = [
    "SeriesFormat", "Series", "expand", "convergence", "sqnr_db",
    "Lanes", "lane_sum", "tree_sum",
    "abelian_add", "abelian_neg", "abelian_mul", "zero_like",
    "FpxintError", "FormatError", "InputError", "WidthError",
]

__version__ = "0.1.0"


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
