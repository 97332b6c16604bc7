"""The sweep configuration file (YAML), validated with errors that name the file and field.

Example (close to the shipped ``fpxint_hw/data/sweeps/mnist-4x4.yaml``)::

    name: mnist-4x4
    base: default              # ArraySpec (shipped name or path) for unswept fields
    grid:
      bits: [2, 3, 4]          # w_bits = a_bits = out_bits
      terms: [1, 2, 3]         # w_terms = a_terms = out_terms
      array: [4x4]             # rows x cols
      scale: [pow2]            # pow2 | free
      combine: [pe, column]    # where the lanes are combined
      m0_bits: [8, 16, 31]     # optional: requantization multiplier widths (default: base's)
      rounding: [rne, half_up] # optional: requantization rounding (default: base's)
    baselines: [8x1, 4x1]      # conventional one-lane arrays added to the grid (the default;
                               # [] for none)
    accuracy:                  # or: accuracy: false
      evaluator: fpxint_hw.dse.accuracy:simulate
      model: mnist-resnet
      images: 1000
    synthesis:                 # or: synthesis: false
      target: ecp5
      pnr: true
      freq_mhz: 200
      # area_model: ecp5.json  # instead of synthesis: the area this calibrated model
                               # predicts (an area_model.json of 'fpxint plot'; a path
                               # relative to this file or the working folder; needs
                               # pnr: false, the clock is throughput.clock_mhz)
    throughput:
      network: resnet50
      batch: 1
      clock_mhz: 100           # used when there is no place-and-route Fmax
    workers: 2

Only ``grid`` is required. Every grid list must be non-empty; values are checked against the
ranges :class:`~fpxint_hw.spec.ArraySpec` accepts when the points are built.

``baselines`` lists conventional single-term arrays, ``BITSx1`` (W8x1/A8x1 is ``8x1``; a bare
``8`` means the same): for every array, scale, ``m0_bits`` and rounding of the grid, the
point with that digit width, one term and the lanes combined in the PE (one lane per PE: a
plain MAC array with the same PE grid and output units) joins the sweep as an ordinary
point, marked ``baseline`` (:func:`fpxint_hw.dse.point.grid_points`). Default
:data:`DEFAULT_BASELINES`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..errors import FormatError
from ..intops import ROUNDING_MODES
from ..quant.ranges import RANGE_RULES
from ..spec import read_yaml

__all__ = ["SweepConfig", "load_sweep_config", "GRID_AXES", "DEFAULT_EVALUATOR",
           "DEFAULT_BASELINES"]

#: Grid axes, in the order points are enumerated.
GRID_AXES = ("bits", "terms", "array", "scale", "combine", "m0_bits", "rounding")

#: The evaluator used when ``accuracy.evaluator`` is not given.
DEFAULT_EVALUATOR = "fpxint_hw.dse.accuracy:simulate"
#: The evaluators a sweep file may name without ``allow_code``: name -> ``module:function``
#: (the shipped files spell them out; either spelling is accepted).
EVALUATORS = {"simulate": DEFAULT_EVALUATOR}
#: Digit widths of the conventional one-term arrays every sweep compares against unless its
#: file says otherwise: W8x1/A8x1 (the usual int8 accelerator) and W4x1/A4x1.
DEFAULT_BASELINES = (8, 4)

_TOP_KEYS = ("name", "base", "grid", "baselines", "accuracy", "synthesis", "throughput",
             "workers")
_ACC_KEYS = ("evaluator", "model", "weights", "images", "threads", "level", "per_channel",
             "overrides", "range_rule", "options")
_SYN_KEYS = ("target", "pnr", "freq_mhz", "device", "seed", "lut_mult_below", "timeout",
             "area_model")
_THR_KEYS = ("network", "batch", "clock_mhz", "m_tile")
_LEVELS = ("tensor", "layer", "model")
_DEFAULT_GRID = {"array": ["8x8"], "scale": ["pow2"], "combine": ["pe"]}


@dataclass(frozen=True)
class SweepConfig:
    """A validated sweep configuration (see the module docstring for the file format).

    Members
    -------
    name : str
    base : str
        ArraySpec name or path for the fields the grid does not set.
    grid : dict of str -> list
        ``bits`` and ``terms`` (ints), ``array`` (``(rows, cols)`` pairs), ``scale`` and
        ``combine`` (strings).
    accuracy : dict or None
        Evaluator options (None: no accuracy step).
    synthesis : dict or None
        Synthesis options (None: no synthesis step).
    throughput : dict
        Cycle-model options.
    workers : int
        Parallel points (local processes or Dask workers).
    baselines : tuple of int
        Digit widths (2..8) of the conventional one-term, one-lane arrays added to the grid.
    source : str
        The file the configuration came from.
    """

    grid: dict
    name: str = "sweep"
    base: str = "default"
    accuracy: dict | None = field(default_factory=lambda: {"evaluator": DEFAULT_EVALUATOR})
    synthesis: dict | None = field(default_factory=lambda: {"target": "ecp5", "pnr": True})
    throughput: dict = field(default_factory=lambda: {"network": "resnet50", "batch": 1})
    workers: int = 1
    baselines: tuple = DEFAULT_BASELINES
    source: str = "<config>"

    def to_dict(self) -> dict[str, Any]:
        """Plain data, as written into the sweep's output folder."""
        grid = dict(self.grid)
        grid["array"] = [f"{r}x{c}" for r, c in grid["array"]]
        return {"name": self.name, "base": self.base, "grid": grid,
                "baselines": [f"{b}x1" for b in self.baselines], "accuracy": self.accuracy,
                "synthesis": self.synthesis, "throughput": self.throughput,
                "workers": self.workers}


