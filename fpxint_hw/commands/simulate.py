"""``fpxint simulate``: run a network's series expansion bit-exactly and measure its fidelity.

Loads a zoo model (or an ONNX file), expands it at tensor, layer or model level, runs the
integer program with the fast simulator on sample inputs, and reports, per number of terms
k = 1..T, the top-1 agreement with the float model and the logit SQNR (plus accuracy where
the inputs have labels). ``--check golden`` re-computes every layer of the first input with
the golden model; ``--dump-tiles`` writes real layers cut into GEMM tiles for RTL replay.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..report import fmt_db, format_table, write_json
from ..spec import SCALE_MODES, SeriesFormat

__all__ = ["register", "load_network", "load_inputs", "fidelity", "run_simulation",
           "parse_override", "progress"]


def register(subparsers) -> None:
    """Add the ``simulate`` subcommand."""
    p = subparsers.add_parser(
        "simulate", help="run a network's integer series expansion bit-exactly",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True,
                   help="zoo model name (mnist-resnet, resnet18, resnet50, efficientnet-lite0) "
                        "or an .onnx file")
    p.add_argument("--weights", help="weights file for a zoo model (.npz or .pth)")
    p.add_argument("--w-bits", type=int, default=4, help="bits per weight term")
    p.add_argument("--w-terms", type=int, default=2, help="weight terms T_w")
    p.add_argument("--a-bits", type=int, default=4, help="bits per activation term")
    p.add_argument("--a-terms", type=int, default=2, help="activation terms T_a")
    p.add_argument("--scale", choices=SCALE_MODES, default="pow2", help="lane ratio mode")
    p.add_argument("--per-tensor", action="store_true",
                   help="one weight scale per tensor (default: per output channel)")
    p.add_argument("--level", choices=("tensor", "layer", "model"), default="layer",
                   help="expansion granularity")
    p.add_argument("--rounding", choices=("rne", "half_up"), default="rne",
                   help="rounding of every requantization")
    p.add_argument("--override", action="append", default=[], metavar="NODE=WBxWT/ABxAT",
                   help="per-layer formats, e.g. conv1=8x2/8x2 (weights of NODE / its "
                        "output activations; for the input node only the second part counts)")
    p.add_argument("--images", type=int, default=None, metavar="N",
                   help="number of built-in sample inputs (default: all)")
    p.add_argument("--input", nargs="+", metavar="IMG", help="image files instead of samples")
    p.add_argument("--calibrate", type=int, default=0, metavar="N",
                   help="set activation ranges from N inputs (default 0: calibration-free)")
    p.add_argument("--batch", type=int, default=8, help="inputs per simulator call")
    p.add_argument("--threads", type=int, default=None, help="simulator threads")
    p.add_argument("--backend", default="auto", choices=("auto", "ort", "f32", "f64", "int"),
                   help="GEMM backend of the simulator (each used only where proved exact)")
    p.add_argument("--no-per-term", action="store_true",
                   help="only the configured term counts, not k = 1..T")
    p.add_argument("--check", choices=("golden",), help="check every layer of the first input "
                   "against the golden model")
    p.add_argument("--dump-tiles", metavar="DIR", help="write GEMM tiles of chosen layers")
    p.add_argument("--tile-shape", default="8x8", metavar="KxN", help="tile K x N")
    p.add_argument("--tile-layers", default=None,
                   help="comma-separated layers to cut into tiles (default: the first two "
                        "ungrouped conv layers)")
    p.add_argument("--tile-rows", type=int, default=8, help="output positions (M) per tile")
    p.add_argument("--max-tiles", type=int, default=64, help="tiles per layer at most")
    p.add_argument("--json", metavar="OUT", help="write the results as JSON")
    p.set_defaults(func=main)


def parse_override(text: str, scale: str):
    """``NODE=WBxWT/ABxAT`` -> ``(node, LayerFormats)``; InputError naming the text."""
    from ..expansion import LayerFormats
    try:
        node, spec = text.split("=", 1)
        w, a = spec.split("/")
        wb, wt = (int(v) for v in w.lower().split("x"))
        ab, at = (int(v) for v in a.lower().split("x"))
    except ValueError:
        raise InputError(f"--override {text!r}: expected NODE=WBITSxWTERMS/ABITSxATERMS, "
                         f"e.g. conv1=8x2/8x2") from None
    return node, LayerFormats(SeriesFormat(wb, wt, scale, per_channel=True),
                              SeriesFormat(ab, at, scale))


def load_network(model: str, weights: str | None = None):
    """``(unfolded graph, ModelInfo or None)`` for a zoo name or an ONNX file."""
    if model.lower().endswith(".onnx"):
        from ..io.onnx_import import load_onnx
        if weights:
            raise InputError("--weights applies to zoo models; an ONNX file carries its own")
        return load_onnx(model, fold_bn=False), None
    from ..models import build_model, get_model_info
    info = get_model_info(model)
    return build_model(model, weights, fold_bn=False), info


def input_range(info):
    """Exact real range of the preprocessed input for a zoo model (None if unknown)."""
    if info is None:
        return None
    if info.mean is None:
        return (0.0, 1.0)
    m, s = np.asarray(info.mean), np.asarray(info.std)
    return float(np.min(-m / s)), float(np.max((1 - m) / s))


def load_inputs(graph, info, images: int | None, files):
    """``(x, labels or None, names)`` of the inputs to simulate."""
    if files:
        from ..io.images import load_image, preprocess_gray, preprocess_rgb
        c, h, _ = graph.input_shape
        xs = []
        for f in files:
            if c == 1:
                xs.append(preprocess_gray(load_image(f, "L"), size=h))
            else:
                kw = {} if info is None or info.mean is None else dict(mean=info.mean,
                                                                       std=info.std)
                xs.append(preprocess_rgb(load_image(f), size=h,
                                         resize=int(round(h * 256 / 224)), **kw))
        return np.stack(xs).astype(np.float32), None, tuple(str(f) for f in files)
    from ..models import sample_inputs
    kw = {}
    if info is not None:
        kw = dict(task=info.task, mean=info.mean, std=info.std)
    s = sample_inputs(graph.input_shape, limit=images, **kw)
    return s.x, s.labels, s.names


def progress(done: int, total: int, start: float, label: str = "") -> None:
    """A plain one-line progress bar on stderr (only when stderr is a terminal or forced)."""
    if total <= 1 or not sys.stderr.isatty():
        return
    width = 30
    fill = int(width * done / total)
    rate = done / max(time.perf_counter() - start, 1e-9)
    sys.stderr.write(f"\r{label} [{'#' * fill}{'.' * (width - fill)}] {done}/{total} "
                     f"{rate:.1f}/s")
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def fidelity(ref: np.ndarray, got: np.ndarray, labels=None) -> dict:
    """Top-1 agreement, logit SQNR (dB) and accuracy of ``got`` against float ``ref``."""
    from ..series import sqnr_db
    ref = ref.reshape(ref.shape[0], -1)
    got = got.reshape(got.shape[0], -1)
    agree = float(np.mean(ref.argmax(1) == got.argmax(1)))
    acc = None if labels is None else float(np.mean(got.argmax(1) == np.asarray(labels)))
    return {"top1_agreement": agree, "logit_sqnr_db": sqnr_db(ref, got), "accuracy": acc}


def _batched(fn, x, batch, label):
    outs = []
    start = time.perf_counter()
    for i in range(0, x.shape[0], batch):
        outs.append(fn(x[i:i + batch]))
        progress(min(i + batch, x.shape[0]), x.shape[0], start, label)
    return np.concatenate(outs)


def run_simulation(graph, x, w_fmt, a_fmt, level="layer", *, labels=None, ref=None,
                   batch=8, threads=None, backend="auto", per_term=True, overrides=None,
                   in_range=None, calibration=None, rounding="rne", label="simulate"):
    """Expand and run ``graph`` on ``x`` for k = 1..T terms; returns ``(rows, last)``.

    ``rows`` has one dict per k (``w_terms``, ``a_terms``, fidelity figures, ``seconds``);
    ``last`` is ``(program or TensorExpansion, simulator or None, outputs)`` of the
    configured formats.
    """
    from ..expansion import expand_graph
    from ..float_exec import FloatExecutor
    from ..intsim import Simulator
    if ref is None:
        ex = FloatExecutor(graph)
        ref = _batched(ex, x, batch, "float")
    kmax = max(w_fmt.terms, a_fmt.terms)
    ks = range(1, kmax + 1) if per_term else [kmax]
    rows, last = [], None
    for k in ks:
        wf, af = w_fmt.with_terms(min(k, w_fmt.terms)), a_fmt.with_terms(min(k, a_fmt.terms))
        t0 = time.perf_counter()
        exp = expand_graph(graph, wf, af, level, overrides=overrides, input_range=in_range,
                           calibration=calibration, mode=rounding)
        if level == "tensor":
            sim = None
            ex = exp.executor()
            out = _batched(ex, x, batch, f"{label} k={k}")
        else:
            sim = Simulator(exp, backend=backend, threads=threads)
            out = _batched(sim.logits, x, batch, f"{label} k={k}")
        secs = time.perf_counter() - t0
        row = {"w_terms": wf.terms, "a_terms": af.terms, **fidelity(ref, out, labels),
               "seconds": secs}
        rows.append(row)
        last = (exp, sim, out)
    return rows, last, ref


def golden_check(program, sim, x) -> dict:
    """Every layer of the first input of ``x``, recomputed by the golden model from the fast
    simulator's own inputs to that layer: ``{"layers_checked", "mismatches", "first"}``."""
    from .. import golden
    _, env = sim.run(x[:1], capture=True)
    tensors = {q.name: q.out for q in program.layers}
    checked, bad, first = 0, 0, None
    for q in program.layers:
        if q.op == "quantize":
            want = program.quantize_input(x[:1])
        else:
            want = golden.run_layer(q, [env[i] for i in q.inputs], tensors, program.level)
        checked += 1
        if not np.array_equal(np.asarray(want, dtype=np.int64), env[q.name].astype(np.int64)):
            bad += 1
            if first is None:
                diff = np.argwhere(np.asarray(want) != env[q.name])[0]
                first = {"layer": q.name, "element": [int(v) for v in diff]}
    return {"layers_checked": checked, "mismatches": bad, "first": first}


