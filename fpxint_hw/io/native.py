"""The native ``.npz`` format: parameters by name, optionally with the graph structure.

A weights file is a plain ``np.savez`` archive whose keys are parameter names
(``layer1.0.conv1.weight``); it loads into a known architecture like a PyTorch state_dict.
A *graph* file adds one entry, ``__graph__``, holding the node list as UTF-8 JSON bytes
(op, name, inputs, attributes, parameter names), and loads on its own with
:func:`load_graph_npz`. Files are read with ``allow_pickle=False``: no code runs on load.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Mapping

import numpy as np

from ..errors import InputError
from ..graph import OPS, Graph, Input
from ..outputs import write_npz
from .npz import load_arrays

__all__ = ["load_params_npz", "save_params_npz", "save_graph_npz", "load_graph_npz",
           "GRAPH_KEY"]

#: Archive entry that holds the graph structure as JSON.
GRAPH_KEY = "__graph__"
_FORMAT = "fpxint-graph/1"


def load_params_npz(path) -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` at ``path`` except ``__graph__``, by name (as stored)."""
    arrays = load_arrays(path)
    arrays.pop(GRAPH_KEY, None)
    return arrays


def save_params_npz(path, params: Mapping[str, np.ndarray], compressed: bool = False) -> None:
    """Write ``params`` (name -> array) as an ``.npz`` archive at ``path``."""
    write_npz(path, {k: np.asarray(v) for k, v in params.items()}, compressed)


def _node_to_json(node) -> dict:
    d = {"op": node.op, "name": node.name, "inputs": list(node.inputs)}
    for f in dataclasses.fields(node):
        if f.name in ("name", "inputs", "shape"):
            continue
        v = getattr(node, f.name)
        d[f.name] = list(v) if isinstance(v, tuple) else v
    if isinstance(node, Input):
        d["shape"] = list(node.shape)
    return d


def save_graph_npz(path, graph: Graph, compressed: bool = False) -> None:
    """Write ``graph`` (structure and parameters) as a self-contained ``.npz`` at ``path``."""
    meta = {"format": _FORMAT, "name": graph.name, "output": graph.output,
            "nodes": [_node_to_json(n) for n in graph.nodes]}
    blob = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    if GRAPH_KEY in graph.params:
        raise InputError(f"graph {graph.name!r}: a parameter is named {GRAPH_KEY!r}")
    write_npz(path, {GRAPH_KEY: blob, **dict(graph.params)}, compressed)


def load_graph_npz(path) -> Graph:
    """The graph stored by :func:`save_graph_npz` at ``path``; InputError names what is wrong."""
    params = load_arrays(path)
    if GRAPH_KEY not in params:
        raise InputError(f"{path}: no {GRAPH_KEY!r} entry: a weights-only archive needs a "
                         f"known model (--model NAME --weights {path})")
    try:
        meta = json.loads(params.pop(GRAPH_KEY).tobytes().decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: entry {GRAPH_KEY!r} is not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise InputError(f"{path}: entry {GRAPH_KEY!r} has format "
                         f"{meta.get('format') if isinstance(meta, dict) else meta!r}, "
                         f"expected {_FORMAT!r}")
    raw_nodes = meta.get("nodes", [])
    if not isinstance(raw_nodes, list):
        raise InputError(f"{path}: entry {GRAPH_KEY!r}: 'nodes' must be a list, got "
                         f"{type(raw_nodes).__name__}")
    nodes = []
    for i, d in enumerate(raw_nodes):
        if not isinstance(d, dict):
            raise InputError(f"{path}: entry {GRAPH_KEY!r}: node #{i} must be a mapping, got "
                             f"{d!r}")
        d = dict(d)
        op = d.pop("op", None)
        cls = OPS.get(op) if isinstance(op, str) else None
        if cls is None:
            raise InputError(f"{path}: node {d.get('name')!r} has unknown op {op!r} (known: "
                             f"{', '.join(OPS)})")
        try:
            nodes.append(cls(**d))
        except TypeError as exc:
            raise InputError(f"{path}: node {d.get('name')!r}: {exc}") from None
    return Graph(tuple(nodes), params, meta.get("output"), meta.get("name", "graph"))
