"""Score a network's integer series expansion on a user's image dataset, at scale.

:func:`evaluate_dataset` runs the images of a :class:`~fpxint_hw.io.dataset.Listing` in
batches (never more than one batch of images in memory per worker): each batch is decoded and
preprocessed as ``fpxint simulate --input`` does, run through the float model and through
the integer program for every term count k, and reduced to a few numbers per image (the
top-5 classes of the float model and of each k, the logit signal and error energy, a digest
of each integer output). Accuracy (top-1, and top-5 for models of 100 classes or more),
top-1 agreement with float and the logit SQNR are summed from those.

**Resuming.** With a state folder, each finished batch is one small file written atomically
(``batch-000017.npz``), and ``state.json`` records what decides the numbers
(:meth:`DatasetConfig.record`: network and weights by content digest, every program option,
the batch size, the package version). A later run with the same folder loads the finished
batches instead of computing them; one with other settings is refused (nothing is mixed),
and so is a batch whose images (paths, labels, file sizes) are not the ones this run would
give it. The simulator's backend and threads are not part of the record: every backend is
exact, so they change no number.

**Dask.** ``executor="dask"`` sends the batches to a Dask cluster (``scheduler`` address, or
a local cluster started for the run); workers rebuild the network and the program from the
config (they must see the dataset and weight files at the same paths), and only this
process writes the state folder. The numbers are the same as a local run's.

Images are taken in the listing's stratified order (the classes in turn), so the first
``images`` of a dataset are a stratified subset and a later run over all of it reuses their
batches.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from functools import cached_property
from itertools import islice
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import InputError
from ..spec import ArraySpec, SeriesFormat

__all__ = ["EXECUTORS", "STATE_FILE", "DatasetConfig", "DatasetResult", "Evaluator",
           "evaluate_batch", "evaluate_dataset", "default_state_dir", "num_classes"]

#: Where the batches run.
EXECUTORS = ("local", "dask")

#: The file of a state folder that records what its batches were computed with.
STATE_FILE = "state.json"

#: Version of the state folder's layout (a folder of another version is refused).
STATE_FORMAT = 1

#: Top-k classes kept per image (fewer for models of fewer classes).
TOP_K = 5

#: Models of at least this many classes also get a top-5 accuracy.
TOP5_CLASSES = 100

#: Environment variables that set the BLAS thread count, which decides the last bits of the
#: float reference (summation order); integer outputs do not depend on it.
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                         "GOTO_NUM_THREADS")


@dataclass(frozen=True)
class DatasetConfig:
    """Everything that decides a dataset run's numbers.

    Members
    -------
    model : str
        Zoo name or ``.onnx`` file.
    weights : str or None
        Weights file of a zoo model (None: its default weights).
    level, spec, spec_name, w_fmt, a_fmt, per_channel, rounding, multiplier_bits, \