def dump_tiles(program, sim, x, out_dir, tile_shape: str, layers, rows: int, max_tiles: int):
    """Write tiles of ``layers`` (default: the first two ungrouped convs) to ``out_dir``."""
    from ..tile import save_tile
    from ..golden import reference_tile
    from ..intsim import extract_tiles, run_tile
    try:
        tk, tn = (int(v) for v in tile_shape.lower().split("x"))
    except ValueError:
        raise InputError(f"--tile-shape {tile_shape!r}: expected KxN, e.g. 8x8") from None
    if layers is None:
        layers = [q.name for q in program.layers
                  if q.op == "conv" and q.attrs["groups"] == 1][:2]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    index = []
    for name in layers:
        tiles = extract_tiles(program, name, x[:1], tk, tn, rows, sim)[:max_tiles]
        for i, (tile, info) in enumerate(tiles):
            res = run_tile(tile)
            if i == 0:                                   # spot-check against the golden tile
                ref = reference_tile(tile)
                if not np.array_equal(ref.out, res.out) or not np.array_equal(ref.acc, res.acc):
                    raise InputError(f"tile {name}#{i}: fast and golden tiles differ")
            fname = f"{name.replace('/', '_')}_{i:04d}.npz"
            save_tile(out / fname, tile, res)
            index.append({"file": fname, **info, "k": tile.k, "n": tile.n, "m": tile.m})
    (out / "index.json").write_text(json.dumps(index, indent=1))
    return index


