"""Human-readable tables and machine-readable JSON for command output."""

from __future__ import annotations

import json
import math
import sys
import time
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


def progress(done: int, total: int, start: float, label: str = "") -> None:
    """A plain one-line progress bar on stderr (only when stderr is a terminal).

    ``start`` is the ``time.perf_counter()`` of the first item; the rate is items per second.
    """
    if total <= 1 or not sys.stderr.isatty():
        return
    width = 30
    fill = int(width * done / total)
    rate = done / max(time.perf_counter() - start, 1e-9)
    sys.stderr.write(f"\r{label} [{'#' * fill}{'.' * (width - fill)}] {done}/{total} "
                     f"{rate:.1f}/s")
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()