range_rule, range_sigmas
        The integer program, as :func:`fpxint_hw.workflows.simulate.compile_terms` takes it.
    overrides : tuple of (str, LayerFormats)
        Per-layer formats.
    per_term : bool
        Score every k = 1..T (else only the full term counts).
    batch : int, >= 1
        Images per batch (the unit of work and of resuming).
    """

    model: str
    weights: str | None = None
    level: str = "layer"
    spec: ArraySpec | None = None
    spec_name: str | None = None
    w_fmt: SeriesFormat | None = None
    a_fmt: SeriesFormat | None = None
    per_channel: bool = True
    rounding: str = "rne"
    multiplier_bits: int = 31
    overrides: tuple = ()
    range_rule: str = "mse"
    range_sigmas: float = 4.0
    per_term: bool = True
    batch: int = 8

    def __post_init__(self):
        if (self.spec is None) == (self.w_fmt is None or self.a_fmt is None):
            raise ValueError("DatasetConfig: give spec, or both w_fmt and a_fmt")
        if isinstance(self.batch, bool) or int(self.batch) != self.batch or self.batch < 1:
            raise InputError(f"--batch must be at least 1, got {self.batch!r}")

    def term_counts(self) -> list[int]:
        """The k the run scores: 1..T, or only T without ``per_term``."""
        kmax = (max(self.spec.w_terms, self.spec.a_terms) if self.spec is not None
                else max(self.w_fmt.terms, self.a_fmt.terms))
        return list(range(1, kmax + 1)) if self.per_term else [kmax]

    def compile_options(self) -> dict:
        """The keyword arguments of ``compile_terms`` (besides the graph and k)."""
        return dict(spec=self.spec, spec_name=self.spec_name, w_fmt=self.w_fmt,
                    a_fmt=self.a_fmt, level=self.level, per_channel=self.per_channel,
                    rounding=self.rounding, multiplier_bits=self.multiplier_bits,
                    overrides=dict(self.overrides) or None, range_rule=self.range_rule,
                    range_sigmas=self.range_sigmas)

    @cached_property
    def _record(self) -> dict:
        from .. import __version__
        if self.spec is not None:
            program = {"spec": self.spec.to_dict(), "per_channel": self.per_channel}
        else:
            program = {"w_fmt": self.w_fmt.to_dict(), "a_fmt": self.a_fmt.to_dict(),
                       "rounding": self.rounding, "multiplier_bits": self.multiplier_bits}
        ranges = {"rule": self.range_rule,
                  "sigmas": self.range_sigmas if self.range_rule == "sigma" else None}
        return {"fpxint_hw": __version__, "network": _network_identity(self.model, self.weights),
                "level": self.level, "program": program,
                "overrides": {n: dataclasses.asdict(f) for n, f in sorted(self.overrides)},
                "ranges": ranges, "terms": self.term_counts(), "batch": int(self.batch)}

    def record(self) -> dict:
        """The JSON-ready record of what decides the numbers (network and weights by
        content digest, so a moved file still matches and a changed one does not)."""
        return json.loads(json.dumps(self._record))

    def key(self) -> str:
        """A digest (hex) of :meth:`record`."""
        return hashlib.sha256(json.dumps(self._record, sort_keys=True).encode()).hexdigest()


def _file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _network_identity(model: str, weights: str | None) -> dict:
    """The model and its weights by name and content digest."""
    if model.lower().endswith(".onnx"):
        return {"onnx": os.path.basename(model), "sha256": _file_sha256(model)}
    from ..models import default_weights
    path = weights if weights is not None else default_weights(model)
    if path is None:
        return {"model": model, "weights": "synthetic, seed 0"}
    return {"model": model, "weights": os.path.basename(os.fspath(path)),
            "sha256": _file_sha256(path)}


def num_classes(graph) -> int:
    """The number of classes a classifier ``graph`` scores: its output size, for an output
    of shape ``(F,)`` or ``(F, 1, 1)``. InputError for any other output."""
    shape = tuple(graph.output_shape)
    if not shape or any(s != 1 for s in shape[1:]):
        raise InputError(f"--dataset scores classifiers, but the output of {graph.name!r} has "
                         f"shape {shape}, not (classes,)")
    return int(shape[0])


# -- one batch -----------------------------------------------------------------------------

class Evaluator:
    """The float model and the integer program for every term count of a config, ready to
    score batches. ``network``: an already loaded ``(graph, ModelInfo or None)``."""

    def __init__(self, config: DatasetConfig, *, backend: str = "auto",
                 threads: int | None = None, network=None):
        from ..float_exec import FloatExecutor
        from ..intsim import Simulator
        from .network import input_range, load_network
        from .simulate import compile_terms
        graph, info = network if network is not None else load_network(config.model,
                                                                       config.weights)
        self.classes = num_classes(graph)
        self.float = FloatExecutor(graph)
        self._graph, self._info = graph, info
        self._runs = []
        for k in config.term_counts():
            exp, _, _ = compile_terms(graph, k, in_range=input_range(info), calibration=None,
                                      **config.compile_options())
            if config.level == "tensor":
                self._runs.append((exp.executor(), None))
            else:
                self._runs.append((Simulator(exp, backend=backend, threads=threads), exp))

    def load(self, file: str) -> np.ndarray:
        """One image file preprocessed exactly as ``fpxint simulate --input`` does."""
        from .network import load_inputs
        return load_inputs(self._graph, self._info, None, [file])[0][0]

    def __call__(self, x: np.ndarray | None) -> dict[str, np.ndarray]:
        """Per-image figures of the float batch ``x`` (None: an empty batch): ``ref_top``
        (N, t) and ``top`` (K, N, t) classes by falling score (t = min(5, classes)),
        ``signal`` (N,) sum of squared float logits, ``noise`` (K, N) sum of squared logit
        errors, ``output_digest`` (K, N) uint64 of each raw program output."""
        t, kk = min(TOP_K, self.classes), len(self._runs)
        if x is None:
            return {"ref_top": np.zeros((0, t), np.int32), "top": np.zeros((kk, 0, t), np.int32),
                    "signal": np.zeros(0), "noise": np.zeros((kk, 0)),
                    "output_digest": np.zeros((kk, 0), np.uint64)}
        n = x.shape[0]
        ref = np.asarray(self.float(x), dtype=np.float64).reshape(n, -1)
        tops, noise, digests = [], [], []
        for run, exp in self._runs:
            raw = np.asarray(run(x))
            got = (exp.dequantize_output(raw) if exp is not None
                   else raw.astype(np.float64)).reshape(n, -1)
            tops.append(_top(got, t))
            noise.append(np.sum((ref - got) ** 2, axis=1))
            raw = raw.astype(np.int64 if exp is not None else np.float64).reshape(n, -1)
            digests.append([int.from_bytes(hashlib.blake2b(np.ascontiguousarray(r).tobytes(),
                                                           digest_size=8).digest(), "little")
                            for r in raw])
        return {"ref_top": _top(ref, t), "top": np.stack(tops), "signal": np.sum(ref * ref, 1),
                "noise": np.stack(noise), "output_digest": np.asarray(digests, np.uint64)}


def _top(scores: np.ndarray, t: int) -> np.ndarray:
    """The ``t`` best classes per row, best first; ties to the lower index (as argmax)."""
    return np.argsort(-scores, axis=1, kind="stable")[:, :t].astype(np.int32)


#: The evaluator of the last config this process ran (a worker keeps its compiled program).
_CACHE: dict = {}


def _evaluator(config: DatasetConfig, backend: str, threads, network=None) -> Evaluator:
    key = (config.key(), backend, threads)
    if key not in _CACHE:
        _CACHE.clear()                              # one program in memory at a time
        _CACHE[key] = Evaluator(config, backend=backend, threads=threads, network=network)
    return _CACHE[key]


def evaluate_batch(config: DatasetConfig, index: int, files: Sequence[str], labels,
                   *, skip_bad: bool = False, backend: str = "auto",
                   threads: int | None = None) -> dict:
    """Score one batch (the unit a worker runs): the :class:`Evaluator` figures of the
    readable ``files`` plus ``index``, their ``labels`` and positions ``kept`` in ``files``,
    ``bad_pos`` / ``bad_why`` of the unreadable ones (with ``skip_bad``; else the first
    raises) and ``seconds``."""
    from ..io.dataset import load_batch
    ev = _evaluator(config, backend, threads)
    t0 = time.perf_counter()
    x, kept, bad = load_batch(files, ev.load, skip_bad=skip_bad)
    out = ev(x)
    return {"index": np.int64(index), "classes": np.int64(ev.classes),
            "labels": np.asarray(labels, np.int64)[kept],
            "kept": np.asarray(kept, np.int64), **out,
            "bad_pos": np.asarray([p for p, _ in bad], np.int64),
            "bad_why": np.asarray([w for _, w in bad], dtype=str),
            "seconds": np.float64(time.perf_counter() - t0)}


# -- the state folder ----------------------------------------------------------------------

def default_state_dir(json_path) -> Path:
    """The state folder beside a ``--json`` file: ``r50.json`` -> ``r50.state``."""
    p = Path(json_path)
    return p.with_suffix(".state") if p.suffix else p.with_name(p.name + ".state")


class _StateFolder:
    """Finished batches on disk (module docstring); only the process that runs
    :func:`evaluate_dataset` reads and writes it."""

    def __init__(self, path, config: DatasetConfig):
        self.path = Path(path)
        self.key = config.key()
        self.record = config.record()
        self.claimed = False
        self.recomputed: list[str] = []
        state = self.path / STATE_FILE
        if self.path.exists() and not self.path.is_dir():
            raise InputError(f"--state {self.path}: exists and is not a folder")
        if not state.exists():
            # a run killed while writing its first file leaves only that file's temporary
            others = ([p.name for p in self.path.iterdir() if not _temporary(p.name)]
                      if self.path.is_dir() else [])
            if others:
                raise InputError(f"--state {self.path}: holds {len(others)} other file(s) "
                                 f"(e.g. {sorted(others)[0]}) and no {STATE_FILE}; give a new "
                                 f"or empty folder")
            return
        try:
            old = json.loads(state.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"{state}: unreadable ({exc}); give a new --state folder") from None
        if not isinstance(old, dict) or old.get("format") != STATE_FORMAT:
            raise InputError(f"{state}: not a state folder of this version (format "
                             f"{old.get('format') if isinstance(old, dict) else None!r}, "
                             f"expected {STATE_FORMAT}); give a new --state folder")
        diff = _difference(old.get("config"), self.record)
        if diff is not None:
            f, was, now = diff
            raise InputError(
                f"--state {self.path}: its batches were computed with {f} = {_short(was)}; "
                f"this run has {f} = {_short(now)}. Resuming would mix the two; give another "
                f"--state folder (or remove this one)")
        self.claimed = True

    def file(self, index: int) -> Path:
        return self.path / f"batch-{index:06d}.npz"

    def load(self, index: int, entries_key: str) -> dict | None:
        """The finished batch ``index`` (None when it is not there, or unreadable: then it is
        computed again); refused when it was computed on other images or settings."""
        from ..io.npz import load_arrays
        path = self.file(index)
        if not path.exists():
            return None
        try:
            got = load_arrays(path)
            keys = str(got["config_key"]), str(got["entries_key"])
        except (InputError, KeyError):
            self.recomputed.append(path.name)
            return None
        if keys[0] != self.key:
            raise InputError(f"{path}: computed under other settings than {STATE_FILE} "
                             f"records; give a new --state folder")
        if keys[1] != entries_key:
            raise InputError(f"{path}: computed on other images than this run's batch "
                             f"{index}: the dataset's listing (files, labels or sizes) changed, "
                             f"or --batch did; give a new --state folder")
        return got

    def save(self, index: int, result: dict) -> None:
        from ..outputs import write_npz, write_text
        if not self.claimed:
            write_text(self.path / STATE_FILE, json.dumps(
                {"format": STATE_FORMAT, "config": self.record, "config_key": self.key},
                indent=1) + "\n")
            self.claimed = True
        write_npz(self.file(index), result)


def _temporary(name: str) -> bool:
    """Whether ``name`` is a temporary of :func:`fpxint_hw.outputs.atomic_path`."""
    return name.startswith(".") and name.endswith(".part")


def _difference(was, now, where: str = ""):
    """``(field path, old, new)`` of the first field where two records differ, or None."""
    if isinstance(was, dict) and isinstance(now, dict):
        for f in sorted(set(was) | set(now)):
            name = f"{where}.{f}" if where else f
            if f not in was or f not in now:
                return name, was.get(f), now.get(f)
            diff = _difference(was[f], now[f], name)
            if diff is not None:
                return diff
        return None
    return None if was == now else (where or "the record", was, now)


def _short(value, limit: int = 100) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[:limit] + "..."


# -- the run -------------------------------------------------------------------------------

@dataclass
class DatasetResult:
    """What :func:`evaluate_dataset` measured.

    Members
    -------
    rows : list of dict
        Per term count: ``w_terms``, ``a_terms``, ``top1_agreement`` and ``accuracy``
        (fractions), ``top5_accuracy`` (models of 100+ classes, else None),
        ``logit_sqnr_db``.
    float_accuracy, float_top5_accuracy : float or None
        The float model's.
    images : int
        Images scored; ``selected`` were asked for (``bad`` lists those left out as
        unreadable, and the listing's own left-out files, as ``(path, why)``).
    batches, ran, reused : int
        Batches in the run, computed now, loaded from the state folder.
    complete : bool
        False when ``limit`` stopped the run early (figures cover the finished batches).
    seconds : float
        Wall time of the call; ``images_per_s`` is the images computed now per second of
        the compute loop (decoding, float and every k included).
    names, labels, ref_top, top, output_digest
        Per scored image, in run order: path relative to the dataset, class, float top-t,
        top-t per k (K, N, t), digest of each raw program output (K, N).
    state : str or None
        The state folder; ``recomputed`` names its unreadable batch files computed again.
    """

    rows: list[dict]
    float_accuracy: float | None
    float_top5_accuracy: float | None
    images: int
    selected: int
    batches: int
    ran: int
    reused: int
    complete: bool
    seconds: float
    images_per_s: float | None
    names: tuple[str, ...]
    labels: np.ndarray
    ref_top: np.ndarray
    top: np.ndarray
    output_digest: np.ndarray
    bad: list[tuple[str, str]] = field(default_factory=list)
    state: str | None = None
    recomputed: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """The figures as JSON-ready data (without the per-image arrays)."""
        return {"images": self.images, "selected": self.selected, "per_term": self.rows,
                "float_accuracy": self.float_accuracy,
                "float_top5_accuracy": self.float_top5_accuracy,
                "batches": self.batches, "batches_run": self.ran,
                "batches_reused": self.reused, "complete": self.complete,
                "images_per_s": self.images_per_s, "seconds": self.seconds,
                "bad": [{"file": p, "why": w} for p, w in self.bad],
                "state": self.state, "recomputed": self.recomputed}


def evaluate_dataset(config: DatasetConfig, listing, *, state=None, executor: str = "local",
                     scheduler: str | None = None, workers: int | None = None,
                     backend: str = "auto", threads: int | None = None,
                     images: int | None = None, skip_bad: bool = False, network=None,
                     limit: int | None = None,
                     on_batch: Callable[[int, dict], None] | None = None) -> DatasetResult:
    """Score ``config`` on the images of ``listing`` (module docstring).

    Parameters
    ----------
    state : path, optional
        State folder to resume from and write to (None: nothing is kept).
    executor : {"local", "dask"}
    scheduler : str, optional
        Dask scheduler address (default: a local cluster of ``workers`` single-threaded
        processes, one per core by default, each simulating on ``threads`` or 1 thread).
    backend, threads
        The simulator's (they change no number).
    images : int, optional
        Score only the first ``images`` of the stratified order.
    skip_bad : bool
        Leave out unreadable images (listed in ``bad``) instead of stopping at the first.
    network : (graph, info), optional
        The network already loaded for ``config`` (the local run uses it).
    limit : int, optional
        Compute at most this many batches now (the rest stay pending).
    on_batch : callable(index, figures), optional
        Called after each computed batch is on disk.
    """
    if executor not in EXECUTORS:
        raise InputError(f"--executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    t_start = time.perf_counter()
    order = listing.order()
    if images is not None:
        if not 1 <= images <= len(order):
            raise InputError(f"--images {images}: the dataset {listing.source} has "
                             f"{len(order)} images; ask for 1..{len(order)}")
        order = order[:images]
    b = config.batch
    batches = [order[i:i + b] for i in range(0, len(order), b)]
    folder = _StateFolder(state, config) if state is not None else None
    done: dict[int, dict] = {}
    todo = []
    for i, idx in enumerate(batches):
        ek = listing.entries_key(idx)
        got = folder.load(i, ek) if folder is not None else None
        if got is None:
            todo.append((i, ek))
        else:
            done[i] = got
    reused = len(done)
    if limit is not None:
        todo = todo[:max(0, limit)]
    keys = {i: ek for i, ek in todo}

    from ..report import progress
    with progress(len(order), "dataset", "image") as bar:
        bar.update(sum(len(batches[i]) for i in done))

        def finished(res: dict) -> None:
            i = int(res["index"])
            res = {**res, "config_key": np.asarray(config.key()),
                   "entries_key": np.asarray(keys[i])}
            if folder is not None:
                folder.save(i, res)
            done[i] = res
            bar.update(len(batches[i]))
            if on_batch is not None:
                on_batch(i, res)

        def job(i: int):
            idx = batches[i]
            return ((config, i, tuple(listing.file(j) for j in idx), listing.labels[idx]),
                    dict(skip_bad=skip_bad, backend=backend))

        t_run = time.perf_counter()
        if todo and executor == "dask":
            t_run = _run_dask([job(i) for i, _ in todo], threads, scheduler, workers, finished)
        elif todo:
            _evaluator(config, backend, threads, network)      # compiled before the clock
            t_run = time.perf_counter()
            for i, _ in todo:
                args, kw = job(i)
                finished(evaluate_batch(*args, **kw, threads=threads))
        run_seconds = time.perf_counter() - t_run
    ran_images = sum(len(done[i]["labels"]) for i, _ in todo if i in done)
    return _summarize(config, listing, batches, done, reused=reused, ran=len(todo),
                      seconds=time.perf_counter() - t_start,
                      images_per_s=ran_images / run_seconds if todo and run_seconds > 0
                      else None, state=folder)


def _run_dask(jobs, threads, scheduler, workers, finished) -> float:
    """Run ``jobs`` on a Dask cluster, at most two per worker thread in flight; returns the
    time the cluster was ready (the start of the compute clock)."""
    from ..dse.runner import require_dask
    require_dask()
    from dask.distributed import Client, LocalCluster, as_completed
    cluster = None
    if scheduler:
        client = Client(scheduler)
    else:
        import dask
        # Dask's workers default to one BLAS thread; the float reference's last bits depend
        # on BLAS's thread count, so they run BLAS as this process does
        environ = {"MALLOC_TRIM_THRESHOLD_": 65536,
                   **{v: os.environ[v] for v in BLAS_THREAD_VARIABLES if v in os.environ}}
        with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
            cluster = LocalCluster(n_workers=workers or os.cpu_count() or 1,
                                   threads_per_worker=1, processes=True,
                                   dashboard_address=None)
        client = Client(cluster)
        threads = threads or 1
    t_ready = time.perf_counter()
    stamp = time.time_ns()
    try:
        def submit(job):
            (config, i, *rest), kw = job
            return client.submit(evaluate_batch, config, i, *rest, **kw, threads=threads,
                                 key=f"fpxint-batch-{i}-{stamp}", pure=False)

        pending = iter(jobs)
        window = 2 * max(1, sum(client.nthreads().values()))
        running = as_completed([submit(j) for j in islice(pending, window)])
        for fut in running:
            finished(fut.result())             # a worker's error is raised here, as it was
            nxt = next(pending, None)
            if nxt is not None:
                running.add(submit(nxt))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return t_ready


def _terms(config: DatasetConfig) -> list[tuple[int, int]]:
    """``(w_terms, a_terms)`` per scored k, as ``compile_terms`` cuts them."""
    w, a = ((config.spec.w_terms, config.spec.a_terms) if config.spec is not None
            else (config.w_fmt.terms, config.a_fmt.terms))
    return [(min(k, w), min(k, a)) for k in config.term_counts()]


def _summarize(config, listing, batches, done, *, reused, ran, seconds, images_per_s,
               state) -> DatasetResult:
    """The figures of the finished batches, concatenated in batch order (so a resumed run
    sums exactly what an uninterrupted one does)."""
    parts = [done[i] for i in sorted(done)]
    terms = _terms(config)
    kk = len(terms)

    def cat(name, empty, axis=0):
        return np.concatenate([p[name] for p in parts], axis=axis) if parts else empty

    labels = cat("labels", np.zeros(0, np.int64))
    ref_top = cat("ref_top", np.zeros((0, TOP_K), np.int32))
    top = cat("top", np.zeros((kk, 0, TOP_K), np.int32), axis=1)
    signal = float(np.sum(cat("signal", np.zeros(0))))
    noise = np.sum(cat("noise", np.zeros((kk, 0)), axis=1), axis=1)
    names, bad = [], []
    for i, p in zip(sorted(done), parts):
        paths = [listing.paths[j] for j in batches[i]]
        names += [paths[k] for k in p["kept"]]
        bad += [(paths[k], str(w)) for k, w in zip(p["bad_pos"], p["bad_why"])]
    n = len(labels)
    top5 = bool(parts) and int(parts[0]["classes"]) >= TOP5_CLASSES

    def accuracy(tops):
        if n == 0:
            return None, None
        a5 = (float(np.mean(np.any(tops[:, :TOP_K] == labels[:, None], axis=1))) if top5
              else None)
        return float(np.mean(tops[:, 0] == labels)), a5

    rows = []
    for k, (wt, at) in enumerate(terms):
        a1, a5 = accuracy(top[k])
        rows.append({"w_terms": wt, "a_terms": at,
                     "top1_agreement": float(np.mean(top[k][:, 0] == ref_top[:, 0])) if n
                     else None,
                     "logit_sqnr_db": _sqnr(signal, float(noise[k])) if n else None,
                     "accuracy": a1, "top5_accuracy": a5})
    f1, f5 = accuracy(ref_top)
    return DatasetResult(
        rows=rows, float_accuracy=f1, float_top5_accuracy=f5, images=n,
        selected=sum(len(b) for b in batches), batches=len(batches), ran=ran, reused=reused,
        complete=len(done) == len(batches), seconds=seconds, images_per_s=images_per_s,
        names=tuple(names), labels=labels, ref_top=ref_top, top=top,
        output_digest=cat("output_digest", np.zeros((kk, 0), np.uint64), axis=1),
        bad=bad + list(listing.skipped), state=None if state is None else str(state.path),
        recomputed=[] if state is None else list(state.recomputed))


def _sqnr(signal: float, noise: float) -> float:
    """``10 log10(signal / noise)`` as :func:`fpxint_hw.series.sqnr_db` gives it."""
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)
