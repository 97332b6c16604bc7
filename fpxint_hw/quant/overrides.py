"""Per-layer formats as text and as files: ``NODE=WBxWT/ABxAT`` and the override files that
``fpxint allocate`` writes and ``fpxint simulate --overrides`` and the sweep read.

An override file is YAML::

    layers:                      # node -> weight bits x terms / output bits x terms
      relu: 4x3/4x2
      layer1.0.conv2: 4x2/4x2
    scale: pow2                  # optional, default pow2
    # anything else (model, target, measured figures) is a record for the reader

For the input node and for residual adds only the output part counts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from ..errors import FormatError, InputError
from ..spec import SCALE_MODES, SeriesFormat
from ..yamlfile import read_yaml
from .lower import LayerFormats

__all__ = ["parse_override", "format_override", "load_overrides", "write_overrides"]


def parse_override(text: str, scale: str = "pow2", where: str = "--override"):
    """``NODE=WBxWT/ABxAT`` -> ``(node, LayerFormats)``; InputError naming ``where``."""
    try:
        node, spec = text.split("=", 1)
        w, a = spec.split("/")
        wb, wt = (int(v) for v in w.lower().split("x"))
        ab, at = (int(v) for v in a.lower().split("x"))
        fmts = LayerFormats(SeriesFormat(wb, wt, scale, per_channel=True),
                            SeriesFormat(ab, at, scale))
    except (ValueError, TypeError) as e:
        why = "" if isinstance(e, ValueError) and "unpack" in str(e) else f" ({e})"
        raise InputError(f"{where} {text!r}: expected NODE=WBITSxWTERMS/ABITSxATERMS, e.g. "
                         f"conv1=8x2/8x2{why}") from None
    return node.strip(), fmts


def format_override(node: str, fmts: LayerFormats) -> str:
    """The ``WBxWT/ABxAT`` text of ``fmts`` (``parse_override``'s inverse, without the node);
    a tensor without weights repeats its output format in the weight part."""
    a = fmts.a_fmt
    w = fmts.w_fmt or a
    return f"{w.bits}x{w.terms}/{a.bits}x{a.terms}"


def load_overrides(path) -> dict[str, LayerFormats]:
    """The per-layer formats of an override file (module docstring); InputError naming the
    file and the entry for anything malformed. Read as strict YAML (:mod:`fpxint_hw.yamlfile`)."""
    path = Path(path)
    try:
        data = read_yaml(path, "an override file")
    except FormatError as exc:             # the file, not a format: an input error here
        raise InputError(str(exc)) from None
    if not isinstance(data, dict) or not isinstance(data.get("layers"), dict):
        raise InputError(f"override file {path}: expected a mapping with 'layers: {{node: "
                         f"WBxWT/ABxAT}}'")
    scale = data.get("scale", "pow2")
    if scale not in SCALE_MODES:
        raise InputError(f"override file {path}: scale must be one of {', '.join(SCALE_MODES)}, "
                         f"got {scale!r}")
    out = {}
    for node, text in data["layers"].items():
        name, fmts = parse_override(f"{node}={text}", scale, where=f"{path}: layers.{node}")
        out[name] = fmts
    return out


def write_overrides(path, layers: Mapping[str, LayerFormats], record: Mapping | None = None,
                    scale: str = "pow2") -> None:
    """Write an override file atomically: ``layers`` plus ``record`` (facts for the reader)."""
    import yaml
    from ..outputs import write_text
    data = dict(record or {})
    data["scale"] = scale
    data["layers"] = {k: format_override(k, v) for k, v in layers.items()}
    class Plain(yaml.SafeDumper):               # no anchors: the strict reader refuses them
        def ignore_aliases(self, data):
            return True
    write_text(path, yaml.dump(data, Dumper=Plain, sort_keys=False))
