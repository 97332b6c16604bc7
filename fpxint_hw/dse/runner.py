"""Run a sweep: the grid's pending points in parallel, each record appended as it finishes.

``run_sweep(config, out_dir)`` reads ``out_dir/results.jsonl`` (:class:`ResultsFile`), skips
every point already recorded there (finished or failed, unless ``retry_errors``), evaluates
the others (:func:`~fpxint_hw.dse.point.evaluate_point`) on ``workers`` local processes
(``concurrent.futures``, spawned interpreters) or on a Dask cluster (``executor="dask"``:
a scheduler address, or a local cluster started for the run), and appends each record the
moment its point is done. Only this process writes the file, so records never interleave.
A progress line per finished point goes to stderr. A recorded point that the sweep file now
names a baseline (a grid point of an older run, say W4x1/A4x1) is not computed again: a copy
of its record marked ``point.baseline`` is appended, which :meth:`ResultsFile.load` takes
as the point's record.

Output folder: ``results.jsonl``, ``sweep.json`` (the configuration used; a folder resumes
only a sweep with the same base, accuracy, synthesis and throughput settings) and ``cache/``
(accuracy results shared by points that differ only in the hardware).
"""

from __future__ import annotations

import json
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path
from typing import Callable, TextIO

from ..errors import FormatError, missing_tool
from ..outputs import write_text
from .baselines import area_is_modelled
from .config import SweepConfig
from .point import SweepPoint, evaluate_point, grid_points
from .results import ResultsFile

__all__ = ["EXECUTORS", "SweepSummary", "run_sweep", "dask_missing", "require_dask",
           "format_progress"]

#: Ways to run points.
EXECUTORS = ("local", "dask")


#: The command that installs the Dask executor.
DASK_INSTALL = "pip install 'fpxint-hw[dask]'"


def dask_missing() -> str | None:
    """None when ``dask.distributed`` can be imported, else the reason and what to install."""
    try:
        import dask.distributed  # noqa: F401
    except ImportError as exc:
        return f"dask.distributed is not installed ({exc}); install it: {DASK_INSTALL}"
    return None


class SweepSummary(dict):
    """What :func:`run_sweep` did: ``total``, ``skipped`` (already recorded), ``ran``,
    ``errors`` (failed points among those run), ``marked`` (recorded points marked as
    baselines), ``seconds`` and ``results`` (the path)."""


#: The configuration fields that decide a point's result (the grid decides only which points
#: there are): a folder's points are reused only under the same ones.
RESULT_FIELDS = ("base", "accuracy", "synthesis", "throughput")


def _claim_folder(out: Path, config: SweepConfig) -> None:
    """Record ``config`` in ``out/sweep.json`` (every grid run into the folder, by name);
    refuse a folder whose points were computed under other :data:`RESULT_FIELDS`."""
    new = config.to_dict()
    path = out / "sweep.json"
    try:
        old = json.loads(path.read_text()) if path.exists() else None
    except (OSError, ValueError):
        old = None
    grids = {}
    if isinstance(old, dict):
        for f in RESULT_FIELDS:
            if f in old and old[f] != new[f]:
                raise FormatError(
                    f"{out}: its results were computed with {f} = {_short(old[f])}; "
                    f"{config.source} sets {f} = {_short(new[f])}. Resuming would mix the "
                    f"two; give the sweep a new --out folder")
        grids = old.get("grids") or ({old["name"]: old["grid"]} if "grid" in old else {})
    new["grids"] = {**grids, config.name: new["grid"]}
    write_text(path, json.dumps(new, indent=1) + "\n")


def _short(value, limit: int = 80) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[:limit] + "..."


