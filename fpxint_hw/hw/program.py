"""What a host sends the accelerator for one GEMM tile, and how it reads the answer back.

A tile with ``K <= rows`` and ``N <= cols`` is one *pass*: ``rows`` weight beats, one config
beat and M activation beats, answered by M result beats. Larger tiles are cut here:

- N is cut into blocks of ``cols`` columns, each an independent sequence of passes;
- K is cut into chunks of ``rows``; pass c > 0 of a block is *chained*: the ``psum`` field
  of its activation beat m is the ``acc`` of result beat m of pass c - 1 (the hardware adds
  it at the top of the columns). The bias goes into the first pass only, so the last pass's
  ``acc`` is the tile's exact accumulator and its ``out``/``digits`` are the tile's outputs.

Unused rows and columns of a pass get zero weights and activations. The drivers
(:mod:`fpxint_hw.hw.driver`, :mod:`fpxint_hw.flow.verilator`) copy the chained partial sums
from the hardware's own results; :func:`chain_map` gives them the bit positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError, WidthError
from ..quant.bridge import accumulator_misfit, constants_misfit
from ..spec import ArraySpec
from ..tile import GemmTile, TileResult
from . import bits, layouts

__all__ = ["Job", "check_tile", "pass_count", "plan", "chain_map", "chain_psum", "assemble",
           "mismatches"]


@dataclass(frozen=True, eq=False)
class Job:
    """One pass of the array.

    Members
    -------
    n0, ncols : int
        Tile columns ``n0 .. n0 + ncols - 1`` map to array columns ``0 .. ncols - 1``.
    k0, krows : int
        Tile rows (reduction index) ``k0 .. k0 + krows - 1`` map to array rows ``0 ..``.
    weights : uint8 array ``(rows, nbytes)``
        ``w_in`` beats in send order (array row ``rows - 1`` first).
    config : uint8 array ``(1, nbytes)``
        The ``cfg_in`` beat.
    acts : uint8 array ``(M, nbytes)``
        ``a_in`` beats; their ``psum`` fields are 0 and, when ``chain``, are filled from the
        previous pass's results by the driver (on a copy: the passes of one K chunk in every
        column block share this array).
    chain : bool
        Continue the partial sums of the previous job.
    last : bool
        Last pass of its column block (its results are the tile's).
    """

    n0: int
    ncols: int
    k0: int
    krows: int
    weights: np.ndarray
    config: np.ndarray
    acts: np.ndarray
    chain: bool
    last: bool


def check_tile(spec: ArraySpec, tile: GemmTile, name: str = "tile") -> None:
    """Raise InputError (or WidthError) unless the array can compute ``tile`` exactly.

    The condition is :func:`fpxint_hw.quant.bridge.gemm_fit`, the one the compiler checks
    every layer with: formats, rounding and constant ranges (InputError), and the tile's
    exact accumulator interval (its own weights, any activations of its format) inside the
    array's (WidthError). Messages name the tile, the field and the value.
    """
    rq = tile.requant
    why = constants_misfit(spec, tile.w_fmt, tile.a_fmt, tile.out_fmt, tile.bias, rq.multiplier,
                           rq.mode, rq.lo, rq.hi, rq.zero_point, rq.pre_shift)
    if why is not None:
        raise InputError(f"{name}: {why}")
    why = accumulator_misfit(spec, tile.a_fmt, tile.w_combined().T, tile.bias)
    if why is not None:
        raise WidthError(f"{name}: {why}")


def pass_count(spec: ArraySpec, tile: GemmTile) -> int:
    """Number of passes :func:`plan` makes: column blocks times K chunks (at least one)."""
    return -(-tile.n // spec.cols) * max(1, -(-tile.k // spec.rows))


def plan(spec: ArraySpec, tile: GemmTile, name: str = "tile") -> list[Job]:
    """The passes that compute ``tile`` (after :func:`check_tile`), in execution order."""
    check_tile(spec, tile, name)
    wl, al, cl = layouts.weight_row(spec), layouts.act_vector(spec), layouts.config(spec)
    rows, m = spec.rows, tile.m
    w = np.asarray(tile.weights, dtype=np.int64)
    a = np.asarray(tile.acts, dtype=np.int64)
    mask = tile.mask
    lane_mask = sum(1 << (k * spec.a_terms + j)
                    for k in range(spec.w_terms) for j in range(spec.a_terms) if mask[k, j])
    rq = tile.requant
    chunks = max(1, -(-tile.k // rows))
    kpad = chunks * rows
    # Zero-padded reduction axis: chunk c covers tile rows c*rows .. c*rows + rows - 1.
    wpad = np.zeros((spec.w_terms, kpad, tile.n), np.int64)
    wpad[:, :tile.k] = w
    apad = np.zeros((spec.a_terms, m, kpad), np.int64)
    apad[:, :, :tile.k] = a
    # Beat b of chunk c carries array row rows-1-b, i.e. tile row c*rows + rows-1-b.
    wrow = (np.arange(chunks)[:, None] * rows + (rows - 1 - np.arange(rows))[None, :]).ravel()
    # All chunks' activation beats at once: beat (c, m) holds tile rows c*rows + i.
    avals = {("acts", i, t): apad[t, :, i::rows].T.ravel()
             for i in range(rows) for t in range(spec.a_terms)}
    # one array per K chunk, shared by its passes in every column block (sent once)
    acts = list(bits.pack(al, avals, chunks * m).reshape(chunks, m, -1))
    jobs = []
    for n0 in range(0, tile.n, spec.cols):
        nc = min(spec.cols, tile.n - n0)
        wvals = {(j, t): wpad[t, wrow, n0 + j] for j in range(nc) for t in range(spec.w_terms)}
        weights = bits.pack(wl, wvals, chunks * rows).reshape(chunks, rows, -1)
        cvals = {("shift",): rq.shift, ("zero_point",): rq.zero_point, ("lo",): rq.lo,
                 ("hi",): rq.hi, ("lane_mask",): lane_mask}
        for j in range(nc):
            cvals[("bias", j)] = np.array([tile.bias[n0 + j], 0])   # the bias: first pass only
            cvals[("m0", j)] = rq.multiplier[n0 + j]
        configs = bits.pack(cl, cvals, 2)
        for c in range(chunks):
            k0 = c * rows
            jobs.append(Job(n0, nc, k0, max(0, min(rows, tile.k - k0)), weights[c],
                            configs[min(c, 1):min(c, 1) + 1], acts[c],
                            chain=c > 0, last=c == chunks - 1))
    return jobs


def chain_map(spec: ArraySpec) -> list[tuple[int, int, int]]:
    """Bit copies ``(result offset, act_vector offset, width)``: ``acc[n]`` -> ``psum[n]``."""
    src = {p: o for p, o, _, _ in bits.leaves(layouts.result(spec))}
    dst = {p: (o, w) for p, o, w, _ in bits.leaves(layouts.act_vector(spec))}
    return [(src[("acc", n)], dst[("psum", n)][0], dst[("psum", n)][1])
            for n in range(spec.cols)]


def chain_psum(spec: ArraySpec, acts: np.ndarray, results: np.ndarray) -> np.ndarray:
    """``acts`` beats with ``psum[n]`` set to ``acc[n]`` of the matching ``results`` beats."""
    al = layouts.act_vector(spec)
    vals = bits.unpack(al, acts)
    acc = bits.unpack(layouts.result(spec), results)
    for n in range(spec.cols):
        vals[("psum", n)] = acc[("acc", n)]
    return bits.pack(al, vals, acts.shape[0])


def assemble(spec: ArraySpec, tile: GemmTile, jobs: list[Job],
             results: list[np.ndarray]) -> TileResult:
    """The tile's result from the result beats of its last passes (one array per job)."""
    acc = np.zeros((tile.m, tile.n), np.int64)
    out = np.zeros((tile.m, tile.n), np.int64)
    digits = np.zeros((spec.out_terms, tile.m, tile.n), np.int64)
    rl = layouts.result(spec)
    for job, beats in zip(jobs, results):
        if not job.last:
            continue
        if len(beats) != tile.m:
            raise InputError(f"assemble: pass at column {job.n0} returned {len(beats)} "
                             f"results, expected {tile.m}")
        vals = bits.unpack(rl, beats)
        for j in range(job.ncols):
            acc[:, job.n0 + j] = vals[("acc", j)]
            out[:, job.n0 + j] = vals[("out", j)]
            for t in range(spec.out_terms):
                digits[t, :, job.n0 + j] = vals[("digits", j, t)]
    return TileResult(acc, out, digits if tile.out_fmt is not None else None)


def mismatches(spec: ArraySpec, expected: TileResult, got: TileResult, name: str = "tile",
               limit: int = 10) -> list[str]:
    """Differences between two results, one line each (at most ``limit`` plus a count).

    Each line names the tile, the element (``acc``, ``out`` or ``digit t``), the row m, the
    column n and where column n sits in the array (column ``n % cols`` of block ``n // cols``).
    """
    lines, total = [], 0
    pairs = [("acc", expected.acc, got.acc), ("out", expected.out, got.out)]
    if expected.out_digits is not None and got.out_digits is not None:
        for t in range(expected.out_digits.shape[0]):
            pairs.append((f"digit {t + 1}", expected.out_digits[t], got.out_digits[t]))
    for what, e, g in pairs:
        e, g = np.asarray(e), np.asarray(g)
        if e.shape != g.shape:
            lines.append(f"{name}: {what} has shape {g.shape}, expected {e.shape}")
            total += 1
            continue
        for m, n in np.argwhere(e != g):
            total += 1
            if len(lines) < limit:
                lines.append(f"{name}: {what} at row m={m}, column n={n} (array column "
                             f"{n % spec.cols}, block {n // spec.cols}): got {int(g[m, n])}, "
                             f"expected {int(e[m, n])}")
    if total > len(lines):
        lines.append(f"{name}: ... {total - len(lines)} more mismatches")
    return lines