def _fail(source: str, where: str, msg: str) -> FormatError:
    return FormatError(f"{source}: {where}: {msg}")


def _mapping(source: str, where: str, value, keys) -> dict:
    if value is None or value is False:
        return None
    if value is True:
        return {}
    if not isinstance(value, Mapping):
        raise _fail(source, where, f"expected a mapping (or false), got {value!r}")
    unknown = sorted(set(value) - set(keys))
    if unknown:
        raise _fail(source, f"{where}.{unknown[0]}", f"unknown field; known: {', '.join(keys)}")
    return dict(value)


def _int(source: str, where: str, value, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo \
            or (hi is not None and value > hi):
        rng = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise _fail(source, where, f"must be an integer {rng}, got {value!r}")
    return value


def _array(source: str, where: str, value) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return (_int(source, where, value, 1, 64),) * 2
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(value))
    if not m:
        raise _fail(source, where, f"expected ROWSxCOLS like 8x8, got {value!r}")
    return (_int(source, where, int(m.group(1)), 1, 64), _int(source, where, int(m.group(2)), 1, 64))


def _baselines(source: str, value) -> tuple[int, ...]:
    """The ``baselines`` field: a list of ``BITSx1`` (or bare ``BITS``), bits 2..8."""
    if not isinstance(value, list):
        raise _fail(source, "baselines", f"expected a list like [8x1, 4x1] ([] for none), "
                                         f"got {value!r}")
    out = []
    for i, v in enumerate(value):
        where = f"baselines[{i}]"
        if isinstance(v, int) and not isinstance(v, bool):
            bits, terms = v, 1
        else:
            m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(v))
            if not m:
                raise _fail(source, where, f"expected BITSx1 like 8x1, got {v!r}")
            bits, terms = int(m.group(1)), int(m.group(2))
        if terms != 1:
            raise _fail(source, where, f"a baseline is a conventional array of one term per "
                                       f"weight and activation: write {bits}x1, got {v!r}")
        out.append(_int(source, where, bits, 2, 8))
    if len(set(out)) != len(out):
        raise _fail(source, "baselines", f"lists a width twice: {value!r}")
    return tuple(out)


