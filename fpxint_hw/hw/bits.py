"""Pack and unpack stream beats as little-endian bytes, field by field, with numpy.

A beat is the flat bit vector of a ``lib.data`` layout (bit 0 = the LSB of the first field).
The drivers build thousands of beats at once, so packing works on whole columns of values:
``pack(layout, {path: values})`` and ``unpack(layout, raw)`` where a path is the tuple of
keys that leads to a leaf field, for example ``("acts", 3, 1)``.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Shape
from amaranth.lib import data

__all__ = ["leaves", "nbytes", "pack", "unpack", "to_int", "from_int"]


def leaves(layout: data.Layout) -> list[tuple[tuple, int, int, bool]]:
    """Leaf fields of ``layout`` as ``(path, offset, width, signed)``, in bit order."""
    out = []

    def walk(lay, path, base):
        for key, field in lay:
            if isinstance(field.shape, data.Layout):
                walk(field.shape, path + (key,), base + field.offset)
            else:
                shape = Shape.cast(field.shape)
                out.append((path + (key,), base + field.offset, shape.width, shape.signed))

    walk(layout, (), 0)
    return sorted(out, key=lambda t: t[1])


def nbytes(layout: data.Layout) -> int:
    """Bytes per beat of ``layout`` (its width rounded up to whole bytes, at least 1)."""
    return max(1, (Shape.cast(layout).width + 7) // 8)


def pack(layout: data.Layout, values: dict, count: int | None = None) -> np.ndarray:
    """Beats as a ``(count, nbytes)`` uint8 array; leaves missing from ``values`` are 0.

    ``values[path]`` is an integer array of shape ``(count,)`` (or a scalar, broadcast);
    each value must fit its field (two's complement for signed fields).
    """
    lv = leaves(layout)
    if count is None:
        count = max((np.size(v) for v in values.values()), default=1)
    bits = np.zeros((count, nbytes(layout) * 8), dtype=np.uint8)
    known = {p for p, *_ in lv}
    for path in values:
        if path not in known:
            raise KeyError(f"pack: {path!r} is not a leaf field of the layout")
    for path, off, w, sgn in lv:
        if path not in values:
            continue
        v = np.broadcast_to(np.asarray(values[path], dtype=np.int64), (count,))
        lo, hi = (-(1 << (w - 1)), (1 << (w - 1)) - 1) if sgn else (0, (1 << w) - 1)
        if v.size and (v.min() < lo or v.max() > hi):
            raise ValueError(f"pack: field {path!r} values [{v.min()}, {v.max()}] do not fit "
                             f"{'signed' if sgn else 'unsigned'}({w})")
        u = v.astype(np.uint64) & np.uint64((1 << w) - 1)
        bits[:, off:off + w] = ((u[:, None] >> np.arange(w, dtype=np.uint64)) & 1)
    return np.packbits(bits, axis=1, bitorder="little")


def unpack(layout: data.Layout, raw: np.ndarray) -> dict:
    """Inverse of :func:`pack`: ``{path: int64 array (count,)}`` from ``(count, nbytes)`` bytes."""
    raw = np.asarray(raw, dtype=np.uint8).reshape(-1, nbytes(layout))
    bits = np.unpackbits(raw, axis=1, bitorder="little").astype(np.int64)
    out = {}
    for path, off, w, sgn in leaves(layout):
        if w > 63:
            raise ValueError(f"unpack: field {path!r} is {w} bits wide, at most 63 supported")
        v = (bits[:, off:off + w] << np.arange(w, dtype=np.int64)).sum(axis=1)
        if sgn:
            v = np.where(v >= 1 << (w - 1), v - (1 << w), v)
        out[path] = v
    return out


def to_int(beats: np.ndarray) -> list[int]:
    """Beats ``(count, nbytes)`` as Python ints (for ``ctx.set`` in a testbench)."""
    return [int.from_bytes(bytes(row), "little") for row in np.asarray(beats, dtype=np.uint8)]


def from_int(layout: data.Layout, values: list[int]) -> np.ndarray:
    """Python ints (one beat each) as ``(count, nbytes)`` bytes of ``layout``."""
    n = nbytes(layout)
    buf = b"".join(int(v).to_bytes(n, "little") for v in values)
    return np.frombuffer(buf, dtype=np.uint8).reshape(-1, n).copy()
