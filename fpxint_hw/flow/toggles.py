"""Toggle counts of a Verilator run: the switching-activity proxy for dynamic energy.

A harness built with :data:`FLAGS` (Verilator's ``--coverage-toggle``) counts, for every bit
of every signal of the design, how often it changed value, and writes the counts to a
coverage file at the end of the run (``harness ... COVERAGE.dat``). :func:`read_counts`
parses that file; :func:`by_block` sums the bits by the block of the array they belong to
(PEs, output units, FIFO, ...).
Dynamic power is about proportional to switched capacitance, so toggles per image, with the
clock excluded (it toggles every cycle whatever the data), compare workloads and formats on
one array; they are not joules (wire and cell capacitances differ per net).

The coverage file has one line per counted bit, ``C '<fields>' <count>``, with fields
``\\x01key\\x02value`` (``h``: the signal's instance path, ``o``: its name and bit,
``page``: ``v_toggle/<module>``), as Verilator's ``VerilatedCov`` writes them.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from ..errors import FpxintError

__all__ = ["FLAGS", "CLOCKS", "read_counts", "block", "by_block", "total"]

#: Verilator arguments of a harness that counts toggles.
FLAGS = ("--coverage-toggle",)
#: Signal names (before any ``[bit]``) left out of the totals: the clock toggles every cycle.
CLOCKS = ("clk",)

_LINE = re.compile(r"^C '(?P<fields>.*)' (?P<count>\d+)$")


def _fields(text: str) -> dict[str, str]:
    out = {}
    for item in text.split("\x01")[1:]:
        key, _, value = item.partition("\x02")
        out[key] = value
    return out


def read_counts(path) -> Counter:
    """Toggle counts per ``(instance path, signal)`` of one coverage file (bits summed),
    the clock excluded (:data:`CLOCKS`)."""
    path = Path(path)
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        raise FpxintError(f"cannot read the toggle counts {path}: {exc.strerror}") from None
    counts: Counter = Counter()
    for line in lines:
        m = _LINE.match(line)
        if m is None:
            continue
        f = _fields(m["fields"])
        if not f.get("page", "").startswith("v_toggle"):
            continue
        signal = f.get("o", "").split("[")[0].split(":")[0]
        if signal in CLOCKS:
            continue
        counts[(f.get("h", ""), signal)] += int(m["count"])
    return counts


def block(instance: str, depth: int = 3) -> str:
    """The block of an instance path: up to ``depth`` levels below the top module, PE,
    column and row indices folded (``TOP.fpxint_array.datapath.array.pe_3_5`` ->
    ``datapath.array.pe``); ``top`` for the top module's own nets."""
    parts = [re.sub(r"(_\d+)+$", "", p) for p in instance.split(".")[2:2 + depth]]
    return ".".join(parts) or "top"


def by_block(counts: Counter) -> dict[str, int]:
    """Toggles summed per block (:func:`block`), largest first."""
    out: Counter = Counter()
    for (instance, _), n in counts.items():
        out[block(instance)] += n
    return dict(out.most_common())


def total(counts: Counter) -> int:
    """All toggles of ``counts``."""
    return int(sum(counts.values()))
