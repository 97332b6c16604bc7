"""Human-readable tables and machine-readable JSON for command output."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, Sequence

__all__ = ["format_table", "json_ready", "write_json", "fmt_db", "progress"]


def fmt_db(value: float) -> str:
    """A dB figure for a table: one decimal, or ``exact`` for +inf."""
    return "exact" if value == math.inf else f"{value:.1f}"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Align ``rows`` under ``headers`` (right-aligned columns, first column left-aligned)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        parts = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def json_ready(obj: Any) -> Any:
    """``obj`` with non-finite floats replaced by None (strict JSON has no inf/NaN)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    return obj


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented strict JSON (inf/NaN become null), atomically: a reader sees
    the old file or the new one, never a part."""
    from .outputs import write_text
    write_text(path, json.dumps(json_ready(obj), indent=2, allow_nan=False) + "\n")


#: False silences every progress bar (the command line sets it for ``--json`` runs).
SHOW_PROGRESS = True


def progress(total: int, label: str, unit: str = "it"):
    """A progress bar (tqdm) on stderr for ``total`` items, shown only when stderr is a
    terminal, :data:`SHOW_PROGRESS` is set and there is more than one item.

    Use as a context manager and call ``update(n)`` per finished batch::

        with progress(len(x), "simulate", "image") as bar:
            ...
            bar.update(len(batch))
    """
    from tqdm import tqdm
    show = SHOW_PROGRESS and total > 1 and sys.stderr.isatty()
    return tqdm(total=total, desc=label, unit=unit, file=sys.stderr, disable=not show,
                leave=False, dynamic_ncols=True)