def config_from_dict(data: Any, source: str = "<config>",
                     allow_code: bool = False) -> SweepConfig:
    """Validate parsed YAML and build a :class:`SweepConfig`; errors name ``source`` and the
    field (``grid.bits[2]``). ``accuracy.evaluator`` must be one of :data:`EVALUATORS`
    unless ``allow_code``: a sweep file is data, and another ``module:function`` would be
    imported and called."""
    if not isinstance(data, Mapping):
        raise FormatError(f"{source}: a sweep file must be a mapping with a 'grid', got "
                          f"{type(data).__name__}")
    unknown = sorted(set(data) - set(_TOP_KEYS))
    if unknown:
        raise _fail(source, unknown[0], f"unknown field; known: {', '.join(_TOP_KEYS)}")
    if "grid" not in data:
        raise _fail(source, "grid", "missing (the axes to sweep: bits, terms, array, scale, "
                                    "combine)")
    raw = data["grid"]
    if not isinstance(raw, Mapping):
        raise _fail(source, "grid", f"expected a mapping of axis -> list, got {raw!r}")
    bad = sorted(set(raw) - set(GRID_AXES))
    if bad:
        raise _fail(source, f"grid.{bad[0]}", f"unknown axis; known: {', '.join(GRID_AXES)}")
    for need in ("bits", "terms"):
        if need not in raw:
            raise _fail(source, f"grid.{need}", "missing")
    grid = {}
    for axis in GRID_AXES:
        if axis in ("m0_bits", "rounding") and axis not in raw:
            continue                                   # the base spec's value
        vals = raw.get(axis, _DEFAULT_GRID.get(axis))
        if not isinstance(vals, list):
            vals = [vals]
        if not vals:
            raise _fail(source, f"grid.{axis}", "must list at least one value")
        out = []
        for i, v in enumerate(vals):
            where = f"grid.{axis}[{i}]"
            if axis in ("bits", "terms"):
                out.append(_int(source, where, v, 1 if axis == "terms" else 2, 8))
            elif axis == "array":
                out.append(_array(source, where, v))
            elif axis == "m0_bits":
                out.append(_int(source, where, v, 1, 31))
            elif axis == "rounding":
                if v not in ROUNDING_MODES:
                    raise _fail(source, where, f"must be one of {', '.join(ROUNDING_MODES)}, "
                                               f"got {v!r}")
                out.append(v)
            elif axis == "scale":
                if v not in ("pow2", "free"):
                    raise _fail(source, where, f"must be pow2 or free, got {v!r}")
                out.append(v)
            else:
                if v not in ("pe", "column"):
                    raise _fail(source, where, f"must be pe or column, got {v!r}")
                out.append(v)
        if len(set(out)) != len(out):
            raise _fail(source, f"grid.{axis}", f"lists a value twice: {vals!r}")
        grid[axis] = out
    acc = _mapping(source, "accuracy", data.get("accuracy", {}), _ACC_KEYS)
    if acc is not None:
        acc.setdefault("evaluator", DEFAULT_EVALUATOR)
        ev = acc["evaluator"]
        ev = acc["evaluator"] = EVALUATORS.get(ev, ev) if isinstance(ev, str) else ev
        if not isinstance(ev, str) or not re.fullmatch(r"[\w.]+:\w+", ev):
            raise _fail(source, "accuracy.evaluator",
                        f"expected a registered evaluator ({', '.join(EVALUATORS)}) or "
                        f"'package.module:function', got {str(ev)[:80]!r}")
        if ev not in EVALUATORS.values() and not allow_code:
            raise _fail(source, "accuracy.evaluator",
                        f"{ev[:80]!r} is not a registered evaluator ({', '.join(EVALUATORS)}); "
                        f"a sweep file is data, and running it would import and call that "
                        f"code. Pass --allow-code (fpxint sweep) if you trust the file")
        if "images" in acc and acc["images"] is not None:
            _int(source, "accuracy.images", acc["images"], 1)
        if acc.get("threads") is not None:
            _int(source, "accuracy.threads", acc["threads"], 1)
        if "per_channel" in acc and not isinstance(acc["per_channel"], bool):
            raise _fail(source, "accuracy.per_channel",
                        f"must be true or false, got {acc['per_channel']!r}")
        if "range_rule" in acc and acc["range_rule"] not in RANGE_RULES:
            raise _fail(source, "accuracy.range_rule",
                        f"must be one of {', '.join(RANGE_RULES)}, got {acc['range_rule']!r}")
        if "level" in acc and acc["level"] not in _LEVELS:
            raise _fail(source, "accuracy.level",
                        f"must be one of {', '.join(_LEVELS)}, got {acc['level']!r}")
        for key in ("model", "weights", "overrides"):
            if acc.get(key) is not None and not isinstance(acc[key], str):
                raise _fail(source, f"accuracy.{key}",
                            f"expected a model name or file path, got {acc[key]!r}")
    syn = _mapping(source, "synthesis", data.get("synthesis", {}), _SYN_KEYS)
    if syn is not None:
        syn.setdefault("target", "ecp5")
        if syn.get("area_model") is not None:
            _check_area_model(source, syn)
        syn.setdefault("pnr", syn["target"] in ("ecp5", "ice40"))
        if syn["target"] not in ("ecp5", "xilinx", "ice40"):
            raise _fail(source, "synthesis.target",
                        f"must be ecp5, xilinx or ice40, got {syn['target']!r}")
        if not isinstance(syn["pnr"], bool):
            raise _fail(source, "synthesis.pnr", f"must be true or false, got {syn['pnr']!r}")
        if syn["pnr"] and syn["target"] == "xilinx":
            raise _fail(source, "synthesis.pnr", "no open place and route for xilinx; set "
                                                 "pnr: false or target: ecp5")
        if "freq_mhz" in syn and not (isinstance(syn["freq_mhz"], (int, float))
                                      and syn["freq_mhz"] > 0):
            raise _fail(source, "synthesis.freq_mhz", f"must be > 0, got {syn['freq_mhz']!r}")
        if "seed" in syn:
            _int(source, "synthesis.seed", syn["seed"], 0)
        if "lut_mult_below" in syn:
            _int(source, "synthesis.lut_mult_below", syn["lut_mult_below"], 0, 64)
        if syn.get("timeout") is not None and (isinstance(syn["timeout"], bool) or not (
                isinstance(syn["timeout"], (int, float)) and syn["timeout"] > 0)):
            raise _fail(source, "synthesis.timeout",
                        f"must be seconds > 0 (or null), got {syn['timeout']!r}")
        if syn.get("device") is not None and not isinstance(syn["device"], str):
            raise _fail(source, "synthesis.device",
                        f"expected a device name like 25k, got {syn['device']!r}")
    thr = _mapping(source, "throughput", data.get("throughput", {}), _THR_KEYS) or {}
    thr.setdefault("network", "resnet50")
    if thr["network"] != "resnet50":
        raise _fail(source, "throughput.network",
                    f"only resnet50 is modelled, got {thr['network']!r}")
    thr["batch"] = _int(source, "throughput.batch", thr.get("batch", 1), 1)
    if thr.get("clock_mhz") is not None and not (
            isinstance(thr["clock_mhz"], (int, float)) and thr["clock_mhz"] > 0):
        raise _fail(source, "throughput.clock_mhz", f"must be > 0, got {thr['clock_mhz']!r}")
    if thr.get("m_tile") is not None:
        _int(source, "throughput.m_tile", thr["m_tile"], 1)
    workers = _int(source, "workers", data.get("workers", 1), 1, 256)
    baselines = _baselines(source, data.get("baselines", list(DEFAULT_BASELINES)))
    name = data.get("name", Path(source).stem if source != "<config>" else "sweep")
    base = data.get("base", "default")
    if not isinstance(base, str):
        raise _fail(source, "base", f"expected an array spec name or path, got {base!r}")
    return SweepConfig(grid=grid, name=str(name), base=base, accuracy=acc, synthesis=syn,
                       throughput=thr, workers=workers, baselines=baselines,
                       source=source)


