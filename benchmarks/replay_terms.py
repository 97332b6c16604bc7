"""Real tiles of every shipped model replayed bit-exactly on the RTL at 3 and 4 terms.

For each model and T, the array is the shipped ``default`` spec (``signed`` if the default's
unsigned activations left no ungrouped conv layer on the array; with zero points none does)
with T weight, activation and output terms (``--array`` rows x cols, default 4x4 to keep the
Verilator build short):
the network is compiled for it through ``quant.for_array`` (the calibration-free default
ranges, whose multipliers, shifts and clamps change with T), run in the simulator on its
first built-in input, cut into GEMM tiles of two conv layers the array computes, and the
tiles run through the exported Verilog in Verilator and compared with the simulator's acc,
out and output digits. Writes docs/replay_terms.json and prints a table.

    python benchmarks/replay_terms.py [--models mnist-resnet,efficientnet-lite0,resnet50]
                                      [--terms 3,4] [--array 4x4] [--max-tiles 16]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def replay(model: str, terms: int, rows: int, cols: int, max_tiles: int, build_dir=None):
    """One model at ``terms`` terms: ``{model, terms, layers, tiles, mismatches, ...}``."""
    from fpxint_hw.flow.verify import verify
    from fpxint_hw.intsim import Simulator
    from fpxint_hw.quant import for_array
    from fpxint_hw.spec import load_array_spec
    from fpxint_hw.tile import load_tile
    from fpxint_hw.workflows.network import input_range, load_inputs, load_network
    from fpxint_hw.workflows.simulate import golden_check
    from fpxint_hw.workflows.tiles import default_tile_layers, dump_tiles
    graph, info = load_network(model, None)
    x, _, _ = load_inputs(graph, info, 1, None)
    for base in ("default", "signed"):
        spec = dataclasses.replace(load_array_spec(base), rows=rows, cols=cols, w_terms=terms,
                                   a_terms=terms, out_terms=terms)
        prog = for_array(graph, spec, name=f"{base}-{rows}x{cols}-T{terms}",
                         input_range=input_range(info))
        layers = default_tile_layers(prog)
        if layers:
            break
    sim = Simulator(prog)
    gc = golden_check(prog, sim, x, layers=layers)
    with tempfile.TemporaryDirectory() as tmp:
        index = dump_tiles(prog, sim, x, tmp, f"{cols * 2}x{cols}", layers, 8, max_tiles)
        items = [(e["file"], *load_tile(Path(tmp) / e["file"])) for e in index]
        t0 = time.perf_counter()
        rep = verify(spec, items, build_dir=build_dir)
    shifts = sorted({prog.layer(n).requant.shift for n in layers})
    return {"model": model, "terms": terms, "spec": f"{base} {rows}x{cols}", "layers": layers,
            "requant_shifts": shifts, "golden_mismatches": gc["mismatches"],
            "tiles": len(rep.tiles), "vectors": rep.vectors, "outputs": rep.outputs,
            "mismatched_tiles": rep.mismatch_count,
            "errors": sum(1 for t in rep.tiles if t.error), "cycles": rep.cycles,
            "seconds": time.perf_counter() - t0, "ok": rep.ok}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="mnist-resnet,efficientnet-lite0,resnet50")
    ap.add_argument("--terms", default="3,4")
    ap.add_argument("--array", default="4x4")
    ap.add_argument("--max-tiles", type=int, default=16)
    ap.add_argument("--out", default=str(ROOT / "docs" / "replay_terms.json"))
    args = ap.parse_args(argv)
    from fpxint_hw.report import format_table, write_json
    rows, cols = (int(v) for v in args.array.lower().split("x"))
    results = []
    for model in args.models.split(","):
        for t in (int(v) for v in args.terms.split(",")):
            r = replay(model, t, rows, cols, args.max_tiles)
            results.append(r)
            print(f"{model} T={t}: {r['tiles']} tiles, {r['mismatched_tiles']} mismatched, "
                  f"{r['errors']} errors", flush=True)
    write_json(args.out, {"runs": results})
    print(format_table(["model", "T", "spec", "layers", "tiles", "outputs", "mismatched",
                        "cycles"],
                       [[r["model"], r["terms"], r["spec"], ", ".join(r["layers"]), r["tiles"],
                         r["outputs"], r["mismatched_tiles"] + r["errors"], r["cycles"]]
                        for r in results]))
    return 0 if all(r["ok"] and not r["golden_mismatches"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
