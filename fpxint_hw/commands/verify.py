"""``fpxint verify``: run tile files, random tiles or a whole network through the generated
hardware."""

from __future__ import annotations

import argparse

from ..errors import FormatError
from ..flow.verify import BACKENDS
from ..models import model_names
from . import (add_input_option, add_input_shape_option, add_spec_option, add_weights_option,
               positive_int)

__all__ = ["register"]


def register(subparsers) -> None:
    """Add the ``verify`` subcommand."""
    p = subparsers.add_parser(
        "verify", help="run tiles or a whole network through the generated RTL, bit for bit",
        description="Run GEMM tiles through the exported Verilog (Verilator) or the Amaranth "
                    "simulation of an array spec, and compare acc, out and output digits with "
                    "the tiles' expected results (or the golden model when a file has none). "
                    "With --model, compile a network for the spec and run every conv and "
                    "linear layer of it on the Verilated RTL, each layer fed by the "
                    "hardware's own outputs of the layers before it (pooling, residual adds "
                    "and the input quantization on the host), compare every layer with the "
                    "simulator and stop at the first mismatch, naming layer, pass, element, "
                    "PE and lane. Exit status 1 on any mismatch.")
    add_spec_option(p)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--tiles", metavar="DIR", help="folder of tile .npz files (or one file)")
    src.add_argument("--random", type=int, metavar="N", help="N random tiles for the spec")
    src.add_argument("--model", metavar="NAME|FILE.onnx",
                     help="a whole network: a zoo model (" + ", ".join(model_names())
                          + ") or an ONNX file")
    net = p.add_argument_group("network runs (--model)")
    add_weights_option(net)
    add_input_shape_option(net)
    net.add_argument("--images", type=positive_int, default=1, metavar="N",
                     help="built-in sample inputs, batched into each layer (default 1)")
    add_input_option(net)
    net.add_argument("--layers", metavar="L1,L2,...",
                     help="only these conv/linear layers on the hardware (the others on the "
                          "host); default all")
    net.add_argument("--processes", type=positive_int, metavar="P",
                     help="harness processes per layer, on independent column blocks "
                          "(default: the CPUs available)")
    net.add_argument("--toggles", action="store_true",
                     help="count the toggles of every signal bit (Verilator "
                          "--coverage-toggle), per layer and per array block: a "
                          "switching-activity proxy for dynamic energy; the model builds "
                          "and runs several times slower")
    net.add_argument("--plot", metavar="DIR",
                     help="write the per-layer utilisation plot (png, svg) into DIR")
    p.add_argument("--json", metavar="OUT", help="also write the results as JSON")
    p.add_argument("--m", type=positive_int, default=64, metavar="M",
                   help="vectors per random tile (default 64)")
    p.add_argument("--k", type=positive_int, metavar="K",
                   help="reduction length of random tiles (default: random up to the "
                        "spec's depth, at most 8 passes)")
    p.add_argument("--backend", choices=BACKENDS, default="verilator",
                   help="RTL simulator: verilator (the exported Verilog, default), netlist "
                        "(the synthesized ECP5 netlist, with cell models, in Verilator) or "
                        "amaranth (amaranth.sim, small tiles)")
    p.add_argument("--ready", type=float, default=1.0, metavar="P",
                   help="probability per cycle that the output is ready (default 1)")
    p.add_argument("--valid", type=float, default=1.0, metavar="P",
                   help="probability per cycle that an idle input offers a beat (default 1)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--build-dir", metavar="DIR", help="Verilator build cache folder")
    p.set_defaults(func=_run)


def _random_items(spec, args):
    import numpy as np

    from ..hw.vectors import random_tile

    rng = np.random.default_rng(args.seed)
    items = []
    for i in range(args.random):
        k = args.k or int(rng.integers(1, min(spec.reduction_depth, 8 * spec.rows) + 1))
        n = int(rng.integers(1, 2 * spec.cols + 1))
        mask = rng.random((spec.w_terms, spec.a_terms)) < 0.8 if rng.random() < 0.3 else None
        items.append((f"random{i}", random_tile(spec, args.m, rng, k=k, n=n, lane_mask=mask),
                      None))
    return items


