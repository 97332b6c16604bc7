"""One point of a sweep: its ArraySpec and its evaluation.

``evaluate_point(point, config)`` runs, in the calling process, the three steps the
configuration enables and returns one JSON-ready record:

1. **accuracy**: the configured evaluator (``"package.module:function"``, called as
   ``fn(spec, options) -> dict``) on the point's ArraySpec; the result is cached in the
   sweep's folder by the program options the spec fixes (:func:`fpxint_hw.quant.program_options`:
   formats, rounding, ``m0_bits``) and the evaluator's options, so points that differ only in
   the array shape or the combine placement share one evaluation;
2. **synthesis**: LUTs, flip-flops, carries, DSPs of the point's accelerator and, with
   ``pnr``, its Fmax (:mod:`fpxint_hw.flow`); with ``synthesis.area_model`` instead the
   LUT-equivalents and flip-flops that calibrated model predicts (``synth.source: "area
   model"``, with the model's errors; for arrays too large to synthesize every point);
3. **throughput**: ResNet-50 cycles, utilisation and images per second from the cycle model
   (:mod:`fpxint_hw.costmodel.cycles`) at the Fmax (or ``throughput.clock_mhz`` without one).

A step that fails turns the record's ``status`` into ``"error"`` with the message; the other
steps still run. Nothing is raised, so a sweep always records every point it finished.
"""

from __future__ import annotations

import dataclasses
import importlib
import itertools
import json
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from ..errors import FormatError, InputError
from ..outputs import write_text
from ..spec import ArraySpec, load_array_spec
from .config import SweepConfig

__all__ = ["SweepPoint", "grid_points", "point_spec", "evaluate_point", "load_evaluator"]


@dataclass(frozen=True)
class SweepPoint:
    """One configuration of the grid.

    Members
    -------
    bits : int, 2..8
        Digit width of weights, activations and outputs.
    terms : int, 1..8
        Terms of weights, activations and outputs.
    rows, cols : int, 1..64
    scale : {"pow2", "free"}
    combine : {"pe", "column"}
    m0_bits : int, 1..31, or None
        Requantization multiplier width (None: the base spec's).
    rounding : {"rne", "half_up"} or None
        Requantization rounding (None: the base spec's).
    baseline : bool
        A conventional array the sweep compares the series points against (one term, lanes
        combined in the PE: one lane per PE; the sweep file's ``baselines``). Not part of
        the key: a grid point that is also a baseline is one point.
    """

    bits: int
    terms: int
    rows: int
    cols: int
    scale: str
    combine: str
    m0_bits: int | None = None
    rounding: str | None = None
    baseline: bool = False

    @property
    def key(self) -> str:
        """Stable identifier, e.g. ``b4-t2-8x8-pow2-pe`` (``-m8``, ``-half_up`` when swept)."""
        extra = "".join(s for s in (
            "" if self.m0_bits is None else f"-m{self.m0_bits}",
            "" if self.rounding is None else f"-{self.rounding}"))
        return (f"b{self.bits}-t{self.terms}-{self.rows}x{self.cols}-{self.scale}-"
                f"{self.combine}{extra}")

    @property
    def label(self) -> str:
        """Short label for plots, e.g. ``W4x2 8x8``."""
        extra = "" if (self.scale, self.combine) == ("pow2", "pe") else \
            f" {self.scale}/{self.combine}"
        if self.m0_bits is not None:
            extra += f" M0 {self.m0_bits}b"
        if self.rounding is not None:
            extra += f" {self.rounding}"
        if self.baseline:
            extra += " baseline"
        return f"{self.bits}b x{self.terms} {self.rows}x{self.cols}{extra}"

    def to_dict(self) -> dict:
        """The fields as a dict."""
        return dataclasses.asdict(self)


