"""Where the fast simulator's time goes: wall seconds per layer and phase.

Phases of a conv/linear layer: ``split`` (activation terms and planes), ``im2col``, ``gemm``,
``requant`` (the products summed and requantized); of the other layers their kind (``add``,
``maxpool``, ...); ``quantize`` for the input.
"""

from __future__ import annotations

import time
from collections import defaultdict

__all__ = ["PhaseTimes", "GEMM_PHASES"]

#: The phases of a conv/linear layer, in order.
GEMM_PHASES = ("split", "im2col", "gemm", "requant")


class PhaseTimes:
    """Accumulated wall seconds per ``(layer, phase)`` (``seconds``) over the runs watched."""

    def __init__(self):
        self.seconds: dict[tuple[str, str], float] = defaultdict(float)

    def tick(self, layer: str, phase: str, since: float) -> float:
        """Add the time since ``since`` (a ``time.perf_counter()`` value) to ``(layer,
        phase)``; returns the current time, the start of the next phase."""
        now = time.perf_counter()
        self.seconds[(layer, phase)] += now - since
        return now

    def clear(self) -> None:
        """Forget every time recorded so far."""
        self.seconds.clear()

    def by_phase(self) -> dict[str, float]:
        """Seconds per phase, summed over layers, largest first."""
        out: dict[str, float] = defaultdict(float)
        for (_, phase), s in self.seconds.items():
            out[phase] += s
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def by_layer(self) -> dict[str, dict[str, float]]:
        """``{layer: {phase: seconds}}`` in the order the layers ran."""
        out: dict[str, dict[str, float]] = {}
        for (layer, phase), s in self.seconds.items():
            out.setdefault(layer, {})[phase] = s
        return out

    def total(self) -> float:
        """All recorded seconds."""
        return sum(self.seconds.values())


def no_tick(layer: str, phase: str, since: float) -> float:
    """The stand-in for :meth:`PhaseTimes.tick` when nothing is recorded."""
    return since
