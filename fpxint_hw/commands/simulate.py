"""``fpxint simulate``: run a network's series expansion bit-exactly and measure its fidelity.

Loads a zoo model (or an ONNX file), compiles it for an array spec (``--spec``: every
format, the rounding and the multiplier width from the spec) or for the formats given by the
flags, runs the integer program with the fast simulator on sample inputs, and reports, per
number of terms k = 1..T, the top-1 agreement with the float model and the logit SQNR (plus
accuracy where the inputs have labels). ``--check golden`` re-computes every layer of the
first input with the golden model; ``--dump-tiles`` writes real layers cut into GEMM tiles
for RTL replay. ``--dataset`` scores a user's image folder or labels file instead, in
batches that a killed run resumes (``--state``) and that ``--executor dask`` spreads over a
cluster.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from ..errors import InputError
from ..intops import ROUNDING_MODES
from ..intsim import BACKENDS
from ..quant import LEVELS, RANGE_RULES
from ..report import fmt_db, format_table, write_json
from ..spec import SCALE_MODES, SeriesFormat, load_array_spec

from . import (DefaultsHelp, add_input_option, add_input_shape_option, add_model_option,
               add_weights_option, only_with, positive_int)

__all__ = ["register", "main", "add_program_options", "check_program_options",
           "program_formats", "program_overrides", "split_calibration"]

#: Format flags and their defaults when no ``--spec`` is given.
FORMAT_DEFAULTS = {"w_bits": 4, "w_terms": 2, "a_bits": 4, "a_terms": 2, "scale": "pow2",
                   "rounding": "rne", "m0_bits": 31}


def register(subparsers) -> None:
    """Add the ``simulate`` subcommand."""
    p = subparsers.add_parser(
        "simulate", help="run a network's integer series expansion bit-exactly",
        description=__doc__.split("\n\n")[0],
        formatter_class=DefaultsHelp)
    add_model_option(p)
    add_weights_option(p)
    add_input_shape_option(p)
    add_program_options(p)
    p.add_argument("--images", type=positive_int, default=None, metavar="N",
                   help="number of built-in sample inputs (default: all)")
    p.add_argument("--text", action="append", default=None, metavar="SENTENCE",
                   help="a sentence for a text model (minilm); repeat for more (default: "
                        "a fixed list of 8)")
    add_input_option(p)
    p.add_argument("--batch", type=positive_int, default=8, help="inputs per simulator call")
    p.add_argument("--threads", type=positive_int, default=None, help="simulator threads")
    p.add_argument("--backend", default="auto", choices=BACKENDS,
                   help="GEMM backend of the simulator, each used only where proved exact: "
                   "auto (the fastest), vnni (the AVX512-VNNI kernel), ort (onnxruntime), "
                   "f32 / f64 (float BLAS), int (int64 kernel)")
    p.add_argument("--no-per-term", action="store_true",
                   help="only the configured term counts, not k = 1..T")
    p.add_argument("--check", choices=("golden",), help="check every layer of the first input "
                   "against the golden model")
    p.add_argument("--save-outputs", metavar="F.npz",
                   help="write the float inputs the program ran on ('inputs', NCHW float32, "
                        "as 'fpxint export' graphs take them) and its integer output for "
                        "each ('int_output')")
    p.add_argument("--dump-tiles", metavar="DIR", help="write GEMM tiles of chosen layers")
    p.add_argument("--tile-shape", default=None, metavar="KxN",
                   help="tile K x N (default 8x8; with --dump-tiles, as the three below)")
    p.add_argument("--tile-layers", default=None,
                   help="comma-separated layers to cut into tiles (default: the first two "
                        "ungrouped conv layers)")
    p.add_argument("--tile-rows", type=positive_int, default=None,
                   help="output positions (M) per tile (default 8)")
    p.add_argument("--max-tiles", type=positive_int, default=None,
                   help="tiles per layer at most (default 64)")
    add_dataset_options(p)
    p.add_argument("--json", metavar="OUT", help="write the results as JSON")
    p.set_defaults(func=main)


def add_program_options(p) -> None:
    """The options that choose the integer program, shared by ``simulate`` and ``export``
    (so both compile the same program from the same flags): the spec or the formats,
    per-layer overrides, the range rule and calibration."""
    p.add_argument("--spec", metavar="SPEC",
                   help="compile for this array spec (a YAML file or a shipped name such as "
                        "default): its formats, rounding and m0_bits; excludes the format "
                        "flags below")
    fmt = p.add_argument_group("formats without --spec")
    fmt.add_argument("--w-bits", type=int, help="bits per weight term (default 4)")
    fmt.add_argument("--w-terms", type=int, help="weight terms T_w (default 2)")
    fmt.add_argument("--a-bits", type=int, help="bits per activation term (default 4)")
    fmt.add_argument("--a-terms", type=int, help="activation terms T_a (default 2)")
    fmt.add_argument("--scale", choices=SCALE_MODES, help="lane ratio mode (default pow2)")
    fmt.add_argument("--rounding", choices=ROUNDING_MODES,
                     help="rounding of every requantization (default rne)")
    fmt.add_argument("--m0-bits", type=int,
                     help="bits of each requantization multiplier, 2..31 (default 31)")
    p.add_argument("--per-tensor", action="store_true",
                   help="one weight scale per tensor (default: per output channel)")
    p.add_argument("--level", choices=LEVELS, default="layer", help="expansion granularity")
    p.add_argument("--override", action="append", default=[], metavar="NODE=WBxWT/ABxAT",
                   help="per-layer formats, e.g. conv1=8x2/8x2 (weights of NODE / its "
                        "output activations; for the input node only the second part counts)")
    p.add_argument("--overrides", metavar="FILE",
                   help="per-layer formats from a YAML file (as 'fpxint allocate' writes); "
                        "--override entries win over it")
    p.add_argument("--range-rule", choices=RANGE_RULES, default=RANGE_RULES[0],
                   help="calibration-free activation ranges: mse (the squared-error optimum "
                        "for each grid's resolution; widens with the terms) or sigma (mean "
                        "+- z std of the BatchNorm statistics)")
    p.add_argument("--range-sigmas", type=float, default=None, metavar="Z",
                   help="the sigma rule's z (default 4; only with --range-rule sigma)")
    p.add_argument("--calibrate", type=int, default=0, metavar="N",
                   help="set activation ranges from the min/max over the first N inputs, "
                        "which are then left out of the scores (default 0: "
                        "calibration-free)")


def program_formats(args):
    """``(spec or None, spec name, w_fmt, a_fmt)`` from the options of
    :func:`add_program_options`."""
    given = [k for k in FORMAT_DEFAULTS if getattr(args, k) is not None]
    if args.spec:
        if given:
            raise InputError(f"--{given[0].replace('_', '-')} does not apply with --spec "
                             f"{args.spec}: the spec sets every format; edit the spec or drop "
                             f"--spec")
        return load_array_spec(args.spec), args.spec, None, None
    for k, v in FORMAT_DEFAULTS.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    w_fmt = SeriesFormat(args.w_bits, args.w_terms, args.scale, per_channel=not args.per_tensor)
    return None, None, w_fmt, SeriesFormat(args.a_bits, args.a_terms, args.scale)


def check_program_options(args) -> None:
    """Refuse a program option that does not apply (``--range-sigmas`` without the sigma
    rule), then fill in its default."""
    only_with(args, [("range_sigmas", "--range-sigmas", args.range_rule == "sigma",
                      "--range-rule sigma")], {"range_sigmas": 4.0})


def program_overrides(args, spec) -> dict:
    """Per-layer formats from ``--overrides FILE`` and ``--override`` (which win), in the
    program's scale mode; call after :func:`program_formats`."""
    from ..quant.overrides import load_overrides, parse_override
    scale = spec.scale if spec is not None else args.scale
    overrides = load_overrides(args.overrides) if args.overrides else {}
    overrides.update(parse_override(o, scale) for o in args.override)
    return overrides