def grid_points(config: SweepConfig) -> list[SweepPoint]:
    """Every point of the sweep: the grid in a fixed order (bits, terms, array, scale,
    combine, m0_bits, rounding), then the baselines (``config.baselines``: for each width,
    one term combined in the PE on every array, scale, m0_bits and rounding of the grid)
    that the grid does not already hold. A grid point that is a baseline is marked so."""
    g = config.grid
    m0s, rds = g.get("m0_bits", [None]), g.get("rounding", [None])
    grid = [SweepPoint(b, t, r, c, s, cm, m0, rd) for b, t, (r, c), s, cm, m0, rd in
            itertools.product(g["bits"], g["terms"], g["array"], g["scale"], g["combine"],
                              m0s, rds)]
    index = {p.key: i for i, p in enumerate(grid)}
    for b, (r, c), s, m0, rd in itertools.product(config.baselines, g["array"], g["scale"],
                                                  m0s, rds):
        p = SweepPoint(b, 1, r, c, s, "pe", m0, rd, baseline=True)
        if p.key in index:
            grid[index[p.key]] = p
        else:
            index[p.key] = len(grid)
            grid.append(p)
    return grid


def _base_spec(config: SweepConfig) -> ArraySpec:
    base = config.base
    rel = Path(config.source).parent / base
    if config.source != "<config>" and rel.suffix in (".yaml", ".yml") and rel.exists():
        return load_array_spec(rel)
    return load_array_spec(base)


def point_spec(point: SweepPoint, config: SweepConfig) -> ArraySpec:
    """The point's ArraySpec: the base spec with the swept fields set.

    Raises FormatError naming the sweep file and point when the spec is invalid.
    """
    base = _base_spec(config)
    swept = {k: v for k, v in (("m0_bits", point.m0_bits), ("rounding", point.rounding))
             if v is not None}
    try:
        return dataclasses.replace(
            base, rows=point.rows, cols=point.cols, w_bits=point.bits, a_bits=point.bits,
            out_bits=point.bits, w_terms=point.terms, a_terms=point.terms,
            out_terms=point.terms, scale=point.scale, combine=point.combine,
            tree_reg=base.tree_reg and point.combine == "pe", **swept)
    except FormatError as exc:
        raise FormatError(f"{config.source}: point {point.key}: {exc}") from None


def load_evaluator(name: str):
    """The function ``"package.module:function"`` names (FormatError if it cannot be found)."""
    mod, _, fn = name.partition(":")
    try:
        return getattr(importlib.import_module(mod), fn)
    except (ImportError, AttributeError) as exc:
        raise FormatError(f"accuracy.evaluator {name!r}: cannot load it ({exc})") from None


def _read_text(path, where: str) -> str:
    try:
        return Path(path).read_text()
    except OSError as e:
        raise InputError(f"{where}: cannot read {path} ({e.strerror})") from None


def _accuracy(spec: ArraySpec, config: SweepConfig, cache_dir: Path | None) -> dict:
    from ..flow.tools import cache_key
    from ..quant import RANGE_RULES, program_options
    opts = dict(config.accuracy)
    name = opts.pop("evaluator")
    shaping = program_options(spec, per_channel=bool(opts.get("per_channel", True))).to_dict()
    opts.setdefault("range_rule", RANGE_RULES[0])
    keyed = dict(opts)
    if opts.get("overrides"):                   # the file's content, not its name
        keyed["overrides"] = _read_text(opts["overrides"], "accuracy.overrides")
    key = cache_key("accuracy", name, keyed, shaping)
    path = None if cache_dir is None else cache_dir / f"accuracy-{key}.json"
    if path is not None and path.exists():
        try:
            return {**json.loads(path.read_text()), "cached": True}
        except (OSError, ValueError):
            pass
    t0 = time.perf_counter()
    res = dict(load_evaluator(name)(spec, opts))
    res["program_options"] = shaping
    res["seconds"] = round(time.perf_counter() - t0, 3)
    if path is not None:
        write_text(path, json.dumps(res))
    return {**res, "cached": False}


