"""Where place and route put each module's cells: nextpnr's placement kept per instance.

nextpnr's ``--write`` netlist names every placed cell's site (``NEXTPNR_BEL``, e.g.
``X12/Y40/SLICEA``). :func:`extract` keeps of it only the tile coordinates of each cell,
grouped by the hierarchical instance the cell belongs to (:func:`instance_of`), as
``placement.json`` beside the run's report (a few hundred kB where the netlist is tens of MB).
:func:`spread` says how far an instance's cells are scattered: a PE whose cells span half the
die has long routes inside it, whatever its logic depth.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

__all__ = ["PLACEMENT", "instance_of", "extract", "load", "spread"]

#: File name of the compact placement in a place-and-route folder.
PLACEMENT = "placement.json"

_BEL = re.compile(r"X(\d+)/Y(\d+)/")


def instance_of(cell: str) -> str:
    """The hierarchical instance of a flattened cell name (``datapath.array.pe_3_0`` for
    ``datapath.array.pe_3_0.a[0]_TRELLIS_FF_Q``; ``""`` for a top-level cell)."""
    return cell.rsplit(".", 1)[0] if "." in cell else ""


def extract(placed: Path, out: Path) -> int:
    """Write the tile coordinates of every placed cell of nextpnr's ``--write`` JSON
    ``placed``, grouped by instance, to ``out``: ``{"instances": {name: [xs, ys]}}``.
    Returns the number of cells kept."""
    netlist = json.loads(Path(placed).read_text())
    groups: dict[str, tuple[list, list]] = {}
    for module in netlist.get("modules", {}).values():
        for name, cell in module.get("cells", {}).items():
            m = _BEL.match(str(cell.get("attributes", {}).get("NEXTPNR_BEL", "")))
            if m:
                xs, ys = groups.setdefault(instance_of(name), ([], []))
                xs.append(int(m.group(1)))
                ys.append(int(m.group(2)))
    Path(out).write_text(json.dumps({"instances": {k: [xs, ys] for k, (xs, ys)
                                                   in sorted(groups.items())}}))
    return sum(len(xs) for xs, _ in groups.values())


def load(folder: str | Path) -> dict[str, np.ndarray]:
    """The placement of a place-and-route folder: instance -> ``(cells, 2)`` tile
    coordinates (x, y). Raises FileNotFoundError when the run kept none."""
    data = json.loads((Path(folder) / PLACEMENT).read_text())
    return {k: np.array(v, dtype=np.int32).T.reshape(-1, 2)
            for k, v in data["instances"].items()}


def spread(cells: np.ndarray) -> dict:
    """How scattered one instance's cells are: ``cells`` (count), and for ``x`` and ``y``
    the tile range ``[min, max]`` and the interquartile range ``[q1, q3]`` (tiles)."""
    cells = np.asarray(cells)
    out: dict = {"cells": int(len(cells))}
    for axis, name in enumerate(("x", "y")):
        v = cells[:, axis]
        q1, q3 = np.percentile(v, [25, 75], method="nearest")
        out[name] = {"range": [int(v.min()), int(v.max())], "iqr": [int(q1), int(q3)]}
    return out