def split_calibration(args, x, labels):
    """``(calibration inputs or None, scored inputs, their labels)``: ``--calibrate N``
    takes the first N inputs for the ranges and leaves them out of the rest."""
    if not args.calibrate:
        return None, x, labels
    if not 0 < args.calibrate < x.shape[0]:
        raise InputError(f"--calibrate {args.calibrate}: needs 1 to {x.shape[0] - 1} of the "
                         f"{x.shape[0]} inputs (the rest are scored); ask for more "
                         f"--images")
    labels = None if labels is None else labels[args.calibrate:]
    return x[:args.calibrate], x[args.calibrate:], labels


def main(args: argparse.Namespace) -> int:
    """Run the command; returns the exit status."""
    if dataset_requested(args):
        return main_dataset(args)
    if args.model == "minilm":
        return main_text(args)
    if args.text:
        raise InputError(f"--text applies to text models (minilm), not {args.model!r}")
    from ..workflows.network import input_range, load_inputs, load_network
    tiles = bool(args.dump_tiles)
    check_program_options(args)
    only_with(args, [(d, f"--{d.replace('_', '-')}", tiles, "--dump-tiles")
                     for d in ("tile_shape", "tile_layers", "tile_rows", "max_tiles")],
              {"tile_shape": "8x8", "tile_rows": 8, "max_tiles": 64})
    from ..workflows.simulate import golden_check, int_outputs, run_simulation
    from ..workflows.tiles import dump_tiles, parse_tile_shape
    t_start = time.perf_counter()
    spec, spec_name, w_fmt, a_fmt = program_formats(args)
    overrides = program_overrides(args, spec)
    if args.save_outputs and args.level == "tensor":
        raise InputError("--save-outputs needs --level layer or model (tensor level runs in "
                         "float and has no integer output)")
    if args.dump_tiles:
        parse_tile_shape(args.tile_shape)
    graph, info = load_network(args.model, args.weights, args.input_shape)
    x, labels, names = load_inputs(graph, info, args.images, args.input)
    calib, x, labels = split_calibration(args, x, labels)
    rows, (exp, sim, _), _ = run_simulation(
        graph, x, w_fmt, a_fmt, args.level, spec=spec, spec_name=spec_name, labels=labels,
        batch=args.batch, threads=args.threads, backend=args.backend,
        per_term=not args.no_per_term, overrides=overrides, in_range=input_range(info),
        calibration=calib, rounding=args.rounding, multiplier_bits=args.m0_bits,
        per_channel=not args.per_tensor, range_rule=args.range_rule,
        range_sigmas=args.range_sigmas)
    model_name = info.name if info is not None else args.model
    what = _program_text(args, spec, spec_name, w_fmt, a_fmt, overrides)
    ranges = (f"ranges calibrated on {args.calibrate} other input(s)" if calib is not None
              else f"calibration-free {args.range_rule} ranges")
    print(f"{model_name}: {args.level}-level, {what}, {ranges}, {x.shape[0]} input(s)"
          + (f", backends {sorted(set(sim.backends().values()))}" if sim else ""))
    table = [[f"W x{r['w_terms']} / A x{r['a_terms']}", f"{100 * r['top1_agreement']:.1f} %",
              fmt_db(r["logit_sqnr_db"]),
              "-" if r["accuracy"] is None else f"{100 * r['accuracy']:.1f} %",
              f"{r['seconds']:.1f}"] for r in rows]
    print(format_table(["terms", "top-1 agree", "logit SQNR dB", "accuracy", "s"], table))
    result_fmt = _formats_record(args, spec, spec_name, w_fmt, a_fmt)
    result = {"model": model_name, "level": args.level, **result_fmt,
              "images": int(x.shape[0]), "top1_agreement": rows[-1]["top1_agreement"],
              "logit_sqnr_db": rows[-1]["logit_sqnr_db"], "accuracy": rows[-1]["accuracy"],
              "per_term": rows, "golden_check": None,
              "ranges": {"rule": None if calib is not None else args.range_rule,
                         "range_sigmas": args.range_sigmas if args.range_rule == "sigma"
                         else None,
                         "calibration_inputs": args.calibrate}}
    if sim is not None:
        result["ranges"]["proven_tensors"] = len(exp.proven)
        result["ranges"]["tensors"] = len(exp.ranges)
    target = getattr(exp, "target", None)
    if target is not None:
        gemms = len(exp.gemm_layers())
        result["array_layers"] = gemms - len(target.misfits)
        result["host_layers"] = dict(target.misfits)
        print(f"{gemms - len(target.misfits)} of {gemms} conv/linear layers fit the array"
              + "".join(f"\n  {name}: {why}" for name, why in target.misfits.items()))
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
    if args.save_outputs:
        from ..outputs import write_npz
        ints = int_outputs(sim, x, args.batch)
        write_npz(args.save_outputs, {"inputs": np.ascontiguousarray(x, dtype=np.float32),
                                      "int_output": ints})
        result["saved_outputs"] = args.save_outputs
        print(f"wrote {args.save_outputs}: {x.shape[0]} inputs and their integer outputs "
              f"{ints.shape}")
    result["seconds"] = time.perf_counter() - t_start
    if args.json:
        write_json(args.json, result)
    return 1 if result["golden_check"] and result["golden_check"]["mismatches"] else 0