def _modelled_area(spec: ArraySpec, config: SweepConfig) -> dict:
    """The area the sweep's ``synthesis.area_model`` predicts for ``spec`` (no synthesis run;
    no Fmax), with the model's own errors on the points it was fitted on."""
    from ..costmodel.area import AreaModel
    from .config import resolve_relative
    name = config.synthesis["area_model"]
    model = AreaModel.load(resolve_relative(config.source, name),
                           f"{config.source}: synthesis.area_model")
    pred, err = model.predict(spec), model.errors()
    return {"target": model.target, "source": "area model", "area_model": str(name),
            "logic": int(round(pred["logic"])), "ffs": int(round(pred["ffs"])),
            "lut_mult_below": model.lut_mult_below, "fmax_mhz": None,
            "model_points": len(model.samples), "model_logic_mape": err["logic_mape"],
            "model_logic_loo_mape": err["logic_loo_mape"], "model_ffs_mape": err["ffs_mape"]}


def _synthesis(spec: ArraySpec, config: SweepConfig, build_dir) -> dict:
    from ..workflows.synth import synth_record
    s = dict(config.synthesis)
    if s.get("area_model") is not None:
        return _modelled_area(spec, config)
    rec = synth_record(spec, s.get("target", "ecp5"), pnr=bool(s.get("pnr")),
                       device=s.get("device"), freq=float(s.get("freq_mhz", 200.0)),
                       seed=int(s.get("seed", 1)),
                       lut_mult_below=int(s.get("lut_mult_below", 10)),
                       build_dir=build_dir, timeout=s.get("timeout"))
    from ..costmodel.area import logic_cells
    rec["logic"] = logic_cells(rec["target"], rec["luts"], rec["carries"])
    return rec


def _throughput(spec: ArraySpec, config: SweepConfig, fmax: float | None) -> dict:
    from ..costmodel import network_cycles, resnet50_layers
    t = config.throughput
    clock, source = fmax, "fmax"
    if clock is None:
        clock, source = t.get("clock_mhz"), "clock_mhz"
    batch = int(t.get("batch", 1))
    nc = network_cycles(spec, resnet50_layers(batch), clock, m_tile=t.get("m_tile"),
                        batch=batch)
    return {"network": t.get("network", "resnet50"), "batch": batch, "cycles": nc.cycles,
            "utilisation": nc.utilisation, "clock_mhz": clock, "clock_source": source,
            "images_per_s": nc.images_per_second, "gmacs_per_s": nc.gmacs_per_second}


def evaluate_point(point: SweepPoint | dict, config: SweepConfig, *, cache_dir=None,
                   build_dir=None) -> dict:
    """Evaluate one point (see the module docstring); returns its record.

    ``cache_dir``: folder for cached accuracy results (None: no cache); ``build_dir``: the
    synthesis cache (default :func:`fpxint_hw.flow.tools.cache_root`).
    """
    if isinstance(point, dict):
        point = SweepPoint(**point)
    t0 = time.perf_counter()
    rec = {"key": point.key, "point": point.to_dict(), "status": "ok", "errors": {}}
    cache_dir = None if cache_dir is None else Path(cache_dir)
    try:
        spec = point_spec(point, config)
    except FormatError as exc:
        rec.update(status="error", errors={"spec": str(exc)},
                   seconds=round(time.perf_counter() - t0, 3))
        return rec
    rec["spec"] = spec.to_dict()
    steps = []
    if config.accuracy is not None:
        steps.append(("accuracy", lambda: _accuracy(spec, config, cache_dir)))
    if config.synthesis is not None:
        steps.append(("synth", lambda: _synthesis(spec, config, build_dir)))
    for name, fn in steps:
        try:
            rec[name] = fn()
        except Exception as exc:                       # recorded, the sweep goes on
            rec["status"] = "error"
            rec["errors"][name] = f"{type(exc).__name__}: {exc}"
            rec["errors"][name + "_trace"] = traceback.format_exc(limit=4)[-1500:]
    fmax = (rec.get("synth") or {}).get("fmax_mhz")
    try:
        rec["throughput"] = _throughput(spec, config, fmax)
    except Exception as exc:
        rec["status"] = "error"
        rec["errors"]["throughput"] = f"{type(exc).__name__}: {exc}"
    rec["seconds"] = round(time.perf_counter() - t0, 3)
    return rec