def main(args: argparse.Namespace) -> int:
    """Run the command; returns the exit status."""
    t_start = time.perf_counter()
    overrides = dict(parse_override(o, args.scale) for o in args.override)
    graph, info = load_network(args.model, args.weights)
    x, labels, names = load_inputs(graph, info, args.images, args.input)
    w_fmt = SeriesFormat(args.w_bits, args.w_terms, args.scale, per_channel=not args.per_tensor)
    a_fmt = SeriesFormat(args.a_bits, args.a_terms, args.scale)
    calib = x[:args.calibrate] if args.calibrate else None
    rows, (exp, sim, _), _ = run_simulation(
        graph, x, w_fmt, a_fmt, args.level, labels=labels, batch=args.batch,
        threads=args.threads, backend=args.backend, per_term=not args.no_per_term,
        overrides=overrides, in_range=input_range(info), calibration=calib,
        rounding=args.rounding)
    model_name = info.name if info is not None else args.model
    print(f"{model_name}: {args.level}-level W{args.w_bits}x{args.w_terms} / "
          f"A{args.a_bits}x{args.a_terms} ({args.scale}), {x.shape[0]} input(s)"
          + (f", backends {sorted(set(sim.backends().values()))}" if sim else ""))
    table = [[f"W x{r['w_terms']} / A x{r['a_terms']}", f"{100 * r['top1_agreement']:.1f} %",
              fmt_db(r["logit_sqnr_db"]),
              "-" if r["accuracy"] is None else f"{100 * r['accuracy']:.1f} %",
              f"{r['seconds']:.1f}"] for r in rows]
    print(format_table(["terms", "top-1 agree", "logit SQNR dB", "accuracy", "s"], table))
    result = {"model": model_name, "level": args.level, "w_bits": args.w_bits,
              "w_terms": args.w_terms, "a_bits": args.a_bits, "a_terms": args.a_terms,
              "scale": args.scale, "images": int(x.shape[0]),
              "top1_agreement": rows[-1]["top1_agreement"],
              "logit_sqnr_db": rows[-1]["logit_sqnr_db"], "accuracy": rows[-1]["accuracy"],
              "per_term": rows, "golden_check": None}
    if args.check == "golden":
        if sim is None:
            raise InputError("--check golden needs --level layer or model (tensor level runs "
                             "in float)")
        gc = golden_check(exp, sim, x)
        result["golden_check"] = gc
        print(f"golden check: {gc['layers_checked']} layers, {gc['mismatches']} mismatches"
              + (f" (first: {gc['first']})" if gc["first"] else ""))
    if args.dump_tiles:
        if sim is None:
            raise InputError("--dump-tiles needs --level layer or model")
        layers = args.tile_layers.split(",") if args.tile_layers else None
        index = dump_tiles(exp, sim, x, args.dump_tiles, args.tile_shape, layers,
                           args.tile_rows, args.max_tiles)
        result["tiles"] = len(index)
        print(f"wrote {len(index)} tiles to {args.dump_tiles}")
    result["seconds"] = time.perf_counter() - t_start
    if args.json:
        write_json(args.json, result)
    return 1 if result["golden_check"] and result["golden_check"]["mismatches"] else 0