def main_text(args: argparse.Namespace) -> int:
    """``fpxint simulate --model minilm``: each sentence's integer program in the simulator,
    per term count the embedding cosine with float and the pair-similarity ranking; with
    ``--check golden`` every tensor of the first sentence against the golden model."""
    from ..models.minilm import load_minilm
    from ..workflows.simulate import MINILM_SENTENCES, minilm_fidelity
    for flag, dest in (("--spec", "spec"), ("--dump-tiles", "dump_tiles"),
                       ("--save-outputs", "save_outputs"), ("--input", "input"),
                       ("--calibrate", "calibrate"), ("--override", "override"),
                       ("--overrides", "overrides")):
        if getattr(args, dest, None):
            raise InputError(f"{flag} is not supported with --model minilm (sentences run one "
                             f"graph per length; give formats with --w-bits/--a-bits ...)")
    check_program_options(args)
    if args.check == "golden" and args.level == "tensor":
        raise InputError("--check golden needs --level layer or model (tensor level runs in "
                         "float)")
    t_start = time.perf_counter()
    _, _, w_fmt, a_fmt = program_formats(args)
    texts = list(args.text) if args.text else list(MINILM_SENTENCES)
    if args.images:
        texts = texts[:args.images]
    res = minilm_fidelity(texts, w_fmt, a_fmt, args.level, model=load_minilm(args.weights),
                          terms=[max(w_fmt.terms, a_fmt.terms)] if args.no_per_term else None,
                          check_golden=args.check == "golden", rounding=args.rounding,
                          range_rule=args.range_rule, threads=args.threads)
    print(f"minilm: {args.level}-level, W{w_fmt.bits}x{w_fmt.terms} / A{a_fmt.bits}x"
          f"{a_fmt.terms}, calibration-free {args.range_rule} ranges, {len(texts)} "
          f"sentence(s) of {min(res['tokens'])}..{max(res['tokens'])} tokens")
    table = [[f"W x{r['w_terms']} / A x{r['a_terms']}"]
             + (["refused", "-", "-"] if r["error"] else
                [f"{r['mean_cosine']:.4f}", f"{r['min_cosine']:.4f}", f"{r['spearman']:.3f}"])
             + [f"{r['seconds']:.1f}"] for r in res["rows"]]
    print(format_table(["terms", "mean cosine", "min cosine", "pair Spearman", "s"], table))
    for r in res["rows"]:
        if r["error"]:
            print(f"  W x{r['w_terms']} / A x{r['a_terms']}: {r['error']}")
    gc = res["golden_check"]
    if args.check == "golden":
        if gc is None:
            raise InputError("--check golden: the full-term program was refused; nothing "
                             "to check")
        print(f"golden check: {gc['layers_checked']} layers, {gc['mismatches']} mismatches"
              + (f" (first: {gc['first']})" if gc["first"] else ""))
    result = {"model": "minilm", "level": args.level, "w_bits": w_fmt.bits,
              "w_terms": w_fmt.terms, "a_bits": a_fmt.bits, "a_terms": a_fmt.terms,
              "sentences": texts, "tokens": res["tokens"], "per_term": res["rows"],
              "golden_check": gc, "seconds": time.perf_counter() - t_start}
    if args.json:
        write_json(args.json, result)
    return 1 if gc and gc["mismatches"] else 0