def resolve_relative(source: str, name: str) -> Path:
    """A path named in the sweep file ``source``: relative to the file's folder when it
    exists there, else as given (relative to the working folder)."""
    rel = Path(source).parent / name
    if source != "<config>" and not Path(name).is_absolute() and rel.exists():
        return rel
    return Path(name)


def _check_area_model(source: str, syn: dict) -> None:
    """``synthesis.area_model``: a model JSON of ``fpxint plot`` for the same target, and no
    place and route (a modelled point has no Fmax)."""
    from ..costmodel.area import AreaModel
    name = syn["area_model"]
    if not isinstance(name, str):
        raise _fail(source, "synthesis.area_model",
                    f"expected the path of an area_model.json, got {name!r}")
    if syn.get("pnr"):
        raise _fail(source, "synthesis.pnr", "a modelled area has no Fmax; with area_model "
                                             "set pnr: false (throughput.clock_mhz is used)")
    syn["pnr"] = False
    model = AreaModel.load(resolve_relative(source, name), f"{source}: synthesis.area_model")
    if model.target != syn["target"]:
        raise _fail(source, "synthesis.area_model",
                    f"{name} is fitted for {model.target}, not synthesis.target "
                    f"{syn['target']}")


def load_sweep_config(path, allow_code: bool = False) -> SweepConfig:
    """Read and validate a sweep YAML file (strict YAML, :mod:`fpxint_hw.yamlfile`): a path,
    or the name of a shipped sweep (``"tiny"`` or ``"tiny.yaml"``:
    ``fpxint_hw/data/sweeps/tiny.yaml``). ``allow_code``: see :func:`config_from_dict`."""
    from ..data import find_shipped

    path = find_shipped("sweeps", path, "sweep")
    return config_from_dict(read_yaml(path, "a sweep configuration"), str(path), allow_code)
