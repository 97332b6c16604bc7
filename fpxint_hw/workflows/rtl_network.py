"""A network on the generated RTL from a model name: compile, build, run, summarise.

:func:`verify_network` is what ``fpxint verify --model`` and the demo run: load the network
and its inputs, compile it for the array (:func:`fpxint_hw.quant.for_array`), build the
Verilator model of the same spec, run every conv/linear layer on it
(:func:`fpxint_hw.flow.network.run_network`) and summarise the run as a JSON-ready dict
(:func:`summary`), with the top-1 class of every image from the hardware path, the
simulator and the float network.
"""

from __future__ import annotations

import os

import numpy as np

from ..flow.network import NetworkRun

__all__ = ["verify_network", "summary", "default_processes"]


def default_processes() -> int:
    """Harness processes per layer: the CPUs this process may use (at least 1)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:                       # not on Linux
        return max(1, os.cpu_count() or 1)


def verify_network(model: str, spec_name: str, *, weights=None, images: int | None = 1,
                   files=None, layers=None, processes: int | None = None,
                   build_dir=None, input_shape=None, toggles: bool = False,
                   **handshake) -> tuple[NetworkRun, dict]:
    """Run ``model`` (a zoo name or an ONNX file) on the RTL of array ``spec_name``.

    ``input_shape``: the ``--input-shape`` of an ONNX file with symbolic H/W
    (:func:`~fpxint_hw.workflows.network.load_network`).
    ``images``: built-in sample inputs (stratified; None: all) unless ``files`` (image
    paths) are given; ``layers``: conv/linear layer names to put on the hardware (default
    all); ``processes``: harness processes per layer (default :func:`default_processes`);
    ``toggles``: build the model with toggle counting (:mod:`fpxint_hw.flow.toggles`) and
    report the toggles per layer, per block and per input;
    ``handshake``: ``ready``, ``valid``, ``seed`` as for :func:`run_network`.
    Returns the :class:`~fpxint_hw.flow.network.NetworkRun` and its :func:`summary`.
    """
    from ..flow.network import run_network
    from ..flow.verilator import build
    from ..float_exec import run_float
    from ..quant import for_array
    from ..spec import load_array_spec
    from .network import input_range, load_inputs, load_network

    spec = load_array_spec(spec_name)
    graph, info = load_network(model, weights, input_shape)
    x, labels, names = load_inputs(graph, info, images, files)
    program = for_array(graph, spec, name=spec_name, input_range=input_range(info))
    vmodel = build(spec, build_dir, toggles=toggles)
    run = run_network(program, x, vmodel, layers=layers,
                      processes=processes or default_processes(), **handshake)
    result = summary(run, program, model=info.name if info is not None else str(model),
                     spec_name=spec_name, names=names, labels=labels,
                     float_out=run_float(graph, x))
    result["build_seconds"] = vmodel.build_seconds
    result["processes"] = processes or default_processes()
    return run, result


def _top1(program, out) -> list[int] | None:
    if out is None:
        return None
    logits = program.dequantize_output(out).reshape(out.shape[0], -1)
    return [int(v) for v in logits.argmax(axis=1)]


def summary(run: NetworkRun, program, *, model: str, spec_name: str, names=None,
            labels=None, float_out=None) -> dict:
    """The JSON of a network run: per layer (passes, measured and model cycles,
    utilisation, seconds) and per image (top-1 of hardware, simulator, float)."""
    spec = run.spec
    layers = [{"layer": lay.name, "node": lay.node, "kind": lay.kind,
               "m": lay.m, "k": lay.k, "n": lay.n, "groups": lay.groups,
               "passes": lay.passes, "cycles": lay.cycles, "model_cycles": lay.model_cycles,
               "utilisation": lay.utilisation(spec), "seconds": lay.seconds,
               "hw_seconds": lay.hw_seconds, "mismatches": len(lay.mismatches),
               "toggles": None if lay.toggles is None else sum(lay.toggles.values())}
              for lay in run.layers]
    toggles = run.toggles
    n_inputs = len(names) if names else None
    hw_seconds = sum(lay.hw_seconds for lay in run.layers)
    classes = None
    top1_hw = _top1(program, run.output_hw)
    if top1_hw is not None and run.output_hw.reshape(run.output_hw.shape[0], -1).shape[1] \
            == 1000:
        from ..data import imagenet_classes
        classes = [imagenet_classes()[c] for c in top1_hw]
    bad = run.mismatch
    return {
        "model": model, "spec": spec_name, "spec_rows": spec.rows, "spec_cols": spec.cols,
        "images": n_inputs,
        "inputs": list(names) if names else None,
        "layers_checked": sum(1 for lay in run.layers if not lay.mismatches),
        "gemm_layers": len(program.gemm_layers()),
        "host_layers": dict(run.host_layers),
        "mismatches": sum(len(lay.mismatches) for lay in run.layers),
        "first_mismatch": None if bad is None else bad.first_mismatch,
        "mismatch_lines": [] if bad is None else bad.mismatches,
        "outputs_equal": run.outputs_equal,
        "cycles": run.cycles, "model_cycles": run.model_cycles,
        "utilisation": run.utilisation,
        "seconds": run.seconds, "hw_seconds": hw_seconds,
        "cycles_per_second": run.cycles / hw_seconds if hw_seconds else None,
        "top1_hw": top1_hw, "top1_sim": _top1(program, run.output_sim),
        "top1_float": None if float_out is None else
        [int(v) for v in np.asarray(float_out).reshape(len(float_out), -1).argmax(axis=1)],
        "labels": None if labels is None else [int(v) for v in labels],
        "classes_hw": classes,
        "toggles": None if toggles is None else sum(toggles.values()),
        "toggles_per_input": None if toggles is None or not n_inputs else
        sum(toggles.values()) / n_inputs,
        "toggles_by_block": toggles,
        "layers": layers,
    }