def _program_text(args, spec, spec_name, w_fmt, a_fmt, overrides) -> str:
    """The formats a run compiles for, as the first line of its report says them."""
    if spec is not None:
        text = (f"compiled for array {spec_name} ({spec.rows}x{spec.cols}, W{spec.w_bits}x"
                f"{spec.w_terms} / A{spec.a_bits}x{spec.a_terms} {spec.scale}, M0 "
                f"{spec.m0_bits} bits, {spec.rounding})")
    else:
        text = (f"W{w_fmt.bits}x{w_fmt.terms} / A{a_fmt.bits}x{a_fmt.terms} ({w_fmt.scale}, "
                f"M0 {args.m0_bits} bits, {args.rounding})")
    return text + (f", {len(overrides)} per-layer override(s)" if overrides else "")


def _formats_record(args, spec, spec_name, w_fmt, a_fmt) -> dict:
    """The formats a run compiles for, as its JSON record gives them."""
    if spec is not None:
        from ..quant import program_options
        return {"spec": spec_name, "spec_fields": spec.to_dict(),
                "program_options": program_options(
                    spec, per_channel=not args.per_tensor).to_dict(),
                "w_bits": spec.w_bits, "w_terms": spec.w_terms, "a_bits": spec.a_bits,
                "a_terms": spec.a_terms, "scale": spec.scale, "rounding": spec.rounding,
                "m0_bits": spec.m0_bits}
    return {"spec": None, "w_bits": w_fmt.bits, "w_terms": w_fmt.terms, "a_bits": a_fmt.bits,
            "a_terms": a_fmt.terms, "scale": w_fmt.scale, "rounding": args.rounding,
            "m0_bits": args.m0_bits}