def _fmt_s(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    m, s = divmod(seconds, 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


def format_progress(done: int, total: int, rec: dict, elapsed: float, remaining: int,
                    workers: int) -> str:
    """One progress line: counter, point, headline figures, time and an estimate of the rest."""
    parts = [f"[{done:>{len(str(total))}}/{total}] {rec['key']:<24}"]
    acc = rec.get("accuracy") or {}
    if acc.get("accuracy") is not None:
        parts.append(f"acc {100 * acc['accuracy']:5.1f}%")
    elif acc.get("top1_agreement") is not None:
        parts.append(f"agree {100 * acc['top1_agreement']:5.1f}%")
    syn = rec.get("synth") or {}
    if "logic" in syn:
        modelled = "~" if area_is_modelled(rec) else " "
        parts.append(f"logic {modelled}{syn['logic']:>6}")
    if syn.get("fmax_mhz") is not None:
        parts.append(f"fmax {syn['fmax_mhz']:6.1f} MHz")
    thr = rec.get("throughput") or {}
    if thr.get("images_per_s") is not None:
        parts.append(f"{thr['images_per_s']:7.2f} img/s")
    parts.append(f"({_fmt_s(rec.get('seconds', 0))})")
    if rec.get("status") != "ok":
        parts.append("ERROR " + "; ".join(f"{k}: {v.splitlines()[0][:80]}"
                                          for k, v in rec.get("errors", {}).items()
                                          if not k.endswith("_trace")))
    if remaining and done:
        per = elapsed / done
        parts.append(f"eta {_fmt_s(per * remaining)}")
    return "  ".join(parts)


def _eval_local(point: dict, config: SweepConfig, cache_dir: str, build_dir) -> dict:
    return evaluate_point(point, config, cache_dir=cache_dir, build_dir=build_dir)


def _run_local(todo, config, cache_dir, build_dir, workers, on_done):
    if workers == 1:
        for p in todo:
            on_done(_eval_local(p.to_dict(), config, cache_dir, build_dir))
        return
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        pending = {pool.submit(_eval_local, p.to_dict(), config, cache_dir, build_dir): p
                   for p in todo}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                p = pending.pop(fut)
                try:
                    rec = fut.result()
                except Exception as exc:                # a worker died: record, go on
                    rec = {"key": p.key, "point": p.to_dict(), "status": "error",
                           "errors": {"worker": f"{type(exc).__name__}: {exc}"}, "seconds": 0}
                on_done(rec)


def require_dask() -> None:
    """Raise :class:`~fpxint_hw.errors.ToolMissingError` for ``--executor dask`` when
    ``dask.distributed`` cannot be imported, saying what to install."""
    if dask_missing():
        raise missing_tool("dask", DASK_INSTALL, what="--executor dask",
                           reason="dask.distributed is not installed")


def _run_dask(todo, config, cache_dir, build_dir, workers, on_done, scheduler):
    require_dask()
    from dask.distributed import Client, LocalCluster, as_completed
    cluster = None
    if scheduler:
        client = Client(scheduler)
    else:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
    try:
        futs = {client.submit(_eval_local, p.to_dict(), config, cache_dir, build_dir,
                              key=f"fpxint-{p.key}-{time.time_ns()}", pure=False): p
                for p in todo}
        for fut in as_completed(list(futs)):
            p = futs[fut]
            try:
                rec = fut.result()
            except Exception as exc:
                rec = {"key": p.key, "point": p.to_dict(), "status": "error",
                       "errors": {"worker": f"{type(exc).__name__}: {exc}"}, "seconds": 0}
            on_done(rec)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def run_sweep(config: SweepConfig, out_dir, *, workers: int | None = None,
              executor: str = "local", scheduler: str | None = None, build_dir=None,
              retry_errors: bool = False, limit: int | None = None,
              stream: TextIO | None | str = "stderr",
              on_record: Callable[[dict], None] | None = None) -> SweepSummary:
    """Evaluate the pending points of ``config`` into ``out_dir`` (see the module docstring).

    Parameters
    ----------
    workers : int, optional
        Parallel points (default ``config.workers``).
    executor : {"local", "dask"}
    scheduler : str, optional
        Dask scheduler address (default: a local cluster of ``workers`` processes).
    build_dir : path, optional
        Synthesis cache folder.
    retry_errors : bool
        Run again the points recorded with ``status: error`` (the new record is appended and
        replaces the old one in :meth:`ResultsFile.load`).
    limit : int, optional
        Run at most this many pending points (the rest stay pending).
    stream : text file, "stderr" or None
        Where progress lines go (``"stderr"``: the current ``sys.stderr``; None: silent).
    on_record : callable, optional
        Called with every new record after it is on disk.
    """
    if executor not in EXECUTORS:
        raise FormatError(f"--executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    workers = config.workers if workers is None else workers
    if workers < 1:
        raise FormatError(f"--workers must be >= 1, got {workers}")
    if limit is not None and limit < 0:
        raise FormatError(f"--limit must be >= 0, got {limit}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _claim_folder(out, config)
    results = ResultsFile(out / "results.jsonl")
    have = results.load()
    points = grid_points(config)
    todo: list[SweepPoint] = [p for p in points if p.key not in have
                              or (retry_errors and have[p.key].get("status") != "ok")]
    skipped = len(points) - len(todo)
    pending = {p.key for p in todo}
    marked = [p for p in points if p.baseline and p.key in have and p.key not in pending
              and not (have[p.key].get("point") or {}).get("baseline")]
    if limit is not None:
        todo = todo[:limit]
    t0 = time.perf_counter()
    state = {"done": 0, "errors": 0}

    if stream == "stderr":
        stream = sys.stderr

    def say(text: str) -> None:
        if stream is not None:
            print(text, file=stream, flush=True)

    def on_done(rec: dict) -> None:
        results.append(rec)
        state["done"] += 1
        state["errors"] += rec.get("status") != "ok"
        say(format_progress(skipped + state["done"], len(points), rec,
                            time.perf_counter() - t0, len(todo) - state["done"], workers))
        if on_record is not None:
            on_record(rec)

    where = (f"Dask ({scheduler or f'local cluster, {workers} workers'})"
             if executor == "dask" else f"{workers} local process{'es' * (workers > 1)}")
    say(f"sweep {config.name}: {len(points)} points, {skipped} already in {results.path}, "
        f"{len(todo)} to run on {where}")
    for p in marked:                          # the same machine: relabel, do not recompute
        rec = have[p.key]
        results.append({**rec, "point": {**(rec.get("point") or {}), "baseline": True}})
        say(f"{p.key}: recorded point marked as a baseline")
    cache_dir = str(out / "cache")
    if todo:
        if executor == "dask":
            _run_dask(todo, config, cache_dir, build_dir, workers, on_done, scheduler)
        else:
            _run_local(todo, config, cache_dir, build_dir, workers, on_done)
    secs = time.perf_counter() - t0
    say(f"sweep {config.name}: ran {state['done']} points in {_fmt_s(secs)}"
        f" ({state['errors']} with errors); results in {results.path}")
    return SweepSummary(total=len(points), skipped=skipped, ran=state["done"],
                        errors=state["errors"], marked=len(marked), seconds=secs,
                        results=str(results.path))