def _run_model(args: argparse.Namespace) -> int:
    from ..report import format_table, write_json
    from ..workflows.rtl_network import verify_network

    from ..flow.verify import require_verilator, check_handshake

    if args.backend != "verilator":
        raise FormatError("--model runs on --backend verilator (amaranth.sim is for small "
                          "tiles)")
    check_handshake(args.ready, args.valid)
    require_verilator()
    for opt in ("images", "processes"):
        v = getattr(args, opt)
        if v is not None and v < 1:
            raise FormatError(f"--{opt} must be >= 1, got {v}")
    layers = [s.strip() for s in args.layers.split(",") if s.strip()] if args.layers else None
    run, res = verify_network(args.model, args.spec, weights=args.weights, images=args.images,
                              files=args.input, layers=layers, processes=args.processes,
                              build_dir=args.build_dir, input_shape=args.input_shape,
                              toggles=args.toggles, ready=args.ready, valid=args.valid,
                              seed=args.seed)
    rows = [[r["node"], r["kind"], f"{r['m']}x{r['k']}x{r['n']}" + (f" g{r['groups']}"
                                                                    if r["groups"] > 1 else ""),
             r["passes"], r["cycles"], r["model_cycles"], f"{100 * r['utilisation']:.1f} %",
             *([f"{r['toggles']:,}"] if args.toggles else []),
             f"{r['seconds']:.2f}", "ok" if not r["mismatches"] else "MISMATCH"]
            for r in res["layers"]]
    print(f"{res['model']} on array {args.spec} (Verilator), {res['images']} input(s), "
          f"{res['processes']} harness process(es)")
    print(format_table(["layer", "kind", "MxKxN", "passes", "cycles", "model cycles",
                        "utilisation", *(["toggles"] if args.toggles else []), "s", ""],
                       rows))
    for name, why in res["host_layers"].items():
        print(f"host  {name}: {why}")
    if res["first_mismatch"] is not None:
        fm = res["first_mismatch"]
        print(f"MISMATCH in layer {fm['layer']!r}, pass {fm['pass']}, {fm['element']} of "
              f"output {fm['position']} channel {fm['channel']}: got {fm['got']}, expected "
              f"{fm['expected']}; PE row {fm['pe_row']}, column {fm['pe_column']}, lane "
              f"{fm['lane']}: {fm['explanation']}")
        for line in res["mismatch_lines"][:5]:
            print(f"      {line}")
    else:
        rate = res["cycles_per_second"] or 0.0
        print(f"{res['layers_checked']} of {res['gemm_layers']} conv/linear layers checked on "
              f"the RTL, 0 mismatches; final outputs equal the simulator's: "
              f"{res['outputs_equal']}")
        print(f"cycles {res['cycles']} measured, {res['model_cycles']} cycle model; "
              f"utilisation {100 * res['utilisation']:.1f} %; harness {res['hw_seconds']:.1f} s "
              f"({rate / 1e6:.3f} M cycles/s), total {res['seconds']:.1f} s")
        if res["toggles"] is not None:
            blocks = ", ".join(f"{b} {100 * n / res['toggles']:.0f} %"
                               for b, n in res["toggles_by_block"].items())
            print(f"toggles {res['toggles']:,} ({res['toggles_per_input']:,.0f} per input; "
                  f"clock excluded): {blocks}")
        for i, name in enumerate(res["inputs"] or []):
            cls = f" ({res['classes_hw'][i]})" if res["classes_hw"] else ""
            print(f"  {name}: hardware top-1 {res['top1_hw'][i]}{cls}, simulator "
                  f"{res['top1_sim'][i]}, float {res['top1_float'][i]}")
    if args.plot:
        from pathlib import Path

        from ..plots import plot_layer_utilisation
        for path in plot_layer_utilisation(res, Path(args.plot)):
            print(f"wrote {path}")
    if args.json:
        write_json(args.json, res)
    return 0 if run.ok else 1


def _run(args: argparse.Namespace) -> int:
    from ..flow.verify import load_tile_dir, verify
    from ..spec import load_array_spec

    if args.model:
        return _run_model(args)
    for opt in ("random", "m", "k"):
        v = getattr(args, opt)
        if v is not None and v < 1:
            raise FormatError(f"--{opt} must be >= 1, got {v}")
    spec = load_array_spec(args.spec)
    items = load_tile_dir(args.tiles) if args.tiles else _random_items(spec, args)
    rep = verify(spec, items, backend=args.backend, ready=args.ready, valid=args.valid,
                 seed=args.seed, build_dir=args.build_dir)
    for t in rep.tiles:
        if t.error:
            print(f"ERROR {t.name}: {t.error}")
        elif t.mismatches:
            print(f"FAIL  {t.name}: M={t.m} K={t.k} N={t.n}")
            for line in t.mismatches:
                print(f"      {line}")
        else:
            print(f"ok    {t.name}: M={t.m} K={t.k} N={t.n}, {t.passes} passes, "
                  f"{t.cycles} cycles")
    rate = rep.cycles / rep.run_seconds if rep.run_seconds else 0.0
    print(f"{rep.backend}: {len(rep.tiles)} tiles, {rep.vectors} vectors, {rep.outputs} outputs, "
          f"{rep.mismatch_count} tiles with mismatches, "
          f"{sum(1 for t in rep.tiles if t.error)} errors; build {rep.build_seconds:.1f} s, "
          f"run {rep.run_seconds:.2f} s, {rep.cycles} cycles ({rate / 1e6:.2f} M cycles/s)")
    if args.json:
        from ..report import write_json
        write_json(args.json, {
            "spec": args.spec, "backend": rep.backend, "ok": rep.ok,
            "tiles": [{"name": t.name, "m": t.m, "k": t.k, "n": t.n, "passes": t.passes,
                       "cycles": t.cycles, "mismatches": t.mismatches, "error": t.error}
                      for t in rep.tiles],
            "cycles": rep.cycles, "build_seconds": rep.build_seconds,
            "run_seconds": rep.run_seconds})
    if any(t.error for t in rep.tiles):
        return 2
    return 0 if rep.ok else 1