# -- --dataset: a user's image folder or labels file, in resumable batches -------------------

#: The options that apply only with --dataset (dest, flag).
DATASET_OPTIONS = (("synsets", "--synsets"), ("state", "--state"), ("skip_bad", "--skip-bad"),
                   ("executor", "--executor"), ("scheduler", "--scheduler"))


def add_dataset_options(p) -> None:
    """The options of ``simulate --dataset`` (:mod:`fpxint_hw.workflows.dataset`)."""
    g = p.add_argument_group("a dataset on disk, scored in resumable batches")
    g.add_argument("--dataset", metavar="DIR|FILE",
                   help="score the images of an image folder (a subfolder per class; class i "
                        "is the i-th folder by name, as torchvision's ImageFolder) or of a "
                        "labels file of 'relative/path label' lines, --batch images at a "
                        "time; --images N takes the first N, the classes in turn")
    g.add_argument("--synsets", metavar="FILE",
                   help="the model's classes in output order, one a line (its first word; "
                        "e.g. ImageNet's 1000 synset ids, LOC_synset_mapping.txt): class "
                        "folders and labels are then looked up by name")
    g.add_argument("--state", metavar="DIR",
                   help="folder of finished batches: a killed run resumes from it, a run "
                        "with other settings is refused (default: beside --json, r.json -> "
                        "r.state; without either nothing is kept)")
    g.add_argument("--skip-bad", action="store_true", default=None,
                   help="leave out, and report, files that are not readable images "
                        "(default: refuse the dataset, naming them)")
    g.add_argument("--executor", choices=("local", "dask"), default=None,
                   help="where batches run: local (default), or dask: a Dask cluster (pip "
                        "install 'fpxint-hw[dask]'; workers must see the files at the same "
                        "paths)")
    g.add_argument("--scheduler", metavar="ADDR",
                   help="Dask scheduler address (default: a local cluster, one worker per "
                        "core)")


def dataset_requested(args) -> bool:
    """Whether the run is a ``--dataset`` run (or names one of its options)."""
    return getattr(args, "dataset", None) is not None or any(
        getattr(args, d, None) is not None for d, _ in DATASET_OPTIONS)


def _check_dataset_options(args) -> None:
    only_with(args, [(d, f, args.dataset is not None, "--dataset") for d, f in DATASET_OPTIONS]
              + [("scheduler", "--scheduler", args.executor == "dask", "--executor dask")],
              {"executor": "local", "skip_bad": False})
    for dest, flag in (("input", "--input"), ("calibrate", "--calibrate"), ("check", "--check"),
                       ("save_outputs", "--save-outputs"), ("dump_tiles", "--dump-tiles"),
                       ("tile_shape", "--tile-shape"), ("tile_layers", "--tile-layers"),
                       ("tile_rows", "--tile-rows"), ("max_tiles", "--max-tiles")):
        if getattr(args, dest, None):
            why = ("the dataset gives the images" if dest == "input" else
                   "dataset runs take the calibration-free ranges of --range-rule"
                   if dest == "calibrate" else
                   "it works on in-memory inputs: give a few of the images with --input")
            raise InputError(f"{flag} does not apply with --dataset ({why}); drop {flag}")


def _refuse_state_inside(state, listing, args) -> None:
    """A state folder inside an image folder would be listed as a class next time."""
    if state is None or listing.class_names is None:
        return
    from pathlib import Path
    s, root = Path(state).resolve(), listing.root.resolve()
    if s == root or root in s.parents:
        given = "--state" if args.state else f"the state folder beside --json {args.json}"
        raise InputError(f"{given} {state} is inside the dataset folder {listing.source}: its "
                         f"files would be listed as images; put it elsewhere with --state DIR")


