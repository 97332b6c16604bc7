"""Cut real layers of a simulated network into GEMM tiles and write them for RTL replay."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import InputError, MismatchError
from ..outputs import write_text
from ..quant import program as P

__all__ = ["dump_tiles", "parse_tile_shape", "default_tile_layers"]


def parse_tile_shape(text: str) -> tuple[int, int]:
    """``"KxN"`` -> ``(K, N)``; InputError naming the text otherwise."""
    try:
        tk, tn = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise InputError(f"--tile-shape {text!r}: expected KxN, e.g. 8x8") from None
    return tk, tn


def default_tile_layers(program, count: int = 2) -> list[str]:
    """The first ``count`` ungrouped conv layers (that fit the program's array, if any)."""
    misfits = program.target.misfits if program.target is not None else {}
    return [q.name for q in program.gemm_layers()
            if isinstance(q, P.Conv) and q.groups == 1 and q.name not in misfits][:count]


def dump_tiles(program, sim, x, out_dir, tile_shape: str, layers, rows: int,
               max_tiles: int) -> list[dict]:
    """Write tiles of ``layers`` (default: :func:`default_tile_layers`) to ``out_dir``.

    Each tile is cut from the simulator's own inputs to its layer (first input of ``x``),
    ``rows`` output positions, ``tile_shape`` K x N, at most ``max_tiles`` per layer; its
    expected result comes from the fast tile runner, spot-checked against the golden tile.
    For a program compiled for an array, a layer the array cannot compute is refused with the
    reason. Returns the index written to ``out_dir/index.json``.
    """
    from ..golden import reference_tile
    from ..intsim import extract_tiles, run_tile
    from ..tile import save_tile
    tk, tn = parse_tile_shape(tile_shape)
    if layers is None:
        layers = default_tile_layers(program)
    misfits = program.target.misfits if program.target is not None else {}
    for name in layers:
        if name in misfits:
            raise InputError(f"--tile-layers: layer {name!r} cannot run on array "
                             f"{program.target.name}: {misfits[name]}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _remove_previous_dump(out)
    index = []
    for name in layers:
        tiles = extract_tiles(program, name, x[:1], tk, tn, rows, sim)[:max_tiles]
        for i, (tile, info) in enumerate(tiles):
            res = run_tile(tile)
            if i == 0:                                   # spot-check against the golden tile
                ref = reference_tile(tile)
                if not np.array_equal(ref.out, res.out) or not np.array_equal(ref.acc, res.acc):
                    raise MismatchError(f"tile {name}#{i}: fast and golden tiles differ")
            fname = f"{name.replace('/', '_')}_{i:04d}.npz"
            save_tile(out / fname, tile, res)
            index.append({"file": fname, **info, "k": tile.k, "n": tile.n, "m": tile.m})
    write_text(out / "index.json", json.dumps(index, indent=1))
    return index


def _remove_previous_dump(out: Path) -> None:
    """Delete the tiles an earlier dump listed in ``out/index.json`` (and that index), so
    that no stale tile sits beside the new index; other files in ``out`` are left alone."""
    index = out / "index.json"
    try:
        old = json.loads(index.read_text())
    except (OSError, ValueError):
        return
    for entry in old if isinstance(old, list) else []:
        name = entry.get("file") if isinstance(entry, dict) else None
        if isinstance(name, str) and Path(name).name == name and name.endswith(".npz"):
            (out / name).unlink(missing_ok=True)
    index.unlink(missing_ok=True)