def main_dataset(args: argparse.Namespace) -> int:
    """``simulate --dataset``: score the dataset in batches; returns the exit status."""
    import os

    from ..io.dataset import list_dataset, read_class_list
    from ..workflows.dataset import (DatasetConfig, default_state_dir, evaluate_dataset,
                                     num_classes)
    from ..workflows.network import load_network
    _check_dataset_options(args)
    check_program_options(args)
    t_start = time.perf_counter()
    spec, spec_name, w_fmt, a_fmt = program_formats(args)
    overrides = program_overrides(args, spec)
    state = args.state or (str(default_state_dir(args.json)) if args.json else None)
    if args.input_shape is not None:
        raise InputError("--input-shape does not combine with --dataset (the dataset run "
                         "reloads the model by name); export the ONNX file with a fixed "
                         "input shape")
    graph, info = load_network(args.model, args.weights)
    classes = num_classes(graph)
    class_list = read_class_list(args.synsets, classes) if args.synsets else None
    listing = list_dataset(args.dataset, classes, class_list=class_list,
                           skip_bad=args.skip_bad)
    _refuse_state_inside(state, listing, args)
    model = os.path.abspath(args.model) if args.model.lower().endswith(".onnx") else args.model
    program = (dict(spec=spec, spec_name=spec_name, per_channel=not args.per_tensor)
               if spec is not None else
               dict(w_fmt=w_fmt, a_fmt=a_fmt, rounding=args.rounding,
                    multiplier_bits=args.m0_bits))
    config = DatasetConfig(model, args.weights and os.path.abspath(args.weights),
                           level=args.level, overrides=tuple(sorted(overrides.items())),
                           range_rule=args.range_rule, range_sigmas=args.range_sigmas,
                           per_term=not args.no_per_term, batch=args.batch, **program)
    model_name = info.name if info is not None else args.model
    layout = "image folder" if listing.class_names is not None else "labels file"
    print(f"{model_name}: {args.level}-level, "
          f"{_program_text(args, spec, spec_name, w_fmt, a_fmt, overrides)}, "
          f"calibration-free {args.range_rule} ranges")
    print(f"{args.dataset} ({layout}): {len(listing)} images of {classes} classes"
          + (f", {len(listing.skipped)} file(s) left out" if listing.skipped else "")
          + (f"; state in {state}" if state else "; no --state or --json: not resumable"))
    res = evaluate_dataset(config, listing, state=state, executor=args.executor,
                           scheduler=args.scheduler, backend=args.backend,
                           threads=args.threads, images=args.images, skip_bad=args.skip_bad,
                           network=(graph, info))

    def pct(v):
        return "-" if v is None else f"{100 * v:.1f} %"

    table = [["float", "-", "-", pct(res.float_accuracy), pct(res.float_top5_accuracy)]]
    table += [[f"W x{r['w_terms']} / A x{r['a_terms']}", pct(r["top1_agreement"]),
               "-" if r["logit_sqnr_db"] is None else fmt_db(r["logit_sqnr_db"]),
               pct(r["accuracy"]), pct(r["top5_accuracy"])] for r in res.rows]
    print(format_table(["terms", "top-1 agree", "logit SQNR dB", "accuracy", "top-5"], table))
    speed = (f" at {res.images_per_s:.2f} images/s" if res.images_per_s is not None else "")
    print(f"{res.images} images scored: {res.ran} batch(es) of {args.batch} computed now{speed}"
          f" ({args.executor}), {res.reused} loaded from {state}" if state else
          f"{res.images} images scored: {res.ran} batch(es) of {args.batch}{speed} "
          f"({args.executor})")
    if res.recomputed:
        print(f"{len(res.recomputed)} unreadable batch file(s) computed again: "
              f"{', '.join(res.recomputed[:3])}")
    if res.bad:
        print(f"{len(res.bad)} file(s) left out (--skip-bad): "
              + "; ".join(why for _, why in res.bad[:3])
              + (" ..." if len(res.bad) > 3 else ""))
    last = res.rows[-1]
    result = {"model": model_name, "level": args.level,
              **_formats_record(args, spec, spec_name, w_fmt, a_fmt),
              "dataset": {"path": args.dataset, "layout": layout, "classes": classes,
                          "listed": len(listing), "synsets": args.synsets,
                          "executor": args.executor},
              "top1_agreement": last["top1_agreement"], "logit_sqnr_db": last["logit_sqnr_db"],
              "accuracy": last["accuracy"], "top5_accuracy": last["top5_accuracy"],
              "ranges": {"rule": args.range_rule,
                         "range_sigmas": args.range_sigmas if args.range_rule == "sigma"
                         else None, "calibration_inputs": 0},
              **res.to_dict(), "seconds": time.perf_counter() - t_start}
    if args.json:
        write_json(args.json, result)
    return 0
